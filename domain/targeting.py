"""Audience rules: which users an experiment is for, judged on the attributes a client sends.

A rule is JSON, checked once when an experiment is written (every fault named by its path) and
then evaluated per assignment as a tree of small immutable nodes:

    {"attribute": "country", "op": "in", "value": ["DE", "AT"]}
    {"all": [rule, ...]}   {"any": [rule, ...]}   {"not": rule}

Comparisons: ``eq``/``ne`` (any JSON scalar), ``in``/``not_in`` (a list of scalars), ``lt``/
``lte``/``gt``/``gte`` (numbers), ``version_eq``/``version_lt``/``version_lte``/``version_gt``/
``version_gte`` (semantic versions: ``1.2.3``, ``2.0.0-beta.1``; ``v1.2`` is ``1.2.0``).

A comparison is true only when the user has the attribute with a value of the comparison's kind:
a missing attribute, a string compared as a number, an unparsable version are all false, for
``ne`` and ``not_in`` too, so that "no data" never puts a user into an audience by accident. Say
``{"not": {"attribute": "plan", "op": "eq", "value": "free"}}`` to include users without a plan.
Equality is JSON's: ``1`` equals ``1.0``, but not ``"1"`` nor ``true``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from domain.errors import FieldError, ValidationFailed

MAX_DEPTH = 8
MAX_NODES = 200
MAX_LIST = 1000
MAX_ATTRIBUTE_LENGTH = 100
MAX_TEXT_LENGTH = 1000

Scalar = Union[str, int, float, bool, None]

EQUALITY = ("eq", "ne")
MEMBERSHIP = ("in", "not_in")
ORDER = ("lt", "lte", "gt", "gte")
VERSION = ("version_eq", "version_lt", "version_lte", "version_gt", "version_gte")
OPERATORS = EQUALITY + MEMBERSHIP + ORDER + VERSION

_SIGN: dict[str, Callable[[int], bool]] = {
    "eq": lambda c: c == 0,
    "lt": lambda c: c < 0,
    "lte": lambda c: c <= 0,
    "gt": lambda c: c > 0,
    "gte": lambda c: c >= 0,
}


# ---------------------------------------------------------------------------- semantic versions

_VERSION = re.compile(
    r"v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


@dataclass(frozen=True, slots=True)
class Version:
    """A semantic version's precedence (SemVer 2.0.0 §11): build metadata is ignored."""

    core: tuple[int, int, int]
    prerelease: tuple[int | str, ...]

    @classmethod
    def parse(cls, text: str) -> Version | None:
        if len(text) > MAX_TEXT_LENGTH or (match := _VERSION.fullmatch(text)) is None:
            return None
        major, minor, patch, pre = match.groups()
        parts = pre.split(".") if pre else []
        if any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in parts):
            return None  # a numeric identifier with a leading zero (01) is not SemVer
        identifiers = tuple(int(p) if p.isdigit() else p for p in parts)
        return cls((int(major), int(minor or 0), int(patch or 0)), identifiers)

    def compare(self, other: Version) -> int:
        if self.core != other.core:
            return -1 if self.core < other.core else 1
        if self.prerelease == other.prerelease:
            return 0
        if not self.prerelease:  # 1.0.0 > 1.0.0-alpha
            return 1
        if not other.prerelease:
            return -1
        for a, b in zip(self.prerelease, other.prerelease):
            if a == b:
                continue
            if isinstance(a, int) and isinstance(b, int):
                return -1 if a < b else 1
            if isinstance(a, int):  # numeric identifiers sort before alphanumeric ones
                return -1
            if isinstance(b, int):
                return 1
            return -1 if a < b else 1
        return -1 if len(self.prerelease) < len(other.prerelease) else 1


# ---------------------------------------------------------------------------- the rule tree


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """JSON equality of scalars: numbers by value, never a bool for a number or a string."""
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


@dataclass(frozen=True, slots=True)
class Comparison:
    attribute: str
    op: str
    value: Any  # a scalar, a tuple of scalars (in/not_in) or a Version

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        if self.attribute not in attributes:
            return False
        actual = attributes[self.attribute]
        op = self.op
        if op in EQUALITY:
            if isinstance(actual, (dict, list)):
                return False
            return _same(actual, self.value) == (op == "eq")
        if op in MEMBERSHIP:
            if isinstance(actual, (dict, list)):
                return False
            return any(_same(actual, v) for v in self.value) == (op == "in")
        if op in ORDER:
            if not _is_number(actual) or not math.isfinite(actual):
                return False
            return _SIGN[op]((actual > self.value) - (actual < self.value))
        if not isinstance(actual, str) or (version := Version.parse(actual)) is None:
            return False
        return _SIGN[op.removeprefix("version_")](version.compare(self.value))


