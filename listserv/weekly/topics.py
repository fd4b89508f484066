"""Weekly topics: topic files, ISO weeks in the site's timezone, language fallback, the prompt each list
receives on Monday, and the moderators' weekly figures.

Pure functions: no SMTP, no scheduler. The few that read the database take a ``Session`` and never
commit; the caller owns the transaction (and the idempotence key, ``SentPrompt``).
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import yaml
from babel import Locale, UnknownLocaleError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.config import MailingList, Settings
from listserv.mail.templates import MailTemplates
from listserv.store.models import Held, Post, Subscription, Topic
from listserv.store.models import MailingList as ListRow

FALLBACK = "en"
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS = ("room", "week", "titles", "bodies")
TOPIC_HEADER = "X-Listserv-Topic"
SISTERS_HEADER = "X-Listserv-Sister-Threads"
FROM_NAME = "from-name:"  # a header line of member_prompt.txt: the moderators' display name
PROMPT_TEMPLATE = "member_prompt.txt"


class TopicError(ValueError):
    """A topic cannot be used; ``problems`` holds one line per fault, each naming its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TopicSpec:
    """A topic file, checked: the room exists, every language is one of its lists, titles have bodies."""

    room: str
    week: str | None  # None: the next free week
    titles: dict[str, str]
    bodies: dict[str, str]


class Texts(Protocol):
    """A Topic row or a TopicSpec: per-language titles and bodies."""

    @property
    def titles(self) -> Mapping[str, str]: ...

    @property
    def bodies(self) -> Mapping[str, str]: ...


# --- topic files -------------------------------------------------------------------------------------


def read_topic(text: str, settings: Settings) -> TopicSpec:
    """A topic file (YAML) → TopicSpec; TopicError with one line per problem.

    Languages may be missing (they are flagged to the moderators before the week); a language the room
    has no list for, a title without a body or a body without a title may not.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TopicError([f"not valid YAML{_yaml_problem(error)}"]) from None
    if raw is None:
        raise TopicError(["the file is empty: expected room, titles and bodies (and optionally week)"])
    if not isinstance(raw, dict):
        raise TopicError(["expected a mapping with room, titles and bodies (and optionally week)"])
    problems = [
        f"{key}: unknown key (expected one of {', '.join(KEYS)})" for key in raw if str(key) not in KEYS
    ]
    rooms = [room.name for room in settings.rooms]
    room = raw.get("room")
    languages: list[str] | None = None
    if room is None:
        problems.append("room: required key is missing")
    elif not isinstance(room, str) or room not in rooms:
        problems.append(f"room: {room!r} is not a room of this forum (rooms: {', '.join(rooms)})")
    else:
        languages = settings.room_languages(settings.room(room))

    week = raw.get("week")
    if week is not None:
        week = str(week)
        try:
            parse_week(week)
        except ValueError as error:
            problems.append(f"week: {error}")

    texts: dict[str, dict[str, str]] = {}
    for key in ("titles", "bodies"):
        texts[key], found = _texts(key, raw.get(key), room if languages else None, languages)
        problems += found
    titles, bodies = texts["titles"], texts["bodies"]
    if "titles" in raw and isinstance(raw["titles"], dict) and not raw["titles"]:
        problems.append("titles: at least one language is needed")
    for language in titles:
        if language not in bodies and not _faulty(problems, "bodies", language):
            problems.append(f"bodies.{language}: missing: titles.{language} has no body")
    for language in bodies:
        if language not in titles and not _faulty(problems, "titles", language):
            problems.append(f"titles.{language}: missing: bodies.{language} has no title")
    if problems:
        raise TopicError(problems)
    assert isinstance(room, str)
    return TopicSpec(room, week, titles, bodies)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """`` at line 2, column 1: expected ',' or ']' … (while parsing a flow sequence from line 1)``"""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f": {' '.join(str(error).split())}"
    mark, context_mark = error.problem_mark, error.context_mark
    text = f" at line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    if error.context and context_mark is not None:
        text += f" ({error.context} from line {context_mark.line + 1}, column {context_mark.column + 1})"
    return text


def _texts(
    key: str, value: Any, room: str | None, languages: list[str] | None
) -> tuple[dict[str, str], list[str]]:
    if value is None:
        return {}, [f"{key}: required key is missing"]
    if not isinstance(value, dict):
        return {}, [f"{key}: expected a mapping of language code to text, like {{en: ..., fr: ...}}"]
    found, problems = {}, []
    for language, text in value.items():
        language = str(language)
        if languages is not None and language not in languages:
            known = ", ".join(languages)
            problems.append(f"{key}.{language}: room {room!r} has no {language!r} list (languages: {known})")
        elif text is None or (isinstance(text, str) and not text.strip()):
            problems.append(f"{key}.{language}: is empty (write the text, or leave the language out)")
        elif not isinstance(text, str):
            problems.append(f"{key}.{language}: expected text, got {text!r} (put it in quotes)")
        elif key == "titles" and len(text.strip().splitlines()) > 1:
            problems.append(f"{key}.{language}: a title must fit on one line (it becomes the Subject)")
        else:
            found[language] = text.strip() if key == "titles" else text.strip("\n").rstrip()
    return found, problems


def _faulty(problems: list[str], key: str, language: str) -> bool:
    """Was ``key.language`` reported already (then a second line about it would only repeat it)?"""
    return any(line.startswith(f"{key}.{language}:") for line in problems)


# --- weeks -------------------------------------------------------------------------------------------


def parse_week(week: str) -> tuple[int, int]:
    """``2026-W50`` → (2026, 50); ValueError for a bad form or a week the year does not have."""
    match = WEEK.match(week)
    if match is None:
        raise ValueError(f"{week!r} is not an ISO week like '2026-W50'")
    year, number = int(match[1]), int(match[2])
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"{week!r}: {year} has no week {number}") from None
    return year, number


def iso_week(moment: datetime, timezone: str) -> str:
    """The ISO week of an aware moment, as seen in ``timezone``: ``2026-W48``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; moments must be aware")
    year, number, _ = moment.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{number:02d}"


