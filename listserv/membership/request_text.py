"""Mail to ``<list>-request@`` → the requests it makes. Pure: bytes in, a ``RequestReading`` out.

Like Mailman, one command may stand in the Subject ("subscribe", "Re: unsubscribe") and the body holds
one command per line. Only the sender's own lines count (``mail.own_text.own_lines``: quoted text,
attributions, signatures and mobile footers are cut away). Reading stops after ``MAX_COMMANDS`` commands,
and at the first line that is not a command once a command was seen ("Thanks" under the commands). A
message with no command asks for help.

Words come from ``templates/mail/<lang>/requests.yaml``; ``vocabulary_from`` merges the catalogues of
several languages, so every configured language works on every list. Words are compared folded
(case and accents ignored) and word by word, so "Qui suis-je ?", "qui suis je" and "QUIÉN SOY" match.
Never raises on bad mail.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Literal, get_args

from listserv.mail.own_text import own_lines
from listserv.mail.text import fold

Verb = Literal[
    "help",
    "subscribe",
    "unsubscribe",
    "digest",
    "nomail",
    "mail",
    "language",
    "whoami",
    "confirm",
    "erase",
    "accept",  # the usage protocol (moderation.require_protocol)
]

VERBS: tuple[Verb, ...] = get_args(Verb)
PERIODS = ("daily", "weekly", "off")
DEFAULT_PERIODS: Mapping[str, str] = {period: period for period in PERIODS}
# A setting changes without confirmation, so a line that starts like one but goes on ("Mail sent to the
# list bounced…") is prose, not a command. Asking for help, to join, to leave (confirmed) is harmless.
SETTINGS: frozenset[Verb] = frozenset({"digest", "nomail", "mail", "language", "accept"})

MAX_COMMANDS = 10
MAX_UNKNOWN = 5
MAX_LINES_BEFORE_COMMAND = 10  # own lines read while looking for the first command (Mailman reads 10)
MAX_COMMAND_WORDS = 6  # longer lines are prose: never a setting, never reported as not understood
MAX_LINE_CHARS = 1_000

WORD = re.compile(r"[^\W_]+")
WORD_GAP = re.compile(r"[ \t'’-]+")
TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")
TOKEN_AFTER_WORD = re.compile(r"([^\W\d_]+)[ \t:]+([A-Za-z0-9_-]{20,64})(?![A-Za-z0-9_-])")
STATE_CODE = re.compile(r"[A-Z]{2}")
LANGUAGE_CODE = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{2,8})?")
REPLY_PREFIXES = re.compile(
    r"(?:[ \t]*(?:\[[^\]]*\]|(?:re|aw|sv|vs|fw|fwd|tr|rv|rif|antw|wg|ref)(?:\[\d+\])?[ \t]*[:：]))+",
    re.IGNORECASE,
)
ARGUMENT_END = ".,;:!?)]}>\"'»”"  # punctuation closing an argument ("digest weekly." → weekly)

Malformed = Literal["malformed"]  # a command word with a missing or unreadable argument


@dataclass(frozen=True)
class Request:
    verb: Verb
    argument: str = ""  # digest: daily|weekly|off; language: "fr"; confirm: a token; subscribe: "CL" or ""


@dataclass(frozen=True)
class RequestReading:
    requests: tuple[Request, ...]  # never empty: no command at all reads as help
    unknown: tuple[str, ...]  # lines that looked like commands but were not understood (at most 5)


HELP = RequestReading((Request("help"),), ())


@dataclass(frozen=True)
class _Words:
    phrases: Mapping[tuple[str, ...], Verb]  # folded words of each command → its verb
    longest: int
    periods: Mapping[str, str]
    confirm: frozenset[str]  # one-word confirm commands, folded


def vocabulary_from(catalogues: Iterable[Mapping[str, object]]) -> tuple[dict[str, Verb], dict[str, str]]:
    """Parsed ``requests.yaml`` files → (folded command word → verb, folded period word → period).

    The first catalogue naming a word wins, so pass English first. The English verb and period names
    always work, even without the English catalogue. Words that are not strings (a bare ``off`` read
    by YAML as false) are skipped; a bare ``off:`` key is read as "off"."""
    verbs: dict[str, Verb] = {}
    periods: dict[str, str] = {}
    for catalogue in catalogues:
        for verb in VERBS:
            for word in _strings(catalogue.get(verb)):
                verbs.setdefault(_fold_phrase(word), verb)
        for key, words in _mapping(catalogue.get("periods")).items():
            period = _period(key)
            if period in PERIODS:
                for word in _strings(words):
                    periods.setdefault(_fold_phrase(word), period)
    for verb in VERBS:
        verbs.setdefault(verb, verb)
    for period in PERIODS:
        periods.setdefault(period, period)
    return verbs, periods


def first_words(catalogue: Mapping[str, object]) -> tuple[dict[str, str], dict[str, str]]:
    """The words a template shows (its ``words`` and ``periods``): the first of each list in one
    language's ``requests.yaml``, else the English name."""
    periods = {_period(key): words for key, words in _mapping(catalogue.get("periods")).items()}
    return (
        {verb: next(iter(_strings(catalogue.get(verb))), verb) for verb in VERBS},
        {period: next(iter(_strings(periods.get(period))), period) for period in PERIODS},
    )


