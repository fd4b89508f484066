"""config.yaml → validated, frozen Settings.

Every problem is reported as one line naming its key path (``rooms[0].moderators.fr: 'bob' is not an
email address``) so an operator can fix the file without reading a traceback.

Blocks listed in ``OVERRIDABLE`` are site-wide defaults that a room may override key by key under the
same name (``rooms[].delivery.relay``); the loader merges them, so code reads ``room.delivery`` and
never has to know where a value came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from listserv.config_errors import ConfigError, describe_problem, first_line
from listserv.mail.addresses import normalise_address

OVERRIDABLE = ("delivery", "moderation")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
ROOM_NAME = re.compile(r"^[a-z0-9]+(?:[a-z0-9.]*[a-z0-9])?$")
DEFAULT_PATH = Path("config.yaml")
# A wheel carries the templates inside the package (setup.py's build_py copies them there); a checkout
# keeps them at the repository's top, where translators and the other branches edit them.
_PACKAGE = Path(__file__).resolve().parent
_IN_WHEEL = _PACKAGE / "templates"
SHIPPED_TEMPLATES = _IN_WHEEL if _IN_WHEEL.is_dir() else _PACKAGE.parent / "templates"


def _email(value: str) -> str:
    normalised = normalise_address(value)
    if normalised is None:
        raise ValueError(f"{value!r} is not an email address")
    return normalised


def _language(value: str) -> str:
    if not LANGUAGE_CODE.match(value):
        raise ValueError(f"{value!r} is not a language code like 'en' or 'fr'")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name like 'Europe/Zurich'") from None
    return value


def _network(value: str) -> str:
    """An IP address or a CIDR network, written back in its normal form (``10.0.0.0/8``)."""
    try:
        return str(ipaddress.ip_network(value.strip()))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network like '10.0.0.1' or '10.0.0.0/8' "
            "(a network must not have host bits set)"
        ) from None


Email = Annotated[str, AfterValidator(_email)]
Network = Annotated[str, AfterValidator(_network)]
Language = Annotated[str, AfterValidator(_language)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(Strict):
    name: str = "listserv"
    domain: str = Field(pattern=r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
    base_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://")
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    data_dir: Path = Path("var")
    # The operator's own templates (mail/<lang>/<audience>_<event>.txt, web/, protocol/): any file found
    # here is used instead of the shipped one of the same name; the rest come from the package.
    templates_dir: Path | None = None

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """Where templates are searched, first match wins: the operator's folder, then the shipped one."""
        if self.templates_dir is None or self.templates_dir == SHIPPED_TEMPLATES:
            return (SHIPPED_TEMPLATES,)
        return (self.templates_dir, SHIPPED_TEMPLATES)


class DatabaseConfig(Strict):
    url: str = "sqlite:///var/listserv.db"


class SmtpConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)
    max_message_bytes: int = Field(default=26_214_400, gt=0)
    hostname: str | None = None  # name in the greeting; defaults to site.domain
    # lmtp (RFC 2033) behind a local MTA such as Postfix: one reply per recipient after DATA
    protocol: Literal["smtp", "lmtp"] = "smtp"
    tls_cert: Path | None = None  # PEM certificate chain: STARTTLS is offered when both are set
    tls_key: Path | None = None
    require_tls: bool = False  # refuse MAIL (every command but EHLO, STARTTLS, NOOP, RSET, QUIT) before TLS

    @model_validator(mode="after")
    def _check_tls(self) -> SmtpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.require_tls and self.tls_cert is None:
            raise ValueError("require_tls needs tls_cert and tls_key")
        return self


class WebConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    session_days: int = Field(default=14, ge=1, le=365)  # a signed-in session lasts this long
    # Reverse proxies whose X-Forwarded-For names the client; from any other peer the header is ignored.
    trusted_proxies: list[Network] = []


class RelayConfig(Strict):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False  # upgrade with STARTTLS before anything else (refuse to go on without it)
    tls_verify: bool = True  # check the relay's certificate and name against the system's CAs
    username: str | None = None  # SMTP AUTH (after STARTTLS when starttls is on)
    password_file: Path | None = None  # the password, alone in a file readable by listserv only

    @model_validator(mode="after")
    def _check_login(self) -> RelayConfig:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together: set both or neither")
        return self


