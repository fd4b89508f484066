"""The forum the web security tests attack (tests/test_security_*.py): two lists, a discussion on ta-en
carrying a marker word no outsider may ever see, a discussion with a guest, a held post, and one person
of each kind the access rules tell apart. Also the whole database as one comparable value, so that a
refused request can be shown to have changed nothing."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.archive.posts import archive_raw
from listserv.config import Settings
from listserv.forum import build_parts
from listserv.store.db import utc_now
from listserv.store.models import ListRow, Member
from listserv.web.exports import feed_token
from tests.conftest import WebClient, add_members, set_password
from tests.test_web_moderation import hold

MARK = "zqsecretenmark"  # in ta-en's subject, body and attachment: only ta-en's readers may see it
READER = "reader@example.org"  # a member of ta-en: the right list, the wrong role for moderation
STRANGER = "stranger@example.org"  # a member of ta-fr only: the wrong list
GUEST = "guest@outside.example"  # invited to one other discussion of ta-en
MOD_FR = "mod-fr@forum.example.org"  # a moderator, of the other list
MOD_EN = "mod-en@forum.example.org"
CHIEF = "chief@forum.example.org"
PEOPLE = (READER, STRANGER, GUEST, MOD_FR, MOD_EN, CHIEF)
READERS_OF_TA_EN = (READER, MOD_EN, CHIEF)


def compose(subject: str, body: str, sender: str = READER, attachment: bytes | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "ta-en@forum.example.org", subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message["Date"] = format_datetime(utc_now())
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment, "application", "pdf", filename="notes.pdf")
    return message


@dataclass
class World:
    settings: Settings
    engine: Engine
    secret_id: str  # the ta-en discussion with the marker (and an attachment, part 2)
    guest_id: str  # the ta-en discussion the guest is invited to (with an attachment)
    held_id: int  # a ta-en post waiting for the moderators
    feeds: dict[str, str]  # person → their own feed token for ta-en
    secret_month: tuple[str, str]  # (year, month) the marked discussion was archived in

    def client(self, who: str | None = None) -> WebClient:
        client = WebClient(self.settings, self.engine)
        return client.sign_in(who) if who else client


def build_world(settings: Settings, engine: Engine) -> World:
    add_members(
        engine,
        settings,
        {"email": READER, "lists": "ta-en", "name": "Rea Der"},
        {"email": STRANGER, "lists": "ta-fr", "name": "Stran Ger"},
    )
    secret = compose(f"Budget {MARK}", f"The {MARK} figures.", attachment=f"{MARK} notes".encode())
    opened = compose("Open workshop", "Shall we meet?", attachment=b"workshop agenda")
    parts = build_parts(settings)
    with Session(engine) as session, session.begin():
        for message in (secret, opened):
            archive_raw(session, message.as_bytes(), message["Message-ID"], "ta-en", utc_now(), "[TA-EN]")
        parts.guests.invite(session, "ta-en", opened["Message-ID"], GUEST, "Gue St", None, MOD_EN, "cli")
    for address in PEOPLE:
        set_password(engine, address)
    site = WebClient(settings, engine).site
    held_id = hold(engine, site.moderation, subject=f"Held {MARK}")
    with Session(engine) as session:
        ids = {member.email: member.id for member in session.scalars(select(Member))}
    feeds = {who: feed_token(site.secret, ids[who], "ta-en") for who in PEOPLE}
    now = utc_now().astimezone(ZoneInfo(settings.site.timezone))
    month = (str(now.year), str(now.month))
    return World(
        settings, engine, secret["Message-ID"][1:-1], opened["Message-ID"][1:-1], held_id, feeds, month
    )


def database_state(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table but the sign-in sessions (signing in is not what is under test)."""
    state = {}
    with Session(engine) as session:
        for table in ListRow.metadata.sorted_tables:
            if table.name != "web_session":
                rows = session.execute(select(table).order_by(*table.primary_key.columns)).all()
                state[table.name] = [tuple(row) for row in rows]
    return state
