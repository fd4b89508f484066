"""Reading mail sent to <list>-request@: literal messages (CRLF, as they arrive) in en, fr and es, read with
the words of templates/mail/<lang>/requests.yaml; and every member template renders in every language."""

from __future__ import annotations

import time
from pathlib import Path
from textwrap import dedent
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from listserv.config import SHIPPED_TEMPLATES
from listserv.mail.own_text import own_lines
from listserv.mail.templates import MailTemplates
from listserv.membership.request_text import (
    PERIODS,
    VERBS,
    Request,
    first_words,
    read_requests,
    vocabulary_from,
)
from listserv.membership.requests import site_languages
from listserv.moderation.vocabulary import (
    CommandWords,
)

LANGUAGES = ("en", "fr", "es")
CATALOGUES = {
    language: yaml.safe_load((SHIPPED_TEMPLATES / "mail" / language / "requests.yaml").read_text("utf-8"))
    for language in LANGUAGES
}
VOCABULARY, PERIOD_WORDS = vocabulary_from(CATALOGUES[language] for language in LANGUAGES)
TOKEN = "3f9aK2-Lx_9QmZt0rWb7YcVd"
HELP = (Request("help"),)


def mail(body: str, subject: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        "From: Ana Delegate <ana@example.org>\nTo: ta-en-request@forum.example.org\n"
        f"Subject: {subject}\nMIME-Version: 1.0\nContent-Type: {content_type}\n\n"
    )
    return (head + dedent(body)).replace("\n", "\r\n").encode("utf-8")


def read(raw: bytes) -> tuple[tuple[Request, ...], tuple[str, ...]]:
    reading = read_requests(raw, VOCABULARY, PERIOD_WORDS)
    return reading.requests, reading.unknown


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # English
        ("help", Request("help")),
        ("subscribe", Request("subscribe")),
        ("Join", Request("subscribe")),
        ("unsubscribe", Request("unsubscribe")),
        ("leave", Request("unsubscribe")),
        ("digest", Request("digest", "daily")),
        ("digest weekly", Request("digest", "weekly")),
        ("Digest: off.", Request("digest", "off")),
        ("nomail", Request("nomail")),
        ("mail", Request("mail")),
        ("language fr", Request("language", "fr")),
        ("language FR-ca", Request("language", "fr")),
        ("whoami", Request("whoami")),
        ("Who am I?", Request("whoami")),
        (f"confirm {TOKEN}", Request("confirm", TOKEN)),
        # French
        ("aide", Request("help")),
        ("abonner", Request("subscribe")),
        ("s'inscrire", Request("subscribe")),
        ("désabonner", Request("unsubscribe")),
        ("Se désabonner", Request("unsubscribe")),
        ("DESABONNER", Request("unsubscribe")),
        ("résumé", Request("digest", "daily")),
        ("résumé hebdomadaire", Request("digest", "weekly")),
        ("Resume arret", Request("digest", "off")),
        ("suspendre", Request("nomail")),
        ("reprendre", Request("mail")),
        ("langue es", Request("language", "es")),
        ("Qui suis-je ?", Request("whoami")),
        ("qui suis je", Request("whoami")),
        (f"confirmer {TOKEN}", Request("confirm", TOKEN)),
        # Spanish
        ("ayuda", Request("help")),
        ("suscribir", Request("subscribe")),
        ("Alta", Request("subscribe")),
        ("baja", Request("unsubscribe")),
        ("darse de baja", Request("unsubscribe")),
        ("resumen semanal", Request("digest", "weekly")),
        ("resumen diario", Request("digest", "daily")),
        ("resumen no", Request("digest", "off")),
        ("pausa", Request("nomail")),
        ("reanudar", Request("mail")),
        ("idioma en", Request("language", "en")),
        ("¿Quién soy?", Request("whoami")),
        ("QUIEN SOY", Request("whoami")),
        (f"confirmar {TOKEN}", Request("confirm", TOKEN)),
    ],
)
def test_each_command_in_each_language(line: str, expected: Request) -> None:
    assert read(mail(f"{line}\n")) == ((expected,), ())
    assert read(mail("", subject=line)) == ((expected,), ())


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Re: unsubscribe", "", (Request("unsubscribe"),)),
        ("RE: Fwd: [ta-en] digest weekly", "", (Request("digest", "weekly"),)),
        ("subscribe", "Dear moderators,\nI am the delegate of Chile.\n", (Request("subscribe"),)),
        ("A question", "digest weekly\n", (Request("digest", "weekly"),)),
        ("subscribe", "language es\nThanks\n", (Request("subscribe"), Request("language", "es"))),
        ("nomail", "nomail\n", (Request("nomail"),)),  # the same request twice is one request
    ],
)
def test_the_subject_holds_one_command_the_body_more(
    subject: str, body: str, expected: tuple[Request, ...]
) -> None:
    assert read(mail(body, subject)) == (expected, ())


