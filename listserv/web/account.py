"""The member's own page: who the forum thinks they are, how each of their lists reaches them (the same
settings as the ``digest``/``nomail``/``mail`` commands by email), and their private feed links."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from listserv.store.models import ListRow, Member, Subscription
from listserv.web.app import Ctx, Page, Problem
from listserv.web.exports import feed_url

# What the form offers → (subscription.delivery, subscription.digest_period or None to keep it).
MODES: dict[str, tuple[str, str | None]] = {
    "each": ("each", None),
    "digest-daily": ("digest", "daily"),
    "digest-weekly": ("digest", "weekly"),
    "none": ("none", None),
}


@dataclass(frozen=True)
class ListDelivery:
    name: str
    title: str
    mode: str  # a key of MODES
    suspended: bool  # delivery stopped after bounces


def mode_of(subscription: Subscription) -> str:
    if subscription.delivery == "digest":
        return f"digest-{subscription.digest_period}"
    return subscription.delivery if subscription.delivery in MODES else "each"


def account(ctx: Ctx) -> Response:
    viewer = ctx.member()
    member = ctx.db.get(Member, viewer.member_id)
    if member is None:  # removed between loading the viewer and now
        raise Problem(401, "login_needed")
    rows = ctx.db.execute(
        select(Subscription, ListRow.name, ListRow.title)
        .join(ListRow, ListRow.id == Subscription.list_id)
        .where(Subscription.member_id == member.id)
        .order_by(ListRow.name)
    ).all()
    deliveries = [
        ListDelivery(name, title, mode_of(subscription), subscription.disabled_at is not None)
        for subscription, name, title in rows
    ]
    base = ctx.site.settings.site.base_url
    feeds = [(name, feed_url(base, ctx.site.secret, member.id, name)) for name in sorted(viewer.reads)]
    saved = ctx.session.pop("flash_account", None)
    return ctx.render(
        "account.html",
        member=member,
        deliveries=deliveries,
        modes=list(MODES),
        feeds=feeds,
        moderates=sorted(viewer.moderates),
        saved=saved if isinstance(saved, str) and saved != "erasure" else None,
        erasure_requested=saved == "erasure",
    )


def change_delivery(ctx: Ctx) -> Response:
    viewer = ctx.member()
    list_name, mode = ctx.field("list"), ctx.field("mode")
    if mode not in MODES:
        raise Problem(400, "bad_delivery")
    subscription = ctx.db.scalars(
        select(Subscription)
        .join(ListRow, ListRow.id == Subscription.list_id)
        .where(Subscription.member_id == viewer.member_id, ListRow.name == list_name)
    ).first()
    if subscription is None:
        raise Problem(403, "not_subscribed", list=list_name)
    delivery, period = MODES[mode]
    subscription.delivery = delivery
    subscription.digest_period = period or subscription.digest_period
    if delivery != "none" and subscription.disabled_at is not None and subscription.disabled_reason is None:
        # Asking for mail is what the ``mail`` command does after a bounce suspension: try again.
        subscription.disabled_at, subscription.bounce_score, subscription.probe_sent_at = None, 0.0, None
    ctx.session["flash_account"] = list_name[:100]
    return RedirectResponse("/account", 303)


def request_erasure(ctx: Ctx) -> Response:
    """Held for the chief moderators, who confirm it by reply code: erasure cannot be undone."""
    viewer = ctx.member()
    member = ctx.db.get(Member, viewer.member_id)
    lists = sorted(name for name in viewer.reads if name in ctx.site.settings.lists)
    if member is None or not lists:
        raise Problem(403, "not_subscribed", list="")
    ctx.site.moderation.hold_erasure_request(ctx.db, lists[0], member.email, member.name)
    ctx.site.notifier.send(
        ctx.db, "member_erasure_pending.txt", lists[0], [member.email], {"sender": member.email}
    )
    ctx.session["flash_account"] = "erasure"
    return RedirectResponse("/account", 303)


PAGES = [
    Page("/account", account, name="account"),
    Page("/account/erase", request_erasure, methods=("POST",), name="account_erase"),
    Page("/account/delivery", change_delivery, methods=("POST",), name="account_delivery"),
]
