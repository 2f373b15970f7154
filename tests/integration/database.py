"""Reading a service's database directly, around the service: what a test checks it against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def raw_engine(database_url: str) -> Engine:
    """A plain synchronous engine on DATABASE_URL (sqlite3 or psycopg), none of the store's code."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url)


def micros(moment: datetime | str) -> int:
    """Microseconds since the epoch, as the store keeps timestamps; takes an API timestamp too."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return (moment - _EPOCH) // timedelta(microseconds=1)
