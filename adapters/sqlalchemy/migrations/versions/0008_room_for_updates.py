"""Room on each page of the totals the folder updates (PostgreSQL): a fill factor of 80.

The folder updates the same per-user rows fold after fold. On a full page PostgreSQL writes the
new version of a row on another page and adds an entry to the primary key's index for it; with
room left on the page the new version stays there (a heap-only update) and the index is not
touched. Pages written from now on keep the room; existing ones gain it as they are rewritten.
SQLite updates in place and has no such setting: nothing changes there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("user_event_totals", "user_day_totals", "user_hour_totals", "variant_event_totals", "variant_users")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
