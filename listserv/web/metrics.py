"""The figures ``/metrics`` exposes, read from the database at each scrape (a prometheus-client custom
collector): every ``serve`` on one database answers with the same, whole-forum counts, and a restart
loses nothing. Counters can fall when an erasure removes rows; Prometheus reads that as a reset.

- ``listserv_received_total``: messages acknowledged by the SMTP ingress (``received``)
- ``listserv_held_total{kind}``: items held for a moderator (post, proposal, subscription, …)
- ``listserv_approved_total``, ``listserv_rejected_total``, ``listserv_discarded_total`` ``{by}``: decided
  by a moderator (mail, web, CLI), or by the posting policy
- ``listserv_delivered_total{kind}``: copies accepted by the relay, one per recipient of a post or digest
  (batched or personal alike), one per notice
- ``listserv_deferred_total``: delivery attempts put off (4xx, relay away) and retried later
- ``listserv_bounced_total``: bounce messages received at ``-bounces``
- ``listserv_queue_depth{queue}``: received not yet processed, held, deliveries and notices waiting
- ``listserv_delivery_latency_seconds``: from a post's approval to its batch accepted by the relay
- ``listserv_moderation_latency_seconds``: from held to decided
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Engine, case, extract, func, or_, select
from sqlalchemy.orm import Session

from listserv.store.models import Audit, Delivery, Held, Outbox, Received, Route

DELIVERY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400)
MODERATION_BUCKETS = (60, 300, 900, 3600, 14400, 43200, 86400, 259200, 604800)
DECISIONS = (("approved", "approve"), ("rejected", "reject"), ("discarded", "discard"))


class ForumCollector(Collector):
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine.execution_options(sqlite_deferred=True)
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        with Session(self.engine) as session:
            yield from self._counts(session)
            yield self._queues(session)
            sent = (Delivery.state == "sent", Delivery.post_id.is_not(None))
            yield _histogram(
                session,
                "listserv_delivery_latency_seconds",
                "Seconds from a post's approval to its batch accepted by the relay.",
                DELIVERY_BUCKETS,
                (Delivery.created_at, Delivery.sent_at, sent),
            )
            yield _histogram(
                session,
                "listserv_moderation_latency_seconds",
                "Seconds from held to decided.",
                MODERATION_BUCKETS,
                (Held.held_at, Held.decided_at, (Held.decided_at.is_not(None),)),
            )

    def _counts(self, session: Session) -> Iterator[Metric]:
        count = func.count()
        yield CounterMetricFamily(
            "listserv_received",
            "Messages acknowledged by the SMTP ingress.",
            session.scalar(select(count).select_from(Received)),
        )
        held = CounterMetricFamily("listserv_held", "Items held for a moderator.", labels=["kind"])
        for kind, number in session.execute(select(Held.kind, count).group_by(Held.kind)):
            held.add_metric([kind], number)
        yield held
        by = case((Audit.channel == "system", "policy"), else_="moderator")
        decided = dict.fromkeys(
            [(action, who) for _, action in DECISIONS for who in ("moderator", "policy")], 0
        )
        rows = session.execute(
            select(Audit.action, by, count)
            .where(Audit.action.in_([action for _, action in DECISIONS]))
            .where(or_(Audit.result == "decided", Audit.channel == "system"))
            .group_by(Audit.action, by)
        )
        decided.update({(action, who): number for action, who, number in rows})
        for name, action in DECISIONS:
            family = CounterMetricFamily(
                f"listserv_{name}", f"Posts {name}, by a moderator or the policy.", labels=["by"]
            )
            for who in ("moderator", "policy"):
                family.add_metric([who], decided[(action, who)])
            yield family
        yield self._delivered(session)
        attempts = sum(
            session.scalar(select(func.coalesce(func.sum(table.attempts), 0))) or 0
            for table in (Delivery, Outbox)
        )
        finished = sum(
            session.scalar(select(count).select_from(table).where(table.state.in_(["sent", "failed"]))) or 0
            for table in (Delivery, Outbox)
        )
        yield CounterMetricFamily(
            "listserv_deferred",
            "Delivery attempts put off (4xx, relay away) and retried.",
            max(attempts - finished, 0),
        )
        bounces = session.scalar(select(count).select_from(Route).where(Route.kind == "bounces"))
        yield CounterMetricFamily("listserv_bounced", "Bounce messages received at -bounces.", bounces)

    def _delivered(self, session: Session) -> Metric:
        family = CounterMetricFamily(
            "listserv_delivered", "Copies accepted by the relay (one per recipient).", labels=["kind"]
        )
        sent = Delivery.state == "sent"
        # Per recipient, not per row: a batch row holds up to 100, a personal row one transaction each.
        copies = func.sum(func.json_array_length(Delivery.recipients))
        posts = session.scalar(select(copies).where(sent, Delivery.post_id.is_not(None)))
        digests = session.scalar(select(copies).where(sent, Delivery.digest_id.is_not(None)))
        notices = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.state == "sent"))
        for kind, number in (("post", posts), ("digest", digests), ("notice", notices)):
            family.add_metric([kind], number or 0)
        return family

    def _queues(self, session: Session) -> Metric:
        family = GaugeMetricFamily("listserv_queue_depth", "Items waiting, by queue.", labels=["queue"])
        count = func.count()
        depths = {
            "received": select(count).select_from(Received).where(Received.state == "new"),
            "held": select(count).select_from(Held).where(Held.state == "held"),
            "delivery": select(count).select_from(Delivery).where(Delivery.state.in_(["queued", "sending"])),
            "outbox": select(count).select_from(Outbox).where(Outbox.state == "queued"),
        }
        for queue, query in depths.items():
            family.add_metric([queue], session.scalar(query) or 0)
        return family


def _histogram(
    session: Session,
    name: str,
    text: str,
    buckets: tuple[float, ...],
    span: tuple[ColumnElement[datetime], ColumnElement[datetime], tuple[ColumnElement[bool], ...]],
) -> Metric:
    """Counted by the database in one query (a bucket is a SUM of CASE), not row by row here."""
    start, end, where = span
    if session.get_bind().dialect.name == "sqlite":
        seconds = (func.julianday(end) - func.julianday(start)) * 86400.0
    else:
        seconds = extract("epoch", end - start)
    columns = [func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0) for bound in buckets]
    row = session.execute(
        select(*columns, func.count(), func.coalesce(func.sum(seconds), 0.0)).where(*where)
    ).one()
    cumulative = [
        (str(bound), int(number)) for bound, number in zip(buckets, row[: len(buckets)], strict=True)
    ]
    cumulative.append(("+Inf", int(row[len(buckets)])))
    return HistogramMetricFamily(name, text, buckets=cumulative, sum_value=max(float(row[-1]), 0.0))
