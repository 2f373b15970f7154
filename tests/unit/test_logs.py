"""The log formats, request ids, the batched request log's writes, and the two settings."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import sys

import pytest

from entrypoints.config.settings import ConfigurationError, Settings
from entrypoints.telemetry.logs import JsonFormatter, RequestIds, RequestLog, TextFormatter, escape


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("experiments", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_escape_keeps_printable_text_and_escapes_control_characters() -> None:
    assert escape("GET /experiments é") == "GET /experiments é"
    assert escape("a\nb\rc\x1b[31md\u2028") == "a\\nb\\rc\\x1b[31md\\u2028"


def test_a_text_record_is_one_line_whatever_its_arguments() -> None:
    line = TextFormatter().format(record("user %s", "u-1\n2026-01-01T00:00:00.000Z INFO forged"))
    assert "\n" not in line
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING experiments "
        r"user u-1\\n2026-01-01T00:00:00\.000Z INFO forged",
        line,
    )


def test_a_traceback_stays_on_its_records_line() -> None:
    try:
        raise RuntimeError("bad\nvalue")
    except RuntimeError:
        made = record("failed")
        made.exc_info = sys.exc_info()
    text = TextFormatter().format(made)
    assert "\n" not in text and text.endswith("RuntimeError: bad\\nvalue")
    assert " exc=Traceback (most recent call last):\\n" in text
    parsed = json.loads(JsonFormatter().format(made))
    assert parsed["exc"].endswith("RuntimeError: bad\nvalue")


def test_a_json_record_has_the_fields_and_the_request_id() -> None:
    line = JsonFormatter().format(record("store unavailable: %s", "x\ny", request_id="r-1"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert set(parsed) == {"ts", "level", "logger", "msg", "request_id"}
    assert (parsed["level"], parsed["logger"], parsed["msg"], parsed["request_id"]) == (
        "warning", "experiments", "store unavailable: x\ny", "r-1"
    )


@pytest.mark.parametrize("sent", [b"a", b"A-z_0.9:1", b"x" * 128])
def test_a_safe_request_id_is_kept(sent: bytes) -> None:
    assert RequestIds().of([(b"host", b"h"), (b"x-request-id", sent)]) == sent


@pytest.mark.parametrize("sent", [b"", b"x" * 129, b"a b", b"a\nb", b"a\x00", b"\xc3\xa9", b"a/b", b'"'])
def test_an_unsafe_request_id_is_replaced(sent: bytes) -> None:
    ids = RequestIds()
    made = ids.of([(b"x-request-id", sent)])
    assert made != sent and re.fullmatch(rb"[0-9a-f]{12}-1", made)


def test_generated_ids_differ_within_and_across_processes() -> None:
    one, other = RequestIds(), RequestIds()
    made = [one.of([]) for _ in range(1000)] + [other.of([]) for _ in range(1000)]
    assert len(set(made)) == 2000


def test_request_lines_of_two_processes_on_one_pipe_never_mix() -> None:
    """Batches far larger than PIPE_BUF, written at once by two processes to one pipe: each
    write holds whole lines only, so every line read back is whole."""
    read_end, write_end = os.pipe()
    batches, per_batch = 20, 500
    children = []
    for worker in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_end)
            log = RequestLog("json", "info", fd=write_end)
            for batch in range(batches):
                log.pending = [
                    (0.0, 0.001, "GET", "/experiments/{experiment_id}", 200, b"w%d-%d-%d" % (worker, batch, i))
                    for i in range(per_batch)
                ]
                log.flush()
            os._exit(0)
        children.append(pid)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 2 * batches * per_batch
    ids = {json.loads(line)["request_id"] for line in lines}  # raises on a mixed line
    assert len(ids) == len(lines)


def test_a_batch_is_written_in_whole_lines_of_at_most_pipe_buf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def recording(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording)
    with open(os.devnull, "wb") as sink:
        log = RequestLog("text", "info", fd=sink.fileno())
        log.pending = [(0.0, 0.001, "GET", "/health", 200, f"id-{i}".encode()) for i in range(300)]
        log.flush()
    assert len(writes) > 1
    assert all(len(w) <= select.PIPE_BUF and w.endswith(b"\n") for w in writes)
    assert b"".join(writes).count(b"\n") == 300


def test_at_warning_only_failed_requests_are_logged() -> None:
    assert RequestLog("text", "info").every_request
    assert RequestLog("text", "debug").every_request
    assert not RequestLog("text", "warning").every_request
    assert not RequestLog("text", "error").every_request


def test_log_settings_default_to_text_and_info_and_refuse_other_values() -> None:
    assert (Settings.from_env({}).log_format, Settings.from_env({}).log_level) == ("text", "info")
    env = {"LOG_FORMAT": "JSON", "LOG_LEVEL": " Warning "}
    assert (Settings.from_env(env).log_format, Settings.from_env(env).log_level) == ("json", "warning")
    with pytest.raises(ConfigurationError, match="LOG_FORMAT must be text or json, got 'xml'"):
        Settings.from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(ConfigurationError, match="LOG_LEVEL must be debug, info, warning or error"):
        Settings.from_env({"LOG_LEVEL": "verbose"})
