"""Importing events from a CSV or JSONL file: streamed in batches, resumable, rejects to a file.

The file is read as bytes, so that where the import stands is a byte offset: after every batch
the service acknowledged, in file order, the offset is saved in a state file (written aside and
renamed, so it is never half written). A run that stops, however it stops, starts again from
the last saved offset; the batches it sends again carry the same event ids (the file's own, or
one made of the file's fingerprint and the line number), so the service counts each event once.

A line the service would refuse anyway (not JSON, a missing field, a value that is no finite
number) is written to the rejects file with its reason and not sent. A batch the service refuses
names its bad events by index (`events[3].timestamp`): those lines go to the rejects file with
the service's reasons, and the rest of the batch is sent again.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from experiments_client.errors import ValidationError
from experiments_client.models import TrackResult

Format = Literal["csv", "jsonl"]
FIELDS = ("experiment_id", "user_id", "event_type", "timestamp", "value", "properties", "event_id")
REQUIRED = ("experiment_id", "user_id", "event_type")
FINGERPRINT_BYTES = 1 << 16


Send = Callable[[list[dict[str, Any]]], TrackResult]
"""Sends one batch (``Client.track``): what was stored, or a ValidationError naming the bad
events by index (``events[3].timestamp``), the batch then stored not at all."""


@dataclass(slots=True)
class ImportState:
    """Where an import of one file stands; saved beside the file between batches."""

    file: str
    fingerprint: str
    offset: int = 0  # bytes of the file whose events are all stored or rejected
    line: int = 0  # lines read up to ``offset``
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    done: bool = False

    @classmethod
    def load(cls, path: Path) -> ImportState | None:
        try:
            return cls(**msgspec.json.decode(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (msgspec.DecodeError, TypeError) as exc:
            raise ImportFailed(f"the state file {path} is not one this tool wrote: {exc}") from exc

    def save(self, path: Path) -> None:
        scratch = path.with_name(path.name + ".tmp")
        with open(scratch, "wb") as out:
            out.write(msgspec.json.encode(asdict(self)))
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, path)


class ImportFailed(Exception):
    """The import cannot go on (a file it cannot read, a service that refuses the credential,
    retries spent); what was acknowledged is in the state file, so running again resumes."""


@dataclass(slots=True)
class _Batch:
    events: list[dict[str, Any]]
    lines: list[tuple[int, bytes]]  # (line number, raw line) of each event, for rejects
    end_offset: int
    end_line: int
    local_rejects: list[tuple[int, bytes, str]]  # refused before sending
    sent: TrackResult | None = None
    server_rejects: list[tuple[int, bytes, str]] = field(default_factory=list)


def fingerprint(path: Path) -> str:
    """The file's identity across runs: its size would change as it grows, so its first bytes."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(FINGERPRINT_BYTES)).hexdigest()[:16]


