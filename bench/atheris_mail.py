"""Coverage-guided fuzzing of the mail readers with atheris (libFuzzer for Python), beside the hypothesis
properties of tests/test_fuzz_*.py. Hypothesis writes mail from a grammar; libFuzzer mutates bytes and
keeps what reaches new branches of listserv and of the stdlib's email package, so it finds inputs no
grammar names (its first run found a NUL inside a charset label: ValueError out of ``parse_post``).

Not a test (it runs until stopped and needs atheris, whose cp311 manylinux wheel needs no clang):

    .venv/bin/pip install -e '.[fuzz]'
    mkdir -p /tmp/fuzz-corpus && cp tests/messages/*.eml /tmp/fuzz-corpus/
    .venv/bin/python bench/atheris_mail.py /tmp/fuzz-corpus -max_total_time=600 -max_len=20000

A failure writes ``crash-<sha1>`` with the input: add it as an ``@example`` of the property it breaks.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["listserv", "email"]):
    import email
    import email.policy

    from listserv.mail import own_text
    from listserv.mail.message import ensure_message_id, parse_post
    from listserv.mail.text import has_control_characters


def one_input(data: bytes) -> None:
    """The properties of tests/test_fuzz_parsing.py, on any bytes."""
    post = parse_post(data)
    assert not has_control_characters(post.sender_name), post.sender_name
    assert not has_control_characters(post.subject), post.subject
    _, message_id = ensure_message_id(data, "forum.example.org")
    assert not any(char.isspace() or char == "\x00" for char in message_id), message_id
    text = own_text._body_text(email.message_from_bytes(data, policy=email.policy.compat32))
    if text is not None:  # the reader of replies and commands, without its catch-all
        own_text._own_blocks(text)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
