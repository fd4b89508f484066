"""The web app's front door: every page behind a session, CSRF on every form, sign-in rate limits,
password reset by single-use link, the language of the pages."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from listserv.config import ConfigError, Settings, parse_settings
from listserv.store.models import Member, Outbox, WebSession
from listserv.web import limits
from listserv.web.app import Access
from listserv.web.limits import LoginLimiter, client_address, parse_networks
from listserv.web.routes import all_pages
from listserv.web.server import WebServer
from tests.conftest import (
    CSRF_FIELD,
    PASSWORD,
    WebClient,
    add_members,
    make_config,
    set_password,
)

DELEGATE = "ana@example.org"
SAMPLE = {
    "list": "ta-en",
    "message_id": "a@b",
    "year": "2026",
    "month": "11",
    "token": "x",
    "week": "2026-W48",
}


def sample_path(path: str) -> str:
    """``/lists/{list}/message/{message_id:path}`` → ``/lists/ta-en/message/a@b``."""
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: SAMPLE.get(m.group(1), "1"), path)


def signed_in(web: WebClient) -> bool:
    return web.get("/").headers["location"] == "/lists/"  # else /login?next=…


@pytest.fixture
def delegate(engine: Engine, settings: Settings) -> str:
    add_members(engine, settings, {"email": DELEGATE, "lists": "ta-en", "name": "Ana"})
    set_password(engine, DELEGATE)
    return DELEGATE


def test_every_member_page_sends_anonymous_visitors_to_sign_in(web: WebClient) -> None:
    member_pages = [page for page in all_pages() if page.access is Access.MEMBER]
    assert member_pages
    for page in member_pages:
        path = sample_path(page.path)
        if "GET" in page.methods:
            response = web.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next="), path
        else:
            assert web.post(path, {}).status_code == 401, path


def test_sign_in_returns_to_the_page_asked_for(web: WebClient, delegate: str) -> None:
    response = web.post("/login", {"email": delegate.upper(), "password": PASSWORD, "next": "/lists/ta-en/"})
    assert response.status_code == 303
    assert response.headers["location"] == "/lists/ta-en/"
    assert web.get("/").headers["location"] == "/lists/"


def test_the_session_cookie_is_httponly_and_samesite_lax(web: WebClient, delegate: str) -> None:
    response = web.post("/login", {"email": delegate, "password": PASSWORD, "next": "/"})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # base_url is http:// in the shipped config


def test_secure_cookie_when_the_site_is_https(settings: Settings, engine: Engine, delegate: str) -> None:
    https = settings.model_copy(
        update={"site": settings.site.model_copy(update={"base_url": "https://f.org"})}
    )
    client = WebClient(https, engine)
    response = client.post("/login", {"email": delegate, "password": PASSWORD, "next": "/"})
    assert "secure" in response.headers["set-cookie"].lower()


def test_no_open_redirect_after_sign_in(web: WebClient, delegate: str) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = web.post("/login", {"email": delegate, "password": PASSWORD, "next": target})
        assert response.headers["location"] == "/", target


def test_a_form_without_its_csrf_token_is_refused(web: WebClient, delegate: str) -> None:
    response = web.post("/login", {"email": delegate, "password": PASSWORD}, csrf=False)
    assert response.status_code == 403
    assert "expired or came from another site" in response.text
    assert "set-cookie" not in response.headers or "member" not in response.headers.get("set-cookie", "")
    web.sign_in(delegate)
    forged = web.post("/logout", {"csrf": "forged"}, csrf=False)
    assert forged.status_code == 403
    assert signed_in(web)


def test_wrong_password_then_rate_limit_with_a_clear_message(web: WebClient, delegate: str) -> None:
    for _ in range(5):
        response = web.post("/login", {"email": delegate, "password": "wrong password!", "next": "/"})
        assert response.status_code == 400
        assert "do not match" in response.text
    limited = web.post("/login", {"email": delegate, "password": PASSWORD, "next": "/"})
    assert limited.status_code == 429
    assert "Too many failed attempts. Try again in 15 minutes" in limited.text
    other = web.post("/login", {"email": "chief@forum.example.org", "password": "x" * 12, "next": "/"})
    assert other.status_code == 400  # the limit is per client and address; this client has tries left


def test_rate_limit_per_client_covers_many_addresses(web: WebClient, delegate: str) -> None:
    for number in range(20):
        web.post("/login", {"email": f"guess{number}@example.org", "password": "nope nope nope", "next": "/"})
    response = web.post("/login", {"email": delegate, "password": PASSWORD, "next": "/"})
    assert response.status_code == 429


def test_unknown_address_gets_the_same_answer_as_a_wrong_password(web: WebClient, delegate: str) -> None:
    unknown = web.post("/login", {"email": "nobody@example.org", "password": PASSWORD, "next": "/"})
    wrong = web.post("/login", {"email": delegate, "password": "not the password", "next": "/"})
    assert unknown.status_code == wrong.status_code == 400
    assert "do not match" in unknown.text and "do not match" in wrong.text


def test_logout_ends_the_session(web: WebClient, delegate: str) -> None:
    web.sign_in(delegate)
    assert web.post("/logout").headers["location"] == "/login"
    assert not signed_in(web)


def reset_link(engine: Engine, address: str) -> str:
    with Session(engine) as session:
        rows = session.scalars(select(Outbox).where(Outbox.purpose == "member_password_reset")).all()
    mine = [row for row in rows if address in row.recipients]
    assert mine, "no reset mail queued"
    body = message_from_bytes(mine[-1].raw, policy=default_policy).get_body().get_content()
    found = re.search(r"http://\S+/password/reset/(\S+)", body)
    assert found, body
    return f"/password/reset/{found.group(1)}"


def test_password_reset_by_single_use_link(web: WebClient, engine: Engine, settings: Settings) -> None:
    add_members(engine, settings, {"email": "new@example.org", "lists": "ta-fr"})  # no password yet
    answer = web.post("/password/forgot", {"email": "new@example.org"})
    assert answer.status_code == 200 and "on its way" in answer.text
    link = reset_link(engine, "new@example.org")
    with Session(engine) as session:
        mail = session.scalars(select(Outbox).where(Outbox.purpose == "member_password_reset")).one()
    assert "Choisir votre mot de passe" in message_from_bytes(mail.raw, policy=default_policy)["Subject"]
    assert web.get(link).status_code == 200
    short = web.post(link, {"password": "short", "confirm": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text
    differ = web.post(link, {"password": "a long password", "confirm": "another password"})
    assert differ.status_code == 400
    done = web.post(link, {"password": "a long password", "confirm": "a long password"})
    assert done.status_code == 303  # and signed in
    assert signed_in(web)
    again = web.get(link)
    assert again.status_code == 400 and "already been used" in again.text
    fresh = WebClient(web.site.settings, engine)
    fresh.sign_in("new@example.org", "a long password")


def test_a_password_change_ends_other_sessions(web: WebClient, engine: Engine, delegate: str) -> None:
    web.sign_in(delegate)
    set_password(engine, delegate, "a different password")
    assert not signed_in(web)


def test_reset_for_a_stranger_looks_the_same_and_sends_nothing(web: WebClient, engine: Engine) -> None:
    answer = web.post("/password/forgot", {"email": "stranger@example.org"})
    assert answer.status_code == 200 and "on its way" in answer.text
    with Session(engine) as session:
        assert not session.scalars(select(Outbox).where(Outbox.purpose == "member_password_reset")).all()


def test_a_tampered_reset_link_is_explained(web: WebClient) -> None:
    response = web.get("/password/reset/not-a-token")
    assert response.status_code == 400 and "not valid" in response.text


def test_language_from_accept_language_then_from_the_switcher(
    web: WebClient, engine: Engine, delegate: str
) -> None:
    assert '<html lang="es"' in web.get("/login", headers={"accept-language": "es-MX,es;q=0.9"}).text
    assert '<html lang="en"' in web.get("/login", headers={"accept-language": "de, ja;q=0.5"}).text
    web.sign_in(delegate)
    web.post("/language", {"language": "fr", "next": "/login"})
    assert '<html lang="fr"' in web.get("/password/forgot", headers={"accept-language": "es"}).text
    with Session(engine) as session:
        member = session.scalars(select(Member).where(Member.email == delegate)).one()
    assert member.language == "fr"  # the member's own setting: it follows them to other browsers


def test_unknown_page_is_a_page_not_a_traceback(web: WebClient, delegate: str) -> None:
    web.sign_in(delegate)
    response = web.get("/no/such/page")
    assert response.status_code == 404
    assert "There is no page at this address" in response.text


def test_every_page_forbids_framing_scripts_from_elsewhere_and_sniffing(web: WebClient) -> None:
    headers = web.get("/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert web.get("/static/style.css").headers["x-frame-options"] == "DENY"


def test_the_web_listener_is_tcp_so_pages_leave_without_a_nagle_delay(
    settings: Settings, engine: Engine
) -> None:
    """asyncio sets TCP_NODELAY only on sockets accepted from a listener whose proto is IPPROTO_TCP;
    with proto 0 every page body waited ~40 ms for the client's delayed ACK (found by bench/archive.py)."""

    async def listener_proto() -> int:
        server = WebServer(WebClient(settings, engine).app, "127.0.0.1", 0)
        await server.start()
        try:
            return int(server.server.servers[0].sockets[0].proto)
        finally:
            await server.stop()

    assert asyncio.run(listener_proto()) == socket.IPPROTO_TCP


