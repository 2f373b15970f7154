"""Log lines, one format for all of them: the request log, the service's and uvicorn's records.

``LOG_FORMAT=text`` (a readable line) or ``json`` (one object a line); ``LOG_LEVEL``. Every
record is one line: in text, control characters (a newline in an id) are escaped, so what a
client sends cannot start a line of its own; JSON's escaping does the same in json.

The request log is on the request path of every request, so it is not made of
``logging.LogRecord``\\ s: ``RequestMetrics`` appends a tuple per request, and ``RequestLog``
turns them into lines and writes them in batches (every ``FLUSH_SECONDS``, as soon as
``MAX_PENDING`` wait, and at shutdown), each batch in ``os.write`` calls of whole lines of at
most ``PIPE_BUF`` bytes together: with several workers on one stderr pipe, lines never mix.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import select
import time
from collections.abc import Iterable
from time import perf_counter
from typing import Any

import msgspec

REQUEST_LOGGER = "experiments.request"
HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}").fullmatch
_PIPE_BUF = getattr(select, "PIPE_BUF", 4096)
_json = msgspec.json.Encoder()
# What the request path appends: start (perf_counter), seconds, method, route, status, id.
Entry = tuple[float, float, str, str, int, bytes]


def escape(value: str) -> str:
    """The value on one line: control characters (newlines, ESC…) as backslash escapes."""
    if value.isprintable():
        return value
    return value.encode("unicode_escape").decode("ascii")


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the part to the second is formatted once a
    second, not once a line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def stamp(self, at: float) -> str:
        return self.stamp_ms(int(at * 1000))

    def stamp_ms(self, ms: int) -> str:
        second, fraction = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{fraction:03d}Z"


class _LineFormatter(logging.Formatter):
    """The formatter of the records of every logger the service configures (its own and
    uvicorn's): timestamp, level, logger, message, and the request id when a record has one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._clock = _Clock()

    def _parts(self, record: logging.LogRecord) -> tuple[str, str, str | None, str | None]:
        message = record.getMessage()
        trace = None
        if record.exc_info:
            trace = self.formatException(record.exc_info)
        elif record.exc_text:
            trace = record.exc_text
        request_id = getattr(record, "request_id", None)
        return self._clock.stamp(record.created), message, trace, request_id


class TextFormatter(_LineFormatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp, message, trace, request_id = self._parts(record)
        line = f"{stamp} {record.levelname} {record.name} {escape(message)}"
        if request_id is not None:
            line += f" request_id={escape(str(request_id))}"
        if trace is not None:
            # The traceback on the record's line too, escaped: an exception's message can hold
            # what a client sent.
            line += f" exc={escape(trace)}"
        return line


class JsonFormatter(_LineFormatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp, message, trace, request_id = self._parts(record)
        fields: dict[str, Any] = {
            "ts": stamp,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        if request_id is not None:
            fields["request_id"] = str(request_id)
        if trace is not None:
            fields["exc"] = trace
        return _json.encode(fields).decode()


def logging_config(log_format: str, log_level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` that uvicorn applies in every worker (its
    ``log_config``): uvicorn's loggers and the service's write through one formatter to stderr."""
    formatter = f"entrypoints.telemetry.logs.{'Json' if log_format == 'json' else 'Text'}Formatter"
    level = log_level.upper()
    handler = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": handler,
            "uvicorn.error": {"level": level},
            "uvicorn.access": handler,
            "uvicorn.asgi": {"level": level},
            "experiments": handler,
        },
        # Other libraries' records (asyncio's, SQLAlchemy's warnings) in the same format; their
        # info and debug chatter stays out even at LOG_LEVEL=debug.
        "root": {"handlers": ["stderr"], "level": "ERROR" if level == "ERROR" else "WARNING"},
    }


class RequestIds:
    """The id of each request: the client's ``X-Request-ID`` when it is a safe one (letters,
    digits, ``._:-``, at most 128), else a prefix random per process and a counter, unique
    across processes and restarts without a random draw per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode()
        self._counter = itertools.count(1)

    def of(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        for name, value in headers:
            if name == HEADER:
                if _VALID_ID(value):
                    return value
                break
        return b"%s-%x" % (self._prefix, next(self._counter))


class RequestLog:
    """One line per request, written in batches; the request path appends an ``Entry`` to
    ``pending`` and calls ``flush`` once ``MAX_PENDING`` wait."""

    FLUSH_SECONDS = 0.2
    MAX_PENDING = 1024

    def __init__(self, log_format: str = "text", log_level: str = "info", fd: int = 2) -> None:
        self.pending: list[Entry] = []
        # At warning and above only the requests answered 5xx (at level error) are written.
        self.every_request = logging.getLevelName(log_level.upper()) <= logging.INFO
        self._json = log_format == "json"
        self._quoted: dict[str, str] = {}
        self._fd = fd
        self._clock = _Clock()
        self._flusher: asyncio.Task[None] | None = None

    def _lines(self, entries: list[Entry], wall: float) -> bytes:
        """The batch's lines, made with one f-string each: a dict or a record per line would
        cost the hot route more than the rest of its logging. Only the method comes from the
        client unchecked (the id was checked, the route is a template of the app): it is
        escaped (text) or JSON-encoded, once per distinct value."""
        json = self._json
        quoted = self._quoted
        stamp_ms = self._clock.stamp_ms
        lines = []
        last_ms = -1
        stamp = ""
        for start, seconds, method, route, status, rid in entries:
            ms = int((wall + start + seconds) * 1000)
            if ms != last_ms:  # at thousands of requests a second, most lines share their stamp
                last_ms = ms
                stamp = stamp_ms(ms)
            m = quoted.get(method) or self._quote(method)
            r = quoted.get(route) or self._quote(route)
            if json:
                lines.append(
                    f'{{"ts":"{stamp}","level":"{"error" if status >= 500 else "info"}",'
                    f'"logger":"{REQUEST_LOGGER}","msg":"request","method":{m},"route":{r},'
                    f'"status":{status},"duration_ms":{seconds * 1000:.3f},'
                    f'"request_id":"{rid.decode()}"}}\n'
                )
            else:
                lines.append(
                    f"{stamp} {'ERROR' if status >= 500 else 'INFO'} {REQUEST_LOGGER} {m} {r} "
                    f"{status} {seconds * 1000:.3f}ms request_id={rid.decode()}\n"
                )
        return "".join(lines).encode()

    def _quote(self, value: str) -> str:
        """The value as it goes in a line: escaped (text) or a JSON string, at most 64 chars."""
        short = value[:64]
        quoted = _json.encode(short).decode() if self._json else escape(short)
        if len(self._quoted) < 256:  # the routes and methods seen: few, unless a client varies
            self._quoted[value] = quoted
        return quoted

    def flush(self) -> None:
        if not self.pending:
            return
        entries, self.pending = self.pending, []
        # perf_counter to wall clock once a batch, not a time.time() per request.
        wall = time.time() - perf_counter()
        self._write(self._lines(entries, wall))

    def _write(self, data: bytes) -> None:
        """Whole lines, at most PIPE_BUF bytes a write: atomic on a pipe, so several workers'
        batches interleave only between lines."""
        view = memoryview(data)
        position, size = 0, len(data)
        try:
            while position < size:
                end = size
                if size - position > _PIPE_BUF:
                    cut = data.rfind(b"\n", position, position + _PIPE_BUF)
                    # A line longer than PIPE_BUF (none of the request log's) goes whole.
                    end = cut + 1 if cut >= 0 else (data.find(b"\n", position) + 1 or size)
                while position < end:
                    position += os.write(self._fd, view[position:end])
        except OSError:
            pass  # stderr closed or full and non-blocking: the lines are lost, not the requests

    async def start(self) -> None:
        async def flush_every() -> None:
            while True:
                await asyncio.sleep(self.FLUSH_SECONDS)
                self.flush()

        self._flusher = asyncio.get_running_loop().create_task(flush_every())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self.flush()


def request_id(scope: Any) -> str | None:
    """The id ``RequestMetrics`` gave this request, for records about it."""
    rid = scope.get("request_id")
    return None if rid is None else rid.decode()
