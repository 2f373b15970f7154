"""Configuration from the environment, as API.md lists it, read once by the CLI or the factory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///./data/experiments.db"


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
    log_format: str = "text"
    log_level: str = "info"

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
            log_format=_choice(env, "LOG_FORMAT", ("text", "json"), "text"),
            log_level=_choice(env, "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
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
