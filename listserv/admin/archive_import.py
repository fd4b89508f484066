"""``listserv import mbox FILE… --list L``: an old archive (Mailman, HyperKitty, Google Groups) into ours.

Each message is archived as an approval would archive it — raw bytes kept, threaded, indexed for search —
but nothing is planned for delivery and no notice is queued: importing tells nobody anything. Idempotent
by Message-ID (a message without one gets a deterministic id from its bytes, written into it), so a second
run adds nothing. What a run knows about the list (ids archived, threads by id and by subject) is loaded
once and kept in memory, and rows are committed ``COMMIT_EVERY`` at a time: 100,000 messages stay a
matter of minutes, not of 100,000 round trips for lookups.

A message whose Date is missing or unreadable is dated from its newest ``Received:`` header, else its mbox
``From `` line, else the message before it in the file (counted as repaired). A message erased here once
(its Message-ID or its sender has a tombstone) is skipped: an import never brings erased content back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.archive import index
from listserv.config import Settings
from listserv.mail import mbox
from listserv.mail.message import Post, find_message_id, parse_post
from listserv.mail.subjects import subject_key
from listserv.store.keys import key_hash
from listserv.store.models import ArchivedPost, Tombstone

log = logging.getLogger(__name__)
BATCH = 200  # posts per INSERT
COMMIT_EVERY = 1000  # messages read per transaction
PROGRESS_EVERY = 100
SUBJECT_THREAD_DAYS = 30  # as archive/posts.py: a reply without headers joins a recent same-subject thread


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    repaired: int = 0  # dates taken from Received, the From_ line or file order
    skipped: Counter[str] = field(default_factory=Counter)  # reason → count
    not_mbox: list[str] = field(default_factory=list)  # files with no "From " separator at all

    @property
    def seen(self) -> int:
        return self.imported + self.duplicates + sum(self.skipped.values())


@dataclass
class _Thread:
    """Where a post sits: its id and its thread's, known once its batch is inserted (``parent`` until
    then: a reply earlier in the same batch)."""

    at: datetime
    post_id: int = 0
    thread_id: int = 0
    parent: _Thread | None = None


@dataclass
class _New:
    post: ArchivedPost
    parsed: Post
    thread: _Thread


Progress = Callable[[int, ImportSummary], None]  # (bytes of the files read so far, counts so far)


@dataclass(eq=False)
class ArchiveImport:
    engine: Engine
    settings: Settings
    secret: bytes
    list_name: str
    prefix: str
    by_id: dict[str, _Thread] = field(default_factory=dict)
    by_subject: dict[str, _Thread] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)

    def run(self, paths: Iterable[Path], progress: Progress = lambda *_: None) -> ImportSummary:
        summary = ImportSummary()
        self._load()
        language = self.settings.lists[self.list_name].language
        done_bytes = 0
        for path in paths:
            with path.open("rb") as handle:
                stream = mbox.decompressed(handle)
                read = (lambda offset, opened: lambda: offset + opened.tell())(done_bytes, handle)
                if not self._import_file(stream, language, summary, read, progress):
                    summary.not_mbox.append(str(path))
            done_bytes += path.stat().st_size
            progress(done_bytes, summary)
        return summary

    def _load(self) -> None:
        """What the list holds already: its Message-IDs with their threads, the newest post of each
        subject, and the tombstones of erased messages and people."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(
                    ArchivedPost.id,
                    ArchivedPost.message_id,
                    ArchivedPost.thread_id,
                    ArchivedPost.subject_key,
                    ArchivedPost.archived_at,
                )
                .where(ArchivedPost.list_name == self.list_name)
                .order_by(ArchivedPost.id)
            )
            for post_id, message_id, thread_id, key, at in rows:
                thread = _Thread(at, post_id, thread_id or post_id)
                self.by_id[message_id] = thread
                if key:
                    self.by_subject[key] = thread
            self.erased = set(
                session.scalars(
                    select(Tombstone.key_hash).where(Tombstone.list_name.in_([self.list_name, ""]))
                )
            )

    def _import_file(
        self,
        stream: BinaryIO,
        language: str,
        summary: ImportSummary,
        position: Callable[[], int],
        progress: Progress,
    ) -> int:
        """Returns how many messages the file held."""
        previous_date: datetime | None = None
        number = 0
        batch: list[_New] = []
        with Session(self.engine, expire_on_commit=False) as session:
            session.begin()
            for number, message in enumerate(mbox.read_mbox(stream), start=1):
                new = self._read_one(message, summary, previous_date)
                if new is not None:
                    batch.append(new)
                    previous_date = new.thread.at
                if len(batch) >= BATCH:
                    self._store(session, batch, language)
                    batch = []
                if number % COMMIT_EVERY == 0:
                    session.commit()
                    session.expunge_all()
                    session.begin()
                if number % PROGRESS_EVERY == 0:
                    progress(position(), summary)
            self._store(session, batch, language)
            session.commit()
        return number

    def _read_one(
        self, message: mbox.MboxMessage, summary: ImportSummary, previous_date: datetime | None
    ) -> _New | None:
        """The post to archive, threaded, or None (counted) for a duplicate or a skipped message."""
        raw = mbox.unhide_addresses(message.raw)
        if not raw.strip() or (mbox.HEADER_END.search(raw) is None and b":" not in raw[:200]):
            summary.skipped["empty or no header"] += 1
            return None
        message_id = find_message_id(raw)
        if not message_id:
            message_id = mbox.synthetic_message_id(message.raw)
            raw = mbox.with_message_id(raw, message_id)
        if message_id in self.by_id:
            summary.duplicates += 1
            return None
        parsed = parse_post(raw)
        if self._is_erased(message_id, parsed.sender):
            summary.skipped["erased on request"] += 1
            return None
        date = parsed.date
        if date is None:
            date = mbox.received_date(raw) or mbox.envelope_date(message.envelope) or previous_date
            summary.repaired += 1
        date = date or mbox.EPOCH  # a file's first message with nothing to go by: as our export writes it
        post = ArchivedPost(
            list_name=self.list_name,
            message_id=message_id,
            sender=parsed.sender,
            subject=parsed.subject[:2000],
            date=date,
            raw=raw,
            archived_at=date,  # browsed at its own date, not at the import's
            subject_key=subject_key(parsed.subject, self.prefix),
        )
        parent = self._parent(parsed.in_reply_to, parsed.references, parsed.subject, post.subject_key, date)
        thread = _Thread(date, parent=parent)
        self.by_id[message_id] = thread
        if post.subject_key:
            self.by_subject[post.subject_key] = thread
        summary.imported += 1
        return _New(post, parsed, thread)

    def _store(self, session: Session, batch: list[_New], language: str) -> None:
        """One INSERT for the batch (ids returned), then threads resolved in file order (a reply's
        parent is earlier in the file, so already resolved), then the index: a handful of statements
        per batch instead of several per message."""
        session.add_all([new.post for new in batch])
        session.flush()
        for new in batch:
            thread, post = new.thread, new.post
            thread.post_id = post.id
            parent = thread.parent
            thread.thread_id = parent.thread_id if parent is not None else post.id
            post.parent_id = parent.post_id if parent is not None else None
            post.thread_id = thread.thread_id
            thread.parent = None  # the chain is resolved: let the parent be collected
        index.index_new_posts(session, [(new.post, new.parsed) for new in batch], language)
        session.flush()

    def _is_erased(self, message_id: str, sender: str) -> bool:
        if not self.erased:
            return False
        return key_hash(self.secret, "message", message_id) in self.erased or (
            bool(sender) and key_hash(self.secret, "member", sender) in self.erased
        )

    def _parent(
        self, in_reply_to: str | None, references: tuple[str, ...], subject: str, key: str, date: datetime
    ) -> _Thread | None:
        named = [in_reply_to, *reversed(references)]
        for message_id in named:
            if message_id and message_id in self.by_id:
                return self.by_id[message_id]
        if any(named) or not key or subject.strip().lower() == key:
            return None
        found = self.by_subject.get(key)  # a reply marker but no headers: the subject's latest thread
        if found is not None and abs(date - found.at) <= timedelta(days=SUBJECT_THREAD_DAYS):
            return found
        return None
