"""What every command shares: the operator's errors (exit 1, or 2 for a wrong command line) and
the helper that declares a command."""

from __future__ import annotations

import argparse
from collections.abc import Callable


class CommandError(Exception):
    """Something the operator can fix; printed without a traceback."""


class UsageError(CommandError):
    """The command line itself is wrong (exit status 2), e.g. a control character in a field."""


def command(
    commands: argparse._SubParsersAction, name: str, text: str, run: Callable[..., int | None]
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=text, description=text)
    command.set_defaults(run=run)
    return command
