"""The web's session and form defences, attacked: CSRF on every form (no token, another session's, a
stale one) refused with nothing changed; session fixation; sign-out that ends the session on the server;
password links that work once, for one account, for a while; the cookie's flags. Both databases."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.membership.standing import protocol_token
from listserv.store.keys import password_link_token
from listserv.store.models import Member, WebSession
from listserv.web.auth import RESET_HOURS
from listserv.web.routes import all_pages
from tests.conftest import CSRF_FIELD, PASSWORD, WebClient
from tests.security_world import CHIEF, GUEST, READER, STRANGER, World, build_world, database_state
from tests.test_security_routes import CASES, route_table, sample_path

pytestmark = pytest.mark.security

CSRF_REFUSAL = "expired or came from another site"
CHIEFS_FORMS = ("/moderation/", "/announce")
LAST = ["/lists/{list}/unsubscribe", "/account/erase", "/logout", "/moderation/erase-member"]


@pytest.fixture
def world(settings: Settings, engine: Engine) -> World:
    return build_world(settings, engine)


def member_id(engine: Engine, address: str) -> int:
    with Session(engine) as session:
        found = session.scalar(select(Member.id).where(Member.email_key == address))
    assert found is not None
    return found


def token_of(client: WebClient) -> str:
    found = CSRF_FIELD.search(client.get("/password/forgot").text)
    assert found
    return found.group(1)


def signed_in(client: WebClient) -> bool:
    return client.get("/account").status_code == 200


def owner_of(path: str) -> str | None:
    """Who could send this form for real: the refusal must be the token's, not the person's."""
    page = next(page for page in all_pages() if page.path == path and "POST" in page.methods)
    if page.access.value == "public":
        return None
    return CHIEF if path.startswith(CHIEFS_FORMS) else READER


def form_for(world: World, path: str) -> tuple[str, dict[str, str]]:
    """The address and fields of a form that would act, with working links where a token is needed."""
    case = CASES[("POST", path)]
    fields = dict(case.form)
    if "message_id" in fields:
        fields["message_id"] = f"<{world.secret_id}>"
    address = sample_path(world, path, None)
    guest = member_id(world.engine, GUEST)  # the links' owner: nobody signs in as them afterwards
    if path == "/password/reset/{token}":
        with Session(world.engine) as session:
            member = session.get(Member, guest)
            assert member is not None
            token = password_link_token(
                world.client().site.secret, guest, member.password_hash, timedelta(hours=2)
            )
        address, fields = f"/password/reset/{token}", {"password": "x" * 12, "confirm": "x" * 12}
    elif path == "/protocol-accept/{token}":
        address = f"/protocol-accept/{protocol_token(world.client().site.secret, guest)}"
    elif path == "/login":
        fields = {"email": READER, "password": PASSWORD, "next": "/"}
    elif path == "/moderation/erase-member":
        fields = {"email": STRANGER, "reason": "asked", "requested_by": STRANGER}
    elif path == "/announce":
        fields = {"room": "ta", "subject_en": "Notice", "body_en": "Body"}
    return address, fields


def test_every_form_refuses_a_missing_foreign_or_stale_token_and_changes_nothing(world: World) -> None:
    forms = sorted(
        (path for method, path in route_table(world.client()) if method == "POST"),
        key=lambda path: LAST.index(path) if path in LAST else -1,
    )
    one_click = [page.path for page in all_pages() if not page.csrf]
    assert one_click == [
        "/u/{token}"
    ]  # RFC 8058: mail providers POST it with no cookie; its token is the proof
    other_session = token_of(world.client(GUEST))
    wrong = []
    for path in (path for path in forms if path not in one_click):
        who = owner_of(path)
        client = world.client()
        stale = token_of(client)
        if who:
            client.sign_in(who)  # a new session, a new token: the one from before is stale
        else:
            client.sign_in(STRANGER)
            client.post("/logout")
        address, fields = form_for(world, path)
        for name, token in (("none", None), ("another session's", other_session), ("stale", stale)):
            before = database_state(world.engine)
            sent = {**fields, "csrf": token} if token else fields
            response = client.post(address, sent, csrf=False)
            if response.status_code != 403 or CSRF_REFUSAL not in response.text:
                wrong.append(f"{path} with {name} token: {response.status_code}")
            if database_state(world.engine) != before:
                wrong.append(f"{path} with {name} token: the database changed")
        if who and not signed_in(client):
            wrong.append(f"{path}: a refused form ended {who}'s session")
        control = client.post(address, fields)  # the same form with this session's token is not refused
        if CSRF_REFUSAL in control.text:
            wrong.append(f"{path}: refused even with the right token ({control.status_code})")
    assert wrong == [], "\n".join(wrong)


# -- sessions ---------------------------------------------------------------------------------------------

COOKIE = "listserv_session"


def plant(client: WebClient, value: str) -> None:
    """The browser's cookie for the site, replaced by ``value`` (what an attacker hands the victim)."""
    client.http.cookies.clear()
    client.http.cookies.set(COOKIE, value, domain="testserver.local")


def test_signing_in_replaces_the_session_a_fixer_planted(world: World) -> None:
    """The fixer hands the victim a cookie (their own anonymous one, then their own signed-in one); the
    victim signs in with it. Neither planted cookie is the victim's session afterwards."""
    fixer = world.client()
    token_of(fixer)  # the visit that gives the fixer a session cookie
    planted = fixer.http.cookies[COOKIE]
    victim = world.client()
    plant(victim, planted)
    victim.sign_in(READER)
    assert victim.http.cookies[COOKIE] != planted  # a new identifier at sign-in
    assert not signed_in(fixer)  # the fixer's copy of the cookie from before is still nobody's
    fixer_signed_in = world.client(STRANGER)
    planted = fixer_signed_in.http.cookies[COOKIE]
    victim = world.client()
    plant(victim, planted)
    assert victim.get("/account").text.count(STRANGER) >= 1  # the planted session is the fixer's...
    victim.sign_in(READER)
    assert READER in victim.get("/account").text
    assert not signed_in(fixer_signed_in)  # ...and ended when the victim signed in over it


