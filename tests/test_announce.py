"""``listserv announce FILE.yaml``: one message per list of the room, each in its language, archived,
planned for delivery to the members like the weekly prompt, linked as sister threads; sent once."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import parse_settings
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, Delivery
from tests.conftest import ROOT, add_members, run_cli

EXAMPLE = ROOT / "examples" / "announcement.yaml"


def test_the_example_goes_to_every_list_once(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file, _ = serve_config
    engine = make_engine(db_url)
    settings = parse_settings(yaml.safe_load(config_file.read_text()), config_file.parent)
    add_members(
        engine,
        settings,
        {"email": "ana@fr.example", "lists": "ta-fr"},
        {"email": "bo@en.example", "lists": "ta-en"},
    )
    result = run_cli(config_file, "announce", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "announced to 3 list(s) of room ta" in result.stdout
    again = run_cli(config_file, "announce", str(EXAMPLE))
    assert again.returncode == 0 and "already sent" in again.stdout
    with Session(engine) as session:
        posts = {p.list_name: p for p in session.scalars(select(ArchivedPost))}
        deliveries = {d.list_name: d.recipients for d in session.scalars(select(Delivery))}
    engine.dispose()
    assert sorted(posts) == ["ta-en", "ta-es", "ta-fr"]
    assert sorted(deliveries["ta-fr"]) == ["ana@fr.example", "mod-fr@forum.example.org"]
    assert sorted(deliveries["ta-en"]) == ["bo@en.example", "mod-en@forum.example.org"]
    fr = email.message_from_bytes(posts["ta-fr"].delivered_raw or b"", policy=email.policy.default)
    assert fr["Subject"] == "[TA-FR] Webinaire du 15 janvier : échange de données douanières"
    assert fr["Content-Language"] == "fr"
    assert "Chères et chers collègues" in fr.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    sisters = fr["X-Listserv-Sister-Threads"]
    assert posts["ta-en"].message_id in sisters and posts["ta-es"].message_id in sisters
    assert posts["ta-fr"].message_id not in sisters
    assert all(p.thread_id == p.id for p in posts.values())  # each opens a thread of its own


def test_a_missing_language_falls_back_with_a_note(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file, _ = serve_config
    file = config_file.parent / "short.yaml"
    file.write_text("room: ta\nsubjects:\n  en: Notice\nbodies:\n  en: Read this.\n", encoding="utf-8")
    assert run_cli(config_file, "announce", str(file)).returncode == 0
    engine = make_engine(db_url)
    with Session(engine) as session:
        es = session.scalars(select(ArchivedPost).where(ArchivedPost.list_name == "ta-es")).one()
    engine.dispose()
    text = email.message_from_bytes(es.raw, policy=email.policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Este anuncio aún no está disponible en español" in text and "Read this." in text


def test_a_bad_file_is_explained(serve_config: tuple[Path, int]) -> None:
    config_file, _ = serve_config
    bad = config_file.parent / "bad.yaml"
    for content, said in [
        ("room: nowhere\nsubjects: {en: A}\nbodies: {en: B}\n", "room: 'nowhere' is not a room"),
        ("room: ta\nsubjects: {en: A, de: B}\nbodies: {en: B}\n", "subjects.de: room 'ta' has no 'de' list"),
        ("room: ta\nsubjects: {en: A}\nbodies: {fr: B}\n", "subjects.fr: missing"),
        ("room: ta\nsubject: {en: A}\nbodies: {en: B}\n", "subject: unknown key"),
        ("room: [ta\n", "not valid YAML at line"),
    ]:
        bad.write_text(content, encoding="utf-8")
        result = run_cli(config_file, "announce", str(bad))
        assert result.returncode == 2, (content, result.stderr)
        assert said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
