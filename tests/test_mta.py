"""Behind a real mail system: LMTP per-recipient replies, STARTTLS on the ingress, STARTTLS + AUTH to the
relay, and DKIM/ARC on everything that leaves (verified with dkimpy against a resolver stub that serves
the record ``listserv dkim keygen`` printed). Real servers on 127.0.0.1; SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import smtplib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, Request, build_opener

import dkim
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from digests.send import send_digests
from listserv.admin.provision import initialise
from listserv.config import RelayConfig, Settings, parse_settings
from listserv.outgoing.transport import TransientFailure, Transport
from listserv.store.db import make_engine
from listserv.store.models import Received
from tests.conftest import (
    CSRF_FIELD,
    DOMAIN,
    RunningForum,
    Sink,
    SteppableClock,
    add_members,
    free_port,
    make_config,
    run_cli,
    wait_for,
)
from tests.test_ingress import POST
from tests.test_moderation import MOD_FR, reply_to_notice, send

USER, PASSWORD = "listserv", "s3cret relay password"


def make_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and 127.0.0.1, made here (no fixture files to expire)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def trusting(cert_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_file))


@dataclass
class Live:
    running: RunningForum
    engine: Engine
    settings: Settings
    clock: SteppableClock

    @property
    def port(self) -> int:
        return self.running.port

    def recipients_stored(self) -> list[tuple[str, ...]]:
        with Session(self.engine) as session:
            return [tuple(row.rcpt_tos) for row in session.scalars(select(Received).order_by(Received.id))]


def forum_with(tmp_path: Path, db_url: str, **blocks: dict[str, Any]) -> Iterator[Live]:
    """The forum running with some config blocks changed (merged key by key onto the test config)."""
    raw = make_config(tmp_path, db_url)
    for name, values in blocks.items():
        raw[name] = {**(raw.get(name) or {}), **values}
    settings = parse_settings(raw, base_dir=tmp_path)
    engine = make_engine(settings.database.url)
    initialise(engine, settings)
    clock = SteppableClock()
    try:
        with RunningForum(settings, engine, clock) as running:
            yield Live(running, engine, settings, clock)
    finally:
        engine.dispose()


# ---- LMTP -------------------------------------------------------------------------------------------


@pytest.fixture
def lmtp(tmp_path: Path, db_url: str) -> Iterator[Live]:
    yield from forum_with(tmp_path, db_url, smtp={"protocol": "lmtp", "max_message_bytes": 4096})


def test_lmtp_answers_once_per_recipient_after_data(lmtp: Live) -> None:
    with smtplib.LMTP("127.0.0.1", lmtp.port, timeout=10) as client:
        assert client.ehlo()[0] == 250  # smtplib's LMTP says LHLO
        client.mail("ana@example.org")
        assert client.rcpt("ta-en@forum.example.org")[0] == 250
        assert client.rcpt("nobody@forum.example.org")[0] == 550  # refused at RCPT: no reply after DATA
        assert client.rcpt("ta-fr@forum.example.org")[0] == 250
        first = client.data(POST)  # smtplib reads one reply; LMTP owes one per accepted recipient
        second = client.getreply()
        assert first[0] == second[0] == 250, (first, second)
        assert client.noop()[0] == 250  # nothing left unread: exactly two replies came
        # the spool committed before either reply: the row is there now, not eventually
        assert lmtp.recipients_stored() == [("ta-en@forum.example.org", "ta-fr@forum.example.org")]


def test_lmtp_refuses_ehlo_and_answers_too_big_once_per_recipient(lmtp: Live) -> None:
    with smtplib.SMTP("127.0.0.1", lmtp.port) as client:
        assert client.ehlo()[0] == 500  # LMTP has LHLO only
    with smtplib.LMTP("127.0.0.1", lmtp.port, timeout=10) as client:
        client.ehlo()
        client.mail("ana@example.org")
        client.rcpt("ta-en@forum.example.org")
        client.rcpt("ta-fr@forum.example.org")
        big = POST + b"x" * 5000 + b"\r\n"
        assert client.data(big)[0] == 552
        assert client.getreply()[0] == 552
        assert client.noop()[0] == 250
    assert lmtp.recipients_stored() == []


# ---- STARTTLS on the ingress ------------------------------------------------------------------------


@pytest.fixture
def tls_forum(tmp_path: Path, db_url: str) -> Iterator[tuple[Live, Path]]:
    cert, key = make_certificate(tmp_path)
    smtp = {"tls_cert": cert.name, "tls_key": key.name, "require_tls": True}  # relative: to the config
    for live in forum_with(tmp_path, db_url, smtp=smtp):
        yield live, cert


def test_require_tls_refuses_mail_before_starttls_and_takes_it_after(
    tls_forum: tuple[Live, Path],
) -> None:
    live, cert = tls_forum
    with smtplib.SMTP("127.0.0.1", live.port) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        code, text = client.mail("ana@example.org")
        assert code == 530, text
        client.starttls(context=trusting(cert))
        client.ehlo()
        client.sendmail("ana@example.org", ["ta-en@forum.example.org"], POST)
    assert live.recipients_stored() == [("ta-en@forum.example.org",)]


def test_a_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    raw = make_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    raw["smtp"].update(tls_cert="nowhere.crt", tls_key="nowhere.key")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert run_cli(config, "init").returncode == 0
    result = run_cli(config, "serve")
    assert result.returncode == 1
    assert "cannot load the TLS certificate" in result.stderr and "Traceback" not in result.stderr
    raw["smtp"].update(tls_key=None, require_tls=True)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = run_cli(config, "serve")
    assert result.returncode == 2
    assert "smtp: tls_cert and tls_key go together" in result.stderr


# ---- STARTTLS and AUTH to the relay -----------------------------------------------------------------


class AuthSink(Sink):
    """The relay: STARTTLS required, AUTH offered only over TLS, every message's login recorded."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__()
        self.logins: list[str] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=free_port(),
            server_hostname="relay.test",
            tls_context=context,
            require_starttls=True,
            auth_require_tls=True,
            auth_required=True,
            authenticator=self.authenticate,
        )

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=good, handled=False, auth_data=data.login.decode() if good else None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        assert session.ssl is not None, "a message came in without TLS"
        self.logins.append(session.auth_data if session.authenticated else "")
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[AuthSink, Path]]:
    cert, key = make_certificate(tmp_path, "relay.test")
    running = AuthSink(cert, key)
    running.controller.start()
    yield running, tmp_path
    running.controller.stop()


