"""``/stats`` in a real browser (Debian's chromium, Playwright) against the running forum: a moderator
and a chief read the fixture's figures, download the CSV; a member gets 403. Screenshots go to
tests/artifacts/ (stats-moderator.png, stats-chief-fr.png, stats-no-javascript.png)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser
from sqlalchemy import Engine

from listserv.archive.stats import FIELDS
from listserv.config import Settings
from tests import stats_fixture
from tests.conftest import RunningForum, set_password
from tests.test_browser import Visit, browser, open_visit  # noqa: F401 (the module's chromium fixture)

MEMBER, MOD_FR, CHIEF = "ana@fr.example", "mod-fr@forum.example.org", "chief@forum.example.org"
SPAN = "/stats?from=2026-11-09&to=2026-11-22"


@pytest.fixture
def site(live: RunningForum, relayed_engine: Engine, relayed_settings: Settings) -> str:
    stats_fixture.load(relayed_engine)
    for address in (MEMBER, MOD_FR, CHIEF):
        set_password(relayed_engine, address)
    return f"http://127.0.0.1:{live.forum.web_port}"


@pytest.fixture
def visits(browser: Browser, site: str) -> Iterator[list[Visit]]:  # noqa: F811
    opened: list[Visit] = []
    yield opened
    for visit in opened:
        visit.context.close()
        assert visit.hosts <= {"127.0.0.1"}, f"requests left the machine: {visit.hosts}"
        assert visit.errors == [], f"JavaScript errors: {visit.errors}"


def _cell(visit: Visit, period: str, list_name: str, field: str) -> str:
    row = visit.page.locator(f'tr[data-period="{period}"][data-list="{list_name}"]')
    return row.locator(f'td[data-field="{field}"]').inner_text().strip()


def test_stats_as_moderator_chief_and_member(browser: Browser, site: str, visits: list[Visit]) -> None:  # noqa: F811
    moderator = open_visit(browser, site)
    visits.append(moderator)
    moderator.sign_in(MOD_FR)
    moderator.page.get_by_role("link", name="Participation").click()
    moderator.page.goto(SPAN)
    assert moderator.page.get_by_role("heading", name="Participation", level=1).is_visible()
    assert moderator.page.locator('tr[data-list="ta-en"]').count() == 0  # not their list
    assert _cell(moderator, "2026-W46", "ta-fr", "posts") == "4"
    assert _cell(moderator, "2026-W46", "ta-fr", "prompt_replies") == "2"
    assert _cell(moderator, "2026-W47", "ta-fr", "member_states_posting") == "3"
    assert moderator.page.locator("svg.chart").count() == 3
    bars = moderator.page.locator("#chart-posts rect[data-value]")
    assert [bars.nth(i).get_attribute("data-value") for i in range(bars.count())] == ["4", "3"]
    states = moderator.page.locator("#states tbody tr")
    assert [states.nth(i).get_attribute("data-state") for i in range(states.count())] == ["FR", "SN", "CA"]
    assert "Senegal" in moderator.page.locator("#states").inner_text()
    moderator.shot("stats-moderator")
    with moderator.page.expect_download() as download_info:
        moderator.page.locator("#stats-csv").click()
    rows = list(csv.reader(io.StringIO(download_info.value.path().read_text(encoding="utf-8"))))
    assert rows[0] == list(FIELDS)
    mine = [r for r in stats_fixture.EXPECTED if r["list"] == "ta-fr"]
    assert rows[1:] == [["" if row[f] is None else str(row[f]) for f in FIELDS] for row in mine]

    chief = open_visit(browser, site)
    visits.append(chief)
    chief.sign_in(CHIEF)
    chief.page.goto(SPAN)
    with chief.page.expect_navigation():
        chief.page.locator("#language-choice").select_option("fr")  # back on /stats, in French
    assert chief.page.get_by_role("heading", name="Participation", level=1).is_visible()
    assert _cell(chief, "2026-W47", "ta-en", "discarded") == "1"
    assert _cell(chief, "2026-W47", "ta-en", "decision_median_s") == "1,5"  # 90 s, in French
    assert _cell(chief, "2026-W46", "ta-es", "posts") == "0"
    assert "Sénégal" in chief.page.locator("#states").inner_text()
    assert "Royaume-Uni" in chief.page.locator("#states").inner_text()
    chief.shot("stats-chief-fr")

    plain = open_visit(browser, site, java_script_enabled=False)
    visits.append(plain)
    plain.sign_in(CHIEF)
    plain.page.goto(SPAN.replace("2026-11-09", "2026-10-01") + "&by=month")
    assert plain.page.locator("svg.chart").first.is_visible()
    assert _cell(plain, "2026-11", "ta-fr", "posts") == "8"
    plain.shot("stats-no-javascript")

    member = open_visit(browser, site)
    visits.append(member)
    member.sign_in(MEMBER)
    assert member.page.get_by_role("link", name="Participation").count() == 0
    response = member.page.goto("/stats")
    assert response is not None and response.status == 403
    assert member.page.get_by_role("heading", name="Access not allowed").is_visible()
