"""``listserv import mbox`` at scale: a generated 100,000-message mbox (``mbox_corpus.py``) imported into
a fresh database, imported again (must add 0), then exported (must give every message back).

    .venv/bin/python bench/mbox_import.py [--messages 100000] [--skip-pg]

Phases: SQLite in a temp dir; PostgreSQL in a throwaway database on 127.0.0.1:5432 (dropped at the end;
skipped with the reason printed when unreachable). Each runs the real command line (``python -m listserv``)
and prints seconds, messages/s and the summary line next to what the generator says a correct import
reports. Target: 100,000 messages in under 300 s. Asserts nothing; exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mbox_corpus import Expected, write_mbox

ROOT = Path(__file__).resolve().parents[1]
LAST_CPU = [0.0]
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
TARGET_SECONDS = 300.0


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(config: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    cpu = cpu_of_children()
    done = subprocess.run(
        [sys.executable, "-m", "listserv", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    LAST_CPU[0] = cpu_of_children() - cpu
    return time.monotonic() - started, done


def phase(name: str, workdir: Path, url: str, mbox: Path, expected: Expected) -> None:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["site"]["data_dir"] = str(workdir / f"var-{name}")
    raw["database"]["url"] = url
    config = workdir / f"config-{name}.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    _, init = cli(config, "init")
    if init.returncode:
        print(f"{name}: init failed: {init.stderr.strip()}")
        return
    load = os.getloadavg()[0]
    seconds, first = cli(config, "import", "mbox", str(mbox), "--list", "ta-en")
    cpu, load = LAST_CPU[0], (load + os.getloadavg()[0]) / 2
    again, second = cli(config, "import", "mbox", str(mbox), "--list", "ta-en")
    out = workdir / f"export-{name}.mbox"
    export_seconds, export = cli(config, "export", "mbox", "--list", "ta-en", "--out", str(out))
    exported = sum(1 for line in out.open("rb") if line.startswith(b"From ")) if out.exists() else 0
    print(f"\n## {name}")
    print(
        f"first import : {seconds:7.1f} s  {expected.messages / seconds:7.0f} msg/s  "
        f"({'under' if seconds < TARGET_SECONDS else 'OVER'} the {TARGET_SECONDS:.0f} s target)"
    )
    print(
        f"  import process CPU {cpu:.1f} s ({expected.messages / cpu:.0f} msg per CPU-second; the database "
        f"server's own CPU not counted); load average ~{load:.1f} on 2 cores"
    )
    print(f"  {first.stdout.strip() or first.stderr.strip()[-500:]}")
    print(f"second import: {again:7.1f} s  {second.stdout.strip() or second.stderr.strip()[-500:]}")
    print(
        f"export       : {export_seconds:7.1f} s  {exported} messages "
        f"({'all' if exported == expected.unique else 'MISSING SOME'}) {export.stderr.strip()}"
    )
    imported = re.search(r"imported (\d+)", first.stdout)
    verdict = "match" if imported and int(imported[1]) == expected.unique else "MISMATCH"
    print(
        f"expected     : imported {expected.unique}, duplicates {expected.duplicates}, "
        f"dates repaired {expected.repaired} -> {verdict}"
    )


@contextlib.contextmanager
def pg_database() -> Iterator[str | None]:
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except Exception as error:  # any failure means: no PostgreSQL phase, said why
        print(f"PostgreSQL phase skipped: {error}")
        yield None
        return
    name = f"listserv_bench_import_{secrets.token_hex(3)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def peer(mbox: Path) -> None:
    """The floor of any importer built on our parser, measured in the same run (same machine load):
    read every message and parse it (``mail.message.parse_post``), nothing stored."""
    sys.path.insert(0, str(ROOT))
    from listserv.mail.mbox import read_mbox
    from listserv.mail.message import parse_post

    started, cpu = time.monotonic(), time.process_time()
    with mbox.open("rb") as handle:
        count = sum(1 for message in read_mbox(handle) if parse_post(message.raw))
    wall, used = time.monotonic() - started, time.process_time() - cpu
    print(
        f"\n## peer: read + parse only\n{count} messages: {wall:.1f} s wall, {used:.1f} s CPU "
        f"({count / wall:.0f} msg/s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="listserv-import-") as temp:
        workdir = Path(temp)
        mbox = workdir / "archive.mbox"
        started = time.monotonic()
        expected = write_mbox(mbox, args.messages)
        print(
            f"generated {mbox.stat().st_size / 1e6:.0f} MB, {expected} in {time.monotonic() - started:.1f} s"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared with other work)")
        peer(mbox)
        phase("sqlite", workdir, f"sqlite:///{workdir / 'listserv.db'}", mbox, expected)
        if not args.skip_pg:
            with pg_database() as url:
                if url:
                    phase("postgresql", workdir, url, mbox, expected)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
