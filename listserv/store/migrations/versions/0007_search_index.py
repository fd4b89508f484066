"""search index: a filter row per post; FTS5 on SQLite, tsvector + GIN on PostgreSQL

The index is derived from ``post.raw``: after upgrading an existing archive, run ``listserv reindex``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import listserv.store.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # What search filters on, kept narrow: the filters read thousands of these rows per query.
    op.create_table(
        "post_search",
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("date", listserv.store.db.UTCDateTime(), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),  # lowercased
        *([] if sqlite else [sa.Column("document", postgresql.TSVECTOR(), nullable=False)]),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("post_id"),
    )
    if sqlite:
        # Contentless (content=''): only the inverted index is stored, no copy of the text.
        op.execute(
            "CREATE VIRTUAL TABLE post_search_text USING fts5("
            "subject, body, sender, content='', tokenize='unicode61 remove_diacritics 2')"
        )
    else:
        op.create_index("ix_post_search_document", "post_search", ["document"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE post_search_text")
    op.drop_table("post_search")
