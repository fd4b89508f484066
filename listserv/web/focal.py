"""A focal point's page: the delegates of their member state, and the same ``nominate`` / ``withdraw``
requests as by mail to ``-owner@`` (``membership/owner.py``: held for the moderators, another state's
delegate refused). Only a signed-in member with ``role: focal_point`` and a country sees it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette.responses import RedirectResponse, Response

from listserv.mail.addresses import normalise_address
from listserv.membership.owner import FOCAL_POINT, OwnerMail
from listserv.membership.owner_text import OwnerCommand
from listserv.store.models import Member, Subscription
from listserv.web.app import Ctx, Page, Problem

OUTCOMES = (
    "nominate_pending",
    "withdraw_pending",
    "other_state",
    "not_a_delegate",
    "not_member",
    "bad_address",
)


def _focal_point(ctx: Ctx) -> tuple[Member, OwnerMail]:
    member = ctx.db.get(Member, ctx.member().member_id)
    if member is None or member.role != FOCAL_POINT or not member.country or ctx.site.owner is None:
        raise Problem(403, "not_focal_point")
    return member, ctx.site.owner


def focal_page(ctx: Ctx) -> Response:
    member, _ = _focal_point(ctx)
    delegates = ctx.db.scalars(
        select(Member)
        .where(Member.country == member.country, Member.role == "delegate")
        .options(selectinload(Member.subscriptions).selectinload(Subscription.mailing_list))
        .order_by(Member.email_key)
    ).all()
    outcome = ctx.session.pop("flash_focal", None)
    return ctx.render(
        "focal_point.html",
        member=member,
        delegates=[(d, sorted(s.mailing_list.name for s in d.subscriptions)) for d in delegates],
        lists=sorted(name for name in ctx.member().reads if name in ctx.site.settings.lists),
        outcome=outcome if outcome in OUTCOMES else None,
    )


def focal_request(ctx: Ctx) -> Response:
    member, owner = _focal_point(ctx)
    verb, list_name, written = ctx.field("verb"), ctx.field("list"), ctx.field("email")
    if verb not in ("nominate", "withdraw") or list_name not in ctx.member().reads:
        raise Problem(400, "bad_focal_request")
    command = OwnerCommand(verb, normalise_address(written), written, " ".join(ctx.field("name").split()))
    ctx.session["flash_focal"] = owner.submit(ctx.db, list_name, member, command)
    return RedirectResponse("/focal-point", 303)


PAGES = [
    Page("/focal-point", focal_page, name="focal_point"),
    Page("/focal-point", focal_request, methods=("POST",)),
]