# ---- Attacks on sign-in, over real HTTP from two loopback clients (127.0.0.1 and 127.0.0.2) -------------


@contextmanager
def serving(settings: Settings, engine: Engine) -> Iterator[str]:
    """The real web listener (uvicorn, as ``serve`` runs it) on 127.0.0.1; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = WebServer(WebClient(settings, engine).app, "127.0.0.1", 0)
    port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def served(settings: Settings, engine: Engine) -> Iterator[str]:
    with serving(settings, engine) as base:
        yield base


class Browser:
    """A real HTTP client whose connections come from ``host`` (any 127.x address is this machine)."""

    def __init__(self, base: str, host: str, **options: Any) -> None:
        transport = httpx2.HTTPTransport(local_address=host)
        self.http = httpx2.Client(base_url=base, transport=transport, trust_env=False, timeout=30, **options)

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx2.Response:
        found = CSRF_FIELD.search(self.http.get("/password/forgot").text)
        assert found, "no CSRF field"
        return self.http.post(path, data={**data, "csrf": found.group(1)}, headers=headers)

    def sign_in(self, address: str, password: str = PASSWORD, **headers: str) -> httpx2.Response:
        return self.post("/login", {"email": address, "password": password, "next": "/"}, **headers)

    def is_signed_in(self) -> bool:
        return self.http.get("/").headers["location"] == "/lists/"


def timed(call: Any) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_wrong_passwords_from_one_client_slow_the_owner_on_another_but_never_lock_them_out(
    served: str, delegate: str
) -> None:
    attacker, owner, third = (Browser(served, f"127.0.0.{n}") for n in (1, 2, 3))
    for _ in range(5):
        assert attacker.sign_in(delegate, "wrong password!").status_code == 400
    assert attacker.sign_in(delegate).status_code == 429  # the attacking client is stopped on this address
    answer, took = timed(lambda: owner.sign_in(delegate))
    assert answer.status_code == 303 and owner.is_signed_in()  # the owner, from elsewhere, gets in
    assert took >= limits.FIRST_DELAY  # … a little slower: the address is under attack
    wrong, took = timed(lambda: third.sign_in(delegate, "another guess!"))
    assert wrong.status_code == 400 and took >= limits.FIRST_DELAY


def test_an_address_under_attack_gets_slower_up_to_a_cap_and_forgets() -> None:
    now = [0.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    delays = []
    for attempt in range(11):
        delays.append(limiter.delay_seconds("ana@example.org"))
        limiter.failed("ana@example.org", f"198.51.100.{attempt}")
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8, 10, 10]
    assert limiter.delay_seconds("bob@example.org") == 0  # other addresses are not concerned
    assert limiter.wait_minutes("ana@example.org", "198.51.100.99") == 0  # nor other clients
    now[0] += limits.WINDOW_SECONDS + 1
    assert limiter.delay_seconds("ana@example.org") == 0


def test_reset_requests_are_limited_per_address_without_blocking_sign_in(
    served: str, engine: Engine, delegate: str
) -> None:
    browser = Browser(served, "127.0.0.1")
    answers = [browser.post("/password/forgot", {"email": delegate}) for _ in range(5)]
    assert browser.sign_in(delegate).status_code == 303 and browser.is_signed_in()
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    assert "Too many requests for this address. Try again in 60 minutes." in answers[-1].text
    with Session(engine) as session:
        mails = session.scalars(select(Outbox).where(Outbox.purpose == "member_password_reset")).all()
    assert len(mails) == limits.RESETS_PER_ADDRESS  # a stranger cannot flood the mailbox either


def test_a_cookie_copied_before_sign_out_is_refused_after_it(served: str, delegate: str) -> None:
    owner, laptop = Browser(served, "127.0.0.1"), Browser(served, "127.0.0.1")
    assert owner.sign_in(delegate).status_code == 303 and laptop.sign_in(delegate).status_code == 303
    thief = Browser(served, "127.0.0.2", cookies={"listserv_session": owner.http.cookies["listserv_session"]})
    assert thief.is_signed_in()
    assert owner.post("/logout", {}).headers["location"] == "/login"
    assert not owner.is_signed_in()
    assert not thief.is_signed_in()  # the copy ended with the session it copied
    assert laptop.is_signed_in()  # signing out ends that session only


def test_a_session_ends_on_the_server_after_session_days(
    web: WebClient, engine: Engine, settings: Settings, delegate: str
) -> None:
    web.sign_in(delegate)
    assert signed_in(web)
    with Session(engine) as session, session.begin():
        row = session.scalars(select(WebSession)).one()
        row.created_at -= timedelta(days=settings.web.session_days, seconds=1)
    web.site.viewers.clear()  # as if the few seconds a viewer is cached for (ViewerCache) had passed
    assert not signed_in(web)  # the cookie itself, re-signed on every page, would still be accepted


def test_the_viewer_is_loaded_once_then_cached_until_a_form_changes_something(
    web: WebClient, engine: Engine, delegate: str
) -> None:
    web.sign_in(delegate)
    loads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "web_session" in statement:
            loads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert web.get("/lists/").status_code == 200
        assert len(loads) == 1  # once for the request
        assert web.get("/account").status_code == 200 and web.get("/lists/").status_code == 200
        assert len(loads) == 1  # then from the cache
        assert web.post("/logout").status_code == 303  # a form: the cache is emptied
        assert web.get("/lists/").status_code == 303  # signed out at once, not seconds later
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(served: str, delegate: str) -> None:
    """Without ``web.trusted_proxies`` a client cannot dodge its limit by naming another address."""
    browser = Browser(served, "127.0.0.1")
    for number in range(limits.PER_CLIENT):
        forged = {"X-Forwarded-For": f"203.0.113.{number}"}
        assert browser.sign_in(f"guess{number}@example.org", "nope nope nope", **forged).status_code == 400
    answer = browser.sign_in(delegate, **{"X-Forwarded-For": "203.0.113.200"})
    assert answer.status_code == 429


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(
    settings: Settings, engine: Engine, delegate: str
) -> None:
    web = settings.web.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    with serving(settings.model_copy(update={"web": web}), engine) as base:
        proxy = Browser(base, "127.0.0.1")
        for _ in range(5):
            answer = proxy.sign_in(delegate, "wrong password!", **{"X-Forwarded-For": "203.0.113.5"})
            assert answer.status_code == 400
        assert proxy.sign_in(delegate, **{"X-Forwarded-For": "203.0.113.5"}).status_code == 429
        # What the client wrote left of what our proxy appended proves nothing.
        spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}
        assert proxy.sign_in(delegate, **spoofed).status_code == 429
        assert proxy.sign_in(delegate, **{"X-Forwarded-For": "203.0.113.6"}).status_code == 303
        # The header from a peer that is not a proxy counts for nothing: 127.0.0.2 itself has tries left.
        other = Browser(base, "127.0.0.2")
        assert other.sign_in(delegate, **{"X-Forwarded-For": "203.0.113.5"}).status_code == 303


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() -> None:
    proxies = parse_networks(["10.0.0.0/8", "::1/128"])
    assert client_address("10.0.0.2", ["198.51.100.1, 203.0.113.7, 10.0.0.9"], proxies) == "203.0.113.7"
    assert client_address("10.0.0.2", ["203.0.113.7", "10.0.0.9"], proxies) == "203.0.113.7"  # two lines
    assert client_address("10.0.0.2", ["10.0.0.4, 10.0.0.9"], proxies) == "10.0.0.4"  # all ours
    assert client_address("10.0.0.2", [], proxies) == "10.0.0.2"
    assert client_address("192.0.2.1", ["203.0.113.7"], proxies) == "192.0.2.1"  # not a proxy: ignored
    assert client_address("192.0.2.1", ["203.0.113.7"], ()) == "192.0.2.1"  # the default: trust nobody
    # One IPv6 host roams its /64: it counts as one client.
    assert client_address("2001:db8:1:2::7", [], ()) == client_address("2001:db8:1:2:ffff::1", [], ())
    assert client_address("2001:db8:1:2::7", [], ()) == "2001:db8:1:2::/64"


def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path) -> None:
    raw = make_config(tmp_path, "sqlite://")
    raw["web"] = {**raw.get("web", {}), "trusted_proxies": ["10.0.0.1", "fd00::/8", "proxy.local"]}
    with pytest.raises(ConfigError) as error:
        parse_settings(raw)
    assert error.value.problems == [
        "web.trusted_proxies[2]: 'proxy.local' is not an IP address or network like '10.0.0.1' or "
        "'10.0.0.0/8' (a network must not have host bits set)"
    ]
    raw["web"]["trusted_proxies"] = ["10.0.0.1", "fd00::/8"]
    assert parse_settings(raw).web.trusted_proxies == ["10.0.0.1/32", "fd00::/8"]