@dataclass(frozen=True, slots=True)
class All:
    rules: tuple[Rule, ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return all(r.matches(attributes) for r in self.rules)


@dataclass(frozen=True, slots=True)
class Any_:
    rules: tuple[Rule, ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return any(r.matches(attributes) for r in self.rules)


@dataclass(frozen=True, slots=True)
class Not:
    rule: Rule

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return not self.rule.matches(attributes)


Rule = Union[Comparison, All, Any_, Not]


@dataclass(frozen=True, slots=True)
class Audience:
    """An experiment's audience: the rule as written (to store and show) and as parsed."""

    source: Any
    rule: Rule

    def admits(self, attributes: Mapping[str, Any]) -> bool:
        return self.rule.matches(attributes)


def parse_audience(source: Any, field: str = "audience") -> Audience:
    """The audience of ``source`` (decoded JSON); raises ValidationFailed naming every fault."""
    errors: list[FieldError] = []
    counter = [0]
    rule = _parse(source, field, errors, depth=1, counter=counter)
    if counter[0] > MAX_NODES:
        errors.append(FieldError(field, f"must have at most {MAX_NODES} rules in all"))
    if errors or rule is None:
        raise ValidationFailed(errors or [FieldError(field, "is not a rule")])
    return Audience(source, rule)


def _parse(node: Any, path: str, errors: list[FieldError], depth: int, counter: list[int]) -> Rule | None:
    counter[0] += 1
    if depth > MAX_DEPTH:
        errors.append(FieldError(path, f"nests rules deeper than {MAX_DEPTH} levels"))
        return None
    if not isinstance(node, dict):
        errors.append(FieldError(path, 'must be an object: a comparison, or "all", "any" or "not"'))
        return None
    combinators = [k for k in ("all", "any", "not") if k in node]
    if combinators:
        key = combinators[0]
        extra = sorted(set(node) - {key})
        for name in extra:
            errors.append(FieldError(f"{path}.{name}", f'is not allowed beside "{key}"'))
        if key == "not":
            inner = _parse(node["not"], f"{path}.not", errors, depth + 1, counter)
            return None if inner is None or extra else Not(inner)
        items = node[key]
        if not isinstance(items, list) or not items:
            errors.append(FieldError(f"{path}.{key}", "must be a non-empty list of rules"))
            return None
        if len(items) > MAX_LIST:
            errors.append(FieldError(f"{path}.{key}", f"must have at most {MAX_LIST} rules"))
            return None
        parsed = [_parse(item, f"{path}.{key}[{i}]", errors, depth + 1, counter) for i, item in enumerate(items)]
        if extra or any(p is None for p in parsed):
            return None
        return (All if key == "all" else Any_)(tuple(parsed))  # type: ignore[arg-type]
    return _comparison(node, path, errors)


def _comparison(node: dict, path: str, errors: list[FieldError]) -> Comparison | None:
    before = len(errors)
    for name in sorted(set(node) - {"attribute", "op", "value"}):
        errors.append(FieldError(f"{path}.{name}", "is not a known field"))
    attribute = node.get("attribute")
    if not isinstance(attribute, str) or not 1 <= len(attribute) <= MAX_ATTRIBUTE_LENGTH:
        errors.append(FieldError(f"{path}.attribute", f"must be a string of 1 to {MAX_ATTRIBUTE_LENGTH} characters"))
    op = node.get("op")
    if op not in OPERATORS:
        errors.append(FieldError(f"{path}.op", f"must be one of {', '.join(OPERATORS)}"))
        return None
    if "value" not in node:
        errors.append(FieldError(f"{path}.value", "is required"))
        return None
    value = _value(op, node["value"], f"{path}.value", errors)
    if len(errors) > before:
        return None
    return Comparison(attribute, op, value)  # type: ignore[arg-type]


def _scalar_error(value: Any) -> str | None:
    if isinstance(value, (dict, list)):
        return "must be a string, number, boolean or null"
    if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH:
        return f"must be at most {MAX_TEXT_LENGTH} characters"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None


def _value(op: str, value: Any, path: str, errors: list[FieldError]) -> Any:
    if op in EQUALITY:
        if (error := _scalar_error(value)) is not None:
            errors.append(FieldError(path, error))
        return value
    if op in MEMBERSHIP:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            errors.append(FieldError(path, f"must be a list of 1 to {MAX_LIST} values"))
            return None
        for i, item in enumerate(value):
            if (error := _scalar_error(item)) is not None:
                errors.append(FieldError(f"{path}[{i}]", error))
        return tuple(value)
    if op in ORDER:
        if not _is_number(value) or not math.isfinite(value):
            errors.append(FieldError(path, f'must be a finite number for "{op}"'))
        return value
    version = Version.parse(value) if isinstance(value, str) else None
    if version is None:
        errors.append(FieldError(path, f'must be a semantic version (like "1.4.0") for "{op}"'))
    return version
