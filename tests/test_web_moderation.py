"""The moderation queue on the web: who may see and decide, the one decide() behind the forms (it
publishes, audits, and lets only the first decision count), the outcome shown once. Both databases."""

from __future__ import annotations

import re
from email.utils import make_msgid
from textwrap import dedent

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import Kind
from listserv.mail.message import parse_post
from listserv.moderation.audit import AuditEntry
from listserv.moderation.queue import Moderation
from listserv.moderation.rules import Reason
from listserv.store.models import ArchivedPost, Audit, Held, Outbox, Received, Route, Topic
from tests.conftest import CSRF_FIELD, SteppableClock, WebClient, add_members, set_password

DELEGATE = "ana@example.org"
MOD_EN = "mod-en@forum.example.org"
MOD_FR = "mod-fr@forum.example.org"
CHIEF = "chief@forum.example.org"


@pytest.fixture(autouse=True)
def people(engine: Engine, settings: Settings) -> None:
    add_members(
        engine,
        settings,
        {"email": DELEGATE, "lists": "ta-en;ta-fr", "name": "Ana Lima", "country": "BR"},
    )
    for address in (DELEGATE, MOD_EN, MOD_FR, CHIEF):
        set_password(engine, address)


@pytest.fixture
def clock() -> SteppableClock:
    return SteppableClock()


@pytest.fixture
def web(settings: Settings, engine: Engine, clock: SteppableClock) -> WebClient:
    return WebClient(settings, engine, clock)


def hold(
    engine: Engine,
    moderation: Moderation,
    list_name: str = "ta-en",
    subject: str = "Budget question",
    body: str = "Dear colleagues,\nhow is the budget shared?\n",
    kind: Kind = Kind.POST,
    raw: bytes | None = None,
) -> int:
    """A message held exactly as the pipeline holds one: received, routed, then ``hold``."""
    message_id = make_msgid(domain="example.org")
    headers = dedent(f"""\
        From: Ana Lima <{DELEGATE}>
        To: {list_name}@forum.example.org
        Subject: {subject}
        Message-ID: {message_id}
        Content-Type: text/plain; charset=utf-8
        """)
    raw = raw or f"{headers}\n{body}".encode()
    with Session(engine) as session, session.begin():
        received = Received(rcpt_tos=[f"{list_name}@forum.example.org"], message_id=message_id, raw=raw)
        session.add(received)
        session.flush()
        post = parse_post(raw)
        route = Route(
            received_id=received.id,
            list_name=list_name,
            kind=kind.value,
            message_id=message_id,
            sender=post.sender,
            subject=post.subject,
        )
        session.add(route)
        session.flush()
        moderation.hold(session, received, post, route, [Reason("held_by_policy", {"list_name": list_name})])
        return session.scalars(select(Held.id).where(Held.route_id == route.id)).one()


def held(engine: Engine, held_id: int) -> Held:
    with Session(engine) as session:
        found = session.get(Held, held_id)
        assert found is not None
        return found


def csrf(web: WebClient, path: str = "/moderation/") -> str:
    """The token every page's forms carry (the language switcher is on every page, errors included)."""
    found = CSRF_FIELD.search(web.get(path).text)
    assert found
    return found.group(1)


def decide(web: WebClient, list_name: str, held_id: int, action: str, **fields: str) -> object:
    token = csrf(web, "/account")
    return web.post(f"/moderation/{list_name}/{held_id}", {"csrf": token, "action": action, **fields})


def web_audit(engine: Engine) -> list[tuple[str, str, str, str]]:
    with Session(engine) as session:
        rows = session.scalars(select(Audit).where(Audit.channel == "web").order_by(Audit.id))
        return [(row.actor, row.action, row.result, row.detail) for row in rows]


def test_anonymous_visitors_are_sent_to_sign_in_and_cannot_post(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation)
    for path in ("/moderation/", "/moderation/ta-en/", "/moderation/ta-en/audit"):
        response = web.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    assert web.post(f"/moderation/ta-en/{held_id}", {"action": "approve"}).status_code == 401
    assert held(engine, held_id).state == "held"


def test_a_member_who_moderates_nothing_gets_403_everywhere(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation)
    web.sign_in(DELEGATE)
    for path in ("/moderation/", "/moderation/ta-en/", "/moderation/ta-en/audit"):
        assert web.get(path).status_code == 403, path
    assert decide(web, "ta-en", held_id, "approve").status_code == 403
    assert held(engine, held_id).state == "held"
    assert "/moderation/" not in web.get("/account").text  # no menu entry either


def test_a_moderator_of_ta_fr_cannot_touch_ta_en(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, "ta-en")
    web.sign_in(MOD_FR)
    assert web.get("/moderation/ta-en/").status_code == 403
    assert web.get("/moderation/ta-en/audit").status_code == 403
    assert decide(web, "ta-en", held_id, "approve").status_code == 403
    assert decide(web, "ta-fr", held_id, "approve").status_code == 403  # the item's own list counts
    assert held(engine, held_id).state == "held"
    assert web_audit(engine) == []
    overview = web.get("/moderation/").text
    assert "/moderation/ta-fr/" in overview and "/moderation/ta-en/" not in overview


