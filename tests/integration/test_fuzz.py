"""Schemathesis against a live server: its OpenAPI document and its behaviour must agree.

The server runs as `make run` runs it (``python -m entrypoints serve``, SQLite in a temporary
folder, a known token); schemathesis reads the document the server serves and sends every
operation valid and invalid input, with every check on. Bounded for CI: a fixed number of
examples per operation, no stateful phase, no shrinking, a fixed seed so that a run repeats.
No ``max-time`` in schemathesis' own settings: under it, its fuzzing phase keeps drawing cases
until the budget is spent, whatever ``max-examples`` says; the run is bounded from outside. Schemathesis runs as its command line (the pytest plugin of 4.x does not
yet run under pytest 9), and its report, every failing case with a curl to reproduce it, is
the failure message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import ServerProcess

TOKEN = "fuzz-token"
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))  # per operation and mode
MAX_SECONDS = 20 * MAX_EXAMPLES  # a hang, not a slow machine: about 20 s for 40 examples here

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
)
# Every check, named in the file rather than as `--checks all`, which would override the
# per-operation setting below.
ALL_CHECKS = "\n".join(
    f"[checks.{name}]\nenabled = true" for name in CHECKS if name != "positive_data_acceptance"
)
# `filter_too_much` is Hypothesis saying that its generator threw away many of the cases it
# drew, not that the service did anything wrong: for the assignment routes (two free-text path
# parameters and no body) the negative cases it can make are few, and how many it keeps
# depends on what the server has answered before (schemathesis reuses values it saw), so a
# slow, busy machine failed the run on it now and then with no failing case to show.
CONFIG = f"""
headers = {{ Authorization = "Bearer {TOKEN}" }}
seed = 20261128
suppress-health-check = ["filter_too_much"]
request-timeout = 10

[generation]
mode = "all"
max-examples = {MAX_EXAMPLES}
no-shrink = true

[phases.stateful]
enabled = false

{ALL_CHECKS}

# A body can keep every constraint of the document and still break a rule that JSON Schema
# cannot say (traffic percentages that sum to 100, an experiment in a batch that exists, no NUL
# in text, a name that is not blank): the service answers those with a 422, rightly.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def test_the_live_server_keeps_to_its_openapi_document(
    start_servers: Callable[..., list[ServerProcess]], tmp_path: Path
) -> None:
    (server,) = start_servers(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fuzz.db'}",
            "CACHE_URL": "memory://",
            "API_TOKENS": TOKEN,
            "WORKERS": "1",
        }
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
            "run", f"{server.base_url}/schema/openapi.json", "--workers", "1",
        ],
        cwd=tmp_path,  # schemathesis keeps a cache of its cases in the working folder
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS,
        env={k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")},
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\nserver output:\n{server.output()}"
