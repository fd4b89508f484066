"""The links of the welcome (accept the usage protocol) and of the yearly reconfirmation mail.

Opening a link changes nothing: mail scanners open links too. The page shows one button, and the POST
does what the mail reply ``accept`` or ``confirm`` does, through the same ``Standing``. No sign-in is
needed: the protocol link is signed with the site secret and names its member; the reconfirmation
token is single-use and kept hashed."""

from __future__ import annotations

from starlette.responses import Response

from listserv.membership.standing import Standing, protocol_member
from listserv.store.models import Member
from listserv.web.app import Access, Ctx, Page, Problem


def _standing(ctx: Ctx) -> Standing:
    if ctx.site.standing is None:
        raise Problem(404, "http_404")
    return ctx.site.standing


def _protocol_member(ctx: Ctx) -> Member | None:
    member_id = protocol_member(ctx.site.secret, ctx.param("token"))
    return ctx.db.get(Member, member_id) if member_id is not None else None


def _page(ctx: Ctx, what: str, valid: bool, done: bool) -> Response:
    """A link that is not ours, used already or expired is a bad request, explained in the page."""
    return ctx.render("standing.html", 200 if valid else 400, what=what, valid=valid, done=done)


def protocol_form(ctx: Ctx) -> Response:
    return _page(ctx, "protocol", _protocol_member(ctx) is not None, done=False)


def protocol_accept(ctx: Ctx) -> Response:
    member = _protocol_member(ctx)
    if member is not None:
        _standing(ctx).accept_protocol(ctx.db, member, "web")
    return _page(ctx, "protocol", member is not None, done=member is not None)


def reconfirm_form(ctx: Ctx) -> Response:
    return _page(ctx, "reconfirm", _standing(ctx).reconfirm_pending(ctx.db, ctx.param("token")), done=False)


def reconfirm(ctx: Ctx) -> Response:
    member = _standing(ctx).renew_by_token(ctx.db, ctx.param("token"), "web")
    return _page(ctx, "reconfirm", member is not None, done=member is not None)


PAGES = [
    Page("/protocol-accept/{token}", protocol_form, Access.PUBLIC, name="protocol_accept"),
    Page("/protocol-accept/{token}", protocol_accept, Access.PUBLIC, ("POST",)),
    Page("/reconfirm/{token}", reconfirm_form, Access.PUBLIC, name="reconfirm"),
    Page("/reconfirm/{token}", reconfirm, Access.PUBLIC, ("POST",)),
]
