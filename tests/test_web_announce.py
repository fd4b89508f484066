"""``/announce``: a chief moderator sends an announcement to every list of a room from the web; the
same text twice is sent once; moderators and members are refused."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.models import ArchivedPost
from tests.conftest import WebClient, add_members, set_password

CHIEF, MOD_FR, MEMBER = "chief@forum.example.org", "mod-fr@forum.example.org", "ana@fr.example"
FORM = {
    "room": "ta",
    "subject_en": "Webinar on 15 January",
    "body_en": "Details follow.",
    "subject_fr": "Webinaire du 15 janvier",
    "body_fr": "Les détails suivent.",
}


@pytest.fixture(autouse=True)
def people(engine: Engine, settings: Settings) -> None:
    add_members(engine, settings, {"email": MEMBER, "lists": "ta-fr"})
    for address in (CHIEF, MOD_FR, MEMBER):
        set_password(engine, address)


def test_a_chief_announces_to_every_list_of_the_room(web: WebClient, engine: Engine) -> None:
    web.sign_in(CHIEF)
    form = web.get("/announce")
    assert form.status_code == 200 and 'name="subject_es"' in form.text
    sent = web.post("/announce", FORM)
    assert sent.status_code == 200, sent.text
    assert sent.text.count('href="/lists/ta-') >= 3
    with Session(engine) as session:
        posts = {p.list_name: p.subject for p in session.scalars(select(ArchivedPost))}
    assert posts == {
        "ta-en": "Webinar on 15 January",
        "ta-fr": "Webinaire du 15 janvier",
        "ta-es": "Webinar on 15 January",  # no Spanish: the English, with a note
    }
    again = web.post("/announce", FORM)
    assert "already been sent" in again.text
    with Session(engine) as session:
        assert len(session.scalars(select(ArchivedPost)).all()) == 3


def test_an_incomplete_form_is_explained(web: WebClient) -> None:
    web.sign_in(CHIEF)
    page = web.post("/announce", {"room": "ta", "subject_fr": "Sans texte"})
    assert page.status_code == 400
    assert "every subject needs a text" in page.text
    assert 'value="Sans texte"' in page.text  # what was typed is kept


@pytest.mark.parametrize("who", [MOD_FR, MEMBER])
def test_only_chiefs(web: WebClient, who: str) -> None:
    web.sign_in(who)
    assert web.get("/announce").status_code == 403
    assert web.post("/announce", FORM).status_code == 403
