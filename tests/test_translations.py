"""Every translation is complete and keeps the machinery the code relies on. Pure file checks: nothing
of listserv is imported, no database.

- Mail (``templates/mail/<lang>/``): every file of ``en/`` exists; each template uses the same Jinja
  variables (and attributes such as ``words.approve``) and the same kinds of ``{% %}`` tags as the
  English one, keeps its header lines (``Subject:``, ``From-Name:``) and its ``[#{{ code }}]``, and
  starts the same lines with a command word; the YAML catalogues have the English keys, ``reasons.yaml``
  the same ``{placeholders}``, and no command word decides two different things.
- Protocol: ``templates/protocol/<lang>.md`` exists.
- Web (``listserv/locale/<lang>/LC_MESSAGES/listserv.po``): every message of ``listserv.pot`` is
  translated, none fuzzy, with the placeholders of its msgid and one string per plural form.
"""

from __future__ import annotations

import gettext
import re
import string
import unicodedata
from functools import cache
from pathlib import Path

import jinja2
import pytest
import yaml
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from jinja2 import meta, nodes

ROOT = Path(__file__).resolve().parent.parent
MAIL = ROOT / "templates" / "mail"
PROTOCOL = ROOT / "templates" / "protocol"
LOCALE = ROOT / "listserv" / "locale"
LANGUAGES = ["fr", "es", "ar", "zh", "ru"]
PLURAL_FORMS = {"fr": 2, "es": 2, "ar": 6, "zh": 1, "ru": 3}
YAML_FILES = ["commands.yaml", "requests.yaml", "reasons.yaml", "guests.yaml"]
TEMPLATES = sorted(p.name for p in (MAIL / "en").iterdir() if p.suffix in {".txt", ".html"})

# Known departures from the English, reported and awaiting a decision. strict: once fixed, the entry
# must go, so the check applies again.
KNOWN = {
    ("fr", "member_welcome.txt"): "fr greets 'Madame, Monsieur,' and never uses {{ name }}: register choice?",
}

TAG = re.compile(r"\{%[-+]?\s*(\w+)")
HEADER = re.compile(r"([A-Za-z][A-Za-z-]*):")
TAG_LINE = re.compile(r"\s*\{%.*%\}\s*")
COMMAND_AT_LINE_START = re.compile(r"^\{\{-?\s*words\.(\w+)", re.MULTILINE)
PYTHON_FORMAT = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrs]")
BRACES = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")
# A moderator's command is the first word of the reply's first line (listserv/reply.py, COMMAND_LINE):
# a command word with a space in it could never be read.
ONE_WORD = re.compile(r"\w(?:[\w'’-]*\w)?")

