"""API keys and the audit trail on SQL: a write that is audited stores its entry in its own
transaction, so an action and its entry are committed together or not at all."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.tables import api_keys, audit_log
from application.unit_of_work import take_audit_entries
from domain.audit import AuditEntry
from domain.event import from_micros, to_micros
from domain.keys import ApiKey


def insert_audit(conn: Connection, entries: list[AuditEntry]) -> None:
    """The unit of work's entries, in the transaction of the write they go with."""
    if not entries:
        return
    conn.execute(
        audit_log.insert(),
        [
            {
                "id": entry.id,
                "at": to_micros(entry.at),
                "actor": entry.actor,
                "action": entry.action,
                "target_type": entry.target_type,
                "target_id": entry.target_id,
                "details": json.dumps(entry.details, separators=(",", ":"), sort_keys=True),
            }
            for entry in entries
        ],
    )


def _micros(moment: Any) -> int | None:
    return None if moment is None else to_micros(moment)


def _moment(micros: int | None) -> Any:
    return None if micros is None else from_micros(micros)


def _key_of(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        digest=row.digest,
        created_at=from_micros(row.created_at),
        created_by=row.created_by,
        expires_at=_moment(row.expires_at),
        revoked_at=_moment(row.revoked_at),
    )


class Keys:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, key: ApiKey) -> None:
        entries = take_audit_entries()

        def insert(conn: Connection) -> None:
            conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    name=key.name,
                    scopes=" ".join(key.scopes),
                    digest=key.digest,
                    created_at=to_micros(key.created_at),
                    created_by=key.created_by,
                    expires_at=_micros(key.expires_at),
                    revoked_at=_micros(key.revoked_at),
                )
            )
            insert_audit(conn, entries)

        await self._db.write(insert)

    async def get(self, key_id: str) -> ApiKey | None:
        if self._db.dialect.unmatchable(key_id):
            return None
        async with self._db.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return None if row is None else _key_of(row)

    async def find(self, digest: str) -> ApiKey | None:
        async with self._db.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.digest == digest))).first()
        return None if row is None else _key_of(row)

    async def page(self, limit: int, offset: int) -> tuple[list[ApiKey], int]:
        page = (
            select(api_keys)
            .order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.snapshot() as conn:
            total = (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
            rows = (await conn.execute(page)).all()
        return [_key_of(r) for r in rows], total

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        entries = take_audit_entries()
        if self._db.dialect.unmatchable(key_id):
            return None

        def revoke(conn: Connection) -> ApiKey | None:
            # Only a key not yet revoked changes, and only then is an entry stored: revoking
            # twice keeps the first time and leaves one entry.
            changed = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=to_micros(at))
            ).rowcount
            if changed:
                insert_audit(conn, entries)
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
            return None if row is None else _key_of(row)

        return await self._db.write(revoke)


class AuditTrail:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def page(
        self, limit: int, offset: int, action: str | None, target_id: str | None
    ) -> tuple[list[AuditEntry], int]:
        if target_id is not None and self._db.dialect.unmatchable(target_id):
            return [], 0
        where = []
        if action is not None:
            where.append(audit_log.c.action == action)
        if target_id is not None:
            where.append(audit_log.c.target_id == target_id)
        page = (
            select(audit_log)
            .where(*where)
            .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._db.snapshot() as conn:
            total = (await conn.execute(select(func.count()).select_from(audit_log).where(*where))).scalar_one()
            rows = (await conn.execute(page)).all()
        return [
            AuditEntry(r.id, from_micros(r.at), r.actor, r.action, r.target_type, r.target_id, json.loads(r.details))
            for r in rows
        ], total
