"""guests for one discussion: an outside person invited to one thread of one list, for a time

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-06 13:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

import listserv.store.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("thread_message_id", sa.String(length=998), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("until", listserv.store.db.UTCDateTime(), nullable=False),
        sa.Column("invited_by", sa.String(length=320), nullable=False),
        sa.Column("held_id", sa.Integer(), nullable=True),
        sa.Column("created_at", listserv.store.db.UTCDateTime(), nullable=False),
        sa.Column("approved_at", listserv.store.db.UTCDateTime(), nullable=True),
        sa.Column("ended_at", listserv.store.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["held_id"], ["held.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "list_name", "thread_id"),
    )
    with op.batch_alter_table("guest", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guest_member_id"), ["member_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_guest_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("guest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guest_state"))
        batch_op.drop_index(batch_op.f("ix_guest_member_id"))
    op.drop_table("guest")
