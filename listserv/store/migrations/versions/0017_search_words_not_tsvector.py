"""PostgreSQL search index at most the raw text's size: distinct words and a GIN expression index

``post_search.document`` (a tsvector with every word's positions, 1.57× the raw text) gives way to
``words`` (the post's distinct folded words; the GIN index stems them by the list's language) and
``head`` (subject and sender, weighted, for the ranking). Existing rows are rebuilt here from
``post.raw``, a batch at a time. SQLite (FTS5) is unchanged.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 20:30:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BATCH = 500
# index.WORDS_VECTOR as of this revision: queries must spell the index's expression the same way.
WORDS_VECTOR = (
    "to_tsvector(CASE post_search.language WHEN 'en' THEN 'english'::regconfig"
    " WHEN 'fr' THEN 'french'::regconfig WHEN 'es' THEN 'spanish'::regconfig"
    " ELSE 'simple'::regconfig END, post_search.words)"
)
CONFIGS = {"en": "english", "fr": "french", "es": "spanish"}
HEAD = (
    "setweight(to_tsvector(CAST(:config AS regconfig), :subject), 'A')"
    " || setweight(to_tsvector(CAST(:config AS regconfig), :sender), 'B')"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.add_column("post_search", sa.Column("head", postgresql.TSVECTOR(), nullable=True))
    op.add_column("post_search", sa.Column("words", sa.Text(), nullable=True))
    _backfill(op.get_bind())
    op.execute("DELETE FROM post_search WHERE words IS NULL")  # a post with no bytes left to index
    op.alter_column("post_search", "head", nullable=False)
    op.alter_column("post_search", "words", nullable=False)
    op.drop_index("ix_post_search_document", table_name="post_search")
    op.drop_column("post_search", "document")
    op.execute(f"CREATE INDEX ix_post_search_words ON post_search USING gin (({WORDS_VECTOR}))")


def _backfill(connection: sa.Connection) -> None:
    from listserv.archive.index_text import distinct_words, document  # late: only PostgreSQL needs them

    update = sa.text(f"UPDATE post_search SET head = {HEAD}, words = :words WHERE post_id = :id")
    after = 0
    while True:
        rows = connection.execute(
            sa.text(
                "SELECT s.post_id, s.language, p.raw FROM post_search s JOIN post p ON p.id = s.post_id"
                " WHERE s.post_id > :after AND p.erased_at IS NULL AND p.raw <> ''::bytea"
                " ORDER BY s.post_id LIMIT :batch"
            ),
            {"after": after, "batch": BATCH},
        ).all()
        if not rows:
            break
        values = []
        for post_id, language, raw in rows:
            doc = document(raw)
            values.append(
                {
                    "id": post_id,
                    "config": CONFIGS.get(language, "simple"),
                    "subject": doc.subject,
                    "sender": doc.sender,
                    "words": distinct_words(doc),
                }
            )
        connection.execute(update, values)
        after = rows[-1].post_id


def downgrade() -> None:
    """Positions cannot be rebuilt from the distinct words: run ``listserv reindex`` after downgrading
    (until then a phrase finds the posts that hold its words)."""
    if op.get_bind().dialect.name == "sqlite":
        return
    op.add_column("post_search", sa.Column("document", postgresql.TSVECTOR(), nullable=True))
    op.execute(f"UPDATE post_search SET document = head || {WORDS_VECTOR}")
    op.alter_column("post_search", "document", nullable=False)
    op.drop_index("ix_post_search_words", table_name="post_search")
    op.drop_column("post_search", "words")
    op.drop_column("post_search", "head")
    op.create_index("ix_post_search_document", "post_search", ["document"], postgresql_using="gin")
