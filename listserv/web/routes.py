"""Every page of the site, area by area; ``build`` makes the app ``serve`` runs."""

from __future__ import annotations

from starlette.applications import Starlette

from listserv.config import Settings
from listserv.web import (
    account,
    announce,
    archive,
    auth,
    downloads,
    erase,
    exports,
    focal,
    home,
    moderate,
    ops,
    protocol,
    reply,
    search,
    standing,
    stats,
    unsubscribe,
)
from listserv.web.app import Page, Site, build_app
from listserv.web.i18n import load_languages
from listserv.web.pages import Pages


def all_pages() -> list[Page]:
    return [
        *auth.PAGES,
        *home.PAGES,
        *moderate.PAGES,
        *erase.PAGES,
        *exports.PAGES,
        *account.PAGES,
        *search.PAGES,
        *stats.PAGES,
        *announce.PAGES,
        *reply.PAGES,
        *unsubscribe.PAGES,
        *archive.PAGES,
        *downloads.PAGES,
        *protocol.PAGES,
        *standing.PAGES,
        *focal.PAGES,
    ]


def build_pages(settings: Settings) -> Pages:
    return Pages(
        settings.site.template_dirs,
        settings.site.timezone,
        load_languages(settings.languages),
        reload=settings.web.reload_templates,
    )


def build(site: Site) -> Starlette:
    return build_app(site, all_pages(), ops.routes(site))
