"""The totals scorecards read (domain/metrics.py):

- the sum of squared per-user event counts in the per-variant totals: the variance of a count
  per user, summable as the value's is; filled here from the per-user totals, which the folder
  keeps for the same events, so the totals stay exact across the upgrade without a rebuild;
- ``metric_pairs`` and ``variant_pair_totals``: the ratio metrics' per-user cross sums, per
  variant, which the folder fills when a pair is first declared and keeps up to date.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Frozen here rather than imported, so this step means the same whatever the code becomes.
BACKFILL = """
    UPDATE variant_event_totals SET events_sum_squares = s.q
    FROM (SELECT u.experiment_id AS x, a.variant_id AS v, u.event_type AS t, SUM(u.events * u.events) AS q
          FROM user_event_totals u JOIN user_assignments a
            ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
          GROUP BY u.experiment_id, a.variant_id, u.event_type) s
    WHERE variant_event_totals.experiment_id = s.x AND variant_event_totals.variant_id = s.v
      AND variant_event_totals.event_type = s.t
"""


def upgrade() -> None:
    op.add_column(
        "variant_event_totals",
        sa.Column("events_sum_squares", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute(BACKFILL)
    op.create_table(
        "metric_pairs",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("numerator_type", sa.String(100), primary_key=True),
        sa.Column("denominator_type", sa.String(100), primary_key=True),
        sa.Column("filled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "variant_pair_totals",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("variant_id", sa.String(32), primary_key=True),
        sa.Column("numerator_type", sa.String(100), primary_key=True),
        sa.Column("denominator_type", sa.String(100), primary_key=True),
        sa.Column("events_products", sa.BigInteger(), nullable=False),
        sa.Column("value_products", sa.Float(), nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:  # SQLite drops a column by rebuilding the table: batch mode does that
    op.drop_table("variant_pair_totals")
    op.drop_table("metric_pairs")
    with op.batch_alter_table("variant_event_totals") as batch:
        batch.drop_column("events_sum_squares")
