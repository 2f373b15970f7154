"""Settings read from the environment: the read timeouts of the HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoints.config.settings import ConfigurationError, Settings


def test_read_timeouts_default_and_accept_fractions() -> None:
    settings = Settings.from_env({})
    assert (settings.header_read_timeout_seconds, settings.body_read_timeout_seconds) == (10, 60)
    settings = Settings.from_env({"HEADER_READ_TIMEOUT_SECONDS": "2.5", "BODY_READ_TIMEOUT_SECONDS": "30"})
    assert (settings.header_read_timeout_seconds, settings.body_read_timeout_seconds) == (2.5, 30)


def test_the_keep_alive_timeout_defaults_to_uvicorns_and_can_be_set() -> None:
    assert Settings.from_env({}).keep_alive_timeout_seconds == 5
    assert Settings.from_env({"KEEP_ALIVE_TIMEOUT_SECONDS": "75"}).keep_alive_timeout_seconds == 75


@pytest.mark.parametrize(
    "name", ["HEADER_READ_TIMEOUT_SECONDS", "BODY_READ_TIMEOUT_SECONDS", "KEEP_ALIVE_TIMEOUT_SECONDS"]
)
@pytest.mark.parametrize("raw", ["0", "-1", "abc", "nan", "inf", "1e9"])
def test_a_bad_read_timeout_is_one_clear_line(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: raw})
    message = str(caught.value)
    assert name in message and repr(raw) in message and "\n" not in message


def test_results_bounds_and_the_fold_interval_default_and_accept_fractions() -> None:
    settings = Settings.from_env({})
    assert (settings.results_max_concurrent, settings.results_queue_seconds) == (4, 0.5)
    assert (settings.results_timeout_seconds, settings.fold_interval_seconds) == (5.0, None)
    settings = Settings.from_env({"RESULTS_QUEUE_SECONDS": "0", "FOLD_INTERVAL_SECONDS": "2.5"})
    assert (settings.results_queue_seconds, settings.fold_interval_seconds) == (0, 2.5)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("FOLD_INTERVAL_SECONDS", "0"), ("RESULTS_TIMEOUT_SECONDS", "0"), ("RESULTS_MAX_CONCURRENT", "0"),
     ("RESULTS_QUEUE_SECONDS", "-1"), ("FOLD_INTERVAL_SECONDS", "nan")],
)
def test_a_bad_results_bound_or_fold_interval_is_one_clear_line(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: raw})
    message = str(caught.value)
    assert name in message and repr(raw) in message and "\n" not in message


def test_the_store_folds_at_the_configured_interval(tmp_path) -> None:  # noqa: ANN001
    from entrypoints.config.container import build_store

    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "FOLD_INTERVAL_SECONDS": "2.5"})
    store = build_store(settings)
    assert store.folder.interval == 2.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(("url", "interval"), [("sqlite:///{}/x.db", 0.5), ("postgresql://u@127.0.0.1:1/db", 0.05)])
def test_unset_the_store_folds_at_its_database_s_default(tmp_path: Path, url: str, interval: float) -> None:
    """PostgreSQL's writers never wait for a fold, so it folds more often (a shorter tail for
    every results read); SQLite's fold holds the one writer, so it folds less often."""
    from entrypoints.config.container import build_store

    store = build_store(Settings.from_env({"DATABASE_URL": url.format(tmp_path)}))
    assert store.folder.interval == interval  # type: ignore[attr-defined]
