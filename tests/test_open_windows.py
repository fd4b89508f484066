"""Open windows (``rooms[].open``) over real SMTP on a steppable clock, both databases: outside the
window a post waits, its sender is told in the list's language when it will be published, and it is
published at the opening — by itself when nothing else holds it, else once a moderator approved it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import ConfigError, Settings, parse_settings
from listserv.outgoing.windows import is_open, next_opening
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, Held
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, make_config, wait_for
from tests.test_moderation import reply_to_notice, send

ANA = "ana@minrel.cl"
LUIS = "luis@minrel.cl"
MOD_ES = "mod-es@forum.example.org"
LIST = "ta-es@forum.example.org"
WINDOW = {"days": ["tue", "wed"], "from": "2026-11-24", "until": "2027-03-31"}


def window_settings(tmp_path: Path, db_url: str, sink: Sink, hold: str) -> Settings:
    raw = make_config(tmp_path, db_url)
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}}
    raw["moderation"] = {"hold": hold}
    raw["rooms"][0]["open"] = WINDOW
    return parse_settings(raw)


@pytest.fixture(params=["none", "all"])
def running(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: str, sink: Sink, clock: SteppableClock
) -> Iterator[tuple[RunningForum, Engine]]:
    settings = window_settings(tmp_path, db_url, sink, request.param)
    engine = make_engine(settings.database.url)
    initialise(engine, settings)
    add_members(engine, settings, {"email": ANA, "lists": "ta-es"}, {"email": LUIS, "lists": "ta-es"})
    with RunningForum(settings, engine, clock) as forum:
        yield forum, engine
    engine.dispose()


def archived(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(ArchivedPost.subject)))


def test_a_post_outside_the_window_waits_and_goes_out_at_the_opening(
    running: tuple[RunningForum, Engine], sink: Sink, clock: SteppableClock
) -> None:
    live, engine = running
    forum = live.forum
    hold = forum.settings.lists["ta-es"].moderation.hold
    assert clock.now.strftime("%a") == "Mon"
    send(live.port, ANA, LIST, "Propuesta", "Para el martes.")
    [told] = sink.wait_to(ANA)
    text = told.get_content()
    assert told["Content-Language"] == "es" and "24 de noviembre de 2026" in text
    with Session(engine) as session:
        [item] = session.scalars(select(Held)).all()
        assert [r["key"] for r in item.reasons] == (
            ["room_closed"] if hold == "none" else ["room_closed", "held_by_policy"]
        )
    if hold == "all":  # a moderator approves while the room is closed: kept for the opening
        [notice] = sink.wait_to(MOD_ES)
        reply_to_notice(live.port, notice, MOD_ES, "aprobar")
        approved = sink.wait_to(ANA, count=2)[1]
        assert "aprobado" in approved.get_content()
    assert forum.jobs.run("windows", clock.now) == 0
    assert archived(engine) == []
    clock.now = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # Tuesday
    assert forum.jobs.run("windows", clock.now) == 1
    assert archived(engine) == ["Propuesta"]
    wait_for(lambda: LUIS in sink.recipients(), what="the post delivered to the members")
    assert forum.jobs.run("windows", clock.now) == 0  # published once


def test_windows_and_their_configuration(tmp_path: Path) -> None:
    raw = make_config(tmp_path, "sqlite://")
    raw["rooms"][0]["open"] = WINDOW
    window = parse_settings(raw).lists["ta-en"].open
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert not is_open(window, monday, "UTC")
    assert next_opening(window, monday, "UTC") == datetime(2026, 11, 24, tzinfo=UTC)
    assert next_opening(window, datetime(2027, 3, 31, 12, tzinfo=UTC), "UTC") == datetime(
        2027, 3, 31, 12, tzinfo=UTC
    )
    assert next_opening(window, datetime(2027, 4, 1, tzinfo=UTC), "UTC") is None
    for wrong_window, problem in [
        ({"days": ["tuesday"]}, "rooms[0].open.days[0]: Input should be 'mon', 'tue'"),
        ({"from": "2027-02-01", "until": "2027-01-01"}, "until must not be before from"),
    ]:
        raw["rooms"][0]["open"] = wrong_window
        with pytest.raises(ConfigError) as wrong:
            parse_settings(raw)
        assert problem in str(wrong.value)
    raw["rooms"][0]["open"] = "always"
    assert parse_settings(raw).lists["ta-en"].open is None
