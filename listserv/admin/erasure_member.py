"""``listserv erase --member``: a person out of every store; their posts erased too, or kept anonymous.

- the ``member`` row (address, name, country, password) and with it subscriptions (bounce scores), moderator
  seats; ``confirmation`` tokens; items still waiting for a moderator (their reply codes), with the mail
  that brought them; every stored inbound mail that is not a post and names them (requests, bounces);
  every notice to, from or about them; their address in ``delivery`` rows still to send.
- their invitations as a guest of a discussion (``guest`` rows); who invited a guest keeps a pseudonym.
- ``audit``, decisions and topics keep a pseudonym (a keyed hash) instead of the address.
- their posts: with ``--with-posts`` each is erased as ``erase --message`` does (a tombstone each);
  without, the address and name in the stored bytes' address fields become "former participant (their
  member state)" in the list's language (``templates/mail/<lang>/erasure.yaml``), in the archive, the
  received copy, the decorated copy, the search index and the digests that carried them. Their words in
  the bodies are kept, as are others' replies naming them.
- login failure counters are in memory only (``web/limits.py``): a restart forgets them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import Session

from digests.send import rebuild_issue
from listserv.admin.erasure import (
    NOT_POSTS,
    Erased,
    Eraser,
    ErasureError,
    Request,
    drop_received,
    remove_maildir_copies,
    secure,
    vacuum,
)
from listserv.admin.erasure_journal import journal_path, keep_apart
from listserv.admin.erasure_text import FORMER_ADDRESS, names_person, pseudonym, replace_person
from listserv.archive import derived, index
from listserv.mail.templates import FALLBACK
from listserv.membership.owner import NOMINATION, nomination_of
from listserv.moderation.audit import AuditEntry, record
from listserv.moderation.queue import ERASURE, Consequence
from listserv.outgoing.notices import Notifier
from listserv.outgoing.transport import maildir_files
from listserv.store import countries
from listserv.store.db import after_outer_commit
from listserv.store.keys import key_hash
from listserv.store.models import (
    ArchivedPost,
    Audit,
    Confirmation,
    Delivery,
    Guest,
    Held,
    Member,
    Outbox,
    Received,
    Route,
    SentDigest,
    Tombstone,
    Topic,
)


def erase_member(eraser: Eraser, engine: Engine, address: str, request: Request, with_posts: bool) -> Erased:
    erased = Erased()
    with Session(engine) as session, session.begin():
        secure(session)
        Person(eraser, session, address.strip(), erased).erase(request, with_posts)
    erased.files = remove_maildir_copies(eraser.maildir(), erased.raws)
    erased.files += remove_person_files(eraser.maildir(), address, erased.names)
    vacuum(engine)
    return erased


class Person:
    def __init__(self, eraser: Eraser, session: Session, address: str, erased: Erased) -> None:
        self.eraser, self.session, self.erased = eraser, session, erased
        self.address, self.key = address, address.lower()
        self.member = session.scalars(select(Member).where(Member.email_key == self.key)).first()
        self.name = self.member.name if self.member else ""
        self.country = self.member.country if self.member else ""
        self.alias = pseudonym(eraser.secret, self.key)
        self.now = eraser.clock()

    def erase(self, request: Request, with_posts: bool) -> None:
        posts = self._posts()
        if self.member is None and not posts and not self._held() and not self._nominations():
            self._refuse()
        erased = self.erased
        if request.requested_by.lower() == self.key:  # they asked: their tombstones name a pseudonym
            request = replace(request, requested_by=self.alias)
        erased.names.update(name for name in [self.name, *self._held_names()] if name.strip())
        if with_posts:
            for message_id in dict.fromkeys(post.message_id for post in posts):
                self.eraser.erase_in(self.session, message_id, request, None, erased)
        else:
            self._anonymise(posts)
        self._forget_held()
        self._forget_mail()
        self._pseudonymise()
        if self.member is not None:
            # Their invitations as a guest go with them (the foreign key cascades too; said here).
            self.session.execute(delete(Guest).where(Guest.member_id == self.member.id))
            self.session.delete(self.member)
        self.session.execute(delete(Confirmation).where(func.lower(Confirmation.address) == self.key))
        row = Tombstone(
            kind="member",
            key_hash=key_hash(self.eraser.secret, "member", self.key),
            list_name="",
            erased_at=self.now,
            requested_by=request.requested_by,
            executed_by=request.executed_by,
            reason=request.reason,
        )
        self.session.add(row)
        self.session.flush()
        keep_apart(self.session, row, journal_path(self.eraser.settings.site.data_dir))
        erased.tombstones.append(row.id)
        detail = f"tombstone #{row.id} ({self.alias}): {request.reason}"
        record(
            self.session,
            AuditEntry("erase", "erased", None, request.executed_by, request.channel, detail=detail),
            self.now,
        )

    def _refuse(self) -> None:
        hashed = key_hash(self.eraser.secret, "member", self.key)
        done = self.session.scalars(
            select(Tombstone).where(Tombstone.kind == "member", Tombstone.key_hash == hashed)
        ).first()
        if done is not None:
            raise ErasureError(
                f"{self.address} was already erased on {done.erased_at.isoformat(timespec='minutes')} "
                f"(tombstone #{done.id}); nothing changed"
            )
        raise ErasureError(f"{self.address} is not a member and left nothing here; nothing changed")

    def _posts(self) -> list[ArchivedPost]:
        query = select(ArchivedPost).where(
            func.lower(ArchivedPost.sender) == self.key, ArchivedPost.erased_at.is_(None)
        )
        return list(self.session.scalars(query.order_by(ArchivedPost.id)))

    def _held(self) -> list[Held]:
        return list(self.session.scalars(select(Held).where(func.lower(Held.sender) == self.key)))

    def _nominations(self) -> list[Held]:
        """A focal point's nomination or withdrawal naming them: it holds their address (and the mail
        that carried it), though its sender is the focal point."""
        found = self.session.scalars(select(Held).where(Held.kind == NOMINATION))
        return [held for held in found if str(nomination_of(held).get("nominee", "")).lower() == self.key]

    def _held_names(self) -> list[str]:
        return [held.sender_name for held in self._held()]

    def _anonymise(self, posts: list[ArchivedPost]) -> None:
        """Their posts stay, "former participant" (``_shown``) in the address fields of every stored copy."""
        if not posts:
            return
        digests = self._digests_with(posts)
        index.remove_posts(self.session, [post.id for post in posts])
        addr = FORMER_ADDRESS
        for post in posts:
            self.erased.raws.update(raw for raw in (post.raw, post.delivered_raw) if raw)
            shown = self._shown(post.list_name)
            post.raw = self._rewrite(post.raw, shown)
            post.delivered_raw = self._rewrite(post.delivered_raw, shown) if post.delivered_raw else None
            post.sender = addr
            received = self.session.get(Received, post.received_id) if post.received_id else None
            if received is not None:
                self.erased.raws.add(received.raw)
                received.raw, received.mail_from = self._rewrite(received.raw, shown), addr
            derived.refresh(post)  # the pages' text shows "former participant" too
            self.session.flush()
            index.index_post(self.session, post, index.list_language(self.session, post.list_name))
        for held in self._held():
            held.sender, held.sender_name = addr, self._shown(held.list_name)
        self.session.execute(update(Route).where(func.lower(Route.sender) == self.key).values(sender=addr))
        for digest in digests:
            self.erased.raws.add(digest.raw or b"")
            rebuild_issue(self.session, self.eraser.settings, self.eraser.publisher, digest)
            self.erased.digests += 1
        self.erased.posts += len(posts)

    def _rewrite(self, raw: bytes, shown: str) -> bytes:
        edited = replace_person(raw, self.address, self.name, shown)
        for name in self.erased.names - {self.name}:
            edited = replace_person(edited, self.address, name, shown)
        return edited

    def _shown(self, list_name: str) -> str:
        """The name their posts now carry, in the list's language: "ancien participant (Chili)"."""
        found = self.eraser.settings.lists.get(list_name)
        language = found.language if found else FALLBACK
        if not self.country:
            return self._words(language, "former")
        country = countries.name(self.country, language)
        return self._words(language, "former_of").format(country=country)

    def _words(self, language: str, key: str) -> str:
        templates = self.eraser.publisher.templates
        found = templates.catalogue(language, "erasure.yaml").get(key)
        return str(found or templates.catalogue(FALLBACK, "erasure.yaml")[key])

    def _digests_with(self, posts: list[ArchivedPost]) -> list[SentDigest]:
        found: dict[int, SentDigest] = {}
        for post in posts:
            rows = self.session.scalars(
                select(SentDigest).where(
                    SentDigest.list_name == post.list_name,
                    SentDigest.covered_from <= post.archived_at,
                    SentDigest.covered_until > post.archived_at,
                    SentDigest.raw.is_not(None),
                )
            )
            found.update({row.id: row for row in rows})
        return list(found.values())

    def _forget_held(self) -> None:
        """What still waits for a moderator cannot be decided for a person who is gone. Their erasure
        request itself stays, anonymous, for the decision being made on it and its audit."""
        for held in self._held() + self._nominations():
            if held.kind == ERASURE:
                received = self.session.get(Received, held.received_id) if held.received_id else None
                held.sender, held.sender_name, held.subject = self.alias, "", ""
                held.message_id, held.received_id, held.route_id = self.alias, None, None
                self.session.flush()
                if received is not None:
                    drop_received(self.session, received, self.erased)
                continue
            if held.state == "approved" and held.kind in ("post", "proposal"):
                continue
            received = self.session.get(Received, held.received_id) if held.received_id else None
            self.session.delete(held)
            self.erased.held += 1
            if received is not None:
                self.erased.raws.add(received.raw)
                self.session.delete(received)
                self.erased.received += 1
        self.session.flush()

    def _forget_mail(self) -> None:
        names = self.erased.names
        routed = select(Route.received_id).where(Route.kind.in_(NOT_POSTS))
        inbound = self.session.scalars(
            select(Received).where(or_(Received.id.in_(routed), func.lower(Received.mail_from) == self.key))
        )
        for row in inbound:
            posted = self.session.scalar(select(ArchivedPost.id).where(ArchivedPost.received_id == row.id))
            if posted is None and names_person(row.raw, self.key, names):
                drop_received(self.session, row, self.erased)
        for outbox in self.session.scalars(select(Outbox)):
            mine = self.key in (r.lower() for r in [*outbox.recipients, outbox.mail_from])
            if mine or names_person(outbox.raw, self.key, names):
                self.erased.raws.add(outbox.raw)
                self.session.delete(outbox)
                self.erased.outbox += 1
        for delivery in self.session.scalars(select(Delivery)):
            kept = [r for r in delivery.recipients if r.lower() != self.key]
            if len(kept) != len(delivery.recipients):
                self.erased.deliveries += 1
                if kept:
                    delivery.recipients = kept
                else:
                    self.session.delete(delivery)
        self.session.flush()

    def _pseudonymise(self) -> None:
        for row in self.session.scalars(select(Audit)):
            if row.actor.lower() == self.key:
                row.actor = self.alias
            row.detail = replace_text(row.detail, [self.address, *self.erased.names], self.alias)
        for held in self.session.scalars(select(Held).where(func.lower(Held.decided_by) == self.key)):
            held.decided_by = self.alias
        for topic in self.session.scalars(select(Topic).where(func.lower(Topic.proposer) == self.key)):
            topic.proposer = self.alias
        self.session.execute(
            update(Guest).where(func.lower(Guest.invited_by) == self.key).values(invited_by=self.alias)
        )


