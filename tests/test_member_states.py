"""Member states: ISO 3166-1 alpha-2 codes on every path, names in the reader's language, the
migration that maps old free text, ``members check``, the optional affiliation."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
import yaml
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from listserv.config import Settings, parse_settings
from listserv.store import countries
from listserv.store.db import make_engine
from listserv.store.directory import RosterError, apply_rows, find_member, read_roster
from listserv.store.schema import MIGRATIONS, upgrade
from tests.conftest import (
    DOMAIN,
    RunningForum,
    Sink,
    WebClient,
    add_members,
    make_config,
    run_cli,
    set_password,
    wait_processed,
)

HEADER = "email,name,country,lists,role,delivery,language"


def test_a_country_written_out_is_refused_with_the_code_to_write(settings: Settings) -> None:
    rows = HEADER + "\nana@example.org,Ana,Chile,ta-es,,,\nli@example.cn,Li,Not a country 123,ta-en,,,\n"
    with pytest.raises(RosterError) as refused:
        read_roster(rows, settings)
    assert refused.value.problems == [
        "line 2: country 'Chile' is not an ISO 3166-1 alpha-2 code (write CL)",
        "line 3: country 'Not a country 123' is not an ISO 3166-1 alpha-2 code "
        "(for example CL for Chile, FR for France)",
    ]
    accepted = read_roster(
        HEADER + "\nana@example.org,Ana,CL,ta-es,,,\nli@example.cn,Li,cn,ta-en,,,\n", settings
    )
    assert [row.country for row in accepted] == ["CL", "CN"]


def test_affiliation_is_an_optional_column_kept_when_absent(engine: Engine, settings: Settings) -> None:
    with_column = HEADER + ",affiliation\nana@example.org,Ana,CL,ta-es,,,,Ministerio de Salud\n"
    with Session(engine) as session, session.begin():
        apply_rows(session, read_roster(with_column, settings))
    without = HEADER + "\nana@example.org,Ana Pérez,CL,ta-es,,,\n"
    with Session(engine) as session, session.begin():
        apply_rows(session, read_roster(without, settings))
    with Session(engine) as session:
        ana = find_member(session, "ana@example.org")
        assert ana is not None and ana.name == "Ana Pérez" and ana.affiliation == "Ministerio de Salud"
    with pytest.raises(RosterError) as refused:
        read_roster(HEADER + ",office\n", settings)
    assert refused.value.problems[0].startswith("line 1: the header must be exactly")


def test_cli_add_refuses_a_name_and_members_check_lists_free_text(tmp_path: Path, db_url: str) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path, db_url)), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    refused = run_cli(
        config_file, "members", "add", "ana@example.org", "--lists", "ta-es", "--country", "Chile"
    )
    assert refused.returncode == 2
    assert "country 'Chile' is not an ISO 3166-1 alpha-2 code (write CL)" in refused.stderr
    added = run_cli(
        config_file, "members", "add", "ana@example.org", "--lists", "ta-es", "--country", "cl",
        "--affiliation", "Cancillería",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "ana@example.org\t\tCL\t" in run_cli(config_file, "members", "list").stdout
    assert run_cli(config_file, "members", "check").returncode == 0
    engine = make_engine(parse_settings(make_config(tmp_path, db_url)).database.url)
    with engine.begin() as connection:  # as an older version stored it
        connection.execute(text("UPDATE member SET country = 'Atlantis' WHERE email = 'ana@example.org'"))
    engine.dispose()
    check = run_cli(config_file, "members", "check")
    assert check.returncode == 1
    assert "ana@example.org\t\t'Atlantis'\tno country recognised" in check.stdout
    assert "1 member(s) to fix" in check.stderr


def test_the_migration_maps_unambiguous_names_and_leaves_the_rest(db_url: str) -> None:
    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0010")
    written = {"a": "Chile", "b": "chili", "c": "ESPAÑA", "d": "Not a country 123", "e": "", "f": "Brésil"}
    with engine.begin() as connection:
        for key, country in written.items():
            connection.execute(
                text("INSERT INTO member (email, email_key, name, country, role, is_chief, created_at) "
                     "VALUES (:e, :e, '', :c, 'delegate', false, CURRENT_TIMESTAMP)"),
                {"e": f"{key}@example.org", "c": country},
            )  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        found = dict(connection.execute(text("SELECT email, country FROM member ORDER BY email")).all())
    engine.dispose()
    assert found == {
        "a@example.org": "CL",
        "b@example.org": "CL",
        "c@example.org": "ES",
        "d@example.org": "Not a country 123",
        "e@example.org": "",
        "f@example.org": "BR",
    }


def test_names_in_the_readers_language(
    live: RunningForum, relayed_settings: Settings, relayed_engine: Engine, sink: Sink
) -> None:
    """Over SMTP: whoami on ta-fr names Chile in French; on the web, the account page in Spanish."""
    ana = "ana@example.org"
    add_members(
        relayed_engine, relayed_settings, {"email": ana, "name": "Ana", "country": "CL", "lists": "ta-fr"}
    )
    with smtplib.SMTP("127.0.0.1", live.port) as smtp:
        smtp.sendmail(ana, [f"ta-fr-request@{DOMAIN}"], f"From: {ana}\nSubject: qui suis-je\n\n".encode())
    wait_processed(relayed_engine)
    answer = sink.wait_to(ana)[0].get_content()
    assert "Chili (CL)" in answer
    assert countries.label("CL", "zh") == "智利 (CL)" and countries.label("CL", "ar") == "تشيلي (CL)"
    set_password(relayed_engine, ana)
    client = WebClient(relayed_settings, relayed_engine).sign_in(ana)
    page = client.get("/account", headers={"Accept-Language": "es"}).text
    assert "Chile (CL)" in page and "Chili" not in page
    assert "Chili (CL)" in client.get("/account", headers={"Accept-Language": "fr"}).text


def test_a_subscription_by_mail_may_name_its_state_by_code_only(
    live: RunningForum, relayed_engine: Engine, sink: Sink
) -> None:
    from tests.test_moderation import reply_to_notice, send

    send(live.port, "Jean <jean@example.fr>", f"ta-fr-request@{DOMAIN}", "abonner XX", "")
    [refused] = sink.wait_to("jean@example.fr")
    assert "« XX » n'est pas le code d'un État membre" in refused.get_content()
    send(live.port, "Jean <jean@example.fr>", f"ta-fr-request@{DOMAIN}", "abonner FR", "")
    [notice] = sink.wait_to("mod-fr@forum.example.org")
    assert "France (FR)" in notice.get_body(("plain",)).get_content()
    reply_to_notice(live.port, notice, "mod-fr@forum.example.org", "approuver")
    sink.wait_to("jean@example.fr", count=3)  # refused, pending, welcome
    with Session(relayed_engine) as session:
        jean = find_member(session, "jean@example.fr")
        assert jean is not None and jean.country == "FR"
