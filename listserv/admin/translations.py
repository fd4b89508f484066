"""``listserv i18n check`` and the warnings of ``init`` and ``serve``: how complete each configured
language is (mail templates and their catalogue entries, web strings, protocol text, reply words), and
what each list lacks in its own language (a title, moderators). A gap is never fatal at run time — the
reader gets English, a list without moderators the chief moderators — so the operator has to be told.

Pure reading of files: English is the reference (the mail templates and catalogues under
``templates/mail/en``, the web strings of ``listserv.pot``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from babel.messages.pofile import read_po

from listserv.config import Settings
from listserv.mail.templates import FALLBACK

REPLY_ACTIONS = ("approve", "reject", "discard")


@dataclass(frozen=True)
class Part:
    """One kind of translated text in one language: ``done`` of ``total``, and what is missing."""

    name: str
    done: int
    total: int
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.done >= self.total


@dataclass(frozen=True)
class Coverage:
    language: str
    parts: tuple[Part, ...]

    @property
    def complete(self) -> bool:
        return all(part.complete for part in self.parts)


def coverage(language: str, template_dirs: Path | tuple[Path, ...], locale_dir: Path) -> Coverage:
    """What ``language`` has, looking in each template folder in turn (the operator's, then the shipped)."""
    dirs = (template_dirs,) if isinstance(template_dirs, Path) else template_dirs
    return Coverage(
        language,
        (
            _mail_templates(dirs, language),
            _catalogue_entries(dirs, language),
            _web_strings(locale_dir, language),
            _protocol(dirs, language),
            _reply_words(dirs, language),
        ),
    )


def _find(dirs: tuple[Path, ...], relative: str) -> Path:
    """The first folder's copy of ``relative`` that exists, else the last folder's (missing) path."""
    return next((d / relative for d in dirs if (d / relative).is_file()), dirs[-1] / relative)


def _mail_templates(dirs: tuple[Path, ...], language: str) -> Part:
    english = dirs[-1] / "mail" / FALLBACK
    wanted = sorted(path.name for path in english.iterdir() if path.suffix in {".txt", ".html"})
    missing = tuple(name for name in wanted if not _find(dirs, f"mail/{language}/{name}").is_file())
    return Part("mail templates", len(wanted) - len(missing), len(wanted), missing)


def _read_yaml(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _catalogue_entries(dirs: tuple[Path, ...], language: str) -> Part:
    """Every key of the English requests.yaml, reasons.yaml and guests.yaml (commands.yaml: see reply
    words)."""
    wanted, missing = 0, []
    for name in ("requests.yaml", "reasons.yaml", "guests.yaml"):
        present = _read_yaml(_find(dirs, f"mail/{language}/{name}"))
        for key in _read_yaml(_find(dirs, f"mail/{FALLBACK}/{name}")):
            wanted += 1
            if not present.get(key):
                missing.append(f"{name}:{key}")
    return Part("catalogue entries", wanted - len(missing), wanted, tuple(missing))


def _web_strings(locale_dir: Path, language: str) -> Part:
    """Messages of ``listserv.pot`` translated (not fuzzy) in the language's ``.po``."""
    with (locale_dir / "listserv.pot").open("rb") as handle:
        wanted = [message.id for message in read_po(handle) if message.id]
    keys = [key[0] if isinstance(key, tuple) else key for key in wanted]
    if language == FALLBACK:  # the messages are English
        return Part("web strings", len(keys), len(keys), ())
    path = locale_dir / language / "LC_MESSAGES" / "listserv.po"
    translated: set[str] = set()
    if path.is_file():
        with path.open("rb") as handle:
            for message in read_po(handle):
                strings = message.string if isinstance(message.string, tuple) else (message.string,)
                if message.id and not message.fuzzy and all(strings):
                    translated.add(message.id[0] if isinstance(message.id, tuple) else message.id)
    missing = tuple(key for key in keys if key not in translated)
    return Part("web strings", len(keys) - len(missing), len(keys), missing)


def _protocol(dirs: tuple[Path, ...], language: str) -> Part:
    present = _find(dirs, f"protocol/{language}.md").is_file()
    return Part("protocol", int(present), 1, () if present else (f"protocol/{language}.md",))


def _reply_words(dirs: tuple[Path, ...], language: str) -> Part:
    words = _read_yaml(_find(dirs, f"mail/{language}/commands.yaml"))
    missing = tuple(action for action in REPLY_ACTIONS if not words.get(action))
    return Part("reply words", len(REPLY_ACTIONS) - len(missing), len(REPLY_ACTIONS), missing)


def describe(found: Coverage) -> str:
    """``ar: mail templates 34/34, … — complete`` (or ``incomplete, missing: …``, the first few)."""
    counts = ", ".join(f"{part.name} {part.done}/{part.total}" for part in found.parts)
    if found.complete:
        return f"{found.language}: {counts} — complete"
    missing = [name for part in found.parts for name in part.missing]
    more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
    return f"{found.language}: {counts} — incomplete, missing: {', '.join(missing[:5])}{more}"


def list_warnings(settings: Settings, complete: dict[str, bool]) -> list[str]:
    """Per list: what falls back to something else in its language. ``complete``: language → bool."""
    warnings = []
    for name, mailing_list in settings.lists.items():
        room, language = settings.room(mailing_list.room), mailing_list.language
        if language not in room.title:
            warnings.append(
                f"list {name}: no title in {language!r} (rooms.{room.name}.title.{language}); "
                f"shown as {mailing_list.title!r}"
            )
        if not mailing_list.moderators:
            chiefs = ", ".join(settings.chief_moderators) or "nobody: its posts wait unseen"
            warnings.append(
                f"list {name}: no moderator in {language!r} "
                f"(rooms.{room.name}.moderators.{language}); moderated by the chief moderators: "
                f"{chiefs}"
            )
        if not complete.get(language, True):
            warnings.append(
                f"list {name}: translations in {language!r} are incomplete; "
                "see 'listserv i18n check' (missing text is shown in English)"
            )
    return warnings


def check(settings: Settings, locale_dir: Path) -> tuple[list[Coverage], list[str]]:
    """Coverage of each configured language, then the per-list warnings."""
    dirs = settings.site.template_dirs
    found = [coverage(language, dirs, locale_dir) for language in settings.languages]
    return found, list_warnings(settings, {item.language: item.complete for item in found})
