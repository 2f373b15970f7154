"""Local assignment: deciding users in-process from the definitions, as the service decides them.

An application that assigns many users asks the service for the definitions of every
experiment (``GET /definitions``) now and then, and decides each user here, with no call per
user; the decisions the service stores (``assigned`` and ``holdout``) are reported back as
exposures (``POST /exposures``), and the service stores them as if it had decided them itself.

The order of a decision is the service's (docs/api.md, "Local assignment"):

1. a QA override for the user: its variant, ``forced``;
2. an experiment not running: a stopped one serves its winner (else the control), ``winner``;
   a draft, paused or archived one serves the control, its status as the reason;
3. the gates, each serving the control with its reason: ``audience``, ``holdout``, ``layer``,
   ``coverage``;
4. the variant whose range of cumulative basis points holds the user's bucket: ``assigned``.

The one difference from asking the service: a user it stored and whom the audience now leaves
out keeps the stored variant there; a local decision cannot know the store.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Self

import msgspec

from experiments_client.audience import Audience
from experiments_client.definitions import (
    Decision,
    Definitions,
    ExperimentDefinition,
    Exposure,
    Reason,
    VariantDefinition,
)
from experiments_client.hashing import BUCKETS, bucket

MAX_USER_ID_LENGTH = 256
REPORTED_REASONS = frozenset({"assigned", "holdout"})
"""The decisions the service stores, and so the ones reported as exposures."""
MAX_REPORTED = 100_000
"""Users remembered as reported, per assigner: enough that a busy service reports a returning
user once, bounded so that memory does not grow with traffic."""
COLD_RETRY_SECONDS = 0.5
"""The first wait before fetching again when no definitions could be fetched yet."""
_NOT_RUNNING: dict[str, Reason] = {"draft": "draft", "paused": "paused", "archived": "archived"}
_GATES: tuple[Reason, ...] = ("audience", "holdout", "layer", "coverage")
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
_with_user = msgspec.structs.replace

Fetch = Callable[[str | None], tuple[Definitions | None, str | None]]
"""Called with the last ETag; returns new definitions and their ETag, or (None, etag) when
the definitions are unchanged (HTTP 304)."""
Report = Callable[[Exposure], None]


class UnknownExperiment(KeyError):
    """No experiment of this id in the definitions (it may be newer than the last refresh)."""

    def __str__(self) -> str:  # KeyError's own shows the message in quotes
        return str(self.args[0]) if self.args else ""


class ExperimentUnavailable(UnknownExperiment):
    """The experiment is in the definitions but cannot be decided here, most likely as its
    audience uses an operator this client does not know (a newer service's): the message says
    why. Ask the service for this experiment's users instead, or upgrade the client."""


class DefinitionsUnavailable(RuntimeError):
    """No definitions to decide from: none given, or the first fetch failed or was too slow."""


# ---------------------------------------------------------------------------------- deciding


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """An experiment's definition prepared once so that ``decide`` hashes, compares and copies
    a prebuilt answer, nothing more: every Decision it can give exists already, but for the
    user id (``msgspec.structs.replace`` puts that in)."""

    definition: ExperimentDefinition
    forced: dict[str, Decision]  # user id -> the QA override's decision
    fixed: Decision | None  # what a not running experiment serves everyone
    gated: bool  # whether any gate applies: a plain experiment skips them all in one test
    admits: Callable[[Mapping[str, Any]], bool] | None
    holdout_prefix: str
    holdout_basis_points: int  # 0 (no holdout) holds out nobody
    layer_prefix: str | None
    layer_start: int
    layer_end: int
    coverage_prefix: str
    coverage_basis_points: int
    excluded: dict[Reason, Decision]  # the control, for each gate's reason
    variant_prefix: str
    ends: tuple[int, ...]  # cumulative basis points: variant i holds buckets [ends[i-1], ends[i])
    assigned: tuple[Decision, ...]  # each variant's decision, in the variants' order

    @classmethod
    def of(cls, definition: ExperimentDefinition) -> CompiledExperiment:
        """Raises ValueError when the definition cannot be decided here: an audience this
        client cannot compile, no control, an override naming no variant of the experiment,
        shares that do not sum to 10,000."""
        d = definition
        control = _control(d)
        ends = _cumulative_ends(d)
        layer, holdout = d.layer, d.holdout
        return cls(
            definition=d,
            forced=_forced(d),
            fixed=_fixed(d, control),
            gated=bool(
                d.audience is not None
                or layer is not None
                or holdout is not None
                or d.coverage_basis_points < BUCKETS
            ),
            admits=None if d.audience is None else Audience(d.audience).admits,
            holdout_prefix="" if holdout is None else f"holdout:{holdout.seed}:",
            holdout_basis_points=0 if holdout is None else holdout.basis_points,
            layer_prefix=None if layer is None else f"layer:{layer.seed}:",
            layer_start=0 if layer is None else layer.start,
            layer_end=BUCKETS if layer is None else layer.end,
            coverage_prefix=f"coverage:{d.id}:",
            coverage_basis_points=d.coverage_basis_points,
            excluded={r: Decision(d.id, "", control.id, control.name, False, r) for r in _GATES},
            variant_prefix=f"{d.id}:",
            ends=ends,
            assigned=tuple(Decision(d.id, "", v.id, v.name, True, "assigned") for v in d.variants),
        )


def _control(d: ExperimentDefinition) -> VariantDefinition:
    control = next((v for v in d.variants if v.is_control), None)
    if control is None:
        raise ValueError(f"experiment {d.id}: no variant is the control")
    return control


def _cumulative_ends(d: ExperimentDefinition) -> tuple[int, ...]:
    ends, total = [], 0
    for variant in d.variants:
        total += variant.traffic_basis_points
        ends.append(total)
    if total != BUCKETS:
        raise ValueError(f"experiment {d.id}: the variants' shares sum to {total}, not {BUCKETS}")
    return tuple(ends)


def _forced(d: ExperimentDefinition) -> dict[str, Decision]:
    variants = {v.id: v for v in d.variants}
    forced = {}
    for override in d.overrides:
        variant = variants.get(override.variant_id)
        if variant is None:
            raise ValueError(f"experiment {d.id}: an override names no variant of it")
        forced[override.user_id] = Decision(d.id, "", variant.id, variant.name, True, "forced")
    return forced


def _fixed(d: ExperimentDefinition, control: VariantDefinition) -> Decision | None:
    """What the experiment's status serves everyone (bar overrides), or None while it runs.
    A stopped one serves its winner, or the control when none was declared (or the winner
    names no variant of it, as the service does)."""
    if d.status == "running":
        return None
    if d.status == "stopped":
        winner = next((v for v in d.variants if v.id == d.winner_variant_id), control)
        return Decision(d.id, "", winner.id, winner.name, False, "winner")
    return Decision(d.id, "", control.id, control.name, False, _NOT_RUNNING[d.status])


def decide(
    experiment: CompiledExperiment, user_id: str, attributes: Mapping[str, Any] | None = None
) -> Decision:
    """What the service would answer for this user (but for a user it stored whom the
    audience now leaves out). Pure: the same arguments give the same decision anywhere.
    ``attributes`` are what the audience is judged on; none is judged as no attributes."""
    if not 0 < len(user_id) <= MAX_USER_ID_LENGTH or "\x00" in user_id:
        raise ValueError(
            f"user_id must be 1 to {MAX_USER_ID_LENGTH} characters without NUL, got {user_id!r}"
        )
    # An override, then the status, then the gates, then the split: the first answer wins.
    decided = experiment.forced.get(user_id) or experiment.fixed
    if decided is None and experiment.gated:
        decided = _exclusion(experiment, user_id, attributes)
    if decided is None:
        index = bisect_right(experiment.ends, bucket(experiment.variant_prefix + user_id))
        decided = experiment.assigned[index]
    return _with_user(decided, user_id=user_id)


def _exclusion(
    e: CompiledExperiment, user_id: str, attributes: Mapping[str, Any] | None
) -> Decision | None:
    """The control with the first gate that leaves the user out, in the service's order:
    audience, holdout, layer, coverage; None when every gate lets them in."""
    if e.admits is not None and not e.admits(_NO_ATTRIBUTES if attributes is None else attributes):
        return e.excluded["audience"]
    if e.holdout_basis_points and bucket(e.holdout_prefix + user_id) < e.holdout_basis_points:
        return e.excluded["holdout"]
    layer = e.layer_prefix
    if layer is not None and not e.layer_start <= bucket(layer + user_id) < e.layer_end:
        return e.excluded["layer"]
    coverage = e.coverage_basis_points
    if coverage < BUCKETS and bucket(e.coverage_prefix + user_id) >= coverage:
        return e.excluded["coverage"]
    return None


# ---------------------------------------------------------------------------------- the assigner


class LocalAssigner:
    """Decides users from definitions held in memory, refreshed in the background.

    ``fetch`` gets the definitions (see ``Fetch``): a daemon thread calls it every
    ``refresh_seconds``, from the first ``assign`` or ``start()`` until ``close()``, and keeps
    the last good definitions when it raises (the error is in ``last_refresh_error``). Without
    ``fetch``, the assigner decides from ``definitions`` (or ``set_definitions``) alone.

    ``report`` is called with an Exposure for each user first decided ``assigned`` or
    ``holdout`` in an experiment (what the service stores); the pairs reported are remembered,
    up to ``MAX_REPORTED``, the oldest forgotten first, so a returning user is reported once
    (the service keeps a user's first assignment, so a second report does no harm). It runs in
    the caller's thread: it should hand the exposure over (to a queue, a batcher), not send it.

    Thread safe. ``assign`` takes no lock: it reads one dict, which a refresh replaces whole.
    The first ``assign`` of a cold assigner waits, with every other, for the first fetch, up to
    ``initial_timeout_seconds``, and then raises DefinitionsUnavailable; so does every call
    after a first fetch that failed, until a later refresh (``refresh_seconds`` on) succeeds.
    """

    def __init__(
        self,
        *,
        fetch: Fetch | None = None,
        definitions: Definitions | None = None,
        refresh_seconds: float = 30.0,
        report: Report | None = None,
        initial_timeout_seconds: float = 10.0,
    ) -> None:
        self._fetch, self._report = fetch, report
        self._refresh_seconds, self._initial_timeout = refresh_seconds, initial_timeout_seconds
        self._experiments: dict[str, CompiledExperiment] | None = None
        self._unavailable: dict[str, str] = {}  # experiment id -> why it cannot be decided here
        self._etag: str | None = None
        self._warm = False  # definitions held and the refresher started (when there is one)
        self._lock = threading.Lock()  # starting and stopping the refresher
        self._refreshing = threading.Lock()  # one fetch at a time, installed in order
        self._first_attempt = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # An OrderedDict drops its oldest key in constant time; a dict's first key, after many
        # deletions from its front, is found by a scan past every deleted slot.
        self._reported: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._reporting = threading.Lock()
        self.last_refresh_error: BaseException | None = None
        """The error of the last refresh, None once one succeeds."""
        self.last_report_error: BaseException | None = None
        """The last error ``report`` raised (that user is reported again on their next call)."""
        if definitions is not None:
            self.set_definitions(definitions)

    # -- deciding

    def assign(
        self, experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Decision:
        """The user's decision in the experiment, as the service would answer it. Raises
        UnknownExperiment (a KeyError) for an id the definitions do not hold,
        ExperimentUnavailable for one this client cannot decide, ValueError for a bad user id,
        DefinitionsUnavailable while there are no definitions to decide from."""
        experiments = self._experiments
        if experiments is None or not self._warm:
            experiments = self._warm_up()
        experiment = experiments.get(experiment_id)
        if experiment is None:
            raise self._missing(experiment_id)
        decision = decide(experiment, user_id, attributes)
        if self._report is not None and decision.reason in REPORTED_REASONS:
            self._report_once(experiment, decision, attributes)
        return decision

    def _missing(self, experiment_id: str) -> UnknownExperiment:
        why = self._unavailable.get(experiment_id)
        if why is not None:
            return ExperimentUnavailable(f"experiment {experiment_id} is not decided here: {why}")
        return UnknownExperiment(f"no experiment {experiment_id} in the definitions")

    def _warm_up(self) -> dict[str, CompiledExperiment]:
        """The definitions on a first call: the refresher started, and its first fetch waited
        for (by every caller at once: one fetch, however many threads arrive cold)."""
        self.start()
        if self._experiments is None and self._thread is not None:
            if not self._first_attempt.wait(self._initial_timeout):
                raise DefinitionsUnavailable(
                    f"no definitions yet: the first fetch took over {self._initial_timeout:g}s"
                )
        experiments = self._experiments
        if experiments is None:
            if self._fetch is None:
                why = "none given, and no fetch"
            elif self._thread is None:
                why = "the assigner was closed before its first fetch"
            else:
                why = "the first fetch failed (see last_refresh_error)"
            raise DefinitionsUnavailable(f"no definitions to decide from: {why}") from (
                self.last_refresh_error
            )
        self._warm = True
        return experiments

    # -- reporting

    def _report_once(
        self,
        experiment: CompiledExperiment,
        decision: Decision,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        key = (decision.experiment_id, decision.user_id)
        if key in self._reported:  # the common case, answered without the lock
            return
        with self._reporting:
            if key in self._reported:
                return
            self._reported[key] = None
            if len(self._reported) > MAX_REPORTED:
                self._reported.popitem(last=False)  # the oldest
        exposure = Exposure(
            decision.experiment_id,
            decision.user_id,
            decision.variant_id,
            _now(),
            # A copy: the caller may change its mapping before the report is sent.
            None if experiment.admits is None else dict(attributes or {}),
        )
        try:
            assert self._report is not None
            self._report(exposure)
        except Exception as error:  # a failed report must not cost the user their answer
            self.last_report_error = error
            with self._reporting:
                self._reported.pop(key, None)

    # -- definitions

    def set_definitions(self, definitions: Definitions) -> None:
        """Decide from ``definitions`` from now on (a test's, or ones pushed to the client).
        The next fetch asks for the whole document again (no ETag), so the service's current
        definitions replace these if they differ."""
        with self._refreshing:
            self._install(definitions)
            self._etag = None

    def _install(self, definitions: Definitions) -> None:
        """Compile every experiment, then swap the one reference that ``assign`` reads. An
        experiment that cannot compile is left out, remembered as unavailable with why."""
        experiments: dict[str, CompiledExperiment] = {}
        unavailable: dict[str, str] = {}
        for definition in definitions.experiments:
            try:
                experiments[definition.id] = CompiledExperiment.of(definition)
            except ValueError as error:
                unavailable[definition.id] = str(error)
        self._unavailable = unavailable
        self._experiments = experiments

    def refresh(self) -> bool:
        """Fetch now; True when the definitions held are the service's current ones. A fetch
        that raises leaves the definitions as they were, its error in ``last_refresh_error``."""
        if self._fetch is None:
            raise RuntimeError("this assigner has no fetch: give it one, or use set_definitions")
        with self._refreshing:
            try:
                definitions, etag = self._fetch(self._etag)
                if definitions is not None:
                    self._install(definitions)
            except Exception as error:  # whatever went wrong, the last good definitions stay
                self.last_refresh_error = error
                return False
            self._etag, self.last_refresh_error = etag, None
            return True

    # -- the refresher

    def start(self) -> None:
        """Start the background refresher (the first ``assign`` does it when not called):
        its first fetch begins at once. Does nothing without ``fetch``, or after ``close``."""
        with self._lock:
            if self._fetch is None or self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._refresh_forever, name="experiments-definitions", daemon=True
            )
            self._thread.start()

    def _refresh_forever(self) -> None:
        """Every ``refresh_seconds``; while no definitions are held yet (the first fetches
        failed), sooner: after 0.5 s, doubling, so that a service that was down at start is
        used as soon as it answers rather than a whole period later."""
        cold_wait = COLD_RETRY_SECONDS
        while True:
            self.refresh()
            self._first_attempt.set()
            if self._experiments is None:
                wait, cold_wait = min(cold_wait, self._refresh_seconds), cold_wait * 2
            else:
                wait = self._refresh_seconds
            if self._stop.wait(wait):
                return

    def close(self) -> None:
        """Stop the refresher (after a fetch under way ends). ``assign`` still answers, from
        the last definitions."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _now() -> str:
    """Now, in UTC, as RFC 3339 with a Z: the moment the service dates the exposure by."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
