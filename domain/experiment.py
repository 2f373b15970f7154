"""Experiments, their variants, and the deterministic bucketing of users onto the traffic split."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.analysis import Analysis
from domain.errors import DomainError, FieldError, ValidationFailed
from domain.hashing import BUCKETS, bucket
from domain.layers import HoldoutRef, LayerSlot
from domain.lifecycle import Status, move
from domain.metrics import MAX_EVENT_TYPE_LENGTH
from domain.targeting import Audience, parse_audience

MIN_VARIANTS, MAX_VARIANTS = 2, 20
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 10_000


def bucket_of(experiment_id: str, user_id: str) -> int:
    """The user's bucket of the variant split: ``bucket("{experiment_id}:{user_id}")``."""
    return bucket(f"{experiment_id}:{user_id}")


def percentage_to_basis_points(value: float) -> int | None:
    """Exact basis points of a percentage with at most two decimals, else None.

    The shortest repr of the float is what the client wrote (``33.33``), so Decimal(repr)
    tells its decimals without the binary rounding noise of ``value * 100``.
    """
    if not math.isfinite(value):
        return None
    scaled = Decimal(repr(float(value))) * 100
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    name: str
    traffic_basis_points: int
    is_control: bool

    @property
    def traffic_percentage(self) -> float:
        return self.traffic_basis_points / 100


