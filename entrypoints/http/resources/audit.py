"""The audit trail of admin actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from application.access import AuditPage, ListAudit
from domain.audit import AuditEntry
from domain.keys import ADMIN
from entrypoints.http import openapi


class AuditTargetOut(msgspec.Struct):
    type: str
    id: str


class AuditEntryOut(msgspec.Struct):
    id: str
    at: datetime
    actor: str
    action: str
    target: AuditTargetOut
    details: dict[str, Any]

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(e.id, e.at, e.actor, e.action, AuditTargetOut(e.target_type, e.target_id), dict(e.details))


class AuditListOut(msgspec.Struct):
    items: list[AuditEntryOut]
    total: int

    @classmethod
    def of(cls, page: AuditPage) -> AuditListOut:
        return cls([AuditEntryOut.of(e) for e in page.items], page.total)


class AuditController(Controller):
    path = "/audit"
    tags = [openapi.AUDIT]
    opt = {"scope": ADMIN}

    @get(
        summary="Read the audit trail of admin actions, newest first.",
        responses=openapi.error_responses(*openapi.AUTHENTICATED, 422),
    )
    async def list_audit(
        self,
        list_audit: NamedDependency[ListAudit],
        limit: FromQuery[int] = 100,
        offset: FromQuery[int] = 0,
        action: FromQuery[str | None] = None,
        target_id: FromQuery[str | None] = None,
    ) -> AuditListOut:
        """Each entry: when, who (the key's name, `API_TOKENS`, or `jwt:<sub>`), the action
        (`key.created`, `key.revoked`, `experiment.created`, `experiment.changed`), its target
        and what changed. Filters: `action`, `target_id`; `limit` and `offset` as for lists."""
        return AuditListOut.of(
            await list_audit(limit=limit, offset=offset, action=action, target_id=target_id)
        )
