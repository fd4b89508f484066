"""The front page: where a signed-in person goes first."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from listserv.web.app import Ctx, Page


def home(ctx: Ctx) -> Response:
    return RedirectResponse("/lists/", 303)


PAGES = [Page("/", home, name="home")]
