"""Publishing an approved post: archive it, decorate it once, plan the fan-out.

Planning runs inside the approval's transaction: the archive row, the decorated copy and one
``delivery`` row per ``delivery.batch_size`` recipients commit together, or not at all. In personal
mode (``delivery.personalize: on``) a row is still a batch of recipients, sent as one transaction each.
Digest-mode members are skipped here (the digest serves them); ``none`` receive nothing.
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
from listserv.outgoing.personal import PLACEHOLDER, SHADOW, offers_one_click, one_click_url
from listserv.store.guests import thread_guests
from listserv.store.models import ArchivedPost, Delivery, ListRow, Member, Received, Subscription
from listserv.store.wakeup import DELIVERY, note_queued

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
        post.delivered_raw = self.members_copy(mailing_list, post)
        planned = self.plan(session, post, mailing_list, now)
        log.info("published %s on %s to %d member(s)", post.message_id, list_name, planned)
        return post

    def publish_raw(self, session: Session, raw: bytes, list_name: str, now: datetime) -> ArchivedPost:
        """Publish a message we composed (the weekly prompt): archived, decorated, delivered like a post."""
        mailing_list = self.settings.lists[list_name]
        message_id = find_message_id(raw) or ""
        post = archive_raw(session, raw, message_id, list_name, now, self.prefix(mailing_list))
        if post.delivered_raw is None:
            post.delivered_raw = self.members_copy(mailing_list, post)
            self.plan(session, post, mailing_list, now)
        return post

    def prefix(self, mailing_list: MailingList) -> str:
        configured = mailing_list.delivery.subject_prefix
        return f"[{mailing_list.name.upper()}]" if configured is None else configured

    def members_copy(self, mailing_list: MailingList, post: ArchivedPost) -> bytes:
        """The decorated copy, built once. In personal mode with one-click, the header and the footer's
        unsubscribe link carry ``PLACEHOLDER`` for the token. The footer's link keeps it only when
        substitution is proven exact (a SHADOW build differs by the stand-in alone): a footer that went
        into base64, or a quoted-printable line broken inside the URL, links to the list's page instead."""
        base = self.settings.site.base_url
        if not offers_one_click(mailing_list.delivery, base):
            return decorate(post.raw, self.decoration(mailing_list, post))
        header = one_click_url(base, PLACEHOLDER.decode())
        copy = decorate(post.raw, self.decoration(mailing_list, post, header, header))
        shadow_url = one_click_url(base, SHADOW.decode())
        shadow = decorate(post.raw, self.decoration(mailing_list, post, shadow_url, shadow_url))
        if copy.replace(PLACEHOLDER, SHADOW) == shadow:
            return copy
        log.info("%s: footer link not personal (its part is re-encoded)", post.message_id)
        return decorate(post.raw, self.decoration(mailing_list, post, header))

    def decoration(
        self, mailing_list: MailingList, post: ArchivedPost, one_click: str = "", footer_link: str = ""
    ) -> Decoration:
        """``one_click``: the RFC 8058 URL for the header; ``footer_link``: the footer's unsubscribe link
        (default: the list's signed-in page)."""
        base = self.settings.site.base_url
        links = {
            "list_title": mailing_list.title,
            "list_address": self.book.address_of(mailing_list.name),
            "archive_url": list_url(base, mailing_list.name),
            "unsubscribe_url": footer_link or unsubscribe_url(base, mailing_list.name),
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
            unsubscribe_url=one_click,
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

    @staticmethod
    def thread_guests(session: Session, post: ArchivedPost, members: list[str], now: datetime) -> list[str]:
        """Guests of the post's thread receive it like members (and nothing else: no other thread, no
        digest). One who has since joined the list is served as a member."""
        if post.thread_id is None:
            return []
        guests = thread_guests(session, post.list_name, post.thread_id, now)
        if not guests:  # the usual case: no need to fold a large list's every address
            return []
        known = {address.lower() for address in members}
        return [address for address in guests if address.lower() not in known]

    def plan(self, session: Session, post: ArchivedPost, mailing_list: MailingList, now: datetime) -> int:
        # Through the connection, not the ORM: 10,000 plain strings do not need its row loading,
        # which was most of publishing a post to a large list. The connection does not autoflush: a
        # subscription changed earlier in this transaction is flushed first, so it counts.
        session.flush()
        recipients = (
            session.connection()
            .scalars(
                select(Member.email)
                .join(Subscription, Subscription.member_id == Member.id)
                .join(ListRow, ListRow.id == Subscription.list_id)
                .where(
                    ListRow.name == mailing_list.name,
                    Subscription.delivery == "each",
                    Subscription.disabled_at.is_(None),  # suspended after bounces
                )
                .order_by(Member.id)
            )
            .all()
        )
        recipients = [*recipients, *self.thread_guests(session, post, recipients, now)]
        size = mailing_list.delivery.batch_size
        envelope = self.book.address_of(mailing_list.name, Kind.BOUNCES)
        personal = mailing_list.delivery.personalize == "on"
        rows = [
            {
                "post_id": post.id,
                "list_name": mailing_list.name,
                "mail_from": envelope,
                "recipients": list(recipients[start : start + size]),
                "personal": personal,
                "state": "queued",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for start in range(0, len(recipients), size)
        ]
        if rows:
            session.execute(insert(Delivery), rows)  # bulk: one statement, not one per row
            note_queued(session, DELIVERY)
        return len(recipients)
