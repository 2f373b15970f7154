"""The audit trail: one entry per admin action, saying who did what to which object, and when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KEY_CREATED, KEY_REVOKED, EXPERIMENT_CREATED = "key.created", "key.revoked", "experiment.created"
EXPERIMENT_CHANGED = "experiment.changed"  # its fields, its state, its QA overrides
ACTIONS = frozenset({KEY_CREATED, KEY_REVOKED, EXPERIMENT_CREATED, EXPERIMENT_CHANGED})


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str
    action: str
    target_type: str  # "key", "experiment"
    target_id: str
    # What changed, as JSON values; never a secret, nor a key's digest.
    details: Mapping[str, Any] = field(default_factory=dict)
