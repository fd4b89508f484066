"""The blocks of config.yaml, each a strict pydantic model with its own checks (``site``, ``smtp``,
``delivery``, ``rooms[]`` …); ``listserv.config`` assembles them into ``Settings`` and loads the file."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from listserv.mail.addresses import normalise_address

# A wheel carries the templates inside the package (setup.py's build_py copies them there); a checkout
# keeps them at the repository's top, where translators and the other branches edit them.
_PACKAGE = Path(__file__).resolve().parent.parent  # listserv/
_IN_WHEEL = _PACKAGE / "templates"
SHIPPED_TEMPLATES = _IN_WHEEL if _IN_WHEEL.is_dir() else _PACKAGE.parent / "templates"

LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
ROOM_NAME = re.compile(r"^[a-z0-9]+(?:[a-z0-9.]*[a-z0-9])?$")


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


def _on_off(value: Any) -> Any:
    """YAML 1.1 reads a bare ``on``/``off`` as a boolean: take it back as the word the operator wrote."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


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
    # Sessions at once; beyond, a new connection is answered 421 and closed (idle clients cannot starve
    # the server of file descriptors). serve raises its open-file limit to the hard limit for them.
    max_connections: int = Field(default=2500, ge=1)
    idle_timeout: float = Field(default=300.0, gt=0)  # seconds without a command: 421, closed (RFC 5321)

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
    # /metrics answers only with "Authorization: Bearer <this>"; null: /metrics is off (404).
    metrics_token: str | None = Field(default=None, min_length=16)
    # Development: templates re-read when their files change (else compiled once per process).
    reload_templates: bool = False
    # Processes serving the web: ``serve`` itself, and workers - 1 more that serve only the web, sharing
    # its listening socket and the database (pages are CPU-bound under one interpreter lock).
    workers: int = Field(default=1, ge=1, le=32)


class RelayConfig(Strict):
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False  # upgrade with STARTTLS before anything else (refuse to go on without it)
    tls_verify: bool = True  # check the relay's certificate and name against the system's CAs
    username: str | None = None  # SMTP AUTH (after STARTTLS when starttls is on)
    password_file: Path | None = None  # the password, alone in a file readable by listserv only
    # Seconds to wait for the relay to connect or answer before the batch is deferred (retried with
    # backoff): a relay that stalls holds one sending thread this long, never forever.
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)

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
    # One copy per member, one SMTP transaction each (VERP envelope, personal unsubscribe link); off:
    # one copy per batch of ``batch_size`` recipients and no one-click header.
    personalize: Annotated[Literal["on", "off"], BeforeValidator(_on_off)] = "on"
    # RFC 8058 List-Unsubscribe-Post in personal copies: auto when site.base_url is https (the RFC
    # requires it), always (plain http too: development and tests), or off.
    one_click: Literal["auto", "always", "off"] = "auto"

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
    require_protocol: bool = False  # posts held ("protocol not yet accepted") until the member accepts


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class OpsConfig(Strict):
    # /healthz fails (503) when the oldest due delivery or notice has waited longer than this (seconds).
    max_queue_age: int = Field(default=900, ge=1)


class LoggingConfig(Strict):
    format: Literal["text", "json"] = "text"  # json: one object per line (time, level, event, …)


class MembersConfig(Strict):
    # Empty: any address of valid syntax; else only these domains (and their subdomains) may be members.
    allowed_domains: list[str] = []


class MembershipConfig(Strict):  # the yearly reconfirmation (membership/standing.py)
    reconfirm_days: int = Field(default=365, ge=0)  # a member confirms once in this many days; 0: never
    reconfirm_grace_days: int = Field(default=30, ge=1)  # unanswered this long after the mail: delivery stops


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


class OpenWindow(Strict):  # rooms[].open: weekdays (none: all), from/until dates (inclusive, site.timezone)
    days: list[Weekday] = []
    from_: date | None = Field(default=None, alias="from")
    until: date | None = None

    @model_validator(mode="after")
    def _check_dates(self) -> OpenWindow:
        if self.from_ and self.until and self.until < self.from_:
            raise ValueError("until must not be before from")
        return self


class ReportsConfig(Strict):
    """The monthly participation report goes to the chief moderators and to these addresses (funders,
    the secretariat), each in their language when they are members, else the site's first language."""

    recipients: list[Email] = []


class RoomConfig(Strict):
    name: str = Field(pattern=ROOM_NAME.pattern)
    title: dict[Language, str] = {}
    languages: list[Language] | None = None
    moderators: dict[Language, list[Email]] = {}
    delivery: DeliveryConfig = DeliveryConfig()
    moderation: ModerationConfig = ModerationConfig()
    open: Literal["always"] | OpenWindow = "always"