def relay_config(sink: Sink, folder: Path, **more: Any) -> dict[str, Any]:
    (folder / "relay.password").write_text(PASSWORD + "\n", encoding="utf-8")
    return {
        "host": "127.0.0.1",
        "port": sink.controller.port,
        "starttls": True,
        "tls_verify": False,
        "username": USER,
        "password_file": str(folder / "relay.password"),
        **more,
    }


def test_notices_reach_the_relay_over_starttls_with_auth(
    relay: tuple[AuthSink, Path], tmp_path: Path, db_url: str
) -> None:
    sink, folder = relay
    for live in forum_with(tmp_path, db_url, delivery={"relay": relay_config(sink, folder)}):
        add_members(live.engine, live.settings, {"email": "ana@example.org", "lists": "ta-fr"})
        send(live.port, "ana@example.org", "ta-fr@forum.example.org", "Formation", "Bonjour")
        sink.wait_to(MOD_FR)
    assert sink.logins and set(sink.logins) == {USER}


def test_relay_tls_verification_and_a_wrong_password_fail_the_attempt(relay: tuple[AuthSink, Path]) -> None:
    sink, folder = relay

    def settings_of(**more: Any) -> RelayConfig | None:
        raw = {"site": {"domain": DOMAIN}, "rooms": [{"name": "ta"}]}
        return parse_settings(
            {**raw, "delivery": {"relay": relay_config(sink, folder, **more)}}
        ).delivery.relay

    verified = Transport(settings_of(tls_verify=True), folder / "outbox")
    with pytest.raises(TransientFailure, match="CERTIFICATE_VERIFY_FAILED"):
        verified.send("ta-en-bounces@forum.example.org", ["x@example.net"], POST)
    (folder / "wrong.password").write_text("not it", encoding="utf-8")
    wrong = Transport(settings_of(password_file=str(folder / "wrong.password")), folder / "outbox")
    with pytest.raises(TransientFailure, match="535"):
        wrong.send("ta-en-bounces@forum.example.org", ["x@example.net"], POST)
    right = Transport(settings_of(), folder / "outbox")
    assert right.send("ta-en-bounces@forum.example.org", ["x@example.net"], POST) == {}
    right.close()
    assert sink.logins == [USER]


