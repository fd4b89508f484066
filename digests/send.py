"""``send_digests``: select → build (pure, ``build.py``) → enqueue, inside the caller's transaction.

For every list of ``settings.lists`` and each format (``mime``, ``plain``):

- **Key.** The issue's key is the local date of ``now`` in ``site.timezone`` for ``daily``
  (``2026-11-23``), its ISO week for ``weekly`` (``2026-W48``). If a ``sent_digest`` row exists for
  (list, period, format, key), nothing happens: a rerun, a restart or a second process sends nothing
  twice. The row is claimed by inserting it first, in a savepoint; a concurrent run that loses the race
  on the unique key gets an IntegrityError, rolls back to the savepoint and sends nothing.
- **Window.** From the previous issue's ``covered_until`` for (list, period, format), else ``now`` minus
  one day (daily) or seven days (weekly), up to ``now``. Posts are the list's archived posts with
  ``archived_at`` in [from, until), in archive order.
- **Recipients.** Subscriptions of the list with ``delivery = 'digest'``, that period, that format and
  no ``disabled_at`` (suspended after bounces).
- **No empty digests.** Without posts or without recipients, the row is still recorded (``raw`` None,
  ``post_count`` 0), so that the window advances; nothing is sent.
- **Otherwise** the issue is built once (never per member): the week's topic first — the ``topic`` row
  of the list's room for the ISO week of ``now``, in the list's language, else the first language it
  has — then the contents and the posts; volume = the year of ``now`` (local), number = earlier issues
  with posts of that (list, period, format) in that year + 1. It is decorated with the list's headers
  and footer (``Publisher.digest_decoration``), stored in ``sent_digest.raw``, and one ``delivery`` row
  per ``delivery.batch_size`` recipients is queued (``digest_id`` set, envelope sender the list's
  ``-bounces`` address). The delivery worker sends them like posts.

Memory stays bounded by one list's posts of one period: lists are handled one after the other and
their posts are read in batches, as columns, not ORM objects.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Literal, cast
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digests.build import build_mime_digest, build_plain_digest, digest_message_id
from digests.issue import DigestIssue, DigestPost, Format, Period, period_key, read_message
from listserv.archive.urls import digest_url, message_url
from listserv.config import MailingList, Settings
from listserv.mail.addresses import Kind
from listserv.outgoing.decorate import decorate
from listserv.outgoing.publish import Publisher
from listserv.store.models import ArchivedPost, Delivery, ListRow, Member, SentDigest, Subscription, Topic
from listserv.store.wakeup import DELIVERY, note_queued
from listserv.weekly.calendar import iso_week
from listserv.weekly.participation import participation_line

log = logging.getLogger(__name__)
FORMATS: tuple[Format, ...] = ("mime", "plain")
SPAN = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
BUILDERS = {"mime": build_mime_digest, "plain": build_plain_digest}
READ_BATCH = 100  # posts fetched per round trip


def send_digests(
    session: Session,
    settings: Settings,
    publisher: Publisher,
    period: Literal["daily", "weekly"],
    now: datetime,
) -> int:
    """Issues created with posts (``sent_digest`` rows with ``post_count`` > 0)."""
    key = period_key(period, now, settings.site.timezone)
    created = 0
    for mailing_list in settings.lists.values():
        for fmt in FORMATS:
            created += send_issue(session, settings, publisher, mailing_list, period, fmt, key, now)
    return created


def send_issue(
    session: Session,
    settings: Settings,
    publisher: Publisher,
    mailing_list: MailingList,
    period: Period,
    fmt: Format,
    key: str,
    now: datetime,
) -> int:
    name = mailing_list.name
    if is_sent(session, name, period, fmt, key):
        return 0
    covered_from = previous_end(session, name, period, fmt) or now - SPAN[period]
    row = claim(session, name, period, fmt, key, covered_from, now)
    if row is None:
        log.info("%s digest %s of %s (%s) was taken by another run", period, key, name, fmt)
        return 0
    recipients = digest_members(session, name, period, fmt)
    posts = load_posts(session, settings, name, covered_from, now) if recipients else []
    if not posts:
        why = "no new posts" if recipients else "no members in this mode"
        log.info("%s digest %s of %s (%s): %s, nothing sent", period, key, name, fmt, why)
        return 0
    issue = make_issue(session, settings, publisher, mailing_list, (period, fmt, key), now, posts)
    url = digest_url(settings.site.base_url, name, period, key)
    built = BUILDERS[fmt](issue, publisher.templates)
    row.raw = decorate(built, publisher.digest_decoration(mailing_list, url))
    row.post_count = len(posts)
    session.flush()
    queue_deliveries(session, publisher, mailing_list, row.id, recipients, now)
    log.info(
        "%s digest %s (%s, vol %d issue %d): %d post(s) to %d member(s)",
        period,
        digest_message_id(issue, fmt),
        name,
        issue.volume,
        issue.number,
        len(posts),
        len(recipients),
    )
    return 1


def rebuild_issue(session: Session, settings: Settings, publisher: Publisher, row: SentDigest) -> None:
    """After an erasure: the stored issue built again from the posts its window still holds, with the
    same volume, number and date (it was built at ``covered_until``). Deliveries not yet sent carry the
    new bytes; with no post left, the record stays without bytes."""
    mailing_list = settings.lists.get(row.list_name)
    if mailing_list is None or row.raw is None:
        return
    posts = load_posts(session, settings, row.list_name, row.covered_from, row.covered_until)
    if not posts:
        row.raw, row.post_count = None, 0
        return
    period, fmt = cast(Period, row.period), cast(Format, row.format)
    issue_key = (period, fmt, row.key)
    issue = make_issue(session, settings, publisher, mailing_list, issue_key, row.covered_until, posts)
    url = digest_url(settings.site.base_url, row.list_name, period, row.key)
    built = BUILDERS[fmt](issue, publisher.templates)
    row.raw = decorate(built, publisher.digest_decoration(mailing_list, url))
    row.post_count = len(posts)


def is_sent(session: Session, list_name: str, period: str, fmt: str, key: str) -> bool:
    return (
        session.scalar(
            select(SentDigest.id).where(
                SentDigest.list_name == list_name,
                SentDigest.period == period,
                SentDigest.format == fmt,
                SentDigest.key == key,
            )
        )
        is not None
    )


def previous_end(session: Session, list_name: str, period: str, fmt: str) -> datetime | None:
    return session.scalar(
        select(func.max(SentDigest.covered_until)).where(
            SentDigest.list_name == list_name, SentDigest.period == period, SentDigest.format == fmt
        )
    )


def claim(
    session: Session, list_name: str, period: str, fmt: str, key: str, covered_from: datetime, now: datetime
) -> SentDigest | None:
    """The issue's row, inserted now so that the unique key decides between concurrent runs; None when
    another transaction holds that key (PostgreSQL makes us wait for it, then refuses)."""
    row = SentDigest(
        list_name=list_name,
        period=period,
        format=fmt,
        key=key,
        covered_from=covered_from,
        covered_until=now,
        post_count=0,
        raw=None,
        sent_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def digest_members(session: Session, list_name: str, period: str, fmt: str) -> list[str]:
    return list(
        session.scalars(
            select(Member.email)
            .join(Subscription, Subscription.member_id == Member.id)
            .join(ListRow, ListRow.id == Subscription.list_id)
            .where(
                ListRow.name == list_name,
                Subscription.delivery == "digest",
                Subscription.digest_period == period,
                Subscription.digest_format == fmt,
                Subscription.disabled_at.is_(None),
            )
            .order_by(Member.id)
        )
    )


def load_posts(
    session: Session, settings: Settings, list_name: str, covered_from: datetime, covered_until: datetime
) -> list[DigestPost]:
    columns = (
        ArchivedPost.id,
        ArchivedPost.message_id,
        ArchivedPost.subject,
        ArchivedPost.sender,
        ArchivedPost.date,
        ArchivedPost.archived_at,
    )
    rows = session.execute(
        select(*columns, ArchivedPost.thread_id, ArchivedPost.raw)
        .where(
            ArchivedPost.list_name == list_name,
            ArchivedPost.archived_at >= covered_from,
            ArchivedPost.archived_at < covered_until,
            ArchivedPost.erased_at.is_(None),
        )
        .order_by(ArchivedPost.archived_at, ArchivedPost.id)
        .execution_options(yield_per=READ_BATCH)
    )
    posts = []
    for post_id, message_id, subject, sender, date, archived_at, thread_id, raw in rows:
        sender_name, text = read_message(raw)
        posts.append(
            DigestPost(
                message_id=message_id,
                subject=subject,
                sender_name=sender_name,
                sender=sender,
                date=date or archived_at,
                thread_key=thread_id or post_id,
                url=message_url(settings.site.base_url, list_name, message_id),
                raw=raw,
                text=text,
            )
        )
    return posts


def make_issue(
    session: Session,
    settings: Settings,
    publisher: Publisher,
    mailing_list: MailingList,
    issue_key: tuple[Period, Format, str],
    now: datetime,
    posts: list[DigestPost],
) -> DigestIssue:
    (period, fmt, key), book, name = issue_key, publisher.book, mailing_list.name
    title, body = topic_of(session, settings, mailing_list, now)
    volume = now.astimezone(ZoneInfo(settings.site.timezone)).year
    return DigestIssue(
        site_name=settings.site.name,
        list_name=name,
        list_title=mailing_list.title,
        list_address=book.address_of(name),
        owner_address=book.address_of(name, Kind.OWNER),
        request_address=book.address_of(name, Kind.REQUEST),
        language=mailing_list.language,
        period=period,
        key=key,
        volume=volume,
        number=issues_this_year(session, settings, name, period, fmt, volume, now) + 1,
        date=now,
        posts=tuple(posts),
        topic_title=title,
        topic_body=body,
        subject_prefix=publisher.prefix(mailing_list),
        participation=participation_line(session, publisher.templates, name, mailing_list.language, now)
        if period == "weekly"
        else "",
    )


def issues_this_year(
    session: Session, settings: Settings, list_name: str, period: str, fmt: str, year: int, now: datetime
) -> int:
    zone = ZoneInfo(settings.site.timezone)
    start = datetime(year, 1, 1, tzinfo=zone)
    return (
        session.scalar(
            select(func.count())
            .select_from(SentDigest)
            .where(
                SentDigest.list_name == list_name,
                SentDigest.period == period,
                SentDigest.format == fmt,
                SentDigest.post_count > 0,
                SentDigest.covered_until >= start,
                SentDigest.covered_until < now,
            )
        )
        or 0
    )


def topic_of(
    session: Session, settings: Settings, mailing_list: MailingList, now: datetime
) -> tuple[str, str]:
    """(title, body) of the room's topic for the ISO week of ``now``: in the list's language, else in
    the first language that has a title (site order, then any); ("", "") without a topic."""
    week = iso_week(now, settings.site.timezone)
    topic = session.scalars(select(Topic).where(Topic.room == mailing_list.room, Topic.week == week)).first()
    if topic is None or not topic.titles:
        return "", ""
    order = [mailing_list.language, *settings.languages, *topic.titles]
    language = next((lang for lang in order if topic.titles.get(lang)), None)
    if language is None:
        return "", ""
    return topic.titles[language], (topic.bodies or {}).get(language, "")


def queue_deliveries(
    session: Session,
    publisher: Publisher,
    mailing_list: MailingList,
    digest_id: int,
    recipients: list[str],
    now: datetime,
) -> None:
    """One delivery row per ``delivery.batch_size`` recipients, in one statement."""
    size = mailing_list.delivery.batch_size
    envelope = publisher.book.address_of(mailing_list.name, Kind.BOUNCES)
    session.execute(
        insert(Delivery),
        [
            {
                "digest_id": digest_id,
                "post_id": None,
                "list_name": mailing_list.name,
                "mail_from": envelope,
                "recipients": recipients[start : start + size],
                "state": "queued",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for start in range(0, len(recipients), size)
        ],
    )
    note_queued(session, DELIVERY)
