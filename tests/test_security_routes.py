"""Every route of the web app, taken from the app's own route table, asked for by each kind of person
the access rules tell apart: nobody signed in, a member of the other list, a member where a moderator
is needed, a guest of another discussion, a moderator of the other list, and (to prove each sample
address is real) the people it is for. Each gets the answer written here — never a 500, never ta-en's
words unless they read ta-en — and a refused form changes nothing in the database. A route added to the
app without a row here fails ``test_every_route_has_a_case``. Both databases."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.routing import Route

from listserv.config import Settings
from tests.conftest import WebClient
from tests.security_world import (
    CHIEF,
    GUEST,
    MARK,
    MOD_EN,
    MOD_FR,
    READER,
    READERS_OF_TA_EN,
    STRANGER,
    World,
    build_world,
    database_state,
)
from tests.test_web_auth import serving

pytestmark = pytest.mark.security

PERSONS: tuple[str | None, ...] = (None, STRANGER, READER, GUEST, MOD_FR, MOD_EN, CHIEF)


@dataclass(frozen=True)
class Case:
    """``answers``: one per person of ``PERSONS``, in order. ``L``: sent to sign in (303 to /login);
    ``200+``: 200 and the page shows ta-en's marker (proves the sample address names real things);
    ``-``: not asked (the request would really act: the owners' own tests cover that)."""

    answers: str
    form: dict[str, str] = field(default_factory=dict)
    query: str = ""


READING = Case("L 403 200+ 404 403 200+ 200+")
MODERATING = Case("L 403 403 403 403 200+ 200+")
EVERYONE = Case("L 200 200 200 200 200 200")
REPLY = {"subject": f"Re: {MARK}", "text": "Leaked?"}
ERASE = {"message_id": "", "reason": "spam", "requested_by": MOD_EN, "back": "queue"}
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/login"): Case("200 303 303 303 303 303 303"),
    ("POST", "/login"): Case("400 400 400 400 400 400 400", {"email": READER, "password": "not it, no"}),
    ("POST", "/logout"): Case("303 303 303 303 303 303 303"),
    ("GET", "/password/forgot"): Case("200 200 200 200 200 200 200"),
    ("POST", "/password/forgot"): Case("200 200 200 200 200 200 200", {"email": "nobody@example.org"}),
    ("GET", "/password/reset/{token}"): Case("400 400 400 400 400 400 400"),
    ("POST", "/password/reset/{token}"): Case("400 400 400 400 400 400 400", {"password": "x" * 12}),
    ("POST", "/language"): Case("303 303 303 303 303 303 303", {"language": "fr"}),
    ("GET", "/"): Case("L 303 303 303 303 303 303"),
    ("GET", "/moderation/"): Case("L 403 403 403 200 200 200"),
    ("GET", "/moderation/{list}/"): MODERATING,
    ("GET", "/moderation/{list}/audit"): Case("L 403 403 403 403 200 200"),
    ("POST", "/moderation/{list}/{held_id:int}"): Case("401 403 403 403 403 - -", {"action": "approve"}),
    ("POST", "/moderation/{list}/erase"): Case("401 403 403 403 403 - -", ERASE),
    ("POST", "/moderation/erase-member"): Case(
        "401 403 403 403 403 403 -", {"email": READER, "reason": "spam", "with_posts": "1"}
    ),
    ("GET", "/lists/{list}/export/{name}.mbox"): READING,
    ("GET", "/lists/{list}/{year:int}/{month:int}/export.mbox"): READING,
    ("GET", "/lists/{list}/export/thread/{message_id:path}"): READING,
    ("GET", "/feeds/{list}/{token}.atom"): Case("404 404 200+ 404 404 200+ 200+"),
    ("GET", "/account"): EVERYONE,
    ("POST", "/account/erase"): Case("401 303 303 403 303 303 303"),
    ("POST", "/account/delivery"): Case("401 403 303 403 403 303 403", {"list": "ta-en", "mode": "none"}),
    ("GET", "/search"): Case("L 200 200+ 404 200 200+ 200+", query="?q=budget"),
    ("GET", "/stats"): Case("L 403 403 403 400 200 200", query="?list=ta-en"),
    ("GET", "/stats.csv"): Case("L 403 403 403 400 200 200", query="?list=ta-en"),
    ("GET", "/announce"): Case("L 403 403 403 403 403 200"),
    ("POST", "/announce"): Case("401 403 403 403 403 403 -", {"room": "ta", "subject_en": MARK}),
    ("GET", "/lists/{list}/reply/{message_id:path}"): READING,
    ("POST", "/lists/{list}/reply/{message_id:path}"): Case("401 403 - 404 403 - -", REPLY),
    ("GET", "/lists/{list}/new"): Case("L 403 200 404 403 200 200"),
    ("POST", "/lists/{list}/new"): Case("401 403 - 404 403 - -", REPLY),
    ("GET", "/lists/{list}/unsubscribe"): EVERYONE,
    ("POST", "/lists/{list}/unsubscribe"): Case("401 200 200 200 200 200 200"),
    ("GET", "/u/{token}"): Case("404 404 404 404 404 404 404"),
    ("POST", "/u/{token}"): Case("404 404 404 404 404 404 404", {"List-Unsubscribe": "One-Click"}),
    ("GET", "/lists/"): Case("L 200 200 404 200 200 200"),
    ("GET", "/lists/{list}/"): READING,
    ("GET", "/lists/{list}/{year:int}/{month:int}/"): READING,
    ("GET", "/lists/{list}/thread/{message_id:path}"): READING,
    ("GET", "/lists/{list}/message/{message_id:path}"): READING,
    ("GET", "/lists/{list}/topic/{week}"): Case("L 403 404 404 403 404 404"),  # no topic that week
    ("GET", "/lists/{list}/digest/{period}/{key}"): Case("L 403 404 404 403 404 404"),  # nor digest
    ("GET", "/lists/{list}/raw/{message_id:path}"): READING,
    ("GET", "/lists/{list}/attachment/{index:int}/{message_id:path}"): READING,
    ("GET", "/protocol/{lang}"): EVERYONE,
    ("GET", "/protocol-accept/{token}"): Case("400 400 400 400 400 400 400"),  # explains the bad link
    ("POST", "/protocol-accept/{token}"): Case("400 400 400 400 400 400 400"),
    ("GET", "/reconfirm/{token}"): Case("400 400 400 400 400 400 400"),
    ("POST", "/reconfirm/{token}"): Case("400 400 400 400 400 400 400"),
    ("GET", "/focal-point"): Case("L 403 403 403 403 403 403"),  # tests/test_focal_points.py: the rest
    ("POST", "/focal-point"): Case("401 403 403 403 403 403 403", {"verb": "nominate", "email": GUEST}),
    ("GET", "/healthz"): Case("503 503 503 503 503 503 503"),  # no serve holds the scheduler lease
    ("GET", "/metrics"): Case("404 404 404 404 404 404 404"),  # no web.metrics_token configured
}
# Run last, in this order: each ends something of the person's own (a list, the account, the session).
LAST = ["/account/erase", "/lists/{list}/unsubscribe", "/logout"]


