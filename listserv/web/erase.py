"""Erasing a message from the web: a moderator of the list, on the message page, with a reason.

The erasure itself is ``listserv erase --message`` (``admin/erasure.py``), handed to the site by the
composition root as ``Site.erase_message``: the web does not import ``admin`` (they are faces on one
layer). This request's own read transaction ends first: on SQLite it holds the write lock of a form
post, and the erasure writes in a transaction of its own.
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
    return RedirectResponse(f"/lists/{list_name}/message/{id_path(message_id)}", status_code=303)


PAGES = [Page("/moderation/{list}/erase", erase_message, methods=("POST",), name="moderation_erase")]
