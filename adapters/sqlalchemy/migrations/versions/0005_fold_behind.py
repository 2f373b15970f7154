"""Writes append, a folder folds behind them: transaction ids on PostgreSQL, the folder's state,
per-user hourly totals beside the daily ones (both carrying the variant), users per variant.

Existing totals were kept exact by every write until now, so everything already stored counts
as folded: on PostgreSQL existing rows read txid 0 (a constant default costs no table rewrite),
below the first horizon of 1; on SQLite the horizons start at the highest rowids. Stop instances
of the previous version before migrating: they fold inside their writes and would count twice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# Frozen here rather than imported, so this step means the same whatever the code becomes.
def _floor_div(micros: str, unit: int) -> str:
    return f"(CASE WHEN {micros} >= 0 THEN {micros} / {unit} ELSE -((-{micros} - 1) / {unit}) - 1 END)"


def _backfill(table: str, period: str, unit: int) -> str:
    bucket = _floor_div("e.timestamp", unit)
    return f"""
    INSERT INTO {table} (experiment_id, {period}, event_type, user_id, variant_id, events, value_sum)
    SELECT e.experiment_id, {bucket}, e.event_type, e.user_id, a.variant_id, COUNT(*),
           SUM(COALESCE(e.value, 0.0))
    FROM events e JOIN user_assignments a
      ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.timestamp + 0 >= a.assigned_at
    GROUP BY e.experiment_id, {bucket}, e.event_type, e.user_id, a.variant_id
    """


def _period_table(name: str, period: str) -> None:
    op.create_table(
        name,
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column(period, sa.BigInteger(), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("variant_id", sa.String(32), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("value_sum", sa.Float(), nullable=False),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("events", "user_assignments"):
        if postgres:
            op.execute(f"ALTER TABLE {table} ADD COLUMN txid BIGINT DEFAULT 0")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint")
            op.create_index(f"ix_{table}_txid", table, ["txid"])
        else:
            op.add_column(table, sa.Column("txid", sa.BigInteger()))

    op.drop_table("user_day_totals")
    _period_table("user_day_totals", "day")
    _period_table("user_hour_totals", "hour")
    op.execute(_backfill("user_day_totals", "day", 86_400_000_000))
    op.execute(_backfill("user_hour_totals", "hour", 3_600_000_000))

    op.create_table(
        "variant_users",
        sa.Column("experiment_id", sa.String(32), primary_key=True),
        sa.Column("variant_id", sa.String(32), primary_key=True),
        sa.Column("users", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO variant_users (experiment_id, variant_id, users)"
        " SELECT experiment_id, variant_id, COUNT(*) FROM user_assignments GROUP BY experiment_id, variant_id"
    )
    op.create_table(
        "fold_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("events_horizon", sa.BigInteger(), nullable=False),
        sa.Column("assignments_horizon", sa.BigInteger(), nullable=False),
        sa.Column("folded_at", sa.BigInteger(), nullable=False),
    )
    if postgres:
        op.execute("INSERT INTO fold_state VALUES (1, 1, 1, 0)")
    else:
        op.execute(
            "INSERT INTO fold_state SELECT 1, (SELECT COALESCE(MAX(id), 0) FROM events),"
            " (SELECT COALESCE(MAX(rowid), 0) FROM user_assignments), 0"
        )


def downgrade() -> None:
    raise NotImplementedError("0005 reshapes the totals; restore a backup taken before it instead")
