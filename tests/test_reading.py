"""Reading archived bytes for display: the hard corpus never breaks a page, HTML is defused, text becomes
blocks and link segments, attachments keep stable indexes and safe names."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from textwrap import dedent

import pytest

from listserv.archive.reading import MessageView, attachment, read_message

MESSAGES = Path(__file__).parent / "messages"
CORPUS = sorted(MESSAGES.glob("*.eml"))
SAFE_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


def literal(text: str) -> bytes:
    return dedent(text).lstrip().replace("\n", "\r\n").encode("utf-8")


def names(view: MessageView) -> list[str]:
    return [item.filename for item in view.attachments]


def plain(view: MessageView) -> list[tuple[str, list[str]]]:
    """Blocks as (kind, lines of text) for compact assertions."""
    return [(block.kind, ["".join(text for text, _ in line) for line in block.lines]) for block in view.body]


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
def test_every_hard_message_reads_and_every_attachment_opens(path: Path) -> None:
    raw = path.read_bytes()
    view = read_message(raw, show_html=True, attachment_url=lambda index: f"/a/{index}")
    assert not any(defect.startswith("Unreadable") for defect in view.defects)
    assert "\x00" not in view.text + view.headers.subject
    for item in view.attachments:
        found = attachment(raw, item.index)
        assert found is not None, item
        assert len(found.data) == item.size
        assert found.filename == item.filename
        assert SAFE_TYPE.fullmatch(found.content_type)
        assert not re.search(r"[/\\\x00-\x1f]", item.filename) and not item.filename.startswith(".")


@pytest.mark.parametrize("name", ["attachment-rfc2231-french", "rfc822-nested-3-levels", "html-script"])
def test_truncated_messages_never_raise(name: str) -> None:
    raw = (MESSAGES / f"{name}.eml").read_bytes()
    for cut in range(0, len(raw), max(1, len(raw) // 40)):
        view = read_message(raw[:cut], show_html=True)
        for item in view.attachments:
            assert attachment(raw[:cut], item.index) is not None


def test_garbage_and_out_of_range_indexes() -> None:
    raw = (MESSAGES / "attachment-path-traversal.eml").read_bytes()
    assert read_message(b"\xff\xfe\x00garbage").headers.sender is None
    assert attachment(raw, 1) is None  # the body is not an attachment
    assert attachment(raw, 0) is None and attachment(raw, 99) is None and attachment(raw, -1) is None
    assert attachment(b"", 1) is None


def test_headers_are_decoded() -> None:
    view = read_message((MESSAGES / "fr-qp-subject.eml").read_bytes())
    assert any(ch in view.headers.subject for ch in "éèàç")
    assert view.headers.sender is not None and view.headers.sender.address.endswith("@example.org")
    assert view.headers.date is not None and view.headers.date.utcoffset() is not None
    assert view.headers.message_id is not None and view.headers.message_id.startswith("<")
    ru = read_message((MESSAGES / "ru-koi8r.eml").read_bytes())
    assert re.search("[а-яА-Я]", ru.headers.subject + ru.text)
    group = read_message((MESSAGES / "to-group-syntax.eml").read_bytes())
    assert all(address.address for address in group.headers.to)


def test_comma_in_an_encoded_display_name_does_not_split_the_address() -> None:
    raw = literal("""
        From: =?utf-8?q?Dupont=2C_Ren=C3=A9?= <rene@example.org>
        To: a@example.org, "B, Bee" <b@example.org>
        Cc: c@example.org
        In-Reply-To: <parent@example.org>
        Subject: x

        body
    """)
    headers = read_message(raw).headers
    assert headers.sender is not None and (headers.sender.name, headers.sender.address) == (
        "Dupont, René",
        "rene@example.org",
    )
    assert [address.address for address in headers.to] == ["a@example.org", "b@example.org"]
    assert [address.address for address in headers.cc] == ["c@example.org"]
    assert headers.in_reply_to == "<parent@example.org>"
    assert headers.date is None


ALTERNATIVE = literal("""
    From: A <a@example.org>
    Subject: alt
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="m"

    --m
    Content-Type: multipart/alternative; boundary="a"

    --a
    Content-Type: text/plain; charset=utf-8

    The plain version.
    --a
    Content-Type: multipart/related; boundary="r"

    --r
    Content-Type: text/html; charset=utf-8

    <p onclick="steal()">Hi <script>alert(1)</script><a href="javascript:alert(2)">js</a>
    <a href="https://example.org/x" target="_blank" onmouseover="x()">ok</a>
    <img src="https://tracker.example.com/pixel.png" alt="tracker">
    <img src="cid:logo@example.org" alt="logo">
    <img src="/logout"><iframe src="https://evil.example.org"></iframe>
    <form action="https://evil.example.org"><input name="pw"></form>
    <span style="color: red; background-image: url(https://tracker.example.com/bg)">red</span></p>
    --r
    Content-Type: image/png
    Content-ID: <logo@example.org>
    Content-Transfer-Encoding: base64

    iVBORw0KGgo=
    --r--
    --a--
    --m
    Content-Type: text/html; charset=utf-8
    Content-Disposition: attachment; filename="page.html"

    <script>served as a download only</script>
    --m--
