"""Text for the search index: what of a message is indexed, folded the same way for both databases
(lowercase, no accents, split into words, Russian and Arabic words stemmed), the query parsed into terms,
and the snippet cut around the words a query matched. Pure functions; ``index.py`` owns the database side.

Russian and Arabic are stemmed here, in Python, with the Snowball stemmers (``snowballstemmer``), for
both databases: SQLite's FTS5 has no stemmer for them and PostgreSQL has none for Arabic, and one
stemmer on both sides means the same query finds the same posts on either. A word is stemmed by its
script, not by its list's language, so a query needs no language: Cyrillic words are Russian and
Arabic-script words Arabic on this site (a Russian word quoted in an English post is found too).
Chinese and Japanese are indexed a character a word; a query of several characters is a phrase of
them, so "会议" finds "会议" and not "议会" on both databases, without a dictionary to cut words."""

from __future__ import annotations

import re
import threading
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from itertools import islice
from typing import TYPE_CHECKING

from listserv.mail.message import Post as ParsedPost
from listserv.mail.message import parse_post
from listserv.mail.text import fold

# A word as both tokenisers see it once we have folded the text. Chinese and Japanese are not written
# with spaces: each of their characters is a word, and a query for several is a phrase.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD = re.compile(f"[{CJK}]|[^\\W_{CJK}]+")
MAX_WORD = 40  # longer "words" are base64, hashes or URLs: noise that bloats the index
QUERY_CHUNK = re.compile(r'"([^"]*)"?|([^\s"]+)')  # a "quoted phrase" (closed or not), or a bare word
QUOTED = re.compile(r"^[ \t]*>.*$\n?", re.MULTILINE)
LOOKS_HTML = re.compile(r"<(?:html|body|div|p|br|table|span)\b|</(?:p|div|td)>", re.IGNORECASE)
WHITESPACE = re.compile(r"\s+")
MAX_TERMS = 16
CYRILLIC = re.compile("[\u0400-\u04ff]")
STEMMERS = ((CYRILLIC, "russian"), (re.compile("[\u0600-\u06ff]"), "arabic"))
CYRILLIC_MARKS = "\u0306\u0308"  # й and ё: letters of their own to the Russian stemmer, not accents
_STEMMING = threading.Lock()  # a Snowball stemmer object keeps state between calls: one at a time
SNIPPET_WORDS = 30

if TYPE_CHECKING:
    import snowballstemmer

Fragments = list[tuple[str, bool]]  # (text, highlight it?): the template escapes, and marks the flagged


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]  # one word, or a phrase
    prefix: bool  # the last word is a prefix ("moder*")


@dataclass(frozen=True)
class Document:
    subject: str
    body: str
    sender: str


PG_STEMMERS = ("english", "french", "spanish")  # index.CONFIGS: the stemmers PostgreSQL applies


@lru_cache(maxsize=1)
def _stemmers() -> dict[str, snowballstemmer.stemmer]:
    import snowballstemmer  # late: ~3 MB that only Cyrillic or Arabic words (or a phrase on PostgreSQL) need

    names = [language for _, language in STEMMERS] + list(PG_STEMMERS)
    return {language: snowballstemmer.stemmer(language) for language in names}


def search_fold(text: str) -> str:
    """``fold`` (lowercase, no accents), except that Cyrillic й and ё keep their marks until stemmed."""
    if text.isascii():
        return text.lower()
    kept: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char) and not (char in CYRILLIC_MARKS and kept and CYRILLIC.match(kept[-1])):
            continue
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept)).casefold()


@lru_cache(maxsize=100_000)  # the words of a language repeat: most are stemmed once per process
def term_of(word: str) -> str:
    """A word of ``search_fold``ed text as the index keeps it: Cyrillic and Arabic-script words stemmed
    (then folded, so that "е" finds "ё"), others as they are."""
    if word.isascii():
        return word
    language = next((name for script, name in STEMMERS if script.match(word)), None)
    if language is None:
        return word
    with _STEMMING:
        stem = _stemmers()[language].stemWord(word)
    return fold(stem or word)


def index_words(text: str) -> str:
    return " ".join(index_word_list(text))


def index_word_list(text: str) -> list[str]:
    if text.isascii():  # most mail: folding is lowercasing and no word is stemmed (term_of)
        return [word for word in WORD.findall(text.lower()) if len(word) <= MAX_WORD]
    return [term_of(word) for word in WORD.findall(search_fold(text)) if len(word) <= MAX_WORD]


