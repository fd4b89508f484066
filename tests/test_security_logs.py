"""Secrets never in logs (issue 20, item 4): one real ``listserv serve`` at DEBUG, with the relay behind
STARTTLS and a password, goes through sign-in, a password reset, moderation by reply code, a published
post with its unsubscribe link, a guest's invitation and a reconfirmation; then every secret the run
handled is looked for in every log it wrote (serve's stdout and stderr, the CLI's, every file under
data_dir that is not data): none may appear."""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote, unquote, urlencode
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, Request, build_opener

import pytest
import yaml

from listserv.store.db import make_engine, utc_now
from tests.conftest import (
    CSRF_FIELD,
    ServeProcess,
    free_port,
    make_config,
    run_cli,
    set_password,
    wait_for,
)
from tests.test_moderation import CODE
from tests.test_mta import PASSWORD as RELAY_PASSWORD
from tests.test_mta import AuthSink, make_certificate, relay_config

pytestmark = [pytest.mark.security, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
DOMAIN = "forum.example.org"
MEMBER, MODERATOR, GUEST = "ana@example.org", "mod-en@forum.example.org", "grace@outside.example"
SIGN_IN_PASSWORD, NEW_PASSWORD = "first Sign-in pass 7731", "second Reset pass 9902"
URL = re.compile(r"https?://[^\s<>\"']+")
TOKENISH = re.compile(r"[A-Za-z0-9_.\-~:]{16,}")


class NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 303 is an answer to look at, not to follow


@dataclass
class Answer:
    status_code: int
    text: str


class Browser:
    """A cookie-keeping HTTP client for the real web server (urllib: no extra dependency)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = build_opener(HTTPCookieProcessor(self.jar), NoRedirect)

    def _open(self, request: Request) -> Answer:
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, response.read().decode("utf-8", "replace"))
        except HTTPError as answer:
            return Answer(answer.code, answer.read().decode("utf-8", "replace"))

    def get(self, path: str) -> Answer:
        return self._open(Request(self.base + path))

    def post(self, path: str, data: dict[str, str]) -> Answer:
        return self._open(Request(self.base + path, data=urlencode(data).encode(), method="POST"))

    def cookies(self) -> list[str]:
        return [cookie.value or "" for cookie in self.jar]


class DebugServe(ServeProcess):
    """``serve`` at ``--log-level DEBUG``, its stdout and stderr in serve.log."""

    def start(self) -> DebugServe:
        log = (self.config_file.parent / "serve.log").open("ab")
        command = [
            sys.executable,
            "-m",
            "listserv",
            "--config",
            str(self.config_file),
            "--log-level",
            "DEBUG",
        ]
        self.process = subprocess.Popen(
            [*command, "serve"], stdout=log, stderr=subprocess.STDOUT, cwd=self.config_file.parent
        )
        wait_for(self._accepts, timeout=20, what=f"listserv serve to listen on {self.port}")
        return self


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[AuthSink]:
    cert, key = make_certificate(tmp_path, "relay.test")
    running = AuthSink(cert, key)
    running.controller.start()
    yield running
    running.controller.stop()


def site(tmp_path: Path, db_url: str, relay: AuthSink) -> tuple[Path, int, int]:
    smtp_port, web_port = free_port(), free_port()
    raw = make_config(tmp_path, db_url)
    raw["smtp"]["port"], raw["web"]["port"] = smtp_port, web_port
    raw["site"]["base_url"] = f"http://127.0.0.1:{web_port}"
    raw["delivery"] = {"relay": relay_config(relay, tmp_path), "one_click": "always"}
    raw["membership"] = {"reconfirm_days": 30}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cli_ok(config_file, "init")
    cli_ok(config_file, "members", "add", MEMBER, "--name", "Ana Pérez", "--lists", "ta-en")
    set_password(make_engine(db_url), MEMBER, SIGN_IN_PASSWORD)
    return config_file, smtp_port, web_port


CLI_OUTPUT: list[str] = []


def cli_ok(config_file: Path, *args: str) -> str:
    done = run_cli(config_file, "--log-level", "DEBUG", *args)
    CLI_OUTPUT.append(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr
    return done.stdout


def send(port: int, sender: str, to: str, subject: str, body: str, **headers: str) -> None:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    raw = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}\r\n"
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail(sender, [to], raw.encode("utf-8"))


def text_of(message: object) -> str:
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    return body.get_content() if body is not None else ""


def mailed_links(relay: AuthSink, address: str, containing: str) -> list[str]:
    def links() -> list[str]:
        texts = [text_of(message) for message in relay.to(address)]
        return [url for text in texts for url in URL.findall(text) if containing in url]

    wait_for(lambda: bool(links()), what=f"a mail to {address} with a link to {containing}")
    return links()


def web_secrets(web: Browser, relay: AuthSink) -> list[str]:
    """Sign in, sign out, ask for a reset, follow the mailed link, set a new password."""
    found = []
    csrf = CSRF_FIELD.search(web.get("/password/forgot").text).group(1)  # type: ignore[union-attr]
    signed_in = web.post("/login", {"email": MEMBER, "password": SIGN_IN_PASSWORD, "csrf": csrf})
    assert signed_in.status_code == 303, signed_in.text
    found += [value for value in web.cookies() if len(value) >= 16]
    csrf = CSRF_FIELD.search(web.get("/account").text).group(1)  # type: ignore[union-attr]
    found.append(csrf)
    assert web.post("/logout", {"csrf": csrf}).status_code == 303
    csrf = CSRF_FIELD.search(web.get("/password/forgot").text).group(1)  # type: ignore[union-attr]
    assert web.post("/password/forgot", {"email": MEMBER, "csrf": csrf}).status_code == 200
    [link] = mailed_links(relay, MEMBER, "/password/reset/")
    path = "/" + link.split("/", 3)[3]
    page = web.get(path)
    assert page.status_code == 200, page.text
    csrf = CSRF_FIELD.search(page.text).group(1)  # type: ignore[union-attr]
    form = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf": csrf}
    assert web.post(path, form).status_code == 303
    found += [value for value in web.cookies() if len(value) >= 16]
    return found


def mail_secrets(relay: AuthSink) -> list[str]:
    """Every reply code, every token of a link, every VERP token, in every message the relay received."""
    found = [sender.partition("+")[2].partition("@")[0] for sender, _, _ in relay.messages if "+" in sender]
    for _, _, message in relay.messages:
        found += CODE.findall(str(message["Subject"] or ""))
        for part in message.walk():
            if part.get_content_maintype() != "text":
                continue
            text = part.get_content()
            found += [match.replace("-", "") for match in CODE.findall(text)]
            found += CODE.findall(text)
            for url in URL.findall(text) + URL.findall(str(message["List-Unsubscribe"] or "")):
                found += [unquote(piece) for piece in TOKENISH.findall(url.split("/", 3)[-1])]
    message_ids = " ".join(str(message["Message-ID"]) for _, _, message in relay.messages)
    return [
        secret
        for secret in found
        if not secret.startswith(("forum.example", "127.0.0.1")) and secret not in message_ids
    ]


def logs(tmp_path: Path, serve: ServeProcess) -> str:
    """Every log this run wrote: serve's output, the CLI's, and any log file under data_dir."""
    written = [serve.log_text(), *CLI_OUTPUT]
    for path in (tmp_path / "var").rglob("*"):
        if path.is_file() and (path.suffix in (".log", ".txt") or "log" in path.name):
            written.append(path.read_text(errors="replace"))
    return "\n".join(written)


def test_no_secret_reaches_any_log_at_debug(tmp_path: Path, db_url: str, relay: AuthSink) -> None:
    CLI_OUTPUT.clear()
    config_file, smtp_port, web_port = site(tmp_path, db_url, relay)
    serve = DebugServe(config_file, smtp_port).start().fully_started()
    try:
        web = Browser(f"http://127.0.0.1:{web_port}")
        wait_for(lambda: web.get("/login").status_code == 200, what="the web server")
        secrets = web_secrets(web, relay)
        send(smtp_port, MEMBER, f"ta-en@{DOMAIN}", "Capacity building", "Dear colleagues,\nhello.")
        [notice] = relay.wait_to(MODERATOR)
        code = CODE.search(str(notice["Subject"])).group(1)  # type: ignore[union-attr]
        send(smtp_port, MODERATOR, str(notice["Reply-To"]), "Re: x", "approve\n")
        [copy] = relay.wait_to(MEMBER, list_copies=True)
        thread = str(copy["Message-ID"])
        cli_ok(config_file, "guests", "invite", "--list", "ta-en", "--thread", thread, GUEST, "--name", "G")
        relay.wait_to(GUEST)
        later = (utc_now() + timedelta(days=60)).isoformat()
        cli_ok(config_file, "jobs", "run", "reconfirm", "--at", later)
        mailed_links(relay, MEMBER, "confirm")
    finally:
        serve.stop()
    secrets += [code, code.replace("-", ""), RELAY_PASSWORD, SIGN_IN_PASSWORD, NEW_PASSWORD]
    secrets += mail_secrets(relay)
    secrets.append((tmp_path / "var" / "secret").read_text().strip())
    secrets.append((tmp_path / "var" / "member-key").read_text().strip())
    mailed = "\n".join(
        text_of(message) + str(message["List-Unsubscribe"]) for _, _, message in relay.messages
    )
    for signed in ("/password/reset/", "/u/", "/reconfirm/"):  # reset, guest, one-click, reconfirmation
        assert signed in mailed, f"the run mailed no {signed} link: the test would prove nothing about it"
    written = logs(tmp_path, serve)
    assert "DEBUG" in written  # the run did log at DEBUG
    leaked = sorted({secret for secret in secrets if secret in written or quote(secret, safe="") in written})
    assert leaked == [], f"{len(leaked)} secret(s) in the logs: {leaked}"
