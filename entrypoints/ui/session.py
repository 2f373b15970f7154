"""The pages' session: the API key a person signed in with, sealed in a cookie, and CSRF tokens.

The cookie is sealed with AES-GCM: only the service can read it (the key is a secret) and only
the service can make one (a changed byte fails the tag). It holds the key itself, not a
server-side session id, so that any number of instances sharing the secret serve the same
person without a shared session store; each request checks the key again, so a revoked or
expired key signs its sessions out within the key cache's TTL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "experiments_session"
SIGN_IN_COOKIE = "experiments_sign_in"  # the sign-in form's CSRF token, before any session
COOKIE_PATH = "/ui"
_NONCE_BYTES = 12


class _Sealed(msgspec.Struct, array_like=True):
    purpose: str  # a sign-in token cannot be replayed as a session, nor the reverse
    expires: int  # Unix seconds
    csrf: str
    key: str = ""


@dataclass(frozen=True, slots=True)
class Session:
    key: str  # the API key's secret, as the person typed it
    csrf: str  # the token every form of this session carries
    expires_at: datetime


def session_key(secret: str | None, api_tokens: tuple[str, ...]) -> bytes:
    """The AES key: from ``UI_SESSION_SECRET`` when set; otherwise derived from the API_TOKENS
    (every instance of a deployment has the same ones), so that sessions work on any instance
    with nothing more to configure, and rotating the tokens signs everyone out."""
    if secret:
        return hashlib.sha256(b"experiments ui session\0" + secret.encode()).digest()
    material = b"\0".join(hashlib.sha256(t.encode()).digest() for t in sorted(api_tokens))
    return hmac.new(material, b"experiments ui session v1", hashlib.sha256).digest()


class Sealer:
    """Seals and opens the cookies; the clock is the caller's, so tests are exact."""

    def __init__(self, key: bytes, lifetime: timedelta) -> None:
        self._aead = AESGCM(key)
        self.lifetime = lifetime

    def session(self, api_key: str, now: datetime) -> tuple[str, Session]:
        expires_at = now + self.lifetime
        session = Session(api_key, secrets.token_urlsafe(24), expires_at)
        return self._seal(_Sealed("session", int(expires_at.timestamp()), session.csrf, api_key)), session

    def sign_in_token(self, now: datetime) -> tuple[str, str]:
        """A cookie and the CSRF token the sign-in form repeats (double submit, sealed so that
        no one can plant a cookie of their own choosing)."""
        csrf = secrets.token_urlsafe(24)
        return self._seal(_Sealed("sign-in", int((now + timedelta(hours=1)).timestamp()), csrf)), csrf

    def open_session(self, cookie: str | None, now: datetime) -> Session | None:
        sealed = self._open(cookie, "session", now)
        if sealed is None or not sealed.key:
            return None
        return Session(sealed.key, sealed.csrf, datetime.fromtimestamp(sealed.expires, now.tzinfo))

    def sign_in_csrf(self, cookie: str | None, now: datetime) -> str | None:
        sealed = self._open(cookie, "sign-in", now)
        return None if sealed is None else sealed.csrf

    def _seal(self, content: _Sealed) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, msgspec.msgpack.encode(content), None)
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def _open(self, cookie: str | None, purpose: str, now: datetime) -> _Sealed | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
            content = msgspec.msgpack.decode(plain, type=_Sealed)
        except (ValueError, InvalidTag, msgspec.DecodeError):
            return None
        if content.purpose != purpose or content.expires <= now.timestamp():
            return None
        return content


def same_token(offered: str | None, expected: str) -> bool:
    """A CSRF token compared in constant time."""
    return offered is not None and hmac.compare_digest(offered.encode(), expected.encode())
