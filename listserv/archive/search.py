"""Searching the archive: a reader's query over ``index``'s rows, ranked, phrases verified, with snippets.

SQLite matches with FTS5; PostgreSQL with the GIN index on ``index.WORDS_VECTOR``, then verifies quoted
phrases on the newest ``PHRASE_CANDIDATES`` matches (see ``index``'s docstring for why the index holds
words without positions). Only the newest ``CANDIDATES`` matches are ranked; the page says "over N" when
more matched, and suggests narrowing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import reduce
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Select,
    Text,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from listserv.archive.index import CONFIGS, FTS, ROW, STEMMED, WORDS_VECTOR, is_sqlite
from listserv.archive.index_text import (
    SNIPPET_WORDS,
    Fragments,
    Term,
    body_text,
    highlight,
    index_word_list,
    parse_query,
    phrase_in,
)
from listserv.mail.message import parse_post
from listserv.store import models

# Ranking all 100,000 matches of "the" took 1 s. The newest 1,000 are ranked: a word in one post of
# ten at 100,000 posts then costs 6-8 ms of CPU instead of 15 (the newest 2,000), and the page says
# "over 1,000" and suggests narrowing, which a reader needs anyway at that many.
CANDIDATES = 1000
# A phrase is verified by folding each candidate's body again in Python, ~0.3 ms a post: the newest 400
# posts holding its words are checked (~120 ms at most), and the count is "over" when there were more.
PHRASE_CANDIDATES = 400
EVERY_CONFIG = STEMMED | {"simple"}  # PostgreSQL's text search configurations of the documents
# For this transaction only. A plan made once for any query word (psycopg prepares a statement run 5
# times) scans every post for a rare word: 360 ms instead of 15. And with disk-era page costs, the
# planner walks the posts newest first detoasting each tsvector rather than use the GIN index: a
# phrase matching 2% of 100,000 posts took 460 ms, 150 ms with SSD costs. And for a word in most posts
# the planner would rather compute the indexed tsvector of every post (a sequential scan: 3.6 s at
# 20,000 posts) than read the GIN index's list of them (40 ms).
PG_PLANNER = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
    " set_config('random_page_cost', '1.1', true), set_config('enable_seqscan', 'off', true)"
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


def _fts5_query(terms: list[Term]) -> str:
    # Every term in double quotes: FTS5 then reads AND, OR, NEAR or a column name as a plain string.
    return " ".join('"' + " ".join(term.words) + '"' + ("*" if term.prefix else "") for term in terms)


def _tsquery(terms: list[Term], stemmed: bool, within: str = " & ", between: str = " & ") -> str:
    """For to_tsquery: a term's words joined by ``within`` ("<->" for a phrase), the terms by ``between``.
    A stemmed document keeps "moder" for "moderators", which the prefix "moderat" misses: with a
    stemmer, the prefix shortened by up to three letters also matches as a whole word."""

    def word(text: str, prefix: bool) -> str:
        cuts = [text[:-cut] for cut in (1, 2, 3) if len(text) - cut >= 4] if stemmed else []
        return "(" + " | ".join([f"{text}:*", *cuts]) + ")" if prefix else text

    def one(term: Term) -> str:
        last = len(term.words) - 1
        return "(" + within.join(word(w, term.prefix and i == last) for i, w in enumerate(term.words)) + ")"

    return between.join(one(term) for term in terms)


def search(session: Session, query: SearchQuery) -> SearchPage:
    page, per_page = max(1, query.page), min(max(1, query.per_page), 100)
    terms = parse_query(query.text)
    if not terms or not query.lists:
        return SearchPage([], 0, False, page, per_page)
    phrases = [term for term in terms if len(term.words) > 1]
    if is_sqlite(session):
        statement = _sqlite_select(terms, query)
    else:
        session.execute(PG_PLANNER)
        statement = _pg_select(session, terms, phrases, query)
        if phrases:
            return _verified_page(session, statement, terms, phrases, page, per_page)
    rows = session.execute(statement.limit(per_page).offset((page - 1) * per_page)).all()
    total = rows[0].total if rows else 0
    if not rows and page > 1:  # past the last page: still say how many there are
        total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    posts = _shown_posts(session, [row.id for row in rows])
    hits = [_hit(row, posts[row.id], terms) for row in rows if row.id in posts]
    return SearchPage(hits, total, total >= CANDIDATES, page, per_page)


def _verified_page(
    session: Session, statement: Select, terms: list[Term], phrases: list[Term], page: int, per_page: int
) -> SearchPage:
    """PostgreSQL, a query with phrases: every ranked candidate (``PHRASE_CANDIDATES`` at most) whose
    phrases are in its subject or sender (``head``, checked by the query) or its body, checked here."""
    rows = session.execute(statement).all()
    posts = _shown_posts(session, [row.id for row in rows])
    kept = []
    for row in rows:
        if row.id not in posts:
            continue
        body: list[str] | None = None
        for number, term in enumerate(phrases):
            if getattr(row, f"phrase_{number}"):
                continue
            body = body if body is not None else index_word_list(posts[row.id].text)
            if not phrase_in(body, term, CONFIGS.get(row.language, "simple")):
                break
        else:
            kept.append(row)
    shown = kept[(page - 1) * per_page : page * per_page]
    hits = [_hit(row, posts[row.id], terms) for row in shown]
    return SearchPage(hits, len(kept), len(rows) >= PHRASE_CANDIDATES, page, per_page)


def _candidates(matching: Select, query: SearchQuery, post_id: ColumnElement[int], limit: int) -> CTE:
    """The newest matching posts the reader may see. Ordered by the index's own ``post_id`` (FTS5 then
    walks its rowids backwards instead of sorting every match) and materialised (else SQLite runs the
    MATCH again for each post of a list)."""
    newest = _filtered(matching, query).order_by(post_id.desc()).limit(limit)
    return newest.cte("candidate").prefix_with("MATERIALIZED")


def _filtered(matching: Select, query: SearchQuery) -> Select:
    matching = matching.where(ROW.c.list_name.in_(query.lists))
    if query.sender:
        matching = matching.where(ROW.c.sender == query.sender.strip().lower())
    if query.since:
        matching = matching.where(ROW.c.date >= datetime.combine(query.since, time(), UTC))
    if query.until:
        matching = matching.where(ROW.c.date < datetime.combine(query.until + timedelta(days=1), time(), UTC))
    if query.language is not None:
        matching = matching.where(ROW.c.language == query.language)
    return matching


def _ranked(candidate: CTE, score: ColumnElement[float]) -> Select:
    """Relevance first, the newest first among equals; the total counted in the same pass. Only the
    index's rows: the posts themselves are read for the page's hits alone (``_shown_posts``), not for
    every candidate (a lookup each: 2 ms of a search's CPU on SQLite)."""
    statement = select(candidate.c.id, ROW.c.date, ROW.c.language, score.label("score"))
    statement = statement.add_columns(func.count().over().label("total"))
    statement = statement.join_from(candidate, ROW, ROW.c.post_id == candidate.c.id)
    return statement.order_by(literal_column("score").desc(), ROW.c.date.desc(), candidate.c.id.desc())


def _sqlite_select(terms: list[Term], query: SearchQuery) -> Select:
    # bm25 (lower is better, hence negated) is only computed by the query that runs the MATCH.
    bm25 = literal_column("-bm25(post_search_text, 4.0, 1.0, 2.0)")  # the subject counts most
    matching = (
        select(ROW.c.post_id.label("id"), bm25.label("score"))
        .join_from(FTS, ROW, ROW.c.post_id == FTS.c.rowid)
        .where(text("post_search_text MATCH :match").bindparams(match=_fts5_query(terms)))
    )
    candidate = _candidates(matching, query, FTS.c.rowid, CANDIDATES)
    return _ranked(candidate, candidate.c.score)


def _pg_select(session: Session, terms: list[Term], phrases: list[Term], query: SearchQuery) -> Select:
    # Imported here: on SQLite, serve would hold SQLAlchemy's PostgreSQL dialects for nothing (~2 MB).
    from sqlalchemy.dialects.postgresql import TSQUERY

    configs = sorted({CONFIGS.get(query.language, "simple")} if query.language else EVERY_CONFIG)

    def per_config(make: Callable[[str], ColumnElement[bool]]) -> ColumnElement[bool]:
        return or_(*(_pg_language(config) & make(config) for config in configs))

    # One GIN lookup per distinct query, each for the documents built with the configurations that
    # read the words so, in a query of its own: OR-ed in one WHERE, PostgreSQL would filter each row
    # found by computing the tsvector again. Most words stem alike in every language: one lookup, not
    # four that each visit every match (a word in 13,000 posts: 68 ms, most of a search).
    vector = literal_column(WORDS_VECTOR)
    lookups = [
        _filtered(select(ROW.c.post_id.label("id")), query).where(
            true() if set(alike) == EVERY_CONFIG else or_(*(_pg_language(config) for config in alike)),
            vector.op("@@")(cast(literal(words, Text), TSQUERY)),
        )
        for words, alike in _alike(session, terms, configs).items()
    ]
    # Materialised: a lone lookup under "newest first" was planned as a walk of the posts newest first,
    # computing each one's tsvector (1 s), not as the GIN lookup of them all and a sort (20 ms).
    found = (union_all(*lookups) if len(lookups) > 1 else lookups[0]).cte("found").prefix_with("MATERIALIZED")
    limit = PHRASE_CANDIDATES if phrases else CANDIDATES
    newest = select(found.c.id).order_by(found.c.id.desc()).limit(limit)
    candidate = newest.cte("candidate").prefix_with("MATERIALIZED")
    # Any term in the subject or sender ranks first; then the shorter post (words' length is known
    # without reading them: a TOASTed value records its size).
    anywhere = [_to_tsquery(c, _tsquery(terms, c in STEMMED, between=" | ")) for c in configs]
    head = func.ts_rank(ROW.c.head, reduce(lambda left, right: left.op("||")(right), anywhere))
    length = func.octet_length(ROW.c.words)
    statement = _ranked(candidate, head + 0.1 / (1 + func.ln(1 + length)))
    for number, term in enumerate(phrases):
        in_head = per_config(
            lambda config, term=term: ROW.c.head.op("@@")(
                _to_tsquery(config, _tsquery([term], config in STEMMED, within=" <-> "))
            )
        )
        statement = statement.add_columns(in_head.label(f"phrase_{number}"))
    return statement


def _alike(session: Session, terms: list[Term], configs: list[str]) -> dict[str, list[str]]:
    """Each distinct query PostgreSQL makes of the terms → the configurations that make it."""
    made = session.execute(
        select(*(cast(_to_tsquery(c, _tsquery(terms, c in STEMMED)), Text) for c in configs))
    ).one()
    alike: dict[str, list[str]] = {}
    for config, words in zip(configs, made, strict=True):
        alike.setdefault(words, []).append(config)
    return alike


def _to_tsquery(config: str, words: str) -> ColumnElement[Any]:
    return func.to_tsquery(literal_column(f"'{config}'::regconfig"), words)


def _pg_language(config: str) -> ColumnElement[bool]:
    stemmed = [language for language, name in CONFIGS.items() if name == config]
    return ROW.c.language.in_(stemmed) if stemmed else ROW.c.language.not_in(list(CONFIGS))


@dataclass(frozen=True)
class _Shown:
    """What a hit shows of its post: ``text`` is the snippet's source, derived when it was archived
    (``derived``); parsing each hit's MIME was half a search."""

    list_name: str
    message_id: str
    subject: str
    sender: str
    text: str


def _shown_posts(session: Session, ids: list[int]) -> dict[int, _Shown]:
    post = models.ArchivedPost
    columns = (post.id, post.list_name, post.message_id, post.subject, post.sender, post.search_text)
    rows = session.execute(select(*columns).where(post.id.in_(ids))).all()
    missing = [row.id for row in rows if row.search_text is None]
    texts = {row.id: row.search_text or "" for row in rows}
    if missing:  # archived before the text was derived, and not reindexed since
        raws = session.execute(select(post.id, post.raw).where(post.id.in_(missing), post.raw != b""))
        texts.update({post_id: body_text(parse_post(raw).text) for post_id, raw in raws})
    return {
        row.id: _Shown(row.list_name, row.message_id, row.subject, row.sender, texts[row.id]) for row in rows
    }


def _hit(row: Row, post: _Shown, terms: list[Term]) -> Hit:
    return Hit(
        post_id=row.id,
        list_name=post.list_name,
        message_id=post.message_id,
        subject=post.subject,
        sender=post.sender,
        date=row.date,
        rank=float(row.score),
        subject_fragments=highlight(post.subject, terms),
        snippet=highlight(post.text, terms, SNIPPET_WORDS),
    )