def test_quoted_text_is_ignored() -> None:
    body = """\
        nomail

        On Mon, 23 Nov 2026 at 09:00, ta-en-request@forum.example.org wrote:
        > digest weekly
        > unsubscribe
    """
    assert read(mail(body)) == ((Request("nomail"),), ())
    assert read(mail("> unsubscribe\n> digest weekly\n")) == (HELP, ())


def test_a_bottom_posted_command_is_read() -> None:
    body = "Le lun. 23 nov. 2026 à 09:00, Forum a écrit :\n> Envoyez « aide »\n\nrésumé hebdomadaire\n"
    assert read(mail(body)) == ((Request("digest", "weekly"),), ())


@pytest.mark.parametrize("signature", ["-- \nAna Delegate\nunsubscribe", "Sent from my iPhone\nunsubscribe"])
def test_the_signature_is_ignored(signature: str) -> None:
    assert read(mail(f"digest weekly\n{signature}\n")) == ((Request("digest", "weekly"),), ())


def test_reading_stops_at_the_first_line_that_is_not_a_command() -> None:
    body = "subscribe\nlanguage fr\n\nThanks\nunsubscribe\n"
    assert read(mail(body)) == ((Request("subscribe"), Request("language", "fr")), ())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        mail(""),
        mail("\n   \n\n"),
        b"Subject: \r\nContent-Type: image/png\r\n\r\n\x89PNG",
        mail("I would like to know more about the technical assistance programme of next year.\n"),
    ],
)
def test_no_command_asks_for_help(raw: bytes) -> None:
    assert read(raw) == (HELP, ())


def test_short_lines_are_reported_when_nothing_was_understood() -> None:
    assert read(mail("Hello,\nplease add me\n")) == (HELP, ("Hello,", "please add me"))


def test_a_greeting_before_a_command_is_not_reported() -> None:
    assert read(mail("Hello,\n\nsubscribe\n\nBest regards,\nAna\n")) == ((Request("subscribe"),), ())


def test_a_command_word_with_a_wrong_argument_is_reported_and_reading_goes_on() -> None:
    body = "digest monthly\nlanguage french\nconfirm 1234\nnomail\nThanks\n"
    assert read(mail(body)) == ((Request("nomail"),), ("digest monthly", "language french", "confirm 1234"))
    assert read(mail("", "Re: digest monthly")) == (HELP, ("digest monthly",))


def test_at_most_five_lines_are_reported() -> None:
    requests, unknown = read(mail("".join(f"line {number}\n" for number in range(8))))
    assert requests == HELP and unknown == tuple(f"line {number}" for number in range(5))


def test_prose_that_starts_with_a_setting_word_changes_nothing() -> None:
    body = "Mail sent to the list bounced back to me yesterday, can you check?\n"
    assert read(mail(body)) == (HELP, ())


def test_a_confirmation_token_is_read_from_a_reply_subject() -> None:
    assert read(mail("", f"Re: confirm {TOKEN}")) == ((Request("confirm", TOKEN),), ())
    subject = f"RE: Request to leave ta-en: confirm {TOKEN}"
    assert read(mail("Yes, please.\n", subject)) == ((Request("confirm", TOKEN),), ())
    assert read(mail("confirm\n", subject)) == ((Request("confirm", TOKEN),), ())  # bare word: the Subject's
    assert read(mail("", "Re: confirm 3f9a")) == (HELP, ("confirm 3f9a",))  # too short to be a token


