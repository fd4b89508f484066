"""The participation line ("Last week on this list: 42 posts from 17 member states") in the Monday
prompt and the weekly digest, in the list's language, from the fixture's known fortnight."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from digests import send_digests
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.store.models import ArchivedPost, Member, SentDigest, Subscription, Topic
from listserv.weekly.participation import participation_line
from tests import stats_fixture

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Zurich: the prompt is due


def _body(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = message.get_body(("plain",))
    assert part is not None
    return " ".join(part.get_content().split())  # type: ignore[union-attr]


def test_the_line_in_each_language(engine: Engine, settings: Settings) -> None:
    stats_fixture.load(engine)
    templates = build_parts(settings).templates
    with Session(engine) as session:
        # ta-fr, 16–23 November: chloe (CA), ana (FR), binta (SN) twice.
        line = participation_line(session, templates, "ta-fr", "en", MONDAY)
        assert line == "Last week on this list: 4 posts from 3 member states."
        assert participation_line(session, templates, "ta-fr", "fr", MONDAY) == (
            "La semaine dernière sur cette liste : 4 messages de 3 États membres."
        )
        assert participation_line(session, templates, "ta-en", "ru", MONDAY) == (
            "На прошлой неделе в этом списке: сообщений — 3, государств-членов — 2."
        )
        assert participation_line(session, templates, "ta-es", "es", MONDAY) == ""  # nothing posted


def test_the_prompt_and_the_weekly_digest_carry_it(engine: Engine, settings: Settings) -> None:
    stats_fixture.load(engine)
    parts = build_parts(settings, lambda: MONDAY)
    with Session(engine) as session, session.begin():
        session.add(Topic(room="ta", week="2026-W48", titles={"fr": "Douanes"}, bodies={"fr": "Texte"}))
        ana = session.scalars(select(Member).where(Member.email_key == "ana@fr.example")).one()
        session.execute(
            update(Subscription)
            .where(Subscription.member_id == ana.id)
            .values(delivery="digest", digest_period="weekly")
        )
    with Session(engine) as session, session.begin():
        assert parts.weekly.send_prompts(session, MONDAY) == 3
    with Session(engine) as session:
        prompt = session.scalars(
            select(ArchivedPost).where(
                ArchivedPost.message_id.like("<topic-%.ta-fr@%"), ArchivedPost.archived_at == MONDAY
            )
        ).one()
        assert "La semaine dernière sur cette liste : 4 messages de 3 États membres." in _body(prompt.raw)
    with Session(engine) as session, session.begin():
        assert send_digests(session, settings, parts.publisher, "weekly", MONDAY) == 1
    with Session(engine) as session:
        digest = session.scalars(
            select(SentDigest).where(SentDigest.list_name == "ta-fr", SentDigest.format == "mime")
        ).one()
        assert digest.raw is not None
        # The 7 days before the digest, [from, until) like its contents: the prompt sent at this very
        # moment is not counted, and the line matches the digest's own "4 messages".
        assert "La semaine dernière sur cette liste : 4 messages de 3 États membres." in _body(digest.raw), (
            _body(digest.raw)
        )