def replace_text(value: str, needles: Iterable[str], replacement: str) -> str:
    lowered = value.lower()
    for needle in needles:
        wanted = needle.lower()
        while wanted and wanted in lowered:
            at = lowered.index(wanted)
            value = value[:at] + replacement + value[at + len(wanted) :]
            lowered = value.lower()
    return value


def remove_person_files(
    folder: Path, address: str, names: set[str], keep: frozenset[bytes] = frozenset()
) -> int:
    """Maildir files to, from or about them: copies they received, notices, digests before rebuilding;
    not those ending with a ``keep`` string (the notice telling them, if already sent)."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path, raw in maildir_files(folder):
        if names_person(raw, address.lower(), names) and not any(raw.endswith(kept) for kept in keep):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def erase_on_request(eraser: Eraser, notifier: Notifier) -> dict[str, Consequence]:
    """What a chief's decision on an ``erase my data`` request leads to: approve erases the person in the
    decision's transaction (their posts stay, as "former participant") and tells them; the Maildir and
    the on-disk cleanup follow the commit. Reject tells them it was not done, and why."""

    def approve(session: Session, held: Held, reason: str) -> None:
        address, list_name = held.sender, held.list_name
        request = Request(reason or "erase my data", address, held.decided_by or "chief", "email")
        erased = Erased()
        secure(session)
        Person(eraser, session, address, erased).erase(request, with_posts=False)
        done = {"erased": True, "reason": "", "sender": address}
        notice = frozenset(notifier.send(session, "member_erasure_done.txt", list_name, [address], done))
        engine = session.get_bind()

        def after_commit(_: Session) -> None:
            # The outbox may have sent the notice by now: its Maildir copy is the one trace kept.
            remove_maildir_copies(eraser.maildir(), erased.raws)
            remove_person_files(eraser.maildir(), address, erased.names, keep=notice)
            if isinstance(engine, Engine):
                vacuum(engine)

        after_outer_commit(session, after_commit)

    def refuse(session: Session, held: Held, reason: str) -> None:
        done = {"erased": False, "reason": reason, "sender": held.sender}
        notifier.send(session, "member_erasure_done.txt", held.list_name, [held.sender], done)

    return {"approve": approve, "reject": refuse}
