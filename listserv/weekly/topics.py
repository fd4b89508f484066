"""Weekly topics: topic files, the next free week, texts per language with their fallback.

Pure functions: no SMTP, no scheduler. The few that read the database take a ``Session`` and never
commit; the caller owns the transaction (and the idempotence key, ``SentPrompt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import yaml
from babel import Locale, UnknownLocaleError
from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.text import has_control_characters
from listserv.store.models import Topic
from listserv.weekly.calendar import iso_week, parse_week, week_after

FALLBACK = "en"
KEYS = ("room", "week", "titles", "bodies")


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
        elif key == "titles" and has_control_characters(text.strip()):
            problems.append(
                f"{key}.{language}: a title may not contain control characters (it becomes the Subject)"
            )
        else:
            found[language] = text.strip() if key == "titles" else text.strip("\n").rstrip()
    return found, problems


def _faulty(problems: list[str], key: str, language: str) -> bool:
    """Was ``key.language`` reported already (then a second line about it would only repeat it)?"""
    return any(line.startswith(f"{key}.{language}:") for line in problems)


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
