"""Access: API keys, the key ring the bearer check reads, and the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.paging import page_errors
from application.ports import (
    AuditTrail,
    Clock,
    IdSource,
    Keys,
)
from application.unit_of_work import UnitOfWork
from domain.audit import (
    ACTIONS,
    KEY_CREATED,
    KEY_REVOKED,
    AuditEntry,
)
from domain.errors import (
    FieldError,
    KeyNotFound,
    ValidationFailed,
)
from domain.experiment import rfc3339
from domain.keys import ApiKey, Principal, key_errors, new_secret


class KeyRing:
    """Resolves a bearer token's digest to the principal of an active key, for the auth hook.

    Each process keeps what it resolved for ``ttl_seconds``: known keys, and digests that named
    no key (so that a flood of random tokens costs a dict lookup each, not a store query). A key
    created or revoked elsewhere takes effect here within the TTL; ``forget`` makes a change
    made by this process take effect at once. Both maps are bounded: the oldest entry goes first.
    Expiry is checked on every call, so a cached key stops working the moment it expires.
    """

    def __init__(self, store: Keys, clock: Clock, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self._store, self._clock = store, clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._max = max_entries
        self._known: dict[bytes, tuple[datetime, ApiKey, Principal]] = {}
        self._unknown: dict[bytes, datetime] = {}
        self._changes = 0  # how many times forget was called: a look-up racing one is not kept

    def cached(self, digest: bytes) -> Principal | None | bool:
        """Without waiting: the principal, or None (no active key), as this process knows them;
        False when only the store can tell."""
        now = self._clock.now()
        cached = self._known.get(digest)
        if cached is not None and now < cached[0]:
            return cached[2] if cached[1].is_active(now) else None
        if (until := self._unknown.get(digest)) is not None and now < until:
            return None
        return False

    async def principal(self, digest: bytes) -> Principal | None:
        found = self.cached(digest)
        return await self.look_up(digest) if found is False else found

    async def look_up(self, digest: bytes) -> Principal | None:
        """Read the store and remember what it said."""
        changes = self._changes
        key = await self._store.find_key(digest.hex())
        now = self._clock.now()
        if changes == self._changes:
            # Not when a key was created or revoked here meanwhile: what the store said may
            # predate that, and this process must see its own change at once.
            self._drop(digest)
            if key is None:
                self._remember(self._unknown, digest, now + self._ttl)
            else:
                self._remember(self._known, digest, (now + self._ttl, key, key.principal))
        return key.principal if key is not None and key.is_active(now) else None

    def forget(self, digest: bytes) -> None:
        self._changes += 1
        self._drop(digest)

    def _drop(self, digest: bytes) -> None:
        self._known.pop(digest, None)
        self._unknown.pop(digest, None)

    def _remember(self, entries: dict, digest: bytes, value: object) -> None:  # type: ignore[type-arg]
        if len(entries) >= self._max:
            del entries[next(iter(entries))]  # dicts keep insertion order: the oldest goes
        entries[digest] = value


@dataclass(frozen=True, slots=True)
class NewKey:
    key: ApiKey
    secret: str  # shown to the creator once; the store keeps only its digest


class CreateKey:
    def __init__(self, store: Keys, clock: Clock, ids: IdSource, keys: KeyRing) -> None:
        self._store, self._clock, self._ids, self._keys = store, clock, ids, keys

    async def __call__(
        self, *, name: str, scopes: Sequence[str], expires_at: datetime | None, actor: str
    ) -> NewKey:
        now = self._clock.now()
        secret = new_secret()
        key = ApiKey.create(
            name=name,
            scopes=scopes,
            expires_at=expires_at,
            secret=secret,
            created_by=actor,
            new_id=self._ids.new_id,
            now=now,
        )
        details = {
            "name": key.name,
            "scopes": list(key.scopes),
            "expires_at": rfc3339(key.expires_at),
        }
        async with UnitOfWork() as work:
            work.audit(AuditEntry(self._ids.new_id(), now, actor, KEY_CREATED, "key", key.id, details))
            await self._store.add_key(key)
        self._keys.forget(bytes.fromhex(key.digest))
        return NewKey(key, secret)

    def errors(self, name: str, scopes: Sequence[str], expires_at: datetime | None) -> list[FieldError]:
        """The rules such a key would break now, without making it."""
        return key_errors(name, list(scopes), expires_at, self._clock.now())


class GetKey:
    def __init__(self, store: Keys) -> None:
        self._store = store

    async def __call__(self, key_id: str) -> ApiKey:
        key = await self._store.get_key(key_id)
        if key is None:
            raise KeyNotFound(key_id)
        return key


@dataclass(frozen=True, slots=True)
class KeyPage:
    items: list[ApiKey]
    total: int


class ListKeys:
    def __init__(self, store: Keys) -> None:
        self._store = store

    async def __call__(self, *, limit: int = 100, offset: int = 0) -> KeyPage:
        if errors := page_errors(limit, offset):
            raise ValidationFailed(errors)
        items, total = await self._store.list_keys(limit, offset)
        return KeyPage(items, total)


class RevokeKey:
    """Idempotent: revoking a revoked key changes nothing and answers the key as it is."""

    def __init__(self, store: Keys, clock: Clock, ids: IdSource, keys: KeyRing) -> None:
        self._store, self._clock, self._ids, self._keys = store, clock, ids, keys

    async def __call__(self, key_id: str, *, actor: str) -> ApiKey:
        now = self._clock.now()
        async with UnitOfWork() as work:
            work.audit(AuditEntry(self._ids.new_id(), now, actor, KEY_REVOKED, "key", key_id, {}))
            key = await self._store.revoke_key(key_id, now)
        if key is None:
            raise KeyNotFound(key_id)
        self._keys.forget(bytes.fromhex(key.digest))
        return key


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEntry]
    total: int


class ListAudit:
    def __init__(self, store: AuditTrail) -> None:
        self._store = store

    async def __call__(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        action: str | None = None,
        target_id: str | None = None,
    ) -> AuditPage:
        errors = page_errors(limit, offset)
        if action is not None and action not in ACTIONS:
            errors.append(FieldError("action", f"must be one of {', '.join(sorted(ACTIONS))}"))
        if errors:
            raise ValidationFailed(errors)
        items, total = await self._store.list_audit(limit, offset, action=action, target_id=target_id)
        return AuditPage(items, total)