def test_a_post_without_the_csrf_token_decides_nothing(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation)
    web.sign_in(MOD_EN)
    response = web.post(f"/moderation/ta-en/{held_id}", {"action": "approve"}, csrf=False)
    assert response.status_code == 403
    response = web.post(f"/moderation/ta-en/{held_id}", {"action": "approve", "csrf": "forged"})
    assert response.status_code == 403
    assert held(engine, held_id).state == "held"
    assert web_audit(engine) == []


def test_the_queue_shows_what_waits_and_approving_publishes(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Budget question")
    web.sign_in(MOD_EN)
    overview = web.get("/moderation/")
    assert overview.status_code == 200
    assert re.search(r"ta-en</a>.*?<td>1</td>", overview.text, re.S)  # one post waiting
    page = web.get("/moderation/ta-en/").text
    assert "Budget question" in page and "Ana Lima" in page and DELEGATE in page and "Brazil" in page
    assert "All posts to ta-en are reviewed by its moderators." in page  # the reason, in English
    assert "how is the budget shared?" in page  # the preview
    assert f'action="/moderation/ta-en/{held_id}"' in page

    response = decide(web, "ta-en", held_id, "approve")
    assert response.status_code == 303 and response.headers["location"] == "/moderation/ta-en/"
    after = web.get("/moderation/ta-en/").text
    assert "Approved: “<bdi>Budget question</bdi>”." in after
    assert "Nothing is waiting for a decision on this list." in after
    assert "Approved:" not in web.get("/moderation/ta-en/").text  # shown once

    state = held(engine, held_id)
    assert state.state == "approved" and state.decided_by == MOD_EN
    with Session(engine) as session:
        assert session.scalars(
            select(ArchivedPost.subject).where(ArchivedPost.list_name == "ta-en")
        ).all() == ["Budget question"]
    assert web_audit(engine) == [(MOD_EN, "approve", "decided", "")]


def test_reject_with_a_reason_tells_the_sender(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Off topic")
    web.sign_in(MOD_EN)
    decide(web, "ta-en", held_id, "reject", reason="Please post this in the general room.")
    state = held(engine, held_id)
    assert state.state == "rejected" and state.decision_reason == "Please post this in the general room."
    with Session(engine) as session:
        notices = session.scalars(select(Outbox).where(Outbox.purpose == "sender_rejected")).all()
        assert len(notices) == 1 and notices[0].recipients == [DELEGATE]
        assert b"Please post this in the general room." in notices[0].raw
        assert session.scalars(select(ArchivedPost)).all() == []
    assert "Rejected: “<bdi>Off topic</bdi>”." in web.get("/moderation/ta-en/").text
    assert web_audit(engine) == [(MOD_EN, "reject", "decided", "Please post this in the general room.")]


def test_discard_drops_it_silently(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Spam")
    web.sign_in(MOD_EN)
    decide(web, "ta-en", held_id, "discard")
    assert held(engine, held_id).state == "discarded"
    with Session(engine) as session:
        assert session.scalars(select(Outbox).where(Outbox.purpose == "sender_rejected")).all() == []
        assert session.scalars(select(ArchivedPost)).all() == []
    assert "Discarded: “<bdi>Spam</bdi>”." in web.get("/moderation/ta-en/").text


def test_a_second_decision_is_told_who_decided_first(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Twice")
    web.sign_in(CHIEF)
    decide(web, "ta-en", held_id, "approve")
    web.get("/moderation/ta-en/")  # the first outcome, seen
    decide(web, "ta-en", held_id, "discard")
    page = web.get("/moderation/ta-en/").text
    assert f"Nothing changed: <bdi>{CHIEF}</bdi> had already approved “<bdi>Twice</bdi>” on" in page
    assert held(engine, held_id).state == "approved"
    assert [row[2] for row in web_audit(engine)] == ["decided", "already_decided"]


def test_a_chief_moderates_every_list(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, "ta-fr", subject="Question budgétaire")
    web.sign_in(CHIEF)
    overview = web.get("/moderation/").text
    for name in ("ta-en", "ta-fr", "ta-es"):
        assert f"/moderation/{name}/" in overview
    assert "Question budgétaire" in web.get("/moderation/ta-fr/").text
    decide(web, "ta-fr", held_id, "approve")
    assert held(engine, held_id).state == "approved"
    with Session(engine) as session:
        assert session.scalars(select(ArchivedPost.list_name)).all() == ["ta-fr"]


def test_an_expired_item_is_shown_and_decides_nothing(
    web: WebClient, engine: Engine, clock: SteppableClock
) -> None:
    held_id = hold(engine, web.site.moderation, subject="Too late")
    web.sign_in(MOD_EN)
    clock.advance(days=60)
    page = web.get("/moderation/ta-en/").text
    assert "The time to decide on this item has run out" in page
    assert f'action="/moderation/ta-en/{held_id}"' not in page
    decide(web, "ta-en", held_id, "approve")  # a form left open in another tab
    assert "the time to decide on “<bdi>Too late</bdi>” has run out" in web.get("/moderation/ta-en/").text
    assert held(engine, held_id).state == "held"
    assert web_audit(engine) == [(MOD_EN, "approve", "expired", "")]


def test_reasons_follow_the_reader_language(web: WebClient, engine: Engine) -> None:
    hold(engine, web.site.moderation, "ta-fr", subject="Question")
    web.sign_in(MOD_FR)
    web.post("/language", {"csrf": csrf(web), "language": "fr", "next": "/"})
    page = web.get("/moderation/ta-fr/").text
    assert "Tous les messages adressés à ta-fr sont examinés par ses modérateurs." in page


def test_html_mail_is_previewed_sanitised(web: WebClient, engine: Engine) -> None:
    raw = dedent(f"""\
        From: Ana Lima <{DELEGATE}>
        To: ta-en@forum.example.org
        Subject: Fancy
        Message-ID: <fancy@example.org>
        Content-Type: text/html; charset=utf-8

        <p onclick="steal()">Hello <b>world</b></p><script>alert(1)</script><img src="https://t.example/x.gif">
        """).encode()
    hold(engine, web.site.moderation, raw=raw)
    web.sign_in(MOD_EN)
    page = web.get("/moderation/ta-en/").text
    assert "<b>world</b>" in page
    assert "alert(1)" not in page and "onclick" not in page and "t.example" not in page


def test_the_audit_trail_lists_every_attempt(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Audited")
    web.sign_in(MOD_EN)
    decide(web, "ta-en", held_id, "reject", reason="Not for this list")
    decide(web, "ta-en", held_id, "approve")
    page = web.get("/moderation/ta-en/audit")
    assert page.status_code == 200
    rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)[1:]
    assert len(rows) == 2
    assert "already decided" in rows[0] and "Not for this list" in rows[1]  # newest first
    assert all(MOD_EN in row and "<td>web</td>" in row for row in rows)


def test_audit_pages_go_back_in_time(web: WebClient, engine: Engine) -> None:
    moderation = web.site.moderation
    with Session(engine) as session, session.begin():
        for number in range(205):
            moderation.audit(session, AuditEntry("remind", "sent", "ta-en", detail=f"n{number}"))
    web.sign_in(MOD_EN)
    first = web.get("/moderation/ta-en/audit").text
    assert "n204<" in first and "n5<" in first and "n4<" not in first
    older = re.search(r'href="(/moderation/ta-en/audit\?before=\d+)"', first)
    assert older
    second = web.get(older.group(1)).text
    assert "n4<" in second and "n0<" in second and "n5<" not in second


def test_a_proposal_takes_the_week_typed_or_refuses_a_bad_one(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Water rights", kind=Kind.PROPOSE)
    web.sign_in(MOD_EN)
    assert "Topic proposals" in web.get("/moderation/ta-en/").text
    decide(web, "ta-en", held_id, "approve", week="Good idea")
    assert "“Good idea” is not a week like 2026-W50" in web.get("/moderation/ta-en/").text
    assert held(engine, held_id).state == "held"
    decide(web, "ta-en", held_id, "approve", week="2027-W10")
    assert held(engine, held_id).state == "approved"
    with Session(engine) as session:
        topic = session.scalars(select(Topic)).one()
        assert topic.week == "2027-W10" and topic.titles == {"en": "Water rights"}


def test_a_translation_is_typed_in_the_form(web: WebClient, engine: Engine) -> None:
    held_id = hold(engine, web.site.moderation, subject="Water rights", kind=Kind.PROPOSE)
    web.sign_in(CHIEF)
    decide(web, "ta-en", held_id, "approve")
    with Session(engine) as session:
        request = session.scalars(
            select(Held).where(Held.kind == "translation", Held.list_name == "ta-fr")
        ).one()
    page = web.get("/moderation/ta-fr/").text
    assert "Translation requests" in page and "Water rights" in page
    decide(web, "ta-fr", request.id, "approve")  # no title: nothing published
    assert "type at least the translated title" in web.get("/moderation/ta-fr/").text
    decide(web, "ta-fr", request.id, "approve", title="Droits de l'eau", body="Partageons nos pratiques.")
    assert held(engine, request.id).state == "approved"
    with Session(engine) as session:
        topic = session.scalars(select(Topic)).one()
        assert topic.titles["fr"] == "Droits de l'eau" and topic.bodies["fr"] == "Partageons nos pratiques."
