"""Settings read from the environment: the read timeouts of the HTTP server."""

from __future__ import annotations

import pytest

from entrypoints.settings import ConfigurationError, Settings


def test_read_timeouts_default_and_accept_fractions() -> None:
    settings = Settings.from_env({})
    assert (settings.header_read_timeout_seconds, settings.body_read_timeout_seconds) == (10, 60)
    settings = Settings.from_env({"HEADER_READ_TIMEOUT_SECONDS": "2.5", "BODY_READ_TIMEOUT_SECONDS": "30"})
    assert (settings.header_read_timeout_seconds, settings.body_read_timeout_seconds) == (2.5, 30)


@pytest.mark.parametrize("name", ["HEADER_READ_TIMEOUT_SECONDS", "BODY_READ_TIMEOUT_SECONDS"])
@pytest.mark.parametrize("raw", ["0", "-1", "abc", "nan", "inf", "1e9"])
def test_a_bad_read_timeout_is_one_clear_line(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: raw})
    message = str(caught.value)
    assert name in message and repr(raw) in message and "\n" not in message