def test_an_html_only_body_is_read() -> None:
    html = """\
        <div>digest&nbsp;weekly</div><div>langue <b>es</b></div><div>Thanks</div>
        <blockquote type="cite"><div>unsubscribe</div></blockquote>
    """
    assert read(mail(html, content_type="text/html; charset=utf-8")) == (
        (Request("digest", "weekly"), Request("language", "es")),
        (),
    )


def test_a_quoted_printable_latin1_body_is_read() -> None:
    raw = (
        b"From: marie@example.fr\r\nSubject: =?iso-8859-1?q?d=E9sabonner?=\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"R=E9sum=E9 hebdomadaire\r\nQui suis-je=A0?\r\nMerci d'avance\r\n"
    )
    assert read(raw) == ((Request("unsubscribe"), Request("digest", "weekly"), Request("whoami")), ())


def test_an_undeclared_8bit_subject_is_read() -> None:
    raw = b"From: a@example.es\r\nSubject: Re: qui\xe9n soy\r\n\r\n"
    assert read(raw) == ((Request("whoami"),), ())


def test_at_most_ten_commands_are_read() -> None:
    codes = [f"a{letter}" for letter in "abcdefghijk"]
    requests, _ = read(mail("".join(f"language {code}\n" for code in codes)))
    assert requests == tuple(Request("language", code) for code in codes[:10])
    requests, _ = read(mail("".join(f"language {code}\n" for code in codes), subject="whoami"))
    assert len(requests) == 10 and requests[0] == Request("whoami")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        b"Subject: =?x-unknown?q?abc?=\r\n\r\nhelp\r\n",
        b"Subject: =?utf-8?b?!!!?=\r\n\r\n",
        b"Content-Type: text/plain\r\n\r\n" + b"subscribe " * 200_000,
        b"Content-Type: text/plain\r\n\r\n" + b"who am " * 100_000,
        b"Subject: " + b"Re: " * 50_000 + b"\r\n\r\n",
    ],
)
def test_bad_mail_never_raises_and_reads_fast(raw: bytes) -> None:
    started = time.monotonic()
    reading = read_requests(raw, VOCABULARY, PERIOD_WORDS)
    assert time.monotonic() - started < 2
    assert reading.requests and len(reading.unknown) <= 5


def test_the_hard_message_corpus_never_raises() -> None:
    for path in sorted((Path(__file__).parent / "messages").glob("*.eml")):
        assert read_requests(path.read_bytes(), VOCABULARY, PERIOD_WORDS).requests


def test_own_lines_leaves_out_quotes_and_signatures() -> None:
    body = "Hello\n\n> quoted\nsubscribe\n-- \nAna\n"
    assert own_lines(mail(body)) == ["Hello", "subscribe"]
    assert own_lines(b"Content-Type: image/png\r\n\r\n\x89PNG") == []


# --- the words -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_names_every_verb_and_period_with_quoted_words(language: str) -> None:
    catalogue = CATALOGUES[language]
    assert set(catalogue) == {*VERBS, "periods"}
    assert set(catalogue["periods"]) == set(PERIODS)
    lists = [catalogue[verb] for verb in VERBS] + [catalogue["periods"][period] for period in PERIODS]
    assert all(words and all(isinstance(word, str) for word in words) for words in lists)


def test_no_word_means_two_things_across_languages() -> None:
    seen: dict[str, str] = {}
    for catalogue in CATALOGUES.values():
        for verb in VERBS:
            for word in catalogue[verb]:
                assert seen.setdefault(" ".join(word.casefold().split()), verb) == verb, word


def test_vocabulary_folds_words_and_keeps_english_names_without_english() -> None:
    verbs, periods = vocabulary_from([CATALOGUES["fr"], {"periods": {False: ["arrêt"]}, "digest": [True]}])
    assert verbs["desabonner"] == verbs["unsubscribe"] == "unsubscribe"
    assert verbs["qui suis-je"] == "whoami"
    assert periods["arret"] == periods["off"] == "off"
    assert "true" not in verbs


