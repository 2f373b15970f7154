"""Experiments that live: a status, coverage, an audience, a winner, the running window, a
version for changes, and QA overrides.

Existing experiments carry forward as they behaved: running, for all traffic (coverage 100%),
with no audience, started when they were created, version 1. No assignment moves.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

def columns() -> list[sa.Column]:
    return [
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("coverage_basis_points", sa.Integer, nullable=False, server_default="10000"),
        sa.Column("audience", sa.Text),
        sa.Column("winner_variant_id", sa.String(32)),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("stopped_at", sa.BigInteger),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        for column in columns():
            batch.add_column(column)
    op.execute("UPDATE experiments SET started_at = created_at")
    op.create_table(
        "experiment_overrides",
        sa.Column("experiment_id", sa.String(32), sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("variant_id", sa.String(32), nullable=False),
        sa.Column("forced_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "user_id", name="pk_experiment_overrides"),
    )


def downgrade() -> None:
    op.drop_table("experiment_overrides")
    with op.batch_alter_table("experiments") as batch:
        for column in reversed(columns()):
            batch.drop_column(column.name)
