"""The web app's front door: every page behind a session, CSRF on every form, sign-in rate limits,
password reset by single-use link, the language of the pages."""

from __future__ import annotations

import asyncio
import re
import socket
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.models import Member, Outbox
from listserv.web.app import Access
from listserv.web.routes import all_pages
from listserv.web.server import WebServer
from tests.conftest import PASSWORD, WebClient, add_members, set_password

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
    assert other.status_code == 400  # the limit is per address first; this client has tries left


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
