"""Reading the settings at start: every unreadable variable named, the readable ones kept."""

from __future__ import annotations

from entrypoints.config.settings import Settings
from entrypoints.config.startup import read_settings


def test_every_unreadable_variable_is_named_and_the_rest_is_read() -> None:
    settings, problems = read_settings(
        {"PORT": "abc", "WORKERS": "0", "HOST": "10.0.0.7", "PATH": "/usr/bin"}
    )
    assert problems == {
        "PORT": "PORT must be a whole number, got 'abc'",
        "WORKERS": "WORKERS must be positive, got '0'",
    }
    assert settings is not None and settings.host == "10.0.0.7"


def test_a_good_environment_has_no_problems() -> None:
    assert read_settings({"PORT": "18300", "METRICS_TOKEN_REQUIRED": "off"}) == (
        Settings(port=18300, metrics_token_required=False),
        {},
    )