def route_table(web: WebClient) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD is GET's; /static is a folder, tested apart)."""
    for route in web.app.routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path


def sample_path(world: World, path: str, who: str | None) -> str:
    values = {
        "list": "ta-en",
        "name": "ta-en",
        "message_id": world.secret_id,
        "held_id": str(world.held_id),
        "year": world.secret_month[0],
        "month": world.secret_month[1],
        "index": "2",
        "week": "2026-W48",
        "period": "weekly",
        "key": "2026-W48",
        "lang": "en",
        "token": world.feeds[who] if who and path.startswith("/feeds/") else "1-forged-token",
    }
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values[m.group(1)], path)


@pytest.fixture
def world(settings: Settings, engine: Engine) -> World:
    return build_world(settings, engine)


def test_every_route_has_a_case(world: World) -> None:
    served = set(route_table(world.client()))
    assert served - CASES.keys() == set(), "a route without a security case: add it to CASES"
    assert CASES.keys() - served == set(), "a case for a route the app no longer serves"


def ask(client: WebClient, world: World, method: str, path: str, who: str | None) -> tuple[str, str]:
    """(what answered, the page) for one request, in the notation of ``Case.answers``."""
    case = CASES[(method, path)]
    address = sample_path(world, path, who) + case.query
    if method == "GET":
        response = client.get(address)
    else:
        form = {**case.form, "message_id": world.secret_id} if "message_id" in case.form else case.form
        response = client.post(address, form)
    status = str(response.status_code)
    if status == "303" and response.headers["location"].startswith("/login?next="):
        status = "L"
    body = response.content.decode("utf-8", "replace")
    return (f"{status}+" if MARK in body and status == "200" else status), body


def test_every_route_answers_each_person_as_written(world: World) -> None:
    order = sorted(CASES, key=lambda key: (key[0] == "POST", LAST.index(key[1]) if key[1] in LAST else -1))
    wrong: list[str] = []
    for index, who in enumerate(PERSONS):
        client = world.client(who)
        for method, path in order:
            expected = CASES[(method, path)].answers.split()[index]
            if expected == "-":
                continue
            before = database_state(world.engine) if method == "POST" else None
            answer, body = ask(client, world, method, path, who)
            if MARK in body and who not in READERS_OF_TA_EN:
                wrong.append(f"{who} {method} {path}: ta-en's words shown to someone who may not read it")
            if answer.rstrip("+") != expected.rstrip("+") or (expected.endswith("+") != answer.endswith("+")):
                wrong.append(f"{who} {method} {path}: {answer}, expected {expected}")
            if before is not None and answer[0] in "45" and database_state(world.engine) != before:
                wrong.append(f"{who} {method} {path}: refused ({answer}) but the database changed")
    assert wrong == [], "\n".join(wrong)


