"""Drop the secondary indexes no query uses: each one slowed every event and assignment insert.

Every read of events goes by experiment and user (ix_events_results), by rowid or id (the
totals), or by event_id (idempotency); assignments are read by experiment and user (their
unique constraint) or by variant (ix_user_assignments_variant). The single-column indexes cost
a fifth of an event batch each and served nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DROPPED = {
    "events": ("ix_events_experiment_id", "ix_events_user_id", "ix_events_timestamp", "ix_events_event_type"),
    "user_assignments": ("ix_user_assignments_user_id",),
}
COLUMNS = {
    "ix_events_experiment_id": ["experiment_id"],
    "ix_events_user_id": ["user_id"],
    "ix_events_timestamp": ["timestamp"],
    "ix_events_event_type": ["event_type"],
    "ix_user_assignments_user_id": ["user_id"],
}


def upgrade() -> None:
    for table, names in DROPPED.items():
        for name in names:
            op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, names in DROPPED.items():
        for name in names:
            op.create_index(name, table, COLUMNS[name])
