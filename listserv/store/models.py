"""Tables (SQLAlchemy 2 typed ORM). Schema changes go through Alembic migrations in ``migrations/``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from listserv.store.base import Base as Base
from listserv.store.db import utc_now

# The tables of figures live in ``figures``, re-exported so that importing ``models`` knows every table.
from listserv.store.figures import DayFigures as DayFigures
from listserv.store.figures import SubscriptionEnded as SubscriptionEnded
from listserv.store.figures import ThreadFigures as ThreadFigures
from listserv.store.history import record_end


class ListRow(Base):
    __tablename__ = "mailing_list"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    room: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Member(Base):
    __tablename__ = "member"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The address as written, with its domain lowercased; ``email_key`` is the case-blind identity.
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str] = mapped_column(String(100), default="")  # ISO 3166-1 alpha-2, "" unknown
    affiliation: Mapped[str] = mapped_column(String(200), default="")  # ministry, office
    language: Mapped[str | None] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16), default="delegate")  # delegate|staff|focal_point|guest
    is_chief: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    protocol_accepted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # Yearly reconfirmation (migration 0012): the last one (None: since created_at), the reminder out.
    confirmed_at: Mapped[datetime | None]
    reconfirm_sent_at: Mapped[datetime | None]

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="member", cascade="all, delete-orphan"
    )


class Subscription(Base):
    __tablename__ = "subscription"
    __table_args__ = (UniqueConstraint("member_id", "list_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_list.id", ondelete="CASCADE"), index=True)
    delivery: Mapped[str] = mapped_column(String(8), default="each")  # each | digest | none
    digest_period: Mapped[str] = mapped_column(String(8), default="daily")  # daily | weekly
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0)
    last_bounce_at: Mapped[datetime | None]
    probe_sent_at: Mapped[datetime | None]  # a VERP probe is out: its bounce disables delivery
    disabled_at: Mapped[datetime | None]  # delivery suspended after bounces; `mail` re-enables
    disabled_reason: Mapped[str | None] = mapped_column(String(16))  # None: bounces | reconfirmation
    digest_format: Mapped[str] = mapped_column(String(8), default="mime")  # mime | plain (RFC 1153)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    member: Mapped[Member] = relationship(back_populates="subscriptions")
    mailing_list: Mapped[ListRow] = relationship()


class Moderator(Base):
    """A member who moderates one list; synced from config.yaml by ``listserv init``."""

    __tablename__ = "moderator"

    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_list.id", ondelete="CASCADE"), primary_key=True)


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here, so a copy of
    the database opens no session. Signing out sets ``ended_at``: a copied cookie stops working. A
    password change ends every session through ``password_fingerprint`` (taken at sign-in)."""

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    password_fingerprint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]


class Received(Base):
    """A message exactly as acknowledged: committed before the SMTP 250, processed after."""

    __tablename__ = "received"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(default=utc_now)
    peer: Mapped[str] = mapped_column(String(100), default="")
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="new", index=True)  # new | processed | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class Route(Base):
    """Where one received message goes for one recipient; unique per list, kind and Message-ID so that a
    message sent twice is acknowledged twice but handled once."""

    __tablename__ = "route"
    __table_args__ = (UniqueConstraint("list_name", "kind", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    received_id: Mapped[int] = mapped_column(ForeignKey("received.id", ondelete="CASCADE"), index=True)
    list_name: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(998))
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Held(Base):
    """A post or proposal awaiting a moderator; decided once, by the first moderator to act."""

    __tablename__ = "held"

    id: Mapped[int] = mapped_column(primary_key=True)
    # What is held: a received message (post, proposal, subscription request), or for a translation
    # request, a topic awaiting this list's language.
    route_id: Mapped[int | None] = mapped_column(ForeignKey("route.id", ondelete="CASCADE"), unique=True)
    received_id: Mapped[int | None] = mapped_column(ForeignKey("received.id", ondelete="CASCADE"), index=True)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topic.id", ondelete="CASCADE"))
    list_name: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="post")  # post|proposal|subscription|translation
    message_id: Mapped[str] = mapped_column(String(998))
    sender: Mapped[str] = mapped_column(String(320), default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    reasons: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)  # [{key, params}]
    # Only a hash of the reply code is kept: a database leak must not let anyone decide.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_nonce: Mapped[str] = mapped_column(String(32))  # the code is HMAC(site secret, nonce)
    expires_at: Mapped[datetime]
    held_at: Mapped[datetime] = mapped_column(default=utc_now)
    state: Mapped[str] = mapped_column(String(16), default="held", index=True)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(320))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    publish_at: Mapped[datetime | None]  # approved while its room is closed: published when it opens


