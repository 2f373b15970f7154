"""The values a user is assigned with, for breakdowns (domain/breakdown.py): an attribute's
value as a slice's name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_VALUE_LENGTH = 200
"""A value's characters kept: a longer one is cut, so that a key stays small in every index."""


def value_text(value: Any) -> str | None:
    """An attribute's value as a slice's name: text as sent (cut to MAX_VALUE_LENGTH), true and
    false, whole numbers without a point (JSON's 3 and 3.0 are one number), other numbers in
    Python's shortest form. None (null) is no value: the user is in "unknown"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    return str(value)[:MAX_VALUE_LENGTH]


def dimension_values(dimensions: Sequence[str], attributes: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """(dimension, value) of the dimensions the attributes give a value, in the dimensions' order."""
    if not dimensions or not attributes:
        return ()
    found = []
    for name in dimensions:
        if (text := value_text(attributes.get(name))) is not None:
            found.append((name, text))
    return tuple(found)
