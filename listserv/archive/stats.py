"""Participation figures, one row per period and list (``listserv stats``, ``/stats``, the monthly
report, the line in the weekly prompt and digest). Each table is read once for the whole span and the
rows are bucketed here, so a dashboard of 12 periods × 6 lists costs a handful of queries, not hundreds.

What is counted:
- ``posts``: archived posts (prompts included; erased ones excluded, they have no sender any more);
  ``posters``: distinct sender addresses; ``member_states_posting``: distinct member states of those
  posters, as the directory knows them now; ``prompt_replies``: posts in the threads that weekly
  prompts opened (the prompt itself not counted).
- ``members`` and ``member_states_members``: subscriptions alive at the end of the period (ended ones
  come from ``subscription_ended``); ``new_members`` began and ``left_members`` ended in the period.
- ``held``: posts held in the period; ``approved``/``rejected``/``discarded``: held posts decided in
  the period; ``decision_median_s``/``decision_p90_s``: from hold to decision, for those decisions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from listserv.archive.stats_periods import Period, median_and_p90
from listserv.store.models import (
    ArchivedPost,
    Held,
    ListRow,
    Member,
    SentPrompt,
    Subscription,
    SubscriptionEnded,
)

FIELDS = (
    "period",
    "list",
    "posts",
    "posters",
    "member_states_posting",
    "member_states_members",
    "members",
    "new_members",
    "left_members",
    "prompt_replies",
    "held",
    "approved",
    "rejected",
    "discarded",
    "decision_median_s",
    "decision_p90_s",
)
DECIDED = ("approved", "rejected", "discarded")


def state_of(country: str | None) -> str:
    """The member state as counted: codes and names alike, blanks not at all."""
    value = (country or "").strip()
    return value.upper() if len(value) == 2 else value


@dataclass
class _Bucket:
    posters: dict[str, str] = field(default_factory=dict)  # address -> member state
    posts: int = 0
    prompt_replies: int = 0
    held: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECIDED, 0))
    latencies: list[float] = field(default_factory=list)
    new_members: int = 0
    left_members: int = 0
    members: list[str] = field(default_factory=list)  # member state of each member at the end


def stats_rows(
    session: Session, lists: list[str], spans: list[Period], together: str | None = None
) -> list[dict[str, Any]]:
    """One dict per (period, list) in that order, with exactly ``FIELDS``; zeros where nothing happened.
    With ``together``, the lists count as one named so: a poster or a member state on two lists counts
    once (members stay subscriptions: a member of two lists counts twice)."""
    if not lists or not spans:
        return []
    start, end = spans[0].start, spans[-1].end
    group = (lambda name: together) if together is not None else (lambda name: name)
    names = list(dict.fromkeys(group(name) for name in lists))
    buckets = {(p.label, name): _Bucket() for p in spans for name in names}

    starts = [span.start for span in spans]

    def bucket(list_name: str, moment: datetime) -> _Bucket | None:
        at = bisect_right(starts, moment) - 1  # periods are contiguous and sorted
        if at < 0 or not spans[at].holds(moment):
            return None
        return buckets.get((spans[at].label, group(list_name)))

    _count_posts(session, lists, spans, bucket)
    _count_moderation(session, lists, start, end, bucket)
    _count_members(session, lists, spans, lambda label, name: buckets[(label, group(name))])
    return [_row(span.label, name, buckets[(span.label, name)]) for span in spans for name in names]


def _count_posts(session: Session, lists: list[str], spans: list[Period], bucket: Any) -> None:
    """Grouped in the database, one query per period: senders per list with their post counts, so a
    busy week sends back one row per person, not one per post."""
    roots = select(ArchivedPost.id).join(
        SentPrompt,
        (SentPrompt.list_name == ArchivedPost.list_name) & (SentPrompt.message_id == ArchivedPost.message_id),
    )
    in_prompt_thread = ArchivedPost.thread_id.in_(roots) & (ArchivedPost.id != ArchivedPost.thread_id)
    sender = func.lower(ArchivedPost.sender)
    for span in spans:
        rows = session.execute(
            select(
                ArchivedPost.list_name,
                sender,
                func.max(Member.country),
                func.count(),
                func.sum(case((in_prompt_thread, 1), else_=0)),
            )
            .outerjoin(Member, Member.email_key == sender)
            .where(
                ArchivedPost.list_name.in_(lists),
                ArchivedPost.archived_at >= span.start,
                ArchivedPost.archived_at < span.end,
                ArchivedPost.erased_at.is_(None),
            )
            .group_by(ArchivedPost.list_name, sender)
        )
        for list_name, address, country, posts, replies in rows:
            found = bucket(list_name, span.start)
            found.posts += posts
            found.prompt_replies += replies or 0
            if address:
                found.posters[address] = state_of(country)


def _count_moderation(
    session: Session, lists: list[str], start: datetime, end: datetime, bucket: Any
) -> None:
    rows = session.execute(
        select(Held.list_name, Held.held_at, Held.decided_at, Held.state).where(
            Held.list_name.in_(lists),
            Held.kind == "post",
            or_(
                (Held.held_at >= start) & (Held.held_at < end),
                (Held.decided_at >= start) & (Held.decided_at < end),
            ),
        )
    )
    for list_name, held_at, decided_at, state in rows:
        if (found := bucket(list_name, held_at)) is not None:
            found.held += 1
        if decided_at is not None and state in DECIDED and (found := bucket(list_name, decided_at)):
            found.decisions[state] += 1
            found.latencies.append((decided_at - held_at).total_seconds())


def _count_members(session: Session, lists: list[str], spans: list[Period], bucket_of: Any) -> None:
    alive = session.execute(
        select(ListRow.name, Subscription.created_at, Member.country)
        .join(ListRow, ListRow.id == Subscription.list_id)
        .join(Member, Member.id == Subscription.member_id)
        .where(ListRow.name.in_(lists), Subscription.created_at < spans[-1].end)
    )
    ended = session.execute(
        select(
            SubscriptionEnded.list_name,
            SubscriptionEnded.joined_at,
            SubscriptionEnded.country,
            SubscriptionEnded.left_at,
        ).where(
            SubscriptionEnded.list_name.in_(lists),
            SubscriptionEnded.joined_at < spans[-1].end,
            SubscriptionEnded.left_at >= spans[0].start,
        )
    )
    by_list: dict[str, list[tuple[datetime, str, datetime | None]]] = defaultdict(list)
    for name, joined, country in alive:
        by_list[name].append((joined, state_of(country), None))
    for name, joined, country, left in ended:
        by_list[name].append((joined, state_of(country), left))
    for span in spans:
        for name in lists:
            found = bucket_of(span.label, name)
            for joined, state, left in by_list[name]:
                if span.holds(joined):
                    found.new_members += 1
                if left is not None and span.holds(left):
                    found.left_members += 1
                if joined < span.end and (left is None or left >= span.end):
                    found.members.append(state)


def _row(label: str, list_name: str, found: _Bucket) -> dict[str, Any]:
    median, p90 = median_and_p90(found.latencies)
    return {
        "period": label,
        "list": list_name,
        "posts": found.posts,
        "posters": len(found.posters),
        "member_states_posting": len({s for s in found.posters.values() if s}),
        "member_states_members": len({s for s in found.members if s}),
        "members": len(found.members),
        "new_members": found.new_members,
        "left_members": found.left_members,
        "prompt_replies": found.prompt_replies,
        "held": found.held,
        "approved": found.decisions["approved"],
        "rejected": found.decisions["rejected"],
        "discarded": found.decisions["discarded"],
        "decision_median_s": median,
        "decision_p90_s": p90,
    }


def states_ranked(
    session: Session, lists: list[str], start: datetime, end: datetime
) -> list[tuple[str, int, int]]:
    """Member states by activity over [start, end): (state, posts, posters), most posts first; posts
    whose sender has no known member state are left out."""
    rows = session.execute(
        select(
            Member.country,
            func.count(ArchivedPost.id),
            func.count(func.lower(ArchivedPost.sender).distinct()),
        )
        .join(Member, Member.email_key == func.lower(ArchivedPost.sender))
        .where(
            ArchivedPost.list_name.in_(lists),
            ArchivedPost.archived_at >= start,
            ArchivedPost.archived_at < end,
            ArchivedPost.erased_at.is_(None),
        )
        .group_by(Member.country)
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for country, posts, posters in rows:
        if state := state_of(country):
            totals[state][0] += posts
            totals[state][1] += posters
    return sorted(((s, p, q) for s, (p, q) in totals.items()), key=lambda item: (-item[1], item[0]))
