"""Operators' commands over the same decide(): queue, approve/reject/discard, audit, jobs run."""

from __future__ import annotations

import smtplib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import load_settings
from listserv.store.db import make_engine
from listserv.store.models import Held, Outbox
from tests.conftest import ServeProcess, run_cli, wait_for

POST = (
    "From: Ana <ana@example.org>\r\nTo: ta-es@forum.example.org\r\nSubject: {subject}\r\n"
    "Message-ID: <{subject}@example.org>\r\n\r\nTexto.\r\n"
)


def test_queue_decide_and_audit_from_the_command_line(serve_config: tuple[Path, int]) -> None:
    config_file, port = serve_config
    assert run_cli(config_file, "members", "add", "ana@example.org", "--lists", "ta-es").returncode == 0
    server = ServeProcess(config_file, port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            for subject in ("uno", "dos", "tres"):
                client.sendmail("ana@example.org", ["ta-es@forum.example.org"], POST.format(subject=subject))
        wait_for(lambda: run_cli(config_file, "queue").stdout.count("\n") == 3, what="three held posts")
    finally:
        server.stop()
    queue = run_cli(config_file, "queue", "--list", "ta-es").stdout.splitlines()
    assert [line.split("\t")[-1] for line in queue] == ["uno", "dos", "tres"]
    first, second, third = (line.split("\t")[0] for line in queue)

    assert run_cli(config_file, "approve", first).stdout.startswith(f"{first} approved")
    rejected = run_cli(config_file, "reject", second, "--reason", "Fuera de tema")
    assert rejected.returncode == 0, rejected.stderr
    assert run_cli(config_file, "discard", third, "--as", "chief@forum.example.org").returncode == 0
    again = run_cli(config_file, "approve", first)
    assert again.returncode == 1 and "already decided" in again.stderr
    unknown = run_cli(config_file, "approve", "ZZZZZ-ZZZZZ-ZZZZZ")
    assert unknown.returncode == 1 and "no held post" in unknown.stderr
    assert run_cli(config_file, "queue").stdout == ""

    trail = [
        line.split("\t") for line in run_cli(config_file, "audit", "--list", "ta-es").stdout.splitlines()
    ]
    assert [(row[2], row[4], row[5]) for row in trail if row[2] == "cli"] == [
        ("cli", "approve", "decided"),
        ("cli", "reject", "decided"),
        ("cli", "discard", "decided"),
        ("cli", "approve", "already_decided"),
    ]
    status = run_cli(config_file, "status").stdout
    assert "held: 1 approved, 1 discarded, 1 rejected" in status
    assert "received: 3 processed" in status and "failed:" not in status
    engine = make_engine(load_settings(config_file).database.url)
    with Session(engine) as session:
        purposes = session.scalars(select(Outbox.purpose).order_by(Outbox.id)).all()
        assert purposes.count("sender_rejected") == 1  # queued for the serve process to send
        assert {h.state for h in session.scalars(select(Held))} == {"approved", "rejected", "discarded"}
    engine.dispose()


def test_jobs_run_reminders_is_idempotent(serve_config: tuple[Path, int]) -> None:
    config_file, _ = serve_config
    first = run_cli(config_file, "jobs", "run", "reminders")
    assert first.returncode == 0 and "reminders: 0 item(s) queued" in first.stdout
