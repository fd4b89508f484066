"""Reading a moderator's reply: real client shapes in tests/replies/, each a reply to the notice
"[#K7QXM-2PAB9-ZT4HD] Held: Capacity building in customs" whose quoted body holds the code and the literal
instruction lines ("approve", "reject <reason>", "discard")."""

from __future__ import annotations

import time
from pathlib import Path
from textwrap import dedent

import pytest

from listserv.moderation.reply_text import Action, Command, find_code, normalise_code, read_reply

REPLIES = Path(__file__).parent / "replies"
VOCABULARY: dict[str, Action] = {
    "approve": "approve",
    "ok": "approve",
    "yes": "approve",
    "approuver": "approve",
    "aprobar": "approve",
    "reject": "reject",
    "rejeter": "reject",
    "rechazar": "reject",
    "discard": "discard",
    "ignorer": "discard",
    "descartar": "discard",
    "sí": "approve",
    "oui": "approve",
}
APPROVE = (Command("approve", None),)

EXPECTED: dict[str, tuple[Command, ...]] = {
    "outlook-desktop-top-posted-approve": APPROVE,
    "outlook-html-only-reject-reason": (
        Command("reject", None, "Off topic for this list, please post it to ta-general instead"),
    ),
    "outlook-fr-rejeter": (
        Command("reject", None, "Merci de reformuler en français, avec le contexte régional"),
    ),
    "outlook-ios-empty-reply": APPROVE,
    "gmail-approve": APPROVE,
    "gmail-html-only-approve": APPROVE,
    "gmail-es-aprobar": APPROVE,
    "thunderbird-bottom-posted-discard": (Command("discard", None),),
    "thunderbird-fr-approuver": APPROVE,
    "thunderbird-flowed-long-reason": (
        Command(
            "reject",
            None,
            "This post advertises a paid course, which the list rules do not allow; please send the "
            "workshop announcement alone and it will be approved.",
        ),
    ),
    "apple-mail-approve": APPROVE,
    "apple-mail-iphone-empty-reply": APPROVE,
    "empty-reply-quote-only": APPROVE,
    "signature-only-empty-reply": APPROVE,
    "qp-latin1-rejeter-accents": (Command("reject", None, "Hors sujet, réécrire en français"),),
    "windows-1252-rechazar": (
        Command("reject", None, "el mensaje no trata de aduanas – escríbalo de nuevo “por favor”"),
    ),
    "multiple-codes": (
        Command("approve", "K7QXM-2PAB9-ZT4HD"),
        Command("reject", "2PAB9-K7QXM-ZT4HD", "Off topic, please rephrase"),
        Command("discard", "ZT4HD-K7QXM-2PAB9"),
    ),
    "code-only-in-quote": APPROVE,
    "not-a-command": (),
    "uppercase-punctuation-ok": APPROVE,
    "reply-with-attached-original": APPROVE,
    "html-only-no-plain-fr": (Command("reject", None, "message publicitaire, pas une contribution"),),
    "base64-utf8-descartar": (Command("discard", None),),
    "utf16-base64-si": APPROVE,
    "mutt-interleaved-approve": APPROVE,
}
OWN_TEXT = {
    "outlook-desktop-top-posted-approve": "Approve",
    "gmail-html-only-approve": "Approve, thanks\n\nJohn",
    "apple-mail-iphone-empty-reply": "",
    "empty-reply-quote-only": "",
    "reply-with-attached-original": "Approve",
    "thunderbird-bottom-posted-discard": "discard\n\nSpam from a compromised account, no need to answer.",
    "mutt-interleaved-approve": "approve\n\ndiscard",
    "not-a-command": "Thanks, I will look at it tomorrow",
}
NOTICE_PHRASES = ("reply with", "Reply code", "répondez", "Code de réponse", "responda", "Held:", "wrote:")


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(path.stem for path in REPLIES.glob("*.eml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reply_fixture(name: str) -> None:
    reading = read_reply((REPLIES / f"{name}.eml").read_bytes(), VOCABULARY)
    assert reading.commands == EXPECTED[name]
    assert reading.understood is (name != "not-a-command")
    assert not any(phrase in reading.own_text for phrase in NOTICE_PHRASES)  # nothing quoted leaks
    if name in OWN_TEXT:
        assert reading.own_text == OWN_TEXT[name]


def reply(body: str, headers: str = "Content-Type: text/plain; charset=utf-8\n") -> bytes:
    head = "From: m@example.org\nSubject: Re: [#K7QXM-2PAB9-ZT4HD] Held: x\nMIME-Version: 1.0\n" + headers
    return (head + "\n" + dedent(body)).encode()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("APPROUVER", Command("approve", None)),
        ("Aprobar", Command("approve", None)),
        ("si", Command("approve", None)),
        ("Sí.", Command("approve", None)),
        ("approve!", Command("approve", None)),
        ("Approve please, looks fine", Command("approve", None)),
        ("discard it, spam", Command("discard", None)),
        ("reject Hors sujet", Command("reject", None, "Hors sujet")),
        ("reject: off topic.", Command("reject", None, "off topic.")),
        ("reject", Command("reject", None, "")),
        ("reject Hello world again", Command("reject", None, "Hello world again")),
        ("approve k7qxm 2pab9 zt4hd", Command("approve", "K7QXM-2PAB9-ZT4HD")),
        ("approve [#K7QXM-2PAB9-ZT4HD] fine", Command("approve", "K7QXM-2PAB9-ZT4HD")),
        ("reject 2PAB9-K7QXM-ZT4HD: spam", Command("reject", "2PAB9-K7QXM-ZT4HD", "spam")),
        ("reject KU7QX-2PAB9-ZT4HD spam", Command("reject", None, "KU7QX-2PAB9-ZT4HD spam")),
    ],
)
def test_command_line(line: str, expected: Command) -> None:
    assert read_reply(reply(line + "\n"), VOCABULARY).commands == (expected,)


