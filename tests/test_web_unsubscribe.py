"""Leaving a list from the link in every list copy's footer."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.models import ListRow, Member, Outbox, Subscription
from tests.conftest import WebClient, add_members, set_password


def test_a_member_leaves_a_list_from_the_footer_link(
    web: WebClient, engine: Engine, settings: Settings
) -> None:
    add_members(engine, settings, {"email": "ana@example.org", "lists": "ta-en;ta-fr"})
    set_password(engine, "ana@example.org")
    assert web.get("/lists/ta-en/unsubscribe").status_code == 303  # signed out: sign in first
    web.sign_in("ana@example.org")
    form = web.get("/lists/ta-en/unsubscribe")
    assert form.status_code == 200 and "Leave the list" in form.text and 'href="/account"' in form.text
    assert web.post("/lists/ta-en/unsubscribe", csrf=False).status_code == 403  # no token: nothing done
    done = web.post("/lists/ta-en/unsubscribe")
    assert done.status_code == 200 and "You have left this list" in done.text
    with Session(engine) as session:
        left = (
            select(Subscription)
            .join(ListRow)
            .join(Member)
            .where(ListRow.name == "ta-en", Member.email == "ana@example.org")
        )
        assert session.scalar(left) is None
        notice = session.scalars(select(Outbox).where(Outbox.purpose == "member_unsubscribed")).one()
    assert notice.recipients == ["ana@example.org"]
    assert web.get("/lists/ta-en/").status_code == 403  # the archive is closed to her now
    assert web.get("/lists/ta-fr/").status_code == 200
    assert "nothing to leave" in web.get("/lists/ta-en/unsubscribe").text
    assert web.get("/lists/xx-yy/unsubscribe").status_code == 404


def test_leaving_a_list_you_are_not_on_says_so_in_your_language(
    web: WebClient, engine: Engine, settings: Settings
) -> None:
    add_members(engine, settings, {"email": "ana@example.org", "lists": "ta-fr"})
    set_password(engine, "ana@example.org")
    web.sign_in("ana@example.org")
    answer = web.post("/lists/ta-en/unsubscribe")
    assert answer.status_code == 200
    assert "You have left this list" not in answer.text
    assert "You are not a member of this list, so there is nothing to leave." in answer.text
    web.post("/language", {"language": "fr", "next": "/"})
    french = web.post("/lists/ta-en/unsubscribe")
    assert "pas membre de cette liste" in french.text and "a été retirée" not in french.text
    with Session(engine) as session:
        assert not session.scalars(select(Outbox).where(Outbox.purpose == "member_unsubscribed")).all()
        still = select(Subscription).join(ListRow).join(Member).where(ListRow.name == "ta-fr")
        assert session.scalar(still) is not None
