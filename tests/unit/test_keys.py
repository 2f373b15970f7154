"""API keys: the domain's rules, and the key ring that resolves bearer tokens for the auth hook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.memory.store import MemoryStore
from application.access import CreateKey, KeyRing, RevokeKey
from domain.errors import ValidationFailed
from domain.keys import (
    KEY_PREFIX,
    LEGACY,
    ApiKey,
    Principal,
    digest_of,
    key_errors,
    known_scopes,
    new_secret,
)
from tests.fakes import FakeClock, SequentialIds

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make(**overrides: object) -> ApiKey:
    fields: dict = dict(
        name="ci", scopes=["read"], expires_at=None, secret="xpk_s", created_by="me",
        new_id=SequentialIds("k").new_id, now=NOW,
    )
    fields.update(overrides)
    return ApiKey.create(**fields)


def test_a_secret_is_prefixed_256_random_bits() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith(KEY_PREFIX) and a != b
    assert len(a) == len(KEY_PREFIX) + 43  # 32 bytes in unpadded base64url


def test_only_the_digest_of_the_secret_is_kept() -> None:
    key = make(secret="xpk_secret")
    assert key.digest == digest_of(b"xpk_secret").hex()
    assert "xpk_secret" not in repr(key)


def test_every_broken_rule_is_named_at_once() -> None:
    with pytest.raises(ValidationFailed) as caught:
        make(name=" ", scopes=["read", "write", "root"], expires_at=NOW)
    assert [(e.field, e.message.split()[0]) for e in caught.value.errors] == [
        ("name", "must"),
        ("scopes[1]", "must"),
        ("scopes[2]", "must"),
        ("expires_at", "must"),
    ]


@pytest.mark.parametrize(
    ("name", "scopes", "expires_at", "fields"),
    [
        ("x" * 200, ["admin"], None, []),
        ("x" * 201, ["admin"], None, ["name"]),
        ("", ["admin"], None, ["name"]),
        ("a\x00b", ["admin"], None, ["name"]),
        ("ok", [], None, ["scopes"]),
        ("ok", ["assign", "ingest", "read", "admin"], NOW + timedelta(microseconds=1), []),
        ("ok", ["read"], NOW - timedelta(days=1), ["expires_at"]),
        # Without an offset: UTC, so an hour ago.
        ("ok", ["read"], (NOW - timedelta(hours=1)).replace(tzinfo=None), ["expires_at"]),
        # 13:00 at +02:00 is 11:00 UTC: past.
        ("ok", ["read"], datetime(2026, 11, 28, 13, 0, tzinfo=timezone(timedelta(hours=2))), ["expires_at"]),
        ("ok", ["read"], datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))), ["expires_at"]),
    ],
)
def test_key_rules(name: str, scopes: list[str], expires_at: datetime | None, fields: list[str]) -> None:
    assert [e.field for e in key_errors(name, scopes, expires_at, NOW)] == fields


def test_scopes_are_kept_sorted_without_repeats_and_expiry_in_utc() -> None:
    at = datetime(2027, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    key = make(scopes=["read", "assign", "read"], expires_at=at)
    assert key.scopes == ("assign", "read")
    assert key.expires_at == datetime(2027, 1, 1, tzinfo=UTC) and key.expires_at.tzinfo == UTC


def test_a_key_is_active_until_it_expires_or_is_revoked() -> None:
    key = make(expires_at=NOW + timedelta(hours=1))
    assert key.is_active(NOW)
    assert key.is_active(NOW + timedelta(minutes=59, seconds=59))
    assert not key.is_active(NOW + timedelta(hours=1))
    revoked = key.revoked(NOW + timedelta(minutes=1))
    assert not revoked.is_active(NOW + timedelta(minutes=1))
    assert revoked.revoked(NOW + timedelta(minutes=2)).revoked_at == NOW + timedelta(minutes=1)


def test_admin_allows_every_scope_and_others_only_their_own() -> None:
    assert all(LEGACY.allows(s) for s in ("admin", "assign", "ingest", "read"))
    assign = Principal("app", frozenset({"assign"}))
    assert assign.allows("assign")
    assert not any(assign.allows(s) for s in ("admin", "ingest", "read"))
    assert known_scopes(["read", "openid", "admin"]) == {"read", "admin"}


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def find_key(self, digest: str):  # type: ignore[no-untyped-def]
        self.lookups += 1
        return await super().find_key(digest)


@pytest.fixture
def ring_parts() -> tuple[CountingStore, FakeClock, KeyRing]:
    store, clock = CountingStore(), FakeClock(NOW)
    return store, clock, KeyRing(store, clock, ttl_seconds=5, max_entries=3)


async def test_a_resolved_key_is_served_from_memory_for_the_ttl(ring_parts) -> None:  # type: ignore[no-untyped-def]
    store, clock, ring = ring_parts
    other_ring = KeyRing(store, clock, ttl_seconds=5)
    new = await CreateKey(store, clock, SequentialIds(), other_ring)(
        name="app", scopes=["assign"], expires_at=None, actor="me"
    )
    digest = digest_of(new.secret.encode())
    assert await ring.principal(digest) == Principal("app", frozenset({"assign"}), f"key:{new.key.id}")
    assert await ring.principal(digest) is not None
    assert store.lookups == 1
    # Revoked by another process (another ring): this one still holds it, until the TTL ends.
    await RevokeKey(store, clock, SequentialIds("r"), other_ring)(new.key.id, actor="me")
    clock.advance(seconds=4.9)
    assert await ring.principal(digest) is not None
    clock.advance(seconds=0.1)
    assert await ring.principal(digest) is None
    assert store.lookups == 2


async def test_revoking_through_the_same_ring_takes_effect_at_once(ring_parts) -> None:  # type: ignore[no-untyped-def]
    store, clock, ring = ring_parts
    new = await CreateKey(store, clock, SequentialIds(), ring)(name="app", scopes=["read"], expires_at=None, actor="me")
    digest = digest_of(new.secret.encode())
    assert await ring.principal(digest) is not None
    await RevokeKey(store, clock, SequentialIds("r"), ring)(new.key.id, actor="me")
    assert await ring.principal(digest) is None


async def test_a_cached_key_stops_working_the_moment_it_expires(ring_parts) -> None:  # type: ignore[no-untyped-def]
    store, clock, ring = ring_parts
    new = await CreateKey(store, clock, SequentialIds(), ring)(
        name="app", scopes=["read"], expires_at=NOW + timedelta(seconds=2), actor="me"
    )
    digest = digest_of(new.secret.encode())
    assert await ring.principal(digest) is not None
    clock.advance(seconds=2)
    assert await ring.principal(digest) is None
    assert store.lookups == 1


async def test_unknown_digests_are_remembered_for_the_ttl_and_bounded(ring_parts) -> None:  # type: ignore[no-untyped-def]
    store, clock, ring = ring_parts
    for _ in range(3):
        assert await ring.principal(digest_of(b"nobody")) is None
    assert store.lookups == 1
    for i in range(3):  # the ring holds 3: the oldest, "nobody", goes
        await ring.principal(digest_of(f"random-{i}".encode()))
    assert await ring.principal(digest_of(b"random-2")) is None and store.lookups == 4
    assert await ring.principal(digest_of(b"nobody")) is None and store.lookups == 5
    clock.advance(seconds=5)
    assert await ring.principal(digest_of(b"nobody")) is None and store.lookups == 6


async def test_a_key_created_elsewhere_is_found_once_the_unknown_entry_expires(ring_parts) -> None:  # type: ignore[no-untyped-def]
    store, clock, ring = ring_parts
    secret = "xpk_" + "a" * 43
    assert await ring.principal(digest_of(secret.encode())) is None
    key = make(secret=secret)
    await store.add_key(key)
    assert await ring.principal(digest_of(secret.encode())) is None
    clock.advance(seconds=5)
    assert await ring.principal(digest_of(secret.encode())) is not None


class SlowStore(MemoryStore):
    """Holds each key look-up until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def find_key(self, digest: str):  # type: ignore[no-untyped-def]
        found = await super().find_key(digest)
        await self.release.wait()
        return found


async def test_a_look_up_that_raced_a_revocation_here_is_not_remembered() -> None:
    store, clock = SlowStore(), FakeClock(NOW)
    ring = KeyRing(store, clock, ttl_seconds=5)
    store.release.set()
    new = await CreateKey(store, clock, SequentialIds(), ring)(name="app", scopes=["read"], expires_at=None, actor="me")
    digest = digest_of(new.secret.encode())
    store.release.clear()
    racing = asyncio.create_task(ring.principal(digest))
    await asyncio.sleep(0)  # the look-up has read the key, still active, and waits
    await RevokeKey(MemoryStoreView(store), clock, SequentialIds("r"), ring)(new.key.id, actor="me")
    store.release.set()
    assert await racing is not None  # it began before the revocation
    assert await ring.principal(digest) is None  # and what it read was not kept


class MemoryStoreView:
    """The same store, without the hold, for the revoking side."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def revoke_key(self, key_id: str, at):  # type: ignore[no-untyped-def]
        return await self._store.revoke_key(key_id, at)