@pytest.mark.parametrize(
    "line", ["Approved", "approbation", "Hi,", "K7QXM-2PAB9-ZT4HD", "Re: approve", "Thanks! approve"]
)
def test_a_first_line_that_is_not_a_command_decides_nothing(line: str) -> None:
    reading = read_reply(reply(f"{line}\napprove\n"), VOCABULARY)
    assert (reading.commands, reading.understood) == ((), False)


def test_only_the_first_line_decides_when_it_has_no_code() -> None:
    reading = read_reply(reply("approve\ndiscard K7QXM-2PAB9-ZT4HD\n"), VOCABULARY)
    assert reading.commands == APPROVE


def test_lines_without_a_code_are_ignored_after_a_coded_first_line() -> None:
    body = "discard K7QXM-2PAB9-ZT4HD\napprove\nreject 2PAB9-K7QXM-ZT4HD late\n> approve ZT4HD-K7QXM-2PAB9\n"
    assert read_reply(reply(body), VOCABULARY).commands == (
        Command("discard", "K7QXM-2PAB9-ZT4HD"),
        Command("reject", "2PAB9-K7QXM-ZT4HD", "late"),
    )


@pytest.mark.parametrize(
    "attribution",
    [
        "On Sat, 21 Nov 2026 at 10:00, Listserv <owner@lists.example.org> wrote:",
        "Le sam. 21 nov. 2026 à 10:00, Listserv <owner@lists.example.org> a écrit :",
        "El sáb, 21 nov 2026 a las 10:00, Listserv (<owner@lists.example.org>) escribió:",
        "Am Sa., 21. Nov. 2026 um 10:00 Uhr schrieb Listserv <owner@lists.example.org>:",
        "Listserv <owner@lists.example.org> wrote:",
    ],
)
def test_a_bottom_posted_reply_is_read_after_the_quote(attribution: str) -> None:
    body = f"{attribution}\n> To discard silently, reply with: discard\n> discard\n\nreject spam\n"
    assert read_reply(reply(body), VOCABULARY).commands == (Command("reject", None, "spam"),)


@pytest.mark.parametrize(
    "separator",
    [
        "-----Original Message-----\nFrom: Listserv\nSent: Saturday",
        "-----Message d'origine-----\nDe : Listserv\nEnvoyé : samedi",
        "-----Mensaje original-----\nDe: Listserv\nEnviado el: sábado",
        "________________________________\nFrom: Listserv\nSent: Saturday",
        "From: Listserv <owner@lists.example.org>\nSent: Saturday",
        "De : Listserv <owner@lists.example.org>\nEnvoyé : samedi",
        "De: Listserv <owner@lists.example.org>\nEnviado: sábado",
        "Sent from my iPhone",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Get Outlook for iOS",
        "-- \nMarie",
    ],
)
def test_an_unquoted_original_after_a_separator_is_not_read(separator: str) -> None:
    body = f"\n{separator}\n\ndiscard\nTo discard silently, reply with: discard\n"
    reading = read_reply(reply(body), VOCABULARY)
    assert (reading.commands, reading.own_text) == (APPROVE, "")


