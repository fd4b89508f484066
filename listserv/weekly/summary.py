"""The moderators' weekly figures: posts, posters, what waits, new members, next week's topic."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.mail.templates import FALLBACK
from listserv.store.models import ArchivedPost, Audit, Held, ListRow, Subscription, Topic
from listserv.weekly.calendar import iso_week, week_after
from listserv.weekly.topics import missing_languages, text_for


def weekly_summary(
    session: Session, list_name: str, room: str, now: datetime, timezone: str
) -> dict[str, Any]:
    """Figures for ``moderator_weekly_summary.txt``: the last 7 days of ``list_name`` up to ``now``, and
    next week's topic of ``room`` (title in the list's language, translations still missing)."""
    since = now - timedelta(days=7)
    recent = (
        ArchivedPost.list_name == list_name,
        ArchivedPost.archived_at >= since,
        ArchivedPost.archived_at < now,
    )
    posts, posters = session.execute(
        select(func.count(ArchivedPost.id), func.count(func.lower(ArchivedPost.sender).distinct())).where(
            *recent
        )
    ).one()
    held: dict[str, int] = {
        kind: count
        for kind, count in session.execute(
            select(Held.kind, func.count())
            .where(Held.list_name == list_name, Held.state == "held")
            .group_by(Held.kind)
        )
    }
    discarded = (
        session.scalar(
            select(func.count())
            .select_from(Audit)
            .where(Audit.list_name == list_name, Audit.action == "discard", Audit.channel == "system")
            .where(Audit.at >= since, Audit.at < now)
        )
        or 0
    )
    new_members = (
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .join(ListRow, Subscription.list_id == ListRow.id)
            .where(ListRow.name == list_name, Subscription.created_at >= since, Subscription.created_at < now)
        )
        or 0
    )
    language = session.scalar(select(ListRow.language).where(ListRow.name == list_name)) or FALLBACK
    languages = list(
        session.scalars(
            select(ListRow.language)
            .where(ListRow.room == room, ListRow.active.is_(True))
            .order_by(ListRow.id)
        )
    )
    next_week = week_after(iso_week(now, timezone))
    topic = session.scalars(select(Topic).where(Topic.room == room, Topic.week == next_week)).first()
    next_title, next_title_language, next_missing = None, None, []
    if topic is not None:
        next_title, _, next_title_language = text_for(topic, language)
        next_missing = missing_languages(topic, languages)
    return {
        "posts": posts,
        "posters": posters,
        "held": sum(held.values()),
        "held_proposals": held.get("proposal", 0),
        "discarded": discarded,  # by the posting policy: provably automatic mail, audited one by one
        "new_members": new_members,
        "next_week": next_week,
        "next_title": next_title,
        "next_title_language": next_title_language,
        "next_missing": next_missing,
    }
