"""``listserv erase --message``: one message out of every store, a tombstone in its place.

Where a message's content lives, and what happens to each copy (in one transaction):

- ``post`` (raw, decorated copy, subject, sender): the row stays in its thread as a stand-in with no
  bytes (``erased_at`` set, its Message-ID replaced by the tombstone's hash); the search index forgets it
  first (``archive.index.remove_posts`` needs the bytes); its ``delivery`` rows go.
- ``received``: its own row(s) and their routes, held rows and reply codes; every stored inbound mail that
  is not a post and carries it (a moderator's reply quoting the notice, a bounce of a copy).
- ``outbox``: every notice that carries it (the moderators' notice with the original attached, the
  sender's notice, reminders and summaries naming its subject), sent or not.
- ``sent_digest``: each issue that carried it is rebuilt without it (``digests.send.rebuild_issue``).
- ``audit``: rows keep their decision, lose the Message-ID; free text that quotes it is replaced.
- the Maildir under ``data_dir/outbox``: every file holding one of the erased byte strings goes.

Then the cleanup that makes "gone" true on disk (``vacuum``): SQLite writes with ``secure_delete`` (freed
bytes are zeroed), merges the full-text index (a deleted FTS5 row lives on in old segments until a
merge) and ends with a ``wal_checkpoint(TRUNCATE)``; PostgreSQL vacuums the tables touched.
Replies that quote the message are listed (``quoting_replies``), never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, delete, or_, select, text, update
from sqlalchemy.orm import Session

from digests.send import rebuild_issue
from listserv.admin.erasure_journal import journal_path, keep_apart
from listserv.admin.erasure_text import Fingerprint, fingerprint, mentions, words
from listserv.archive import index
from listserv.config import Settings
from listserv.mail.addresses import Kind
from listserv.mail.message import parse_post
from listserv.mail.subjects import subject_key
from listserv.moderation.audit import AuditEntry, record
from listserv.moderation.codes import derive_code
from listserv.outgoing.publish import Publisher
from listserv.outgoing.transport import maildir_files
from listserv.store.keys import key_hash
from listserv.store.models import (
    ArchivedPost,
    Audit,
    Delivery,
    Held,
    Outbox,
    Received,
    Route,
    SentDigest,
    Tombstone,
)

log = logging.getLogger(__name__)
NOT_POSTS = [kind.value for kind in Kind if kind not in (Kind.POST, Kind.PROPOSE)]
TOUCHED = ("post", "post_search", "received", "route", "held", "outbox", "delivery", "sent_digest", "audit")
ERASED_TEXT = "(erased)"


class ErasureError(Exception):
    """Nothing was changed: unknown, or already erased."""


@dataclass(frozen=True)
class Request:
    reason: str
    requested_by: str
    executed_by: str
    channel: str = "cli"


@dataclass
class Erased:
    """What one erasure removed, for the operator and the audit row."""

    posts: int = 0
    received: int = 0
    held: int = 0
    outbox: int = 0
    deliveries: int = 0
    digests: int = 0
    files: int = 0
    tombstones: list[int] = field(default_factory=list)
    raws: set[bytes] = field(default_factory=set)  # every erased byte string, to find Maildir copies
    names: set[str] = field(default_factory=set)  # an erased person's names, to find their traces

    def summary(self) -> str:
        return (
            f"{self.posts} archived, {self.received} received, {self.held} held, {self.outbox} notices, "
            f"{self.deliveries} deliveries, {self.digests} digests rebuilt, {self.files} Maildir files"
        )


@dataclass(frozen=True)
class Quote:
    list_name: str
    message_id: str
    sender: str
    subject: str


class Eraser:
    def __init__(
        self, settings: Settings, secret: bytes, publisher: Publisher, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.secret = secret
        self.publisher = publisher
        self.clock = clock

    def erase_message(
        self, engine: Engine, message_id: str, request: Request, list_name: str | None = None
    ) -> Erased:
        erased = Erased()
        with Session(engine) as session, session.begin():
            secure(session)
            self.erase_in(session, message_id, request, list_name, erased)
        erased.files = remove_maildir_copies(self.maildir(), erased.raws)
        vacuum(engine)
        return erased

    def maildir(self) -> Path:
        return self.settings.site.data_dir / "outbox"

    def erase_in(
        self, session: Session, message_id: str, request: Request, list_name: str | None, erased: Erased
    ) -> None:
        """The database part, in the caller's transaction (``--member --with-posts`` erases many)."""
        wanted = normalise_id(message_id)
        posts = self._posts(session, wanted, list_name)
        helds = self._helds(session, wanted, list_name)
        lists = sorted({post.list_name for post in posts} | {held.list_name for held in helds})
        received = session.scalars(select(Received).where(Received.message_id == wanted)).all()
        if not lists and list_name and any(row.state == "new" for row in received):
            # Stored and not yet seen by the worker (a snapshot taken before it ran, being restored):
            # erased now, or the worker would hold or publish it again.
            lists = [list_name]
        if not lists:
            self._refuse(session, wanted, list_name)
        source = posts[0].raw if posts else received[0].raw if received else b""
        subject = posts[0].subject_key if posts else subject_key(helds[0].subject, "") if helds else ""
        codes = tuple(derive_code(self.secret, held.code_nonce) for held in helds)
        senders = {held.sender.lower() for held in helds} | {post.sender.lower() for post in posts}
        print_ = fingerprint(source, wanted, subject, codes)
        now = self.clock()
        digests = self._digests_with(session, posts, wanted)
        self._forget_posts(session, posts, erased, now)
        self._forget_mail(
            session,
            received,
            helds,
            (print_, senders),
            erased,
            keep_received=self._kept_elsewhere(session, wanted, lists),
        )
        self._scrub_audit(session, wanted, print_)
        for digest in digests:
            erased.raws.add(digest.raw or b"")
            rebuild_issue(session, self.settings, self.publisher, digest)
            erased.digests += 1
        for name in lists:
            erased.tombstones.append(self._tombstone(session, "message", wanted, name, request, now))
            entry = AuditEntry("erase", "erased", name, request.executed_by, request.channel)
            record(session, _with_detail(entry, f"tombstone #{erased.tombstones[-1]}: {request.reason}"), now)
        log.info(  # no Message-ID here: the tombstone keeps only its hash, the log must not keep more
            "erased a message on %s (tombstones %s): %s",
            ", ".join(lists),
            erased.tombstones,
            erased.summary(),
        )

    def _posts(self, session: Session, wanted: str, list_name: str | None) -> list[ArchivedPost]:
        query = select(ArchivedPost).where(ArchivedPost.message_id == wanted)
        if list_name:
            query = query.where(ArchivedPost.list_name == list_name)
        return list(session.scalars(query))

    def _helds(self, session: Session, wanted: str, list_name: str | None) -> list[Held]:
        query = select(Held).where(Held.message_id == wanted, Held.kind.in_(["post", "proposal"]))
        if list_name:
            query = query.where(Held.list_name == list_name)
        return list(session.scalars(query))

    def _refuse(self, session: Session, wanted: str, list_name: str | None) -> None:
        hashed = key_hash(self.secret, "message", wanted)
        query = select(Tombstone).where(Tombstone.kind == "message", Tombstone.key_hash == hashed)
        if list_name:
            query = query.where(Tombstone.list_name == list_name)
        done = session.scalars(query).first()
        if done is not None:
            raise ErasureError(
                f"{wanted} was already erased from {done.list_name} on "
                f"{done.erased_at.isoformat(timespec='minutes')} (tombstone #{done.id}); nothing changed"
            )
        where = f" on {list_name}" if list_name else ""
        raise ErasureError(f"no message {wanted}{where} in the archive or the queue; nothing changed")

    def _kept_elsewhere(self, session: Session, wanted: str, lists: list[str]) -> bool:
        """With --list, another list's copy still needs the received bytes."""
        others = select(ArchivedPost.id).where(
            ArchivedPost.message_id == wanted, ArchivedPost.list_name.not_in(lists)
        )
        return session.scalar(others.limit(1)) is not None

    def _digests_with(self, session: Session, posts: list[ArchivedPost], wanted: str) -> list[SentDigest]:
        found: list[SentDigest] = []
        for post in posts:
            rows = session.scalars(
                select(SentDigest).where(
                    SentDigest.list_name == post.list_name,
                    SentDigest.covered_from <= post.archived_at,
                    SentDigest.covered_until > post.archived_at,
                    SentDigest.raw.is_not(None),
                )
            )
            found += [row for row in rows if row.raw and wanted.encode() in row.raw]
        return found

    def _forget_posts(
        self, session: Session, posts: list[ArchivedPost], erased: Erased, now: datetime
    ) -> None:
        if not posts:
            return
        index.remove_posts(session, [post.id for post in posts])
        session.execute(delete(Delivery).where(Delivery.post_id.in_([post.id for post in posts])))
        for post in posts:
            erased.raws.update(raw for raw in (post.raw, post.delivered_raw) if raw)
            stand_in(post, "erased:" + key_hash(self.secret, "message", post.message_id)[:32], now)
            erased.posts += 1
        session.flush()

    def _forget_mail(
        self,
        session: Session,
        received: Iterable[Received],
        helds: list[Held],
        evidence: tuple[Fingerprint, set[str]],
        erased: Erased,
        keep_received: bool,
    ) -> None:
        print_, senders = evidence
        for held in helds:
            session.delete(held)
            erased.held += 1
        if not keep_received:
            for row in received:
                erased.raws.add(row.raw)
                session.delete(row)
                erased.received += 1
        session.flush()
        for row in self._inbound_not_posts(session):
            if mentions(row.raw, print_):
                drop_received(session, row, erased)
        for outbox in session.scalars(select(Outbox)):
            to_sender = any(recipient.lower() in senders for recipient in outbox.recipients)
            if mentions(outbox.raw, print_, to_sender):
                erased.raws.add(outbox.raw)
                session.delete(outbox)
                erased.outbox += 1
        session.flush()

    def _inbound_not_posts(self, session: Session) -> list[Received]:
        """Stored mail routed to -moderate, -bounces, -request, -owner…: posts are others' words."""
        routed = select(Route.received_id).where(Route.kind.in_(NOT_POSTS))
        return list(session.scalars(select(Received).where(Received.id.in_(routed))))

    def _scrub_audit(self, session: Session, wanted: str, print_: Fingerprint) -> None:
        for row in session.scalars(select(Audit).where(or_(Audit.message_id == wanted, Audit.detail != ""))):
            if row.message_id == wanted:
                row.message_id = None
            said = words(row.detail)
            if said and (print_.is_quoted_in(said) or print_.subject_in(said)):
                row.detail = ERASED_TEXT

    def _tombstone(
        self, session: Session, kind: str, value: str, list_name: str, request: Request, now: datetime
    ) -> int:
        row = Tombstone(
            kind=kind,
            key_hash=key_hash(self.secret, kind, value),
            list_name=list_name,
            erased_at=now,
            requested_by=request.requested_by,
            executed_by=request.executed_by,
            reason=request.reason,
        )
        session.add(row)
        session.flush()
        keep_apart(session, row, journal_path(self.settings.site.data_dir))
        return row.id

    def quoting_replies(self, engine: Engine, message_id: str, list_name: str | None = None) -> list[Quote]:
        """Posts of the message's threads that name it as their parent or quote its words."""
        wanted = normalise_id(message_id)
        with Session(engine) as session:
            posts = self._posts(session, wanted, list_name)
            found = []
            for post in posts:
                print_ = fingerprint(post.raw, "", post.subject_key)
                thread = session.scalars(
                    select(ArchivedPost).where(
                        ArchivedPost.list_name == post.list_name,
                        ArchivedPost.thread_id == (post.thread_id or post.id),
                        ArchivedPost.id != post.id,
                        ArchivedPost.erased_at.is_(None),
                    )
                )
                for reply in thread:
                    if print_.is_quoted_in(words(parse_post(reply.raw).text)):
                        found.append(Quote(reply.list_name, reply.message_id, reply.sender, reply.subject))
            return found