def detect_format(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise ImportFailed(f"cannot tell the format of {path.name} from its name: say --format csv or jsonl")


class Importer:
    """One import of one file; ``run`` streams it to ``send`` and returns the final state."""

    def __init__(
        self,
        path: Path,
        send: Send,
        *,
        format: Format | None = None,
        state_path: Path | None = None,
        rejects_path: Path | None = None,
        batch_size: int = 5000,
        concurrency: int = 2,
        experiment_id: str | None = None,
        restart: bool = False,
        save_every_seconds: float = 0.5,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1 to 10,000 (the service's largest batch)")
        self.path = path
        self.format: Format = format or detect_format(path)
        self.state_path = state_path or path.with_name(path.name + ".import-state")
        self.rejects_path = rejects_path or path.with_name(path.name + ".rejects.jsonl")
        self._send, self._batch_size, self._concurrency = send, batch_size, max(1, concurrency)
        self._default_experiment = experiment_id
        self._restart, self._save_every = restart, save_every_seconds
        self.state = self._starting_state()

    def _starting_state(self) -> ImportState:
        try:
            print_ = fingerprint(self.path)
        except OSError as exc:
            raise ImportFailed(f"cannot read {self.path}: {exc.strerror}") from exc
        found = None if self._restart else ImportState.load(self.state_path)
        if found is not None and (found.fingerprint != print_ or found.file != str(self.path.resolve())):
            raise ImportFailed(
                f"{self.state_path} belongs to another file (or this one changed at its start); "
                "say --restart to import from the beginning"
            )
        return found or ImportState(str(self.path.resolve()), print_)

    # -------------------------------------------------------------------------------- running

    def run(self, progress: Callable[[int, ImportState], None] | None = None) -> ImportState:
        """Send every batch left, ``concurrency`` at a time, committing them in file order.
        ``progress(bytes_done, state)`` is called after each commit."""
        if self.state.done:
            return self.state
        pending: deque[Future[_Batch]] = deque()
        last_save = [0.0]
        with open(self.path, "rb") as source, open(self.rejects_path, "ab") as rejects, \
                ThreadPoolExecutor(self._concurrency, thread_name_prefix="import") as pool:
            try:
                for batch in self._batches(source):
                    pending.append(pool.submit(self._deliver, batch))
                    while len(pending) > self._concurrency * 2 or (pending and pending[0].done()):
                        self._commit(pending.popleft().result(), rejects, last_save, progress)
                while pending:
                    self._commit(pending.popleft().result(), rejects, last_save, progress)
            except BaseException:
                for future in pending:
                    future.cancel()
                self._save(rejects)
                raise
            self.state.done = True
            self._save(rejects)
        return self.state

    def _deliver(self, batch: _Batch) -> _Batch:
        events, lines = batch.events, batch.lines
        while events:
            try:
                batch.sent = self._send(events)
                return batch
            except ValidationError as refused:
                rejected = refused.by_index("events")
                if not rejected:
                    raise ImportFailed(f"the service refused a batch without naming its events: {refused}") from refused
            batch.server_rejects += [(*lines[i], reason) for i, reason in sorted(rejected.items())]
            keep = [i for i in range(len(events)) if i not in rejected]
            events, lines = [events[i] for i in keep], [lines[i] for i in keep]
        batch.sent = TrackResult(0)
        return batch

    def _commit(self, batch: _Batch, rejects: BinaryIO, last_save: list[float],
                progress: Callable[[int, ImportState], None] | None) -> None:
        s = self.state
        assert batch.sent is not None
        s.accepted += batch.sent.accepted
        s.duplicates += batch.sent.duplicates
        for line, raw, reason in sorted(batch.local_rejects + batch.server_rejects):
            rejects.write(msgspec.json.encode({"line": line, "reason": reason, "text": raw.decode("utf-8", "replace")}))
            rejects.write(b"\n")
            s.rejected += 1
        s.offset, s.line = batch.end_offset, batch.end_line
        now = time.monotonic()
        if now - last_save[0] >= self._save_every:
            self._save(rejects)
            last_save[0] = now
        if progress is not None:
            progress(s.offset, s)

    def _save(self, rejects: BinaryIO) -> None:
        rejects.flush()
        os.fsync(rejects.fileno())  # the rejects before the offset that says they were written
        self.state.save(self.state_path)

    # -------------------------------------------------------------------------------- reading

    def _batches(self, source: BinaryIO) -> Iterator[_Batch]:
        records = self._csv_records(source) if self.format == "csv" else self._jsonl_records(source)
        batch = _Batch([], [], self.state.offset, self.state.line, [])
        for line_no, raw, end, record in records:
            batch.end_offset, batch.end_line = end, line_no
            if isinstance(record, str):
                batch.local_rejects.append((line_no, raw, record))
            else:
                batch.events.append(record)
                batch.lines.append((line_no, raw))
            if len(batch.events) >= self._batch_size:
                yield batch
                batch = _Batch([], [], end, line_no, [])
        if batch.events or batch.local_rejects:
            yield batch

    def _lines(self, source: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
        """(line number, line without its end, offset after it), from the saved offset on."""
        source.seek(self.state.offset)
        offset, line_no = self.state.offset, self.state.line
        for raw in source:
            offset += len(raw)
            line_no += 1
            yield line_no, raw.rstrip(b"\r\n"), offset

    def _jsonl_records(self, source: BinaryIO) -> Iterator[tuple[int, bytes, int, dict[str, Any] | str]]:
        decode = msgspec.json.Decoder().decode
        for line_no, raw, end in self._lines(source):
            if not raw.strip():
                continue
            try:
                record = decode(raw)
            except msgspec.DecodeError as exc:
                yield line_no, raw, end, f"not JSON: {exc}"
                continue
            if not isinstance(record, dict):
                yield line_no, raw, end, "not a JSON object"
                continue
            yield line_no, raw, end, self._event(record, line_no)

    def _csv_records(self, source: BinaryIO) -> Iterator[tuple[int, bytes, int, dict[str, Any] | str]]:
        source.seek(0)
        header_line = source.readline()
        header = next(csv.reader([header_line.decode("utf-8-sig")]), [])
        columns = [h.strip() for h in header]
        unknown = [c for c in columns if c not in FIELDS]
        if unknown or not set(REQUIRED) - {"experiment_id"} <= set(columns):
            raise ImportFailed(
                f"the CSV header must name the event's fields ({', '.join(FIELDS)}); "
                f"it has {', '.join(columns) or 'none'}"
            )
        if self.state.offset == 0:
            self.state.offset, self.state.line = len(header_line), 1
        lines = self._lines(source)
        position: list[tuple[int, bytes, int]] = []

        def text() -> Iterator[str]:
            for item in lines:
                position.append(item)
                yield item[1].decode("utf-8", "replace") + "\n"

        for row in csv.reader(text()):
            first, last = position[0], position[-1]
            raw = b"\n".join(p[1] for p in position)
            position.clear()
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                yield first[0], raw, last[2], f"has {len(row)} fields, the header {len(columns)}"
                continue
            record: dict[str, Any] = {c: v for c, v in zip(columns, row, strict=True) if v != ""}
            if "properties" in record:
                try:
                    record["properties"] = msgspec.json.decode(record["properties"])
                except msgspec.DecodeError:
                    yield first[0], raw, last[2], "properties: not a JSON object"
                    continue
            if "value" in record:
                try:
                    record["value"] = float(record["value"])
                except ValueError:
                    yield first[0], raw, last[2], "value: not a number"
                    continue
            yield first[0], raw, last[2], self._event(record, first[0])

    def _event(self, record: dict[str, Any], line_no: int) -> dict[str, Any] | str:
        """The event to send, or why the service would refuse it."""
        if self._default_experiment is not None:
            record.setdefault("experiment_id", self._default_experiment)
        for name in REQUIRED:
            if not isinstance(record.get(name), str) or not record[name]:
                return f"{name}: is missing"
        unknown = [k for k in record if k not in FIELDS]
        if unknown:
            return f"{unknown[0]}: is not a field of an event"
        value = record.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            return "value: must be a finite number"
        properties = record.get("properties")
        if properties is not None and not isinstance(properties, dict):
            return "properties: must be a JSON object"
        if "event_id" not in record:
            record["event_id"] = f"import-{self.state.fingerprint}-{line_no}"
        return record
