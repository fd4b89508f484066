"""Every page of the site, area by area; ``build`` makes the app ``serve`` runs."""

from __future__ import annotations

from starlette.applications import Starlette

from listserv.config import Settings
from listserv.web import (
    account,
    archive,
    auth,
    downloads,
    erase,
    exports,
    home,
    moderate,
    protocol,
    search,
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
        *unsubscribe.PAGES,
        *archive.PAGES,
        *downloads.PAGES,
        *protocol.PAGES,
    ]


def build_pages(settings: Settings) -> Pages:
    return Pages(settings.site.template_dirs, settings.site.timezone, load_languages(settings.languages))


def build(site: Site) -> Starlette:
    return build_app(site, all_pages())
