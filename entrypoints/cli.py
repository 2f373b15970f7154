"""The command line: `serve` (migrate, then run the server), `migrate`, `rebuild-aggregates`
here, on the database; every other command (create, list, show, status, results, export,
import, keys) is the client's, which talks to a server by URL and key (clients/python)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from entrypoints.config.settings import ConfigurationError, Settings, generate_token
from entrypoints.config.startup import listen_problem, read_settings, sqlite_directory_problem

# How long uvicorn's supervisor waits for a worker process to answer its health check before
# killing it and starting another. Uvicorn's 5 s is shorter than a worker's start on a busy
# machine (a new interpreter, then the app's imports, before the answering thread runs), so a
# worker still starting was killed, and its replacement started from nothing again.
WORKER_HEALTHCHECK_SECONDS = 30


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def migrate(settings: Settings) -> None:
    if settings.database_url == "memory://":
        return
    from adapters.sqlalchemy.migrate import upgrade

    upgrade(settings.database_url)


def check_store(settings: Settings) -> None:
    """Connect once as the server will (its async driver, its pool), so that a URL only that
    driver rejects fails here, at start, and not as 503s on every request."""
    if settings.database_url == "memory://":
        return
    import asyncio

    from entrypoints.config.container import build_store

    async def first_query() -> None:
        store = build_store(settings)
        try:
            await store.list_experiments(1, 0)
        finally:
            await store.close()

    asyncio.run(first_query())


def _describe(exc: BaseException) -> str:
    # The driver's first line says what failed (refused, unknown host, no such database)
    # without the URL, so no password can reach the terminal.
    cause = exc.__cause__ or exc
    orig = getattr(cause, "orig", None) or cause
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def serve(settings: Settings) -> int:
    import uvicorn

    from entrypoints.telemetry.logs import logging_config

    if not settings.api_tokens:
        token = generate_token()
        # Every worker process reads the same token from the environment it inherits.
        os.environ["API_TOKENS"] = token
        print(f"API_TOKENS is not set; generated a bearer token for this run: {token}", flush=True)
    from entrypoints.server.edge import ProblemHttpToolsProtocol

    uvicorn.run(
        "entrypoints.asgi:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        loop="uvloop",
        # httptools, answering problem+json and timing out slow heads and bodies (edge.py).
        http=ProblemHttpToolsProtocol,
        # An idle keep-alive connection is closed after this (5 s, uvicorn's default, unless
        # set): behind a proxy that keeps its own connections open longer, longer than its.
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        # No limit_concurrency: uvicorn would answer past it with a text/plain 503, and the
        # read timeouts already bound how long a connection is held (README.md, "Connections").
        # One line per request comes from the app's request log (entrypoints/telemetry/logs.py), in the
        # format of every other line; uvicorn's access log would be a second, slower one.
        log_config=logging_config(settings.log_format, settings.log_level),
        log_level=settings.log_level,
        access_log=False,
    )
    return 0


def _metrics_directory(command: str, settings: Settings) -> None:
    """Workers write their metrics to files in PROMETHEUS_MULTIPROC_DIR and a scrape adds them
    up (prometheus_client's multiprocess mode). A fresh directory per run: files left by an
    earlier run would add its counts to this one's. Otherwise the variable is removed: the
    client takes its mere presence (even empty) for multiprocess mode, and would write its
    files in the working directory. Runs before anything imports the client."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.pop("prometheus_multiproc_dir", None)
    if command != "serve" or settings.workers <= 1:
        return
    import atexit
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="experiments-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def startup_problems(command: str) -> tuple[Settings | None, list[str]]:
    """Every bad setting, each named once, before the server starts: fixing one at a time and
    starting again to find the next is slow, and uvicorn's own errors run over several lines."""
    settings, unreadable = read_settings(os.environ)
    problems = list(unreadable.values())
    if settings is None:
        return None, problems
    _metrics_directory(command, settings)
    from entrypoints.config.container import build_cache
    from entrypoints.http.security.jwt_bearer import JwtVerifier

    for check in (build_cache, JwtVerifier.from_settings):
        try:
            check(settings)
        except ConfigurationError as exc:
            problems.append(str(exc))
    directory = sqlite_directory_problem(settings.database_url)
    if directory is not None:
        problems.append(directory)
    else:
        try:
            migrate(settings)
            check_store(settings)
        except ConfigurationError as exc:
            problems.append(str(exc))
        except Exception as exc:
            problems.append(f"cannot prepare the database: {_describe(exc)}")
    # Last, so that the probe's port is free as close as possible to when the server binds it;
    # a value that could not be read is left out rather than probed as its default.
    if command == "serve" and "HOST" not in unreadable:
        port = None if "PORT" in unreadable else settings.port
        listen = listen_problem(settings.host, port)
        if listen is not None:
            problems.append(listen)
    return settings, problems


LOCAL = {
    "serve": "Migrate the database, then serve the API.",
    "migrate": "Bring the database (DATABASE_URL) to the latest schema.",
    "rebuild-aggregates": "Recompute the pre-aggregated results from raw events, with a progress bar.",
}
"""The commands that run here, on the database; the client's (clients/python) talk HTTP."""


def main(argv: list[str] | None = None) -> int:
    """The client's command line with these commands added, or these alone when the client is
    not installed beside the service."""
    try:
        from experiments_client.cli import main as client_main
    except ModuleNotFoundError as exc:
        if exc.name != "experiments_client":
            raise
        parser = argparse.ArgumentParser(prog="python -m entrypoints", description=__doc__)
        parser.add_argument("command", choices=list(LOCAL))
        return run_local(parser.parse_args(argv).command)
    return client_main(argv, prog="python -m entrypoints", extend=add_local_commands)


def add_local_commands(commands: Any) -> None:
    """Add this side's commands to the client's (an argparse sub-parsers action)."""
    for name, help in LOCAL.items():
        command = commands.add_parser(name, help=help, description=help)
        command.set_defaults(run=lambda _args, name=name: run_local(name))


def run_local(command: str) -> int:
    settings, problems = startup_problems(command)
    if settings is None or problems:
        for problem in problems:
            _fail(problem)
        return 2
    if command == "migrate":
        print("database is at the latest migration", flush=True)
        return 0
    if command == "rebuild-aggregates":
        return rebuild_aggregates(settings)
    return serve(settings)


def rebuild_aggregates(settings: Settings) -> int:
    """Recompute the pre-aggregated results from raw events (safe while the service runs),
    with a progress bar of its steps on stderr."""
    import asyncio

    from tqdm import tqdm

    from entrypoints.config.container import build_store

    async def rebuild() -> None:
        store = build_store(settings)
        with tqdm(desc="rebuilding", unit="step", file=sys.stderr) as bar:

            def progress(done: int, steps: int, what: str) -> None:
                bar.total = steps
                bar.set_postfix_str(what)
                bar.update(done - bar.n)

            try:
                await store.rebuild_aggregates(progress)
            finally:
                await store.close()

    asyncio.run(rebuild())
    print("aggregates rebuilt from raw events", flush=True)
    return 0