class DkimConfig(Strict):
    """Every message leaving is signed d=domain, s=selector (``listserv dkim keygen`` makes the key)."""

    domain: str = Field(pattern=r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
    selector: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    key_file: Path


class DeliveryConfig(Strict):
    relay: RelayConfig | None = None  # None: write outgoing mail to data_dir/outbox (a Maildir)
    give_up_after_hours: int = Field(default=96, ge=1)
    batch_size: int = Field(default=100, ge=1, le=1000)  # recipients per SMTP transaction
    connections: int = Field(default=4, ge=1, le=32)  # parallel connections to the relay
    subject_prefix: str | None = None  # None: "[TA-EN]" from the list name; "" for none
    reply_to: Literal["list", "sender"] = "list"
    dmarc: Literal["munge", "wrap", "off"] = "munge"
    # Sender domains whose DMARC policy is reject/quarantine: their From is rewritten (munge) or the
    # post wrapped, else receivers would refuse our copy. (DNS lookup of policies: not yet.)
    dmarc_domains: list[str] = []
    bounce_threshold: float = Field(default=5.0, gt=0)  # hard bounce 1.0, soft 0.5 a day; then a probe
    dkim: DkimConfig | None = None  # None: nothing is signed (let the MTA sign, or nobody)
    # ARC-seal (RFC 8617) list copies that keep their author's From, so receivers can trust our word
    # on the signature our decoration broke. Needs dkim (the same key and selector).
    arc: bool = False

    @model_validator(mode="after")
    def _check_arc(self) -> DeliveryConfig:
        if self.arc and self.dkim is None:
            raise ValueError("arc needs dkim (the seal uses its domain, selector and key)")
        return self


class ModerationConfig(Strict):
    hold: Literal["all", "non_staff", "none"] = "all"
    preapprove_moderators: bool = True
    # authserv-id of the upstream MTA whose Authentication-Results we trust (RFC 8601); None: trust none
    trusted_authserv_id: str | None = None
    verify_dkim: bool = False
    # Pre-approval (moderators, chiefs, staff under hold: non_staff) needs DKIM aligned with the From
    # domain (``authenticated``), or trusts the From header as written (``from_header``).
    preapprove: Literal["authenticated", "from_header"] = "authenticated"
    code_ttl_days: int = Field(default=14, ge=1, le=365)
    remind_after_hours: int = Field(default=24, ge=1)
    notify_sender_held: bool = True  # tell the poster their message awaits moderation
    max_bad_codes_per_hour: int = Field(default=10, ge=1)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class MembersConfig(Strict):
    # Empty: any address of valid syntax; else only these domains (and their subdomains) may be members.
    allowed_domains: list[str] = []


class WeeklyTime(Strict):
    day: Weekday
    time: ClockTime


class DigestTimes(Strict):
    daily: ClockTime = "18:00"
    weekly: WeeklyTime = WeeklyTime(day="fri", time="17:00")


class ScheduleConfig(Strict):
    """Times in site.timezone (DST handled); every job is idempotent by its own records."""

    prompt: WeeklyTime = WeeklyTime(day="mon", time="09:00")
    prompt_grace_hours: int = Field(default=12, ge=0)  # a prompt missed by more is skipped, moderators told
    digest: DigestTimes = DigestTimes()
    summary: WeeklyTime = WeeklyTime(day="fri", time="16:00")  # the moderators' weekly summary


class RoomConfig(Strict):
    name: str = Field(pattern=ROOM_NAME.pattern)
    title: dict[Language, str] = {}
    languages: list[Language] | None = None
    moderators: dict[Language, list[Email]] = {}
    delivery: DeliveryConfig = DeliveryConfig()
    moderation: ModerationConfig = ModerationConfig()


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


class Settings(Strict):
    site: SiteConfig
    database: DatabaseConfig = DatabaseConfig()
    smtp: SmtpConfig = SmtpConfig()
    web: WebConfig = WebConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    moderation: ModerationConfig = ModerationConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    members: MembersConfig = MembersConfig()
    languages: list[Language] = Field(default=["en"], min_length=1)
    rooms: list[RoomConfig] = Field(min_length=1)
    chief_moderators: list[Email] = []

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
        if problems:
            raise ConfigError(problems)
        return self

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
                found[name] = MailingList(
                    name, room.name, language, title, moderators, room.moderation, room.delivery
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
