"""config.yaml → validated, frozen Settings.

Every problem is reported as one line naming its key path (``rooms[0].moderators.fr: 'bob' is not an
email address``) so an operator can fix the file without reading a traceback.

Blocks listed in ``OVERRIDABLE`` are site-wide defaults that a room may override key by key under the
same name (``rooms[].delivery.subject_prefix``); the loader merges them, so code reads ``room.delivery`` and
never has to know where a value came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from listserv.config.sections import (
    SHIPPED_TEMPLATES,
    ClockTime,
    DatabaseConfig,
    DeliveryConfig,
    DigestTimes,
    DkimConfig,
    Email,
    Language,
    LoggingConfig,
    MembersConfig,
    MembershipConfig,
    ModerationConfig,
    Network,
    OpenWindow,
    OpsConfig,
    RelayConfig,
    ReportsConfig,
    RoomConfig,
    ScheduleConfig,
    SiteConfig,
    SmtpConfig,
    Strict,
    WebConfig,
    Weekday,
    WeeklyTime,
)
from listserv.config_errors import ConfigError, describe_problem, first_line

# Every name operators' code and ours import from ``listserv.config``, the sections' included.
__all__ = [
    "DEFAULT_PATH",
    "OVERRIDABLE",
    "SHIPPED_TEMPLATES",
    "ClockTime",
    "ConfigError",
    "DatabaseConfig",
    "DeliveryConfig",
    "DigestTimes",
    "DkimConfig",
    "Email",
    "Language",
    "LoggingConfig",
    "MailingList",
    "MembersConfig",
    "MembershipConfig",
    "ModerationConfig",
    "Network",
    "OpenWindow",
    "OpsConfig",
    "RelayConfig",
    "ReportsConfig",
    "RoomConfig",
    "ScheduleConfig",
    "Settings",
    "SiteConfig",
    "SmtpConfig",
    "Strict",
    "WebConfig",
    "Weekday",
    "WeeklyTime",
    "config_path",
    "load_settings",
    "parse_settings",
]

OVERRIDABLE = ("delivery", "moderation")
# Keys of those blocks that one part serves for the whole site (one transport sends everything; the
# signer and the trusted verifier are built once): a room that gives them another value would be ignored.
SITE_WIDE = {
    "delivery": ("relay", "dkim", "arc", "connections", "give_up_after_hours"),
    "moderation": ("trusted_authserv_id",),
}
DEFAULT_PATH = Path("config.yaml")


@dataclass(frozen=True)
class MailingList:
    """One list: a room in one language, e.g. ``ta-en``."""

    name: str
    room: str
    language: str
    title: str
    moderators: tuple[str, ...]
    moderation: ModerationConfig
    delivery: DeliveryConfig
    open: OpenWindow | None = None  # None: always open (rooms[].open)


class Settings(Strict):
    site: SiteConfig
    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig = SmtpConfig()
    web: WebConfig = WebConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    moderation: ModerationConfig = ModerationConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    members: MembersConfig = MembersConfig()
    membership: MembershipConfig = MembershipConfig()
    reports: ReportsConfig = ReportsConfig()
    ops: OpsConfig = OpsConfig()
    logging: LoggingConfig = LoggingConfig()
    languages: list[Language] = Field(default=["en"], min_length=1)
    rooms: list[RoomConfig] = Field(min_length=1)
    chief_moderators: list[Email] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _merge_room_overrides(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("rooms"), list):
            return data
        rooms = []
        for room in data["rooms"]:
            if isinstance(room, dict):
                room = dict(room)
                for key in OVERRIDABLE:
                    room[key] = _deep_merge(data.get(key) or {}, room.get(key) or {})
            rooms.append(room)
        return {**data, "rooms": rooms}

    @model_validator(mode="after")
    def _check_rooms(self) -> Settings:
        problems = []
        names = [room.name for room in self.rooms]
        for index, room in enumerate(self.rooms):
            if names.count(room.name) > 1:
                problems.append(f"rooms[{index}].name: {room.name!r} is used by more than one room")
            for language in room.languages or []:
                if language not in self.languages:
                    problems.append(f"rooms[{index}].languages: {language!r} is not in the site's languages")
            for language in room.moderators:
                if language not in self.room_languages(room):
                    problems.append(
                        f"rooms[{index}].moderators.{language}: the room has no {language!r} list"
                    )
            problems += self._site_wide_in(index, room)
        if problems:
            raise ConfigError(problems)
        return self

    def _site_wide_in(self, index: int, room: RoomConfig) -> list[str]:
        return [
            f"rooms[{index}].{block}.{key}: one value serves the whole site; "
            f"set {block}.{key} at the top level, not per room"
            for block, keys in SITE_WIDE.items()
            for key in keys
            if getattr(getattr(room, block), key) != getattr(getattr(self, block), key)
        ]

    def room_languages(self, room: RoomConfig) -> list[str]:
        return room.languages or self.languages

    @cached_property
    def lists(self) -> dict[str, MailingList]:
        """Every list, keyed by name: rooms × their languages."""
        found = {}
        for room in self.rooms:
            for language in self.room_languages(room):
                name = f"{room.name}-{language}"
                title = room.title.get(language) or room.title.get("en") or name
                moderators = tuple(room.moderators.get(language, ()))
                window = room.open if isinstance(room.open, OpenWindow) else None
                found[name] = MailingList(
                    name, room.name, language, title, moderators, room.moderation, room.delivery, window
                )
        return found

    def room(self, name: str) -> RoomConfig:
        return next(room for room in self.rooms if room.name == name)

    def moderators_of(self, list_name: str) -> list[str]:
        """A list without moderators of its own is moderated by the chief moderators."""
        return list(self.lists[list_name].moderators) or list(self.chief_moderators)


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base.get(key), value)
        return merged
    return override if override is not None else base


def config_path(cli_path: str | None) -> Path:
    """--config PATH, else $LISTSERV_CONFIG, else ./config.yaml."""
    return Path(cli_path or os.environ.get("LISTSERV_CONFIG") or DEFAULT_PATH)


def load_settings(path: Path) -> Settings:
    """Read and validate ``path``; raise ConfigError with one line per problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the configuration file ({error.strerror})"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: not valid YAML: {first_line(error)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: expected a mapping of settings at the top level"])
    return parse_settings(raw, base_dir=path.parent)


