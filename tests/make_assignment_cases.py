"""Writes docs/assignment-cases.json, the shared vectors of the assignment hashes (run it after
adding cases; tests/unit/test_eligibility.py checks the file against the reference hash).

    .venv/bin/python tests/make_assignment_cases.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.eligibility import Holdout, Slice, covered, layer_bucket  # noqa: E402
from domain.experiment import bucket, bucket_of  # noqa: E402

USERS = ["u-1", "user-42", "alice@example.com", "ü-ñîcødé", "😀", "a:b", "x" * 256, "0"]
EXPERIMENTS = ["01JDKX3Y6Q0000000000000000", "exp-1", "a"]


def main() -> None:
    variants = []
    for x in EXPERIMENTS:
        for u in USERS:
            for shares in ([5000, 5000], [3333, 3333, 3334], [0, 10000], [100, 9800, 100]):
                b = bucket_of(x, u)
                ends = [sum(shares[: i + 1]) for i in range(len(shares))]
                variants.append({"experiment_id": x, "user_id": u, "basis_points": shares, "bucket": b,
                                 "variant_index": next(i for i, e in enumerate(ends) if b < e)})
    cases = {
        "description": (
            "bucket(text) = uint64 big-endian of the first 8 bytes of SHA-256(UTF-8 text), mod 10000. "
            "variant: bucket('{experiment_id}:{user_id}') against the cumulative basis points, in order. "
            "coverage: in when bucket('coverage:{experiment_id}:{user_id}') < coverage_basis_points. "
            "layer: in when bucket('layer:{layer_seed}:{user_id}') is in the half-open slice [start, end). "
            "holdout: held out when bucket('holdout:{holdout_seed}:{user_id}') < basis_points."
        ),
        "buckets": [{"input": t, "bucket": bucket(t)} for t in ["", "a", "exp-1:u-1", "ü:😀", "coverage:exp-1:u-1"]],
        "variants": variants,
        "coverage": [
            {"experiment_id": x, "user_id": u, "coverage_basis_points": c, "in": covered(x, u, c)}
            for x in EXPERIMENTS[:2] for u in USERS for c in (0, 1, 500, 5000, 9999, 10000)
        ],
        "layers": [
            {"layer_seed": seed, "user_id": u, "slice": [s, e], "bucket": layer_bucket(seed, u),
             "in": Slice(s, e).holds(layer_bucket(seed, u))}
            for seed in ("checkout-layer", "L1") for u in USERS for s, e in ((0, 5000), (5000, 10000), (2500, 2600))
        ],
        "holdouts": [
            {"holdout_seed": seed, "user_id": u, "basis_points": bp, "in": Holdout(seed, bp).holds(u)}
            for seed in ("global", "h2") for u in USERS for bp in (0, 500, 10000)
        ],
    }
    path = Path(__file__).resolve().parents[1] / "docs" / "assignment-cases.json"
    path.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
