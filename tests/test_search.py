"""Full-text search over the archive, on SQLite (FTS5) and PostgreSQL (tsvector + GIN) alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.orm import Session

from listserv.archive import index, search
from listserv.archive.posts import archive_raw
from listserv.archive.search import SearchQuery
from listserv.cli import main
from listserv.config import Settings
from listserv.store.models import ArchivedPost

ALL = ("ta-en", "ta-fr", "ta-es")
DAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def mail(
    subject: str,
    body: str,
    sender: str = "alice@example.org",
    name: str = "Alice",
    html: bool = False,
    when: datetime = DAY,
) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "ta-en@forum.example.org"
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message.set_content(body, subtype="html" if html else "plain")
    return message.as_bytes()


class Archive:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def add(self, subject: str, body: str, list_name: str = "ta-en", **options: object) -> int:
        self.count += 1
        with Session(self.engine) as session, session.begin():
            raw = mail(subject, body, **options)  # type: ignore[arg-type]
            post = archive_raw(session, raw, f"<m{self.count}@example.org>", list_name, DAY)
            return post.id

    def find(self, text: str, lists: tuple[str, ...] = ALL, **filters: object) -> search.SearchPage:
        with Session(self.engine) as session:
            return search.search(session, SearchQuery(text, lists, **filters))  # type: ignore[arg-type]

    def ids(self, text: str, lists: tuple[str, ...] = ALL, **filters: object) -> list[int]:
        return [hit.post_id for hit in self.find(text, lists, **filters).hits]


@pytest.fixture
def archive(engine: Engine) -> Archive:
    return Archive(engine)


def marked(fragments: list[tuple[str, bool]]) -> list[str]:
    return [piece for piece, flag in fragments if flag]


def test_all_words_must_match_and_relevance_ranks_first(archive: Archive) -> None:
    once = archive.add("Agenda", "We discuss water once among many other things " + "filler " * 60)
    often = archive.add("Water policy", "Water, water: the water question.")
    archive.add("Agenda", "Nothing about it here")
    assert archive.ids("water") == [often, once]
    assert archive.ids("water question") == [often]


def test_newest_first_when_equally_relevant(archive: Archive) -> None:
    old = archive.add("Budget", "The budget", when=DAY - timedelta(days=3))
    new = archive.add("Budget", "The budget", when=DAY)
    assert archive.ids("budget") == [new, old]


def test_quoted_phrase_matches_words_in_order(archive: Archive) -> None:
    together = archive.add("Notes", "the climate change report is out")
    apart = archive.add("Notes", "change the climate of the debate")
    assert set(archive.ids("climate change")) == {together, apart}
    assert archive.ids('"climate change"') == [together]


def test_prefix_search(archive: Archive) -> None:
    post = archive.add("Moderation", "moderators decide")
    assert archive.ids("moderat*") == [post]


def test_accents_do_not_matter(archive: Archive) -> None:
    post = archive.add("Réunion de lundi", "Prochaine réunion à Genève", list_name="ta-fr")
    assert archive.ids("reunion") == [post]
    assert archive.ids("GENEVE") == [post]
    assert archive.ids("réunion") == [post]


def test_lists_the_reader_may_see_are_always_applied(archive: Archive) -> None:
    english = archive.add("Water", "water")
    archive.add("Eau", "water", list_name="ta-fr")
    assert archive.ids("water", ("ta-en",)) == [english]
    assert archive.ids("water", ()) == []


def test_filters_sender_dates_language(archive: Archive) -> None:
    alice = archive.add("Water", "water", when=DAY - timedelta(days=10))
    bob = archive.add("Water", "water", sender="Bob@Example.org", name="Bob", when=DAY)
    french = archive.add("Eau", "water", list_name="ta-fr", when=DAY - timedelta(days=5))
    assert archive.ids("water", sender="bob@example.org") == [bob]
    assert set(archive.ids("water", since=(DAY - timedelta(days=5)).date())) == {bob, french}
    assert archive.ids("water", until=(DAY - timedelta(days=10)).date()) == [alice]  # inclusive
    assert archive.ids("water", since=date(2026, 10, 27), until=date(2026, 10, 28)) == [french]
    assert archive.ids("water", language="fr") == [french]
    assert set(archive.ids("water", language="en")) == {alice, bob}


def test_sender_name_and_address_are_searchable(archive: Archive) -> None:
    post = archive.add("Hello", "hi", sender="marie.curie@example.org", name="Marie Curie")
    assert archive.ids("curie") == [post]
    assert archive.ids("marie.curie@example.org") == [post]


HOSTILE = (
    '"',
    "AND OR",
    "*",
    "NEAR(",
    "'; DROP TABLE post;--",
    "",
    "   ",
    "subject:water",
    "(water",
    "water)",
    "NOT",
    "-water",
    "a* b*",
    '"unclosed phrase',
    "\\",
    "\x00",
    "::*",
    "<->",
    "!&|",
    "é" * 500,
    "a:*",
    "' | '",
    "NEAR(water river, 2)",
    "water^",
    "{subject}: water",
    "$$",
    "%_%",
)


def test_hostile_queries_never_raise(archive: Archive) -> None:
    archive.add("Water", "water and not much else")
    for hostile in HOSTILE:
        page = archive.find(hostile)
        assert page.total == len(page.hits) <= 1, hostile
    with Session(archive.engine) as session:
        assert session.scalar(select(func.count()).select_from(ArchivedPost)) == 1


def test_operators_are_plain_words(archive: Archive) -> None:
    post = archive.add("Water", "water NEAR the river, or not")
    assert archive.ids("water NEAR(") == [post]
    assert archive.ids("subject:water") == []  # "subject" is a word, not a column filter


def test_snippet_highlights_the_match_around_it(archive: Archive) -> None:
    body = " ".join(f"word{i}" for i in range(200)) + " the Réunion is on Monday " + "tail " * 100
    archive.add("Réunion", body)
    [hit] = archive.find("reunion").hits
    assert marked(hit.snippet) == ["Réunion"]
    assert marked(hit.subject_fragments) == ["Réunion"]
    text = "".join(piece for piece, _ in hit.snippet)
    assert text.startswith("… ") and text.endswith(" …") and "word0 " not in text
    assert len(text.split()) <= search.SNIPPET_WORDS + 2
    assert "<" not in text


def test_snippet_of_phrase_marks_each_word(archive: Archive) -> None:
    archive.add("Notes", "a report on climate change today")
    [hit] = archive.find('"climate change"').hits
    assert marked(hit.snippet) == ["climate", "change"]
    assert "".join(piece for piece, _ in hit.snippet) == "a report on climate change today"


def test_html_only_mail_is_indexed_without_tags(archive: Archive) -> None:
    html = "<html><body><p>Visit <b>Geneva</b></p><div class='sidebar'>hello</div></body></html>"
    post = archive.add("Trip", html, html=True)
    assert archive.ids("geneva") == [post]
    assert archive.ids("sidebar") == [] and archive.ids("div") == []
    [hit] = archive.find("geneva").hits
    assert "".join(piece for piece, _ in hit.snippet).strip() == "Visit Geneva hello"


def test_quoted_lines_are_not_indexed(archive: Archive) -> None:
    original = archive.add("Water", "the aquifer is low")
    archive.add("Re: Water", "I agree.\n\n> the aquifer is low\n")
    assert archive.ids("aquifer") == [original]


def test_pagination(archive: Archive) -> None:
    posts = [archive.add("Water", "water", when=DAY + timedelta(minutes=i)) for i in range(5)]
    first = archive.find("water", per_page=2)
    second = archive.find("water", per_page=2, page=2)
    last = archive.find("water", per_page=2, page=3)
    beyond = archive.find("water", per_page=2, page=9)
    assert (first.total, second.total, last.total, beyond.total) == (5, 5, 5, 5)
    seen = [hit.post_id for page in (first, second, last) for hit in page.hits]
    assert seen == list(reversed(posts))
    assert beyond.hits == []


def test_only_the_newest_matches_are_ranked(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    posts = [archive.add("Water", "water " * (5 - i), when=DAY + timedelta(days=i)) for i in range(5)]
    assert not archive.find("water").capped
    monkeypatch.setattr(search, "CANDIDATES", 3)
    page = archive.find("water")
    assert (page.total, page.capped) == (3, True)
    assert {hit.post_id for hit in page.hits} == set(posts[2:])
    # Filtered, then cut (in any order: PostgreSQL no longer knows that the oldest says "water" most).
    assert set(archive.ids("water", until=(DAY + timedelta(days=2)).date())) == set(posts[:3])


def test_hit_fields(archive: Archive) -> None:
    post = archive.add("Water", "water", list_name="ta-es")
    [hit] = archive.find("water").hits
    assert (hit.post_id, hit.list_name, hit.message_id) == (post, "ta-es", "<m1@example.org>")
    assert (hit.subject, hit.sender, hit.date) == ("Water", "alice@example.org", DAY)
    assert hit.rank > 0


def test_remove_posts(archive: Archive) -> None:
    gone = archive.add("Water", "water")
    kept = archive.add("Water", "water again")
    with Session(archive.engine) as session, session.begin():
        index.remove_posts(session, [gone])
        session.execute(delete(ArchivedPost).where(ArchivedPost.id == gone))
    assert archive.ids("water") == [kept]
    assert_index_sound(archive.engine)


def test_reindex_rebuilds_an_emptied_index(archive: Archive, settings: Settings) -> None:
    posts = {archive.add("Water", f"water {i}") for i in range(7)}
    with archive.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text("INSERT INTO post_search_text (post_search_text) VALUES ('delete-all')"))
        connection.execute(text("DELETE FROM post_search"))
    assert archive.ids("water") == []
    index.BATCH, batch = 3, index.BATCH  # several batches
    try:
        assert index.reindex(archive.engine, settings) == 7
    finally:
        index.BATCH = batch
    assert set(archive.ids("water")) == posts
    assert index.reindex(archive.engine, settings) == 7  # again: nothing twice
    assert archive.find("water").total == 7
    assert_index_sound(archive.engine)


def test_reindex_command(
    archive: Archive,
    settings: Settings,
    tmp_path: object,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive.add("Water", "water")
    monkeypatch.setattr("listserv.cli.load_settings", lambda path: settings)
    assert main(["reindex"]) == 0
    assert capsys.readouterr().out.startswith("reindexed 1 messages in ")
    assert len(archive.ids("water")) == 1


def test_archiving_twice_indexes_once(archive: Archive, engine: Engine) -> None:
    raw = mail("Water", "water")
    for _ in range(2):
        with Session(engine) as session, session.begin():
            archive_raw(session, raw, "<same@example.org>", "ta-en", DAY)
    assert archive.find("water").total == 1


def test_stemming_by_list_language_on_postgresql_prefixes_on_sqlite(archive: Archive, engine: Engine) -> None:
    post = archive.add("Meetings", "The delegates were meeting")
    if engine.dialect.name == "sqlite":  # unicode61 does not stem: a word finds itself, a prefix* more
        assert archive.ids("meet") == []
        assert archive.ids("meet*") == [post]
        return
    assert archive.ids("meet") == [post]
    [hit] = archive.find("meet").hits
    assert marked(hit.snippet) == ["meeting"]


def test_a_word_each_language_stems_its_own_way_is_found_in_every_list(archive: Archive) -> None:
    """PostgreSQL: English keeps "nation" of "national", French and Spanish keep "national"; one
    lookup per distinct query must still find the word in every list's posts."""
    english = archive.add("Plans", "our national plans", list_name="ta-en")
    french = archive.add("Plans", "le plan national", list_name="ta-fr")
    spanish = archive.add("Planes", "el plan national", list_name="ta-es")
    assert set(archive.ids("national")) == {english, french, spanish}
    assert archive.ids("national", language="fr") == [french]


