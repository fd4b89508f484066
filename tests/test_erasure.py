"""``listserv erase``: the proof. A post with a unique marker is held, approved by a moderator's mail
reply, delivered to the Maildir outbox, sent in a digest, indexed, exported (mbox, Atom) — and after the
erasure the marker is found 0 times: in the SQLite file, its -wal and -shm, every file under data_dir,
every archive page, search, mbox and Atom; on PostgreSQL in every text, JSON and bytea column of every
table (bytes decoded as mail too: a base64 notice would hide a literal scan). The marker is checked to
be in each of those places before, so the test can fail."""

from __future__ import annotations

import email
import email.policy
import mailbox
import secrets
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from digests import send_digests
from listserv.admin.erasure_journal import journal_path, read_journal
from listserv.admin.erasure_member import remove_person_files
from listserv.admin.erasure_text import fingerprint, mentions, readable_text, replace_person
from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.forum import build_parts
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, Audit, Delivery, Guest, Held, Member, Outbox, Tombstone
from listserv.web.exports import feed_token
from tests.conftest import (
    RunningForum,
    SteppableClock,
    WebClient,
    add_members,
    make_config,
    run_cli,
    set_password,
    wait_for,
    wait_processed,
)
from tests.test_moderation import send

POSTER = "marie.erasable@example.fr"
POSTER_NAME = "Marielle Quintavalle"
READER = "reader@example.fr"
DIGESTER = "digester@example.fr"
MOD_FR = "mod-fr@forum.example.org"


@dataclass
class World:
    settings: Settings
    engine: Engine
    config_file: Path
    clock: SteppableClock
    db_path: Path | None


@pytest.fixture
def world(tmp_path: Path, db_url: str, clock: SteppableClock) -> Iterator[World]:
    raw = make_config(tmp_path, db_url)  # delivery.relay null: outgoing mail goes to data_dir/outbox
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    settings = parse_settings(raw)
    engine = make_engine(settings.database.url)
    initialise(engine, settings)
    add_members(
        engine,
        settings,
        {"email": POSTER, "name": POSTER_NAME, "country": "FR", "lists": "ta-fr", "language": "fr"},
        {"email": READER, "name": "Rita Reader", "lists": "ta-fr"},
        {"email": DIGESTER, "name": "Dan Digest", "lists": "ta-fr", "delivery": "digest"},
    )
    set_password(engine, READER)
    db_path = Path(engine.url.database) if engine.dialect.name == "sqlite" else None
    yield World(settings, engine, config_file, clock, db_path)
    engine.dispose()


def maildir_messages(world: World) -> list[EmailMessage]:
    folder = world.settings.site.data_dir / "outbox"
    if not folder.is_dir():
        return []
    # Only new/ and cur/ hold delivered messages: tmp/ holds files still being written, which
    # mailbox.Maildir renames into new/ — reading tmp/ raced that rename (a CI failure).
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted([*folder.glob("new/*"), *folder.glob("cur/*")])
        if path.is_file()
    ]


def delivered_to(world: World, address: str) -> list[EmailMessage]:
    return [m for m in maildir_messages(world) if address in str(m.get("X-Original-To", ""))]


def settled(engine: Engine) -> bool:
    with Session(engine) as session:
        waiting = session.scalar(select(Outbox.id).where(Outbox.state.in_(("queued", "sending"))))
        delivering = session.scalar(select(Delivery.id).where(Delivery.state.in_(("queued", "sending"))))
        return waiting is None and delivering is None


def post_story(world: World, marker: str, sender: str = POSTER, name: str = POSTER_NAME) -> str:
    """Held, approved by a mail reply quoting the notice, delivered, digested; the Message-ID."""
    with RunningForum(world.settings, world.engine, world.clock) as live:
        message_id = send(
            live.port,
            f"{name} <{sender}>",
            "ta-fr@forum.example.org",
            f"Calendrier {marker} des ateliers",
            f"Bonjour,\nle mot {marker} apparait ici une seule fois dans un long paragraphe de texte.\n",
        )
        wait_for(lambda: delivered_to(world, MOD_FR), what="the moderators' notice in the Maildir")
        [notice] = delivered_to(world, MOD_FR)
        quoted = "\n".join("> " + line for line in notice.get_body(("plain",)).get_content().splitlines())
        send(live.port, MOD_FR, notice["Reply-To"], "Re: " + notice["Subject"], f"approuver\n\n{quoted}\n")
        wait_for(lambda: archived_ids(world.engine), what="the approval")
        live.forum.deliverer.background.wake()
        wait_for(lambda: delivered_to(world, READER), what="the copy to a member")
        world.clock.advance(hours=2)
        with Session(world.engine) as session, session.begin():
            publisher = live.forum.parts.publisher
            assert send_digests(session, world.settings, publisher, "daily", world.clock.now) == 1
        live.forum.deliverer.background.wake()
        wait_for(lambda: delivered_to(world, DIGESTER), what="the digest")
        wait_processed(world.engine)
        wait_for(lambda: settled(world.engine), what="every notice and copy sent")
    return message_id


