"""``listserv topics add|list|show|edit``: the weekly topics, from YAML files (see examples/)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.db import utc_now
from listserv.store.models import Topic
from listserv.weekly.topics import TopicError, TopicSpec, add_topic, iso_week, missing_languages, read_topic


class TopicCommandError(Exception):
    pass


def register(commands: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser]) -> None:
    topics = commands.add_parser("topics", help="weekly topics")
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    add = command(actions, "add", "add a topic from a YAML file (room, week, titles, bodies)", cmd_add)
    add.add_argument("file", type=Path)
    listing = command(actions, "list", "topics from this week on", cmd_list)
    listing.add_argument("--room")
    show = command(actions, "show", "one topic in every language", cmd_show)
    show.add_argument("week")
    show.add_argument("--room", default=None)
    edit = command(actions, "edit", "replace or add languages of a topic from a YAML file", cmd_edit)
    edit.add_argument("file", type=Path)


def _spec(path: Path, settings: Settings) -> TopicSpec:
    try:
        return read_topic(path.read_text(encoding="utf-8"), settings)
    except OSError as error:
        raise TopicCommandError(f"cannot read {path}: {error.strerror}") from None
    except TopicError as error:
        for problem in error.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        raise TopicCommandError(f"{path}: not added; fix the problem(s) above") from None


def cmd_add(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    spec = _spec(args.file, settings)
    try:
        with Session(engine) as session, session.begin():
            topic = add_topic(session, spec, utc_now(), settings.site.timezone)
            week = topic.week
    except TopicError as error:
        raise TopicCommandError(f"{args.file}: {'; '.join(error.problems)}") from None
    missing = _missing(settings, spec.room, spec.titles, spec.bodies)
    print(f"topic added: {spec.room} {week}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    return 0


def cmd_edit(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    spec = _spec(args.file, settings)
    if spec.week is None:
        raise TopicCommandError(f"{args.file}: 'week' is required to edit a topic")
    with Session(engine) as session, session.begin():
        topic = session.scalars(select(Topic).where(Topic.room == spec.room, Topic.week == spec.week)).first()
        if topic is None:
            raise TopicCommandError(f"no topic for room {spec.room} in {spec.week}; use 'topics add'")
        topic.titles = {**topic.titles, **spec.titles}
        topic.bodies = {**topic.bodies, **spec.bodies}
        titles, bodies = dict(topic.titles), dict(topic.bodies)
    missing = _missing(settings, spec.room, titles, bodies)
    print(
        f"topic updated: {spec.room} {spec.week}" + (f" (missing: {', '.join(missing)})" if missing else "")
    )
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    this_week = iso_week(utc_now(), settings.site.timezone)
    with Session(engine) as session:
        query = select(Topic).where(Topic.week >= this_week).order_by(Topic.week, Topic.room)
        for topic in session.scalars(query.where(Topic.room == args.room) if args.room else query):
            missing = _missing(settings, topic.room, topic.titles, topic.bodies)
            title = next(iter(topic.titles.values()), "")
            print(
                "\t".join(
                    [topic.week, topic.room, title, "missing: " + ",".join(missing) if missing else "-"]
                )
            )
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    with Session(engine) as session:
        query = select(Topic).where(Topic.week == args.week)
        topics = session.scalars(query.where(Topic.room == args.room) if args.room else query).all()
        if not topics:
            raise TopicCommandError(f"no topic for {args.week}")
        for topic in topics:
            print(
                f"{topic.room} {topic.week}" + (f" (proposed by {topic.proposer})" if topic.proposer else "")
            )
            for language, title in sorted(topic.titles.items()):
                print(f"\n[{language}] {title}\n{topic.bodies.get(language, '')}")
    return 0


def _missing(settings: Settings, room: str, titles: dict[str, str], bodies: dict[str, str]) -> list[str]:
    languages = [ml.language for ml in settings.lists.values() if ml.room == room]
    return missing_languages(Topic(titles=titles, bodies=bodies), languages)
