"""The installable package: ``pip wheel .`` builds a wheel that carries the templates, catalogues,
static files and migrations; installed into a fresh venv (no checkout on its path) it runs ``init`` and
``serve`` with a config in another directory, from a third working directory. An operator's
``site.templates_dir`` overrides one shipped template; the rest still come from the package.

Slow (~1 min: the venv installs every dependency), so it runs once, on SQLite.
"""

from __future__ import annotations

import mailbox
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import urllib.request
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, free_port, shipped_config, wait_for

OVERRIDE = "Subject: Overridden by the operator\n\nThis forum is closed to non-members.\n"


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's bin/ with listserv installed from a wheel built from this checkout."""
    build = tmp_path_factory.mktemp("wheel")
    # From a copy of the tracked files: setuptools reuses the checkout's build/ folder, and a file
    # renamed since the last build (a migration, say) would ship twice.
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", build, source, cwd=build)
    [wheel] = build.glob("listserv-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "listserv/templates/mail/fr/moderator_held.txt",
        "listserv/templates/mail/es/commands.yaml",
        "listserv/templates/web/base.html",
        "listserv/templates/protocol/en.md",
        "listserv/locale/fr/LC_MESSAGES/listserv.po",
        "listserv/web/static/style.css",
        "listserv/store/migrations/versions/0001_foundation_lists_members_subscriptions_.py",
        "listserv/store/migrations/env.py",
        "digests/send.py",
    ):
        assert expected in names, f"{expected} is not in the wheel"
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv, cwd=venv, env=clean_env())
    run(venv / "bin" / "pip", "install", "-q", wheel, cwd=venv, env=clean_env())
    return venv / "bin"


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (the tests run with the checkout on it) and no config from the environment."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LISTSERV_CONFIG")}


def test_the_wheel_runs_init_and_serve_from_anywhere(installed: Path, tmp_path: Path) -> None:
    etc, elsewhere = tmp_path / "etc" / "listserv", tmp_path / "elsewhere"
    etc.mkdir(parents=True)
    elsewhere.mkdir()
    (etc / "custom" / "mail" / "en").mkdir(parents=True)
    (etc / "custom" / "mail" / "en" / "sender_not_member.txt").write_text(OVERRIDE, encoding="utf-8")
    raw = shipped_config()
    smtp_port, web_port = free_port(), free_port()
    raw["site"].update(data_dir=str(tmp_path / "data"), templates_dir="custom")  # relative: to the config
    raw["database"]["url"] = f"sqlite:///{tmp_path / 'data' / 'listserv.db'}"
    raw["smtp"]["port"], raw["web"]["port"] = smtp_port, web_port
    config = etc / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = clean_env()
    where = run(
        installed / "python", "-c", "import listserv; print(listserv.__file__)", cwd=elsewhere, env=env
    )
    assert where.startswith(str(installed.parent)), where  # the installed copy, not this checkout
    listserv = installed / "listserv"
    assert "database ready: 3 lists" in run(listserv, "--config", config, "init", cwd=elsewhere, env=env)
    run(
        listserv,
        "--config",
        config,
        "members",
        "add",
        "ana@example.org",
        "--lists",
        "ta-en",
        cwd=elsewhere,
        env=env,
    )

    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [listserv, "--config", config, "serve"], cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: _answers(smtp_port) or serve.poll() is not None, timeout=30, what="serve to listen")
        assert serve.poll() is None, (tmp_path / "serve.log").read_text()
        for sender in ("ana@example.org", "stranger@example.net"):
            _post(smtp_port, sender)
        served = tmp_path / "serve.log"  # the first 220 comes before the web listens (staged start)
        wait_for(lambda: b"web archive on" in served.read_bytes(), timeout=30, what="the web to listen")
        page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/password/forgot", timeout=10)
        assert page.status == 200 and b"<form" in page.read()
        css = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/static/style.css", timeout=10)
        assert css.status == 200
        outbox = tmp_path / "data" / "outbox"
        wait_for(lambda: len(_subjects(outbox)) >= 3, timeout=30, what="the notices in the outbox")
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0, (tmp_path / "serve.log").read_text()
    subjects = _subjects(outbox)
    assert any(subject.startswith("[#") for subject in subjects), subjects  # the shipped moderator_held
    assert "Overridden by the operator" in subjects  # the operator's sender_not_member


def _answers(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def _post(port: int, sender: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "ta-en@forum.example.org", "From the wheel"
    message.set_content("Installed, not checked out.")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


def _subjects(outbox: Path) -> list[str]:
    if not outbox.exists():
        return []
    return [str(message["Subject"]) for message in mailbox.Maildir(outbox, create=False)]
