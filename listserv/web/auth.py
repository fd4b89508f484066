"""Signing in and out, resetting a password by an emailed single-use link, choosing the language.

A reset link is an itsdangerous token holding the member and a fingerprint of their current password
hash: it expires after ``RESET_HOURS`` and is spent the moment any password is set. Sign-in failures
slow the attacker's client, and an address under attack gets slower, but its owner is never locked out
(``limits``); reset requests have their own hourly limit and never block signing in. An unknown address
costs the same argon2 work as a wrong password, so timing does not tell who is a member. Signing in opens
a server-side session (``access.open_session``); signing out ends it.
"""

from __future__ import annotations

from datetime import timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from listserv.store import directory
from listserv.store.db import utc_now
from listserv.store.directory import MIN_PASSWORD_LENGTH, find_member
from listserv.store.keys import link_hours, password_link_token, password_links
from listserv.store.models import Guest, ListRow, Member, Moderator, Subscription
from listserv.web.access import end_every_session, end_session, open_session, password_fingerprint
from listserv.web.app import Access, Ctx, Page, Problem, Slowed, csrf_token

RESET_HOURS = 2


def safe_next(target: str) -> str:
    """Only a path on this site: ``//evil.example`` and ``https://…`` would be an open redirect."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def login_form(ctx: Ctx) -> Response:
    if ctx.viewer is not None:
        return RedirectResponse(safe_next(ctx.query("next", "/")), 303)
    return ctx.render("login.html", next=safe_next(ctx.query("next", "/")), email="", error=None)


def login(ctx: Ctx) -> Response:
    address, password = ctx.field("email").lower(), str(ctx.form.get("password", "") if ctx.form else "")
    target = safe_next(ctx.field("next") or "/")
    limiter, client = ctx.site.limiter, ctx.client
    wait = limiter.wait_minutes(address, client)
    if wait:
        return ctx.render("login.html", 429, next=target, email=address, error="too_many", minutes=wait)
    delay = limiter.delay_seconds(address)  # before this attempt counts: it pays for the earlier ones
    member = find_member(ctx.db, address) if address else None
    verified = _verify(member, password)  # always called: unknown addresses cost the same time
    if member is None or not verified:
        limiter.failed(address, client)
        answer: Response = ctx.render("login.html", 400, next=target, email=address, error="wrong")
    else:
        limiter.succeeded(address, client)
        _sign_in(ctx, member)
        answer = RedirectResponse(target, 303)
    # Right and wrong wait alike: a quick answer must not tell the attacker which it is.
    return Slowed(answer, delay) if delay else answer


def _verify(member: Member | None, password: str) -> bool:
    hasher = directory.PASSWORDS
    try:
        # No member, or no password yet: hash anyway, so the answer takes as long as for a member.
        if member is None or not member.password_hash:
            hasher.hash(password)
            return False
        hasher.verify(member.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(member.password_hash):
        member.password_hash = hasher.hash(password)
    return True


def _sign_in(ctx: Ctx, member: Member) -> None:
    keep_language, previous = ctx.session.get("language"), ctx.session.get("sid")
    if isinstance(previous, str):
        end_session(ctx.db, previous)
    ctx.session.clear()  # a fresh session: nothing from before the login carries over (fixation)
    ctx.session["sid"] = open_session(ctx.db, member, ctx.site.session_age)
    ctx.session["password"] = password_fingerprint(member.password_hash)  # keys the cached viewer
    if keep_language:
        ctx.session["language"] = keep_language
    csrf_token(ctx.session)


def logout(ctx: Ctx) -> Response:
    token = ctx.session.get("sid")
    if isinstance(token, str):
        end_session(ctx.db, token)  # a copy of the cookie ends with this one
    ctx.session.clear()
    return RedirectResponse("/login", 303)


def forgot_form(ctx: Ctx) -> Response:
    return ctx.render("password_forgot.html", sent=False, error=None)


def forgot(ctx: Ctx) -> Response:
    """The same answer whether or not the address is a member: this page must not reveal who is."""
    address, client = ctx.field("email").lower(), ctx.client
    wait = ctx.site.limiter.reset_wait_minutes(address, client)
    if wait:
        return ctx.render("password_forgot.html", 429, sent=False, error="too_many", minutes=wait)
    ctx.site.limiter.reset_requested(address, client)  # each request counts, so nobody floods a mailbox
    member = find_member(ctx.db, address) if address else None
    list_name = _notice_list(ctx, member) if member is not None else None
    if member is not None and list_name is not None:
        token = password_link_token(
            ctx.site.secret, member.id, member.password_hash, timedelta(hours=RESET_HOURS)
        )
        base = ctx.site.settings.site.base_url.rstrip("/")
        ctx.site.notifier.send(
            ctx.db,
            "member_password_reset.txt",
            list_name,
            [member.email],
            {"name": member.name, "reset_url": f"{base}/password/reset/{token}", "hours": RESET_HOURS},
        )
    return ctx.render("password_forgot.html", sent=True, error=None)


def _notice_list(ctx: Ctx, member: Member) -> str | None:
    """Notices go out in a list's language: the member's first list, one they moderate, or one they
    are a guest of."""
    for query in (
        select(ListRow.name).join(Subscription).where(Subscription.member_id == member.id),
        select(ListRow.name).join(Moderator).where(Moderator.member_id == member.id),
        select(ListRow.name)
        .join(Guest, Guest.list_name == ListRow.name)
        .where(Guest.member_id == member.id, Guest.state == "active"),
    ):
        found = ctx.db.scalars(query.order_by(ListRow.name)).first()
        if found:
            return found
    return next(iter(ctx.site.settings.lists), None) if member.is_chief else None


def _member_of_token(ctx: Ctx) -> Member:
    """The member a password link names; a reset lasts hours, a guest's invitation days: the validity is
    signed into the link (``store/keys.password_link_token``)."""
    try:
        data, signed_at = password_links(ctx.site.secret).loads(ctx.param("token"), return_timestamp=True)
    except BadSignature:
        raise Problem(400, "reset_invalid") from None
    hours = link_hours(data, RESET_HOURS)
    if utc_now() - signed_at > timedelta(hours=hours):
        raise Problem(400, "reset_expired", hours=hours)
    member = ctx.db.get(Member, data.get("m")) if isinstance(data, dict) else None
    if member is None or password_fingerprint(member.password_hash) != data.get("f"):
        raise Problem(400, "reset_used")
    return member


def reset_form(ctx: Ctx) -> Response:
    member = _member_of_token(ctx)
    return ctx.render("password_reset.html", email=member.email, error=None, minimum=MIN_PASSWORD_LENGTH)


def reset(ctx: Ctx) -> Response:
    member = _member_of_token(ctx)
    password = str(ctx.form.get("password", "") if ctx.form else "")
    error = None
    if len(password) < MIN_PASSWORD_LENGTH:
        error = "too_short"
    elif password != str(ctx.form.get("confirm", "") if ctx.form else ""):
        error = "mismatch"
    if error:
        return ctx.render(
            "password_reset.html", 400, email=member.email, error=error, minimum=MIN_PASSWORD_LENGTH
        )
    member.password_hash = directory.PASSWORDS.hash(password)
    end_every_session(ctx.db, member.id)  # whoever knew the old password is out
    _sign_in(ctx, member)
    return RedirectResponse("/", 303)


def switch_language(ctx: Ctx) -> Response:
    """The switcher: kept in the session, and as the member's own setting when signed in."""
    wanted = ctx.field("language")
    if wanted in ctx.site.pages.languages:
        ctx.session["language"] = wanted
        if ctx.viewer is not None:
            member = ctx.db.get(Member, ctx.viewer.member_id)
            if member is not None:
                member.language = wanted
    return RedirectResponse(safe_next(ctx.field("next") or "/"), 303)


PAGES = [
    Page("/login", login_form, Access.PUBLIC, name="login"),
    Page("/login", login, Access.PUBLIC, ("POST",)),
    Page("/logout", logout, Access.PUBLIC, ("POST",), name="logout"),
    Page("/password/forgot", forgot_form, Access.PUBLIC, name="password_forgot"),
    Page("/password/forgot", forgot, Access.PUBLIC, ("POST",)),
    Page("/password/reset/{token}", reset_form, Access.PUBLIC, name="password_reset"),
    Page("/password/reset/{token}", reset, Access.PUBLIC, ("POST",)),
    Page("/language", switch_language, Access.PUBLIC, ("POST",), name="language"),
]
