"""Mail to -request@ over real SMTP: answers in the list's language, subscriptions held for the
moderators like posts, unsubscription confirmed by a single-use token, settings. Both databases."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.directory import find_member
from listserv.store.models import Held
from tests.conftest import RunningForum, Sink, add_members, wait_for, wait_processed
from tests.test_moderation import CODE, reply_to_notice, send

ANA = "ana@example.org"
MOD_FR = "mod-fr@forum.example.org"


@pytest.fixture(autouse=True)
def members(relayed_engine: Engine, relayed_settings: Settings) -> None:
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": ANA, "name": "Ana", "country": "CL", "lists": "ta-es;ta-fr", "language": "es"},
    )


def request(
    live: RunningForum, sender: str, list_name: str, subject: str, body: str = "", **headers: str
) -> None:
    send(live.port, sender, f"{list_name}-request@forum.example.org", subject, body, **headers)


def subscription(engine: Engine, address: str, list_name: str):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        member = find_member(session, address)
        return (
            next((s for s in member.subscriptions if s.mailing_list.name == list_name), None)
            if member
            else None
        )


def language_of(engine: Engine, address: str) -> str | None:
    with Session(engine) as session:
        member = find_member(session, address)
        return member.language if member else None


def test_help_comes_in_the_lists_language(live: RunningForum, sink: Sink) -> None:
    request(live, ANA, "ta-es", "ayuda")
    [answer] = sink.wait_to(ANA)
    assert answer["Content-Language"] == "es"
    assert "resumen" in answer.get_content()


def test_subscribing_is_approved_by_a_moderator_then_welcomed(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    request(live, "Jean Dupont <jean@example.fr>", "ta-fr", "abonner")
    [pending] = sink.wait_to("jean@example.fr")
    assert pending["Content-Language"] == "fr"
    [notice] = sink.wait_to(MOD_FR)
    assert CODE.search(notice["Subject"])
    with Session(relayed_engine) as session:
        assert session.scalars(select(Held.kind)).one() == "subscription"
    assert subscription(relayed_engine, "jean@example.fr", "ta-fr") is None
    reply_to_notice(live.port, notice, MOD_FR, "approuver")
    welcome = sink.wait_to("jean@example.fr", count=2)[1]
    assert "Jean Dupont" in welcome.get_content() or "Bienvenue" in welcome["Subject"]
    assert subscription(relayed_engine, "jean@example.fr", "ta-fr").delivery == "each"


def test_a_refused_subscription_is_told_why(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    request(live, "x@example.com", "ta-fr", "subscribe")
    [notice] = sink.wait_to(MOD_FR)
    reply_to_notice(live.port, notice, MOD_FR, "rejeter Réservé aux délégués désignés")
    refusal = sink.wait_to("x@example.com", count=2)[1]
    assert "Réservé aux délégués désignés" in refusal.get_content()
    assert subscription(relayed_engine, "x@example.com", "ta-fr") is None


def test_unsubscribing_needs_the_token_once(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    request(live, ANA, "ta-fr", "désabonner")
    [confirm] = sink.wait_to(ANA)
    token = re.search(r"confirm (\S+)", confirm["Subject"]).group(1)
    assert subscription(relayed_engine, ANA, "ta-fr") is not None  # not before the confirmation
    reply_to_notice(live.port, confirm, ANA, "")  # a plain reply confirms
    done = sink.wait_to(ANA, count=2)[1]
    assert done["Content-Language"] == "fr"
    assert subscription(relayed_engine, ANA, "ta-fr") is None
    assert subscription(relayed_engine, ANA, "ta-es") is not None  # only that list
    request(live, ANA, "ta-fr", f"confirm {token}")  # the token again
    replayed = sink.wait_to(ANA, count=3)[2]
    assert token not in replayed["Subject"]
    assert subscription(relayed_engine, ANA, "ta-fr") is None


def test_settings_change_at_once_and_are_confirmed(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    request(live, ANA, "ta-es", "resumen semanal")
    wait_for(lambda: subscription(relayed_engine, ANA, "ta-es").delivery == "digest", what="digest mode")
    assert subscription(relayed_engine, ANA, "ta-es").digest_period == "weekly"
    request(live, ANA, "ta-es", "pausa")
    wait_for(lambda: subscription(relayed_engine, ANA, "ta-es").delivery == "none", what="nomail")
    request(live, ANA, "ta-es", "reanudar")
    wait_for(lambda: subscription(relayed_engine, ANA, "ta-es").delivery == "each", what="mail again")
    request(live, ANA, "ta-es", "idioma fr")
    wait_for(lambda: language_of(relayed_engine, ANA) == "fr", what="the language")
    answers = sink.wait_to(ANA, count=4)
    assert all(answer["Content-Language"] == "es" for answer in answers)


def test_whoami_and_non_members(live: RunningForum, sink: Sink, relayed_engine: Engine) -> None:
    request(live, ANA, "ta-es", "whoami")
    [answer] = sink.wait_to(ANA)
    assert "ta-fr" in answer.get_content() and "ta-es" in answer.get_content()
    request(live, "nobody@example.com", "ta-es", "unsubscribe")
    [problem] = sink.wait_to("nobody@example.com")
    assert problem["Content-Language"] == "es"


def test_automatic_mail_to_request_is_not_answered(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    request(
        live,
        ANA,
        "ta-es",
        "Respuesta automática: ayuda",
        "Estoy de vacaciones",
        Auto_Submitted="auto-replied",
    )
    wait_processed(relayed_engine)
    live_outbox = live.forum.outbox.background
    live_outbox.wake()
    assert sink.to(ANA) == []