def read_requests(
    raw: bytes, vocabulary: Mapping[str, Verb], periods: Mapping[str, str] = DEFAULT_PERIODS
) -> RequestReading:
    """The requests in a mail to ``-request@``; ``periods`` as returned by ``vocabulary_from``."""
    try:
        words = _compile(vocabulary, periods)
        return _read(_subject(raw), own_lines(raw), words)
    except Exception:  # hostile input: an unforeseen error must not stop the worker; help is harmless
        return HELP


def _read(subject: str, lines: Sequence[str], words: _Words) -> RequestReading:
    first, subject_unknown = _read_subject(subject, words)
    token = first.argument if first and first.verb == "confirm" else ""
    requests = [first] if first else []
    unknown = [(subject_unknown, False)] if subject_unknown else []  # (line, is prose)
    commands = len(requests)  # a Subject that is not understood does not stop the body being read
    for examined, line in enumerate(lines):
        if commands >= MAX_COMMANDS or (not commands and examined >= MAX_LINES_BEFORE_COMMAND):
            break
        found = _read_line(line, words, token)
        if found is None and commands:
            break  # "Thanks", a greeting, a signature without "-- " under the commands
        if found is None:
            unknown += [(line, True)] if _word_count(line) <= MAX_COMMAND_WORDS else []
            continue
        commands += 1
        if found == "malformed":
            unknown.append((line, False))
        else:
            requests.append(found)
    # Lines without a command word ("Hello,") are worth reporting only when nothing was understood.
    reported = [line for line, is_prose in unknown if not (is_prose and requests)]
    return RequestReading(
        tuple(dict.fromkeys(requests)) or HELP.requests, tuple(dict.fromkeys(reported))[:MAX_UNKNOWN]
    )


def _read_subject(subject: str, words: _Words) -> tuple[Request | None, str | None]:
    """The Subject's command, or the Subject itself when it starts like a command but is not one.
    A confirmation token counts anywhere after a confirm word ("Leaving ta-en: confirm 3f9a…")."""
    prefixes = REPLY_PREFIXES.match(subject)
    text = subject[prefixes.end() :].strip() if prefixes else subject
    found = _read_line(text, words, "") if text else None
    if isinstance(found, Request):
        return found, None
    for match in TOKEN_AFTER_WORD.finditer(text):
        if fold(match[1]) in words.confirm:
            return Request("confirm", match[2]), None
    return None, text if found == "malformed" else None