def test_the_html_part_is_read_when_there_is_no_plain_one() -> None:
    html = """\
        <div>reject&nbsp;<b>Off</b> topic</div>
        <blockquote type="cite"><div>discard</div><blockquote>approve</blockquote></blockquote>
        <div class="gmail_quote"><div>discard</div></div>
        <div>Second line</div>
        <div id="appendonsend"></div><div>discard</div>
    """
    reading = read_reply(reply(html, "Content-Type: text/html; charset=utf-8\n"), VOCABULARY)
    assert reading.commands == (Command("reject", None, "Off topic"),)
    assert reading.own_text == "reject Off topic\n\nSecond line"


def test_latin1_is_read_as_windows_1252_which_mail_clients_mean() -> None:
    raw = b"Content-Type: text/plain; charset=iso-8859-1\n\nrejeter Hors sujet \x96 l\x92objet\n"
    assert read_reply(raw, VOCABULARY).commands == (Command("reject", None, "Hors sujet – l’objet"),)


def test_html_bottom_posted_after_an_unmarked_attribution() -> None:
    html = """\
        <p>On 21/11/2026 10:00, Listserv wrote:</p>
        <blockquote type="cite">To discard silently, reply with: discard</blockquote>
        <p>reject spam</p>
    """
    reading = read_reply(reply(html, "Content-Type: text/html; charset=utf-8\n"), VOCABULARY)
    assert reading.commands == (Command("reject", None, "spam"),)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/mixed\n\nno boundary\n",
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n',
        b"Content-Type: text/plain; charset=x-no-such-charset\n\n\xe9 approuver\n",
        b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
        b"Content-Type: text/html\n\n<div><blockquote><div class=gmail_quote>unclosed <<<>>> &bogus;",
        b"Content-Type: image/png\n\n\x89PNG",
        b"Content-Type: message/rfc822\n\nSubject: x\n\ndiscard\n",
        b"Content-Type: text/plain\n\n" + b"> " * 100_000 + b"\n" + b"On " * 50_000,
        b"Content-Type: text/plain\n\nOn " + b"schrieb " * 25_000 + b"\n" + b"x schrieb " * 20_000,
        b"Content-Type: text/html\n\n" + b"<div>" * 50_000 + b"approve",
    ],
)
def test_malformed_mail_never_raises_and_reads_fast(raw: bytes) -> None:
    started = time.monotonic()
    reading = read_reply(raw, VOCABULARY)
    assert time.monotonic() - started < 2
    assert all(command.action in ("approve", "reject", "discard") for command in reading.commands)


def test_mail_without_any_text_decides_nothing() -> None:
    reading = read_reply(b"Content-Type: image/png\n\n\x89PNG", VOCABULARY)
    assert (reading.commands, reading.understood) == ((), False)