ENV = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@cache
def shape(path: Path) -> dict[str, object]:
    """What a translation must keep of a template: its inputs, its tags, its headers, its commands."""
    source = path.read_text(encoding="utf-8")
    tree = ENV.parse(source)
    inputs = meta.find_undeclared_variables(tree)
    attributes = {
        f"{node.node.name}.{node.attr}"
        for node in tree.find_all(nodes.Getattr)
        if isinstance(node.node, nodes.Name) and node.node.name in inputs
    }
    lines = [line for line in source.splitlines() if not TAG_LINE.fullmatch(line)]
    head = lines[: lines.index("")] if "" in lines else []
    headers = [m[1] for m in map(HEADER.match, head) if m]
    subject = next((line for line in head if line.startswith("Subject:")), "")
    return {
        "variables": inputs,
        "attributes": attributes,
        "tags": {tag for tag in TAG.findall(source) if not tag.startswith("end")},
        "first line starts with Subject:": bool(lines) and lines[0].startswith("Subject:"),
        "header lines": headers,
        "[#{{ code }}] in Subject": "[#{{ code }}]" in subject,
        "lines starting with a command word": sorted(COMMAND_AT_LINE_START.findall(source)),
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_english_mail_file_is_translated(language: str) -> None:
    english = sorted(p.name for p in (MAIL / "en").iterdir())
    missing = [name for name in english if not (MAIL / language / name).is_file()]
    assert not missing, f"templates/mail/{language}/ lacks {missing}"


def template_cases() -> list[object]:
    cases = []
    for language in LANGUAGES:
        for name in TEMPLATES:
            known = KNOWN.get((language, name))
            marks = [pytest.mark.xfail(reason=known, strict=True)] if known else []
            cases.append(pytest.param(language, name, marks=marks, id=f"{language}-{name}"))
    return cases


@pytest.mark.parametrize(("language", "name"), template_cases())
def test_a_template_keeps_the_english_variables_tags_and_headers(language: str, name: str) -> None:
    path = MAIL / language / name
    if not path.is_file():
        pytest.fail(f"templates/mail/{language}/{name} is missing")
    wanted, found = shape(MAIL / "en" / name), shape(path)
    differ = [key for key in wanted if wanted[key] != found[key]]
    wrong = {key: f"English {wanted[key]!r}, {language} {found[key]!r}" for key in differ}
    assert not wrong, f"templates/mail/{language}/{name} differs from en: {wrong}"


def read_yaml(language: str, name: str) -> dict[object, object]:
    data = yaml.safe_load((MAIL / language / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"templates/mail/{language}/{name} is not a mapping"
    return data


def keys(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return set()
    return {f"{prefix}{key}" for key in data} | {
        found for key, value in data.items() for found in keys(value, f"{prefix}{key}.")
    }


def fold(text: str) -> str:
    """As the code compares words: case, accents and Arabic marks (hamza, harakat) ignored."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def placeholders(text: str) -> set[str]:
    fields = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    return fields | {str(name) for name in meta.find_undeclared_variables(ENV.parse(text))}


@pytest.mark.parametrize("name", YAML_FILES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_a_catalogue_has_the_english_keys(language: str, name: str) -> None:
    english, translated = read_yaml("en", name), read_yaml(language, name)
    assert keys(translated) == keys(english), f"templates/mail/{language}/{name}: keys differ from en"
    if name == "reasons.yaml":
        fields = {key: placeholders(str(text)) for key, text in translated.items()}
        wrong = [key for key, text in english.items() if placeholders(str(text)) != fields[key]]
        assert not wrong, f"templates/mail/{language}/reasons.yaml: placeholders differ for {wrong}"


def word_lists(data: dict[object, object]) -> dict[str, list[object]]:
    """Action or verb → its words; the periods of requests.yaml as "periods.daily"…"""
    found = {str(key): value for key, value in data.items() if isinstance(value, list)}
    for key, value in (data.get("periods") or {}).items():
        found[f"periods.{'off' if key is False else key}"] = value
    return found


@pytest.mark.parametrize("name", ["commands.yaml", "requests.yaml"])
@pytest.mark.parametrize("language", ["en", *LANGUAGES])
def test_command_words_are_quoted_and_never_decide_two_things(language: str, name: str) -> None:
    lists = word_lists(read_yaml(language, name))
    standalone = lists.pop("standalone", [])
    not_strings = [word for words in lists.values() for word in words if not isinstance(word, str)]
    assert not not_strings, f"{language}/{name}: unquoted words read as {not_strings} (quote them)"
    owner: dict[tuple[str, str], str] = {}
    clashes = []
    for key, words in lists.items():
        space = "periods" if key.startswith("periods.") else "commands"
        for word in words:
            previous = owner.setdefault((space, fold(str(word))), key)
            if previous != key:
                clashes.append(f"{word!r} is both {previous} and {key}")
    assert not clashes, f"{language}/{name}: {clashes}"
    if name == "commands.yaml":
        every = {fold(str(word)) for words in lists.values() for word in words}
        idle = [word for word in standalone if fold(str(word)) not in every]
        assert not idle, f"{language}/commands.yaml: standalone words that decide nothing: {idle}"
        spaced = [word for words in lists.values() for word in words if not ONE_WORD.fullmatch(str(word))]
        assert not spaced, f"{language}/commands.yaml: a reply is read by its first word only: {spaced}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_usage_protocol_is_translated(language: str) -> None:
    path = PROTOCOL / f"{language}.md"
    assert path.is_file() and path.read_text(encoding="utf-8").strip(), f"{path} is missing or empty"


def read_catalogue(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def single_value_forms(catalogue: Catalog) -> set[int]:
    """Plural forms used for one number only (Arabic 0, 1 and 2): like msgfmt, they may leave the
    number out ("رسالة واحدة")."""
    plural = gettext.c2py(catalogue.plural_expr)
    counts: dict[int, int] = {}
    for n in range(1000):
        counts[plural(n)] = counts.get(plural(n), 0) + 1
    return {form for form, count in counts.items() if count == 1}


def names_in(text: str) -> set[str]:
    return set(PYTHON_FORMAT.findall(text)) | set(BRACES.findall(text))


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_web_catalogue_is_complete_with_its_placeholders(language: str) -> None:
    path = LOCALE / language / "LC_MESSAGES" / "listserv.po"
    assert path.is_file(), f"{path} is missing"
    catalogue = read_catalogue(path)
    template = read_catalogue(LOCALE / "listserv.pot")
    assert catalogue.num_plurals == PLURAL_FORMS[language], f"{language}: wrong Plural-Forms header"
    exempt = single_value_forms(catalogue)
    problems = []
    for wanted in template:
        if not wanted.id:
            continue
        entry = catalogue.get(wanted.id, wanted.context)
        key = wanted.id[0] if isinstance(wanted.id, tuple) else wanted.id
        if entry is None:
            problems.append(f"missing: {key!r}")
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry.fuzzy:
            problems.append(f"fuzzy: {key!r}")
        if isinstance(entry.id, tuple) and len(strings) != catalogue.num_plurals:
            problems.append(f"{len(strings)} plural forms instead of {catalogue.num_plurals}: {key!r}")
        expected = set().union(*map(names_in, ids))
        for form, text in enumerate(strings):
            if not text:
                problems.append(f"empty: {key!r}")
                continue
            found = names_in(text)
            lost = expected - found
            if isinstance(entry.id, tuple) and form in exempt:
                lost -= {"num"}  # the count may be spelt out in a form used for one number only
            if found - expected or lost:
                problems.append(f"placeholders {sorted(found)} instead of {sorted(expected)}: {key!r}")
    assert not problems, f"{path}: {len(problems)} problems: {problems[:10]}"
