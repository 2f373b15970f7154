"""The Redis cache across a restart of Redis: a Redis server of the test's own, killed and
started again on the same port, while requests flow."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.redis.cache import RedisCache
from adapters.redis.near_cache import ForgetChannel, NearCache
from domain.assignment import Assignment
from tests.factories import an_experiment
from tests.polling import eventually_async

REDIS_PORT = int(os.environ.get("TEST_RESTART_REDIS_PORT", "18201"))


class SilentProxy:
    """A TCP relay to the test's Redis that, when Redis goes away, keeps the client's side of
    each connection open and says nothing, as a load balancer or a NAT in between does (or a
    Redis host that came back with no memory of the connection): the client learns that its
    pooled connection is dead only when it uses it, and then the relay resets it."""

    def __init__(self) -> None:
        self.port = 0
        # A loop of its own, in a thread: relaying in the test's loop would slow the client.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", REDIS_PORT)
        except OSError:
            client_writer.transport.abort()
            return

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

        upstream = asyncio.ensure_future(pump(client_reader, redis_writer))
        downstream = asyncio.ensure_future(pump(redis_reader, client_writer))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        if downstream.done() and not upstream.done():
            # Redis went away: the client hears nothing until it sends, then is reset.
            upstream.cancel()
            await asyncio.wait({upstream})
            try:
                await client_reader.read(1)
            except (OSError, asyncio.CancelledError):
                pass
        for task in (upstream, downstream):
            task.cancel()
        client_writer.transport.abort()
        redis_writer.transport.abort()

    def close(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class OwnRedis:
    """``redis-server`` on REDIS_PORT, no persistence: killed and restarted by the test."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self._directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {REDIS_PORT}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", REDIS_PORT)) == 0:
            pytest.skip(f"port {REDIS_PORT} is taken")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


class Breaker:
    """The breaker's changes, timed."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, bool]] = []

    def __call__(self, down: bool) -> None:
        self.changes.append((time.monotonic(), down))

    def trips_after(self, moment: float) -> int:
        return sum(1 for at, down in self.changes if down and at >= moment)


async def traffic(cache: RedisCache, until: float, workers: int = 16) -> None:
    """Requests from ``workers`` concurrent callers, as a busy server makes them: each one a
    connection of the pool."""
    exp = an_experiment("restart", primary=None, ids=f"r{secrets.token_hex(4)}-")

    async def caller(n: int) -> None:
        while time.monotonic() < until:
            user = f"u{n}-{secrets.token_hex(2)}"
            await cache.get_assignment(exp.id, user)
            first = exp.variants[0]
            await cache.set_assignment(Assignment(exp.id, user, first.id, first.name, exp.created_at))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(caller(n) for n in range(workers)))


@pytest.fixture
def proxy(own_redis: OwnRedis) -> Iterator[SilentProxy]:
    relay = SilentProxy()
    relay.start()
    yield relay
    relay.close()


async def test_after_a_restart_the_breaker_closes_once_and_stays_closed(
    own_redis: OwnRedis, proxy: SilentProxy
) -> None:
    breaker = Breaker()
    # A timeout far looser than the default: what is tested is the dead connections, and on a
    # test machine busy with other test workers a call through the relay took over a second.
    timeout = 2.5
    cache = RedisCache(proxy.url, timeout=timeout, retry_after=0.5, on_breaker=breaker)
    try:
        # The pool warmed first: 32 connections opened at once through the relay can outlast
        # the timeout on a machine busy with other tests (a trip seen in a CI-like run), and
        # opening them is not what this test is about.
        await traffic(cache, time.monotonic() + 1, workers=32)

        async def closed() -> bool:
            await cache.get_assignment("x", "y")  # a call lets an open breaker probe
            return not cache.breaker_open

        await eventually_async(closed, 10, "the breaker closed after the warm-up")
        steady = time.monotonic()
        await traffic(cache, steady + 1, workers=32)  # a connection per caller
        assert breaker.trips_after(steady) == 0, breaker.changes

        # Restarted while idle: every pooled connection is stale when the requests resume,
        # a few callers at first, then a burst that reaches deeper into the pool.
        own_redis.kill()
        own_redis.start()
        resumed = time.monotonic()
        for workers in (2, 32, 2, 32):
            await traffic(cache, time.monotonic() + 0.8, workers=workers)
        assert breaker.trips_after(resumed) <= 1, breaker.changes
        assert not cache.breaker_open, breaker.changes

        # Down while requests flow: the breaker opens once, and once Redis is back it closes
        # within the probe interval and stays closed.
        own_redis.kill()
        down_at = time.monotonic()
        # Requests flow until well past the latest moment the breaker may close (below).
        outage = asyncio.ensure_future(traffic(cache, down_at + 1.5 + 0.5 + 2 * timeout + 0.5 + 1.5, workers=32))
        await asyncio.sleep(1.5)
        own_redis.start()
        back_at = time.monotonic()
        await outage
        assert breaker.trips_after(down_at) == 1, breaker.changes
        closed = [at for at, down in breaker.changes if not down and at >= back_at]
        # Closed by the first probe after it is back: within the probe interval and one call.
        assert len(closed) == 1 and closed[0] - back_at < 0.5 + 2 * timeout + 0.5, breaker.changes
        assert not cache.breaker_open
        assert await cache.get_assignment("x", "y") is None
    finally:
        await cache.close()


async def test_a_forget_published_after_a_restart_reaches_the_other_process(
    own_redis: OwnRedis, proxy: SilentProxy
) -> None:
    prefix = f"restart-{secrets.token_hex(4)}:"

    def process() -> tuple[NearCache, ForgetChannel]:
        changes = ForgetChannel(proxy.url, key_prefix=prefix, retry_after=0.5, heartbeat=1)
        near = NearCache(RedisCache(proxy.url, key_prefix=prefix, retry_after=0.5), changes)
        return near, changes

    (one, _), (other, others_channel) = process(), process()
    exp = an_experiment("restart", primary=None, ids=f"r{secrets.token_hex(4)}-")
    try:
        await one.set_experiment(exp)
        await other.set_experiment(exp)  # the other process starts listening
        await eventually_async(lambda: others_channel.listening, 5)
        await one.forget_experiment(exp.id)  # and the publisher's connection is pooled
        await eventually_async(lambda: other._experiments.get(exp.id) is None, 2)

        own_redis.kill()
        own_redis.start()
        await eventually_async(lambda: not others_channel.listening, 5)  # its heartbeat found out
        await eventually_async(lambda: others_channel.listening, 5)  # and it subscribed again
        await other.set_experiment(exp)
        await one.forget_experiment(exp.id)  # once, over the publisher's stale connection
        await eventually_async(lambda: other._experiments.get(exp.id) is None, 2)
    finally:
        await one.close()
        await other.close()


