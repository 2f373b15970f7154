"""The composition root: the one place that decides which adapter serves which port."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from dependency_injector import containers, providers

from adapters.memory.cache import MemoryCache
from adapters.memory.rate_limiter import MemoryRateLimiter
from adapters.memory.store import MemoryStore
from adapters.system import SystemClock, TimeOrderedIds
from application.access import CreateKey, GetKey, KeyRing, ListAudit, ListKeys, RevokeKey
from application.assignment import AssignUser, RecordExposures
from application.experiments import (
    AllExperiments,
    ChangeExperiment,
    CreateExperiment,
    GetExperiment,
    ListExperiments,
)
from application.health import CheckHealth
from application.layers import LayersAndHoldouts
from application.ports import Cache, RateLimiter, Store
from application.power import EstimatePower
from application.results import ComputeBreakdown, ComputeResults, ComputeTimeSeries, ResultsSlots
from application.tracking import RecordEvents
from domain.results import ResultCalculator
from entrypoints.config.settings import ConfigurationError, Settings
from entrypoints.ui.session import Sealer, session_key
from entrypoints.telemetry.metrics import CountingAssignments, CountingCache, breaker_changed


def build_store(settings: Settings, now: Callable[[], datetime] | None = None) -> Store:
    """``now``: the service's clock; without one (the CLI's commands), the folder keeps every
    prior event (folding.Folder.prune)."""
    if settings.database_url == "memory://":
        return MemoryStore()
    # Imported here so that a memory-only process never loads SQLAlchemy.
    from adapters.sqlalchemy.engine import create_engine_for
    from adapters.sqlalchemy.store import SqlStore

    return SqlStore(
        create_engine_for(settings.database_url),
        fold_interval=settings.fold_interval_seconds,
        results_timeout=settings.results_timeout_seconds,
        now=now,
        # An exposure reported by a client carries its own time, at most this far back.
        backdating=timedelta(seconds=settings.event_clock_skew_seconds),
    )


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """On the Redis of CACHE_URL when there is one, so that every instance counts against the
    same buckets; otherwise each process counts alone."""
    if _scheme(settings.cache_url) in ("redis", "rediss"):
        from adapters.redis.rate_limiter import RedisRateLimiter

        try:
            return RedisRateLimiter(settings.cache_url, settings.rates())
        except ValueError as exc:  # redis-py's URL parser; its message never holds the password
            raise ConfigurationError(f"CACHE_URL is not a valid Redis URL: {exc}") from None
    return MemoryRateLimiter(settings.rates())


def build_cache(settings: Settings) -> Cache:
    cache_url = settings.cache_url
    if cache_url == "memory://":
        return MemoryCache(
            ttl_seconds=settings.cache_ttl_seconds,
            experiment_ttl_seconds=settings.near_cache_ttl_seconds,
        )
    scheme = _scheme(cache_url)
    if scheme in ("redis", "rediss"):
        # Imported here so that a process on the memory cache never loads redis-py.
        from adapters.redis.cache import RedisCache
        from adapters.redis.near_cache import ForgetChannel, NearCache

        try:
            shared = RedisCache(
                cache_url, ttl_seconds=settings.cache_ttl_seconds, on_breaker=breaker_changed
            )
            changes = ForgetChannel(cache_url)
        except ValueError as exc:  # redis-py's URL parser; its message never holds the password
            raise ConfigurationError(f"CACHE_URL is not a valid Redis URL: {exc}") from None
        return NearCache(
            shared,
            changes,
            experiment_ttl_seconds=settings.near_cache_ttl_seconds,
            max_entries=settings.near_cache_max_entries,
        )
    # Only the scheme is echoed: the rest of a URL may hold a password.
    shown = f"scheme {scheme!r}" if scheme else "value"
    raise ConfigurationError(
        f"CACHE_URL {shown} is not supported; use memory:// or redis://host:port/db"
    )


def build_sealer(settings: Settings) -> Sealer:
    """The pages' session seals: every instance with the same settings opens the others'."""
    key = session_key(settings.ui_session_secret, settings.api_tokens)
    return Sealer(key, timedelta(hours=settings.ui_session_hours))


class Container(containers.DeclarativeContainer):
    """Singletons throughout: adapters hold pools, and use cases hold nothing but their ports,
    so one of each serves every request without a per-request construction cost."""

    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    store = providers.Singleton(build_store, settings, clock.provided.now)
    cache = providers.Singleton(build_cache, settings)
    rate_limiter = providers.Singleton(build_rate_limiter, settings)
    ui_sealer = providers.Singleton(build_sealer, settings)
    ids = providers.Singleton(TimeOrderedIds)
    calculator = providers.Singleton(ResultCalculator)

    get_experiment = providers.Singleton(GetExperiment, store, cache)
    create_experiment = providers.Singleton(CreateExperiment, store, cache, clock, ids)
    change_experiment = providers.Singleton(ChangeExperiment, store, cache, clock, ids)
    # One bound per process on the results read from the store, experiments' and holdouts'.
    results_slots = providers.Singleton(
        ResultsSlots,
        settings.provided.results_max_concurrent,
        settings.provided.results_queue_seconds,
    )
    layers = providers.Singleton(LayersAndHoldouts, store, clock, ids, results_slots)
    list_experiments = providers.Singleton(ListExperiments, store)
    all_experiments = providers.Singleton(AllExperiments, store)
    # AssignUser reads and writes through counting wrappers (entrypoints/telemetry/metrics.py).
    assign_user = providers.Singleton(
        AssignUser,
        get_experiment,
        providers.Singleton(CountingAssignments, store),
        providers.Singleton(CountingCache, cache),
        clock,
    )
    # How far an event's or an exposure's own time may be from the clock.
    clock_skew = providers.Factory(timedelta, seconds=settings.provided.event_clock_skew_seconds)
    record_events = providers.Singleton(RecordEvents, get_experiment, store, clock, clock_skew)
    record_exposures = providers.Singleton(RecordExposures, get_experiment, store, clock, clock_skew)
    compute_results = providers.Singleton(
        ComputeResults, get_experiment, store, calculator, results_slots
    )
    compute_time_series = providers.Singleton(ComputeTimeSeries, get_experiment, store, clock, results_slots)
    compute_breakdown = providers.Singleton(ComputeBreakdown, get_experiment, store, calculator, results_slots)
    estimate_power = providers.Singleton(EstimatePower, compute_results, clock)
    check_health = providers.Singleton(CheckHealth, store)

    # One key ring per process: the auth hook reads it, creating and revoking keys updates it.
    key_ring = providers.Singleton(KeyRing, store, clock, settings.provided.key_cache_ttl_seconds)
    create_key = providers.Singleton(CreateKey, store, clock, ids, key_ring)
    get_key = providers.Singleton(GetKey, store)
    list_keys = providers.Singleton(ListKeys, store)
    revoke_key = providers.Singleton(RevokeKey, store, clock, ids, key_ring)
    list_audit = providers.Singleton(ListAudit, store)


def create_container(settings: Settings | None = None) -> Container:
    return Container(settings=settings or Settings.from_env())
