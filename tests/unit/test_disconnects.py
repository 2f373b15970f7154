"""while_connected: the work is cancelled when the client disconnects, and only then."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from entrypoints.http.disconnects import ClientGone, while_connected


class Client:
    """An ASGI ``receive`` as servers give it for a request without a body: one empty
    http.request, then nothing until the client disconnects."""

    def __init__(self) -> None:
        self.first = True
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self.first:
            self.first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_work_done_before_any_disconnect_is_returned() -> None:
    async def work() -> int:
        await asyncio.sleep(0.01)
        return 42

    assert await while_connected(Client().receive, work()) == 42
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_disconnect_cancels_the_work_and_says_so() -> None:
    client, cancelled = Client(), asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    asyncio.get_running_loop().call_later(0.05, client.gone.set)
    with pytest.raises(ClientGone):
        await asyncio.wait_for(while_connected(client.receive, work()), 5)
    assert cancelled.is_set()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(while_connected(Client().receive, work()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_receive_that_fails_leaves_the_work_running() -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("no receive here")

    async def work() -> str:
        await asyncio.sleep(0.02)
        return "done"

    assert await while_connected(broken, work()) == "done"