def archived_ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(ArchivedPost.message_id).where(ArchivedPost.erased_at.is_(None))))


def read_views(world: World, message_id: str, marker: str) -> dict[str, tuple[int, str]]:
    """Every reading of the archive a member or a feed reader has: (status, body) by name."""
    web = WebClient(world.settings, world.engine, world.clock)
    web.sign_in(READER)
    bare = message_id.strip("<>")
    with Session(world.engine) as session:
        member_id = session.scalar(select(Member.id).where(Member.email_key == READER))
        thread = session.scalar(select(ArchivedPost.thread_id).order_by(ArchivedPost.id))
        root = session.get(ArchivedPost, thread)
        assert root is not None
        root_id = root.message_id.strip("<>")
    pages = {
        "lists": "/lists/",
        "list": "/lists/ta-fr/",
        "month": f"/lists/ta-fr/{world.clock.now.year}/{world.clock.now.month}/",
        "thread": f"/lists/ta-fr/thread/{root_id}",
        "message": f"/lists/ta-fr/message/{bare}",
        "search": "/search?q=",
        "mbox": "/lists/ta-fr/export/ta-fr.mbox",
        "month mbox": f"/lists/ta-fr/{world.clock.now.year}/{world.clock.now.month}/export.mbox",
        "digest": f"/lists/ta-fr/digest/daily/{world.clock.now.date().isoformat()}",
        "atom": f"/feeds/ta-fr/{feed_token(web.site.secret, member_id or 0, 'ta-fr')}.atom",
    }
    found = {}
    for name, path in pages.items():
        response = web.get(path + (marker if name == "search" else ""))
        found[name] = (response.status_code, response.text)
    return found


def database_texts(world: World) -> Iterator[tuple[str, str]]:
    """(table.column, text) of every text, JSON and binary value in the database; bytes also decoded
    as mail, so that an encoded copy is found too."""
    inspector = inspect(world.engine)
    columns = [
        (table, column["name"])
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
        if any(
            word in str(column["type"]).upper()
            for word in ("CHAR", "TEXT", "JSON", "BLOB", "BYTEA", "BINARY")
        )
    ]
    with world.engine.connect().execution_options(sqlite_deferred=True) as connection:
        for table, name in columns:
            for (value,) in connection.execute(text(f'SELECT "{name}" FROM "{table}"')):
                if isinstance(value, bytes | memoryview):
                    data = bytes(value)
                    yield f"{table}.{name}", data.decode("latin-1")
                    if data:
                        yield f"{table}.{name} (decoded)", readable_text(data)
                elif value is not None:
                    yield f"{table}.{name}", str(value)


def occurrences(world: World, needle: str) -> dict[str, int]:
    """Where ``needle`` (case-blind) is still found: database values, the SQLite files, data_dir."""
    wanted = needle.lower()
    found: dict[str, int] = {}
    for where, value in database_texts(world):
        if wanted in value.lower():
            found[where] = found.get(where, 0) + value.lower().count(wanted)
    files = [path for path in world.settings.site.data_dir.rglob("*") if path.is_file()]
    if world.db_path is not None:
        files += [Path(f"{world.db_path}{suffix}") for suffix in ("", "-wal", "-shm")]
    for path in files:
        if path.exists():
            data = path.read_bytes().lower()
            count = data.count(wanted.encode()) + data.count(wanted.encode("utf-16-le"))
            if count:
                found[str(path)] = count
    return found