class Audit(Base):
    """Every decision and every attempt at one, whatever its outcome."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    list_name: Mapped[str | None] = mapped_column(String(100), index=True)
    held_id: Mapped[int | None] = mapped_column(ForeignKey("held.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320))  # who: an address, or the operator's login
    channel: Mapped[str] = mapped_column(String(8))  # email | web | cli | system
    action: Mapped[str] = mapped_column(String(16))  # approve | reject | discard | remind | escalate
    result: Mapped[str] = mapped_column(String(24))  # decided | already_decided | unknown_code | ...
    detail: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(String(998))  # the reply that carried the attempt


class Outbox(Base):
    """A message to send, committed with the step that caused it; the sender retries until it is out."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    purpose: Mapped[str] = mapped_column(String(40))  # moderator_held, sender_rejected, ...
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(8), default="queued", index=True)  # queued | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claim (store/claims.py)


class ArchivedPost(Base):
    """An approved message in the archive: raw bytes exactly as received, once per list."""

    __tablename__ = "post"
    __table_args__ = (
        UniqueConstraint("list_name", "message_id"),
        # The archive pages (migration 0008): walks newest first, date ranges, a thread's figures.
        Index("ix_post_list_archived", "list_name", "archived_at", "thread_id"),
        Index("ix_post_list_thread_archived", "list_name", "thread_id", "archived_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_name: Mapped[str] = mapped_column(String(100), index=True)
    message_id: Mapped[str] = mapped_column(String(998))
    received_id: Mapped[int | None] = mapped_column(ForeignKey("received.id", ondelete="SET NULL"))
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None]
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    archived_at: Mapped[datetime] = mapped_column(default=utc_now)
    # Derived (listserv reindex could rebuild them): the thread's first post, and the parent.
    thread_id: Mapped[int | None] = mapped_column(Integer, index=True)
    parent_id: Mapped[int | None] = mapped_column(Integer)
    subject_key: Mapped[str] = mapped_column(String(300), default="", index=True)  # threading fallback
    # The copy members receive (decorated), composed once per post; deliveries reference it.
    delivered_raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Set by ``listserv erase``: the row stays in its thread with no bytes, sender or subject, and the
    # thread shows "message removed on request" in its place (migration 0009).
    erased_at: Mapped[datetime | None]
    # Derived at archive time by ``archive.display`` (migration 0016), rebuilt by ``listserv reindex``,
    # emptied or rebuilt by erasure with ``raw``: what the pages show (JSON), and the search snippet's text.
    display: Mapped[str | None] = mapped_column(Text, deferred=True)
    search_text: Mapped[str | None] = mapped_column(Text, deferred=True)


class Tombstone(Base):
    """Proof of an erasure that keeps nothing erased: a keyed hash (HMAC, site secret) of the Message-ID
    (``kind`` message) or address (``kind`` member), the list, when, who asked, who did it, why."""

    __tablename__ = "tombstone"
    __table_args__ = (UniqueConstraint("kind", "key_hash", "list_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # message | member
    key_hash: Mapped[str] = mapped_column(String(64))
    list_name: Mapped[str] = mapped_column(String(100))  # "" for a member: they are erased everywhere
    erased_at: Mapped[datetime]
    requested_by: Mapped[str] = mapped_column(String(320))
    executed_by: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """An approved post's SMTP transaction (up to ``delivery.batch_size`` recipients): claimed (``sending``),
    sent, then ``sent``. Recipients a relay defers (4xx) move to a new row that waits its turn."""

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    # What is sent: an archived post's decorated copy, or a digest.
    post_id: Mapped[int | None] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"), index=True)
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("sent_digest.id", ondelete="CASCADE"), index=True
    )
    list_name: Mapped[str] = mapped_column(String(100))
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    # One transaction per recipient, each with its token in the copy and the VERP envelope
    # (``outgoing/personal.py``); False: one transaction for the whole batch.
    personal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    state: Mapped[str] = mapped_column(String(8), default="queued", index=True)  # queued|sending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claim (store/claims.py)


class Confirmation(Base):
    """A single-use, expiring token a member must send back (unsubscribing). Only its hash is kept."""

    __tablename__ = "confirmation"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    list_name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(16))  # unsubscribe
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Topic(Base):
    """A week's discussion topic for a room: a title and body per language."""

    __tablename__ = "topic"
    __table_args__ = (UniqueConstraint("room", "week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    room: Mapped[str] = mapped_column(String(64))
    week: Mapped[str] = mapped_column(String(8))  # ISO week, "2026-W48"
    titles: Mapped[dict[str, str]] = mapped_column(JSON)
    bodies: Mapped[dict[str, str]] = mapped_column(JSON)
    proposer: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    flagged_at: Mapped[datetime | None]  # moderators told of missing translations


class SentPrompt(Base):
    """Idempotence key of the weekly prompt: one per topic and list, ever."""

    __tablename__ = "sent_prompt"

    topic_id: Mapped[int] = mapped_column(ForeignKey("topic.id", ondelete="CASCADE"), primary_key=True)
    list_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998))
    sent_at: Mapped[datetime] = mapped_column(default=utc_now)


class SentDigest(Base):
    """One digest issue of a list (period, format, period key): built once, delivered to every member
    in that mode. The unique key makes a rerun, a restart or a second process send nothing twice."""

    __tablename__ = "sent_digest"
    __table_args__ = (UniqueConstraint("list_name", "period", "format", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_name: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(8))  # daily | weekly
    format: Mapped[str] = mapped_column(String(8))  # mime | plain
    key: Mapped[str] = mapped_column(String(16))  # "2026-11-23" or "2026-W48"
    covered_from: Mapped[datetime]
    covered_until: Mapped[datetime]
    post_count: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    sent_at: Mapped[datetime] = mapped_column(default=utc_now)


class Lease(Base):
    """Which serve process runs the scheduled jobs; renewed while it lives, taken over when expired."""

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


class JobRun(Base):
    """Idempotence key of a scheduled job that has no table of its own (weekly summary, skip notices)."""

    __tablename__ = "job_run"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    done_at: Mapped[datetime] = mapped_column(default=utc_now)


class Guest(Base):
    """An outside person invited to one discussion (a thread of one list), for a time. Asked for by a
    member (``requested``, with the held item moderators decide) or by a moderator; ``active`` from the
    approval until ``until``; then ``expired``, or ``revoked`` earlier; ``rejected`` if refused. The
    person is a ``member`` row (``role`` guest unless they were already a member elsewhere)."""

    __tablename__ = "guest"
    __table_args__ = (UniqueConstraint("member_id", "list_name", "thread_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"), index=True)
    list_name: Mapped[str] = mapped_column(String(100))
    thread_id: Mapped[int] = mapped_column(Integer)  # the archived thread's first post (post.thread_id)
    thread_message_id: Mapped[str] = mapped_column(String(998))
    state: Mapped[str] = mapped_column(String(12), default="requested", index=True)
    until: Mapped[datetime]
    invited_by: Mapped[str] = mapped_column(String(320), default="")  # an address, or operator:<login>
    held_id: Mapped[int | None] = mapped_column(ForeignKey("held.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    approved_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]  # revoked or expired


event.listen(Subscription, "before_delete", record_end)  # see store/history.py
