"""``listserv serve``'s start and idle memory on an empty SQLite database (issue 18's targets: first 220
within 0.6 s of the spawn, idle RSS < 80 MB), optionally against other trees in the same sitting.

    .venv/bin/python bench/start.py                          # this checkout, 3 spawns
    .venv/bin/python bench/start.py --rounds 3 --tree before=/tmp/before   # alternated with a copy

A tree is a directory holding ``listserv/`` (e.g. ``git archive COMMIT listserv digests | tar -x``),
run with ``PYTHONPATH`` set to it; the rounds alternate between the trees so that the machine's load
falls on each alike. Per spawn: seconds to the first 220, seconds to the first ``/healthz`` answer (the
web comes up after the SMTP side: staged start), RSS at the 220 and after 2 s idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from common import describe_source, free_port, listserv_command, running, verdict, write_config

TARGET_START = 0.6
TARGET_RSS_MB = 80.0


def web_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # 503 while the scheduler lease is not taken yet: the web answered
    except OSError:
        return False


def one_spawn(tree: Path | None, work: Path) -> tuple[float, float, float, float]:
    """(seconds to 220, seconds to the web's first answer, RSS at the 220, idle RSS)."""
    database = work / "listserv.db"
    config = write_config(work, f"sqlite:///{database}", free_port())
    subprocess.run(listserv_command(config, "init"), check=True, capture_output=True)
    web_port = yaml.safe_load(config.read_text(encoding="utf-8"))["web"]["port"]
    smtp_port = yaml.safe_load(config.read_text(encoding="utf-8"))["smtp"]["port"]
    env = {"PYTHONPATH": str(tree)} if tree else None
    spawned = time.perf_counter()
    with running(listserv_command(config, "serve"), smtp_port, work / "serve.log", env) as server:
        while not web_answers(web_port):
            if time.perf_counter() - spawned > 60:
                raise RuntimeError("the web did not answer within 60 s")
            time.sleep(0.005)
        web_seconds = time.perf_counter() - spawned
        server.measure_idle_rss()
    if server.errors or server.exit_code:
        raise RuntimeError(f"serve exited {server.exit_code}: {server.errors}")
    return server.start_seconds, web_seconds, server.start_rss_mb, server.idle_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[], help="LABEL=DIR, run with PYTHONPATH=DIR")
    args = parser.parse_args()
    trees: list[tuple[str, Path | None]] = [("this checkout", None)]
    trees += [(label, Path(path).resolve()) for label, _, path in (t.partition("=") for t in args.tree)]
    print(describe_source())
    # Spawned from a neutral folder: ``python -m`` puts the current one first on sys.path, before
    # PYTHONPATH, so run from this checkout every tree would be this checkout.
    os.chdir(tempfile.gettempdir())
    figures: dict[str, list[tuple[float, float, float, float]]] = {label: [] for label, _ in trees}
    loads = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for label, tree in trees:
            with tempfile.TemporaryDirectory(prefix="listserv-start-") as tmp:
                figures[label].append(one_spawn(tree, Path(tmp)))
            loads.append(os.getloadavg()[0])
    print(f"load average (1 min) during the runs: {min(loads):.2f}–{max(loads):.2f}")
    for label, runs in figures.items():
        smtp, web, rss_220, idle = zip(*runs, strict=True)
        print(
            f"{label}: 220 after {min(smtp):.2f}–{max(smtp):.2f} s (median {statistics.median(smtp):.2f}); "
            f"web after {min(web):.2f}–{max(web):.2f} s; "
            f"RSS at 220 {min(rss_220):.1f}–{max(rss_220):.1f} MB; "
            f"idle RSS {min(idle):.1f}–{max(idle):.1f} MB"
        )
        print(
            f"  target: start < {TARGET_START} s: {verdict(max(smtp) < TARGET_START)}; "
            f"idle RSS < {TARGET_RSS_MB:.0f} MB: {verdict(max(idle) < TARGET_RSS_MB)}"
        )


if __name__ == "__main__":
    main()
