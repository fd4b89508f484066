"""For the operators' monitoring: ``/healthz`` (no sign-in, JSON) and ``/metrics`` (Prometheus text,
``Authorization: Bearer <web.metrics_token>``). Plain Starlette routes, outside the pages' wrapper: that
one opens a database session first, and a health check must answer precisely when the database doesn't.

``/healthz`` is 200 when every check passes, else 503 with what failed: the loop answers (this handler
runs on it), the database answers ``SELECT 1``, the scheduler lease has a living holder (one serve on the
database runs the jobs), and the oldest due delivery or notice has waited less than ``ops.max_queue_age``.

The figures behind ``/metrics`` are read from the database at each scrape (``web/metrics.py``): every
``serve`` on one database reports the whole forum's counts, whichever process did the work.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from listserv.store.models import Delivery, Lease, Outbox
from listserv.web.app import Site

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

OK = "ok"


def check_health(site: Site) -> dict[str, str]:
    """Each check's result: "ok" or why not. Runs in a worker thread (it waits on the database)."""
    checks = {"loop": OK}
    now = site.clock()
    try:
        with Session(site.engine.execution_options(sqlite_deferred=True)) as session:
            session.execute(text("SELECT 1"))
            checks["database"] = OK
            checks["scheduler"] = _lease(session, now)
            checks["queue"] = _queue(session, now, timedelta(seconds=site.settings.ops.max_queue_age))
    except Exception as error:  # any failure to reach the database is the answer, not a crash
        checks["database"] = f"unreachable: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return checks


def _lease(session: Session, now: datetime) -> str:
    holder = session.scalar(select(Lease.holder).where(Lease.name == "scheduler", Lease.expires_at > now))
    return OK if holder else "no serve process holds the scheduler lease"


def _queue(session: Session, now: datetime, limit: timedelta) -> str:
    oldest = [
        session.scalar(
            select(func.min(table.next_attempt_at)).where(
                table.state == "queued", table.next_attempt_at <= now
            )
        )
        for table in (Delivery, Outbox)
    ]
    due = min((moment for moment in oldest if moment is not None), default=None)
    if due is None or now - due < limit:
        return OK
    waited = int((now - due).total_seconds())
    return f"the oldest due mail has waited {waited} s (ops.max_queue_age: {int(limit.total_seconds())} s)"


def routes(site: Site) -> list[BaseRoute]:
    @cache
    def registry() -> CollectorRegistry:
        """Made at the first scrape: prometheus-client (with the modules it pulls in) is ~10 MB of a
        serve's memory, and most sites set no ``web.metrics_token``."""
        from prometheus_client import CollectorRegistry

        from listserv.web.metrics import ForumCollector

        made = CollectorRegistry(auto_describe=False)
        made.register(ForumCollector(site.engine, site.clock))
        return made

    async def healthz(request: Request) -> Response:
        checks = await run_in_threadpool(check_health, site)
        healthy = all(result == OK for result in checks.values())
        body = {"status": "ok" if healthy else "fail", "checks": checks}
        return Response(json.dumps(body), 200 if healthy else 503, media_type="application/json")

    async def metrics(request: Request) -> Response:
        token = site.settings.web.metrics_token
        if token is None:
            return Response("not found", 404, media_type="text/plain")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("unauthorized", 401, {"WWW-Authenticate": "Bearer"}, media_type="text/plain")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # late: see registry()

        body = await run_in_threadpool(generate_latest, registry())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
