"""The counting rule (``domain.results.counts``) as the one SQL expression every read and fold uses."""

from __future__ import annotations


def counted(events: str, since: str) -> str:
    """An event (of the table or alias ``events``) counts from ``since`` on, that moment
    included. ``+ 0`` keeps a planner from taking the comparison, meant as a filter, for the way
    in: it would read the time index once per assignment."""
    return f"{events}.timestamp + 0 >= {since}"