""")


def test_text_is_preferred_and_html_is_offered() -> None:
    view = read_message(ALTERNATIVE)
    assert view.has_html and view.html is None
    assert plain(view) == [("text", ["The plain version."])]
    assert names(view) == ["attachment-3.png", "page.html"]
    assert [item.index for item in view.attachments] == [3, 4]


def test_the_html_alternative_is_neutralised() -> None:
    view = read_message(ALTERNATIVE, show_html=True, attachment_url=lambda index: f"/post/7/part/{index}")
    html = view.html or ""
    for bad in ("<script", "alert(1)", "onclick", "onmouseover", "javascript:", "<iframe", "<form", "<input"):
        assert bad not in html.lower(), bad
    assert "tracker.example.com" not in html  # neither the pixel nor the CSS background
    assert "/logout" not in html  # a relative src would hit our own site with the reader's cookies
    assert 'href="https://example.org/x"' in html and 'rel="nofollow noopener noreferrer"' in html
    assert "target=" not in html
    assert 'src="/post/7/part/3"' in html  # cid: → this message's own part
    assert '<img alt="tracker">' in html and view.blocked_images == 2
    assert "style=" not in html  # the CSP would refuse it: not kept at all
    image = attachment(ALTERNATIVE, 3)
    assert image is not None and image.content_type == "image/png" and image.data.startswith(b"\x89PNG")
    page = attachment(ALTERNATIVE, 4)
    assert page is not None and page.content_type == "text/html" and b"<script>" in page.data  # as-is


def test_remote_images_can_show_a_local_placeholder() -> None:
    view = read_message(ALTERNATIVE, show_html=True, remote_image_src="/static/blocked.svg")
    assert view.html is not None and view.html.count('src="/static/blocked.svg"') == 2
    assert 'alt="logo"' in view.html and "cid:" not in view.html  # no attachment_url: the src is dropped


def test_the_script_sample_is_neutralised() -> None:
    view = read_message((MESSAGES / "html-script.eml").read_bytes(), show_html=True)
    assert view.html is not None
    for bad in ("script", "onload", "onerror", "javascript", "iframe", "evil", "style"):
        assert bad not in view.html.lower(), bad


def test_html_only_mail_is_shown_as_html_with_a_text_for_summaries() -> None:
    view = read_message((MESSAGES / "html-only.eml").read_bytes())
    assert view.body == () and view.html is not None and "<h1>Agenda</h1>" in view.html
    assert view.text == "Agenda\nItem one & two"


def test_quotes_and_signature_become_blocks() -> None:
    raw = literal("""
        From: a@example.org
        Subject: re

        I agree.
        > You wrote this
        >> and this
        Indeed.
        --\x20
        Ann Example
        https://example.org/ann
    """)
    assert plain(read_message(raw)) == [
        ("text", ["I agree."]),
        ("quote", ["> You wrote this", ">> and this"]),
        ("text", ["Indeed."]),
        ("signature", ["Ann Example", "https://example.org/ann"]),
    ]
    assert read_message(raw).body[-1].lines[-1] == (("https://example.org/ann", "https://example.org/ann"),)


def test_links_are_segments_without_trailing_punctuation() -> None:
    raw = literal("""
        From: a@example.org

        See https://en.wikipedia.org/wiki/Foo_(bar), or (https://example.org/a?b=1&c=2). Mail mailto:x@ex.org!
        Not javascript:alert(1) nor ftp://example.org nor https://
    """)
    first, second = read_message(raw).body[0].lines
    assert [url for _, url in first if url] == [
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "https://example.org/a?b=1&c=2",
        "mailto:x@ex.org",
    ]
    assert "".join(text for text, _ in first).startswith("See https://en.wikipedia.org/wiki/Foo_(bar), or (")
    assert [url for _, url in second if url] == []


def test_format_flowed_delsp() -> None:
    view = read_message((MESSAGES / "format-flowed-delsp.eml").read_bytes())
    blocks = plain(view)
    assert blocks[0][1][0].startswith("This is a long paragraph that has been wrapped by the sending agent")
    assert blocks[0][1][0].endswith("deleted when joining.")
    assert blocks[1] == ("quote", ["> Quoted flowed line that iscontinued here.", ">> deeper quote"])
    assert blocks[2] == ("signature", ["Signature"])


def test_format_flowed_without_delsp_keeps_the_space() -> None:
    raw = literal("""
        From: a@example.org
        Content-Type: text/plain; charset=utf-8; format=flowed

        One soft\x20
        line.
         From stuffed
        > quoted soft\x20
        > end
    """)
    assert plain(read_message(raw)) == [
        ("text", ["One soft line.", "From stuffed"]),
        ("quote", ["> quoted soft end"]),
    ]


def test_attachment_names_are_safe() -> None:
    traversal = read_message((MESSAGES / "attachment-path-traversal.eml").read_bytes())
    assert names(traversal) == ["passwd", "evil.dll", "shadow", "authorized_keys"]
    french = read_message((MESSAGES / "attachment-rfc2231-french.eml").read_bytes())
    assert names(french)[:2] == ["résumé de la leçon française.pdf", "garçon été.txt"]
    raw = literal("""
        From: a@example.org
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="b"

        --b
        Content-Type: text/plain

        body
        --b
        Content-Type: application/octet-stream
        Content-Disposition: attachment; filename="photo\u202egpj.exe"

        x
        --b
        Content-Type: application/pdf
        Content-Disposition: attachment; filename=".."

        x
        --b
        Content-Type: text/ht<ml
        Content-Disposition: attachment; filename="x\x07y?.txt"

        x
        --b
        Content-Type: application/pdf
        Content-Disposition: attachment; filename="LONGNAME.pdf"

        x
        --b
        Content-Type: application/pdf
        Content-Disposition: attachment; filename="café.pdf"

        x
        --b--
    """).replace(b"LONGNAME", b"n" * 300)
    view = read_message(raw)
    assert names(view)[:3] == ["photogpj.exe", "attachment-3.pdf", "xy_.txt"]
    assert len(names(view)[3]) <= 150 and names(view)[3].endswith(".pdf")
    assert names(view)[4] == "café.pdf"  # raw UTF-8, no RFC 2231: common, and mail.text.filename raises on it
    bad_type = attachment(raw, 4)
    assert bad_type is not None and bad_type.content_type == "application/octet-stream"


def test_a_forwarded_message_is_one_attachment() -> None:
    raw = (MESSAGES / "rfc822-nested-3-levels.eml").read_bytes()
    view = read_message(raw)
    assert [(item.content_type, item.filename) for item in view.attachments] == [
        ("message/rfc822", "attachment-2.eml")
    ]
    found = attachment(raw, 2)
    assert found is not None
    inner = email.message_from_bytes(found.data, policy=email.policy.compat32)
    assert inner["Subject"]


def test_undecodable_charset_is_a_defect_not_an_error() -> None:
    view = read_message((MESSAGES / "charset-x-unknown.eml").read_bytes())
    assert "UndecodableCharset: x-unknown" in view.defects
    assert view.text
