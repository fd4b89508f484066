"""Member states as ISO 3166-1 alpha-2 codes (``CL``), named in the reader's language by Babel.

The list of codes is pycountry's (the ISO 3166-1 table); the names are the CLDR's, through Babel, so a
French reader sees "Chili" and a Chinese reader "智利" with no table of ours to translate. Pure: no
database, no clock.
"""

from __future__ import annotations

from functools import cache

from babel import Locale, UnknownLocaleError

from listserv.mail.text import fold

# The languages whose names an operator's old free text is matched against (``from_name``).
NAME_LANGUAGES = ("en", "fr", "es")


@cache
def codes() -> frozenset[str]:
    import pycountry  # late: its table is read when a country is first checked, not by an idle serve

    return frozenset(country.alpha_2 for country in pycountry.countries)


def normalise(value: str) -> str | None:
    """``cl`` or `` CL `` → ``CL``; "" stays "" (not known yet); None when it is not a code."""
    text = value.strip().upper()
    if not text:
        return ""
    return text if text in codes() else None


def problem(value: str) -> str | None:
    """Why ``value`` is not a member state's code, saying what to write instead; None when it is one."""
    if normalise(value) is not None:
        return None
    guess = from_name(value)
    hint = f"write {guess}" if guess else "for example CL for Chile, FR for France"
    return f"country {value!r} is not an ISO 3166-1 alpha-2 code ({hint})"


def name(code: str, language: str) -> str:
    """The country's name in ``language`` ("Chili"); the code itself when Babel has no name for it."""
    if not code:
        return ""
    try:
        return _names(language).get(code, code)
    except (UnknownLocaleError, ValueError):
        return _names("en").get(code, code)


def label(code: str, language: str) -> str:
    """How a reader sees a member state: "Chili (CL)"; "" when unknown; free text not yet mapped to a
    code (``listserv members check``) as it is written."""
    return f"{name(code, language)} ({code})" if code in codes() else code


def from_name(text: str) -> str | None:
    """The code of a country written out in English, French or Spanish (case and accents ignored:
    "chile", "Chili", "ESPAÑA"), or a code itself; None when unknown or ambiguous."""
    code = normalise(text)
    if code:
        return code
    return _by_name().get(fold(" ".join(text.split())))


@cache
def _names(language: str) -> dict[str, str]:
    territories = Locale.parse(language).territories
    return {code: territories.get(code, code) for code in codes()}


@cache
def _by_name() -> dict[str, str]:
    """Folded name → code, from CLDR (en, fr, es) and ISO's own names; a name two codes share is
    dropped: it is ambiguous, and an operator decides (``listserv members check``)."""
    import pycountry  # late, as in codes()

    found: dict[str, set[str]] = {}
    for code in codes():
        country = pycountry.countries.get(alpha_2=code)
        written = [getattr(country, key, "") for key in ("name", "official_name", "common_name")]
        written += [_names(language)[code] for language in NAME_LANGUAGES]
        for one in written:
            if one:
                found.setdefault(fold(" ".join(one.split())), set()).add(code)
    return {key: next(iter(found_codes)) for key, found_codes in found.items() if len(found_codes) == 1}
