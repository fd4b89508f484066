"""Members: CSV import (all or nothing, idempotent), add/remove/list, passwords; `init` syncs the config.
Every test here runs on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import yaml
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.store.db import make_engine
from listserv.store.directory import RosterError, apply_rows, find_member, list_members, read_roster
from listserv.store.models import ListRow, Member, Moderator, Outbox
from tests.conftest import make_config, run_cli

HEADER = "email,name,country,lists,role,delivery,language\n"
GOOD = HEADER + (
    "Ana@Example.ORG,Ana Pérez,CL,ta-es;ta-en,delegate,each,es\n"
    "jean@example.fr,Jean Dupont,FR,ta-fr,staff,digest,fr\n"
)


def import_text(engine: Engine, settings: Settings, text: str) -> tuple[int, int, int]:
    rows = read_roster(text, settings)
    with Session(engine) as session, session.begin():
        report = apply_rows(session, rows)
    return len(report.added), len(report.updated), len(report.unchanged)


def subscriptions(engine: Engine, address: str) -> dict[str, str]:
    with Session(engine) as session:
        member = find_member(session, address)
        assert member is not None
        return {sub.mailing_list.name: sub.delivery for sub in member.subscriptions}


def test_import_is_idempotent_and_updates(engine: Engine, settings: Settings) -> None:
    assert import_text(engine, settings, GOOD) == (2, 0, 0)
    assert import_text(engine, settings, GOOD) == (0, 0, 2)
    changed = GOOD.replace("ta-es;ta-en,delegate,each", "ta-es,delegate,digest")
    assert import_text(engine, settings, changed) == (0, 1, 1)
    assert subscriptions(engine, "ana@example.org") == {"ta-es": "digest"}


def test_addresses_are_normalised_and_case_blind(engine: Engine, settings: Settings) -> None:
    import_text(engine, settings, GOOD)
    with Session(engine) as session:
        ana = find_member(session, "ANA@example.org")
        assert ana is not None and ana.email == "Ana@example.org" and ana.country == "CL"
    again = HEADER + "ana@EXAMPLE.org,Ana Pérez,CL,ta-es;ta-en,delegate,each,es\n"
    assert import_text(engine, settings, again) == (0, 1, 0)  # same person; the written form updated


def test_bad_rows_are_all_reported_and_nothing_is_imported(engine: Engine, settings: Settings) -> None:
    bad = GOOD + (
        "bob,Bob,PE,ta-en,delegate,each,en\n"
        "carla@example.org,Carla,PE,ta-de,boss,weekly,de\n"
        "dan@example.org,Dan,PE,ta-en\n"
        "jean@EXAMPLE.fr,Jean,FR,ta-fr,staff,each,fr\n"
    )
    try:
        read_roster(bad, settings)
    except RosterError as error:
        problems = error.problems
    else:
        raise AssertionError("bad rows were accepted")
    assert problems == [
        "line 4: 'bob' is not an email address",
        "line 5: unknown list 'ta-de' (known: ta-en, ta-fr, ta-es); role 'boss' must be one of delegate, "
        "staff, focal_point; delivery 'weekly' must be one of each, digest, none; "
        "language 'de' must be one of en, fr, es",
        "line 6: expected 7 columns, found 4",
        "line 7: jean@example.fr already appears on line 3",
    ]


def test_cli_import_is_all_or_nothing(tmp_path: Path, db_url: str) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path, db_url)), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(GOOD + "bob,Bob,PE,ta-en,delegate,each,en\n", encoding="utf-8")
    result = run_cli(config_file, "members", "import", str(csv_file))
    assert result.returncode == 1
    assert "line 4: 'bob' is not an email address" in result.stderr
    assert "nothing imported" in result.stderr
    assert run_cli(config_file, "members", "list").stdout.count("example.org") == 4  # moderators, chief
    csv_file.write_text("\ufeff" + GOOD, encoding="utf-8")  # as Excel saves it
    result = run_cli(config_file, "members", "import", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "2 added" in result.stdout
    engine = make_engine(parse_settings(make_config(tmp_path, db_url)).database.url)
    with Session(engine) as session:  # queued for serve to send, in each member's first list's language
        welcomes = session.scalars(select(Outbox).where(Outbox.purpose == "member_welcome")).all()
        assert sorted(row.recipients[0] for row in welcomes) == ["Ana@example.org", "jean@example.fr"]
    engine.dispose()
    listing = run_cli(config_file, "members", "list", "--list", "ta-fr").stdout
    assert "jean@example.fr\tJean Dupont\tFR\tstaff\tta-fr:digest" in listing
    assert "Ana@example.org" not in listing


def test_cli_add_remove_and_password(tmp_path: Path, db_url: str) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path, db_url)), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    added = run_cli(config_file, "members", "add", "li@example.cn", "--lists", "ta-en;ta-fr", "--name", "Li")
    assert added.returncode == 0, added.stderr
    assert run_cli(config_file, "members", "add", "nope", "--lists", "ta-en").returncode == 1
    short = run_cli(config_file, "members", "set-password", "li@example.cn", stdin="short\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    assert (
        run_cli(config_file, "members", "set-password", "li@example.cn", stdin="correct horse\n").returncode
        == 0
    )
    engine_settings = parse_settings(make_config(tmp_path, db_url))

    engine = make_engine(engine_settings.database.url)
    with Session(engine) as session:
        member = find_member(session, "li@example.cn")
        assert member is not None and member.password_hash is not None
        assert PasswordHasher().verify(member.password_hash, "correct horse")
    engine.dispose()
    assert run_cli(config_file, "members", "remove", "li@example.cn", "--list", "ta-fr").returncode == 0
    assert "ta-fr" not in run_cli(config_file, "members", "list", "--list", "ta-en").stdout.split("li@")[1]
    assert run_cli(config_file, "members", "remove", "li@example.cn").returncode == 0
    gone = run_cli(config_file, "members", "remove", "li@example.cn")
    assert gone.returncode == 1 and "not a member" in gone.stderr


def test_init_twice_changes_nothing_and_follows_the_config(engine: Engine, settings: Settings) -> None:
    assert initialise(engine, settings).lines == []
    raw = settings.model_dump(mode="json")
    raw["rooms"][0]["moderators"]["fr"] = ["new-fr@forum.example.org"]
    raw["rooms"][0]["languages"] = ["en", "fr"]
    del raw["rooms"][0]["moderators"]["es"]
    changed = initialise(engine, parse_settings(raw))
    assert "list ta-es: deactivated (no longer in the config)" in changed.lines
    assert "list ta-fr, new-fr@forum.example.org: moderator added" in changed.lines
    assert "list ta-fr, mod-fr@forum.example.org: moderator removed" in changed.lines
    with Session(engine) as session:
        fr = session.scalars(select(ListRow).where(ListRow.name == "ta-fr")).one()
        moderators = session.scalars(
            select(Member.email)
            .join(Moderator, Moderator.member_id == Member.id)
            .where(Moderator.list_id == fr.id)
        ).all()
        assert moderators == ["new-fr@forum.example.org"]
        chief = find_member(session, "chief@forum.example.org")
        assert chief is not None and chief.is_chief
    assert initialise(engine, parse_settings(raw)).lines == []


def test_list_members_filters_by_list(engine: Engine, settings: Settings) -> None:
    import_text(engine, settings, GOOD)
    with Session(engine) as session:
        on_fr = [member.email for member, _ in list_members(session, "ta-fr")]
    assert on_fr == ["jean@example.fr", "mod-fr@forum.example.org"]
