"""The front page: where a signed-in person goes first."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from listserv.archive.urls import thread_url
from listserv.store.models import ArchivedPost
from listserv.web.app import Ctx, Page


def home(ctx: Ctx) -> Response:
    """The lists; for a guest, the discussion they were invited to (the first, if several)."""
    viewer = ctx.viewer
    if viewer is not None and viewer.is_guest:
        for list_name, thread_ids in sorted(viewer.guest_threads.items()):
            first = ctx.db.get(ArchivedPost, min(thread_ids))
            if first is not None:
                return RedirectResponse(thread_url("", list_name, first.message_id), 303)
    return RedirectResponse("/lists/", 303)


PAGES = [Page("/", home, name="home")]
