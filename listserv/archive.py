"""The archive: approved messages, raw bytes exactly as received, once per list and Message-ID.
Threads and search are derived from it (and rebuilt by ``listserv reindex`` when the web issue lands)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.message import parse_post
from listserv.models import Post, Received


def archive_message(
    session: Session, received: Received | None, list_name: str, now: datetime
) -> Post | None:
    """Archive ``received`` on ``list_name``; the existing row if it is archived there already."""
    if received is None:
        return None
    existing = session.scalars(
        select(Post).where(Post.list_name == list_name, Post.message_id == received.message_id)
    ).first()
    if existing is not None:
        return existing
    parsed = parse_post(received.raw)
    post = Post(
        list_name=list_name,
        message_id=received.message_id,
        received_id=received.id,
        sender=parsed.sender,
        subject=parsed.subject[:2000],
        date=parsed.date,
        raw=received.raw,
        archived_at=now,
    )
    session.add(post)
    return post
