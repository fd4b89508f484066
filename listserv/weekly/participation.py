"""The participation line of the weekly prompt and the weekly digest: "Last week on this list: 42 posts
from 17 member states", in the list's language, from the same figures as ``listserv stats``."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from listserv.archive.stats import stats_rows
from listserv.archive.stats_periods import Period
from listserv.mail.templates import MailTemplates

TEMPLATE = "participation_line.txt"


def last_week(session: Session, list_name: str, now: datetime) -> tuple[int, int]:
    """(posts, member states posting) of the 7 days before ``now``: for the Monday prompt that is the
    week before, for the Friday digest the week the digest covers."""
    row = stats_rows(session, [list_name], [Period("", now - timedelta(days=7), now)])[0]
    return row["posts"], row["member_states_posting"]


def participation_line(
    session: Session, templates: MailTemplates, list_name: str, language: str, now: datetime
) -> str:
    """The line, or "" when nothing was posted last week (a line of zeros would only discourage)."""
    posts, states = last_week(session, list_name, now)
    if not posts:
        return ""
    return " ".join(templates.render_fragment(TEMPLATE, language, posts=posts, states=states).split())