def assert_index_sound(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO post_search_text (post_search_text, rank) VALUES ('integrity-check', 0)")
            )


def test_scripts_without_spaces_and_non_latin(archive: Archive) -> None:
    chinese = archive.add("会议通知", "明天在东京开会。")
    russian = archive.add("Встреча", "Завтра встреча в Женеве")
    assert archive.ids("东京") == [chinese]
    assert archive.ids("会议") == [chinese]
    assert archive.ids("京东") == []  # the characters, but not in that order
    assert archive.ids("встреча") == [russian]
    [hit] = archive.find("东京").hits
    assert marked(hit.snippet) == ["东", "京"]


def test_russian_words_are_found_in_any_form(archive: Archive) -> None:
    """Stemmed in Python (Snowball) on both databases: the same query finds the same posts."""
    post = archive.add("Встречи делегатов", "Обсуждение бюджетного плана на встречах в Женеве.")
    archive.add("Повестка", "Ничего общего.")
    assert archive.ids("встреча") == [post]
    assert archive.ids("бюджетный план") == [post]
    assert archive.ids('"бюджетный план"') == [post]
    assert archive.ids("встреч*") == [post]
    assert archive.ids("бюджетный повестка") == []  # all words must match
    [hit] = archive.find("встреча").hits
    assert marked(hit.snippet) == ["встречах"] and marked(hit.subject_fragments) == ["Встречи"]


