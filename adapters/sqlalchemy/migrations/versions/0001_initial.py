"""The initial schema: experiments, variants, user_assignments, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text()),
        sa.Column("primary_event_type", sa.String(100)),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_experiments_created_at", "experiments", ["created_at"])
    op.create_table(
        "variants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("experiment_id", sa.String(32), sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("traffic_basis_points", sa.Integer(), nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("experiment_id", "name", name="uq_variants_experiment_name"),
    )
    op.create_table(
        "user_assignments",
        sa.Column("experiment_id", sa.String(32), sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("variant_id", sa.String(32), sa.ForeignKey("variants.id"), nullable=False),
        sa.Column("assigned_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("experiment_id", "user_id", name="uq_user_assignments_experiment_user"),
    )
    op.create_index("ix_user_assignments_user_id", "user_assignments", ["user_id"])
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("properties", sa.Text()),
        sa.Column("event_id", sa.String(256), unique=True),
    )
    op.create_index("ix_events_experiment_id", "events", ["experiment_id"])
    op.create_index("ix_events_user_id", "events", ["user_id"])
    op.create_index("ix_events_timestamp", "events", ["timestamp"])
    op.create_index("ix_events_event_type", "events", ["event_type"])
    op.create_index(
        "ix_events_results", "events", ["experiment_id", "user_id", "event_type", "timestamp"]
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("user_assignments")
    op.drop_table("variants")
    op.drop_table("experiments")
