"""Moving in and out: ``import mbox``, ``export mbox``, ``members import --format mailman``, ``export
members``. Each runs the real command line on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import mailbox
from pathlib import Path

import yaml
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.mbox_corpus import message_id, write_mbox
from listserv.archive.search import SearchQuery, search
from listserv.config import parse_settings
from listserv.store.db import make_engine
from listserv.store.directory import find_member
from listserv.store.models import ArchivedPost, Delivery, Outbox
from tests.conftest import WebClient, add_members, run_cli, set_password


def engine_of(config_file: Path) -> Engine:
    settings = parse_settings(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    return make_engine(settings.database.url)


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_an_mbox_is_imported_once_threaded_indexed_and_exported_back(
    serve_config: tuple[Path, int], tmp_path: Path
) -> None:
    config_file, _ = serve_config
    archive = tmp_path / "old.mbox.gz"
    expected = write_mbox(archive, 400, compress=True)
    first = run_cli(config_file, "import", "mbox", str(archive), "--list", "ta-en")
    assert first.returncode == 0, first.stderr
    assert (
        f"imported {expected.unique}, duplicates {expected.duplicates}, "
        f"dates repaired {expected.repaired}, skipped 0" in first.stdout
    ), first.stdout
    again = run_cli(config_file, "import", "mbox", str(archive), "--list", "ta-en")
    assert f"imported 0, duplicates {expected.messages}," in again.stdout, again.stdout
    assert "import: " in first.stderr or first.stderr == ""  # plain lines, no bar: not a terminal

    engine = engine_of(config_file)
    try:
        assert count(engine, Delivery) == 0 and count(engine, Outbox) == 0  # nobody was sent anything
        with Session(engine) as session:
            posts = {post.message_id: post for post in session.scalars(select(ArchivedPost))}
            reply, first_post = posts[message_id(1)], posts[message_id(0)]
            assert reply.thread_id == first_post.id and reply.parent_id == first_post.id  # In-Reply-To
            by_subject = posts[message_id(2)]  # "Re: Topic 0" with no header: threaded by subject
            assert by_subject.thread_id == first_post.id
            broken = posts[message_id(5)]  # "Date: the day after the meeting": from Received
            assert broken.date is not None and broken.date.year == 2009
            assert broken.archived_at == broken.date  # browsed at its own date
            assert b"\n>From an earlier reply" in posts[message_id(13)].raw  # mboxrd quoting undone once
            assert b"\nFrom the minutes" in posts[message_id(13)].raw
            hits = search(session, SearchQuery("региональной", ("ta-en",)))
            assert hits.hits  # KOI8-R bodies indexed
        settings = parse_settings(yaml.safe_load(config_file.read_text(encoding="utf-8")))
        add_members(engine, settings, {"email": "reader@example.org", "lists": "ta-en"})
        set_password(engine, "reader@example.org")
        web = WebClient(settings, engine).sign_in("reader@example.org")
        month = web.get("/lists/ta-en/2009/3/")
        assert month.status_code == 200, month.text
        assert "budget review" in month.text, month.text[-3000:]  # browsed at its own date
        thread = web.get(f"/lists/ta-en/thread/{message_id(0).strip('<>')}")
        assert thread.status_code == 200 and "annex-0.pdf" in thread.text  # the attachment kept
    finally:
        engine.dispose()

    out = tmp_path / "export.mbox"
    exported = run_cli(config_file, "export", "mbox", "--list", "ta-en", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    ids = [message["Message-ID"] for message in mailbox.mbox(out)]
    assert len(ids) == expected.unique and message_id(0) in ids
    hour = tmp_path / "hour.mbox"
    window = run_cli(
        config_file,
        "export",
        "mbox",
        "--list",
        "ta-en",
        "--from",
        "2009-03-01T09:00",
        "--to",
        "2009-03-01T10:00",
        "--out",
        str(hour),
    )
    assert window.returncode == 0 and 8 <= len(mailbox.mbox(hour)) <= 9  # a message every 7 minutes

    round_trip = run_cli(config_file, "import", "mbox", str(out), "--list", "ta-en")
    assert f"imported 0, duplicates {expected.unique}," in round_trip.stdout, round_trip.stdout


PIPERMAIL = b"""From jane at example.org  Mon Mar  2 10:00:00 2009
From: jane at example.org (Jane Roe)
Date: Mon, 2 Mar 2009 10:00:00 +0100
Subject: [Old-list] Minutes

The minutes, as promised.

From bob at example.org  Tue Mar  3 11:00:00 2009
From: bob at example.org (Bob)
Subject: [Old-list] Re: Minutes
Date: not today

Thanks.