def test_arabic_words_are_found_by_light_stemming(archive: Archive) -> None:
    post = archive.add("الاجتماعات القادمة", "مناقشة الميزانية في الاجتماع المقبل.")
    archive.add("جدول الأعمال", "لا علاقة.")
    assert archive.ids("اجتماع") == [post]
    assert archive.ids("ميزانية") == [post]
    assert archive.ids("الميزانيّة") == [post]  # a shadda (a diacritic) changes nothing
    [hit] = archive.find("ميزانية").hits
    assert marked(hit.snippet) == ["الميزانية"]


def test_chinese_and_japanese_are_found_by_words_of_two_or_more_characters(archive: Archive) -> None:
    chinese = archive.add("预算会议", "本次会议讨论明年的预算草案。")
    parliament = archive.add("议会通知", "议会明天开会。")
    japanese = archive.add("会議のお知らせ", "来週、東京でプロジェクト会議を開きます。")
    assert archive.ids("会议") == [chinese]  # not 议会 (the same characters the other way round)
    assert archive.ids("议会") == [parliament]
    assert archive.ids("预算草案") == [chinese]
    assert archive.ids("会議") == [japanese]
    assert archive.ids("プロジェクト") == [japanese]
    assert archive.ids("东京会议") == []
    [hit] = archive.find("预算草案").hits
    assert "".join(marked(hit.snippet)) == "预算草案"


