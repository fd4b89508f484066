"""A known fortnight on two lists (weeks 2026-W46 and W47, site time zone Europe/Zurich): members,
posts, a weekly prompt's thread, held posts and their decisions, ended subscriptions. ``EXPECTED`` is
what ``listserv stats --room ta --from 2026-11-09 --to 2026-11-22`` must answer, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from listserv.store.models import (
    ArchivedPost,
    Held,
    ListRow,
    Member,
    Received,
    SentPrompt,
    Subscription,
    SubscriptionEnded,
    Topic,
)

MEMBERS = {  # address: (country, lists, subscribed)
    "ana@fr.example": ("FR", ("ta-fr",), "2026-10-01"),
    "binta@sn.example": ("SN", ("ta-fr",), "2026-11-10"),
    "chloe@ca.example": ("CA", ("ta-en", "ta-fr"), "2026-10-01"),
    "dan@gb.example": ("GB", ("ta-en",), "2026-11-17"),
    "eve@nowhere.example": ("", ("ta-en",), "2026-10-01"),
}
ENDED = [("ta-en", "US", "2026-10-01", "2026-11-18"), ("ta-fr", "BE", "2026-11-10", "2026-11-12")]
PROMPT_ID = "<topic-1.ta-fr@forum.example.org>"
# (list, sender, archived at (UTC), Message-ID, replies to (Message-ID) or None, erased)
POSTS = [
    ("ta-fr", "mod-fr@forum.example.org", "2026-11-09T08:00", PROMPT_ID, None, False),
    ("ta-fr", "ana@fr.example", "2026-11-10T09:00", "<f1@x>", PROMPT_ID, False),
    ("ta-fr", "binta@sn.example", "2026-11-11T09:00", "<f2@x>", "<f1@x>", False),
    ("ta-fr", "ana@fr.example", "2026-11-12T09:00", "<f3@x>", None, False),
    ("ta-fr", "chloe@ca.example", "2026-11-17T09:00", "<f4@x>", PROMPT_ID, False),
    ("ta-fr", "ana@fr.example", "2026-11-18T09:00", "<f5@x>", "<f3@x>", False),
    ("ta-en", "chloe@ca.example", "2026-11-10T09:00", "<e1@x>", None, False),
    ("ta-en", "eve@nowhere.example", "2026-11-11T09:00", "<e2@x>", "<e1@x>", False),
    ("ta-en", "dan@gb.example", "2026-11-17T09:00", "<e3@x>", None, False),
    ("ta-en", "dan@gb.example", "2026-11-19T09:00", "<e4@x>", "<e3@x>", False),
    ("ta-en", "Chloe@CA.example", "2026-11-20T09:00", "<e5@x>", "<e3@x>", False),
    ("ta-en", "", "2026-11-20T10:00", "<e6@x>", None, True),  # erased: not counted
    ("ta-en", "dan@gb.example", "2026-11-23T09:00", "<e7@x>", None, False),  # the week after
    # Sunday 22 November 23:30 in Zurich is still week 47 (22:30 UTC); Monday 00:30 is week 48.
    ("ta-fr", "binta@sn.example", "2026-11-22T22:30", "<f6@x>", None, False),
    ("ta-fr", "binta@sn.example", "2026-11-22T23:30", "<f7@x>", None, False),
]
# (list, kind, held at (UTC), decided after (seconds) or None, state)
HELD = [
    ("ta-fr", "post", "2026-11-10T10:00", 600, "approved"),
    ("ta-fr", "post", "2026-11-11T12:00", 3600, "rejected"),
    ("ta-fr", "post", "2026-11-15T22:00", 7200, "approved"),  # decided in week 47
    ("ta-fr", "post", "2026-11-18T10:00", None, "held"),
    ("ta-en", "post", "2026-11-17T09:00", 30, "discarded"),
    ("ta-en", "post", "2026-11-17T10:00", 90, "approved"),
    ("ta-en", "post", "2026-11-18T10:00", 300, "approved"),
    ("ta-en", "subscription", "2026-11-18T11:00", 60, "approved"),  # not a post: not counted
]


def _at(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load(engine: Engine) -> None:
    """Adds the fortnight to an initialised database (lists ta-en, ta-fr, ta-es)."""
    with Session(engine) as session, session.begin():
        lists = dict(session.execute(select(ListRow.name, ListRow.id)).all())
        for address, (country, names, since) in MEMBERS.items():
            member = Member(
                email=address, email_key=address.lower(), name=address.split("@")[0], country=country
            )
            session.add(member)
            session.flush()
            for name in names:
                session.add(Subscription(member_id=member.id, list_id=lists[name], created_at=_at(since)))
        for list_name, country, joined, left in ENDED:
            session.add(
                SubscriptionEnded(
                    list_name=list_name, country=country, joined_at=_at(joined), left_at=_at(left)
                )
            )
        topic = Topic(room="ta", week="2026-W46", titles={"fr": "Sujet"}, bodies={"fr": "Texte"})
        session.add(topic)
        session.flush()
        session.add(
            SentPrompt(
                topic_id=topic.id, list_name="ta-fr", message_id=PROMPT_ID, sent_at=_at("2026-11-09T08:00")
            )
        )
        _add_posts(session)
        for number, (list_name, kind, held_at, after, state) in enumerate(HELD):
            start = _at(held_at)
            message_id = f"<held{number}@x>"
            received = Received(
                rcpt_tos=[f"{list_name}@forum.example.org"],
                message_id=message_id,
                raw=f"From: a@x.example\r\nMessage-ID: {message_id}\r\nSubject: s\r\n\r\nText\r\n".encode(),
                received_at=start,
                state="processed",
            )
            session.add(received)
            session.flush()
            session.add(
                Held(
                    received_id=received.id,
                    list_name=list_name,
                    kind=kind,
                    message_id=message_id,
                    code_hash=f"{number:064d}",
                    code_nonce="n",
                    expires_at=start + timedelta(days=14),
                    held_at=start,
                    state=state,
                    decided_at=start + timedelta(seconds=after) if after is not None else None,
                )
            )


def _add_posts(session: Session) -> None:
    ids: dict[str, ArchivedPost] = {}
    for list_name, sender, at, message_id, parent, erased in POSTS:
        post = ArchivedPost(
            list_name=list_name,
            message_id=message_id,
            sender=sender,
            subject="s",
            raw=b"",
            archived_at=_at(at),
            erased_at=_at(at) if erased else None,
        )
        session.add(post)
        session.flush()
        above = ids.get(parent) if parent else None
        post.parent_id = above.id if above else None
        post.thread_id = (above.thread_id or above.id) if above else post.id
        ids[message_id] = post
    session.execute(update(ArchivedPost).where(ArchivedPost.erased_at.is_not(None)).values(sender=""))


def _row(period: str, name: str, **figures: Any) -> dict[str, Any]:
    zero = {
        "posts": 0,
        "posters": 0,
        "member_states_posting": 0,
        "member_states_members": 0,
        "members": 0,
        "new_members": 0,
        "left_members": 0,
        "prompt_replies": 0,
        "held": 0,
        "approved": 0,
        "rejected": 0,
        "discarded": 0,
        "decision_median_s": None,
        "decision_p90_s": None,
    }
    return {"period": period, "list": name, **zero, **figures}


EXPECTED = [
    _row(
        "2026-W46",
        "ta-en",
        posts=2,
        posters=2,
        member_states_posting=1,  # eve has no member state
        member_states_members=2,  # CA, US (who left in week 47)
        members=3,
    ),
    _row(
        "2026-W46",
        "ta-fr",
        posts=4,  # the prompt included
        posters=3,
        member_states_posting=2,  # FR, SN (the moderator has none)
        member_states_members=3,  # FR, SN, CA (BE came and went)
        members=3,
        new_members=2,
        left_members=1,
        prompt_replies=2,
        held=3,
        approved=1,
        rejected=1,
        decision_median_s=2100,
        decision_p90_s=3600,
    ),
    _row("2026-W46", "ta-es"),
    _row(
        "2026-W47",
        "ta-en",
        posts=3,
        posters=2,  # dan, and chloe (as Chloe@CA.example)
        member_states_posting=2,
        member_states_members=2,  # CA, GB
        members=3,
        new_members=1,
        left_members=1,
        held=3,
        approved=2,
        discarded=1,
        decision_median_s=90,
        decision_p90_s=300,
    ),
    _row(
        "2026-W47",
        "ta-fr",
        posts=3,
        posters=3,
        member_states_posting=3,  # CA, FR, SN
        member_states_members=3,
        members=3,
        prompt_replies=1,
        held=1,
        approved=1,
        decision_median_s=7200,
        decision_p90_s=7200,
    ),
    _row("2026-W47", "ta-es"),
]