class _TextOfHTML(HTMLParser):
    """The readable text of an HTML body: no tags, scripts, styles or quoted replies (blockquote)."""

    SKIP = frozenset({"script", "style", "head", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.skipping += tag in self.SKIP
        self.parts.append("\n")  # block or inline, a tag never glues the words on either side

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in self.SKIP and self.skipping > 0

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def body_text(text: str) -> str:
    """What we index of a body: HTML-only mail without its tags; quoted lines dropped (a reply's quote
    repeats its parent, indexed already, and would let every reply outrank the original)."""
    if LOOKS_HTML.search(text):
        parser = _TextOfHTML()
        parser.feed(text)
        parser.close()
        text = "".join(parser.parts)
    return QUOTED.sub("", text)


def document(raw: bytes, parsed: ParsedPost | None = None) -> Document:
    """What is indexed of a message; ``parsed`` when the caller has parsed ``raw`` already."""
    parsed = parsed or parse_post(raw)
    body = index_words(body_text(parsed.text))
    return Document(index_words(parsed.subject), body, index_words(f"{parsed.sender} {parsed.sender_name}"))


def distinct_words(doc: Document) -> str:
    """PostgreSQL's ``post_search.words``: each word of the document once, in order of appearance
    (phrases are verified elsewhere, so the order and repeats are not needed)."""
    return " ".join(dict.fromkeys(f"{doc.subject} {doc.sender} {doc.body}".split()))


@lru_cache(maxsize=100_000)
def _stem(config: str, word: str) -> str:
    """``word`` as PostgreSQL's ``config`` keeps it: its Snowball stemmer (the same algorithms) or as is."""
    if config not in PG_STEMMERS:
        return word
    with _STEMMING:
        return _stemmers()[config].stemWord(word)


def phrase_in(words: list[str], term: Term, config: str) -> bool:
    """Whether ``words`` (``index_word_list`` of a text) hold the phrase ``term`` as PostgreSQL's
    ``<->`` would find it in a document built with ``config``: the same stems, one after the other, the
    last word a prefix of a stem (or of one up to three letters shorter, as ``index._tsquery``) if the term
    ends with ``*``. Unlike PostgreSQL, a stop word of the phrase must be there, not any word."""
    wanted = [_stem(config, word) for word in term.words]
    if term.prefix:
        last = term.words[-1]
        cuts = {last[:-cut] for cut in (1, 2, 3) if len(last) - cut >= 4} if config in PG_STEMMERS else set()

    def matches(word: str, index: int) -> bool:
        # These stemmers never change a word's first letter: the rest need no stemming (in pure
        # Python, ~90 µs a word the first time; a phrase's candidates hold thousands of words).
        if word[:1] != term.words[index][:1]:
            return False
        stem = _stem(config, word)
        if term.prefix and index == len(wanted) - 1:
            return stem.startswith(last) or stem in cuts
        return stem == wanted[index]

    span, first = len(wanted), term.words[0][:1]
    starts = [start for start, word in enumerate(words[: len(words) - span + 1]) if word.startswith(first)]
    return any(all(matches(words[start + i], i) for i in range(span)) for start in starts)


def parse_query(query: str) -> list[Term]:
    """Words (all must match), "quoted phrases", ``word*`` prefixes. Only letters and digits are kept,
    so no input reaches the database as syntax."""
    terms: list[Term] = []
    for match in QUERY_CHUNK.finditer(query[:1000]):
        phrase, bare = match.group(1), match.group(2)
        found = WORD.findall(search_fold(phrase if phrase is not None else bare))
        words = tuple(term_of(word[:MAX_WORD]) for word in found)
        if words:
            terms.append(Term(words, bare is not None and bare.endswith("*") and len(words[-1]) >= 2))
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def highlight(text: str, terms: list[Term], window: int | None = None) -> Fragments:
    """``text`` cut into fragments, the words the query matched flagged; with ``window``, only that
    many words around the densest cluster of matches, ellipses marking the cuts.

    The words are listed by ``findall`` (in C) and compared in comprehensions, and the match objects
    (their offsets) made only up to the window's end: a snippet of a 400-word post is built in a
    fraction of what a dict of every word's positions cost (search spent most of its CPU here)."""
    if text.isascii():  # lower() moves no offset and keeps every word's bounds
        keys = WORD.findall(text.lower())
    else:
        keys = [word.lower() if word.isascii() else _key(word) for word in WORD.findall(text)]
    if not keys:
        return []
    marked = _matches(keys, terms, loose=False) or _matches(keys, terms, loose=True)
    start, end = 0, len(keys)
    if window is not None and len(keys) > window:
        start = _best_start(sorted(marked), window, len(keys))
        end = start + window
    tokens = list(islice(WORD.finditer(text), start, end))  # tokens[i] is word start + i
    fragments: Fragments = [("… ", False)] if start > 0 else []
    position = tokens[0].start()
    for index in sorted(i for i in marked if start <= i < end):
        token = tokens[index - start]
        fragments += [(text[position : token.start()], False), (token.group(), True)]
        position = token.end()
    fragments += [(text[position : tokens[-1].end()], False), (" …" if end < len(keys) else "", False)]
    # The mail's line breaks and indentation mean nothing in a one-line snippet.
    return [(WHITESPACE.sub(" ", piece), flag) for piece, flag in fragments if piece]


@lru_cache(maxsize=100_000)  # a language's words repeat: most are folded once per process, not per snippet
def _key(word: str) -> str:
    return term_of(search_fold(word))


def _matches(keys: list[str], terms: list[Term], loose: bool) -> set[int]:
    """Positions of the words the terms matched (``keys``: the text's folded words in order).
    ``loose``, the fallback for what a stemmer matched on PostgreSQL, takes any word that starts like
    the query's ("reunions" for "reunion")."""

    def positions(word: str, prefix: bool) -> set[int]:
        if loose and len(word) >= 4:
            word, prefix = word[: max(3, len(word) - 2)], True
        if not prefix:
            return {index for index, key in enumerate(keys) if key == word}
        return {index for index, key in enumerate(keys) if key.startswith(word)}

    marked: set[int] = set()
    for term in terms:
        last = len(term.words) - 1
        each = [positions(word, term.prefix and i == last) for i, word in enumerate(term.words)]
        for first in each[0]:
            if all(first + i in found for i, found in enumerate(each)):
                marked.update(range(first, first + len(each)))
    return marked


def _best_start(marked: list[int], window: int, count: int) -> int:
    """The window holding the most matches, starting a third of a window before its first one."""
    best, best_hits = 0, 0
    for index in marked:
        start = max(0, min(index - window // 3, count - window))
        hits = bisect_left(marked, start + window) - bisect_left(marked, start)
        if hits > best_hits:
            best, best_hits = start, hits
    return best
