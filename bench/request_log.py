"""What the request log costs the cached-assignment route, measured in-process: the real app
(memory store and cache) driven through its ASGI callable in a loop, no sockets, no wrk.

    .venv/bin/python bench/request_log.py [--requests 2000] [--rounds 40]

Three apps in one process: LOG_LEVEL=info (a text line per request), LOG_FORMAT=json (a JSON
line) and LOG_LEVEL=warning (request ids, no lines); stderr pointed at a file, as a server's
would be. Rounds of short blocks, one block per app in turn; prints each app's median
throughput (requests per CPU second) and the median of the per-round ratios to warning. Run it with
``PYTHONPATH=<other checkout>`` to measure another commit's app (arms it cannot configure
are skipped)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from entrypoints.http.app import create_app
from entrypoints.config.container import create_container
from entrypoints.config.settings import Settings

TOKEN = "bench-token"
HEADERS = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {TOKEN}".encode()), (b"accept", b"*/*")]


def scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(HEADERS),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    await app(scope(method, path), receive, send)
    return answer["status"], answer["body"]


async def started(app: Any) -> tuple[asyncio.Queue, asyncio.Task]:
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    return inbox, task


class Arm:
    """One app, started, with an experiment and a cached assignment to ask for again."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(create_container(settings))
        self.per_cpu_second: list[float] = []

    async def start(self) -> None:
        self.inbox, self.lifespan = await started(self.app)
        experiment = {
            "name": "bench",
            "primary_event_type": "purchase",
            "variants": [
                {"name": "control", "traffic_percentage": 50, "is_control": True},
                {"name": "green", "traffic_percentage": 50},
            ],
        }
        status, body = await call(self.app, "POST", "/experiments", json.dumps(experiment).encode())
        assert status == 201, body
        self.path = f"/experiments/{json.loads(body)['id']}/assignment/user-1"
        status, body = await call(self.app, "GET", self.path)
        assert status == 200, body

    async def block(self, requests: int) -> None:
        """Cache-hit assignments one after another; their throughput per CPU second: on a
        shared machine other work takes the cores away for a while, and wall time would put
        that in whichever arm was running."""
        app, template = self.app, scope("GET", self.path)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            pass

        begin = time.process_time()
        for _ in range(requests):
            request = dict(template)
            request["headers"] = list(HEADERS)
            await app(request, receive, send)
        self.per_cpu_second.append(requests / (time.process_time() - begin))

    async def stop(self) -> None:
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        await self.lifespan


async def measure(arms: dict[str, Arm], requests: int, rounds: int) -> None:
    """Short blocks, the arms in turn (the order rotating), many rounds: the machine's drift
    falls on every arm alike."""
    for arm in arms.values():
        await arm.start()
        await arm.block(requests)  # warm up
        arm.per_cpu_second.clear()
    names = list(arms)
    for i in range(rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            await arms[name].block(requests)
    for arm in arms.values():
        await arm.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="per block")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    base = Settings(database_url="memory://", api_tokens=(TOKEN,))
    arms_settings = {"info": base}
    if "log_level" in {f.name for f in dataclasses.fields(Settings)}:
        arms_settings["json"] = dataclasses.replace(base, log_format="json")
        arms_settings["warning"] = dataclasses.replace(base, log_level="warning")
    # The request log writes to fd 2: a file, as a server's stderr redirected would be.
    out = tempfile.NamedTemporaryFile(prefix="request-log-", suffix=".log", delete=False)
    saved = os.dup(2)
    os.dup2(out.fileno(), 2)
    try:
        arms = {name: Arm(settings) for name, settings in arms_settings.items()}
        asyncio.run(measure(arms, args.requests, args.rounds))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    results = {name: arm.per_cpu_second for name, arm in arms.items()}
    lines = sum(1 for _ in open(out.name, "rb"))
    os.unlink(out.name)
    for name, figures in results.items():
        print(f"{name:8} median {statistics.median(figures):8.0f} req/CPU-s over {len(figures)} blocks")
    for name in ("info", "json"):
        if name in results and "warning" in results:
            ratios = [a / b for a, b in zip(results[name], results["warning"], strict=True)]
            print(f"{name} / warning, paired by round: median {statistics.median(ratios):.3f}, "
                  f"quartiles {statistics.quantiles(ratios, n=4)[0]:.3f}-{statistics.quantiles(ratios, n=4)[2]:.3f}")
    print(f"lines written: {lines}", file=sys.stderr)


if __name__ == "__main__":
    main()
