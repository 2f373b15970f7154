"""Two server processes on one Redis count a token's requests against the same buckets."""

from __future__ import annotations

import hashlib
import secrets

import httpx
import pytest
import redis

pytestmark = pytest.mark.redis


def test_two_instances_on_one_redis_share_a_tokens_bucket(start_servers, redis_url: str) -> None:
    token = f"t-{secrets.token_hex(8)}"  # buckets of its own: runs sharing the database never meet
    env = {
        "DATABASE_URL": "memory://",
        "CACHE_URL": redis_url,
        "API_TOKENS": token,
        "RATE_LIMIT_API_TOKENS": "true",
        "RATE_LIMIT_READ": "4/min",
    }
    servers = start_servers(env, dict(env))
    auth = {"Authorization": f"Bearer {token}"}
    key = f"ratelimit:read:token:{hashlib.sha256(token.encode()).hexdigest()}"
    admin = redis.Redis.from_url(redis_url)
    try:
        answers = [
            httpx.get(f"{servers[i % 2].base_url}/experiments", headers=auth, timeout=10)
            for i in range(5)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
        assert [a.headers["RateLimit-Remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
        # A token comes back every 15 s, counted from the fourth request: whole seconds rounded
        # up, so 15 unless a loaded machine took over a second between the two.
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 15
        assert answers[-1].headers["content-type"].startswith("application/problem+json")
        # The other instance refuses too, and the bucket is where the docs say, with a TTL.
        other = httpx.get(f"{servers[1].base_url}/experiments", headers=auth, timeout=10)
        assert other.status_code == 429
        assert admin.exists(key) and 0 < admin.pttl(key) <= 61_000
    finally:
        admin.delete(key)
        admin.close()
