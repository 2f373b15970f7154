"""Experiments that live: a status, coverage, an audience, a winner, the running window, a
version for changes, QA overrides, layers and holdouts.

Existing experiments carry forward as they behaved: running, for all traffic (coverage 100%),
with no audience, started when they were created, version 1. No assignment moves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
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
        sa.Column("layer_id", sa.String(32), sa.ForeignKey("layers.id")),
        sa.Column("slice_start", sa.Integer),
        sa.Column("slice_end", sa.Integer),
        sa.Column("holdout_id", sa.String(32), sa.ForeignKey("holdouts.id")),
    ]


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "holdouts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("basis_points", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "holdout_members",
        sa.Column("holdout_id", sa.String(32), sa.ForeignKey("holdouts.id"), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("first_seen_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("holdout_id", "user_id", name="pk_holdout_members"),
    )
    # Plain ADD COLUMN, also on SQLite: a batch would copy and drop the experiments table,
    # which the foreign keys of variants and assignments forbid.
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column in columns():
        target = next(iter(column.foreign_keys), None)
        if sqlite and target is not None:  # SQLite adds a reference only in the column's own DDL
            op.execute(
                f"ALTER TABLE experiments ADD COLUMN {column.name} VARCHAR(32)"
                f" REFERENCES {target.target_fullname.replace('.', ' (')})"
            )
        else:
            op.add_column("experiments", column)
    op.create_index("ix_experiments_layer", "experiments", ["layer_id"])
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
    op.drop_index("ix_experiments_layer", table_name="experiments")
    with op.batch_alter_table("experiments") as batch:
        for column in reversed(columns()):
            batch.drop_column(column.name)
    op.drop_table("holdout_members")
    op.drop_table("holdouts")
    op.drop_table("layers")
