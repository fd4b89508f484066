"""Publishing an approved post: archive it, decorate it once, plan the fan-out.

Planning runs inside the approval's transaction: the archive row, the decorated copy and one
``delivery`` row per ``delivery.batch_size`` recipients commit together, or not at all. Digest-mode
members are skipped here (the digest serves them); ``none`` receive nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_message, archive_raw
from listserv.archive.urls import list_url, message_url, protocol_url, unsubscribe_url
from listserv.config import MailingList, Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.message import find_message_id, parse_post
from listserv.mail.templates import MailTemplates
from listserv.outgoing.decorate import Decoration, decorate
from listserv.store.models import ArchivedPost, Delivery, ListRow, Member, Received, Subscription

log = logging.getLogger(__name__)


class Publisher:
    """archive → decorate → plan: what approval means for a post."""

    def __init__(self, settings: Settings, book: AddressBook, templates: MailTemplates) -> None:
        self.settings = settings
        self.book = book
        self.templates = templates

    def publish(
        self, session: Session, received: Received | None, list_name: str, now: datetime
    ) -> ArchivedPost | None:
        mailing_list = self.settings.lists[list_name]
        post = archive_message(session, received, list_name, now, self.prefix(mailing_list))
        if post is None or post.delivered_raw is not None:
            return post  # already published: approval replayed after a crash, or a duplicate
        post.delivered_raw = decorate(post.raw, self.decoration(mailing_list, post))
        planned = self.plan(session, post, mailing_list, now)
        log.info("published %s on %s to %d member(s)", post.message_id, list_name, planned)
        return post

    def publish_raw(self, session: Session, raw: bytes, list_name: str, now: datetime) -> ArchivedPost:
        """Publish a message we composed (the weekly prompt): archived, decorated, delivered like a post."""
        mailing_list = self.settings.lists[list_name]
        message_id = find_message_id(raw) or ""
        post = archive_raw(session, raw, message_id, list_name, now, self.prefix(mailing_list))
        if post.delivered_raw is None:
            post.delivered_raw = decorate(post.raw, self.decoration(mailing_list, post))
            self.plan(session, post, mailing_list, now)
        return post

    def prefix(self, mailing_list: MailingList) -> str:
        configured = mailing_list.delivery.subject_prefix
        return f"[{mailing_list.name.upper()}]" if configured is None else configured

    def decoration(self, mailing_list: MailingList, post: ArchivedPost) -> Decoration:
        base = self.settings.site.base_url
        links = {
            "list_title": mailing_list.title,
            "list_address": self.book.address_of(mailing_list.name),
            "archive_url": list_url(base, mailing_list.name),
            "unsubscribe_url": unsubscribe_url(base, mailing_list.name),
            "protocol_url": protocol_url(base, mailing_list.language),
            "request_address": self.book.address_of(mailing_list.name, Kind.REQUEST),
        }
        footer = {
            kind: self.templates.render_fragment(f"member_footer.{kind}", mailing_list.language, **links)
            for kind in ("txt", "html")
        }
        sender_domain = parse_post(post.raw).sender.rpartition("@")[2].lower()
        return Decoration(
            list_name=mailing_list.name,
            list_title=mailing_list.title,
            domain=self.book.domain,
            list_address=links["list_address"],
            request_address=links["request_address"],
            owner_address=self.book.address_of(mailing_list.name, Kind.OWNER),
            archive_url=links["archive_url"],
            message_url=message_url(base, mailing_list.name, post.message_id),
            # RFC 8058 one-click needs a URL naming the recipient and a web endpoint taking the POST;
            # neither exists before the web archive, so only the mailto form is offered for now.
            unsubscribe_url="",
            subject_prefix=self.prefix(mailing_list),
            reply_to=mailing_list.delivery.reply_to,
            dmarc=mailing_list.delivery.dmarc,
            munge=sender_domain in {d.lower() for d in mailing_list.delivery.dmarc_domains},
            footer_text=footer["txt"],
            footer_html=footer["html"],
            loop_marker=self.book.loop_marker,
        )

    def digest_decoration(self, mailing_list: MailingList, digest_url: str) -> Decoration:
        """Decoration of a digest: the list's headers and footer; never DMARC-munged (From is ours)."""
        stand_in = ArchivedPost(list_name=mailing_list.name, message_id="", raw=b"")
        return replace(self.decoration(mailing_list, stand_in), message_url=digest_url, munge=False)

    def plan(self, session: Session, post: ArchivedPost, mailing_list: MailingList, now: datetime) -> int:
        recipients = session.scalars(
            select(Member.email)
            .join(Subscription, Subscription.member_id == Member.id)
            .join(ListRow, ListRow.id == Subscription.list_id)
            .where(
                ListRow.name == mailing_list.name,
                Subscription.delivery == "each",
                Subscription.disabled_at.is_(None),  # suspended after bounces
            )
            .order_by(Member.id)
        ).all()
        size = mailing_list.delivery.batch_size
        envelope = self.book.address_of(mailing_list.name, Kind.BOUNCES)
        rows = [
            {
                "post_id": post.id,
                "list_name": mailing_list.name,
                "mail_from": envelope,
                "recipients": list(recipients[start : start + size]),
                "state": "queued",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for start in range(0, len(recipients), size)
        ]
        if rows:
            session.execute(insert(Delivery), rows)  # bulk: one statement, not one per row
        return len(recipients)
