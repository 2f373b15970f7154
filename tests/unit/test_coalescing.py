"""The coalescer behind the batched writes: who goes with whom, and who fails."""

from __future__ import annotations

import asyncio

import pytest

from adapters.coalescing import Coalescer


class Recorder:
    """A group runner that records each group and holds it until ``release`` is set."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = asyncio.Event()

    async def __call__(self, items: list[str]) -> list[str]:
        self.groups.append(list(items))
        await self.release.wait()
        if "bad" in items:
            raise ValueError("a bad item")
        return [item.upper() for item in items]


def held(max_group: int = 10) -> tuple[Recorder, Coalescer[str, str]]:
    """A coalescer over a runner that holds every group until the test releases it."""
    runner = Recorder()
    return runner, Coalescer(runner, max_group=max_group)


async def test_the_first_runs_alone_and_those_that_wait_meanwhile_run_together() -> None:
    runner, coalescer = held()
    first = asyncio.create_task(coalescer.submit("a"))
    await asyncio.sleep(0)
    others = [asyncio.create_task(coalescer.submit(item)) for item in "bcd"]
    await asyncio.sleep(0)
    runner.release.set()
    assert await first == "A"
    assert [await task for task in others] == ["B", "C", "D"]
    assert runner.groups == [["a"], ["b", "c", "d"]]


async def test_no_group_is_larger_than_the_bound() -> None:
    runner, coalescer = held(max_group=3)
    tasks = [asyncio.create_task(coalescer.submit(str(i))) for i in range(8)]
    await asyncio.sleep(0)
    runner.release.set()
    assert await asyncio.gather(*tasks) == [str(i) for i in range(8)]
    assert [len(group) for group in runner.groups] == [3, 3, 2]


async def test_a_bad_item_fails_its_own_caller_alone() -> None:
    runner, coalescer = held()
    tasks = [asyncio.create_task(coalescer.submit(item)) for item in ("a", "bad", "c")]
    await asyncio.sleep(0)
    runner.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], ValueError)
    assert runner.groups[0] == ["a", "bad", "c"]
    assert sorted(map(tuple, runner.groups[1:])) == [("a",), ("bad",), ("c",)]


async def test_a_caller_that_left_is_not_run() -> None:
    runner, coalescer = held()
    first = asyncio.create_task(coalescer.submit("a"))
    await asyncio.sleep(0)
    gone = asyncio.create_task(coalescer.submit("gone"))
    staying = asyncio.create_task(coalescer.submit("b"))
    await asyncio.sleep(0)
    gone.cancel()
    runner.release.set()
    assert (await first, await staying) == ("A", "B")
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert runner.groups == [["a"], ["b"]]


async def test_close_lets_the_waiting_run() -> None:
    runner, coalescer = held()
    tasks = [asyncio.create_task(coalescer.submit(item)) for item in "ab"]
    await asyncio.sleep(0)
    closing = asyncio.create_task(coalescer.close())
    await asyncio.sleep(0)
    assert not closing.done()
    runner.release.set()
    await closing
    assert all(task.done() for task in tasks)
    assert [task.result() for task in tasks] == ["A", "B"]
