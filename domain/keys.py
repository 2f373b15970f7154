"""API keys and principals: who may call what, the scopes, and the rules of a key's life."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from domain.errors import FieldError, ValidationFailed
from domain.event import TimestampOutOfRange, as_utc

ADMIN, ASSIGN, INGEST, READ = "admin", "assign", "ingest", "read"
SCOPES = frozenset({ADMIN, ASSIGN, INGEST, READ})
"""admin: change experiments and keys, read the audit trail, and everything else; assign: ask
for assignments (safe in a client app); ingest: send events; read: experiments and results."""

MAX_KEY_NAME_LENGTH = 200
KEY_PREFIX = "xpk_"
"""Marks a secret as this service's key, so that secret scanners and people recognise a leak."""


def new_secret() -> str:
    """256 random bits, URL-safe, with the prefix. Random keys need no slow password hash: with
    no dictionary to try, finding a key from its SHA-256 digest means searching 2**256 values."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_of(secret: bytes) -> bytes:
    """The SHA-256 digest of a bearer token: all the store ever keeps of a key's secret."""
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the actor named in the audit trail, and what it may do."""

    name: str
    scopes: frozenset[str]
    # Whom rate limits count: a key's id (two keys may share a name), a JWT's subject; empty for
    # API_TOKENS, which are counted by each token's digest.
    identity: str = ""

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


LEGACY_ACTOR = "API_TOKENS"
LEGACY = Principal(LEGACY_ACTOR, frozenset({ADMIN}))
"""Every token of API_TOKENS: an admin, as all tokens were before keys had scopes."""


def known_scopes(claimed: Iterable[str]) -> frozenset[str]:
    return frozenset(s for s in claimed if s in SCOPES)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]  # sorted, no repeats
    digest: str  # hex SHA-256 of the secret
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def create(
        cls,
        *,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None,
        secret: str,
        created_by: str,
        new_id: Callable[[], str],
        now: datetime,
    ) -> ApiKey:
        """Raises ValidationFailed naming every broken rule."""
        scopes = list(scopes)
        errors = key_errors(name, scopes, expires_at, now)
        if errors:
            raise ValidationFailed(errors)
        return cls(
            id=new_id(),
            name=name,
            scopes=tuple(sorted(set(scopes))),
            digest=digest_of(secret.encode()).hex(),
            created_at=now,
            created_by=created_by,
            expires_at=None if expires_at is None else as_utc(expires_at),
        )

    def is_active(self, now: datetime) -> bool:
        """Neither revoked nor expired: a key whose expiry is now has expired."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def revoked(self, now: datetime) -> ApiKey:
        """The key revoked at ``now``; a revoked key keeps its first revocation time."""
        return self if self.revoked_at is not None else replace(self, revoked_at=now)

    @property
    def principal(self) -> Principal:
        return Principal(self.name, frozenset(self.scopes), f"key:{self.id}")


def key_errors(
    name: str, scopes: list[str], expires_at: datetime | None, now: datetime
) -> list[FieldError]:
    errors: list[FieldError] = []
    if not name.strip():
        errors.append(FieldError("name", "must not be blank"))
    elif len(name) > MAX_KEY_NAME_LENGTH:
        errors.append(FieldError("name", f"must be at most {MAX_KEY_NAME_LENGTH} characters"))
    if "\x00" in name:
        errors.append(FieldError("name", "must not contain the NUL character"))
    if not scopes:
        errors.append(FieldError("scopes", f"must name at least one of {_listed(SCOPES)}"))
    for i, scope in enumerate(scopes):
        if scope not in SCOPES:
            errors.append(FieldError(f"scopes[{i}]", f"must be one of {_listed(SCOPES)}"))
    if expires_at is not None:
        try:
            if as_utc(expires_at) <= now:
                errors.append(FieldError("expires_at", "must be in the future"))
        except TimestampOutOfRange:  # 9999-12-31T23:00:00-02:00 is past what a datetime holds in UTC
            errors.append(FieldError("expires_at", "must be within the years 1 to 9999 in UTC"))
    return errors


def _listed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))
