"""``members import``/``add`` and the welcome (``--no-welcome``, Mailman's ``addmembers -W``), and an import
whose reads do not grow with the number of rows. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from listserv.config import Settings, parse_settings
from listserv.store.db import make_engine
from listserv.store.directory import apply_rows, read_roster
from listserv.store.models import Member, Outbox
from tests.conftest import make_config, run_cli
from tests.test_members import GOOD, HEADER


def welcomed(tmp_path: Path, db_url: str) -> list[str]:
    engine = make_engine(parse_settings(make_config(tmp_path, db_url)).database.url)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(Outbox).where(Outbox.purpose == "member_welcome")).all()
            return sorted(row.recipients[0] for row in rows)
    finally:
        engine.dispose()


def test_no_welcome_on_import_and_add_and_a_welcome_only_for_the_new(tmp_path: Path, db_url: str) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path, db_url)), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(GOOD, encoding="utf-8")
    result = run_cli(config_file, "members", "import", "--no-welcome", str(csv_file))
    assert result.returncode == 0 and "2 added" in result.stdout, result.stderr
    assert welcomed(tmp_path, db_url) == []
    csv_file.write_text(GOOD + "li@example.cn,Li,CN,ta-en,delegate,each,en\n", encoding="utf-8")
    result = run_cli(config_file, "members", "import", str(csv_file))
    assert result.returncode == 0 and "1 added" in result.stdout, result.stderr
    assert welcomed(tmp_path, db_url) == ["li@example.cn"]  # not those imported before

    quiet = run_cli(config_file, "members", "add", "mo@example.org", "--lists", "ta-en", "--no-welcome")
    assert quiet.returncode == 0, quiet.stderr
    told = run_cli(config_file, "members", "add", "zoe@example.org", "--lists", "ta-fr", "--name", "Zoé")
    again = run_cli(config_file, "members", "add", "zoe@example.org", "--lists", "ta-en")  # an update
    assert told.returncode == 0 and again.returncode == 0, told.stderr + again.stderr
    assert welcomed(tmp_path, db_url) == ["li@example.cn", "zoe@example.org"]
    usage = run_cli(config_file, "members", "add", "x@example.org", "--lists", "ta-en", "--no-welcome=yes")
    assert usage.returncode == 2


def roster(count: int) -> str:
    rows = (f"m{n:05d}@example.org,Member {n},CL,ta-en;ta-fr,delegate,each,en\n" for n in range(count))
    return HEADER + "".join(rows)


def reads_to_import(engine: Engine, settings: Settings, text: str) -> int:
    """SELECT statements an import of ``text`` costs."""
    count = 0

    def counted(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        nonlocal count
        count += statement.lstrip().upper().startswith("SELECT")

    rows = read_roster(text, settings)
    event.listen(engine, "before_cursor_execute", counted)
    try:
        with Session(engine) as session, session.begin():
            apply_rows(session, rows)
    finally:
        event.remove(engine, "before_cursor_execute", counted)
    return count


def test_an_import_reads_the_same_whatever_its_size(engine: Engine, settings: Settings) -> None:
    small = reads_to_import(engine, settings, roster(50))
    large = reads_to_import(engine, settings, roster(2_000))  # 50 of them known already: updates
    assert large <= small + 2, (small, large)  # a read per row was 2,000 reads (and quadratic flushes)
    with Session(engine) as session:
        imported = select(func.count()).select_from(Member).where(Member.email.like("m0%"))
        assert session.scalar(imported) == 2_000