def _read_line(line: str, words: _Words, token: str) -> Request | Malformed | None:
    """One line → its request; "malformed" for a command word whose argument is missing or wrong;
    None when the line is not a command. ``token``: the Subject's, for a bare "confirm" in the body."""
    found = _match_verb(line[:MAX_LINE_CHARS], words)
    if found is None:
        return None
    verb, rest = found
    if verb in SETTINGS and _word_count(rest) >= MAX_COMMAND_WORDS:
        return None
    argument = _argument(verb, rest.lstrip(" \t:;,"), words.periods, token)
    return "malformed" if argument is None else Request(verb, argument)


def _match_verb(line: str, words: _Words) -> tuple[Verb, str] | None:
    """The longest command phrase opening the line (its words separated by spaces, hyphens or
    apostrophes), and the text after it."""
    tokens = list(_leading_words(line, words.longest))
    for count in range(len(tokens), 0, -1):
        verb = words.phrases.get(tuple(fold(token[0]) for token in tokens[:count]))
        if verb is not None:
            return verb, line[tokens[count - 1].end() :]
    return None


def _leading_words(line: str, limit: int) -> Iterable[re.Match[str]]:
    """The first words of the line, as long as only spaces, hyphens or apostrophes separate them."""
    previous: re.Match[str] | None = None
    for match in WORD.finditer(line):
        if limit <= 0 or (previous and not WORD_GAP.fullmatch(line[previous.end() : match.start()])):
            return
        yield match
        previous, limit = match, limit - 1


def _argument(verb: Verb, rest: str, periods: Mapping[str, str], token: str) -> str | None:
    """The normalised argument ("" for verbs that take none); None when it is missing or wrong."""
    chunk = rest.split(maxsplit=1)[0].rstrip(ARGUMENT_END) if rest.split() else ""
    if verb == "digest":
        return periods.get(fold(chunk)) if chunk else "daily"
    if verb == "language":
        match = LANGUAGE_CODE.fullmatch(chunk.lower())
        return match[1] if match else None
    if verb == "subscribe":  # "subscribe CL": the member state, in capitals ("subscribe me" is prose)
        return chunk if STATE_CODE.fullmatch(chunk) else ""
    if verb == "confirm" and not chunk:
        return token or None  # a bare "confirm" in the body of a reply whose Subject holds the token
    if verb == "confirm":
        return chunk if TOKEN.fullmatch(chunk) else None
    return ""


def _subject(raw: bytes) -> str:
    """The decoded Subject on one line; "" when there is none. Raw 8-bit is read as UTF-8, else Latin-1."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw).raw_items()
    text = next((str(value) for name, value in headers if name.lower() == "subject"), "")
    if max(text, default=" ") >= "\udc80":  # compat32 keeps undecodable bytes as surrogates
        data = text.encode("ascii", "surrogateescape")
        with contextlib.suppress(UnicodeDecodeError):
            return " ".join(data.decode("utf-8").split())[:MAX_LINE_CHARS]
        return " ".join(data.decode("latin-1").split())[:MAX_LINE_CHARS]
    with contextlib.suppress(LookupError, UnicodeError, ValueError, AssertionError):
        text = str(make_header(decode_header(text)))
    return " ".join(text.split())[:MAX_LINE_CHARS]


def _compile(vocabulary: Mapping[str, Verb], periods: Mapping[str, str]) -> _Words:
    phrases = {tuple(WORD.findall(fold(word))): verb for word, verb in vocabulary.items() if verb in VERBS}
    phrases.pop((), None)
    return _Words(
        phrases=phrases,
        longest=max(map(len, phrases), default=1),
        periods={fold(word): period for word, period in periods.items()},
        confirm=frozenset(
            words[0] for words, verb in phrases.items() if verb == "confirm" and len(words) == 1
        ),
    )


def _word_count(text: str) -> int:
    return sum(1 for chunk in text.split() if WORD.search(chunk))


def _fold_phrase(text: str) -> str:
    return " ".join(fold(text).split())


def _period(key: object) -> str:
    return "off" if key is False else str(key)  # a bare ``off:`` key is YAML's false


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[object, object]:
    return value if isinstance(value, Mapping) else {}
