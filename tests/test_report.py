"""The monthly report (``listserv jobs run report``): due on the first day of the month at the summary
time, sent once to the chief moderators and ``reports.recipients`` in their language, with last
month's figures beside the month before and the chart as an inline PNG."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.store.db import make_engine
from listserv.store.models import Member, Outbox
from tests import stats_fixture
from tests.conftest import free_port, make_config, run_cli

FUNDER = "funder@donor.example"
CHIEF = "chief@forum.example.org"


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    raw = make_config(tmp_path, db_url, reports={"recipients": [FUNDER, "CHIEF@forum.example.org"]})
    raw["smtp"]["port"], raw["web"]["port"] = free_port(), free_port()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert run_cli(path, "init").returncode == 0
    engine = make_engine(db_url)
    try:
        stats_fixture.load(engine)
        with Session(engine) as session, session.begin():
            chief = session.scalars(select(Member).where(Member.email_key == CHIEF)).one()
            chief.language = "fr"
    finally:
        engine.dispose()
    return path


def _reports(db_url: str) -> dict[str, EmailMessage]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(Outbox).where(Outbox.purpose == "monthly_report")).all()
            return {
                row.recipients[0]: email.message_from_bytes(row.raw, policy=email.policy.default)  # type: ignore[misc]
                for row in rows
            }
    finally:
        engine.dispose()


def test_run_twice_sends_one_report_per_recipient(config_file: Path, db_url: str) -> None:
    early = run_cli(config_file, "jobs", "run", "report", "--at", "2026-12-01T08:00+01:00")
    assert early.returncode == 0 and "report: 0 item(s)" in early.stdout, early.stderr
    quiet = run_cli(config_file, "jobs", "run", "report", "--at", "2026-10-02T09:00+02:00")
    assert quiet.returncode == 0 and "report: 0 item(s)" in quiet.stdout, quiet.stderr  # September: nothing
    assert _reports(db_url) == {}
    for _ in range(2):
        result = run_cli(config_file, "jobs", "run", "report", "--at", "2026-12-01T17:00+01:00")
        assert result.returncode == 0, result.stderr
    assert "report: 0 item(s)" in result.stdout  # the second run: already sent
    reports = _reports(db_url)
    assert sorted(reports) == [CHIEF, FUNDER]  # the chief once, though named twice

    chief = reports[CHIEF]
    assert chief["Content-Language"] == "fr"
    assert str(chief["Subject"]) == "Technical Assistance Forum : participation en novembre 2026"
    text = chief.get_body(("plain",)).get_content()
    assert "Messages publiés : 14  (0 ; +14)" in text
    assert "Délai médian de décision (minutes) : 7,5  (- ; )" in text, text  # (300 s + 600 s) / 2
    assert "ta-fr : 8 messages, 4 auteurs" in text
    html = chief.get_body(("html",)).get_content()
    image = next(part for part in chief.walk() if part.get_content_type() == "image/png")
    assert image["Content-Disposition"].startswith("inline")
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    assert 'alt="Messages (bleu) et auteurs (orange) par mois, six derniers mois"' in html
    png = image.get_content()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000

    funder = reports[FUNDER]  # not a member: the site's first language
    assert funder["Content-Language"] == "en"
    assert "Posts published: 14  (0; +14)" in funder.get_body(("plain",)).get_content()
    assert "Member states that posted: 4  (0; +4)" in funder.get_body(("plain",)).get_content()
    assert "Members who left: 2  (0; +2)" in funder.get_body(("plain",)).get_content()
    assert "New members: 3  (5; -2)" in funder.get_body(("plain",)).get_content()


def test_serve_does_not_load_pillow_until_a_report_is_drawn() -> None:
    code = "import sys, listserv.forum, listserv.cli; print('PIL' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