def week_after(week: str, weeks: int = 1) -> str:
    """The ISO week ``weeks`` after ``week`` (``2026-W53`` → ``2027-W01``)."""
    year, number = parse_week(week)
    year, number, _ = (date.fromisocalendar(year, number, 1) + timedelta(weeks=weeks)).isocalendar()
    return f"{year}-W{number:02d}"


def week_start(week: str, timezone: str) -> datetime:
    """Monday 00:00 of ``week`` in ``timezone``, as an aware UTC datetime."""
    return prompt_time(week, "mon", "00:00", timezone)


def prompt_time(week: str, day: str, time: str, timezone: str) -> datetime:
    """``day`` (mon…sun) of ``week`` at local ``time`` (HH:MM) in ``timezone``, as aware UTC.

    DST-correct: the wall-clock time is kept across a change. A time that does not exist on a spring-
    forward night is read with the offset before the change (02:30 → 03:30 summer time); one that occurs
    twice in autumn is the first of the two.
    """
    year, number = parse_week(week)
    if day not in DAYS:
        raise ValueError(f"{day!r} is not a day like 'mon' ({', '.join(DAYS)})")
    match = TIME.match(time)
    if match is None:
        raise ValueError(f"{time!r} is not a time like '09:00'")
    local_day = date.fromisocalendar(year, number, DAYS.index(day) + 1)
    local = datetime.combine(local_day, clock_time(int(match[1]), int(match[2])), tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def next_free_week(session: Session, room: str, after_week: str) -> str:
    """The first week ≥ ``after_week`` that has no topic for ``room``."""
    parse_week(after_week)
    taken = set(session.scalars(select(Topic.week).where(Topic.room == room, Topic.week >= after_week)))
    week = after_week
    while week in taken:
        week = week_after(week)
    return week


def add_topic(
    session: Session, spec: TopicSpec, now: datetime, timezone: str, proposer: str | None = None
) -> Topic:
    """Store ``spec`` (for ``listserv topics add`` and an approved proposal): in its week, which must not
    be over nor taken, or else the first free week after the current one. Flushes, never commits."""
    current = iso_week(now, timezone)
    if spec.week is None:
        week = next_free_week(session, spec.room, week_after(current))
    else:
        week = spec.week
        if week < current:
            raise TopicError([f"week: {week} is over (this is {current})"])
        taken = session.scalars(select(Topic).where(Topic.room == spec.room, Topic.week == week)).first()
        if taken is not None:
            free = next_free_week(session, spec.room, week)
            raise TopicError(
                [f"week: {week} already has a topic in room {spec.room!r} (#{taken.id}); {free} is free"]
            )
    topic = Topic(
        room=spec.room,
        week=week,
        titles=dict(spec.titles),
        bodies=dict(spec.bodies),
        proposer=proposer,
        created_at=now,
    )
    session.add(topic)
    session.flush()
    return topic


# --- languages ---------------------------------------------------------------------------------------


def has_language(topic: Texts, language: str) -> bool:
    return bool(topic.titles.get(language)) and bool(topic.bodies.get(language))


def missing_languages(topic: Texts, languages: list[str]) -> list[str]:
    """The languages of ``languages`` (in their order) that lack a title or a body."""
    return [language for language in languages if not has_language(topic, language)]


def text_for(topic: Texts, language: str) -> tuple[str, str, str]:
    """(title, body, language used): ``language`` if the topic has it, else English, else the first
    language it has. ValueError if it has none."""
    for candidate in dict.fromkeys([language, FALLBACK, *topic.titles]):
        if has_language(topic, candidate):
            return topic.titles[candidate], topic.bodies[candidate], candidate
    for candidate in dict.fromkeys([language, FALLBACK, *topic.titles]):
        if topic.titles.get(candidate):  # a title alone is still better than no prompt
            return topic.titles[candidate], topic.bodies.get(candidate, ""), candidate
    raise ValueError("the topic has no text in any language")


def language_name(code: str, in_language: str) -> str:
    """``language_name("en", "es")`` → ``inglés`` (Babel's CLDR names); the code when unknown."""
    try:
        return Locale.parse(in_language).languages.get(code.split("-")[0], code)
    except (UnknownLocaleError, ValueError):
        return code


# --- the prompt --------------------------------------------------------------------------------------


def prompt_message_id(topic_id: int, list_name: str, domain: str) -> str:
    """``<topic-12.ta-fr@forum.example.org>``: the same for every attempt, so the archive's unique key
    (list, Message-ID) turns a second attempt into a no-op."""
    return f"<topic-{topic_id}.{list_name}@{domain}>"


def prompt_sender(mailing_list: MailingList, domain: str) -> str:
    """The moderators' identity a prompt comes from: the list's first moderator, else its owner address."""
    return mailing_list.moderators[0] if mailing_list.moderators else f"{mailing_list.name}-owner@{domain}"


def compose_prompt(
    topic: Topic,
    mailing_list: MailingList,
    *,
    sender: str,
    domain: str,
    templates: MailTemplates,
    sisters: Mapping[str, str],
    now: datetime,
    site_name: str = "",
) -> bytes:
    """The week's opening post for one list, as RFC 5322 bytes (CRLF, UTF-8 text/plain).

    From the list's moderators (``sender``, named "<list title> — moderation" in the list's language),
    to the list, Subject the topic's title; a note at the top when the list's language is missing.
    ``sisters`` maps list names of the room to their prompts' Message-IDs (this list's own is skipped).
    """
    language = mailing_list.language
    title, body, used = text_for(topic, language)
    title = " ".join(title.split())
    # Language names in the language the template will be rendered in (English when it has none).
    shown = language if (templates.root / language / PROMPT_TEMPLATE).is_file() else FALLBACK
    list_address = f"{mailing_list.name}@{domain}"
    context = {
        "site_name": site_name,
        "list_name": mailing_list.name,
        "list_title": mailing_list.title,
        "list_address": list_address,
        "owner_address": f"{mailing_list.name}-owner@{domain}",
        "request_address": f"{mailing_list.name}-request@{domain}",
        "title": title,
        "body": body,
        "fallback_note": used != language,
        "fallback_language": language_name(used, shown),
        "language_name": language_name(language, shown),
        "propose_address": f"{mailing_list.name}-propose@{domain}",
    }
    rendered = templates.render(PROMPT_TEMPLATE, language, **context)
    head = templates.render_fragment(PROMPT_TEMPLATE, language, **context).partition("\n\n")[0]
    names = [
        line[len(FROM_NAME) :].strip() for line in head.splitlines() if line.lower().startswith(FROM_NAME)
    ]
    own = prompt_message_id(topic.id, mailing_list.name, domain)

    message = EmailMessage()
    message["From"] = Address(names[0] if names else mailing_list.title, addr_spec=sender)
    message["To"] = Address(mailing_list.title, addr_spec=list_address)
    message["Reply-To"] = list_address  # "reply to this message" reaches the list in every reply_to mode
    message["Subject"] = rendered.subject or title
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = own
    message[TOPIC_HEADER] = topic.week
    linked = [_angled(mid) for name, mid in sisters.items() if name != mailing_list.name]
    if linked := [mid for mid in linked if mid != own]:
        # Folded here, between IDs: the stdlib would move the whole list to a continuation line.
        message.set_raw(SISTERS_HEADER, _fold_list(SISTERS_HEADER, linked))
    message.set_content(rendered.body, charset="utf-8")
    # Last: set_content drops Content-* headers set before it.
    message["Content-Language"] = ", ".join(dict.fromkeys([rendered.language, used]))
    return message.as_bytes(policy=email.policy.SMTP)


def _angled(message_id: str) -> str:
    return "<" + "".join(message_id.split()).strip("<>") + ">"


def _fold_list(name: str, items: list[str], width: int = 78) -> str:
    """``a, b, c`` with a line break before an item that would pass ``width`` (RFC 5322 folding)."""
    lines = [items[0]]
    for item in items[1:]:
        first = len(lines) == 1
        if len(lines[-1]) + len(item) + 2 + (len(name) + 2 if first else 0) > width:
            lines[-1] += ","
            lines.append(" " + item)
        else:
            lines[-1] += ", " + item
    return "\n".join(lines)


# --- the moderators' weekly summary ------------------------------------------------------------------


def weekly_summary(
    session: Session, list_name: str, room: str, now: datetime, timezone: str
) -> dict[str, Any]:
    """Figures for ``moderator_weekly_summary.txt``: the last 7 days of ``list_name`` up to ``now``, and
    next week's topic of ``room`` (title in the list's language, translations still missing)."""
    since = now - timedelta(days=7)
    recent = (Post.list_name == list_name, Post.archived_at >= since, Post.archived_at < now)
    posts, posters = session.execute(
        select(func.count(Post.id), func.count(func.lower(Post.sender).distinct())).where(*recent)
    ).one()
    held: dict[str, int] = {
        kind: count
        for kind, count in session.execute(
            select(Held.kind, func.count())
            .where(Held.list_name == list_name, Held.state == "held")
            .group_by(Held.kind)
        )
    }
    new_members = (
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .join(ListRow, Subscription.list_id == ListRow.id)
            .where(ListRow.name == list_name, Subscription.created_at >= since, Subscription.created_at < now)
        )
        or 0
    )
    language = session.scalar(select(ListRow.language).where(ListRow.name == list_name)) or FALLBACK
    languages = list(
        session.scalars(
            select(ListRow.language)
            .where(ListRow.room == room, ListRow.active.is_(True))
            .order_by(ListRow.id)
        )
    )
    next_week = week_after(iso_week(now, timezone))
    topic = session.scalars(select(Topic).where(Topic.room == room, Topic.week == next_week)).first()
    next_title, next_title_language, next_missing = None, None, []
    if topic is not None:
        next_title, _, next_title_language = text_for(topic, language)
        next_missing = missing_languages(topic, languages)
    return {
        "posts": posts,
        "posters": posters,
        "held": sum(held.values()),
        "held_proposals": held.get("proposal", 0),
        "new_members": new_members,
        "next_week": next_week,
        "next_title": next_title,
        "next_title_language": next_title_language,
        "next_missing": next_missing,
    }
