"""Checks the CLI runs before the server starts, so that every bad setting is named on one line."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from entrypoints.config.settings import DEFAULT_DATABASE_URL, ConfigurationError, Settings

# The one directory a start may create: `make run` on a fresh checkout has no ./data yet.
_DEFAULT_SQLITE_DIRECTORY = Path(DEFAULT_DATABASE_URL.removeprefix("sqlite:///")).parent


def read_settings(env: Mapping[str, str]) -> tuple[Settings | None, dict[str, str]]:
    """The settings, and a message for each variable that cannot be read (by variable name).

    ``Settings.from_env`` stops at the first bad value. When it fails, each variable is read
    again on its own, which finds every bad one without a second list of settings to keep in
    step with it; the settings are then read without the bad ones, so that the checks that use
    only good ones still run. Only a failed full read is taken apart this way: a setting that
    is valid only together with another one could look bad on its own. A fault that only the
    full read shows is reported as it is, under the empty name, with no settings."""
    try:
        return Settings.from_env(env), {}
    except ConfigurationError:
        pass
    problems: dict[str, str] = {}
    for name in sorted(env):
        try:
            Settings.from_env({name: env[name]})
        except ConfigurationError as exc:
            problems[name] = str(exc)
    try:
        settings = Settings.from_env({k: v for k, v in env.items() if k not in problems})
    except ConfigurationError as exc:
        problems[""] = str(exc)
        return None, problems
    return settings, problems


def sqlite_directory_problem(database_url: str) -> str | None:
    """A SQLite file may be new (a new deployment), its directory may not: a typo in the path
    would otherwise start the service on a new, empty database in a new directory."""
    if database_url == "memory://":
        return None
    from adapters.sqlalchemy.engine import UnsupportedDatabase, parse_url

    try:
        url = parse_url(database_url, asynchronous=False)
    except UnsupportedDatabase:
        return None  # preparing the database reports it, as for any other unusable URL
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    directory = Path(url.database).expanduser().parent
    if directory.is_dir():
        return None
    if directory.resolve() == _DEFAULT_SQLITE_DIRECTORY.resolve():
        return None
    return f"DATABASE_URL: directory {str(directory)!r} does not exist; create it first"


def listen_problem(host: str, port: int | None) -> str | None:
    """Whether the server can listen on HOST and PORT, found as the server itself would.

    The server resolves HOST with getaddrinfo and binds every address it gets, with
    SO_REUSEADDR on POSIX (asyncio's and uvloop's create_server, and uvicorn's own socket for
    several workers), so the probe does the same and closes its sockets before the server
    binds. Another process may still take the port in between: the server's own error stands
    for that. Without a port (PORT could not be read), HOST is only resolved."""
    try:
        addresses = socket.getaddrinfo(
            host,
            port or 0,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
            flags=socket.AI_PASSIVE,
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return f"HOST {host!r} does not resolve to an address: {reason}"
    if port is None:
        return None
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as probe:
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                # As create_server does: each IPv6 address binds apart from the IPv4 ones.
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                # One line for the setting, however many addresses HOST has.
                return _bind_problem(host, port, address[0], exc)
    return None


def _bind_problem(host: str, port: int, address: str, exc: OSError) -> str:
    where = f"{address} (HOST {host!r})" if address != host else f"HOST {host!r}"
    if exc.errno == errno.EADDRINUSE:
        return f"PORT {port} is already in use on {where}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"HOST {host!r} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"PORT {port} on {where} needs privileges this process does not have"
    return f"cannot listen on PORT {port} on {where}: {exc.strerror or exc}"