def test_an_erased_message_is_found_nowhere_and_leaves_a_tombstone(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    message_id = post_story(world, marker)
    before = occurrences(world, marker)
    for place in (
        "post.raw",
        "post.delivered_raw",
        "post.display",  # derived when archived: what the pages show, and the snippet's text
        "post.search_text",
        "received.raw",
        "held.subject",
        "outbox.raw",
        "sent_digest.raw",
    ):
        assert any(where.startswith(place) for where in before), (place, before)
    assert any("outbox" in where and where.startswith("/") for where in before)  # the Maildir
    if world.db_path is not None:
        assert any(where.startswith(str(world.db_path)) for where in before)  # the file or its WAL
    views = read_views(world, message_id, marker)
    for name in ("list", "thread", "message", "search", "mbox", "month mbox", "digest", "atom"):
        assert marker in views[name][1], name

    result = run_cli(
        world.config_file,
        "erase",
        "--message",
        message_id,
        "--reason",
        "asked by the author",
        "--requested-by",
        POSTER,
    )
    assert result.returncode == 0, result.stderr
    assert "tombstone" in result.stdout

    assert occurrences(world, marker) == {}
    views = read_views(world, message_id, marker)
    for name, (_status, body) in views.items():
        if name != "search":  # the search page says what was searched for
            assert marker not in body, name
    never = "zq" + secrets.token_hex(5)  # a word never posted: what a search with no hit looks like
    assert views["search"][1].count(marker) == read_views(world, message_id, never)["search"][1].count(never)
    assert views["message"][0] == 410
    assert "removed on request" in views["message"][1]
    assert "removed on request" in views["thread"][1]
    assert views["digest"][0] == 200 and views["mbox"][0] == 200
    with Session(world.engine) as session:
        [tombstone] = session.scalars(select(Tombstone)).all()
        assert (tombstone.kind, tombstone.list_name, tombstone.requested_by) == ("message", "ta-fr", POSTER)
        assert tombstone.reason == "asked by the author" and tombstone.executed_by.startswith("operator:")
        assert message_id.strip("<>") not in f"{tombstone.key_hash}"
        # Kept apart for a restore (scanned above with everything in data_dir): the hash, nothing more.
        journal = read_journal(journal_path(world.settings.site.data_dir))
        kept = [(e.kind, e.key_hash, e.list_name) for e in journal]
        assert kept == [("message", tombstone.key_hash, "ta-fr")]
        [erase] = session.scalars(select(Audit).where(Audit.action == "erase")).all()
        assert erase.result == "erased" and f"#{tombstone.id}" in erase.detail
    if world.db_path is not None:
        wal = Path(f"{world.db_path}-wal")
        assert not wal.exists() or wal.stat().st_size == 0  # checkpointed and truncated

    again = run_cli(
        world.config_file, "erase", "--message", message_id, "--reason", "again", "--requested-by", POSTER
    )
    assert again.returncode == 1
    assert "already erased" in again.stderr and "Traceback" not in again.stderr
    unknown = run_cli(
        world.config_file, "erase", "--message", "<nobody@nowhere>", "--reason", "x", "--requested-by", POSTER
    )
    assert unknown.returncode == 1 and "no message <nobody@nowhere>" in unknown.stderr
    with Session(world.engine) as session:
        assert len(session.scalars(select(Tombstone)).all()) == 1
        assert len(session.scalars(select(Audit).where(Audit.action == "erase")).all()) == 1


def test_erase_needs_a_reason_and_who_asked(world: World) -> None:
    result = run_cli(world.config_file, "erase", "--message", "<a@b>")
    assert result.returncode == 2 and "--reason" in result.stderr


def test_replies_that_quote_it_are_listed_and_kept(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    message_id = post_story(world, marker)
    with RunningForum(world.settings, world.engine, world.clock) as live:
        reply = send(
            live.port,
            READER,
            "ta-fr@forum.example.org",
            "Re: Calendrier",
            f"> le mot {marker} apparait ici une seule fois dans un long paragraphe de texte.\nD'accord.\n",
            In_Reply_To=message_id,
            References=message_id,
        )
        wait_processed(world.engine)
        with Session(world.engine) as session, session.begin():
            held = session.scalars(select(Held).where(Held.message_id == reply)).one()
            live.forum.parts.moderation.decide(session, held, "approve", MOD_FR, "cli")
    listing = run_cli(world.config_file, "erase", "--message", message_id, "--quotes")
    assert listing.returncode == 0, listing.stderr
    assert reply in listing.stdout and READER in listing.stdout
    result = run_cli(
        world.config_file, "erase", "--message", message_id, "--reason", "r", "--requested-by", POSTER
    )
    assert result.returncode == 0, result.stderr
    assert reply in archived_ids(world.engine)  # the reply is not changed


@pytest.mark.parametrize("with_posts", [False, True], ids=["posts-kept", "with-posts"])
def test_an_erased_member_is_found_nowhere(world: World, with_posts: bool) -> None:
    marker = "zq" + secrets.token_hex(5)
    message_id = post_story(world, marker)
    for needle in (POSTER, POSTER_NAME):
        before = occurrences(world, needle)
        for place in ("member.", "post.raw", "post.display", "received.raw", "outbox.raw", "sent_digest.raw"):
            assert any(where.startswith(place) for where in before), (needle, place, before)
    assert POSTER_NAME in read_views(world, message_id, marker)["thread"][1]

    flags = ["--with-posts"] if with_posts else []
    result = run_cli(
        world.config_file,
        "erase",
        "--member",
        POSTER.upper(),
        "--reason",
        "left the forum",
        "--requested-by",
        POSTER,
        *flags,
    )
    assert result.returncode == 0, result.stderr

    for needle in (POSTER, POSTER_NAME):
        assert occurrences(world, needle) == {}, needle
    views = read_views(world, message_id, marker)
    for name, (_status, body) in views.items():
        assert POSTER not in body and POSTER_NAME not in body, name
    if with_posts:
        assert occurrences(world, marker) == {}
        assert views["message"][0] == 410
    else:
        # in the list's language, the member state named in it (the post is on ta-fr)
        assert marker in views["message"][1] and "ancien participant (France)" in views["message"][1]
        assert marker in views["search"][1]
        assert "former.participant@invalid" in views["digest"][1]
    with Session(world.engine) as session:
        tombstones = session.scalars(select(Tombstone).order_by(Tombstone.id)).all()
        assert [t.kind for t in tombstones] == ["message"] * with_posts + ["member"]
        assert tombstones[-1].requested_by.startswith("erased:")  # they asked: their address is not kept
        assert session.scalar(select(Member.id).where(Member.email_key == POSTER)) is None
        erasures = session.scalars(select(Audit).where(Audit.action == "erase")).all()
        assert len(erasures) == 1 + with_posts

    again = run_cli(world.config_file, "erase", "--member", POSTER, "--reason", "x", "--requested-by", POSTER)
    assert again.returncode == 1 and "already erased" in again.stderr
    unknown = run_cli(
        world.config_file,
        "erase",
        "--member",
        "nobody@example.org",
        "--reason",
        "x",
        "--requested-by",
        POSTER,
    )
    assert unknown.returncode == 1 and "nobody@example.org is not a member" in unknown.stderr


CHIEF = "chief@forum.example.org"


def reply_with_code(port: int, notice: EmailMessage, sender: str, first_line: str) -> None:
    quoted = "\n".join("> " + line for line in notice.get_body(("plain",)).get_content().splitlines())
    send(port, sender, notice["Reply-To"], "Re: " + notice["Subject"], f"{first_line}\n\n{quoted}\n")


def member_exists(engine: Engine, address: str) -> bool:
    with Session(engine) as session:
        return session.scalar(select(Member.id).where(Member.email_key == address)) is not None


def test_erase_my_data_by_mail_is_decided_by_a_chief_and_the_member_is_told(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    post_story(world, marker)
    with RunningForum(world.settings, world.engine, world.clock) as live:
        send(live.port, POSTER, "ta-fr-request@forum.example.org", "demande", "effacer mes données\n")
        wait_for(lambda: delivered_to(world, CHIEF), what="the chief's notice")
        [notice] = delivered_to(world, CHIEF)
        assert "[#" in notice["Subject"] and POSTER in notice["Subject"]
        assert not [m for m in delivered_to(world, MOD_FR) if POSTER in str(m["Subject"])]  # chiefs only
        wait_for(
            lambda: any("reçue" in str(m["Subject"]) for m in delivered_to(world, POSTER)), what="pending"
        )

        reply_with_code(live.port, notice, MOD_FR, "approuver")  # a list moderator may not decide it
        wait_processed(world.engine)
        assert member_exists(world.engine, POSTER)

        reply_with_code(live.port, notice, CHIEF, "approve")
        wait_processed(world.engine)
        assert not member_exists(world.engine, POSTER)
        wait_for(lambda: settled(world.engine), what="the last notice sent")
    [done] = [m for m in delivered_to(world, POSTER) if "effacées" in str(m["Subject"])]
    assert "ancien participant" in done.get_body(("plain",)).get_content()
    for needle in (POSTER, POSTER_NAME):  # the notice that tells them is the one trace, in the Maildir
        left = {where for where in occurrences(world, needle) if not where.endswith(("-wal", ".db"))}
        assert all("/outbox/" in where for where in left), (needle, left)
        assert len(left) <= 1
    with Session(world.engine) as session:
        results = [
            (a.actor, a.result) for a in session.scalars(select(Audit).where(Audit.action == "approve"))
        ]
        assert (MOD_FR, "not_chief") in results and (CHIEF, "decided") in results
        [tombstone] = session.scalars(select(Tombstone).where(Tombstone.kind == "member")).all()
        assert tombstone.requested_by.startswith("erased:") and tombstone.executed_by == CHIEF


def test_a_message_still_held_is_erased_with_its_notices(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    with RunningForum(world.settings, world.engine, world.clock) as live:
        message_id = send(
            live.port,
            f"{POSTER_NAME} <{POSTER}>",
            "ta-fr@forum.example.org",
            f"Question {marker} en attente",
            f"Un texte assez long pour contenir le mot {marker} et quelques autres mots encore.\n",
        )
        wait_for(lambda: delivered_to(world, MOD_FR), what="the moderators' notice")
        wait_for(lambda: settled(world.engine), what="the notices sent")
    assert occurrences(world, marker)
    result = run_cli(
        world.config_file,
        "erase",
        "--message",
        message_id,
        "--reason",
        "sent by mistake",
        "--requested-by",
        POSTER,
    )
    assert result.returncode == 0, result.stderr
    assert occurrences(world, marker) == {}
    with Session(world.engine) as session:
        assert session.scalars(select(Held)).all() == []
        [tombstone] = session.scalars(select(Tombstone)).all()
        assert tombstone.list_name == "ta-fr"


BODY = (
    "Dear colleagues, our ministry trained forty trainers last spring in three regions.\n"
    "The budget covered travel and materials; evaluation showed strong results overall.\n"
    "This message and any attachment are confidential and intended solely for the addressee.\n"
)
ORIGINAL = (
    "From: a@example.org\r\nSubject: Training of trainers in regions\r\n"
    "Message-ID: <orig@example.org>\r\n\r\n" + BODY.replace("\n", "\r\n")
).encode()


def mail(subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["Subject"], message["Message-ID"] = subject, "<other@example.org>"
    message.set_content(body)
    return message.as_bytes()


def test_what_counts_as_carrying_a_message_is_strong_evidence() -> None:
    print_ = fingerprint(
        ORIGINAL, "<orig@example.org>", "training of trainers in regions", ("AAAAA-BBBBB-CCCCC",)
    )
    rewrapped = "\n".join("> " + line for line in textwrap.wrap(BODY, 50))
    assert mentions(mail("Re: held", "approve\n\n" + rewrapped), print_)  # a moderator's quoting reply
    assert mentions(mail("[#AAAAA-BBBBB-CCCCC] reminder", "one message waits"), print_)  # its code
    assert mentions(mail("x", "see <orig@example.org>"), print_)  # its Message-ID
    disclaimer = "This message and any attachment are confidential and intended solely for the addressee."
    assert not mentions(mail("Another post", "Unrelated words.\n" + disclaimer), print_)  # shared footer
    their_notice = mail("Your message is held", "Subject: Training of trainers in regions")
    assert mentions(their_notice, print_, to_sender=True)
    assert not mentions(their_notice, print_)  # the same subject to someone else: another thread's notice


def test_a_moderator_erases_a_message_from_its_page(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    message_id = post_story(world, marker)
    set_password(world.engine, MOD_FR)
    page = f"/lists/ta-fr/message/{message_id.strip('<>')}"
    member = WebClient(world.settings, world.engine, world.clock).sign_in(READER)
    assert "Erase this message" not in member.get(page).text
    form = {"message_id": message_id, "reason": "asked by the author", "requested_by": POSTER}
    assert member.post("/moderation/ta-fr/erase", form).status_code == 403

    moderator = WebClient(world.settings, world.engine, world.clock).sign_in(MOD_FR)
    assert "Erase this message" in moderator.get(page).text
    assert moderator.post("/moderation/ta-fr/erase", form | {"reason": " "}).status_code == 400
    assert marker in moderator.get(page).text  # nothing erased without a reason
    response = moderator.post("/moderation/ta-fr/erase", form)
    assert response.status_code == 303 and response.headers["location"] == page
    gone = moderator.get(page)
    assert gone.status_code == 410 and "removed on request" in gone.text
    assert occurrences(world, marker) == {}
    with Session(world.engine) as session:
        [tombstone] = session.scalars(select(Tombstone)).all()
        assert (tombstone.requested_by, tombstone.executed_by) == (POSTER, MOD_FR)
        [erase] = session.scalars(select(Audit).where(Audit.action == "erase")).all()
        assert (erase.actor, erase.channel) == (MOD_FR, "web")
    assert moderator.post("/moderation/ta-fr/erase", form).status_code == 404  # twice: nothing to erase


def test_only_a_chief_erases_a_member_on_the_web(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    post_story(world, marker)
    set_password(world.engine, MOD_FR)
    set_password(world.engine, CHIEF)
    form = {"email": POSTER, "reason": "left the forum", "requested_by": POSTER}
    moderator = WebClient(world.settings, world.engine, world.clock).sign_in(MOD_FR)
    assert "Erase a member" not in moderator.get("/moderation/").text
    assert moderator.post("/moderation/erase-member", form).status_code == 403
    assert member_exists(world.engine, POSTER)

    chief = WebClient(world.settings, world.engine, world.clock).sign_in(CHIEF)
    assert "Erase a member" in chief.get("/moderation/").text
    assert chief.post("/moderation/erase-member", form | {"reason": ""}).status_code == 400
    response = chief.post("/moderation/erase-member", form | {"with_posts": "1"})
    assert response.status_code == 303, response.text
    assert "has been erased" in chief.get(response.headers["location"]).text
    assert not member_exists(world.engine, POSTER)
    for needle in (POSTER, POSTER_NAME, marker):
        assert occurrences(world, needle) == {}, needle
    assert chief.post("/moderation/erase-member", form).status_code == 404  # nothing left to erase


def test_a_member_asks_from_their_account_page_and_a_chief_confirms_by_mail(world: World) -> None:
    set_password(world.engine, POSTER)
    member = WebClient(world.settings, world.engine, world.clock).sign_in(POSTER)
    assert 'action="/account/erase"' in member.get("/account").text
    response = member.post("/account/erase")
    assert response.status_code == 303
    assert 'action="/account/erase"' not in member.get("/account").text  # "sent to the chiefs" instead
    with RunningForum(world.settings, world.engine, world.clock) as live:
        live.forum.outbox.background.wake()
        wait_for(lambda: delivered_to(world, CHIEF), what="the chief's notice")
        [notice] = delivered_to(world, CHIEF)
        assert POSTER in notice["Subject"]
        reply_with_code(live.port, notice, CHIEF, "approve")
        wait_processed(world.engine)
        assert not member_exists(world.engine, POSTER)
        wait_for(lambda: settled(world.engine), what="the last notice sent")
    assert [m for m in delivered_to(world, POSTER) if "effacées" in str(m["Subject"])]
    database = {where for where in occurrences(world, POSTER) if not where.startswith("/")}
    assert database == set()


def test_a_moderator_erases_a_held_message_from_the_queue(world: World) -> None:
    marker = "zq" + secrets.token_hex(5)
    with RunningForum(world.settings, world.engine, world.clock) as live:
        message_id = send(live.port, POSTER, "ta-fr@forum.example.org", f"Held {marker}", f"Body {marker}.\n")
        wait_for(lambda: delivered_to(world, MOD_FR), what="the moderators' notice")
        wait_for(lambda: settled(world.engine), what="the notices sent")
    set_password(world.engine, MOD_FR)
    moderator = WebClient(world.settings, world.engine, world.clock).sign_in(MOD_FR)
    queue = moderator.get("/moderation/ta-fr/").text
    assert 'action="/moderation/ta-fr/erase"' in queue and marker in queue
    form = {"message_id": message_id, "reason": "spam", "requested_by": MOD_FR, "back": "queue"}
    response = moderator.post("/moderation/ta-fr/erase", form)
    assert response.status_code == 303 and response.headers["location"] == "/moderation/ta-fr/"
    assert marker not in moderator.get("/moderation/ta-fr/").text
    assert occurrences(world, marker) == {}


GUEST = "gloria.guestworth@outside.example"
GUEST_NAME = "Gloria Guestworth"


def test_an_erased_guest_and_their_inviter_leave_no_guest_row(world: World) -> None:
    """A guest of a discussion is a person like a member: erased, their invitation (``guest`` row), the
    invitation mail and its audit go; the member who invited them, erased, is a pseudonym there."""
    marker = "zq" + secrets.token_hex(5)
    message_id = post_story(world, marker)
    guests = build_parts(world.settings, world.clock).guests
    with Session(world.engine) as session, session.begin():
        guests.invite(session, "ta-fr", message_id, GUEST, GUEST_NAME, None, POSTER, "web")
    for needle in (GUEST, GUEST_NAME):
        before = occurrences(world, needle)
        assert any(where.startswith(("member.", "outbox.raw", "audit.")) for where in before), (
            needle,
            before,
        )
    assert any(where.startswith("guest.invited_by") for where in occurrences(world, POSTER))

    for address in (GUEST, POSTER):
        result = run_cli(
            world.config_file, "erase", "--member", address, "--reason", "gone", "--requested-by", address
        )
        assert result.returncode == 0, result.stderr
    for needle in (GUEST, GUEST_NAME, POSTER, POSTER_NAME):
        assert occurrences(world, needle) == {}, needle
    with Session(world.engine) as session:
        assert session.scalars(select(Guest)).all() == []


def test_a_pending_nomination_is_erased_with_the_nominee(world: World) -> None:
    """A focal point's nomination holds the nominee's address though its sender is the focal point:
    erasing the nominee takes the held item, the focal point's mail and the notices naming them."""
    focal, nominee = "point.focal@example.fr", "nominee.erasable@example.fr"
    add_members(
        world.engine,
        world.settings,
        {"email": focal, "country": "FR", "lists": "ta-fr", "role": "focal_point"},
    )
    with RunningForum(world.settings, world.engine, world.clock) as live:
        send(live.port, focal, "ta-fr-owner@forum.example.org", "", f"désigner {nominee} Nina Nominee\n")
        wait_for(lambda: delivered_to(world, MOD_FR), what="the moderators' notice")
        wait_processed(world.engine)
        wait_for(lambda: settled(world.engine), what="every notice sent")
    assert occurrences(world, nominee)
    result = run_cli(
        world.config_file, "erase", "--member", nominee, "--reason", "asked", "--requested-by", focal
    )
    assert result.returncode == 0, result.stderr
    assert occurrences(world, nominee) == {}
    with Session(world.engine) as session:
        assert session.scalars(select(Held)).all() == []


def test_the_maildir_sweep_after_an_erasure_keeps_the_notice_already_sent(tmp_path: Path) -> None:
    """The outbox may send the erased person's notice before the sweep that follows the commit runs
    (seen once in CI): the sweep removes every other file naming them, never that one."""
    folder = tmp_path / "outbox"
    notice = b"To: x@example.org\r\nSubject: done\r\n\r\nYour data was erased.\r\n"
    older = b"To: x@example.org\r\nSubject: a post\r\n\r\nhello\r\n"
    box = mailbox.Maildir(folder, create=True)
    kept, _older = (box.add(b"Return-Path: <b@forum>\r\n" + raw) for raw in (notice, older))
    assert remove_person_files(folder, "X@example.org", set(), keep=frozenset({notice})) == 1
    assert set(mailbox.Maildir(folder).keys()) == {kept}


def test_the_name_left_for_an_erased_person_is_written_as_mail_headers_allow() -> None:
    """Arabic or Chinese lists show the placeholder in their script: encoded, never raw 8-bit."""
    raw = (
        b"From: Ana Lima <ana@example.org>\r\nTo: ta-ar@forum.example.org\r\n"
        b"Disposition-Notification-To: Ana Lima\r\nSubject: x\r\n\r\nAna Lima writes.\r\n"
    )
    edited = replace_person(raw, "ANA@example.org", "Ana Lima", "مشارك سابق (شيلي)")
    head, _, body = edited.partition(b"\r\n\r\n")
    assert head.isascii() and b"ana@example.org" not in edited.lower() and b"Ana Lima" not in head
    parsed = email.message_from_bytes(edited, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "مشارك سابق (شيلي)"
    assert str(parsed["Disposition-Notification-To"]) == "مشارك سابق (شيلي)"
    assert body == b"Ana Lima writes.\r\n"  # their words to others are not edited