def test_english_french_spanish_are_not_stemmed_in_python(archive: Archive) -> None:
    from listserv.archive.index_text import index_words

    assert index_words("Meetings réunions reuniones") == "meetings reunions reuniones"
    assert index_words("Встречи الاجتماعات 会议") == "встреч اجتماع 会 议"


def test_phrases_are_verified_in_subject_and_body_with_the_list_language_stems(
    archive: Archive, engine: Engine
) -> None:
    """PostgreSQL keeps each post's words once, unordered: a phrase is checked on the candidates, in
    the subject and sender (``head``) or the body, with the stems PostgreSQL's configuration gives."""
    body = archive.add("Notes", "The reports on climate changes are out")
    subject = archive.add("Climate change report", "see attached")
    archive.add("Climate", "changes in the climate, a report")  # the words, not the phrase
    french = archive.add("Ordre du jour", "Les prochaines réunions publiques à Genève", list_name="ta-fr")
    assert archive.ids('"climate change report"') == [subject]
    assert archive.ids('"réunions publiques"') == [french]
    assert archive.ids('"publiques réunions"') == []
    page = archive.find('"climate change" report')
    assert ([hit.post_id for hit in page.hits], page.total, page.capped) == (
        ([subject, body], 2, False) if engine.dialect.name == "postgresql" else ([subject], 1, False)
    )
    if engine.dialect.name == "postgresql":  # stemmed: FTS5's unicode61 tokenizer has no stemmer
        assert archive.ids('"reunion publique"') == [french]
        assert marked(archive.find('"climate change"').hits[1].snippet) == ["climate", "changes"]


