"""Work done for a client only while it waits: a disconnect cancels it (the results routes).

A results request reads many rows; a client that gives up (a closed tab, a proxy's timeout) and
asks again would otherwise leave its first read running on the database, and a burst of such
retries piles reads up there. The ASGI server says a client has gone by answering ``receive()``
with ``http.disconnect``, so a watcher reads ``receive`` beside the work and cancels the work
when that comes. Only routes without a body may be watched this way: the watcher consumes the
request's messages. It costs a task per request, so the hot routes (assignments) are not watched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request whose client went away first: the response reaches no one, but
the request log and the metrics record it with this status."""


class ClientGone(Exception):
    """The client disconnected before its response was ready; the work for it was cancelled."""


async def while_connected(receive: Any, work: Awaitable[T]) -> T:
    """``work``'s result, or ClientGone once the client disconnects before it is done; the work
    is then cancelled (its database statement with it, see Database.snapshot)."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        # A request without a body reads as one empty http.request; the next receive() waits
        # until the client disconnects (or the response is complete, when this is cancelled).
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:
            return  # a server that cannot say: the work runs to its end, as it did unwatched
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        result = await work
    except asyncio.CancelledError:
        # uncancel: this cancellation was the watcher's. Another one (the server stopping) stays.
        if gone and task.uncancel() == 0:
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()
    if gone:
        task.uncancel()  # the work swallowed the cancellation and finished: nothing is pending
    return result
