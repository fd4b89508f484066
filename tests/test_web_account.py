"""The member's own page: identity, delivery per list (as the -request commands set it), feed links."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.models import ListRow, Member, Subscription
from tests.conftest import CSRF_FIELD, WebClient, add_members, set_password

DELEGATE = "ana@example.org"


@pytest.fixture(autouse=True)
def delegate(engine: Engine, settings: Settings) -> None:
    add_members(
        engine,
        settings,
        {"email": DELEGATE, "lists": "ta-en;ta-fr", "name": "Ana Lima", "country": "BR"},
    )
    set_password(engine, DELEGATE)


def delivery(engine: Engine, list_name: str) -> tuple[str, str, datetime | None]:
    with Session(engine) as session:
        row = session.execute(
            select(Subscription.delivery, Subscription.digest_period, Subscription.disabled_at)
            .join(ListRow)
            .join(Member)
            .where(Member.email_key == DELEGATE, ListRow.name == list_name)
        ).one()
        return row[0], row[1], row[2]


def mine(list_name: str) -> Select[tuple[Subscription]]:
    return (
        select(Subscription)
        .join(ListRow)
        .join(Member)
        .where(Member.email_key == DELEGATE, ListRow.name == list_name)
    )


def change(web: WebClient, list_name: str, mode: str, csrf: bool = True) -> object:
    fields = {"list": list_name, "mode": mode}
    if csrf:
        found = CSRF_FIELD.search(web.get("/account").text)
        assert found
        fields["csrf"] = found.group(1)
    return web.post("/account/delivery", fields, csrf=False)


def test_anonymous_visitors_are_sent_to_sign_in(web: WebClient) -> None:
    response = web.get("/account")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    assert web.post("/account/delivery", {"list": "ta-en", "mode": "none"}).status_code == 401


def test_the_page_shows_who_and_how(web: WebClient) -> None:
    web.sign_in(DELEGATE)
    page = web.get("/account")
    assert page.status_code == 200
    text = page.text
    for expected in (DELEGATE, "Ana Lima", "Brazil", "Delegate", "ta-en", "ta-fr", 'href="/password/forgot"'):
        assert expected in text
    assert "ta-es" not in text
    assert len(re.findall(r'<form method="post" action="/account/delivery"', text)) == 2
    assert len(re.findall(r"<label for=\"mode-", text)) == 2
    assert re.search(r'<option value="each" selected>', text)
    assert len(re.findall(r'href="http[^"]+/feeds/ta-(?:en|fr)/\d+-[a-z2-7]+\.atom"', text)) == 2
    assert "do not share it" in text


def test_changing_the_delivery_mode_persists(web: WebClient, engine: Engine) -> None:
    web.sign_in(DELEGATE)
    response = change(web, "ta-fr", "digest-weekly")
    assert response.status_code == 303 and response.headers["location"] == "/account"
    assert delivery(engine, "ta-fr")[:2] == ("digest", "weekly")
    assert delivery(engine, "ta-en")[:2] == ("each", "daily")
    page = web.get("/account").text
    assert "Your delivery for ta-fr has been changed." in page
    assert '<option value="digest-weekly" selected>' in page
    change(web, "ta-fr", "none")
    assert delivery(engine, "ta-fr")[0] == "none"
    change(web, "ta-fr", "digest-daily")
    assert delivery(engine, "ta-fr")[:2] == ("digest", "daily")


def test_a_list_not_subscribed_to_is_refused(web: WebClient, engine: Engine) -> None:
    web.sign_in(DELEGATE)
    assert change(web, "ta-es", "none").status_code == 403
    assert change(web, "xx-en", "none").status_code == 403
    with Session(engine) as session:
        es = mine("ta-es")
        assert session.scalars(es).all() == []
    assert change(web, "ta-en", "sometimes").status_code == 400
    assert delivery(engine, "ta-en")[0] == "each"


def test_a_change_without_the_csrf_token_is_refused(web: WebClient, engine: Engine) -> None:
    web.sign_in(DELEGATE)
    assert change(web, "ta-en", "none", csrf=False).status_code == 403
    assert delivery(engine, "ta-en")[0] == "each"


def test_asking_for_mail_again_lifts_a_bounce_suspension(web: WebClient, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        subscription = session.scalars(mine("ta-en")).one()
        subscription.disabled_at, subscription.bounce_score = datetime(2026, 11, 1, tzinfo=UTC), 5.0
    web.sign_in(DELEGATE)
    assert "kept bouncing" in web.get("/account").text
    change(web, "ta-en", "each")
    assert delivery(engine, "ta-en") == ("each", "daily", None)
