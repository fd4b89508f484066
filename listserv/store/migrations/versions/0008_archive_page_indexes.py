"""archive pages: post indexes for threads by latest activity and for date ranges

``(list_name, archived_at, thread_id)`` walks a list's posts newest first, index only: the list and month
pages stop after one page of distinct threads instead of grouping the whole list; month counts, activity
figures and digest windows are range scans of it. ``(list_name, thread_id, archived_at)`` gives a thread's
size and latest activity from the index alone.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 12:00:00.000000
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.create_index("ix_post_list_thread_archived", ["list_name", "thread_id", "archived_at"])
        batch_op.create_index("ix_post_list_archived", ["list_name", "archived_at", "thread_id"])


def downgrade() -> None:
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.drop_index("ix_post_list_archived")
        batch_op.drop_index("ix_post_list_thread_archived")
