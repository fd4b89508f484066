"""archive pages without parsing or counting: derived display text, thread and day figures

``post.display`` (JSON: sender, To, Cc, text blocks with their quote and signature boundaries, sanitised
HTML, attachments) and ``post.search_text`` (the snippet's source) are derived once when a post is
archived; ``post_thread`` keeps each thread's size and latest activity (list pages by keyset at any
depth) and ``post_day`` the posts of each list per UTC day (the month calendar). Existing posts are
backfilled here by ``listserv.archive.derived`` (the code ``listserv reindex`` runs too).

Revision ID: 0016
Revises: 0010
Create Date: 2026-12-06 13:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

from listserv.store.db import UTCDateTime

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))
    op.create_table(
        "post_thread",
        sa.Column("thread_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("latest_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id"),
    )
    op.create_index("ix_post_thread_list_latest", "post_thread", ["list_name", "latest_at", "thread_id"])
    op.create_table(
        "post_day",
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("list_name", "day"),
    )
    _backfill(op.get_bind())


def _backfill(connection: sa.Connection) -> None:
    """Derived in this migration's transaction, a batch at a time (memory stays bounded)."""
    from listserv.archive import derived  # late: only an upgrade that has posts needs it

    post = sa.table(
        "post",
        sa.column("id"),
        sa.column("list_name"),
        sa.column("message_id"),
        sa.column("raw", sa.LargeBinary()),
        sa.column("erased_at"),
    )
    after = 0
    while True:
        rows = connection.execute(
            sa.select(post.c.id, post.c.list_name, post.c.message_id, post.c.raw)
            .where(post.c.id > after, post.c.erased_at.is_(None))
            .order_by(post.c.id)
            .limit(derived.BATCH)
        ).all()
        if not rows:
            break
        derived.derive_rows(connection, rows)
        after = rows[-1].id
    derived.recount(connection)


def downgrade() -> None:
    op.drop_table("post_day")
    op.drop_index("ix_post_thread_list_latest", table_name="post_thread")
    op.drop_table("post_thread")
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.drop_column("search_text")
        batch_op.drop_column("display")