def test_first_words_are_shown_in_templates() -> None:
    words, periods = first_words(CATALOGUES["es"])
    assert (words["digest"], periods["weekly"], words["whoami"]) == ("resumen", "semanal", "quién soy")
    assert first_words({}) == ({verb: verb for verb in VERBS}, {period: period for period in PERIODS})


# --- templates -------------------------------------------------------------------------------------------

TEMPLATES = MailTemplates(SHIPPED_TEMPLATES, "Europe/Zurich")
COMMON = {
    "site_name": "Technical Assistance Forum",
    "list_name": "ta-es",
    "list_title": "Asistencia técnica",
    "list_address": "ta-es@forum.example.org",
    "owner_address": "ta-es-owner@forum.example.org",
    "request_address": "ta-es-request@forum.example.org",
}
SUBSCRIPTIONS = [
    SimpleNamespace(list_name="ta-en", delivery="each", digest_period=None),
    SimpleNamespace(list_name="ta-fr", delivery="digest", digest_period="weekly"),
    SimpleNamespace(list_name="ta-es", delivery="none", digest_period="daily"),
]
HELD_SUBSCRIPTION = {
    "kind": "subscription",
    "code": "K7QXM-2PAB9-ZT4HD",
    "sender": "ana@example.org",
    "sender_name": "Ana Delegate",
    "country": "Chile",
    "excerpt": "Soy la delegada de Chile para la asistencia técnica.",
    "expires_at": "7 de diciembre de 2026",
    "moderate_address": "ta-es-moderate+K7QXM-2PAB9-ZT4HD@forum.example.org",
    "words": CommandWords("aprobar", "rechazar", "descartar"),
}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("member_help.txt", {}),
    ("member_subscribe_pending.txt", {"sender": "ana@example.org"}),
    ("member_subscribe_refused.txt", {"reason": ""}),
    ("member_subscribe_refused.txt", {"reason": "Pida a su punto focal nacional que nos escriba. " * 3}),
    (
        "member_welcome.txt",
        {"name": "", "protocol_url": "https://f.example.org/protocol", "archive_url": "u"},
    ),
    ("member_welcome.txt", {"name": "Ana", "protocol_url": "https://f.example.org/p", "archive_url": "u"}),
    (
        "member_unsubscribe_confirm.txt",
        {"token": TOKEN, "confirm_address": "ta-es-request@forum.example.org", "expires_at": "1 dic"},
    ),
    ("member_unsubscribed.txt", {}),
    *(
        ("member_settings_changed.txt", {"setting": setting, "value": value})
        for setting, value in [
            ("digest", "daily"),
            ("digest", "weekly"),
            ("digest", "off"),
            ("nomail", ""),
            ("mail", ""),
            ("language", "fr"),
            ("language", "xx"),
            ("other", "1"),
        ]
    ),
    (
        "member_whoami.txt",
        {
            "email": "a@example.org",
            "name": "",
            "country": "",
            "subscriptions": SUBSCRIPTIONS,
            "language": "es",
        },
    ),
    (
        "member_whoami.txt",
        {"email": "a@x.org", "name": "A", "country": "B", "subscriptions": [], "language": "xx"},
    ),
    *(
        ("member_request_problem.txt", {"problem": problem, "lines": lines})
        for problem in ("not_member", "unknown_command", "bad_token", "bad_argument")
        for lines in ([], ["digest monthly", "x" * 120])
    ),
    ("member_bounce_disabled.txt", {"address": "ana@example.org"}),
    (
        "moderator_bounce_disabled.txt",
        {"address": "a@x.org", "name": "Ana", "country": "Chile", "score": 5.0, "last_error": "550 5.1.1 no"},
    ),
    (
        "moderator_bounce_disabled.txt",
        {"address": "a@x.org", "name": "", "country": "", "score": 3, "last_error": ""},
    ),
    ("moderator_held.txt", HELD_SUBSCRIPTION),
    (
        "moderator_held.txt",
        {**HELD_SUBSCRIPTION, "excerpt": "", "truncated": True, "reasons": ["DMARC failed."]},
    ),
]


