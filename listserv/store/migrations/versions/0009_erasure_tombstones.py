"""erasure: tombstones, and the archived post that stands in for an erased message

``tombstone`` proves an erasure without keeping what was erased: a keyed hash (HMAC with the site
secret) of the Message-ID or address, the list, when, who asked, who executed, why. ``post.erased_at``
marks the row left in a thread in place of an erased message (no bytes, no sender, no subject), so
replies keep their place and the thread shows "message removed on request".

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

from listserv.store.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tombstone",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("executed_by", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "key_hash", "list_name"),
    )
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
    op.drop_table("tombstone")
