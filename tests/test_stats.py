"""``listserv stats``: the known fortnight of ``stats_fixture`` gives exactly the expected rows, as
JSON and as CSV, on SQLite and PostgreSQL; ended subscriptions are recorded as they end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.archive.stats import FIELDS
from listserv.config import Settings
from listserv.store import directory
from listserv.store.db import make_engine
from listserv.store.models import SubscriptionEnded
from tests import stats_fixture
from tests.conftest import add_members, run_cli

SPAN = ("--room", "ta", "--from", "2026-11-09", "--to", "2026-11-22")


def _loaded(serve_config: tuple[Path, int], db_url: str) -> Path:
    config_file, _ = serve_config
    engine = make_engine(db_url)
    try:
        stats_fixture.load(engine)
    finally:
        engine.dispose()
    return config_file


def test_json_rows_are_exactly_the_fixture(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file = _loaded(serve_config, db_url)
    result = run_cli(config_file, "stats", *SPAN, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows == stats_fixture.EXPECTED
    assert all(list(row) == list(FIELDS) for row in rows)


def test_csv_has_the_same_numbers(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file = _loaded(serve_config, db_url)
    result = run_cli(config_file, "stats", *SPAN, "--format", "csv")
    assert result.returncode == 0, result.stderr
    reader = csv.reader(io.StringIO(result.stdout))
    assert next(reader) == list(FIELDS)
    expected = [["" if row[f] is None else str(row[f]) for f in FIELDS] for row in stats_fixture.EXPECTED]
    assert list(reader) == expected


def test_by_month_one_list_and_table(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file = _loaded(serve_config, db_url)
    result = run_cli(
        config_file, "stats", "--list", "ta-fr", "--from", "2026-10-15", "--to", "2026-11-30",
        "--by", "month", "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    october, november = json.loads(result.stdout)
    assert (october["period"], october["posts"], october["members"]) == ("2026-10", 0, 2)
    assert (november["period"], november["list"]) == ("2026-11", "ta-fr")
    assert (november["posts"], november["posters"], november["member_states_posting"]) == (8, 4, 3)
    assert (november["new_members"], november["left_members"], november["prompt_replies"]) == (2, 1, 3)
    assert (november["held"], november["approved"], november["decision_median_s"]) == (4, 2, 3600)
    table = run_cli(config_file, "stats", *SPAN)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == list(FIELDS)
    assert lines[2].split()[:4] == ["2026-W46", "ta-fr", "4", "3"]


def test_usage_errors_exit_2(serve_config: tuple[Path, int]) -> None:
    config_file, _ = serve_config
    for args, said in [
        (("--list", "ta-xx"), "no list named 'ta-xx'"),
        (("--room", "nope"), "no room named 'nope'"),
        (("--from", "2026-12-01", "--to", "2026-11-01"), "is after --to"),
        (("--from", "1 Nov"), "is not a date like 2026-11-30"),
        (("--by", "day"), "invalid choice"),
    ]:
        result = run_cli(config_file, "stats", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert said in result.stderr
        assert "Traceback" not in result.stderr


def test_an_ended_subscription_is_recorded(settings: Settings, engine: Engine) -> None:
    add_members(
        engine, settings, {"email": "zoe@kn.example", "lists": "ta-en;ta-fr", "country": "KN"},
        {"email": "yan@cn.example", "lists": "ta-en", "country": "CN"},
    )  # fmt: skip
    with Session(engine) as session, session.begin():
        assert directory.remove_member(session, "zoe@kn.example", "ta-fr")
        assert directory.remove_member(session, "yan@cn.example")  # the member and all their lists
    with Session(engine) as session:
        ended = session.execute(select(SubscriptionEnded.list_name, SubscriptionEnded.country)).all()
    assert sorted(ended) == [("ta-en", "CN"), ("ta-fr", "KN")]