# ---- DKIM and ARC -----------------------------------------------------------------------------------

TXT_STRINGS = re.compile(r'"([^"]*)"')


def keygen(tmp_path: Path, selector: str = "ls2026") -> tuple[Path, dict[bytes, bytes]]:
    """``listserv dkim keygen`` through the command line; the resolver stub serves what it printed."""
    raw = make_config(tmp_path, f"sqlite:///{tmp_path / 'keygen.db'}")
    config = tmp_path / "keygen.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    key_file = tmp_path / "dkim.key"
    result = run_cli(config, "dkim", "keygen", "--selector", selector, "--out", str(key_file))
    assert result.returncode == 0, result.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    [record] = [line for line in result.stdout.splitlines() if "IN TXT" in line]
    name = record.split()[0]
    assert name == f"{selector}._domainkey.forum.example.org."
    again = run_cli(config, "dkim", "keygen", "--selector", selector, "--out", str(key_file))
    assert again.returncode == 1 and "never overwritten" in again.stderr
    return key_file, {name.encode(): "".join(TXT_STRINGS.findall(record)).encode()}


def test_every_message_that_leaves_verifies_under_dkim_and_list_copies_under_arc(
    tmp_path: Path, db_url: str, sink: Sink
) -> None:
    key_file, zone = keygen(tmp_path)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return zone.get(name)

    delivery = {
        "relay": {"host": "127.0.0.1", "port": sink.controller.port},
        "dkim": {"domain": "forum.example.org", "selector": "ls2026", "key_file": str(key_file)},
        "arc": True,
    }
    moderation = {"trusted_authserv_id": "mx.forum.example.org"}  # the verifying MTA in front
    for live in forum_with(tmp_path, db_url, delivery=delivery, moderation=moderation):
        forum, clock = live.running.forum, live.clock
        add_members(
            live.engine,
            live.settings,
            {"email": "ana@example.org", "lists": "ta-fr"},
            {"email": "ben@example.org", "lists": "ta-fr"},
            {"email": "carla@example.org", "lists": "ta-fr", "delivery": "digest"},
        )
        verdict = "mx.forum.example.org; dkim=pass header.d=example.org; spf=pass smtp.mailfrom=example.org"
        send(
            live.port,
            "ana@example.org",
            "ta-fr@forum.example.org",
            "Formation",
            "Bonjour à tous",
            **{"Authentication-Results": verdict},
        )
        notice = sink.wait_to(MOD_FR)[-1]
        reply_to_notice(live.port, notice, MOD_FR, "approuver")
        wait_for(lambda: len(sink.to("ben@example.org", list_copies=True)) == 1, what="the post")
        clock.advance(hours=2)
        with Session(live.engine) as session, session.begin():
            assert send_digests(session, live.settings, forum.parts.publisher, "daily", clock()) == 1
        forum.deliverer.background.wake()
        sink.wait_to("carla@example.org", list_copies=True)
    kinds: dict[str, int] = {"notice": 0, "post": 0, "digest": 0}
    for (_, recipients, message), raw in zip(sink.messages, sink.raw, strict=True):
        assert dkim.verify(raw, dnsfunc=dns), raw[:800]
        if message["List-Id"] is None:
            kinds["notice"] += 1
            assert message["ARC-Seal"] is None  # our own From: nothing to vouch for
        elif "carla@example.org" in recipients:
            kinds["digest"] += 1
        else:
            kinds["post"] += 1
            result, _, reason = dkim.arc_verify(raw, dnsfunc=dns)
            assert result == dkim.CV_Pass, reason  # the copy keeps ana@example.org in From: sealed
            # the seal carries what the MTA in front found (the author's signature passed)
            assert "dkim=pass header.d=example.org" in " ".join(
                str(message["ARC-Authentication-Results"]).split()
            )
    assert all(kinds.values()), kinds
    post = next(
        raw for (_, _, message), raw in zip(sink.messages, sink.raw, strict=True) if message["ARC-Seal"]
    )
    tampered = post.replace(b"Formation", b"Formatage")  # in the signed Subject
    assert tampered != post and not dkim.verify(tampered, dnsfunc=dns)  # the check can fail


