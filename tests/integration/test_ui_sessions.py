"""A results pages' session on a deployment of two instances over PostgreSQL and Redis: signed
in on one, it works on the other (the sealing key is derived from the API_TOKENS both share,
or set as UI_SESSION_SECRET); one with other tokens and no shared secret opens none of them."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.integration.conftest import ServerProcess


def sign_in(base_url: str, key: str) -> httpx.Cookies:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        form = client.get("/ui/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        answer = client.post("/ui/sign-in", data={"csrf": csrf, "api_key": key})
        assert answer.status_code == 303, answer.text
        return client.cookies


def test_a_session_from_one_instance_serves_on_the_other(
    start_servers: Callable[..., list[ServerProcess]], postgres_database: str, redis_url: str
) -> None:
    shared = {"DATABASE_URL": postgres_database, "CACHE_URL": redis_url, "API_TOKENS": "t1,t2"}
    first, second = start_servers(shared, shared)
    key = httpx.post(
        f"{first.base_url}/keys", json={"name": "analyst", "scopes": ["read"]},
        headers={"Authorization": "Bearer t1"}, timeout=30,
    ).json()["key"]
    cookies = sign_in(first.base_url, key)
    for server in (first, second):
        page = httpx.get(f"{server.base_url}/ui/experiments", cookies=cookies, timeout=30)
        assert page.status_code == 200 and "Signed in as <strong>analyst</strong>" in page.text
    (other,) = start_servers({**shared, "API_TOKENS": "t3"})
    refused = httpx.get(f"{other.base_url}/ui/experiments", cookies=cookies, timeout=30)
    assert refused.status_code == 303 and refused.headers["location"] == "/ui/sign-in"
    (with_secret,) = start_servers({**shared, "API_TOKENS": "t3", "UI_SESSION_SECRET": "s3cret"})
    again = sign_in(with_secret.base_url, key)
    assert httpx.get(f"{with_secret.base_url}/ui/experiments", cookies=again, timeout=30).status_code == 200
    assert httpx.get(f"{first.base_url}/ui/experiments", cookies=again, timeout=30).status_code == 303
    for server in (first, second, other, with_secret):  # nothing secret is written anywhere
        printed = server.stdout_path.read_text() + server.stderr_path.read_text()
        assert key not in printed and "s3cret" not in printed
        assert cookies["experiments_session"] not in printed
