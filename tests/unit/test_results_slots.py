"""ResultsSlots: at most N results reads at once, a bounded wait for a slot, then ResultsBusy."""

from __future__ import annotations

import asyncio

import pytest

from application.results import ResultsSlots
from domain.errors import ResultsBusy


async def hold(slots: ResultsSlots, release: asyncio.Event, entered: list[int], n: int) -> None:
    async with slots:
        entered.append(n)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_up_to_the_limit_enter_at_once_and_the_next_is_refused_with_retry_after() -> None:
    slots = ResultsSlots(2, 0)
    release, entered = asyncio.Event(), []
    holders = [asyncio.create_task(hold(slots, release, entered, n)) for n in range(2)]
    await settle()
    assert entered == [0, 1] and slots.running == 2
    with pytest.raises(ResultsBusy) as refused:
        async with slots:
            pytest.fail("entered past the limit")
    assert refused.value.retry_after_seconds == 1
    assert "results are busy" in str(refused.value)
    release.set()
    await asyncio.gather(*holders)
    assert slots.running == 0
    async with slots:  # free again
        assert slots.running == 1


async def test_a_request_past_the_limit_waits_for_a_slot_within_the_wait() -> None:
    slots = ResultsSlots(1, 5.0)
    release, entered = asyncio.Event(), []
    first = asyncio.create_task(hold(slots, release, entered, 0))
    await settle()
    second = asyncio.create_task(hold(slots, asyncio.Event(), entered, 1))
    await settle()
    assert entered == [0]  # waiting, not refused
    release.set()
    await first
    await settle()
    assert entered == [0, 1] and slots.running == 1
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert slots.running == 0


async def test_waiters_are_served_first_come_first_served_before_newcomers() -> None:
    slots = ResultsSlots(1, 5.0)
    release = [asyncio.Event() for _ in range(3)]
    entered: list[int] = []
    tasks = [asyncio.create_task(hold(slots, release[0], entered, 0))]
    await settle()
    tasks += [asyncio.create_task(hold(slots, release[n], entered, n)) for n in (1, 2)]
    await settle()
    release[0].set()
    await settle()
    # A newcomer arriving as the slot frees does not jump the queue.
    newcomer = asyncio.create_task(hold(slots, asyncio.Event(), entered, 9))
    await settle()
    release[1].set()
    release[2].set()
    await asyncio.gather(*tasks)
    await settle()
    assert entered == [0, 1, 2, 9]
    newcomer.cancel()
    await asyncio.gather(newcomer, return_exceptions=True)


async def test_the_wait_is_bounded() -> None:
    slots = ResultsSlots(1, 0.05)
    release = asyncio.Event()
    first = asyncio.create_task(hold(slots, release, [], 0))
    await settle()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ResultsBusy):
        async with slots:
            pass
    assert 0.04 <= loop.time() - started < 1
    release.set()
    await first
    assert slots.running == 0


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    slots = ResultsSlots(1, 5.0)
    entered: list[int] = []
    await slots.__aenter__()
    second = asyncio.create_task(hold(slots, asyncio.Event(), entered, 1))
    third = asyncio.create_task(hold(slots, asyncio.Event(), entered, 2))
    await settle()
    await slots.__aexit__(None, None, None)  # hands the slot to the second, which has not run yet
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    await settle()
    assert entered == [2] and slots.running == 1
    third.cancel()
    await asyncio.gather(third, return_exceptions=True)
    assert slots.running == 0


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        ResultsSlots(0, 1.0)


class Reads:
    """A store read that waits until released, counting how many were begun."""

    def __init__(self) -> None:
        self.begun = 0
        self.release = asyncio.Event()
        self.cancelled = 0

    async def __call__(self) -> int:
        self.begun += 1
        n = self.begun
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return n


async def test_requests_for_a_read_waiting_for_a_slot_share_it() -> None:
    slots = ResultsSlots(1, 5.0)
    busy, reads = Reads(), Reads()
    holder = asyncio.create_task(slots.shared("other", busy))
    await settle()
    asked = [asyncio.create_task(slots.shared("x", reads)) for _ in range(5)]
    await settle()
    assert reads.begun == 0  # all five wait for the one slot
    busy.release.set()
    await settle()
    reads.release.set()
    assert await asyncio.gather(*asked) == [1] * 5  # one read, five answers
    assert reads.begun == 1
    await holder


async def test_a_request_after_its_read_has_begun_reads_anew() -> None:
    # The begun read's snapshot may predate what this request's client just wrote.
    slots = ResultsSlots(2, 5.0)
    reads = Reads()
    first = asyncio.create_task(slots.shared("x", reads))
    await settle()
    assert reads.begun == 1
    second = asyncio.create_task(slots.shared("x", reads))
    await settle()
    assert reads.begun == 2
    reads.release.set()
    assert (await first, await second) == (1, 2)


async def test_different_keys_are_never_shared() -> None:
    slots = ResultsSlots(1, 5.0)
    busy, reads = Reads(), Reads()
    holder = asyncio.create_task(slots.shared("other", busy))
    await settle()
    x, y = asyncio.create_task(slots.shared("x", reads)), asyncio.create_task(slots.shared("y", reads))
    await settle()
    busy.release.set()
    reads.release.set()
    assert sorted(await asyncio.gather(x, y)) == [1, 2]
    await holder


async def test_a_shared_read_goes_on_while_anyone_waits_and_stops_when_no_one_does() -> None:
    slots = ResultsSlots(1, 5.0)
    reads = Reads()
    busy = Reads()
    holder = asyncio.create_task(slots.shared("other", busy))
    await settle()
    a, b = asyncio.create_task(slots.shared("x", reads)), asyncio.create_task(slots.shared("x", reads))
    await settle()
    busy.release.set()
    await settle()
    assert reads.begun == 1
    a.cancel()  # one client went away: the other still waits for the read
    await asyncio.gather(a, return_exceptions=True)
    await settle()
    assert reads.cancelled == 0
    b.cancel()  # the last one went away: the read is cancelled, and its slot freed
    await asyncio.gather(b, return_exceptions=True)
    await settle()
    assert reads.cancelled == 1 and slots.running == 0
    c = asyncio.create_task(slots.shared("x", reads))  # a newcomer reads anew
    await settle()
    reads.release.set()
    assert await c == 2
    await holder


async def test_everyone_sharing_a_read_that_gets_no_slot_is_refused() -> None:
    slots = ResultsSlots(1, 0.05)
    busy = Reads()
    holder = asyncio.create_task(slots.shared("other", busy))
    await settle()
    asked = [asyncio.create_task(slots.shared("x", Reads())) for _ in range(3)]
    outcomes = await asyncio.gather(*asked, return_exceptions=True)
    assert all(isinstance(o, ResultsBusy) for o in outcomes)
    busy.release.set()
    await holder
    assert slots.running == 0
