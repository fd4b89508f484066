"""participation figures: ended subscriptions (list, member state, joined, left; no person)

``listserv stats`` counts members at the end of past periods and those who left; a deleted subscription
row used to leave no trace. Subscriptions that ended before this migration are not known.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-06 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_ended",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("country", sa.String(length=100), nullable=False),
        sa.Column("joined_at", listserv.store.db.UTCDateTime(), nullable=False),
        sa.Column("left_at", listserv.store.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("subscription_ended", schema=None) as batch_op:
        batch_op.create_index("ix_subscription_ended_list_left", ["list_name", "left_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("subscription_ended", schema=None) as batch_op:
        batch_op.drop_index("ix_subscription_ended_list_left")
    op.drop_table("subscription_ended")
