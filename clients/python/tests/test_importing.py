"""The importer against a fake service: batches in file order, rejects with reasons, resuming
after an interruption without counting an event twice."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from experiments_client.errors import FieldError, ValidationError
from experiments_client.importing import Importer, ImportFailed, ImportState
from experiments_client.models import TrackResult


class FakeService:
    """Stores events by id, as the service does: a batch with a bad event stores nothing and
    names it by index; a known event id is a duplicate."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.batches = 0
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def send(self, events: list[dict[str, Any]]) -> TrackResult:
        with self._lock:
            if self.fail_after is not None and self.batches >= self.fail_after:
                raise ConnectionError("the service went away")
            self.batches += 1
            bad = [FieldError(f"events[{i}].event_type", "must not be 'bad'")
                   for i, e in enumerate(events) if e["event_type"] == "bad"]
            if bad:
                raise ValidationError(422, "Unprocessable Entity", "bad events", bad)
            fresh = [e for e in events if e["event_id"] not in self.stored]
            self.stored.update({e["event_id"]: e for e in fresh})
            return TrackResult(len(fresh), len(events) - len(fresh))


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def event_line(i: int, event_type: str = "buy", **extra: Any) -> str:
    return json.dumps({"experiment_id": "x", "user_id": f"u{i}", "event_type": event_type, **extra})


def rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_jsonl_file_goes_in_batches_with_bad_lines_set_aside(tmp_path: Path) -> None:
    lines = [event_line(i) for i in range(25)]
    lines[3] = "{not json"
    lines[7] = json.dumps({"user_id": "u7", "event_type": "buy"})
    lines[11] = event_line(11, value="12")
    lines[13] = event_line(13, "bad")
    lines[20] = ""
    source = write_jsonl(tmp_path / "events.jsonl", lines)
    service = FakeService()
    state = Importer(source, service.send, batch_size=4, concurrency=3).run()
    assert (state.accepted, state.duplicates, state.rejected, state.done) == (20, 0, 4, True)
    assert len(service.stored) == 20
    found = rejects(tmp_path / "events.jsonl.rejects.jsonl")
    assert [r["line"] for r in found] == [4, 8, 12, 14]
    assert found[0]["reason"].startswith("not JSON") and found[1]["reason"] == "experiment_id: is missing"
    assert found[2]["reason"] == "value: must be a finite number"
    assert found[3]["reason"] == "event_type: must not be 'bad'" and json.loads(found[3]["text"])["user_id"] == "u13"


def test_a_csv_file_with_quoted_newlines_and_json_properties(tmp_path: Path) -> None:
    source = tmp_path / "events.csv"
    source.write_text(
        "user_id,event_type,value,properties,timestamp\n"
        'u1,buy,1.5,"{""note"":\n ""a, b""}",2026-12-01T00:00:00Z\n'
        "u2,view,,,\n"
        "u3,buy,abc,,\n"
        "u4,buy\n"
    )
    service = FakeService()
    state = Importer(source, service.send, experiment_id="x").run()
    assert (state.accepted, state.rejected) == (2, 2)
    by_user = {e["user_id"]: e for e in service.stored.values()}
    assert by_user["u1"]["properties"] == {"note": "a, b"} and by_user["u1"]["value"] == 1.5
    assert by_user["u2"] == {"user_id": "u2", "event_type": "view", "experiment_id": "x", "event_id": by_user["u2"]["event_id"]}
    assert [r["line"] for r in rejects(tmp_path / "events.csv.rejects.jsonl")] == [5, 6]  # lines of the file


def test_a_csv_header_that_names_no_event_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "events.csv"
    source.write_text("who,what\nu1,buy\n")
    with pytest.raises(ImportFailed, match="header"):
        Importer(source, FakeService().send).run()


def test_an_interrupted_import_resumes_and_counts_each_event_once(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [event_line(i) for i in range(1000)])
    broken = FakeService(fail_after=7)
    with pytest.raises(ConnectionError):
        Importer(source, broken.send, batch_size=50, concurrency=2, save_every_seconds=0).run()
    saved = ImportState.load(tmp_path / "events.jsonl.import-state")
    assert saved is not None and not saved.done and 0 < saved.line < 1000
    assert saved.accepted <= len(broken.stored)  # what was acknowledged is at most what arrived

    resumed = FakeService()
    resumed.stored = dict(broken.stored)  # the same service, back
    state = Importer(source, resumed.send, batch_size=50).run()
    assert state.done and len(resumed.stored) == 1000
    assert state.accepted + state.duplicates >= 1000 - saved.line
    assert sorted(int(e["user_id"][1:]) for e in resumed.stored.values()) == list(range(1000))
    # Run again: the file is done, nothing is sent.
    again = FakeService()
    assert Importer(source, again.send).run().done and again.batches == 0


def test_a_state_file_of_another_file_is_refused(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [event_line(i) for i in range(10)])
    Importer(source, FakeService().send).run()
    write_jsonl(source, [event_line(i, "view") for i in range(10)])
    with pytest.raises(ImportFailed, match="--restart"):
        Importer(source, FakeService().send)
    assert Importer(source, FakeService().send, restart=True).run().accepted == 10
