"""The archive's full-text index over SQLite FTS5 and PostgreSQL GIN; ``search`` queries it.

The index is derived: ``listserv reindex`` rebuilds it from ``post.raw``. Both databases keep a narrow
``post_search`` row per post (list, language, date, sender) for the filters: joined to ``post`` instead,
a filter over the 24,000 matches of a common word cost 200 ms at 100,000 posts (its rows carry the raw
bytes). SQLite keeps the words in ``post_search_text``, a contentless FTS5 table (the index alone, no
copy of the text).

PostgreSQL keeps no full tsvector: with its positions it was 1.57× the raw text. The row holds ``words``,
the post's distinct folded words (subject, sender and body; unstemmed), and ``head``, a small weighted
tsvector of the subject (A) and sender (B) with positions. The GIN index is on an expression,
``WORDS_VECTOR``: ``words`` through the list language's stemmer. A query's words are matched there with
``&`` (exact in the index: no row is rechecked); a "quoted phrase", whose order those words no longer
hold, is then verified on the newest ``search.PHRASE_CANDIDATES`` matches: against ``head`` in PostgreSQL, and
against the post's body text (``post.search_text``, folded again) in Python, comparing Snowball stems as
PostgreSQL's configurations do (``index_text.phrase_in``). Ranking reads ``head`` and the length of
``words``: a match in the subject counts most, then the sender, then a shorter post; how often a word
occurs in the body is no longer known. SQLite
3.40 predates ``contentless_delete``: an FTS5 row is deleted by handing back the values it was indexed
with, recomputed from the unchanging raw bytes by ``document()`` — after changing ``document()``, reindex.

Both databases get text folded the same way in Python (lowercase, no accents, split into words): "reunion"
finds "réunion" without the ``unaccent`` extension, and the snippet code, run in Python on the ≤ 20 hits
of a page, finds the words the database matched. Only the newest ``search.CANDIDATES`` matches are ranked.
"""

from __future__ import annotations

