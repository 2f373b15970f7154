"""Optional JWT bearer tokens: RS256 or ES256 only, against a configured public key or JWKS file."""

from __future__ import annotations

import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from domain.keys import Principal, known_scopes
from entrypoints.config.settings import ConfigurationError, Settings

LEEWAY_SECONDS = 30
"""Clock skew tolerated on exp, nbf and iat between the issuer and this service."""

# Asymmetric only: "none" and the HMAC algorithms are never accepted, whatever a token's header
# says, so a public key can never be used as an HMAC secret (algorithm confusion).
ALGORITHMS = ("RS256", "ES256")
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


class JwtVerifier:
    """Verifies a JWT and turns its claims into a principal named ``jwt:<sub>``.

    Each key is pinned to the one algorithm its type allows (RSA: RS256, P-256: ES256), so a
    token cannot choose how it is checked."""

    def __init__(
        self,
        keys: dict[str | None, tuple[Any, str]],
        *,
        by_kid: bool,
        issuer: str,
        audience: str,
        scopes_claim: str,
    ) -> None:
        self._keys, self._by_kid = keys, by_kid
        self._issuer, self._audience, self._scopes_claim = issuer, audience, scopes_claim

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """None when JWT is not configured; raises ConfigurationError when half configured."""
        if not settings.jwt_enabled:
            return None
        pem, jwks = settings.jwt_public_key_file, settings.jwt_jwks_file
        if pem and jwks:
            raise ConfigurationError("set JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE, not both")
        if not (pem or jwks):
            raise ConfigurationError("JWT_ISSUER/JWT_AUDIENCE need JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE")
        if not settings.jwt_issuer or not settings.jwt_audience:
            raise ConfigurationError("JWT bearer auth needs both JWT_ISSUER and JWT_AUDIENCE")
        keys = _pem_key(pem) if pem else _jwks_keys(jwks)  # type: ignore[arg-type]
        return cls(
            keys,
            by_kid=not pem,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            scopes_claim=settings.jwt_scopes_claim,
        )

    def principal(self, token: bytes) -> Principal | None:
        """The token's principal, or None for any token that is not valid in every respect."""
        try:
            kid = jwt.get_unverified_header(token).get("kid") if self._by_kid else None
            entry = self._keys.get(kid if isinstance(kid, str) else None)
            if entry is None:
                return None
            key, algorithm = entry
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        subject = claims.get("sub")
        # NUL: no database text can hold it, and the subject is the actor the audit trail stores.
        if not isinstance(subject, str) or not subject or "\x00" in subject:
            return None
        return Principal(
            f"jwt:{subject}", known_scopes(_scopes(claims.get(self._scopes_claim))), f"jwt:{subject}"
        )


def _scopes(claim: object) -> list[str]:
    """A space-separated string (RFC 8693's ``scope``) or a list of strings."""
    if isinstance(claim, str):
        return claim.split()
    if isinstance(claim, list):
        return [s for s in claim if isinstance(s, str)]
    return []


def _read(path: str, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigurationError(f"{name} cannot be read: {exc.strerror or exc} ({path})") from None


def _algorithm_of(key: Any, name: str) -> str:
    if isinstance(key, RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigurationError(f"{name}: an RSA key needs at least 2048 bits")
        return "RS256"
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return "ES256"
    raise ConfigurationError(f"{name}: only RSA (RS256) and P-256 (ES256) public keys are supported")


def _pem_key(path: str) -> dict[str | None, tuple[Any, str]]:
    try:
        key = load_pem_public_key(_read(path, "JWT_PUBLIC_KEY_FILE"))
    except ValueError:
        raise ConfigurationError(f"JWT_PUBLIC_KEY_FILE is not a PEM public key ({path})") from None
    return {None: (key, _algorithm_of(key, "JWT_PUBLIC_KEY_FILE"))}


def _jwks_keys(path: str) -> dict[str | None, tuple[Any, str]]:
    raw = _read(path, "JWT_JWKS_FILE")
    try:
        document = json.loads(raw)
        found = document["keys"] if isinstance(document, dict) else None
        if not isinstance(found, list):
            raise ValueError
    except (ValueError, KeyError):
        raise ConfigurationError(f"JWT_JWKS_FILE is not a JWKS document ({path})") from None
    keys: dict[str | None, tuple[Any, str]] = {}
    for i, entry in enumerate(found):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise ConfigurationError(f"JWT_JWKS_FILE: key {i} cannot be read ({path})") from None
        algorithm = _algorithm_of(key, f"JWT_JWKS_FILE key {i}")
        if entry.get("alg", algorithm) != algorithm:
            raise ConfigurationError(f"JWT_JWKS_FILE: key {i} names alg {entry.get('alg')!r}; use {algorithm}")
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = (key, algorithm)
    if not keys:
        raise ConfigurationError(f"JWT_JWKS_FILE holds no signing key ({path})")
    return keys