def parse_settings(raw: dict[str, Any], base_dir: Path = Path(".")) -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError([describe_problem(problem) for problem in error.errors()]) from None
    return _anchor_paths(settings, base_dir)


def _anchor_paths(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths (data_dir, sqlite, keys, certificates) are relative to the config file, not the
    working directory."""

    def anchor(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    def anchor_fields(block: Strict, *names: str) -> Any:
        found = {name: getattr(block, name) for name in names if getattr(block, name) is not None}
        return block.model_copy(update={name: anchor(path) for name, path in found.items()})

    data_dir = anchor(settings.site.data_dir)
    templates_dir = anchor(settings.site.templates_dir) if settings.site.templates_dir else None
    delivery = settings.delivery
    if delivery.relay is not None:
        delivery = delivery.model_copy(update={"relay": anchor_fields(delivery.relay, "password_file")})
    if delivery.dkim is not None:
        delivery = delivery.model_copy(update={"dkim": anchor_fields(delivery.dkim, "key_file")})
    url = settings.database.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        url = prefix + str((base_dir / url[len(prefix) :]).resolve())
    return settings.model_copy(
        update={
            "site": settings.site.model_copy(update={"data_dir": data_dir, "templates_dir": templates_dir}),
            "database": settings.database.model_copy(update={"url": url}),
            "smtp": anchor_fields(settings.smtp, "tls_cert", "tls_key"),
            "delivery": delivery,
        }
    )