from sqlalchemy import (
    Engine,
    bindparam,
    column,
    func,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session

from listserv.archive.index_text import (
    Document,
    distinct_words,
    document,
)
from listserv.config import Settings
from listserv.mail.message import Post as ParsedPost
from listserv.store import models
from listserv.store.db import UTCDateTime

BATCH = 500
CONFIGS = {"en": "english", "fr": "french", "es": "spanish"}  # other languages: no stemming
STEMMED = frozenset(CONFIGS.values())

ROW = table(
    "post_search",
    column("post_id"),
    column("list_name"),
    column("language"),
    column("date", UTCDateTime()),
    column("sender"),
    column("head"),  # PostgreSQL only, as are words
    column("words"),
)
FTS = table("post_search_text", column("rowid"))  # SQLite; SQLAlchemy knows no MATCH for it: text()
UPSERT = (
    "INSERT INTO post_search (post_id, list_name, language, date, sender{}) "
    "VALUES (:id, :list_name, :language, :date, :sender_key{}) ON CONFLICT (post_id) DO UPDATE SET "
    "list_name = excluded.list_name, language = excluded.language, date = excluded.date, "
    "sender = excluded.sender{}"
)
CONFIG = "CAST(:config AS regconfig)"
HEAD = f"setweight(to_tsvector({CONFIG}, :subject), 'A') || setweight(to_tsvector({CONFIG}, :sender), 'B')"
ROW_UPSERT = tuple(  # [PostgreSQL, SQLite]
    text(UPSERT.format(*parts)).bindparams(bindparam("date", type_=UTCDateTime()))
    for parts in (
        (", head, words", f", {HEAD}, :words", ", head = excluded.head, words = excluded.words"),
        ("", "", ""),
    )
)
# The GIN index's expression (migration 0017 spells it out): a query must use this very expression.
WORDS_VECTOR = (
    "to_tsvector(CASE post_search.language"
    + "".join(f" WHEN '{language}' THEN '{config}'::regconfig" for language, config in CONFIGS.items())
    + " ELSE 'simple'::regconfig END, post_search.words)"
)
FTS_INSERT = text(
    "INSERT INTO post_search_text (rowid, subject, body, sender) VALUES (:id, :subject, :body, :sender)"
)
FTS_DELETE = text(
    "INSERT INTO post_search_text (post_search_text, rowid, subject, body, sender)"
    " VALUES ('delete', :id, :subject, :body, :sender)"
)


def list_language(session: Session, list_name: str) -> str:
    found = session.scalar(select(models.ListRow.language).where(models.ListRow.name == list_name))
    return found or ""


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def index_post(
    session: Session, post: models.ArchivedPost, language: str, parsed: ParsedPost | None = None
) -> None:
    """(Re)index one archived post; called inside the archiving transaction, which has usually
    parsed the message already (``parsed``): the approval path need not parse it twice."""
    doc, sqlite = document(post.raw, parsed), is_sqlite(session)
    if sqlite:
        _unindex_text(session, post.id, doc)
        session.execute(FTS_INSERT, {"id": post.id, **doc.__dict__})
    values = {
        "id": post.id,
        "list_name": post.list_name,
        "language": language,
        "date": post.date or post.archived_at,
        "sender_key": post.sender.lower(),
        "config": CONFIGS.get(language, "simple"),
        "words": distinct_words(doc),
    }
    session.execute(ROW_UPSERT[sqlite], values | doc.__dict__)


def index_new_posts(
    session: Session, posts: list[tuple[models.ArchivedPost, ParsedPost]], language: str
) -> None:
    """Index posts archived in this transaction and never indexed (an import's batch): two statements
    for the whole batch, and no look-up of an entry to remove first."""
    if not posts:
        return
    sqlite = is_sqlite(session)
    rows = []
    for post, parsed in posts:
        doc = document(post.raw, parsed)
        rows.append(
            {
                "id": post.id,
                "list_name": post.list_name,
                "language": language,
                "date": post.date or post.archived_at,
                "sender_key": post.sender.lower(),
                "config": CONFIGS.get(language, "simple"),
                "words": distinct_words(doc),
                **doc.__dict__,
            }
        )
    if sqlite:
        session.execute(FTS_INSERT, rows)
    session.execute(ROW_UPSERT[sqlite], rows)


def remove_posts(session: Session, post_ids: list[int]) -> None:
    """Erasure. Call it before deleting the posts: SQLite needs their raw bytes to unindex them."""
    if is_sqlite(session):
        rows = session.execute(
            select(models.ArchivedPost.id, models.ArchivedPost.raw).where(
                models.ArchivedPost.id.in_(post_ids)
            )
        )
        for post_id, raw in rows.all():
            _unindex_text(session, post_id, document(raw))
    session.execute(ROW.delete().where(ROW.c.post_id.in_(post_ids)))


def _unindex_text(session: Session, post_id: int, doc: Document) -> None:
    """Only a post that is indexed: 'delete' of values never indexed corrupts an FTS5 index."""
    if session.scalar(select(ROW.c.post_id).where(ROW.c.post_id == post_id)) is not None:
        session.execute(FTS_DELETE, {"id": post_id, **doc.__dict__})


def reindex(engine: Engine, settings: Settings) -> int:
    """Empty the index and rebuild it from ``post``, a batch per transaction so that archiving goes on
    meanwhile; posts archived after the first transaction are indexed by ``archive_raw`` itself."""
    languages = {name: mailing_list.language for name, mailing_list in settings.lists.items()}
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("INSERT INTO post_search_text (post_search_text) VALUES ('delete-all')"))
            connection.execute(ROW.delete())
        else:
            connection.execute(text("TRUNCATE post_search"))  # DELETE would leave the space to vacuum
        last_id = connection.scalar(select(func.max(models.ArchivedPost.id))) or 0
    done = after = 0
    while after < last_id:
        with Session(engine) as session, session.begin():
            batch = select(models.ArchivedPost).where(
                models.ArchivedPost.id > after, models.ArchivedPost.id <= last_id
            )  # an erased post's stand-in has no bytes to index
            batch = batch.where(models.ArchivedPost.erased_at.is_(None))
            posts = session.scalars(batch.order_by(models.ArchivedPost.id).limit(BATCH)).all()
            for post in posts:
                index_post(session, post, languages.get(post.list_name, ""))
            after, done = (posts[-1].id, done + len(posts)) if posts else (last_id, done)
            session.expunge_all()  # memory stays bounded by one batch
    _compact(engine)
    return done


def _compact(engine: Engine) -> None:
    """FTS5: merge the segments into one (~6% smaller). PostgreSQL: a GIN index filled row by row is
    ~1.8x the size of one built in one go; REINDEX CONCURRENTLY rebuilds it without blocking anyone."""
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO post_search_text (post_search_text) VALUES ('optimize')"))
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("REINDEX INDEX CONCURRENTLY ix_post_search_words"))