def words_of(language: str, site: tuple[str, ...] = ("en", "fr", "es", "ar", "zh", "ru")) -> dict[str, Any]:
    words, periods = first_words(CATALOGUES[language])
    return {"words": words, "periods": periods} | site_languages(list(site), language)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("name", "context"), CASES)
def test_every_new_template_renders_in_every_language(
    name: str, context: dict[str, Any], language: str
) -> None:
    rendered = TEMPLATES.render(name, language, **COMMON, **{**words_of(language), **context})
    assert rendered.language == language
    assert rendered.subject and rendered.body.strip()
    assert "{{" not in rendered.body and "{%" not in rendered.body and "\n\n\n" not in rendered.body
    assert "[#" not in rendered.subject or name == "moderator_held.txt"


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_subscription_notice_carries_the_code_and_the_request(language: str) -> None:
    rendered = TEMPLATES.render("moderator_held.txt", language, **COMMON, **HELD_SUBSCRIPTION)
    assert rendered.subject.startswith("[#K7QXM-2PAB9-ZT4HD] ") and rendered.subject.endswith(
        "ana@example.org>"
    )
    assert "Soy la delegada de Chile" in rendered.body and "Chile" in rendered.body
    assert "\naprobar\n" in rendered.body and "\nrechazar\n" in rendered.body


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_plain_reply_to_the_unsubscribe_confirmation_confirms(language: str) -> None:
    context = {"token": TOKEN, "confirm_address": COMMON["request_address"], "expires_at": "1"}
    rendered = TEMPLATES.render("member_unsubscribe_confirm.txt", language, **COMMON, **context)
    quoted = "".join(f"> {line}\n" for line in rendered.body.splitlines())
    assert read(mail(f"\n{quoted}", f"Re: {rendered.subject}")) == ((Request("confirm", TOKEN),), ())


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_command_the_help_shows_is_understood(language: str) -> None:
    context = words_of(language)
    body = TEMPLATES.render("member_help.txt", language, **COMMON, **context).body
    words = context["words"].values()
    shown = [line for line in body.splitlines() if any(f"{line} ".startswith(f"{word} ") for word in words)]
    expected = {"help", "subscribe", "unsubscribe", "digest", "nomail", "mail", "language", "whoami"}
    found = {request.verb for line in shown for request in read(mail(line + "\n"))[0]}
    assert found == expected and len(shown) == 10


@pytest.mark.parametrize(
    ("language", "named", "example"),
    [
        ("en", "en: English, ru: Russian", '"language ru"'),
        ("fr", "en : anglais, fr : français, ru : russe", "« langue en »"),
        ("ar", "en: الإنجليزية، ar: العربية، ru: الروسية", "en»"),
        ("zh", "en：英语，zh：中文，ru：俄语", "en”"),
        ("ru", "en — английский, ru — русский", "en»"),
    ],
)
def test_the_help_names_the_configured_languages_in_the_readers_language(
    language: str, named: str, example: str
) -> None:
    """Only the configured languages, named in the reader's language; the example is one of them."""
    site = ["en", "ru"] if language in ("en", "ru") else ["en", language, "ru"]
    requests = yaml.safe_load((SHIPPED_TEMPLATES / "mail" / language / "requests.yaml").read_text("utf-8"))
    words, periods = first_words(requests)
    context = {"words": words, "periods": periods} | site_languages(site, language)
    help_text = " ".join(TEMPLATES.render("member_help.txt", language, **COMMON, **context).body.split())
    assert named in help_text
    problem = TEMPLATES.render(
        "member_request_problem.txt", language, **COMMON, **context, problem="bad_argument", lines=["x"]
    ).body
    problem = " ".join(problem.split())
    assert any(separator.join(site) in problem for separator in (", ", "、", "، "))
    assert example in problem
