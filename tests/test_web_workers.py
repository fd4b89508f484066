"""``web.workers``: ``serve`` starts workers - 1 more processes that serve the web on its socket, and
stops them with itself; pages answer from either."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx2
import yaml

from tests.conftest import ServeProcess, wait_for


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_web_workers_serve_pages_and_stop_with_serve(serve_config: tuple[Path, int]) -> None:
    config_file, port = serve_config
    raw = yaml.safe_load(config_file.read_text())
    raw["web"]["workers"] = 3
    config_file.write_text(yaml.safe_dump(raw))
    serve = ServeProcess(config_file, port).start().fully_started()
    assert serve.process is not None
    try:
        wait_for(lambda: len(children(serve.process.pid)) == 2, what="two web workers")
        workers = children(serve.process.pid)
        base = f"http://127.0.0.1:{raw['web']['port']}"
        for _ in range(30):  # new connections each time: the kernel spreads them over the processes
            with httpx2.Client(base_url=base, trust_env=False, timeout=30) as client:
                answer = client.get("/login")
                assert answer.status_code == 200 and 'name="csrf"' in answer.text
        serve.signal(signal.SIGSTOP)  # serve itself accepts nothing now: the workers answer, or nobody
        try:
            with httpx2.Client(base_url=base, trust_env=False, timeout=30) as client:
                assert client.get("/login").status_code == 200
        finally:
            serve.signal(signal.SIGCONT)
        serve.signal(signal.SIGTERM)
        assert serve.wait() == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers), "a web worker outlived serve"
        log = serve.log_text()  # nothing failed in the web side of serve or of a worker
        assert "web/server.py" not in log and "web/app.py" not in log and "uvicorn" not in log
    finally:
        serve.stop()