# ---- listserv mta postfix ---------------------------------------------------------------------------


def test_mta_postfix_prints_maps_for_every_list_address(tmp_path: Path) -> None:
    raw = make_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    raw["smtp"].update(protocol="lmtp", host="0.0.0.0", port=8024)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = run_cli(config, "mta", "postfix", "--dir", "/etc/postfix")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "relay_domains = forum.example.org" in lines
    assert "transport_maps = hash:/etc/postfix/listserv_transport" in lines
    assert "relay_recipient_maps = hash:/etc/postfix/listserv_recipients" in lines
    assert "recipient_delimiter = +" in lines
    start = lines.index("# ---- /etc/postfix/listserv_transport ----") + 1
    middle = lines.index("# ---- /etc/postfix/listserv_recipients ----")
    routed = dict(line.split() for line in lines[start:middle])
    accepted = dict(line.split() for line in lines[middle + 1 : lines.index("# ---- then ----")])
    expected = {"postmaster@forum.example.org"} | {
        f"{name}{suffix}@forum.example.org"
        for name in ("ta-en", "ta-fr", "ta-es")
        for suffix in ("", "-request", "-owner", "-moderate", "-propose", "-bounces")
    }
    assert routed == dict.fromkeys(expected, "lmtp:inet:127.0.0.1:8024")  # 0.0.0.0 is reached on loopback
    assert accepted == dict.fromkeys(expected, "OK")
    assert "# postmap /etc/postfix/listserv_transport /etc/postfix/listserv_recipients" in lines


# ---- behind nginx: web.trusted_proxies ---------------------------------------------------------------


@pytest.mark.parametrize("trusted", [["127.0.0.1"], []])
def test_trusted_proxies_decide_which_client_the_sign_in_limit_counts(
    tmp_path: Path, trusted: list[str]
) -> None:
    """21 failed sign-ins, each forwarded for another client: counted per forwarded client when the proxy
    is trusted (no limit reached), all against the proxy itself when it is not (the 21st is refused)."""
    for live in forum_with(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", web={"trusted_proxies": trusted}):
        url = f"http://127.0.0.1:{live.running.forum.web_port}/login"
        browser = build_opener(HTTPCookieProcessor(CookieJar()))
        found = CSRF_FIELD.search(browser.open(url, timeout=10).read().decode())
        assert found, "no CSRF field on the sign-in page"
        codes = []
        for number in range(21):
            form = {"email": f"guess{number}@example.org", "password": "nope nope nope", "next": "/"}
            request = Request(
                url,
                data=urlencode({**form, "csrf": found.group(1)}).encode(),
                headers={"X-Forwarded-For": f"198.51.100.{number}"},
            )
            try:
                codes.append(browser.open(request, timeout=10).status)
            except HTTPError as answer:
                codes.append(answer.code)
    assert codes[:20] == [400] * 20
    assert codes[20] == (400 if trusted else 429)
