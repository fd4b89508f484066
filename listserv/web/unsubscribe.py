"""Leaving a list from the web, two ways:
- the list's page (``/lists/ta-en/unsubscribe``): signed in, one button;
- the personal link of RFC 8058 (``/u/TOKEN``, in each personal copy's ``List-Unsubscribe`` and
  footer): the token names the member and the list (``outgoing/personal.py``). A POST with the body
  ``List-Unsubscribe=One-Click`` leaves at once, with no cookie and no CSRF token (mail providers send
  it); a GET only shows one button, since link scanners follow every GET.
Either way the member is told in the list's language, and the departure is audited."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from listserv.config import MailingList
from listserv.membership.requests import request_words
from listserv.moderation.audit import AuditEntry, record
from listserv.store.models import ListRow, Member, Subscription
from listserv.web.app import Access, Ctx, Page, Problem

ONE_CLICK = ("List-Unsubscribe", "One-Click")  # RFC 8058 §3.1: the body of the POST


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
        token=None,
    )


def unsubscribe(ctx: Ctx) -> Response:
    list_name = ctx.param("list")
    subscription = _subscription(ctx, list_name)
    mailing_list = ctx.site.settings.lists[list_name]
    done = subscription is not None  # else not on the list (or left in another tab): change nothing
    if subscription is not None:
        leave(ctx, subscription, mailing_list, "web")
    return ctx.render("unsubscribe.html", mailing_list=mailing_list, subscription=None, done=done, token=None)


def _named(ctx: Ctx) -> tuple[MailingList, Subscription | None]:
    """The list and the member's subscription the link's token names; a clear refusal when the token
    is not ours (edited, cut short) or names a list or member that is gone."""
    named = ctx.site.tokens.read(ctx.param("token"))
    row = ctx.db.get(ListRow, named.list_id) if named else None
    if named is None or row is None or row.name not in ctx.site.settings.lists:
        raise Problem(404, "bad_unsubscribe_link")
    subscription = ctx.db.scalars(
        select(Subscription).where(Subscription.member_id == named.member_id, Subscription.list_id == row.id)
    ).first()
    return ctx.site.settings.lists[row.name], subscription


def one_click_form(ctx: Ctx) -> Response:
    mailing_list, subscription = _named(ctx)
    return ctx.render(
        "unsubscribe.html",
        mailing_list=mailing_list,
        subscription=subscription,
        done=False,
        token=ctx.param("token"),
    )


def one_click(ctx: Ctx) -> Response:
    mailing_list, subscription = _named(ctx)
    if ctx.field(ONE_CLICK[0]) != ONE_CLICK[1]:
        raise Problem(400, "one_click_body")
    if subscription is not None:
        leave(ctx, subscription, mailing_list, "one_click")
    return ctx.render(
        "unsubscribe.html",
        mailing_list=mailing_list,
        subscription=None,
        done=subscription is not None,
        token=None,
    )


def leave(ctx: Ctx, subscription: Subscription, mailing_list: MailingList, how: str) -> None:
    """Out of the list at once, audited, and a goodbye in the list's language."""
    member = ctx.db.get(Member, subscription.member_id)
    ctx.db.delete(subscription)
    if member is None:
        return
    entry = AuditEntry("unsubscribe", how, mailing_list.name, member.email, "web", detail=member.email)
    record(ctx.db, entry, ctx.site.clock())
    words = request_words(ctx.site.mail_templates, mailing_list.language)
    ctx.site.notifier.send(ctx.db, "member_unsubscribed.txt", mailing_list.name, [member.email], words)


PAGES = [
    Page("/lists/{list}/unsubscribe", unsubscribe_form, name="unsubscribe"),
    Page("/lists/{list}/unsubscribe", unsubscribe, methods=("POST",)),
    Page("/u/{token}", one_click_form, Access.PUBLIC, name="one_click"),
    Page("/u/{token}", one_click, Access.PUBLIC, ("POST",), csrf=False),
]
