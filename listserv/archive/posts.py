"""The archive: approved messages, raw bytes exactly as received, once per list and Message-ID.

Threads are derived: a post's parent is the newest archived message it names (In-Reply-To, then
References from the nearest), else — for clients that drop those headers — the latest post on the
list with the same subject once reply markers and the list prefix are stripped, within
``SUBJECT_THREAD_DAYS``. URLs are stable and keyed by Message-ID (the web archive serves them).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.archive import derived, index
from listserv.mail.message import Post as ParsedPost
from listserv.mail.message import parse_post
from listserv.mail.subjects import subject_key
from listserv.store.models import ArchivedPost, Received

SUBJECT_THREAD_DAYS = 30


def archive_message(
    session: Session, received: Received | None, list_name: str, now: datetime, prefix: str = ""
) -> ArchivedPost | None:
    """Archive ``received`` on ``list_name``; the existing row if it is archived there already."""
    if received is None:
        return None
    return archive_raw(session, received.raw, received.message_id, list_name, now, prefix, received.id)


def archive_raw(
    session: Session,
    raw: bytes,
    message_id: str,
    list_name: str,
    now: datetime,
    prefix: str = "",
    received_id: int | None = None,
    language: str | None = None,
) -> ArchivedPost:
    """Archive bytes we composed ourselves (the weekly prompt) or received, and index them for search
    (``language``, the list's, picks the stemmer; looked up when not given)."""
    existing = session.scalars(
        select(ArchivedPost).where(ArchivedPost.list_name == list_name, ArchivedPost.message_id == message_id)
    ).first()
    if existing is not None:
        return existing
    parsed = parse_post(raw)
    post = ArchivedPost(
        list_name=list_name,
        message_id=message_id,
        received_id=received_id,
        sender=parsed.sender,
        subject=parsed.subject[:2000],
        date=parsed.date,
        raw=raw,
        archived_at=now,
        subject_key=subject_key(parsed.subject, prefix),
    )
    parent = find_parent(session, list_name, parsed, post.subject_key, now)
    session.add(post)
    session.flush()
    post.parent_id = parent.id if parent else None
    post.thread_id = (parent.thread_id or parent.id) if parent else post.id
    language = index.list_language(session, list_name) if language is None else language
    index.index_post(session, post, language, parsed)
    derived.record(session, post, parsed)
    return post


def find_parent(
    session: Session, list_name: str, parsed: ParsedPost, key: str, now: datetime
) -> ArchivedPost | None:
    named = [parsed.in_reply_to, *reversed(parsed.references)]
    for message_id in dict.fromkeys(mid for mid in named if mid):
        found = session.scalars(
            select(ArchivedPost).where(
                ArchivedPost.list_name == list_name, ArchivedPost.message_id == message_id
            )
        ).first()
        if found is not None:
            return found
    if not named and key and parsed.subject.strip().lower() != key:  # a reply marker, but no headers
        return session.scalars(
            select(ArchivedPost)
            .where(
                ArchivedPost.list_name == list_name,
                ArchivedPost.subject_key == key,
                ArchivedPost.archived_at >= now - timedelta(days=SUBJECT_THREAD_DAYS),
            )
            .order_by(ArchivedPost.id.desc())
        ).first()
    return None