"""


def test_a_pipermail_month_gets_its_addresses_back_and_ids_for_messages_without(
    serve_config: tuple[Path, int], tmp_path: Path
) -> None:
    config_file, _ = serve_config
    month = tmp_path / "2009-March.txt.gz"
    month.write_bytes(gzip.compress(PIPERMAIL))
    result = run_cli(config_file, "import", "mbox", str(month), "--list", "ta-fr")
    assert "imported 2, duplicates 0, dates repaired 1," in result.stdout, result.stdout + result.stderr
    again = run_cli(config_file, "import", "mbox", str(month), "--list", "ta-fr")
    assert "imported 0, duplicates 2," in again.stdout  # the generated ids come from the bytes
    engine = engine_of(config_file)
    try:
        with Session(engine) as session:
            posts = session.scalars(select(ArchivedPost).order_by(ArchivedPost.id)).all()
            assert [post.sender for post in posts] == ["jane@example.org", "bob@example.org"]
            assert all(post.message_id.endswith("@imported.invalid>") for post in posts)
            assert posts[1].raw.startswith(b"Message-ID: " + posts[1].message_id.encode())
            assert posts[1].date is not None and posts[1].date.day == 3  # from the From_ line
    finally:
        engine.dispose()


def test_an_erased_message_is_not_brought_back_by_an_import(
    serve_config: tuple[Path, int], tmp_path: Path
) -> None:
    config_file, _ = serve_config
    archive = tmp_path / "old.mbox"
    write_mbox(archive, 20)
    assert run_cli(config_file, "import", "mbox", str(archive), "--list", "ta-en").returncode == 0
    erased = run_cli(
        config_file,
        "erase",
        "--message",
        message_id(3),
        "--reason",
        "asked",
        "--requested-by",
        "a@example.org",
    )
    assert erased.returncode == 0, erased.stderr
    again = run_cli(config_file, "import", "mbox", str(archive), "--list", "ta-en")
    assert "imported 0," in again.stdout and "skipped 1 (1 erased on request)" in again.stdout, again.stdout


def test_bad_import_arguments_are_explained(serve_config: tuple[Path, int], tmp_path: Path) -> None:
    config_file, _ = serve_config
    unknown = run_cli(config_file, "import", "mbox", str(tmp_path / "x.mbox"), "--list", "nope")
    assert unknown.returncode == 2 and "unknown list 'nope'" in unknown.stderr
    missing = run_cli(config_file, "import", "mbox", str(tmp_path / "x.mbox"), "--list", "ta-en")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\nworld\n", encoding="utf-8")
    refused = run_cli(config_file, "import", "mbox", str(junk), "--list", "ta-en")
    assert refused.returncode == 1 and f"{junk}: no 'From ' line: not an mbox file" in refused.stderr


MAILMAN = """Jane Roe <jane@example.org>
"Doe, John" <john@example.org>
plain@example.net

# Mailman 2 prints names this way too
=?utf-8?q?Ren=C3=A9e?= <renee@example.fr>
"""


def test_a_mailman_roster_is_imported_all_or_nothing(serve_config: tuple[Path, int], tmp_path: Path) -> None:
    config_file, _ = serve_config
    engine = engine_of(config_file)
    settings = parse_settings(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    add_members(
        engine,
        settings,
        {"email": "jane@example.org", "name": "Jane R.", "country": "PE", "lists": "ta-es"}
        | {"role": "focal_point"},
    )
    bad = tmp_path / "bad.txt"
    bad.write_text(MAILMAN + "not an address\njane@example.org\n", encoding="utf-8")
    refused = run_cli(config_file, "members", "import", str(bad), "--format", "mailman", "--lists", "ta-en")
    assert refused.returncode == 1
    assert (
        "line 7:" in refused.stderr and "line 8: jane@example.org already appears on line 1" in refused.stderr
    )
    no_lists = run_cli(config_file, "members", "import", str(bad), "--format", "mailman")
    assert no_lists.returncode == 1 and "--lists is required" in no_lists.stderr
    good = tmp_path / "members.txt"
    good.write_text(MAILMAN, encoding="utf-8")
    done = run_cli(
        config_file, "members", "import", str(good), "--format", "mailman", "--lists", "ta-en;ta-fr"
    )
    assert done.returncode == 0, done.stderr
    assert "3 added, 1 updated" in done.stdout, done.stdout
    try:
        with Session(engine) as session:
            jane = find_member(session, "jane@example.org")
            assert jane is not None and jane.name == "Jane R." and jane.country == "PE"  # kept
            assert {sub.mailing_list.name for sub in jane.subscriptions} == {"ta-es", "ta-en", "ta-fr"}
            john, renee = find_member(session, "john@example.org"), find_member(session, "renee@example.fr")
            assert john is not None and john.name == "Doe, John"
            assert renee is not None and renee.name == "Renée"
    finally:
        engine.dispose()

    exported = run_cli(config_file, "export", "members", "--format", "csv")
    assert exported.returncode == 0 and exported.stdout.startswith("email,name,country,lists,")
    assert "jane@example.org,Jane R.,PE,ta-en;ta-es;ta-fr,focal_point," in exported.stdout  # role kept
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(exported.stdout, encoding="utf-8")
    again = run_cli(config_file, "members", "import", str(csv_file))
    assert again.returncode == 0 and "0 added, 0 updated, " in again.stdout, again.stdout + again.stderr
    one_list = run_cli(config_file, "export", "members", "--list", "ta-es")
    assert "jane@example.org" in one_list.stdout and "john@example.org" not in one_list.stdout