def test_a_cookie_not_signed_by_the_site_is_nobody(world: World) -> None:
    visitor = world.client()
    plant(visitor, "eyJzaWQiOiAiYWJjIn0=.forged.signature")  # {"sid": "abc"}
    assert not signed_in(visitor)
    assert visitor.get("/login").status_code == 200


def test_sign_out_ends_the_session_on_the_server_and_the_old_cookie_does_nothing(world: World) -> None:
    owner = world.client(READER)
    copied, token = owner.http.cookies[COOKIE], token_of(owner)
    assert owner.post("/logout").status_code == 303
    with Session(world.engine) as session:
        assert [row.ended_at is not None for row in session.scalars(select(WebSession))] == [True]
    replay = world.client()
    plant(replay, copied)
    assert not signed_in(replay)
    plant(replay, copied)  # the refusal cleared it: replay it again, with its token
    before = database_state(world.engine)
    answer = replay.post("/account/delivery", {"list": "ta-en", "mode": "none", "csrf": token}, csrf=False)
    assert answer.status_code == 401
    assert database_state(world.engine) == before


# -- password links ---------------------------------------------------------------------------------------


def reset_token(world: World, address: str, hours_ago: float = 0) -> str:
    with Session(world.engine) as session:
        member = session.scalars(select(Member).where(Member.email_key == address)).one()
        member_id, password_hash = member.id, member.password_hash
    secret = world.client().site.secret
    signed_at = int(time.time() - hours_ago * 3600)
    original = TimestampSigner.get_timestamp
    TimestampSigner.get_timestamp = lambda self: signed_at  # type: ignore[method-assign]
    try:
        return password_link_token(secret, member_id, password_hash, timedelta(hours=RESET_HOURS))
    finally:
        TimestampSigner.get_timestamp = original  # type: ignore[method-assign]


def password_hash(world: World, address: str) -> str | None:
    with Session(world.engine) as session:
        return session.scalars(select(Member.password_hash).where(Member.email_key == address)).one()


def reset(client: WebClient, token: str, password: str) -> int:
    answer = client.post(f"/password/reset/{token}", {"password": password, "confirm": password})
    return int(answer.status_code)


def test_a_password_link_works_once_for_its_account_and_for_a_while(world: World) -> None:
    token = reset_token(world, READER)
    assert reset(world.client(), token, "first new password") == 303
    spent = password_hash(world, READER)
    again = world.client()
    assert reset(again, token, "second new password") == 400  # the link is spent
    assert "already been used" in again.get(f"/password/reset/{token}").text
    assert password_hash(world, READER) == spent and not signed_in(again)

    forged = token.replace(token.split(".")[0], reset_token(world, STRANGER).split(".")[0])
    assert reset(world.client(), forged, "take over stranger") == 400  # another account's payload
    elsewhere = password_link_token(b"another forum's secret", 1, None, timedelta(hours=RESET_HOURS))
    assert reset(world.client(), elsewhere, "x" * 12) == 400  # not signed with this site's secret

    stale = reset_token(world, STRANGER, hours_ago=RESET_HOURS + 0.1)
    before = password_hash(world, STRANGER)
    late = world.client()
    assert reset(late, stale, "too late password") == 400
    assert "expired" in late.get(f"/password/reset/{stale}").text
    assert password_hash(world, STRANGER) == before


# -- cookie flags -----------------------------------------------------------------------------------------


def cookies_set(settings: Settings, engine: Engine) -> list[str]:
    client = WebClient(settings, engine)
    answers = [
        client.get("/login"),
        client.post("/login", {"email": READER, "password": PASSWORD, "next": "/"}),
    ]
    answers.append(client.post("/language", {"language": "fr"}))
    answers.append(client.post("/logout"))
    return [value.lower() for answer in answers for value in answer.headers.get_list("set-cookie")]


def test_every_session_cookie_is_httponly_samesite_and_secure_on_https(world: World) -> None:
    plain = cookies_set(world.settings, world.engine)
    https_site = world.settings.site.model_copy(update={"base_url": "https://forum.example.org"})
    https = cookies_set(world.settings.model_copy(update={"site": https_site}), world.engine)
    assert len(plain) >= 3 and len(https) >= 3
    for cookie in plain + https:
        assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie and "samesite=lax" in cookie, cookie
        assert "path=/" in cookie, cookie
    assert all("secure" not in cookie for cookie in plain)
    assert all("; secure" in cookie for cookie in https)


def test_a_nul_in_any_field_is_a_plain_refusal_not_a_database_error(world: World) -> None:
    """PostgreSQL refuses NUL in text: a ``%00`` in a path, query or form field was a 500 there."""
    reader = world.client(READER)
    answers = [
        world.client().post("/login", {"email": "reader@example.org\0", "password": PASSWORD}),
        world.client().post("/password/forgot", {"email": "\0@example.org"}),
        reader.get("/search?q=budget%00"),
        reader.get(f"/lists/ta-en/message/{world.secret_id}%00"),
        reader.get("/lists/ta-en%00/"),
        reader.post("/account/delivery", {"list": "ta-en\0", "mode": "none"}),
    ]
    assert [answer.status_code for answer in answers] == [400] * len(answers)
