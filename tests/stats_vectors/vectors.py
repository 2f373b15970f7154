"""What the published test vectors' generators and replays share: writing a file, reading it,
and comparing a result with a case's expected values within the case's tolerance.

It imports nothing of the service, so the generators may use it: they run as modules from the
repository's root, in an environment with the reference libraries and without the service
(``python -m tests.stats_vectors.gen_<area>``)."""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "stats-vectors"


def load(area: str) -> dict[str, Any]:
    """docs/stats-vectors/<area>.json, checked to be the one its generator writes."""
    document = json.loads((FOLDER / f"{area}.json").read_text())
    assert document["area"] == area
    assert document["generated_by"] == f"tests/stats_vectors/gen_{area}.py"
    return document


def write(area: str, cases: list[dict[str, Any]], libraries: tuple[str, ...]) -> None:
    """docs/stats-vectors/<area>.json: the cases, with the versions of the libraries that
    computed them. No NaN or infinity: an undefined value is null."""
    document = {
        "area": area,
        "generated_by": f"tests/stats_vectors/gen_{area}.py",
        "references": {name: version(name) for name in libraries},
        "cases": cases,
    }
    path = FOLDER / f"{area}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    print(f"{len(cases)} cases -> {path}")


def finite_or_none(value: float) -> float | None:
    """A reference's number as a case records it: None (null) where it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else None


def case_id(case: dict[str, Any]) -> str:
    return f"{case['statistic']}:{json.dumps(case['input'], sort_keys=True)[:60]}"


def mismatches(result: Any, expected: dict[str, Any], tolerance: dict[str, float]) -> list[tuple]:
    """(path, actual, expected) of every expected value the result misses. A result is read by
    key (a dict) or by attribute (a dataclass), nested alike; None and booleans must be equal,
    whole numbers exactly equal, other numbers within max(abs, rel × |expected|)."""
    found = []
    for name, want in expected.items():
        got = result.get(name) if isinstance(result, dict) else getattr(result, name, None)
        if isinstance(want, dict):  # an undefined part (None) matches only all-None leaves
            found += [(f"{name}.{p}", g, w) for p, g, w in mismatches(got, want, tolerance)]
        elif not _close(got, want, tolerance):
            found.append((name, got, want))
    return found


def _close(actual: Any, expected: Any, tolerance: dict[str, float]) -> bool:
    if expected is None or actual is None or isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(_close(a, e, tolerance) for a, e in zip(actual, expected))
    if isinstance(expected, int):
        return type(actual) is int and actual == expected  # whole users: exactly
    limit = max(tolerance.get("abs", 0.0), tolerance.get("rel", 0.0) * abs(expected))
    return isinstance(actual, float) and abs(actual - expected) <= limit
