"""config.yaml → Settings: the shipped default loads; every fault is one line with its key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from listserv.config import ConfigError, config_path, load_settings, parse_settings
from tests.conftest import ROOT, shipped_config


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


def test_shipped_config_gives_three_lists_with_their_moderators() -> None:
    settings = load_settings(ROOT / "config.yaml")
    assert list(settings.lists) == ["ta-en", "ta-fr", "ta-es"]
    assert settings.lists["ta-fr"].moderators == ("mod-fr@forum.example.org",)
    assert settings.lists["ta-es"].title == "Asistencia técnica"
    assert settings.site.data_dir == (ROOT / "var").resolve()
    assert settings.database.url == f"sqlite:///{(ROOT / 'var' / 'listserv.db').resolve()}"


def test_more_rooms_and_languages_are_configuration_only() -> None:
    raw = shipped_config()
    raw["languages"] = ["en", "fr", "es", "ar", "zh", "ru"]
    raw["rooms"].append({"name": "health", "languages": ["en", "ar"], "title": {"ar": "الصحة"}})
    lists = parse_settings(raw).lists
    assert "ta-ru" in lists and "health-ar" in lists and "health-fr" not in lists
    assert lists["health-ar"].title == "الصحة"
    assert lists["health-en"].title == "health-en"  # no title given: the list's name, never a crash


def test_a_bad_moderator_address_names_its_key_path() -> None:
    raw = shipped_config()
    raw["rooms"][0]["moderators"]["fr"] = ["bob"]
    assert problems_of(raw) == ["rooms[0].moderators.fr[0]: 'bob' is not an email address"]


def test_every_problem_is_reported_at_once() -> None:
    raw = shipped_config()
    raw["site"]["timezone"] = "Mars/Olympus"
    raw["smtp"]["port"] = 99999
    raw["smtp"]["colour"] = "blue"
    del raw["site"]["domain"]
    assert problems_of(raw) == [
        "site.domain: required key is missing",
        "site.timezone: 'Mars/Olympus' is not a time zone name like 'Europe/Zurich'",
        "smtp.port: Input should be less than or equal to 65535",
        "smtp.colour: unknown key (check its spelling)",
    ]


def test_room_problems_listed_together() -> None:
    raw = shipped_config()
    raw["rooms"].append({"name": "ta", "languages": ["es"], "moderators": {"fr": ["a@example.org"]}})
    assert problems_of(raw) == [
        "rooms[0].name: 'ta' is used by more than one room",
        "rooms[1].name: 'ta' is used by more than one room",
        "rooms[1].moderators.fr: the room has no 'fr' list",
    ]


def test_room_overrides_site_block_key_by_key() -> None:
    raw = shipped_config()
    raw["delivery"] = {"relay": {"host": "relay.example.org", "port": 2525}, "dmarc": "wrap"}
    raw["rooms"].append({"name": "health", "delivery": {"subject_prefix": "[H]", "batch_size": 10}})
    settings = parse_settings(raw)
    assert settings.room("ta").delivery.subject_prefix is None
    assert settings.room("health").delivery.subject_prefix == "[H]"
    assert settings.room("health").delivery.batch_size == 10
    assert settings.room("health").delivery.dmarc == "wrap"
    assert settings.room("health").delivery.relay.port == 2525  # the site's, inherited


def test_a_room_cannot_set_what_one_part_serves_for_the_whole_site() -> None:
    raw = shipped_config()
    raw["delivery"] = {"relay": {"host": "relay.example.org"}}
    raw["rooms"].append(
        {
            "name": "health",
            "delivery": {"relay": {"host": "other.example.org"}, "connections": 8},
            "moderation": {"trusted_authserv_id": "mx.example.org", "hold": "non_staff"},
        }
    )
    raw["rooms"].append({"name": "same", "delivery": {"relay": {"host": "relay.example.org"}}})
    assert problems_of(raw) == [
        "rooms[1].delivery.relay: one value serves the whole site; "
        "set delivery.relay at the top level, not per room",
        "rooms[1].delivery.connections: one value serves the whole site; "
        "set delivery.connections at the top level, not per room",
        "rooms[1].moderation.trusted_authserv_id: one value serves the whole site; "
        "set moderation.trusted_authserv_id at the top level, not per room",
    ]


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("site: {domain: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: not valid YAML:")


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTSERV_CONFIG", "/etc/listserv.yaml")
    assert config_path("given.yaml") == Path("given.yaml")
    assert config_path(None) == Path("/etc/listserv.yaml")
    monkeypatch.delenv("LISTSERV_CONFIG")
    assert config_path(None) == Path("config.yaml")


def test_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    raw = shipped_config()
    raw["rooms"][0]["moderators"]["fr"] = ["bob"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "listserv", "--config", str(path), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "config error: rooms[0].moderators.fr[0]: 'bob' is not an email address" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "listserv", "--config", str(tmp_path / "absent.yaml"), "init"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot read the configuration file" in result.stderr
    assert "Traceback" not in result.stderr