def drop_received(session: Session, row: Received, erased: Erased) -> None:
    """A processed mail goes; one still being processed (the chief's reply that decides the erasure,
    in this very transaction) or waiting its turn loses its bytes and sender, and is handled empty."""
    erased.raws.add(row.raw)
    erased.received += 1
    if row.state == "new":
        row.raw, row.mail_from = b"", ""
        session.execute(update(Route).where(Route.received_id == row.id).values(subject="", sender=""))
    else:
        session.delete(row)


def normalise_id(message_id: str) -> str:
    bare = message_id.strip().strip("<>")
    return f"<{bare}>"


def stand_in(post: ArchivedPost, hashed_id: str, now: datetime) -> None:
    """What stays in the thread: its place (thread, parent, dates), nothing of its content."""
    post.message_id = hashed_id
    post.raw = b""
    post.delivered_raw = None
    post.display = post.search_text = None  # what the pages showed of it
    post.sender = ""
    post.subject = ""
    post.subject_key = ""
    post.received_id = None
    post.erased_at = now


def _with_detail(entry: AuditEntry, detail: str) -> AuditEntry:
    return AuditEntry(entry.action, entry.result, entry.list_name, entry.actor, entry.channel, detail=detail)


def secure(session: Session) -> None:
    """SQLite zeroes what this transaction's deletes and updates free (``secure_delete``)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")


def remove_maildir_copies(maildir: Path, raws: set[bytes]) -> int:
    """Files of the outgoing Maildir that end with an erased byte string (our envelope lines first)."""
    if not maildir.is_dir():
        return 0
    wanted = [raw for raw in raws if raw]
    removed = 0
    for path, raw_file in maildir_files(maildir):
        if any(raw_file.endswith(raw) for raw in wanted):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def vacuum(engine: Engine) -> None:
    """After the transaction: no erased byte left in free pages, old index segments or the WAL."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA secure_delete=ON")
            connection.execute(text("INSERT INTO post_search_text (post_search_text) VALUES ('optimize')"))
            connection.commit()
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
        finally:
            raw.close()
        if busy:
            log.warning(
                "the WAL is in use by another process: erased bytes stay in it until the next checkpoint"
            )
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in TOUCHED:
            connection.execute(text(f"VACUUM {table}"))