def test_the_hard_message_corpus_never_raises() -> None:
    for path in sorted((Path(__file__).parent / "messages").glob("*.eml")):
        read_reply(path.read_bytes(), VOCABULARY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K7QXM-2PAB9-ZT4HD", "K7QXM-2PAB9-ZT4HD"),
        ("k7qxm 2pab9-zt4hd", "K7QXM-2PAB9-ZT4HD"),
        ("k7qxm2pab9zt4hd", "K7QXM-2PAB9-ZT4HD"),
        ("  K7QXM  2PAB9  ZT4HD ", "K7QXM-2PAB9-ZT4HD"),
        ("ko0il-IL1oO-abcde", "K0011-11100-ABCDE"),  # O reads as 0, I and L as 1
        ("K7QXM-2PAB9-ZT4HU", None),  # U is not Crockford base32
        ("K7QXM-2PAB9-ZT4H", None),  # too short
        ("K7QXM-2PAB9-ZT4HDX", None),  # too long
        ("K7QXM--2PAB9-ZT4HD", None),
        ("K7QXM_2PAB9_ZT4HD", None),
        ("K7QXM-2PAB9-ZT4H!", None),
        ("", None),
        ("K7QXM-2PÀB9-ZT4HD", None),
    ],
)
def test_normalise_code(text: str, expected: str | None) -> None:
    assert normalise_code(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Re: [#K7QXM-2PAB9-ZT4HD] Held: Capacity building in customs", "K7QXM-2PAB9-ZT4HD"),
        ("RE: AW: Re: [#k7qxm-2pab9-zt4hd] Held: x", "K7QXM-2PAB9-ZT4HD"),
        ("Re: hello-world-again [#K7QXM-2PAB9-ZT4HD]", "K7QXM-2PAB9-ZT4HD"),
        ("ta-en-moderation+K7QXM-2PAB9-ZT4HD@lists.example.org", "K7QXM-2PAB9-ZT4HD"),
        ("Re: [#K7QXU-2PAB9-ZT4HD] Held", None),
        ("Re: Hello world again", None),
        ("Re: internationally", None),
        ("Re: [#K7QXM-2PAB9] Held", None),
        ("Re: K7QXM-2PAB9-ZT4HD-XXXXX", None),
        ("", None),
    ],
)
def test_find_code(text: str, expected: str | None) -> None:
    assert find_code(text) == expected


STANDALONE = ("ok", "yes", "oui", "sí", "si")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("OK, I'll look at it tomorrow", None),
        ("Sí, adelante", None),
        ("yes but fix the title first", None),
        ("OK.", Command("approve", None)),
        ("oui !", Command("approve", None)),
        ("ok K7QXM-2PAB9-ZT4HD", Command("approve", "K7QXM-2PAB9-ZT4HD")),
        ("Approve, thanks", Command("approve", None)),  # the verb itself may carry courtesy
    ],
)
def test_casual_words_decide_only_alone(line: str, expected: Command | None) -> None:
    reading = read_reply(reply(line + "\n"), VOCABULARY, STANDALONE)
    assert reading.commands == ((expected,) if expected else ())
    assert reading.understood is (expected is not None)


# --- the six languages' words, from the shipped catalogues; Chinese and Japanese without spaces ------


def shipped_words() -> tuple[dict[str, Action], set[str]]:
    from listserv.config import SHIPPED_TEMPLATES
    from listserv.mail.templates import MailTemplates
    from listserv.moderation.vocabulary import standalone_words, vocabulary

    templates = MailTemplates(SHIPPED_TEMPLATES, "UTC")
    six = ["en", "fr", "es", "ar", "zh", "ru"]
    return vocabulary(templates, six), standalone_words(templates, six)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("拒绝超出范围", Command("reject", None, "超出范围")),
        ("拒绝，理由：超出范围", Command("reject", None, "理由：超出范围")),
        ("拒绝：与主题无关。", Command("reject", None, "与主题无关。")),
        ("批准", Command("approve", None)),
        ("批准。谢谢", Command("approve", None)),
        ("批准谢谢", Command("approve", None)),
        ("同意，谢谢！", Command("approve", None)),
        ("不批准，内容重复", Command("reject", None, "内容重复")),  # the longest known word wins
        ("不同意", Command("reject", None, "")),
        ("删除广告", Command("discard", None)),
        ("拒绝K7QXM-2PAB9-ZT4HD重复", Command("reject", "K7QXM-2PAB9-ZT4HD", "重复")),
        ("好的。", Command("approve", None)),
        ("رفض، خارج الموضوع", Command("reject", None, "خارج الموضوع")),
        ("موافقة", Command("approve", None)),
        ("отклонить: не по теме", Command("reject", None, "не по теме")),
        ("одобрить", Command("approve", None)),
        ("reject «Hors sujet»", Command("reject", None, "«Hors sujet»")),  # an opening quote is kept
    ],
)
def test_six_languages_words_and_cjk_without_spaces(line: str, expected: Command) -> None:
    words, standalone = shipped_words()
    assert read_reply(reply(line + "\n"), words, standalone).commands == (expected,)


@pytest.mark.parametrize("line", ["好的，我明天再看", "可以吗？", "是否需要修改", "批评意见", "拒"])
def test_a_cjk_line_that_only_looks_like_a_word_decides_nothing(line: str) -> None:
    words, standalone = shipped_words()
    reading = read_reply(reply(line + "\n"), words, standalone)
    assert (reading.commands, reading.understood) == ((), False)
