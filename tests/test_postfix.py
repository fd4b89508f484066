"""The round trip behind a real Postfix: a throwaway, non-MX instance of Debian's postfix (its own
config_directory and queue_directory, loopback high ports; the system's /etc/postfix is never read or
touched), configured with what ``listserv mta postfix`` prints. A post goes Postfix → listserv (LMTP) →
the moderator's notice through Postfix → the reply through Postfix → approval → the members' copies
through Postfix → the mailbox host (an SMTP sink Postfix relays to), where they are checked.

Needs root (Postfix's master runs as root and drops to the ``postfix`` user) and /usr/sbin/postfix
(``.ci/run`` and ``make test`` install it). Elsewhere it is skipped, with the reason; under CI it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from listserv.config import parse_settings
from listserv.store.db import make_engine
from tests.conftest import RunningForum, Sink, free_port, make_config, run_cli, wait_for
from tests.test_moderation import reply_to_notice, send

POSTFIX = Path("/usr/sbin/postfix")
MODERATOR = "mod-fr@example.net"
MEMBERS = ("ana@example.net", "ben@example.net")


def _unavailable() -> str | None:
    if not POSTFIX.exists():
        return "Debian's postfix is not installed (make test / .ci/run install it)"
    if os.geteuid() != 0:
        return "a Postfix instance must be started as root (its master drops to the postfix user)"
    return None


@pytest.fixture
def postfix_ready() -> None:
    reason = _unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Postfix round trip: {reason}")
        print(f"test_postfix skipped: {reason}")
        pytest.skip(reason)


def main_cf(folder: Path, smtpd_port: int, relayhost_port: int) -> str:
    """A non-MX instance: loopback only, nothing delivered locally, the rest to the mailbox host."""
    return f"""
compatibility_level = 3.6
queue_directory = {folder}/queue
data_directory = {folder}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.postfix-test.invalid
mydestination =
local_recipient_maps =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relayhost_port}
smtp_dns_support_level = disabled
maillog_file = {folder}/maillog
maillog_file_prefixes = {folder}
# {smtpd_port}: see master.cf
""".lstrip()


def master_cf(smtpd_port: int) -> str:
    """Debian's master.cf.proto, with smtpd on a loopback high port and no chroot (no copy of /etc)."""
    lines = []
    for line in Path("/etc/postfix/master.cf.proto").read_text().splitlines():
        fields = line.split()
        if line[:1].isalnum() and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{smtpd_port}"
            fields[4] = "n"
            line = " ".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"


def paste(printed: str, folder: Path) -> str:
    """Split ``listserv mta postfix``'s blocks: write the maps, return the main.cf lines."""
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in printed.splitlines():
        if line.startswith("# ---- ") and line.endswith(" ----"):
            current = line[7:-5]
            blocks[current] = []
        elif current and not line.startswith("#"):
            blocks[current].append(line)
    for name, lines in blocks.items():
        if name.startswith(str(folder)):
            Path(name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "\n".join(blocks["main.cf"]) + "\n"


class PostfixInstance:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "etc"

    def postfix(self, *args: str) -> None:
        result = subprocess.run(
            [str(POSTFIX), "-c", str(self.config), *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"postfix {' '.join(args)}: {result.stderr}\n{self.log()}"

    def log(self) -> str:
        path = self.folder / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"


@pytest.fixture
def round_trip(
    postfix_ready: None, tmp_path: Path, db_url: str
) -> Iterator[tuple[int, Sink, PostfixInstance]]:
    sink = Sink()  # the members' and moderators' mailbox host, behind Postfix
    sink.controller.start()
    smtpd_port, lmtp_port = free_port(), free_port()
    raw = make_config(tmp_path, db_url)
    raw["smtp"].update(protocol="lmtp", port=lmtp_port)
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": smtpd_port}}
    raw["rooms"][0]["moderators"] = {"fr": [MODERATOR], "en": ["mod-en@example.net"]}
    raw["chief_moderators"] = ["chief@example.net"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert run_cli(config_file, "init").returncode == 0
    run_cli(config_file, "members", "add", MEMBERS[0], "--lists", "ta-fr", "--no-welcome")
    run_cli(config_file, "members", "add", MEMBERS[1], "--lists", "ta-fr", "--no-welcome")

    # Outside pytest's 0700 tmp tree: Postfix's daemons run as the postfix user and read the maps.
    folder = Path(tempfile.mkdtemp(prefix="listserv-postfix-"))
    folder.chmod(0o755)
    instance = PostfixInstance(folder)
    instance.config.mkdir()
    (folder / "queue").mkdir()  # postfix check fills it in
    (folder / "data").mkdir()
    shutil.chown(folder / "data", "postfix")
    printed = run_cli(config_file, "mta", "postfix", "--dir", str(instance.config), "--map-type", "texthash")
    assert printed.returncode == 0, printed.stderr
    (instance.config / "main.cf").write_text(
        main_cf(folder, smtpd_port, sink.controller.port) + paste(printed.stdout, instance.config)
    )
    (instance.config / "master.cf").write_text(master_cf(smtpd_port))
    settings = parse_settings(raw, base_dir=tmp_path)
    engine = make_engine(settings.database.url)
    try:
        with RunningForum(settings, engine):
            instance.postfix("check")
            instance.postfix("start")
            try:
                yield smtpd_port, sink, instance
            finally:
                instance.postfix("stop")
    finally:
        engine.dispose()
        sink.controller.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_post_goes_round_trip_through_postfix(round_trip: tuple[int, Sink, PostfixInstance]) -> None:
    postfix_port, sink, instance = round_trip
    try:
        send(
            postfix_port, MEMBERS[0], "ta-fr@forum.example.org", "Formation des formateurs", "Bonjour à tous"
        )
        notice = sink.wait_notice(MODERATOR, timeout=60)
        assert "(Postfix)" in str(notice.get_all("Received"))  # it went out through Postfix
        reply_to_notice(postfix_port, notice, MODERATOR, "approuver")
        wait_for(
            lambda: set(sink.recipients()) >= set(MEMBERS),
            timeout=60,
            what="the members' copies through Postfix",
        )
    except AssertionError:
        print(instance.log())
        raise
    copy = sink.to(MEMBERS[1], list_copies=True)[0]
    assert copy["Subject"] == "[TA-FR] Formation des formateurs"
    received = copy.get_all("Received")
    # In through Postfix's smtpd and its LMTP client to us; out through it again to the mailbox host.
    assert sum("mx.postfix-test.invalid (Postfix)" in line for line in received) >= 2, received
    handed_over = [line for line in instance.log().splitlines() if "postfix/lmtp[" in line]
    assert any(
        "to=<ta-fr@forum.example.org>" in line and "status=sent (250 2.0.0" in line for line in handed_over
    )
    assert any("to=<ta-fr-moderate+" in line and "status=sent (250 2.0.0" in line for line in handed_over)
