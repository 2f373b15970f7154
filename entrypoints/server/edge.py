"""The HTTP edge below Litestar: what the server itself answers, as problem+json, and its timeouts.

- ``PathCheck`` wraps the app: a path whose percent-escapes are broken or decode to bytes that
  are not UTF-8 is a 400 (the server would decode them to U+FFFD, so that distinct raw ids
  became one).
- ``ProblemHttpToolsProtocol`` is uvicorn's httptools protocol with its own answers replaced:
  a request the parser refuses is a 400 problem+json naming what broke (not ``text/plain``), a
  request head above ``MAX_HEAD_BYTES`` a 431, and a head or body that does not arrive in time
  a 408, after which the connection is closed.
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from entrypoints.config.settings import Settings
from entrypoints.http.wire import ProblemOut

PROBLEM_JSON = b"application/problem+json"
MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together; httptools sets no bound of its own."""

_TOO_LARGE = f"the request line and headers are larger than {MAX_HEAD_BYTES // 1024} KiB"
_BROKEN_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})(.{0,2})", re.DOTALL)


def problem_bytes(status: int, detail: str) -> bytes:
    """The body of a problem document, for the answers given below Litestar."""
    return msgspec.json.encode(ProblemOut(status=status, title=HTTPStatus(status).phrase, detail=detail))


def path_problem(raw_path: bytes) -> str | None:
    """What is wrong with the percent-encoding of ``raw_path``, or None when it is sound."""
    if (broken := _BROKEN_ESCAPE.search(raw_path)) is not None:
        seen = (b"%" + broken[1]).decode("ascii", "backslashreplace")
        return f"the path holds {seen!r}, which is not a percent-escape (% and two hex digits)"
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError as exc:
        escapes = "".join(f"%{b:02X}" for b in exc.object[exc.start : exc.end])
        return f"the path's percent-escapes {escapes} are not UTF-8 once decoded"
    return None


class PathCheck:
    """ASGI wrapper: refuses a path whose percent-encoding is broken before anything routes it.

    Only a raw path holding ``%`` is looked at, so the common request costs one byte search.
    ``%2F`` is a sound escape and passes; README.md ("Paths") says what a ``/`` in an id does."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw is not None and b"%" in raw and (problem := path_problem(raw)) is not None:
            body = problem_bytes(400, problem)
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", PROBLEM_JSON),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)


class _Refused(Exception):
    """Raised in a parser callback: the request is refused for the reason given."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering problem+json and closing slow connections.

    Timers are armed only while something is awaited (a head that came in part, a body not all
    received), not per request: a request that arrives in one read arms none.
    ``head_timeout`` counts from the connection's opening for its first request and from the
    first bytes of each later one (between requests, uvicorn's keep-alive timeout closes an idle
    connection); ``body_timeout`` from the end of the head. Time the server itself holds the
    reading back (the app not reading a large body yet, or a pipelined request waiting for the
    one before) does not count against the client.
    """

    head_timeout: float | None = None
    body_timeout: float | None = None
    """Read from the settings by the first connection of each worker process: workers are
    started afresh and inherit the environment, not what the parent set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.head_timeout is None or cls.body_timeout is None:
            settings = Settings.from_env()
            cls.head_timeout = settings.header_read_timeout_seconds
            cls.body_timeout = settings.body_read_timeout_seconds
        self.head_timeout: float = cls.head_timeout
        self.body_timeout: float = cls.body_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            # Counted before this read is parsed, so a head that never ends costs at most the
            # bound and one read; the bytes of this read may be partly body, so they are only
            # judged at the next read (or exactly, in on_headers_complete).
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, _TOO_LARGE)
                return
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            refused = exc.__cause__ or exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.detail)
            else:
                # llhttp's reason ("Invalid header token") names the fault and holds no input.
                self._refuse(400, f"the request is not valid HTTP/1.1: {exc}")
            return
        if self.transport.is_closing():
            return
        if self._reading_head:
            if self._head_timer is None and self._head_bytes:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)
        elif self._body_timer is None and self.cycle is not None and self.cycle.more_body:
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "the request is not valid HTTP/1.1")

    # Parser callbacks

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._head_bytes > MAX_HEAD_BYTES:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > MAX_HEAD_BYTES:
                raise _Refused(431, _TOO_LARGE)
        try:
            super().on_headers_complete()
        except UnicodeDecodeError:
            raise _Refused(400, "the request target holds bytes that are not ASCII; percent-encode them") from None
        except httptools.HttpParserInvalidURLError:
            raise _Refused(400, "the request target is not a valid URL (or longer than 64 KiB)") from None
        self._reading_head = False  # the app has this request now

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._reading_head, self._head_bytes = True, 0
        super().on_message_complete()

    # Timeouts and answers

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _busy(self) -> bool:
        """Whether reading waits for the server, not the client."""
        return self.flow is not None and self.flow.read_paused

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._busy() or (self.cycle is not None and not self.cycle.response_complete):
            # A pipelined head waits while the request before it is served: not the client's doing.
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)
        elif self._head_bytes:
            self._refuse(408, f"the request head was not received within {self.head_timeout:g} seconds")
        else:
            self.transport.close()  # nothing was asked: nothing to answer

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self._busy():
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)
        else:
            self._refuse(408, f"the request body was not received within {self.body_timeout:g} seconds")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` with a problem document, unless a response has begun, and close."""
        self._cancel_timers()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app is at work on a request: from now on it reads a disconnect and its
            # response is dropped, so that no two responses interleave.
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle is not None and (
            cycle.response_started if not self._reading_head else not cycle.response_complete
        ):
            # This request was answered already (its body is what failed), or the request
            # before it is still being answered: no second answer, only the connection closed.
            self.transport.close()
            return
        self.logger.info("refused a request: %s %s", status, detail)
        body = problem_bytes(status, detail)
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_JSON + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
