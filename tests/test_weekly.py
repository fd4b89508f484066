"""The weekly topic end to end, with a steppable clock: Monday 09:00 Europe/Zurich, each list in its
language exactly once — across a restart at 08:59 and with a second serve process; a missing language
falls back with a note; a mailed proposal approved by reply becomes next week's topic. Both databases."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.scheduler import acquire_lease
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, SentPrompt, Topic
from tests.conftest import RunningForum, Sink, SteppableClock, add_members, wait_for
from tests.test_moderation import CODE, reply_to_notice, send

MONDAY_0859 = datetime(2026, 11, 23, 7, 59, tzinfo=UTC)  # 08:59 in Zurich (CET, UTC+1)
READERS = {"ta-en": "eve@example.org", "ta-fr": "ana@example.org", "ta-es": "ben@example.org"}


def seed(engine: Engine, settings: Settings, titles: dict[str, str]) -> None:
    add_members(engine, settings, *({"email": who, "lists": name} for name, who in READERS.items()))
    with Session(engine) as session, session.begin():
        session.add(
            Topic(room="ta", week="2026-W48", titles=titles, bodies={lang: f"Body {lang}" for lang in titles})
        )


def prompts_to(sink: Sink, address: str) -> list:  # type: ignore[type-arg]
    return [m for m in sink.to(address, list_copies=True) if m["X-Listserv-Topic"] == "2026-W48"]


def test_monday_prompt_once_per_list_across_a_restart_and_two_processes(
    relayed_settings: Settings, relayed_engine: Engine, sink: Sink, clock: SteppableClock
) -> None:
    seed(
        relayed_engine,
        relayed_settings,
        {"en": "Customs data", "fr": "Données douanières", "es": "Datos aduaneros"},
    )
    clock.now = MONDAY_0859
    with RunningForum(relayed_settings, relayed_engine, clock) as first:
        first.forum.jobs.tick()
        assert all(prompts_to(sink, who) == [] for who in READERS.values())  # not yet
    clock.advance(minutes=1)  # 09:00, after the restart: two processes share the database
    with (
        RunningForum(relayed_settings, relayed_engine, clock) as second,
        RunningForum(relayed_settings, relayed_engine, clock) as third,
    ):
        third.forum.jobs.holder = "other-host:1"
        third.forum.jobs.tick()
        second.forum.jobs.tick()
        second.forum.jobs.run("prompts")  # and a manual run on top
        wait_for(lambda: all(prompts_to(sink, who) for who in READERS.values()), what="every list's prompt")
    subjects = {name: [m["Subject"] for m in prompts_to(sink, who)] for name, who in READERS.items()}
    assert subjects == {
        "ta-en": ["[TA-EN] Customs data"],
        "ta-fr": ["[TA-FR] Données douanières"],
        "ta-es": ["[TA-ES] Datos aduaneros"],
    }
    fr = prompts_to(sink, READERS["ta-fr"])[0]
    assert "ta-en" in fr["X-Listserv-Sister-Threads"] and "ta-es" in fr["X-Listserv-Sister-Threads"]
    with Session(relayed_engine) as session:
        assert len(session.scalars(select(SentPrompt)).all()) == 3
        assert len(session.scalars(select(ArchivedPost)).all()) == 3  # archived, one thread per language


def test_a_missing_language_falls_back_with_a_note(
    relayed_settings: Settings, relayed_engine: Engine, sink: Sink, clock: SteppableClock
) -> None:
    seed(relayed_engine, relayed_settings, {"en": "Customs data", "fr": "Données douanières"})
    clock.now = MONDAY_0859
    clock.advance(minutes=1)
    with RunningForum(relayed_settings, relayed_engine, clock) as live:
        live.forum.jobs.run("prompts")
        wait_for(lambda: prompts_to(sink, READERS["ta-es"]), what="the Spanish list's prompt")
    spanish = prompts_to(sink, READERS["ta-es"])[0]
    assert spanish["Subject"] == "[TA-ES] Customs data"
    text = spanish.get_body(("plain",)).get_content()
    assert "Body en" in text
    assert "aquí lo tiene en inglés" in " ".join(text.split())  # the one-line note, in Spanish


def test_a_late_prompt_is_skipped_and_the_moderators_told(
    relayed_settings: Settings, relayed_engine: Engine, sink: Sink, clock: SteppableClock
) -> None:
    seed(relayed_engine, relayed_settings, {"en": "Customs data", "fr": "Données", "es": "Datos"})
    clock.now = MONDAY_0859
    clock.advance(hours=13)  # the server was down past the 12-hour grace
    with RunningForum(relayed_settings, relayed_engine, clock) as live:
        live.forum.jobs.run("prompts")
        sink.wait_to("mod-fr@forum.example.org")
        live.forum.jobs.run("prompts")
    assert all(prompts_to(sink, who) == [] for who in READERS.values())
    assert len(sink.to("mod-fr@forum.example.org")) == 1  # told once


def test_a_mailed_proposal_approved_by_reply_becomes_next_weeks_topic(
    live: RunningForum, relayed_settings: Settings, relayed_engine: Engine, sink: Sink
) -> None:
    add_members(relayed_engine, relayed_settings, {"email": "ben@example.org", "lists": "ta-es"})
    send(
        live.port,
        "ben@example.org",
        "ta-es-propose@forum.example.org",
        "La aduana digital",
        "Propongo hablar de la aduana digital.",
    )
    [notice] = sink.wait_to("mod-es@forum.example.org")
    assert CODE.search(notice["Subject"])
    reply_to_notice(live.port, notice, "mod-es@forum.example.org", "aprobar")
    wait_for(lambda: len(sink.to("ben@example.org")) >= 2, what="the proposer to be told")
    with Session(relayed_engine) as session:
        topic = session.scalars(select(Topic)).one()
        assert (topic.room, topic.week, topic.titles) == ("ta", "2026-W49", {"es": "La aduana digital"})
    [request] = sink.wait_to("mod-fr@forum.example.org")  # the sister list is asked for French
    reply_to_notice(live.port, request, "mod-fr@forum.example.org", "La douane numérique\n\nParlons-en.")
    wait_for(lambda: _titles(relayed_engine).get("fr") == "La douane numérique", what="the French version")


def _titles(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return dict(session.scalars(select(Topic)).one().titles)


def test_only_one_process_holds_the_lease(relayed_engine: Engine) -> None:
    now = MONDAY_0859
    with Session(relayed_engine) as session, session.begin():
        assert acquire_lease(session, "a:1", now)
    with Session(relayed_engine) as session, session.begin():
        assert not acquire_lease(session, "b:2", now)
        assert acquire_lease(session, "a:1", now)  # renewal
    with Session(relayed_engine) as session, session.begin():
        assert acquire_lease(session, "b:2", now.replace(hour=9))  # a's lease expired: taken over


def test_missing_translations_are_flagged_three_days_before_and_the_summary_goes_out_once(
    relayed_settings: Settings, relayed_engine: Engine, sink: Sink, clock: SteppableClock
) -> None:
    add_members(relayed_engine, relayed_settings, {"email": "eve@example.org", "lists": "ta-en"})
    with Session(relayed_engine) as session, session.begin():
        session.add(
            Topic(
                room="ta",
                week="2026-W49",
                titles={"en": "Next", "fr": "Prochain"},
                bodies={"en": "Body", "fr": "Corps"},
            )
        )
    clock.now = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)  # Friday 16:30 in Zurich; W49 starts Monday
    with RunningForum(relayed_settings, relayed_engine, clock) as live:
        for _ in range(2):
            live.forum.jobs.tick()
        sink.wait_to("mod-es@forum.example.org", count=2)  # the translation flag and the summary
        wait_for(lambda: len(sink.to("mod-en@forum.example.org")) == 1, what="the English summary")
        live.forum.jobs.tick()
    notices = sink.to("mod-es@forum.example.org")
    assert len(notices) == 2  # once each, whatever the number of ticks
    assert any("2026-W49" in n.get_body(("plain",)).get_content() for n in notices)
    assert sink.to("mod-fr@forum.example.org") and len(sink.to("mod-fr@forum.example.org")) == 1


def test_two_processes_running_the_prompt_job_at_once_send_it_once(
    serve_config: tuple[Path, int], db_url: str
) -> None:
    """Real processes this time: two `listserv jobs run prompts --at` racing on one database."""
    config_file, _ = serve_config
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        session.add(
            Topic(
                room="ta",
                week="2026-W48",
                titles={"en": "Data", "fr": "Données", "es": "Datos"},
                bodies={"en": "Body", "fr": "Corps", "es": "Cuerpo"},
            )
        )
    command = [
        sys.executable,
        "-m",
        "listserv",
        "--config",
        str(config_file),
        "jobs",
        "run",
        "prompts",
        "--at",
        "2026-11-23T09:00:30+01:00",
    ]
    racers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    with Session(engine) as session:
        assert sorted(session.scalars(select(SentPrompt.list_name))) == ["ta-en", "ta-es", "ta-fr"]
        assert len(session.scalars(select(ArchivedPost)).all()) == 3
    engine.dispose()
