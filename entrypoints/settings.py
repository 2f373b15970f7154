"""Configuration from the environment, as API.md lists it, read once by the CLI or the factory."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    rate_limit_api_tokens: bool = False
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
            rate_limit_api_tokens=_bool(env, "RATE_LIMIT_API_TOKENS", False),
            rate_limits={
                c: _rate(env, name, default) for c, (name, default) in RATE_LIMIT_DEFAULTS.items()
            },
        )


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


def generate_token() -> str:
    return secrets.token_urlsafe(32)
