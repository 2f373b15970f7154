"""The pages' sealed cookies: only this service opens them, only for their purpose and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from entrypoints.ui.session import Sealer, same_token, session_key

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def sealer(key: bytes | None = None) -> Sealer:
    return Sealer(key or session_key(None, ("token",)), timedelta(hours=12))


def test_a_session_opens_until_it_expires() -> None:
    s = sealer()
    cookie, session = s.session("secret-key-value", NOW)
    opened = s.open_session(cookie, NOW + timedelta(hours=11, minutes=59))
    assert opened is not None and opened.key == "secret-key-value" and opened.csrf == session.csrf
    assert s.open_session(cookie, NOW + timedelta(hours=12)) is None


def test_the_key_is_not_readable_in_the_cookie() -> None:
    cookie, _ = sealer().session("secret-key-value", NOW)
    assert "secret" not in cookie and "c2VjcmV0" not in cookie  # nor its base64


def test_a_changed_byte_or_another_secret_opens_nothing() -> None:
    s = sealer()
    cookie, _ = s.session("k", NOW)
    for i in (0, 14, len(cookie) // 2, len(cookie) - 2):
        changed = cookie[:i] + ("A" if cookie[i] != "A" else "B") + cookie[i + 1:]
        assert s.open_session(changed, NOW) is None
    assert sealer(session_key("another secret", ())).open_session(cookie, NOW) is None
    for junk in (None, "", "!!!", "a" * 5000, "AAAA"):
        assert s.open_session(junk, NOW) is None


def test_a_sign_in_token_is_no_session_and_a_session_no_sign_in_token() -> None:
    s = sealer()
    sign_in, csrf = s.sign_in_token(NOW)
    assert s.sign_in_csrf(sign_in, NOW) == csrf
    assert s.open_session(sign_in, NOW) is None
    session_cookie, _ = s.session("k", NOW)
    assert s.sign_in_csrf(session_cookie, NOW) is None


def test_the_key_comes_from_the_secret_or_else_from_every_api_token() -> None:
    assert session_key("s", ("a",)) == session_key("s", ("b",))
    assert session_key(None, ("a", "b")) == session_key(None, ("b", "a"))
    assert session_key(None, ("a",)) != session_key(None, ("a", "b"))
    assert session_key(None, ("a",)) != session_key("a", ())
    assert len(session_key(None, ("a",))) == 32


def test_csrf_tokens_compare_whole() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abd", "abc") and not same_token(None, "abc") and not same_token("", "abc")
