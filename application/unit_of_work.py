"""The unit of work: an action and its audit entry, committed together or not at all, and what
must follow the action (a cache to forget) run only once it is committed.

A use case opens one around its write and records the entry in it; the store's write takes the
entries of the unit it runs in and stores them in its own transaction, so that store methods
need no audit parameter and no entry exists for an action that failed:

    async with UnitOfWork() as work:
        work.audit(entry)
        work.after_commit(lambda: cache.forget_experiment(experiment.id))
        await store.update_experiment(changed, expected_version=current.version)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType

from domain.audit import AuditEntry

_current: ContextVar[UnitOfWork | None] = ContextVar("unit_of_work", default=None)


class UnitOfWork:
    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._after: list[Callable[[], Awaitable[None]]] = []
        self._token: Token[UnitOfWork | None] | None = None

    def audit(self, entry: AuditEntry) -> None:
        """The entry commits with the next write of the store in this unit."""
        self._entries.append(entry)

    def after_commit(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run once the unit ends without an error, in the order given; never after a failure."""
        self._after.append(job)

    async def __aenter__(self) -> UnitOfWork:
        if _current.get() is not None:
            raise RuntimeError("a unit of work is already open: one action, one unit")
        self._token = _current.set(self)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._token is not None
        _current.reset(self._token)
        if error is not None:
            return  # nothing after a failure: the write rolled back, and its entry with it
        if self._entries:
            raise RuntimeError(f"{len(self._entries)} audit entries were recorded but no write stored them")
        for job in self._after:
            await job()


def take_audit_entries() -> list[AuditEntry]:
    """For a store's write: the audit entries of the unit it runs in (none outside one), taken,
    to be stored in the write's own transaction."""
    unit = _current.get()
    if unit is None:
        return []
    taken, unit._entries = unit._entries, []
    return taken
