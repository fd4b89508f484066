"""The moderation words and reasons per language, read from the mail catalogues
(``commands.yaml``, ``reasons.yaml``) through ``MailTemplates.catalogue``, which does the language
fallback. Pure functions over the catalogues: the mail layer knows how to find a file, this module knows
what moderation means by its words."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from listserv.mail.templates import FALLBACK, MailTemplates
from listserv.moderation.reply_text import Action
from listserv.moderation.rules import Reason

log = logging.getLogger(__name__)
ACTIONS: tuple[Action, ...] = ("approve", "reject", "discard")


@dataclass(frozen=True)
class CommandWords:
    """The words shown in a notice for each action, in the notice's language."""

    approve: str
    reject: str
    discard: str


def command_words(templates: MailTemplates, language: str) -> CommandWords:
    """The first word of each action, as notices show it (English where the language lacks one)."""
    commands = templates.catalogue(language, "commands.yaml")
    fallback = templates.catalogue(FALLBACK, "commands.yaml")
    return CommandWords(*((commands.get(a) or fallback[a])[0] for a in ACTIONS))


def vocabulary(templates: MailTemplates, languages: list[str]) -> dict[str, Action]:
    """Every command word of every language → its action (English words always work)."""
    found: dict[str, Action] = {}
    for language in dict.fromkeys([FALLBACK, *languages]):
        for action, words in templates.catalogue(language, "commands.yaml").items():
            if action in ACTIONS:
                for word in words:
                    found.setdefault(str(word).lower(), action)
    return found


def standalone_words(templates: MailTemplates, languages: list[str]) -> set[str]:
    """Casual words that decide only when alone on their line (see commands.yaml)."""
    return {
        str(word).lower()
        for language in dict.fromkeys([FALLBACK, *languages])
        for word in templates.catalogue(language, "commands.yaml").get("standalone", [])
    }


def reason_text(templates: MailTemplates, reason: Reason | dict[str, Any], language: str) -> str:
    """The sentence a moderator reads for a reason, in ``language``; a missing one is logged."""
    key, params = (
        (reason.key, reason.params)
        if isinstance(reason, Reason)
        else (str(reason["key"]), dict(reason.get("params") or {}))
    )
    sentence = templates.catalogue(language, "reasons.yaml").get(key)
    if sentence is None:
        sentence = templates.catalogue(FALLBACK, "reasons.yaml").get(key, key)
        log.warning("missing translation: reason %r in %s", key, language)
    try:
        return str(sentence).format(**params)
    except (KeyError, IndexError, ValueError):
        return str(sentence)
