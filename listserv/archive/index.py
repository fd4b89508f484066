"""Full-text search over the archive: one interface over SQLite FTS5 and PostgreSQL tsvector + GIN.

The index is derived: ``listserv reindex`` rebuilds it from ``post.raw``. Both databases keep a narrow
``post_search`` row per post (list, language, date, sender) for the filters: joined to ``post`` instead,
a filter over the 24,000 matches of a common word cost 200 ms at 100,000 posts (its rows carry the raw
bytes). PostgreSQL adds a tsvector to that row, built with the list language's stemmer. SQLite keeps the
words in ``post_search_text``, a contentless FTS5 table (the index alone, no copy of the text). SQLite
3.40 predates ``contentless_delete``: an FTS5 row is deleted by handing back the values it was indexed
with, recomputed from the unchanging raw bytes by ``document()`` — after changing ``document()``, reindex.

Both databases get text folded the same way in Python (lowercase, no accents, split into words): "reunion"
finds "réunion" without the ``unaccent`` extension, and the snippet code, run in Python on the ≤ 20 hits
of a page, finds the words the database matched. Only the newest ``CANDIDATES`` matches are ranked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import reduce

from sqlalchemy import (
    CTE,
    ColumnElement,
    Engine,
    Select,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from listserv.archive.index_text import (
    SNIPPET_WORDS,
    Document,
    Fragments,
    Term,
    body_text,
    document,
    highlight,
    parse_query,
)
from listserv.config import Settings
from listserv.mail.message import Post as ParsedPost
from listserv.mail.message import parse_post
from listserv.store import models
from listserv.store.db import UTCDateTime

BATCH = 500
CANDIDATES = 2000  # ranking all 100,000 matches of "the" took 1 s; the newest 2,000, 20 ms
CONFIGS = {"en": "english", "fr": "french", "es": "spanish"}  # other languages: no stemming
STEMMED = frozenset(CONFIGS.values())

ROW = table(
    "post_search",
    column("post_id"),
    column("list_name"),
    column("language"),
    column("date", UTCDateTime()),
    column("sender"),
    column("document"),  # PostgreSQL only
)
FTS = table("post_search_text", column("rowid"))  # SQLite; SQLAlchemy knows no MATCH for it: text()
UPSERT = (
    "INSERT INTO post_search (post_id, list_name, language, date, sender{}) "
    "VALUES (:id, :list_name, :language, :date, :sender_key{}) ON CONFLICT (post_id) DO UPDATE SET "
    "list_name = excluded.list_name, language = excluded.language, date = excluded.date, "
    "sender = excluded.sender{}"
)
CONFIG = "CAST(:config AS regconfig)"
TSVECTOR = (
    f"setweight(to_tsvector({CONFIG}, :subject), 'A') || setweight(to_tsvector({CONFIG}, :sender), 'B')"
    f" || to_tsvector({CONFIG}, :body)"
)
ROW_UPSERT = tuple(  # [PostgreSQL, SQLite]
    text(UPSERT.format(*parts)).bindparams(bindparam("date", type_=UTCDateTime()))
    for parts in ((", document", f", {TSVECTOR}", ", document = excluded.document"), ("", "", ""))
)
# For this transaction only. A plan made once for any query word (psycopg prepares a statement run 5
# times) scans every post for a rare word: 360 ms instead of 15. And with disk-era page costs, the
# planner walks the posts newest first detoasting each tsvector rather than use the GIN index: a
# phrase matching 2% of 100,000 posts took 460 ms, 150 ms with SSD costs.
PG_PLANNER = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
    " set_config('random_page_cost', '1.1', true)"
)
FTS_INSERT = text(
    "INSERT INTO post_search_text (rowid, subject, body, sender) VALUES (:id, :subject, :body, :sender)"
)
FTS_DELETE = text(
    "INSERT INTO post_search_text (post_search_text, rowid, subject, body, sender)"
    " VALUES ('delete', :id, :subject, :body, :sender)"
)


@dataclass(frozen=True)
class SearchQuery:
    text: str
    lists: tuple[str, ...]  # the lists the reader may see: always applied, none means no results
    sender: str | None = None
    since: date | None = None
    until: date | None = None  # inclusive
    language: str | None = None
    page: int = 1
    per_page: int = 20


@dataclass(frozen=True)
class Hit:
    post_id: int
    list_name: str
    message_id: str
    subject: str
    sender: str
    date: datetime
    rank: float  # higher is more relevant
    subject_fragments: Fragments
    snippet: Fragments


@dataclass(frozen=True)
class SearchPage:
    hits: list[Hit]
    total: int  # counted by the ranking query itself; at most CANDIDATES
    capped: bool  # more posts match than were ranked: show "over {total}", suggest narrowing
    page: int
    per_page: int


def list_language(session: Session, list_name: str) -> str:
    found = session.scalar(select(models.ListRow.language).where(models.ListRow.name == list_name))
    return found or ""


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def index_post(
    session: Session, post: models.ArchivedPost, language: str, parsed: ParsedPost | None = None
) -> None:
    """(Re)index one archived post; called inside the archiving transaction, which has usually
    parsed the message already (``parsed``): the approval path need not parse it twice."""
    doc, sqlite = document(post.raw, parsed), _is_sqlite(session)
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
    }
    session.execute(ROW_UPSERT[sqlite], values | doc.__dict__)


def remove_posts(session: Session, post_ids: list[int]) -> None:
    """Erasure. Call it before deleting the posts: SQLite needs their raw bytes to unindex them."""
    if _is_sqlite(session):
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
        connection.execute(text("REINDEX INDEX CONCURRENTLY ix_post_search_document"))


def _fts5_query(terms: list[Term]) -> str:
    # Every term in double quotes: FTS5 then reads AND, OR, NEAR or a column name as a plain string.
    return " ".join('"' + " ".join(term.words) + '"' + ("*" if term.prefix else "") for term in terms)


def _tsquery(terms: list[Term], stemmed: bool) -> str:
    """For to_tsquery. A stemmed document keeps "moder" for "moderators", which the prefix "moderat"
    misses: with a stemmer, the prefix shortened by up to three letters also matches as a whole word."""

    def word(text: str, prefix: bool) -> str:
        cuts = [text[:-cut] for cut in (1, 2, 3) if len(text) - cut >= 4] if stemmed else []
        return "(" + " | ".join([f"{text}:*", *cuts]) + ")" if prefix else text

    def one(term: Term) -> str:
        last = len(term.words) - 1
        return "(" + " <-> ".join(word(w, term.prefix and i == last) for i, w in enumerate(term.words)) + ")"

    return " & ".join(one(term) for term in terms)


def search(session: Session, query: SearchQuery) -> SearchPage:
    page, per_page = max(1, query.page), min(max(1, query.per_page), 100)
    terms = parse_query(query.text)
    if not terms or not query.lists:
        return SearchPage([], 0, False, page, per_page)
    if _is_sqlite(session):
        statement = _sqlite_select(terms, query)
    else:
        session.execute(PG_PLANNER)
        statement = _pg_select(terms, query)
    rows = session.execute(statement.limit(per_page).offset((page - 1) * per_page)).all()
    total = rows[0].total if rows else 0
    if not rows and page > 1:  # past the last page: still say how many there are
        total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    # The raw bytes only for the page: carried through the ranking sort they cost more than the rank.
    ids = [row.id for row in rows]
    raws = dict(
        session.execute(
            select(models.ArchivedPost.id, models.ArchivedPost.raw).where(models.ArchivedPost.id.in_(ids))
        ).all()
    )
    hits = [_hit(row, raws[row.id], terms) for row in rows]
    return SearchPage(hits, total, total >= CANDIDATES, page, per_page)


def _candidates(matching: Select, query: SearchQuery, post_id: ColumnElement[int]) -> CTE:
    """The newest matching posts the reader may see. Ordered by the index's own ``post_id`` (FTS5 then
    walks its rowids backwards instead of sorting every match) and materialised (else SQLite runs the
    MATCH again for each post of a list)."""
    matching = matching.where(ROW.c.list_name.in_(query.lists))
    if query.sender:
        matching = matching.where(ROW.c.sender == query.sender.strip().lower())
    if query.since:
        matching = matching.where(ROW.c.date >= datetime.combine(query.since, time(), UTC))
    if query.until:
        matching = matching.where(ROW.c.date < datetime.combine(query.until + timedelta(days=1), time(), UTC))
    if query.language is not None:
        matching = matching.where(ROW.c.language == query.language)
    newest = matching.order_by(post_id.desc()).limit(CANDIDATES)
    return newest.cte("candidate").prefix_with("MATERIALIZED")


def _ranked(candidate: CTE, score: ColumnElement[float]) -> Select:
    """Relevance first, the newest first among equals; the total counted in the same pass."""
    post = models.ArchivedPost
    statement = select(post.id, post.list_name, post.message_id, post.subject, post.sender, ROW.c.date)
    statement = statement.add_columns(score.label("score"), func.count().over().label("total"))
    statement = statement.join_from(candidate, post, post.id == candidate.c.id)
    statement = statement.join(ROW, ROW.c.post_id == candidate.c.id)
    return statement.order_by(literal_column("score").desc(), ROW.c.date.desc(), post.id.desc())


def _sqlite_select(terms: list[Term], query: SearchQuery) -> Select:
    # bm25 (lower is better, hence negated) is only computed by the query that runs the MATCH.
    bm25 = literal_column("-bm25(post_search_text, 4.0, 1.0, 2.0)")  # the subject counts most
    matching = (
        select(ROW.c.post_id.label("id"), bm25.label("score"))
        .join_from(FTS, ROW, ROW.c.post_id == FTS.c.rowid)
        .where(text("post_search_text MATCH :match").bindparams(match=_fts5_query(terms)))
    )
    candidate = _candidates(matching, query, FTS.c.rowid)
    return _ranked(candidate, candidate.c.score)


def _pg_select(terms: list[Term], query: SearchQuery) -> Select:
    configs = sorted({CONFIGS.get(query.language, "simple")} if query.language else STEMMED | {"simple"})
    queries = {
        config: func.to_tsquery(literal_column(f"'{config}'::regconfig"), _tsquery(terms, config in STEMMED))
        for config in configs
    }
    # One GIN lookup per text search configuration, each for the documents built with it.
    matches = [_pg_language(config) & ROW.c.document.op("@@")(queries[config]) for config in configs]
    candidate = _candidates(select(ROW.c.post_id.label("id")).where(or_(*matches)), query, ROW.c.post_id)
    combined = reduce(lambda left, right: left.op("||")(right), queries.values())
    return _ranked(candidate, func.ts_rank_cd(ROW.c.document, combined, 1))  # 1: long posts win less


def _pg_language(config: str) -> ColumnElement[bool]:
    stemmed = [language for language, name in CONFIGS.items() if name == config]
    return ROW.c.language.in_(stemmed) if stemmed else ROW.c.language.not_in(list(CONFIGS))


def _hit(row: Row, raw: bytes, terms: list[Term]) -> Hit:
    body = body_text(parse_post(raw).text)
    return Hit(
        post_id=row.id,
        list_name=row.list_name,
        message_id=row.message_id,
        subject=row.subject,
        sender=row.sender,
        date=row.date,
        rank=float(row.score),
        subject_fragments=highlight(row.subject, terms),
        snippet=highlight(body, terms, SNIPPET_WORDS),
    )