@dataclass(frozen=True, slots=True)
class VariantDraft:
    """A variant as a client asks for it, before validation gives it an id."""

    name: str
    traffic_percentage: float
    is_control: bool | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """A user forced into a variant (QA): answered before any rule, never counted in results."""

    user_id: str
    variant_id: str
    forced_at: datetime


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    description: str | None
    primary_event_type: str | None
    created_at: datetime
    variants: tuple[Variant, ...]
    # Upper bucket bound (exclusive) of each variant, in order; a 0% variant has an empty range.
    _bucket_ends: tuple[int, ...] = field(init=False, repr=False, compare=False)
    # What an experiment that lives adds (domain/lifecycle.py, domain/eligibility.py): the
    # defaults are an experiment as the base contract creates it, running for all traffic.
    status: Status = Status.RUNNING
    coverage_basis_points: int = BUCKETS
    audience: Audience | None = None
    winner_variant_id: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    overrides: tuple[Override, ...] = ()
    layer: LayerSlot | None = None  # its slice of a layer: no user is in two of a layer's experiments
    holdout: HoldoutRef | None = None  # the holdout it opts into: those users never enter
    version: int = 1  # of the stored row: a change applies to the version it was made from
    analysis: Analysis = Analysis()  # how its results are read by default (domain/analysis.py)
    _forced: dict[str, Override] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends, total = [], 0
        for variant in self.variants:
            total += variant.traffic_basis_points
            ends.append(total)
        object.__setattr__(self, "_bucket_ends", tuple(ends))
        object.__setattr__(self, "_forced", {o.user_id: o for o in self.overrides})

    @classmethod
    def create(
        cls,
        *,
        name: str,
        description: str | None,
        primary_event_type: str | None,
        variants: Sequence[VariantDraft],
        new_id: Callable[[], str],
        created_at: datetime,
        status: str | None = None,
        coverage: float | None = None,
        audience: Any = None,
        analysis: Any = None,
    ) -> Experiment:
        """Validate a client's request as a whole (every broken rule is reported) and build it.
        ``status``: draft or running (the default); ``coverage``: the percentage of eligible
        traffic that enters (default 100); ``audience``: a rule (domain/targeting.py), as JSON;
        ``analysis``: how results are read by default (domain/analysis.py), as JSON."""
        errors = _text_errors(name, description, primary_event_type)
        errors.extend(_split_errors(variants))
        state = Status.RUNNING
        if status is not None:
            if status in (Status.DRAFT, Status.RUNNING):
                state = Status(status)
            else:
                errors.append(FieldError("status", "must be draft or running at creation"))
        coverage_bp, error = _coverage(coverage)
        if error is not None:
            errors.append(error)
        rule = None
        if audience is not None:
            try:
                rule = parse_audience(audience)
            except ValidationFailed as exc:
                errors.extend(exc.errors)
        read = Analysis()
        try:
            read = Analysis.parse(analysis)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
        if errors:
            raise ValidationFailed(errors)
        return cls(
            id=new_id(),
            name=name,
            description=description,
            primary_event_type=primary_event_type,
            created_at=created_at,
            variants=_variants(variants, new_id),
            status=state,
            coverage_basis_points=coverage_bp,
            audience=rule,
            started_at=created_at if state is Status.RUNNING else None,
            analysis=read,
        )

    def changed(self, now: datetime, new_id: Callable[[], str], **changes: Any) -> tuple[Experiment, dict[str, Any]]:
        """This experiment with ``changes`` applied (any of name, description,
        primary_event_type, coverage, status, winner_variant_id, variants, audience, analysis), and what
        changed from what. Every invalid value is named at once (ValidationFailed); a change the
        experiment's state forbids is a ChangeRefused or an IllegalMove, naming the state."""
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise ValueError(f"not changeable: {sorted(unknown)}")
        new: dict[str, Any] = {}
        errors: list[FieldError] = []
        text = {k: changes.get(k, getattr(self, k)) for k in ("name", "description", "primary_event_type")}
        if any(k in changes for k in text):
            errors.extend(e for e in _text_errors(**text) if e.field in changes)
            new.update({k: v for k, v in text.items() if k in changes})
        if "coverage" in changes:
            coverage_bp, error = _coverage(changes["coverage"])
            if error is not None:
                errors.append(error)
            elif coverage_bp < self.coverage_basis_points and self.status is not Status.DRAFT:
                raise ChangeRefused(
                    f"the experiment is {self.status.value}: its coverage can only grow (from "
                    f"{self.coverage_basis_points / 100:g}%), as lowering it would drop users already "
                    "assigned; pause or stop it instead"
                )
            else:
                new["coverage_basis_points"] = coverage_bp
        if "variants" in changes:
            drafts = changes["variants"]
            split_errors = _split_errors(drafts)
            if split_errors:
                errors.extend(split_errors)
            elif self.status is Status.DRAFT:
                new["variants"] = _variants(drafts, new_id)
            elif not self._same_split(drafts):
                raise ChangeRefused(
                    f"the experiment is {self.status.value}: its split cannot change, as that would "
                    "move users already assigned to another variant; create a new experiment instead"
                )
        if "audience" in changes:
            if self.status is not Status.DRAFT:
                raise ChangeRefused(
                    f"the experiment is {self.status.value}: its audience can change only in draft, "
                    "as a new audience would move users in or out of it"
                )
            try:
                new["audience"] = None if changes["audience"] is None else parse_audience(changes["audience"])
            except ValidationFailed as exc:
                errors.extend(exc.errors)
        if "analysis" in changes:  # at any time: it changes how results are read, not who sees what
            try:
                new["analysis"] = Analysis.parse(changes["analysis"])
            except ValidationFailed as exc:
                errors.extend(exc.errors)
        status = self.status
        if "status" in changes:
            try:
                status = Status(changes["status"])
            except ValueError:
                errors.append(FieldError("status", f"must be one of {', '.join(s.value for s in Status)}"))
        winner = changes.get("winner_variant_id")
        if winner is not None and self.variant(winner) is None:
            errors.append(FieldError("winner_variant_id", "is not a variant of this experiment"))
        if errors:
            raise ValidationFailed(errors)
        if status is not self.status:
            new["status"] = move(self.status, status)
            if status is Status.RUNNING and self.started_at is None:
                new["started_at"] = now
            if status is Status.STOPPED:
                new["stopped_at"] = now
        if winner is not None:
            if status is not Status.STOPPED:
                raise ChangeRefused(
                    f"the experiment is {status.value}: a winner is declared when it stops "
                    '(send "status": "stopped" with the winner)'
                )
            # Everyone has been served the winner since ``stopped_at``: a second winner would
            # make that moment, and what results and the audit trail say of it, untrue.
            if self.status is Status.STOPPED and winner != self.winner_variant_id:
                raise ChangeRefused(
                    "the experiment is stopped: its winner was declared when it stopped and is final"
                )
            new["winner_variant_id"] = winner
        diff = {k: {"from": _shown(getattr(self, k)), "to": _shown(v)} for k, v in new.items() if getattr(self, k) != v}
        if not diff:
            return self, {}
        return replace(self, version=self.version + 1, **new), diff

    def _same_split(self, drafts: Sequence[VariantDraft]) -> bool:
        explicit = next((i for i, d in enumerate(drafts) if d.is_control), 0)
        return [(v.name, v.traffic_basis_points, v.is_control) for v in self.variants] == [
            (d.name, percentage_to_basis_points(d.traffic_percentage), i == explicit) for i, d in enumerate(drafts)
        ]

    def forced(self, user_id: str, variant_id: str, now: datetime) -> Experiment:
        """This experiment with the user forced into the variant (replacing an earlier force)."""
        if self.variant(variant_id) is None:
            raise ValidationFailed([FieldError("variant_id", "is not a variant of this experiment")])
        kept = tuple(o for o in self.overrides if o.user_id != user_id)
        if len(kept) >= MAX_OVERRIDES:
            raise ValidationFailed(
                [FieldError("user_id", f"an experiment holds at most {MAX_OVERRIDES} forced users")]
            )
        return replace(self, overrides=kept + (Override(user_id, variant_id, now),), version=self.version + 1)

    def unforced(self, user_id: str) -> Experiment:
        kept = tuple(o for o in self.overrides if o.user_id != user_id)
        if len(kept) == len(self.overrides):
            return self
        return replace(self, overrides=kept, version=self.version + 1)

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.is_control)

    def variant(self, variant_id: str) -> Variant | None:
        return next((v for v in self.variants if v.id == variant_id), None)

    def variant_for_bucket(self, bucket: int) -> Variant:
        """The variant whose range of buckets holds this bucket (ranges follow the variants' order)."""
        return self.variants[bisect_right(self._bucket_ends, bucket)]

    def variant_for_user(self, user_id: str) -> Variant:
        return self.variant_for_bucket(bucket_of(self.id, user_id))

    def document(self) -> dict[str, Any]:
        """The experiment as JSON values, every field: what the API shows of it, and what the
        audit trail records of it when it is created. Its layer and holdout are named by id
        (their seeds are theirs to show); the version is the store's, not the experiment's."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "primary_event_type": self.primary_event_type,
            "created_at": rfc3339(self.created_at),
            "variants": [
                {"id": v.id, "name": v.name, "traffic_percentage": v.traffic_percentage, "is_control": v.is_control}
                for v in self.variants
            ],
            "status": self.status.value,
            "coverage": self.coverage_basis_points / 100,
            "audience": None if self.audience is None else self.audience.source,
            "winner_variant_id": self.winner_variant_id,
            "started_at": rfc3339(self.started_at),
            "stopped_at": rfc3339(self.stopped_at),
            "overrides": [
                {"user_id": o.user_id, "variant_id": o.variant_id, "forced_at": rfc3339(o.forced_at)}
                for o in self.overrides
            ],
            "layer": None
            if self.layer is None
            else {"id": self.layer.layer_id, "start": self.layer.slice.start, "end": self.layer.slice.end},
            "holdout_id": None if self.holdout is None else self.holdout.holdout_id,
            "analysis": self.analysis.document(),
        }

    def override_for(self, user_id: str) -> Override | None:
        return self._forced.get(user_id)

    @property
    def winner(self) -> Variant:
        """The variant a stopped experiment serves: the declared winner, else the control."""
        return (self.winner_variant_id and self.variant(self.winner_variant_id)) or self.control


CHANGEABLE = frozenset(
    {
        "name", "description", "primary_event_type", "coverage", "status", "winner_variant_id", "variants",
        "audience", "analysis",
    }
)
MAX_OVERRIDES = 1000


class ChangeRefused(DomainError):
    """A change the experiment's current state does not allow (a conflict, not bad input)."""


