"""Erasing from the web: a message by a moderator of its list (on the message page), a member by a chief
moderator (on the moderation overview), each with a reason and who asked.

The erasures themselves are ``listserv erase --message`` and ``--member`` (``admin/``), handed to the
site by the composition root as ``Site.erase_message`` and ``Site.erase_member``: the web does not
import ``admin`` (they are faces on one layer). This request's own transaction ends first: on SQLite
a form post holds the write lock, and the erasure writes in a transaction of its own.
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from listserv.web.app import Ctx, Page, Problem
from listserv.web.threads import id_path

MAX_REASON = 2000


def erase_message(ctx: Ctx) -> Response:
    list_name = ctx.param("list")
    if list_name not in ctx.site.settings.lists:
        raise Problem(404, "no_list", list=list_name)
    viewer = ctx.member()
    if not viewer.can_moderate(list_name):
        raise Problem(403, "not_moderator", list=list_name)
    message_id, reason = ctx.field("message_id").strip(), ctx.field("reason").strip()[:MAX_REASON]
    if not reason:
        raise Problem(400, "erase_reason")
    requested_by = ctx.field("requested_by").strip() or viewer.email
    erase = ctx.site.erase_message
    if erase is None:
        raise Problem(404, "no_message")
    ctx.db.rollback()
    if not erase(message_id, list_name, reason, requested_by, viewer.email):
        raise Problem(404, "no_message")
    if ctx.field("back") == "queue":  # erased from the moderation queue, before any decision
        return RedirectResponse(f"/moderation/{list_name}/", status_code=303)
    return RedirectResponse(f"/lists/{list_name}/message/{id_path(message_id)}", status_code=303)


def erase_member(ctx: Ctx) -> Response:
    viewer = ctx.member()
    if not viewer.is_chief:
        raise Problem(403, "chiefs_only")
    address, reason = ctx.field("email").strip(), ctx.field("reason").strip()[:MAX_REASON]
    if not address or not reason:
        raise Problem(400, "erase_member_fields")
    requested_by = ctx.field("requested_by").strip() or viewer.email
    erase = ctx.site.erase_member
    if erase is None:
        raise Problem(404, "no_member_to_erase")
    ctx.db.rollback()
    if not erase(address, reason, requested_by, viewer.email, ctx.field("with_posts") == "1"):
        raise Problem(404, "no_member_to_erase")
    return RedirectResponse("/moderation/?erased=1", status_code=303)


PAGES = [
    Page("/moderation/{list}/erase", erase_message, methods=("POST",), name="moderation_erase"),
    Page("/moderation/erase-member", erase_member, methods=("POST",), name="moderation_erase_member"),
]
