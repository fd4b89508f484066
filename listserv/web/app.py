"""The web app's frame: routes as data, one guarded wrapper for them all, errors as pages.

The wrapper does, for every route: read the signed session cookie, check the CSRF token of a form
post, then — in the thread pool — load the viewer from the server-side session the cookie's token
names, refuse anonymous visitors to anything but public pages, open a database session and run the
handler. A handler raises ``Problem`` for a refusal with a reason; the error page explains it in the
reader's language. Nothing a user sees is a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from listserv.config import Settings
from listserv.mail.templates import MailTemplates
from listserv.membership.owner import OwnerMail
from listserv.membership.standing import Standing
from listserv.moderation.proposals import Proposals
from listserv.moderation.queue import Moderation
from listserv.outgoing.notices import Notifier
from listserv.outgoing.personal import MemberTokens
from listserv.web.access import Viewer, ViewerCache, load_signed_in
from listserv.web.calendars import CalendarCache
from listserv.web.i18n import SOURCE, negotiate
from listserv.web.limits import LoginLimiter, Network, client_address, parse_networks
from listserv.web.pages import Pages
from listserv.weekly.announcements import Announcer

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"


class Access(Enum):
    PUBLIC = "public"  # login, password reset, one-click unsubscribe, feeds with a token
    MEMBER = "member"  # any signed-in person; finer checks (this list? a moderator?) in the handler


class Problem(Exception):
    """A refusal the reader should understand: ``key`` names the explanation in error.html."""

    def __init__(self, status: int, key: str, **params: Any) -> None:
        super().__init__(key)
        self.status, self.key, self.params = status, key, params


@dataclass
class Site:
    """What every handler may need; built once per app."""

    settings: Settings
    engine: Engine
    moderation: Moderation
    proposals: Proposals
    notifier: Notifier
    mail_templates: MailTemplates
    clock: Callable[[], datetime]
    pages: Pages
    secret: bytes
    tokens: MemberTokens
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    viewers: ViewerCache = field(default_factory=ViewerCache)
    calendars: CalendarCache = field(default_factory=CalendarCache)
    # After a form's changes are committed: mail they queued (a decision, a reset link) goes out now,
    # not at the senders' next idle check.
    wake_senders: Callable[[], None] = lambda: None
    # ``listserv erase --message`` for the web (message id, list, reason, requested by, executed by):
    # False when there is no such message. Built by the composition root; None: no erasure here.
    erase_message: Callable[[str, str, str, str, str], bool] | None = None
    # ``listserv erase --member`` (address, reason, requested by, executed by, with posts): False when
    # the address left nothing to erase.
    erase_member: Callable[[str, str, str, str, bool], bool] | None = None
    # The usage protocol accepted and the yearly reconfirmation, by their signed links.
    standing: Standing | None = None
    owner: OwnerMail | None = None  # a focal point's nominations and withdrawals (also by mail)
    # Announcements to every list of a room (the chiefs' form, /announce); None: no form here.
    announcer: Announcer | None = None
    # Mail written on the web into the intake (envelope sender, list address, bytes, Message-ID): stored
    # and handed to the worker like SMTP mail. None: no replying from the web here.
    submit: Callable[[str, str, bytes, str], None] | None = None

    proxies: tuple[Network, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.proxies = parse_networks(self.settings.web.trusted_proxies)

    @property
    def session_age(self) -> timedelta:
        return timedelta(days=self.settings.web.session_days)


@dataclass
class Ctx:
    request: Request
    site: Site
    db: Session
    viewer: Viewer | None
    language: str
    form: FormData | None

    @property
    def session(self) -> dict[str, Any]:
        return self.request.session

    @property
    def client(self) -> str:
        """Who the sign-in limits count: the peer, or what a trusted proxy says it forwarded for."""
        peer = self.request.client.host if self.request.client else None
        forwarded = self.request.headers.getlist("x-forwarded-for")
        return client_address(peer, forwarded, self.site.proxies)

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def field(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""

    def member(self) -> Viewer:
        if self.viewer is None:  # a MEMBER page's wrapper has already refused anonymous visitors
            raise Problem(401, "login_needed")
        return self.viewer

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.site.pages.render(template, self.language, **self.template_context(), **context)
        return HTMLResponse(html, status)

    def template_context(self) -> dict[str, Any]:
        return {
            "viewer": self.viewer,
            "csrf_token": csrf_token(self.session),
            "site_name": self.site.settings.site.name,
            "path": self.request.url.path,
            "query_string": self.request.url.query,
        }


Handler = Callable[[Ctx], Response]


class Slowed(Response):
    """``response``, sent only after ``seconds``: the wait is asynchronous, so a slowed attacker holds
    no worker thread, only an idle connection."""

    def __init__(self, response: Response, seconds: float) -> None:
        self.response, self.seconds = response, seconds
        self.status_code, self.raw_headers, self.body = response.status_code, response.raw_headers, b""
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(self.seconds)
        await self.response(scope, receive, send)


@dataclass(frozen=True)
class Page:
    path: str
    handler: Handler
    access: Access = Access.MEMBER
    methods: tuple[str, ...] = ("GET",)
    csrf: bool = True  # only the RFC 8058 one-click POST (sent by mail providers) goes without
    name: str | None = None


def csrf_token(session: dict[str, Any]) -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def choose_language(request: Request, viewer: Viewer | None, available: list[str]) -> str:
    for wanted in (viewer.language if viewer else None, request.session.get("language")):
        if wanted in available:
            return str(wanted)
    return negotiate(request.headers.get("accept-language", ""), available) or SOURCE


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)


def guarded(page: Page, site: Site) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        form = None
        if request.method == "POST":
            form = await request.form()
        if carries_nul(request, form):
            raise Problem(400, "http_400")
        if (
            form is not None
            and page.csrf
            and not hmac.compare_digest(str(form.get("csrf", "")), str(request.session.get("csrf", "\0")))
        ):
            raise Problem(403, "csrf")
        return await run_in_threadpool(_run, page, site, request, form)

    return endpoint


def carries_nul(request: Request, form: FormData | None) -> bool:
    """NUL is in no address, name, Message-ID or text the forum takes, and PostgreSQL refuses it in a
    text parameter: without this check a ``%00`` in a path, query or form field was a 500 there."""
    pairs = [*request.query_params.multi_items(), *(form.multi_items() if form is not None else [])]
    texts = [str(value) for value in request.path_params.values()]
    texts += [text for pair in pairs for text in pair if isinstance(text, str)]  # an upload is no text
    return any("\0" in text for text in texts)


def _run(page: Page, site: Site, request: Request, form: FormData | None) -> Response:
    read_only = request.method in ("GET", "HEAD")
    engine = site.engine.execution_options(sqlite_deferred=True) if read_only else site.engine
    with Session(engine, expire_on_commit=False) as db:
        viewer = _viewer(db, request, site)
        if viewer is None and page.access is Access.MEMBER:
            return login_redirect(request) if read_only else Response(status_code=401)
        ctx = Ctx(
            request, site, db, viewer, choose_language(request, viewer, list(site.pages.languages)), form
        )
        request.state.language = ctx.language
        response = page.handler(ctx)
        if db.in_transaction():
            db.commit()
        if not read_only:
            site.viewers.clear()  # whatever it changed (a sign-out, a password) shows on the next page
            site.wake_senders()
        return response


def _viewer(db: Session, request: Request, site: Site) -> Viewer | None:
    """Once per request at most, and from ``site.viewers`` when this session was loaded a moment ago."""
    token = request.session.get("sid")
    if not isinstance(token, str):
        return None
    key = (token, str(request.session.get("password", "")))
    viewer = site.viewers.get(key)
    if viewer is not None:
        return viewer
    viewer = load_signed_in(db, token, site.session_age, site.clock())
    if viewer is None:  # signed out, expired, password changed or member gone: this session has ended
        request.session.clear()
        return None
    if not viewer.guest_threads and viewer.role != "guest":
        # A guest's access ends the moment an invitation is revoked or runs out, whichever process
        # revoked it: guests are few, and read anew on every request.
        site.viewers.put(key, viewer)
    return viewer


def routes_of(pages: list[Page], site: Site, extra: Sequence[BaseRoute] = ()) -> list[BaseRoute]:
    routes: list[BaseRoute] = [*extra]  # plain routes outside the wrapper: /healthz, /metrics
    routes += [
        Route(page.path, guarded(page, site), methods=list(page.methods), name=page.name) for page in pages
    ]
    routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
    return routes


def error_page(site: Site) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, error: Exception) -> Response:
        if isinstance(error, Problem):
            status, key, params = error.status, error.key, error.params
        elif isinstance(error, HTTPException):
            status, key, params = error.status_code, f"http_{error.status_code}", {}
        else:
            log.exception("web: %s %s failed", request.method, request.url.path, exc_info=error)
            status, key, params = 500, "http_500", {}
        language = getattr(request.state, "language", None) or choose_language(
            request, None, list(site.pages.languages)
        )
        html = site.pages.render(
            "error.html",
            language,
            status=status,
            key=key,
            params=params,
            viewer=None,
            site_name=site.settings.site.name,
            csrf_token=str(request.session.get("csrf", "")) if "session" in request.scope else "",
            path=request.url.path,
            query_string="",
        )
        return HTMLResponse(html, status)

    return handle


# Archived mail is shown in our origin: nothing in it may run script or fetch from elsewhere (a remote
# image is a read receipt), and no other site may frame our pages or post our forms.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    # Privacy by default: no page of a closed forum belongs in a search engine, even if a link leaks.
    (b"x-robots-tag", b"noindex, nofollow"),
]


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response that has not set its own (attachments set a
    stricter ``sandbox`` policy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def build_app(site: Site, pages: list[Page], extra: Sequence[BaseRoute] = ()) -> Starlette:
    secure = site.settings.site.base_url.startswith("https://")
    session_key = hmac.new(site.secret, b"web-session", "sha256").hexdigest()
    handler = error_page(site)
    return Starlette(
        routes=routes_of(pages, site, extra),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_key,
                session_cookie="listserv_session",
                max_age=site.settings.web.session_days * 86400,
                same_site="lax",
                https_only=secure,
            ),
        ],
        exception_handlers={Problem: handler, HTTPException: handler, Exception: handler},
    )