def rfc3339(moment: datetime | None) -> str | None:
    """A UTC moment as the API writes it: RFC 3339 with ``Z``, microseconds when there are any."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _shown(value: Any) -> Any:
    """A value as the audit trail records it: plain JSON."""
    if isinstance(value, Status):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Audience):
        return value.source
    if isinstance(value, Analysis):
        return value.document()
    if isinstance(value, tuple):  # variants
        return [{"name": v.name, "traffic_percentage": v.traffic_percentage, "is_control": v.is_control} for v in value]
    return value


def _text_errors(name: str, description: str | None, primary_event_type: str | None) -> list[FieldError]:
    errors: list[FieldError] = []
    for field_name, text in (
        ("name", name), ("description", description), ("primary_event_type", primary_event_type)
    ):
        if text and "\x00" in text:  # no database stores it in text alike
            errors.append(FieldError(field_name, "must not contain the NUL character"))
    if name is None or not name.strip():
        errors.append(FieldError("name", "must not be blank"))
    elif len(name) > MAX_NAME_LENGTH:
        errors.append(FieldError("name", f"must be at most {MAX_NAME_LENGTH} characters"))
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        errors.append(FieldError("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters"))
    if primary_event_type is not None and not 1 <= len(primary_event_type) <= MAX_EVENT_TYPE_LENGTH:
        errors.append(FieldError("primary_event_type", f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters"))
    return errors


def _coverage(percentage: float | None) -> tuple[int, FieldError | None]:
    if percentage is None:
        return BUCKETS, None
    basis_points = percentage_to_basis_points(percentage)
    if not math.isfinite(percentage) or not 0 <= percentage <= 100:
        return BUCKETS, FieldError("coverage", "must be a number from 0 to 100")
    if basis_points is None:
        return BUCKETS, FieldError("coverage", "must have at most two decimals (0.01% steps)")
    return basis_points, None


def _variants(drafts: Sequence[VariantDraft], new_id: Callable[[], str]) -> tuple[Variant, ...]:
    explicit_control = next((i for i, v in enumerate(drafts) if v.is_control), None)
    control_index = 0 if explicit_control is None else explicit_control
    return tuple(
        Variant(
            id=new_id(),
            name=draft.name,
            traffic_basis_points=percentage_to_basis_points(draft.traffic_percentage) or 0,
            is_control=i == control_index,
        )
        for i, draft in enumerate(drafts)
    )


def _split_errors(variants: Sequence[VariantDraft]) -> list[FieldError]:
    errors: list[FieldError] = []
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        errors.append(
            FieldError("variants", f"must have {MIN_VARIANTS} to {MAX_VARIANTS} variants, got {len(variants)}")
        )
    seen: set[str] = set()
    total = 0
    split_known = True
    for i, draft in enumerate(variants):
        where = f"variants[{i}]"
        if not draft.name.strip():
            errors.append(FieldError(f"{where}.name", "must not be blank"))
        elif "\x00" in draft.name:
            errors.append(FieldError(f"{where}.name", "must not contain the NUL character"))
        elif len(draft.name) > MAX_NAME_LENGTH:
            errors.append(FieldError(f"{where}.name", f"must be at most {MAX_NAME_LENGTH} characters"))
        elif draft.name in seen:
            errors.append(FieldError(f"{where}.name", f"duplicate variant name {draft.name!r}"))
        seen.add(draft.name)
        pct = draft.traffic_percentage
        basis_points = percentage_to_basis_points(pct)
        if not math.isfinite(pct) or not 0 <= pct <= 100:
            errors.append(FieldError(f"{where}.traffic_percentage", "must be a number from 0 to 100"))
            split_known = False
        elif basis_points is None:
            errors.append(FieldError(f"{where}.traffic_percentage", "must have at most two decimals"))
            split_known = False
        else:
            total += basis_points
    if split_known and variants and total != BUCKETS:
        errors.append(
            FieldError("variants", f"traffic percentages must sum to exactly 100, got {total / 100:g}")
        )
    controls = [i for i, v in enumerate(variants) if v.is_control]
    if len(controls) > 1:
        errors.append(
            FieldError(f"variants[{controls[1]}].is_control", "at most one variant may be the control")
        )
    return errors
