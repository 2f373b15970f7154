"""Breakdowns (domain/breakdown.py, docs/api.md): results split by an attribute users were
assigned with.

- ``assignment_dimensions``: per assignment, the values of the experiment's dimensions
  (``analysis.dimensions``) the assigning call sent, written in the assignment's transaction;
- ``slice_users`` and ``slice_event_totals``: per (dimension, value) and variant, what
  ``variant_users`` and ``variant_event_totals`` hold per variant, kept by the folder from the
  users' deltas, so that a breakdown reads O(slices × variants) rows.

Assignments made before hold no value: they are in the slice "unknown". Nothing to fill here.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assignment_dimensions",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("dimension", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "slice_users",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("dimension", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("variant_id", sa.String(32), primary_key=True),
        sa.Column("users", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "slice_event_totals",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("dimension", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        sa.Column("variant_id", sa.String(32), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("users", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Float(), nullable=False),
        sa.Column("value_sum_squares", sa.Float(), nullable=False),
        sa.Column("events_sum_squares", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "postgresql":  # room for the folder's updates (migration 0008)
        for table in ("slice_users", "slice_event_totals"):
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    op.drop_table("slice_event_totals")
    op.drop_table("slice_users")
    op.drop_table("assignment_dimensions")
