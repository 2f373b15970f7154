"""Audience rules, judged in-process exactly as the service judges them.

The rules are those of docs/experiments-that-live.md, "Audiences (targeting)".

A rule is JSON, compiled once into a tree of small nodes and then asked, per decision, whether
it admits a user's attributes:

    {"attribute": "country", "op": "in", "value": ["DE", "AT"]}
    {"all": [rule, ...]}   {"any": [rule, ...]}   {"not": rule}

Operators: ``eq``/``ne`` (any JSON scalar), ``in``/``not_in`` (a list of scalars), ``lt``/
``lte``/``gt``/``gte`` (numbers), ``version_eq``/``version_lt``/``version_lte``/
``version_gt``/``version_gte`` (SemVer precedence; ``v1.2`` is ``1.2.0``).

A comparison is true only when the user has the attribute with a value of the comparison's
kind: a missing attribute, a string compared as a number, an unparsable version are all false,
for ``ne`` and ``not_in`` too, so that "no data" never puts a user into an audience. Equality
is JSON's: ``1`` equals ``1.0``, but not ``"1"`` nor ``true``.

The service validated every rule when the experiment was written, so compiling checks only
what it needs to build the tree; an operator it does not know (one a newer service added) is
a ValueError, and the experiment cannot be decided locally.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Protocol

MAX_TEXT_LENGTH = 1000
"""The longest string the service reads as a version; a longer one is no version."""

_MISSING: Any = object()
_CONTAINERS = (dict, list)  # JSON's non-scalars: never equal to, nor a member of, a scalar list

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


class Node(Protocol):
    """One rule of the tree: whether these attributes satisfy it."""

    def matches(self, attributes: Mapping[str, Any]) -> bool: ...


# ------------------------------------------------------------------------------------- values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_number(value: Any) -> bool:
    """A number that order comparisons accept: no bool, no NaN, no infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _same(actual: Any, expected: Any) -> bool:
    """JSON equality of scalars: numbers by value, anything else only with its own type."""
    if _is_number(actual) and _is_number(expected):
        return bool(actual == expected)
    return type(actual) is type(expected) and bool(actual == expected)


_VERSION = re.compile(
    r"v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

VersionKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]
"""A version's SemVer precedence as a tuple that Python orders the same way."""


@lru_cache(maxsize=4096)
def version_key(text: str) -> VersionKey | None:
    """The precedence of ``text`` (SemVer 2.0.0 §11), or None when it is not a version.

    The core comes first; then a release (flag 1) ranks above its prereleases (flag 0), whose
    identifiers compare one by one, numeric ones (0, n) below alphanumeric ones (1, s), a
    shorter list of equal identifiers first. Build metadata is ignored. Cached: a few distinct
    app versions account for most users, and parsing is the costly part of a comparison.
    """
    if len(text) > MAX_TEXT_LENGTH or (match := _VERSION.fullmatch(text)) is None:
        return None
    major, minor, patch, prerelease = match.groups()
    core = (int(major), int(minor or 0), int(patch or 0))
    if not prerelease:
        return (*core, 1, ())
    identifiers: list[tuple[int, int | str]] = []
    for part in prerelease.split("."):
        if not part.isdigit():
            identifiers.append((1, part))
        elif len(part) > 1 and part[0] == "0":
            return None  # a numeric identifier with a leading zero (01) is not SemVer
        else:
            identifiers.append((0, int(part)))
    return (*core, 0, tuple(identifiers))


# -------------------------------------------------------------------------------- comparisons


class Equals:
    """``eq`` (wanted True) and ``ne`` (wanted False) of a present, scalar attribute."""

    __slots__ = ("attribute", "value", "wanted")

    def __init__(self, attribute: str, value: Any, wanted: bool) -> None:
        self.attribute, self.value, self.wanted = attribute, _scalar(value), wanted

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(self.attribute, _MISSING)
        if actual is _MISSING or isinstance(actual, _CONTAINERS):
            return False
        return _same(actual, self.value) is self.wanted


class OneOf:
    """``in`` (wanted True) and ``not_in`` (wanted False) of a present, scalar attribute.

    Strings and numbers, the usual members, are looked up in sets (a number's hash is its
    value's, so 1 finds 1.0); a bool or null is compared member by member, since True == 1
    would find it among the numbers.
    """

    __slots__ = ("attribute", "numbers", "strings", "values", "wanted")

    def __init__(self, attribute: str, values: Any, wanted: bool) -> None:
        if not isinstance(values, list) or not values:
            raise ValueError(f'audience: "{attribute}" needs a non-empty list of values')
        self.attribute, self.wanted = attribute, wanted
        self.values = tuple(_scalar(v) for v in values)
        self.strings = frozenset(v for v in self.values if type(v) is str)
        self.numbers = frozenset(v for v in self.values if _is_number(v))

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(self.attribute, _MISSING)
        if actual is _MISSING or isinstance(actual, _CONTAINERS):
            return False
        return self._holds(actual) is self.wanted

    def _holds(self, actual: Any) -> bool:
        kind = type(actual)
        if kind is str:
            return actual in self.strings
        if kind is int or kind is float:
            return actual in self.numbers
        return any(_same(actual, v) for v in self.values)


