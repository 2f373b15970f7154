"""The counting rule (``domain.results.counts``) as the one SQL expression every read and fold uses."""

from __future__ import annotations

from datetime import timedelta

from domain.results import PRE_PERIOD

PRE_PERIOD_MICROS = PRE_PERIOD // timedelta(microseconds=1)


def counted(events: str, since: str) -> str:
    """An event (of the table or alias ``events``) counts from ``since`` on, that moment
    included. ``+ 0`` keeps a planner from taking the comparison, meant as a filter, for the way
    in: it would read the time index once per assignment."""
    return f"{events}.timestamp + 0 >= {since}"


def in_pre_period(events: str, since: str) -> str:
    """``domain.results.in_pre_period``: in the PRE_PERIOD before ``since``, ``since`` excluded."""
    return f"{events}.timestamp + 0 < {since} AND {events}.timestamp + 0 >= {since} - {PRE_PERIOD_MICROS}"
