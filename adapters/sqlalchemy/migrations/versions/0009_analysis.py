"""How an experiment's results are read by default: ``experiments.analysis`` (JSON).

Experiments made before it keep NULL, which reads as the defaults (domain/analysis.py): the
fixed-horizon tests they had.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("experiments", sa.Column("analysis", sa.Text(), nullable=True))


def downgrade() -> None:  # SQLite drops a column by rebuilding the table: batch mode does that
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("analysis")
