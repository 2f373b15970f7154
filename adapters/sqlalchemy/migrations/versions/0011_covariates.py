"""What CUPED reads (docs/statistics.md, CUPED): each user's totals of the pre-period, the
PRE_PERIOD_DAYS before the assignment, per event type.

- ``prior_events``: events folded while their user had no assignment, kept so that the fold
  that meets the assignment can find the user's earlier events by user (the events table has
  no index by user, on purpose: migration 0003), until no assignment can reach them (by time);
- ``user_pre_totals``: per user and event type (and "" for every type), the pre-period's
  events and value sum;
- ``variant_covariate_totals``: per variant and event type, the sums CUPED reads (users with a
  pre-period, Σx, Σx², those also counted, Σxy), kept by the folder from the two above.

- ``covariate_experiments``: the experiments that keep them (``analysis.cuped``), registered
  when one is turned on; ``filled`` once a fold has filled both from what was folded before.

Only registered experiments' events cost the folder anything more; nothing to fill here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prior_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_prior_events_user", "prior_events", ["experiment_id", "user_id"])
    op.create_index("ix_prior_events_time", "prior_events", ["timestamp"])
    op.create_table(
        "user_pre_totals",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Float(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "variant_covariate_totals",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("variant_id", sa.String(32), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("users", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Float(), nullable=False),
        sa.Column("value_sum_squares", sa.Float(), nullable=False),
        sa.Column("users_counted", sa.BigInteger(), nullable=False),
        sa.Column("value_products", sa.Float(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "covariate_experiments",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("filled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("covariate_experiments")
    op.drop_table("variant_covariate_totals")
    op.drop_table("user_pre_totals")
    op.drop_index("ix_prior_events_time", "prior_events")
    op.drop_index("ix_prior_events_user", "prior_events")
    op.drop_table("prior_events")
