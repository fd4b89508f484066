"""who claimed a delivery or outbox row: rows whose result a database crash undid go out again

A sender writes its ``host:pid`` into ``claimed_by`` when it claims rows (``store/claims.py``); between
two rounds it gives back any row still ``sending`` under its name. Rows claimed before this revision
have none, and go back to the queue at the next start as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 23:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("delivery", "outbox"):
        op.add_column(table, sa.Column("claimed_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    for table in ("delivery", "outbox"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("claimed_by")
