"""``listserv i18n check`` and the translation warnings of ``init``: coverage per configured language
(mail templates, catalogue entries, web strings, protocol, reply words), exit 1 when one is incomplete,
and per list a missing title or moderators in its language. Real files: a copy of the shipped templates
with pieces removed stands for an incomplete translation."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from listserv.config import SHIPPED_TEMPLATES
from tests.conftest import ServeProcess, free_port, make_config, run_cli, wait_for

SIX = ["en", "fr", "es", "ar", "zh", "ru"]
TEMPLATES = sum(path.suffix in (".txt", ".html") for path in (SHIPPED_TEMPLATES / "mail" / "en").iterdir())


def write_config(tmp_path: Path, languages: list[str], **room: object) -> Path:
    raw = make_config(tmp_path, f"sqlite:///{tmp_path / 'listserv.db'}")
    raw["languages"] = languages
    raw["rooms"] = [
        {
            "name": "ta",
            "title": {language: f"Title {language}" for language in languages},
            "moderators": {language: [f"mod-{language}@forum.example.org"] for language in languages},
        }
        | room
    ]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return config_file


def test_the_six_languages_are_complete(tmp_path: Path) -> None:
    result = run_cli(write_config(tmp_path, SIX), "i18n", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == SIX
    assert all(line.endswith("— complete") for line in lines)
    assert f"mail templates {TEMPLATES}/{TEMPLATES}" in lines[3]
    assert "reply words 3/3" in lines[4] and "protocol 1/1" in lines[5]


def test_a_language_without_translations_is_incomplete_and_its_list_is_reported(tmp_path: Path) -> None:
    result = run_cli(write_config(tmp_path, ["en", "fa"]), "i18n", "check")
    assert result.returncode == 1
    [fa] = [line for line in result.stdout.splitlines() if line.startswith("fa:")]
    assert f"mail templates 0/{TEMPLATES}" in fa and "web strings 0/" in fa and "incomplete, missing:" in fa
    assert "warning: list ta-fa: translations in 'fa' are incomplete" in result.stdout
    assert "incomplete: fa" in result.stderr


def test_a_missing_template_and_catalogue_entry_are_named(tmp_path: Path) -> None:
    """An operator's own language in ``site.templates_dir`` (searched before the shipped templates, so a
    shipped language cannot lose a file there): Persian with one template and one reply word short."""
    templates = tmp_path / "templates"
    shutil.copytree(SHIPPED_TEMPLATES / "mail" / "en", templates / "mail" / "fa")
    (templates / "mail" / "fa" / "member_help.txt").unlink()
    commands = templates / "mail" / "fa" / "commands.yaml"
    commands.write_text("approve: ['تایید']\nreject: ['رد']\n", encoding="utf-8")
    (templates / "protocol").mkdir()
    (templates / "protocol" / "fa.md").write_text("# پروتکل\n", encoding="utf-8")
    config_file = write_config(tmp_path, [*SIX, "fa"])
    raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    raw["site"]["templates_dir"] = str(templates)
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    result = run_cli(config_file, "i18n", "check")
    assert result.returncode == 1
    by_language = {line.split(":")[0]: line for line in result.stdout.splitlines() if "—" in line}
    assert f"mail templates {TEMPLATES - 1}/{TEMPLATES}" in by_language["fa"]
    assert "member_help.txt" in by_language["fa"] and "protocol 1/1" in by_language["fa"]
    assert "reply words 2/3" in by_language["fa"]
    assert by_language["zh"].endswith("— complete")  # its files still come from the shipped folder


def test_init_warns_per_list_about_a_missing_title_and_moderators(tmp_path: Path) -> None:
    config_file = write_config(
        tmp_path,
        SIX,
        title={"en": "Technical Assistance", "fr": "Assistance technique"},
        moderators={"en": ["mod-en@forum.example.org"]},
    )
    result = run_cli(config_file, "init")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert (
        "warning: list ta-ar: no title in 'ar' (rooms.ta.title.ar); shown as 'Technical Assistance'"
        in warnings
    )
    assert any(w.startswith("warning: list ta-zh: no moderator in 'zh'") and "chief@" in w for w in warnings)
    assert not any("ta-en" in warning or "ta-fr: no title" in warning for warning in warnings)
    assert len(warnings) == 4 + 5  # titles of es, ar, zh, ru; moderators of all but en


def test_serve_warns_per_list_in_its_log(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, ["en", "zh"], moderators={"en": ["mod-en@forum.example.org"]})
    raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    raw["smtp"]["port"], raw["web"]["port"] = port, _ = free_port(), free_port()
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    serve = ServeProcess(config_file, port).start()
    try:  # logged as the rest of serve comes up, after the SMTP side (staged start)
        wait_for(lambda: "web archive on" in serve.log_text(), what="serve to have started every part")
        log = serve.log_text()
    finally:
        serve.stop()
    assert "WARNING listserv.cli.serve: list ta-zh: no moderator in 'zh'" in log
    assert "list ta-en" not in log