def test_a_phrase_is_verified_on_the_newest_candidates_only(
    archive: Archive, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    posts = [archive.add("Water", "clean water here", when=DAY + timedelta(days=i)) for i in range(3)]
    monkeypatch.setattr(search, "PHRASE_CANDIDATES", 2)
    page = archive.find('"clean water"')
    if engine.dialect.name == "sqlite":  # FTS5 matches phrases itself: every match is a candidate
        assert (page.total, page.capped) == (3, False)
        return
    assert (page.total, page.capped) == (2, True)
    assert {hit.post_id for hit in page.hits} == set(posts[1:])


def test_postgresql_search_uses_the_gin_expression_index(archive: Archive, engine: Engine) -> None:
    """The query must spell the indexed expression exactly, or PostgreSQL reads every post."""
    if engine.dialect.name == "sqlite":
        pytest.skip("an expression index is PostgreSQL's: FTS5 is its own index")
    archive.add("Water", "clean water")
    with Session(engine) as session:
        session.execute(search.PG_PLANNER)  # as search() runs it: a few posts would not need the index
        statement = search._pg_select(session, search.parse_query("water"), [], SearchQuery("water", ALL))
        compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))
    assert "ix_post_search_words" in plan, plan


def test_migration_0017_rebuilds_the_postgresql_index_of_an_archive(db_url: str) -> None:
    """An archive indexed with 0007's tsvector: after 0017 its phrases, stems and ranking still work."""
    if db_url.startswith("sqlite"):
        pytest.skip("0017 changes PostgreSQL's index only; FTS5 stays as it is")
    from alembic import command
    from alembic.config import Config

    from listserv.store import schema
    from listserv.store.db import make_engine

    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    posts = [
        ("Water policy", "the water question, clean water"),
        ("Agenda", "clean water to drink " + "filler " * 40),
        ("Notes", "le climat change"),
    ]
    with engine.begin() as connection:  # posts and their 0007 index rows, as archived before 0017
        config.attributes["connection"] = connection
        command.upgrade(config, "0016")
        for number, (subject, body) in enumerate(posts, 1):
            connection.execute(
                text(
                    "INSERT INTO post (id, list_name, message_id, sender, subject, raw, archived_at,"
                    " thread_id, subject_key) VALUES (:id, 'ta-en', :mid, 'alice@example.org', :subject,"
                    " :raw, :at, :id, '')"
                ),
                {
                    "id": number,
                    "mid": f"<m{number}@example.org>",
                    "subject": subject,
                    "raw": mail(subject, body),
                    "at": DAY + timedelta(minutes=number),
                },
            )
            connection.execute(
                text(
                    "INSERT INTO post_search (post_id, list_name, language, date, sender, document)"
                    " VALUES (:id, 'ta-en', 'en', :at, 'alice@example.org', to_tsvector('english', :words))"
                ),
                {"id": number, "at": DAY + timedelta(minutes=number), "words": f"{subject} {body}"},
            )
    schema.upgrade(engine)
    try:
        found = Archive(engine)
        assert found.ids("water") == [1, 2]  # the subject's match first
        assert set(found.ids('"clean water"')) == {1, 2}
        assert found.ids('"water clean"') == []
        assert found.ids("waters") == [1, 2]  # stemmed by the list's language
        assert found.ids('"climat change"') == [3]
    finally:
        engine.dispose()