def test_a_moderator_cannot_reach_another_lists_items_through_their_own_list(world: World) -> None:
    """The list in the address is the moderator's; the held post or message named is ta-en's."""
    moderator, before = world.client(MOD_FR), database_state(world.engine)
    decided = moderator.post(f"/moderation/ta-fr/{world.held_id}", {"action": "approve"})
    erased = moderator.post("/moderation/ta-fr/erase", {**ERASE, "message_id": f"<{world.secret_id}>"})
    assert (decided.status_code, erased.status_code) == (403, 404)
    assert database_state(world.engine) == before


def test_a_guest_reads_their_discussion_and_nothing_beside_it(world: World) -> None:
    guest = world.client(GUEST)
    assert guest.get(f"/lists/ta-en/thread/{world.guest_id}").status_code == 200
    attachment = guest.get(f"/lists/ta-en/attachment/2/{world.guest_id}")  # part of the discussion
    assert attachment.status_code == 200 and attachment.content == b"workshop agenda"
    for path in (
        f"/lists/ta-en/message/{world.secret_id}?html=1",
        f"/lists/ta-en/export/thread/{world.guest_id}",  # the list's exports are the members'
        f"/lists/ta-en/raw/{world.guest_id}",  # the exact bytes carry every address: members' only
        f"/lists/ta-en/attachment/2/{world.secret_id}",
        "/lists/ta-fr/",
        "/lists/no-such-list/",
    ):
        response = guest.get(path)
        assert response.status_code == 404 and MARK not in response.text, path


# -- path traversal, over real HTTP (uvicorn as ``serve`` runs it: the client sends the path as written) --

OUTSIDE = "zqoutsidethestore"  # in a file next to the database: no address may serve it
TRAVERSALS = [
    "../",
    "..%2f",
    "%2e%2e%2f",
    "%2e%2e/",
    "..%5c",
    "..\\",
    "%252e%252e%252f",
    "....//",
    "..%c0%af",
]


def traversal_paths(world: World, depth: int = 8) -> Iterator[str]:
    outside = "outside.txt"
    for step in TRAVERSALS:
        climb = step * depth
        yield f"/static/{climb}{outside}"
        yield f"/static/{climb}etc/passwd"
        yield f"/protocol/{climb}outside"
        yield f"/lists/ta-en/raw/{climb}{outside}"
        yield f"/lists/ta-en/attachment/2/{climb}{world.secret_id}"
        yield f"/lists/ta-en/export/thread/{climb}etc/passwd"
        yield f"/lists/{climb}ta-fr/"
    for absolute in ("/etc/passwd", "%2fetc%2fpasswd", "C:\\Windows\\win.ini", "\\\\server\\share"):
        yield f"/lists/ta-en/raw/{absolute}"
        yield f"/static/{absolute}"
        yield f"/lists/ta-en/attachment/2/{absolute}"
    for nul in ("%00", "%00.css", "style.css%00.html"):
        yield f"/static/{nul}"
        yield f"/lists/ta-en/raw/{world.secret_id}{nul}"
        yield f"/protocol/en{nul}"


def test_no_download_address_reaches_outside_the_store(world: World, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text(OUTSIDE)
    (tmp_path / "var" / "outside.txt").write_text(OUTSIDE)
    cookie = world.client(READER).http.cookies["listserv_session"]
    wrong = []
    with serving(world.settings, world.engine) as base:
        host, port = base.removeprefix("http://").split(":")
        for path in traversal_paths(world):
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.putrequest("GET", path, skip_accept_encoding=True)
            connection.putheader("Cookie", f"listserv_session={cookie}")
            connection.endheaders()
            answer = connection.getresponse()
            body = answer.read().decode("utf-8", "replace")
            connection.close()
            # /protocol/<anything> is the English protocol with a note, by design: it is no file name.
            refused = answer.status in (400, 403, 404) or (
                path.startswith("/protocol/") and answer.status == 200
            )
            if not refused or OUTSIDE in body or "root:" in body:
                wrong.append(f"{path}: {answer.status} {body[:80]!r}")
    assert wrong == [], "\n".join(wrong)


def test_a_method_a_route_does_not_take_is_405_not_a_handler(world: World) -> None:
    served: dict[str, set[str]] = {}
    for method, path in route_table(world.client()):
        served.setdefault(path, set()).add(method)
    reader, wrong = world.client(READER), []
    token, before = reader.csrf(), database_state(world.engine)
    for path, methods in served.items():
        address = sample_path(world, path, READER)
        for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH"} - methods):
            answer = reader.http.request(method, address, data={"csrf": token})
            if answer.status_code != 405:
                wrong.append(f"{method} {path}: {answer.status_code}")
    assert wrong == [], "\n".join(wrong)
    assert database_state(world.engine) == before
