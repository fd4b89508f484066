"""The moderation queue on the web: what waits, per list; one form per held item; the audit trail.

Every decision goes through ``Moderation.decide`` — the same call a moderator's email reply and the
command line make — so the first decision wins whatever the channel, and every attempt is audited. The
outcome is shown once, after the redirect, from the session (post/redirect/get: reloading the page never
decides twice).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from listserv.archive.reading import MessageView, read_message
from listserv.mail.text import has_control_characters
from listserv.membership.guests import GUEST_DAYS
from listserv.moderation.queue import Decision, moderation_queue
from listserv.moderation.vocabulary import ACTIONS, reason_text
from listserv.store.directory import email_key
from listserv.store.models import Audit, Guest, Held, Member, Received, Topic
from listserv.web.access import Viewer
from listserv.web.app import Ctx, Page, Problem
from listserv.weekly.calendar import parse_week
from listserv.weekly.topics import text_for

KINDS = ("post", "proposal", "subscription", "translation", "guest", "nomination")
QUEUE_PAGE = 100  # items read and shown at once; the rest wait their turn, oldest first
AUDIT_PAGE = 200
MAX_REASON = 2000


@dataclass(frozen=True)
class WaitingList:
    name: str
    title: str
    counts: dict[str, int]  # kind → held items
    oldest_at: datetime | None


@dataclass(frozen=True)
class HeldItem:
    held: Held
    sender_name: str
    country: str
    reasons: list[str]  # in the reader's language
    view: MessageView | None  # the held message as a reader sees it (no raw HTML ever)
    expired: bool
    source_title: str = ""  # translation requests: the topic's text to translate
    source_body: str = ""
    source_language: str = ""
    invitation: Invitation | None = None  # a member's request to invite a guest to one discussion
    protocol_accepted_at: datetime | None = None  # shown where the list requires the protocol


@dataclass(frozen=True)
class Invitation:
    """Who would be invited, to which discussion, until when (``membership/guests``)."""

    name: str
    address: str
    list_name: str
    thread_message_id: str
    days: int


def _list_name(ctx: Ctx) -> str:
    name = ctx.param("list")
    if name not in ctx.site.settings.lists:
        raise Problem(404, "no_list", list=name)
    return name


def _moderator_of(ctx: Ctx, list_name: str) -> Viewer:
    viewer = ctx.member()
    if not viewer.can_moderate(list_name):
        raise Problem(403, "not_moderator", list=list_name)
    return viewer


def overview(ctx: Ctx) -> Response:
    viewer = ctx.member()
    if not viewer.is_moderator:
        raise Problem(403, "moderators_only")
    names = sorted(name for name in viewer.moderates if name in ctx.site.settings.lists)
    rows = ctx.db.execute(
        select(Held.list_name, Held.kind, func.count(), func.min(Held.held_at))
        .where(Held.state == "held", Held.list_name.in_(names))
        .group_by(Held.list_name, Held.kind)
    ).all()
    counts: dict[str, dict[str, int]] = {name: {} for name in names}
    oldest: dict[str, datetime] = {}
    for list_name, kind, count, first_at in rows:
        counts[list_name][kind] = count
        oldest[list_name] = min(first_at, oldest.get(list_name, first_at))
    waiting = [
        WaitingList(name, ctx.site.settings.lists[name].title, counts[name], oldest.get(name))
        for name in names
    ]
    return ctx.render(
        "moderation.html", lists=waiting, kinds=KINDS, now=ctx.site.clock(), erased=ctx.query("erased") == "1"
    )


def queue(ctx: Ctx) -> Response:
    list_name = _list_name(ctx)
    _moderator_of(ctx, list_name)
    waiting = moderation_queue(ctx.db, list_name)
    items = _items(ctx, waiting[:QUEUE_PAGE])
    groups = [(kind, [item for item in items if item.held.kind == kind]) for kind in KINDS]
    return ctx.render(
        "moderation_list.html",
        list_name=list_name,
        title=ctx.site.settings.lists[list_name].title,
        groups=[(kind, found) for kind, found in groups if found],
        total=len(waiting),
        shown=len(items),
        flash=_pop_flash(ctx),
    )


def _items(ctx: Ctx, waiting: list[Held]) -> list[HeldItem]:
    now = ctx.site.clock()
    identities = _identities(ctx.db, [held.sender for held in waiting if held.sender])
    raws = _raws(ctx.db, [held.received_id for held in waiting if held.received_id])
    templates = ctx.site.mail_templates
    items = []
    for held in waiting:
        name, country, accepted = (
            identities.get(email_key(held.sender), ("", "", None)) if held.sender else ("", "", None)
        )
        raw = raws.get(held.received_id) if held.received_id else None
        item = HeldItem(
            held=held,
            sender_name=name or held.sender_name,
            country=country,
            reasons=[reason_text(templates, reason, ctx.language) for reason in held.reasons or []],
            view=read_message(raw) if raw is not None else None,
            expired=now > held.expires_at,
            protocol_accepted_at=accepted,
        )
        if held.kind == "translation":
            item = _with_topic(ctx, item)
        elif held.kind == "guest":
            item = _with_invitation(ctx.db, item)
        items.append(item)
    return items


def _identities(db: Session, senders: list[str]) -> dict[str, tuple[str, str, datetime | None]]:
    """Names, countries and protocol acceptance as the directory knows them, in one query per page."""
    keys = {email_key(sender) for sender in senders}
    if not keys:
        return {}
    rows = db.execute(
        select(Member.email_key, Member.name, Member.country, Member.protocol_accepted_at).where(
            Member.email_key.in_(keys)
        )
    )
    return {key: (name, country, accepted) for key, name, country, accepted in rows}


def _raws(db: Session, received_ids: list[int]) -> dict[int, bytes]:
    if not received_ids:
        return {}
    rows = db.execute(select(Received.id, Received.raw).where(Received.id.in_(received_ids)))
    return {received_id: raw for received_id, raw in rows}


def _with_topic(ctx: Ctx, item: HeldItem) -> HeldItem:
    topic = ctx.db.get(Topic, item.held.topic_id) if item.held.topic_id else None
    if topic is None:
        return item
    try:
        title, body, language = text_for(topic, ctx.language)
    except ValueError:
        return item
    return replace(item, source_title=title, source_body=body, source_language=language)


def _with_invitation(db: Session, item: HeldItem) -> HeldItem:
    found = db.execute(
        select(Guest, Member).join(Member, Member.id == Guest.member_id).where(Guest.held_id == item.held.id)
    ).first()
    if found is None:
        return item
    guest, member = found
    invitation = Invitation(member.name, member.email, guest.list_name, guest.thread_message_id, GUEST_DAYS)
    return replace(item, invitation=invitation)


def decide(ctx: Ctx) -> Response:
    list_name = _list_name(ctx)
    viewer = _moderator_of(ctx, list_name)
    held = ctx.db.get(Held, int(ctx.param("held_id")))
    if held is None or held.kind not in KINDS:  # an erasure request is decided by reply code, by a chief
        raise Problem(404, "no_held")
    if not viewer.can_moderate(held.list_name):  # the form's list is checked above, the item's here
        raise Problem(403, "not_moderator", list=held.list_name)
    if held.list_name != list_name:
        raise Problem(404, "no_held")
    action = ctx.field("action")
    if action not in ACTIONS:
        raise Problem(400, "bad_action")
    reason = ctx.field("reason")[:MAX_REASON]
    if has_control_characters(reason):  # a reason is mailed to the sender: one line, nothing hidden
        ctx.session["flash"] = {"key": "bad_reason", "subject": held.subject[:200]}
        return RedirectResponse(f"/moderation/{list_name}/", 303)
    if held.kind == "translation" and action == "approve":
        _decide_translation(ctx, viewer, held)
    elif held.kind == "proposal" and action == "approve":
        _decide_proposal(ctx, viewer, held)
    else:
        _remember(ctx, ctx.site.moderation.decide(ctx.db, held, action, viewer.email, "web", reason), held)
    return RedirectResponse(f"/moderation/{list_name}/", 303)


def _decide_proposal(ctx: Ctx, viewer: Viewer, held: Held) -> None:
    """An approved proposal's "reason" is the week it is wanted for (``approve 2026-W50`` by mail):
    anything but a real ISO week would become the topic's week, so it is checked first."""
    typed = ctx.field("week")
    week = typed.upper()
    if week:
        try:
            parse_week(week)
        except ValueError:
            ctx.session["flash"] = {"key": "bad_week", "subject": held.subject[:200], "week": typed[:20]}
            return
    _remember(ctx, ctx.site.moderation.decide(ctx.db, held, "approve", viewer.email, "web", week), held)


