"""Pre-aggregated results: per-user and per-variant totals, backfilled from the events stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen here rather than imported, so this step means the same whatever the code becomes.
BACKFILL = (
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, e.event_type, COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id, e.event_type
    """,
    """
    INSERT INTO user_event_totals (experiment_id, user_id, event_type, events, value_sum)
    SELECT e.experiment_id, e.user_id, '', COUNT(*), SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp >= a.assigned_at
    GROUP BY e.experiment_id, e.user_id
    """,
    """
    INSERT INTO variant_event_totals
      (experiment_id, variant_id, event_type, events, users, value_sum, value_sum_squares)
    SELECT u.experiment_id, a.variant_id, u.event_type, SUM(u.events), COUNT(*),
           SUM(u.value_sum), SUM(u.value_sum * u.value_sum)
    FROM user_event_totals u JOIN user_assignments a
      ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
    GROUP BY u.experiment_id, a.variant_id, u.event_type
    """,
)


def upgrade() -> None:
    op.create_index(
        "ix_user_assignments_variant",
        "user_assignments",
        ["experiment_id", "variant_id", "assigned_at"],
    )
    op.create_table(
        "user_event_totals",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Float(), nullable=False),
    )
    op.create_table(
        "variant_event_totals",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("variant_id", sa.String(32), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("users", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Float(), nullable=False),
        sa.Column("value_sum_squares", sa.Float(), nullable=False),
    )
    for statement in BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("variant_event_totals")
    op.drop_table("user_event_totals")
    op.drop_index("ix_user_assignments_variant", table_name="user_assignments")
