"""The address grammar: which local addresses are ours and what each is for."""

from __future__ import annotations

import pytest

from listserv.mail.addresses import AddressBook, Kind, Recipient, normalise_address, parse_mailboxes

BOOK = AddressBook("forum.example.org", ["ta-en", "ta-fr", "ta-es", "health-ar"])


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ta-en@forum.example.org", Recipient("ta-en", Kind.POST)),
        ("TA-EN@Forum.Example.ORG", Recipient("ta-en", Kind.POST)),
        ("<ta-fr@forum.example.org>", Recipient("ta-fr", Kind.POST)),
        ("ta-fr-request@forum.example.org", Recipient("ta-fr", Kind.REQUEST)),
        ("ta-es-owner@forum.example.org", Recipient("ta-es", Kind.OWNER)),
        ("ta-es-propose@forum.example.org", Recipient("ta-es", Kind.PROPOSE)),
        ("ta-en-moderate@forum.example.org", Recipient("ta-en", Kind.MODERATE)),
        ("ta-en-moderate+K7QX-M2PA@forum.example.org", Recipient("ta-en", Kind.MODERATE, "K7QX-M2PA")),
        ("ta-en-bounces@forum.example.org", Recipient("ta-en", Kind.BOUNCES)),
        ("ta-en-bounces+tok3n@forum.example.org", Recipient("ta-en", Kind.BOUNCES, "tok3n")),
        ("health-ar@forum.example.org", Recipient("health-ar", Kind.POST)),
        ("postmaster@forum.example.org", Recipient(None, Kind.POSTMASTER)),
        ("Postmaster@forum.example.org", Recipient(None, Kind.POSTMASTER)),
    ],
)
def test_our_addresses(address: str, expected: Recipient) -> None:
    assert BOOK.classify(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "nobody@forum.example.org",
        "ta-de@forum.example.org",
        "ta-en-admin@forum.example.org",
        "ta-en+tag@forum.example.org",  # only moderate and bounces take a +detail
        "ta-en-moderate+@forum.example.org",
        "ta-en@example.net",
        "ta-en@sub.forum.example.org",
        "ta-en",
        "",
    ],
)
def test_everything_else_is_not_ours(address: str) -> None:
    assert BOOK.classify(address) is None


def test_foreign_domain_is_distinguished_from_unknown_local() -> None:
    assert BOOK.is_local_domain("nobody@FORUM.example.org")
    assert not BOOK.is_local_domain("x@example.net")


def test_address_of_builds_the_grammar() -> None:
    assert BOOK.address_of("ta-fr") == "ta-fr@forum.example.org"
    assert BOOK.address_of("ta-fr", Kind.MODERATE, "AB12") == "ta-fr-moderate+AB12@forum.example.org"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bob@Example.ORG", "Bob@example.org"),
        ("Bob <bob@example.org>", "bob@example.org"),
        ("  delegate@example.org ", "delegate@example.org"),
        ("bob", None),
        ("a@b", None),
        # Syntax decides, not a list of public top-level domains: intranets use their own.
        ("bob@example.invalidtld", "bob@example.invalidtld"),
        ("ana@intranet.internal", "ana@intranet.internal"),
        ("ben@host.lan", "ben@host.lan"),
        ("=?utf-8?q?chief@gov.example.org?=", None),  # an encoded word is never an address
        ("bob..x@example.org", None),
        ("x@example.net, y@example.net", None),
        ("", None),
    ],
)
def test_normalise_address(text: str, expected: str | None) -> None:
    assert normalise_address(text) == expected


def test_parse_mailboxes_keeps_the_good_ones() -> None:
    assert parse_mailboxes('"Müller, Hans" <hans@Example.DE>, broken, ana@example.org') == [
        ("Müller, Hans", "hans@example.de"),
        ("", "ana@example.org"),
    ]


# What flanker's public parser has to say, in the shapes mail and rosters bring: display names plain,
# quoted and encoded, IDNA host names (good and bad), comments, URLs, groups, junk and the length limit.
FLANKER_CASES = [
    "Bob@Example.ORG",
    "Bob <bob@example.org>",
    '"Müller, Hans" <hans@Example.DE>',
    "=?utf-8?q?M=C3=BCller?= <hans@example.de>",
    "=?utf-8?q?chief@gov.example.org?=",
    "bob@xn--mller-kva.example",
    "bob@xn--zz.example",
    "bob@müller.example",
    "bob@exa mple.org",
    "ana@intranet.internal",
    "a@b",
    "bob",
    "bob..x@example.org",
    '"bob..x"@example.org',
    "bob(comment)@example.org",
    "bob@[192.0.2.1]",
    "http://example.org/path?q",
    "x@example.net, y@example.net",
    "Group: a@example.org;",
    "<>",
    "<bob@example.org",
    "bob@example.org>",
    "Bob Smith bob@example.org",
    "бюро@пример.рф",
    "用户@例子.广告",
    "a" * 1020 + "@b.org",
    "a" * 1030 + "@b.org",
    "\u00a0bob@example.org",
    "bob@example.org\u200b",
    "'; DROP TABLE member; --@example.org",
]


@pytest.mark.parametrize("text", FLANKER_CASES)
def test_our_call_of_flankers_parser_gives_what_its_public_parse_gives(text: str) -> None:
    """``addresses`` calls flanker's parser without its ``address`` module (which imports flanker's MIME
    package, ~17 MB): it must give the address ``address.parse(text, strict=True)`` gives."""
    from flanker.addresslib import address

    from listserv.mail.addresses import _flanker_address

    parsed = address.parse(text.strip(), strict=True)
    expected = str(parsed.address) if isinstance(parsed, address.EmailAddress) else None
    assert _flanker_address(text.strip()) == expected
