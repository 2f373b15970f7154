"""Configuration from the environment, as API.md lists it, read once by the CLI or the factory."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import overload

from domain.rate_limit import Rate

DEFAULT_DATABASE_URL = "sqlite:///./data/experiments.db"

# Per route class: the variable that sets its rate, and the rate when it is unset. They apply to
# every credential that is limited (API_TOKENS only with RATE_LIMIT_API_TOKENS=true).
RATE_LIMIT_DEFAULTS = {
    "assignment": ("RATE_LIMIT_ASSIGNMENT", Rate(200, 1, 200)),
    "ingestion": ("RATE_LIMIT_INGESTION", Rate(50, 1, 50)),
    "admin": ("RATE_LIMIT_ADMIN", Rate(30, 60, 30)),
    "read": ("RATE_LIMIT_READ", Rate(20, 1, 20)),
}


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    cache_url: str = "memory://"
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cache_ttl_seconds: int = 3600
    near_cache_ttl_seconds: int = 5
    near_cache_max_entries: int = 100_000
    metrics_token_required: bool = True
    event_clock_skew_seconds: int = 7 * 86400
    header_read_timeout_seconds: float = 10.0
    body_read_timeout_seconds: float = 60.0
    keep_alive_timeout_seconds: float = 5.0
    key_cache_ttl_seconds: float = 5.0
    jwt_public_key_file: str | None = None
    jwt_jwks_file: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_scopes_claim: str = "scope"
    log_format: str = "text"
    log_level: str = "info"
    rate_limit_api_tokens: bool = False
    results_max_concurrent: int = 4
    results_queue_seconds: float = 0.5
    results_timeout_seconds: float = 5.0
    fold_interval_seconds: float | None = None  # None: the database's own default
    ui_session_secret: str | None = field(default=None, repr=False)  # None: derived from API_TOKENS
    ui_session_hours: int = 12
    # Route class -> its rate, or None when that class is not limited (``off``).
    rate_limits: Mapping[str, Rate | None] = field(
        default_factory=lambda: {c: rate for c, (_, rate) in RATE_LIMIT_DEFAULTS.items()}
    )

    def rates(self) -> dict[str, Rate]:
        """The route classes that are limited, with their rates."""
        return {c: rate for c, rate in self.rate_limits.items() if rate is not None}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        tokens = tuple(t.strip() for t in env.get("API_TOKENS", "").split(",") if t.strip())
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            cache_url=env.get("CACHE_URL") or "memory://",
            api_tokens=tokens,
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8000),
            workers=_int(env, "WORKERS", 1),
            cache_ttl_seconds=_int(env, "CACHE_TTL_SECONDS", 3600),
            near_cache_ttl_seconds=_int(env, "NEAR_CACHE_TTL_SECONDS", 5),
            near_cache_max_entries=_int(env, "NEAR_CACHE_MAX_ENTRIES", 100_000),
            metrics_token_required=_bool(env, "METRICS_TOKEN_REQUIRED", True),
            event_clock_skew_seconds=_int(env, "EVENT_CLOCK_SKEW_SECONDS", 7 * 86400),
            header_read_timeout_seconds=_seconds(env, "HEADER_READ_TIMEOUT_SECONDS", 10.0),
            body_read_timeout_seconds=_seconds(env, "BODY_READ_TIMEOUT_SECONDS", 60.0),
            keep_alive_timeout_seconds=_seconds(env, "KEEP_ALIVE_TIMEOUT_SECONDS", 5.0),
            key_cache_ttl_seconds=_seconds(env, "KEY_CACHE_TTL_SECONDS", 5.0, allow_zero=True),
            jwt_public_key_file=env.get("JWT_PUBLIC_KEY_FILE") or None,
            jwt_jwks_file=env.get("JWT_JWKS_FILE") or None,
            jwt_issuer=env.get("JWT_ISSUER") or None,
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            jwt_scopes_claim=env.get("JWT_SCOPES_CLAIM") or "scope",
            rate_limit_api_tokens=_bool(env, "RATE_LIMIT_API_TOKENS", False),
            rate_limits={
                "assignment": _rate(env, "RATE_LIMIT_ASSIGNMENT", RATE_LIMIT_DEFAULTS["assignment"][1]),
                "ingestion": _rate(env, "RATE_LIMIT_INGESTION", RATE_LIMIT_DEFAULTS["ingestion"][1]),
                "admin": _rate(env, "RATE_LIMIT_ADMIN", RATE_LIMIT_DEFAULTS["admin"][1]),
                "read": _rate(env, "RATE_LIMIT_READ", RATE_LIMIT_DEFAULTS["read"][1]),
            },
            results_max_concurrent=_int(env, "RESULTS_MAX_CONCURRENT", 4),
            results_queue_seconds=_seconds(env, "RESULTS_QUEUE_SECONDS", 0.5, allow_zero=True),
            results_timeout_seconds=_seconds(env, "RESULTS_TIMEOUT_SECONDS", 5.0),
            fold_interval_seconds=_seconds(env, "FOLD_INTERVAL_SECONDS", None),
            ui_session_secret=env.get("UI_SESSION_SECRET") or None,
            ui_session_hours=_int(env, "UI_SESSION_HOURS", 12),
            log_format=_choice(env, "LOG_FORMAT", ("text", "json"), "text"),
            log_level=_choice(env, "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
        )

    @property
    def jwt_enabled(self) -> bool:
        return any((self.jwt_public_key_file, self.jwt_jwks_file, self.jwt_issuer, self.jwt_audience))


class ConfigurationError(ValueError):
    pass


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if name == "PORT" and not 0 <= value <= 65535:
        raise ConfigurationError(f"PORT must be from 0 to 65535, got {raw!r}")
    if name != "PORT" and value < 1:
        raise ConfigurationError(f"{name} must be positive, got {raw!r}")
    return value


@overload
def _seconds(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float: ...
@overload
def _seconds(env: Mapping[str, str], name: str, default: None, *, allow_zero: bool = False) -> float | None: ...
def _seconds(
    env: Mapping[str, str], name: str, default: float | None, *, allow_zero: bool = False
) -> float | None:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (0 <= value if allow_zero else 0 < value) or value > 86_400:
        low = "from 0 to" if allow_zero else "above 0 and at most"
        raise ConfigurationError(f"{name} must be a number of seconds {low} 86400, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


_RATE = re.compile(r"(\d+)/(s|min)(?:,burst=(\d+))?")
_SECONDS = {"s": 1, "min": 60}


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate | None:
    """``<requests>/<s|min>`` with an optional ``,burst=<n>`` (default: requests), or ``off``."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if raw.lower() == "off":
        return None
    match = _RATE.fullmatch(raw.replace(" ", "").lower())
    if match is None or int(match[1]) < 1 or (match[3] is not None and int(match[3]) < 1):
        raise ConfigurationError(
            f"{name} must be <requests>/<s|min> with an optional ,burst=<n> (positive whole"
            f" numbers, e.g. 100/min,burst=20) or off, got {raw!r}"
        )
    requests = int(match[1])
    return Rate(requests, _SECONDS[match[2]], int(match[3] or requests))


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        allowed = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise ConfigurationError(f"{name} must be {allowed}, got {raw!r}")
    return raw


def generate_token() -> str:
    return secrets.token_urlsafe(32)
