"""The archive's stable URLs, built in one place: mail (``Archived-At``, footers, welcomes, digests)
and the web archive must agree on them, since members keep them for years."""

from __future__ import annotations

from urllib.parse import quote


def list_url(base_url: str, list_name: str) -> str:
    return f"{base_url.rstrip('/')}/lists/{list_name}/"


def message_url(base_url: str, list_name: str, message_id: str) -> str:
    """``https://…/lists/ta-en/message/abc%40example.org`` — what ``Archived-At`` points to."""
    return f"{list_url(base_url, list_name)}message/{quote(message_id.strip('<>'), safe='@')}"


def unsubscribe_url(base_url: str, list_name: str) -> str:
    """The page that leaves the list (signed in, one button): the footer's link."""
    return f"{list_url(base_url, list_name)}unsubscribe"


def protocol_url(base_url: str, language: str) -> str:
    return f"{base_url.rstrip('/')}/protocol/{language}"


def digest_url(base_url: str, list_name: str, period: str, key: str) -> str:
    """A digest issue's page: ``…/lists/ta-en/digest/weekly/2026-W48``."""
    return f"{list_url(base_url, list_name)}digest/{period}/{key}"


def thread_url(base_url: str, list_name: str, message_id: str) -> str:
    """A discussion's page, named by any of its messages (a guest's invitation links its first)."""
    return f"{list_url(base_url, list_name)}thread/{quote(message_id.strip('<>'), safe='@')}"


def password_url(base_url: str, token: str) -> str:
    """The page that sets a password from a signed link (a reset, a guest's invitation)."""
    return f"{base_url.rstrip('/')}/password/reset/{token}"


def attachment_path(list_name: str, message_id: str, index: int) -> str:
    """A message's part ``index`` (as ``reading`` numbers them), relative to the site: inline images
    of HTML mail point there, so the sanitised HTML stored at archive time carries it."""
    return f"{list_url('', list_name)}attachment/{index}/{quote(message_id.strip('<>'), safe='@')}"