class Ordered:
    """``lt``/``lte``/``gt``/``gte`` of a present, finite number (never a bool)."""

    __slots__ = ("attribute", "compare", "value")

    def __init__(self, attribute: str, compare: Callable[[Any, Any], bool], value: Any) -> None:
        if not _finite_number(value):
            raise ValueError(f'audience: "{attribute}" is compared with {value!r}, not a number')
        self.attribute, self.compare, self.value = attribute, compare, value

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(self.attribute, _MISSING)
        return _finite_number(actual) and self.compare(actual, self.value)


class VersionOrdered:
    """``version_*`` of a present string that parses as a semantic version."""

    __slots__ = ("attribute", "compare", "key")

    def __init__(self, attribute: str, compare: Callable[[Any, Any], bool], value: Any) -> None:
        key = version_key(value) if isinstance(value, str) else None
        if key is None:
            raise ValueError(f'audience: "{attribute}" is compared with {value!r}, not a version')
        self.attribute, self.compare, self.key = attribute, compare, key

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(self.attribute, _MISSING)
        if not isinstance(actual, str) or (key := version_key(actual)) is None:
            return False
        return self.compare(key, self.key)


# -------------------------------------------------------------------------------- combinators


class All:
    __slots__ = ("checks",)

    def __init__(self, nodes: tuple[Node, ...]) -> None:
        self.checks = tuple(n.matches for n in nodes)

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        for check in self.checks:
            if not check(attributes):
                return False
        return True


class AnyOf:
    __slots__ = ("checks",)

    def __init__(self, nodes: tuple[Node, ...]) -> None:
        self.checks = tuple(n.matches for n in nodes)

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        for check in self.checks:
            if check(attributes):
                return True
        return False


class Not:
    __slots__ = ("check",)

    def __init__(self, node: Node) -> None:
        self.check = node.matches

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return not self.check(attributes)


# -------------------------------------------------------------------------------- compiling

OPERATORS = (
    "eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte",
    "version_eq", "version_lt", "version_lte", "version_gt", "version_gte",
)
"""The comparison operators this client knows."""


class Audience:
    """An experiment's audience: the rule as the definitions hold it, and compiled."""

    __slots__ = ("admits", "source")

    def __init__(self, source: Any) -> None:
        """Compile ``source`` (decoded JSON); a ValueError names what cannot be compiled."""
        self.source = source
        # Whether the rule admits a user with these attributes: the root's own method, so
        # that asking costs no call more than the tree does.
        self.admits: Callable[[Mapping[str, Any]], bool] = compile_rule(source).matches


def compile_rule(rule: Any) -> Node:
    """The node tree of ``rule``. Of "all", "any" and "not", the first present is the rule's
    (as the service reads it); anything else is a comparison."""
    if not isinstance(rule, dict):
        raise ValueError(f"audience: a rule is an object, not {rule!r}")
    if "all" in rule:
        return All(_compile_list(rule["all"], "all"))
    if "any" in rule:
        return AnyOf(_compile_list(rule["any"], "any"))
    if "not" in rule:
        return Not(compile_rule(rule["not"]))
    return _compile_comparison(rule)


def _compile_list(rules: Any, key: str) -> tuple[Node, ...]:
    if not isinstance(rules, list) or not rules:
        raise ValueError(f'audience: "{key}" needs a non-empty list of rules')
    return tuple(compile_rule(r) for r in rules)


def _compile_comparison(rule: dict[str, Any]) -> Node:
    attribute, op = rule.get("attribute"), rule.get("op")
    if not isinstance(attribute, str) or "value" not in rule:
        raise ValueError(f'audience: a comparison needs "attribute", "op" and "value": {rule!r}')
    if not isinstance(op, str) or op not in OPERATORS:
        raise ValueError(
            f"audience: unknown operator {op!r} (this client knows {', '.join(OPERATORS)}); "
            "a newer service may have added it: upgrade the client"
        )
    value = rule["value"]
    if op in ("eq", "ne"):
        return Equals(attribute, value, op == "eq")
    if op in ("in", "not_in"):
        return OneOf(attribute, value, op == "in")
    if op.startswith("version_"):
        return VersionOrdered(attribute, _ORDER[op.removeprefix("version_")], value)
    return Ordered(attribute, _ORDER[op], value)


def _scalar(value: Any) -> Any:
    if isinstance(value, _CONTAINERS):
        raise ValueError(f"audience: {value!r} is not a scalar")
    return value
