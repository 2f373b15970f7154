"""What every dialect strategy provides, and what they share: the store's other modules ask a
strategy of this shape instead of branching on the database's name."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar, runtime_checkable

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from domain.event import EventBatch

T = TypeVar("T")
Row = tuple[str, str, str, int]  # an assignment: experiment_id, user_id, variant_id, assigned_at
DimensionRow = tuple[str, str, str, str]  # an assignment's dimension: experiment_id, user_id, dimension, value
EVENT_COLUMNS = ("experiment_id", "user_id", "event_type", "timestamp", "value", "properties", "event_id")
BatchJob = Callable[[Connection, Sequence[Any]], Sequence[Any]]
"""Takes the items of a group, returns one result per item, in their order."""
FoldScript = Callable[[Connection, Mapping[str, int]], None]
WAITING_TO_FILL = (
    "EXISTS (SELECT 1 FROM metric_pairs WHERE filled = false)"
    " OR EXISTS (SELECT 1 FROM covariate_experiments WHERE filled = false)"
)
"""Whether a ratio pair or a CUPED experiment waits for a fold to fill it (folding.py): asked in
the window's own statement, so that a fold with nothing to do costs no more round trips."""


class FoldsOn(Protocol):
    """What a fold runs on (the store's Database): its write lane and its own connections."""

    async def write(self, job: Callable[[Connection], Any]) -> Any: ...

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


class UnsupportedDatabase(ValueError):
    """DATABASE_URL names no database this project has a strategy for, or cannot be used."""


class WriteLane(Protocol):
    """How write transactions reach the database."""

    async def run(self, job: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run ``job`` in a write transaction; return once it has committed. ``one_statement``:
        the job is one statement, atomic by itself, so it needs no transaction of its own."""

    async def run_batched(self, job: BatchJob, item: Any) -> Any:
        """``job`` over ``item``, perhaps with other items waiting meanwhile: its result."""

    async def close(self) -> None: ...


class TimeLimit(Protocol):
    """How a dialect stops a snapshot's statement that runs past its time."""

    def within(
        self, conn: AsyncConnection, timeout: float
    ) -> AbstractAsyncContextManager[Callable[[DBAPIError], bool]]:
        """The limit applied to ``conn``'s open transaction; gives the test of whether an error
        was the limit stopping a statement."""


class Lease(Protocol):
    """The folder's lease: at most one process of all that share a database folds in the
    background, and another takes over when it dies."""

    @property
    def held(self) -> bool: ...

    async def acquire(self) -> bool: ...

    async def release(self) -> None: ...


@runtime_checkable
class Dialect(Protocol):
    """One database's complete strategy: how to connect, write, read with a time limit, fold,
    and the SQL that differs. A new database is one module that provides this, registered in
    ``dialects/__init__.py``, plus its migrations: revisions 0004, 0005 and 0007 branch on the
    database, as they ran (a revision never changes once shipped, so it asks no strategy)."""

    name: str
    url_example: str
    """What DATABASE_URL looks like for this database, for the error that lists them."""
    snapshot: dict[str, Any]
    """Execution options of a read whose statements all see one state of the data."""
    time_limit: TimeLimit
    fold_interval: float
    """The folder's rest between folds, seconds, when FOLD_INTERVAL_SECONDS does not set it."""

    # Connecting: DATABASE_URL in the database's own terms, mapped to the drivers shipped.
    def url(self, url: URL, *, asynchronous: bool) -> URL: ...

    def engine(self, url: URL) -> AsyncEngine:
        """The engine the store runs on, for ``url`` as ``url(asynchronous=True)`` made it."""

    def migration_engine(self, url: URL) -> Engine:
        """The synchronous engine Alembic runs on, for ``url(asynchronous=False)``."""

    def lock_migrations(self, conn: Connection) -> None:
        """Make instances that migrate at once take turns, until ``conn``'s transaction ends."""

    def check_migrated(self, conn: Connection) -> None:
        """Before a migration commits: what the database could not check as it went."""

    def write_lane(self, engine: AsyncEngine) -> WriteLane: ...

    # Folding (folding.py): who folds, one fold at a time, and the windows' SQL.
    def lease(self, engine: AsyncEngine) -> Lease: ...

    async def serialize_fold(self, database: FoldsOn, job: Callable[[Connection], int]) -> int:
        """Run a fold (or rebuild) ``job`` with no other fold in between; return its result."""

    event_key: str
    assignment_key: str
    fence: str

    def after(self, key: str, param: str) -> str: ...

    def upto(self, key: str, param: str) -> str: ...

    def only(self, column: str) -> str: ...

    def by_key(self, table: str, alias: str) -> str: ...

    def assignment_of(self, events: str, alias: str) -> str: ...

    def assignment_after(self, events: str, alias: str) -> str: ...

    def assignment_or_none(self, events: str, alias: str) -> str: ...

    def prior_events_of(self, assignments: str, alias: str) -> str: ...

    def events_of(self, experiments: str, alias: str) -> str: ...

    def fold_window(self, conn: Connection, limit: int) -> tuple[int, int, int, int, bool]:
        """The first statement of a fold: the stored horizons (events, assignments), the new
        ones it folds up to, and whether anything waits to be filled (``WAITING_TO_FILL``)."""

    def script(self, statements: Sequence[TextClause]) -> FoldScript:
        """A fold's (or a rebuild's) statements, prepared once, to run in order in a
        connection's open transaction with the fold's parameters."""

    def totals_of(self, deltas: str, alias: str) -> str: ...

    def totals_by(
        self, alias: str, experiment: str, user: str, event_type: str, table: str = "user_event_totals"
    ) -> str:
        """A join of one user's totals of one event type (NULLs without any), by key: the
        counted totals, or those of another per-user table of the same shape (the pre-period's)."""

    def dimensions_of(self, rows: str, alias: str, one: bool) -> str:
        """A join of each row's user's dimension values (``alias``.dimension, .value), by key,
        the rows outside: every dimension, or with ``one`` only the one named :dim. A user
        without a value joins nothing."""

    def refresh_statistics(self, conn: Connection) -> list[str]: ...

    # Writes and lookups.
    def unmatchable(self, *keys: str) -> bool:
        """Whether no stored row can have one of these keys, so that a lookup is a miss."""

    def insert_assignments(
        self, conn: Connection, rows: list[Row], dimensions: list[DimensionRow]
    ) -> list[tuple[str, int] | None]:
        """Each assignment of ``rows`` unless one is stored for (experiment, user), with its
        ``dimensions`` (those of the assignments this call stores, none of another's), all in
        one transaction: a fold never sees an assignment without its dimensions. Returns what
        is stored for each row, (variant_id, assigned_at); None where a race this statement
        could not see won."""

    def insert_events(self, conn: Connection, batch: EventBatch) -> int: ...