def _decide_translation(ctx: Ctx, viewer: Viewer, held: Held) -> None:
    """Approving a translation request publishes the text typed in the form, as a reply would."""
    title, body = ctx.field("title"), ctx.field("body")
    if not title:
        ctx.session["flash"] = {"key": "translation_empty", "subject": held.subject}
        return
    decision = ctx.site.moderation.decide(ctx.db, held, "approve", viewer.email, "web", "translation")
    if decision.result == "decided":
        ctx.site.proposals.record_translation(ctx.db, held, title, body)
    _remember(ctx, decision, held)


def _remember(ctx: Ctx, decision: Decision, held: Held) -> None:
    """The outcome, for the next page view only; plain strings, since the session is a cookie."""
    ctx.session["flash"] = {
        "key": held.state if decision.result == "decided" else decision.result,
        "subject": held.subject[:200],
        "by": held.decided_by or "",
        "at": held.decided_at.isoformat() if held.decided_at else "",
        "state": held.state,
    }


def _pop_flash(ctx: Ctx) -> dict[str, Any] | None:
    flash = ctx.session.pop("flash", None)
    if not isinstance(flash, dict) or not isinstance(flash.get("key"), str):
        return None
    at = flash.get("at") or ""
    return {**flash, "at": datetime.fromisoformat(at) if at else None}


def audit(ctx: Ctx) -> Response:
    list_name = _list_name(ctx)
    _moderator_of(ctx, list_name)
    before = ctx.query("before")
    query = select(Audit).where(Audit.list_name == list_name).order_by(Audit.id.desc()).limit(AUDIT_PAGE + 1)
    if before.isdigit():
        query = query.where(Audit.id < int(before))
    rows = list(ctx.db.scalars(query))
    older = rows[AUDIT_PAGE - 1].id if len(rows) > AUDIT_PAGE else None
    return ctx.render(
        "moderation_audit.html",
        list_name=list_name,
        rows=rows[:AUDIT_PAGE],
        older=older,
        paged=before.isdigit(),
        page_size=AUDIT_PAGE,
    )


PAGES = [
    Page("/moderation/", overview, name="moderation"),
    Page("/moderation/{list}/", queue, name="moderation_list"),
    Page("/moderation/{list}/audit", audit, name="moderation_audit"),
    Page("/moderation/{list}/{held_id:int}", decide, methods=("POST",), name="moderation_decide"),
]
