"""Instructions per cached assignment, counted by callgrind: repeatable whatever else runs.

The service's app and the same-shape endpoint (bench/trivial_app.py) are each called in
process, through their whole ASGI stack (the request metrics, the request log, the path check,
Litestar, the bearer check, the use case, the memory cache), for a warm assignment; callgrind
counts the instructions of those calls only (its instrumentation is switched on around the
loop). With ``--old REV`` a build of another revision is counted too, from a temporary
worktree. uvicorn's share (parsing, the protocol) is not in these figures; bench/cache_hit_ab.sh
measures the whole server from outside.

    python bench/cache_hit_instructions.py [--requests 2000] [--old d88c89f]

Needs valgrind (Debian's package). One arm takes one to two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "name": "a",
    "primary_event_type": "p",
    "variants": [
        {"name": "c", "traffic_percentage": 50, "is_control": True},
        {"name": "g", "traffic_percentage": 50},
    ],
}


def _scope(path: str, token: str, method: str = "GET", extra: tuple = ()) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 1),
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer " + token.encode()), *extra],
    }


async def _call(app, scope: dict, body: bytes = b"") -> list[dict]:  # type: ignore[no-untyped-def]
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(dict(scope, state={}), receive, send)
    return sent


async def _started(app):  # type: ignore[no-untyped-def]
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    asyncio.get_running_loop().create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    return app


async def _arm(arm: str, requests: int) -> None:
    """In the process callgrind watches: build the arm, warm it, count ``requests`` calls."""
    sys.path.insert(0, os.getcwd())
    if arm == "shape":
        from bench.trivial_app import TOKEN, create

        app = await _started(create())
        scope = _scope("/shape/experiments/" + "0" * 32 + "/assignment/u1", TOKEN)
    else:
        os.environ.update(API_TOKENS="t", CACHE_URL="memory://")
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        from adapters.sqlalchemy.migrate import upgrade
        from entrypoints.asgi import app_from_env

        upgrade(os.environ["DATABASE_URL"])
        app = await _started(app_from_env())
        body = json.dumps(BODY).encode()
        headers = ((b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()))
        sent = await _call(app, _scope("/experiments", "t", "POST", headers), body)
        scope = _scope(f"/experiments/{json.loads(sent[1]['body'])['id']}/assignment/u1", "t")
    assert (await _call(app, scope))[0]["status"] == 200
    for _ in range(500):
        await _call(app, scope)
    pid = str(os.getpid())
    # Blocking on purpose: nothing of this process runs while the instrumentation switches.
    subprocess.run(["callgrind_control", "-i", "on", pid], capture_output=True, check=False)  # noqa: ASYNC221
    for _ in range(requests):
        await _call(app, scope)
    subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, check=False)  # noqa: ASYNC221


def _count(arm: str, checkout: Path, requests: int) -> int:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg",
             sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--requests", str(requests)],
            cwd=checkout, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True,
            check=False,
        )
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1].strip()) // requests
    raise SystemExit(f"callgrind gave no count for {arm}:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--old", help="a revision to count beside this checkout (e.g. d88c89f)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        asyncio.run(_arm(args.arm, args.requests))
        return
    arms = [("same-shape endpoint", "shape", ROOT), ("this checkout", "main", ROOT)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.old:
            old = Path(tmp) / "old"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), args.old], cwd=ROOT, check=True)
            arms.append((args.old, "main", old))
        try:
            counts = [(name, _count(arm, checkout, args.requests)) for name, arm, checkout in arms]
        finally:
            if args.old:
                subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    floor = counts[0][1]
    print(f"{'arm':24} {'instructions/request':>22} {'floor/arm':>10}")
    for name, count in counts:
        print(f"{name:24} {count:>22,} {floor / count:>10.2f}")


if __name__ == "__main__":
    main()
