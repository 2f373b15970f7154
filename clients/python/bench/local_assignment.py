"""How fast ``LocalAssigner.assign`` decides, against the floor of one bare SHA-256 per user.

    taskset -c 1 .venv/bin/python clients/python/bench/local_assignment.py [--users 1000000]

Three experiments, each over the same user ids: a plain running 50/50 split (one hash per
user), one behind a 50% coverage, a layer slice of half the layer and a 5% holdout (up to four
hashes per user), and one with an audience of three rules; then the plain one again with a
reporter (a no-op), each user seen for the first time: the cost of building and handing over
an exposure per call, the worst case. The floor is a loop of
``hashlib.sha256(text.encode()).digest()`` over the user ids, measured in the same run, so the
ratio says what deciding costs beyond hashing on this machine, whatever its speed.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from experiments_client.definitions import (
    Definitions,
    ExperimentDefinition,
    HoldoutDefinition,
    LayerDefinition,
    VariantDefinition,
)
from experiments_client.local import LocalAssigner

AUDIENCE = {
    "all": [
        {"attribute": "country", "op": "in", "value": ["DE", "AT", "CH"]},
        {"attribute": "app", "op": "version_gte", "value": "2.0.0"},
        {"attribute": "plan", "op": "ne", "value": "free"},
    ]
}
ATTRIBUTES: list[dict[str, Any]] = [
    {"country": "DE", "app": "2.3.1", "plan": "pro"},  # admitted
    {"country": "AT", "app": "2.0.0-rc.1", "plan": "pro"},  # a prerelease of 2.0.0: out
    {"country": "CH", "app": "3.0.0", "plan": "free"},  # out on the last rule
    {"country": "FR", "app": "2.3.1"},  # out on the first rule
]


def experiment(experiment_id: str, **fields: Any) -> ExperimentDefinition:
    variants = (
        VariantDefinition(f"{experiment_id}-a", "control", 5000, True),
        VariantDefinition(f"{experiment_id}-b", "treatment", 5000, False),
    )
    return ExperimentDefinition(experiment_id, experiment_id, "running", variants, **fields)


DEFINITIONS = Definitions(
    (
        experiment("01JDKX3Y6Q0000000000000001"),
        experiment(
            "01JDKX3Y6Q0000000000000002",
            coverage_basis_points=5000,
            layer=LayerDefinition("layer-1", "4f2a9c", 0, 5000),
            holdout=HoldoutDefinition("holdout-1", "b71e03", 500),
        ),
        experiment("01JDKX3Y6Q0000000000000003", audience=AUDIENCE),
    )
)
NAMES = ["plain 50/50", "coverage 50% + layer + holdout", "audience of 3 rules"]


def seconds(loop: Callable[[], None]) -> float:
    start = time.perf_counter()
    loop()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    users = [f"user-{i}" for i in range(parser.parse_args().users)]
    pairs = [(u, ATTRIBUTES[i % len(ATTRIBUTES)]) for i, u in enumerate(users)]
    assigner = LocalAssigner(definitions=DEFINITIONS)
    assign = assigner.assign
    sha256 = hashlib.sha256

    def floor() -> None:
        for user in users:
            sha256(user.encode()).digest()

    def deciding(experiment_id: str, by: LocalAssigner = assigner) -> Callable[[], None]:
        def loop() -> None:
            assign_ = by.assign
            for user, attributes in pairs:  # judged only where there is an audience
                assign_(experiment_id, user, attributes)

        return loop

    floor_rate = len(users) / seconds(floor)
    print(f"{len(users):,} users; floor (one sha256 per user): {floor_rate:,.0f}/s")
    for name, definition in zip(NAMES, DEFINITIONS.experiments, strict=True):
        rate = len(users) / seconds(deciding(definition.id))
        # Untimed: which reasons the users got, so that the figure can be read.
        reasons = Counter(assign(definition.id, u, a).reason for u, a in pairs)
        mix = ", ".join(f"{r} {n / len(users):.1%}" for r, n in sorted(reasons.items()))
        print(f"{name:32} {rate:>11,.0f} assigns/s  {floor_rate / rate:4.1f}x the floor  ({mix})")
    reporting = LocalAssigner(definitions=DEFINITIONS, report=lambda exposure: None)
    rate = len(users) / seconds(deciding(DEFINITIONS.experiments[0].id, reporting))
    print(
        f"{'plain 50/50, each user reported':32} {rate:>11,.0f} assigns/s  "
        f"{floor_rate / rate:4.1f}x the floor"
    )


if __name__ == "__main__":
    main()
