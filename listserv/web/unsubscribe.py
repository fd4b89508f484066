"""Leaving a list from the web: the footer of every list copy links here. Signed in, one button.

Not yet RFC 8058 one-click: that needs a link naming the recipient in each copy, and a decorated copy
is shared by a batch of recipients (see delivery.py). Until copies are personalised, the mail's
``List-Unsubscribe`` offers the ``-request`` address and this page."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from listserv.membership.requests import request_words
from listserv.store.models import ListRow, Member, Subscription
from listserv.web.app import Ctx, Page, Problem


def _subscription(ctx: Ctx, list_name: str) -> Subscription | None:
    if list_name not in ctx.site.settings.lists:
        raise Problem(404, "no_list", list=list_name)
    return ctx.db.scalars(
        select(Subscription)
        .join(ListRow)
        .where(ListRow.name == list_name, Subscription.member_id == ctx.member().member_id)
    ).first()


def unsubscribe_form(ctx: Ctx) -> Response:
    list_name = ctx.param("list")
    subscription = _subscription(ctx, list_name)
    return ctx.render(
        "unsubscribe.html",
        mailing_list=ctx.site.settings.lists[list_name],
        subscription=subscription,
        done=False,
    )


def unsubscribe(ctx: Ctx) -> Response:
    list_name = ctx.param("list")
    subscription = _subscription(ctx, list_name)
    mailing_list = ctx.site.settings.lists[list_name]
    if subscription is None:  # not on the list (or already left, in another tab): say so, change nothing
        return ctx.render("unsubscribe.html", mailing_list=mailing_list, subscription=None, done=False)
    member = ctx.db.get(Member, subscription.member_id)
    ctx.db.delete(subscription)
    if member is not None:
        words = request_words(ctx.site.mail_templates, mailing_list.language)
        ctx.site.notifier.send(ctx.db, "member_unsubscribed.txt", list_name, [member.email], words)
    return ctx.render("unsubscribe.html", mailing_list=mailing_list, subscription=None, done=True)


PAGES = [
    Page("/lists/{list}/unsubscribe", unsubscribe_form, name="unsubscribe"),
    Page("/lists/{list}/unsubscribe", unsubscribe, methods=("POST",)),
]
