"""``/stats`` and ``/stats.csv`` on the real app: a moderator sees their lists, a chief all of them, a
member is refused; figures, member state names in the reader's language, the CSV's rows."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import Engine

from listserv.archive.stats import FIELDS
from listserv.config import Settings
from listserv.web.stats import territory_name
from tests import stats_fixture
from tests.conftest import WebClient, add_members, set_password

MEMBER, MOD_FR, CHIEF = "ana@fr.example", "mod-fr@forum.example.org", "chief@forum.example.org"
SPAN = "from=2026-11-09&to=2026-11-22"


@pytest.fixture(autouse=True)
def fortnight(engine: Engine, settings: Settings) -> None:
    stats_fixture.load(engine)
    add_members(engine, settings, {"email": "zz@kn.example", "lists": "ta-es"})
    for address in (MEMBER, MOD_FR, CHIEF):
        set_password(engine, address)


def _cells(html: str, period: str, list_name: str) -> dict[str, str]:
    row = re.search(rf'<tr data-period="{period}" data-list="{list_name}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {period} {list_name}"
    return dict(re.findall(r'<td data-field="(\w+)">([^<]*)</td>', row.group(1)))


def test_a_moderator_sees_their_lists(web: WebClient) -> None:
    page = web.sign_in(MOD_FR).get(f"/stats?{SPAN}")
    assert page.status_code == 200
    assert 'data-list="ta-en"' not in page.text
    cells = _cells(page.text, "2026-W46", "ta-fr")
    assert (cells["posts"], cells["posters"], cells["member_states_posting"]) == ("4", "3", "2")
    assert (cells["decision_median_s"], cells["decision_p90_s"]) == ("35", "60")  # minutes
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
    assert "<script" not in page.text.split("<main", 1)[1].split("</main>")[0]
    ranked = re.findall(r'<tr data-state="(\w+)">', page.text)
    assert ranked == ["FR", "SN", "CA"]  # ta-fr only: ana 4 posts, binta 2, chloe 1


def test_a_chief_sees_every_list_with_names_in_their_language(web: WebClient) -> None:
    web.sign_in(CHIEF)
    web.post("/language", {"language": "fr", "next": "/stats"})
    page = web.get(f"/stats?{SPAN}")
    assert page.status_code == 200
    assert _cells(page.text, "2026-W47", "ta-en")["discarded"] == "1"
    assert _cells(page.text, "2026-W47", "ta-es")["posts"] == "0"
    assert "Sénégal" in page.text and "Royaume-Uni" in page.text
    assert "Participation" in page.text and "Messages" in page.text


def test_the_csv_has_the_rows_of_the_command(web: WebClient) -> None:
    response = web.sign_in(CHIEF).get(f"/stats.csv?{SPAN}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    reader = csv.reader(io.StringIO(response.text))
    assert next(reader) == list(FIELDS)
    expected = [["" if row[f] is None else str(row[f]) for f in FIELDS] for row in stats_fixture.EXPECTED]
    assert list(reader) == expected


def test_a_member_is_refused(web: WebClient) -> None:
    web.sign_in(MEMBER)
    assert web.get("/stats").status_code == 403
    assert web.get("/stats.csv").status_code == 403


def test_a_bad_query_is_explained(web: WebClient) -> None:
    web.sign_in(MOD_FR)
    for query in ("from=yesterday", "by=day", "list=ta-en", "from=2026-12-01&to=2026-11-01"):
        page = web.get(f"/stats?{query}")
        assert page.status_code == 400, query
        assert "cannot be shown" in page.text


def test_territory_names() -> None:
    assert territory_name("SN", "fr") == "Sénégal"
    assert territory_name("sn", "ru") == "Сенегал"
    assert territory_name("Brazil", "fr") == "Brazil"  # not a code: shown as the directory has it
    assert territory_name("ZZ", "en") == "Unknown Region" or territory_name("ZZ", "en") == "ZZ"
