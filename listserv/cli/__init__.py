"""Command line: ``listserv [--config PATH] COMMAND``. Operator messages are plain English on stderr;
exit 2 means the configuration or the command line is wrong, 1 that the command could not be done.

``serve`` (and ``web-worker``) are parsed without the other commands: their modules import the whole
forum, which ``serve`` loads only after its SMTP side is open (``cli/serve.py``)."""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import OperationalError

from listserv.cli.base import CommandError, UsageError, command
from listserv.cli.logs import TEXT_FORMAT, use_format
from listserv.cli.serve import cmd_serve, cmd_web_worker
from listserv.config import ConfigError, config_path, load_settings
from listserv.store.db import make_engine
from listserv.store.wakeup import notify_outgoing

# Commands that queue no mail: no need to wake the senders of the serve processes.
QUIET_COMMANDS = frozenset(
    {"serve", "init", "i18n", "status", "reindex", "audit", "queue", "import", "export", "mta", "dkim"}
    | {"backup", "restore"}
)
SERVING = frozenset({"serve", "web-worker"})  # parsed alone: see the module doc


def main(argv: list[str] | None = None) -> int:
    args = _parser(_command_of(argv)).parse_args(argv)
    logging.basicConfig(level=args.log_level, format=TEXT_FORMAT)
    for chatty in ("alembic", "mail.log"):  # mail.log: aiosmtpd logs every SMTP command at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    path = config_path(args.config)
    try:
        settings = load_settings(path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        print(f"(in {path}; fix these and start again)", file=sys.stderr)
        return 2
    use_format(args.log_format or settings.logging.format, settings.lists)
    engine = make_engine(settings.database.url)
    try:
        status = args.run(args, settings, engine) or 0
        if args.command not in QUIET_COMMANDS:
            notify_outgoing(engine)  # a decision or queued mail: every serve sends it now
        return status
    except (CommandError, *_operator_errors()) as error:  # evaluated only when something was raised
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    except OperationalError as error:
        print(
            f"error: the database at {engine.url.render_as_string(hide_password=True)} cannot be used: "
            f"{error.orig}",
            file=sys.stderr,
        )
        return 1
    except Exception as error:  # a bug: one line for the operator, the traceback in the debug log
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(
            f"error: unexpected {type(error).__name__}: {error} (run with --log-level DEBUG for details)",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()


def _operator_errors() -> tuple[type[Exception], ...]:
    from listserv.cli.commands import OPERATOR_ERRORS  # late: see the module doc

    return OPERATOR_ERRORS


def _global_options(parser: argparse.ArgumentParser, checked: bool = True) -> None:
    parser.add_argument(
        "--config", help="path of config.yaml (default: $LISTSERV_CONFIG, else ./config.yaml)"
    )
    levels = ["DEBUG", "INFO", "WARNING", "ERROR"]
    parser.add_argument("--log-level", default="INFO", choices=levels if checked else None)
    parser.add_argument(
        "--log-format",
        choices=["text", "json"] if checked else None,
        help="json: one object per line (default: logging.format)",
    )


def _command_of(argv: list[str] | None) -> str | None:
    """The command named on the command line, if any; the real parser checks everything after."""
    first = argparse.ArgumentParser(prog="listserv", add_help=False)
    _global_options(first, checked=False)
    first.add_argument("command", nargs="?")
    return first.parse_known_args(argv)[0].command


def _parser(command_name: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listserv", description="A moderated, multilingual forum over email."
    )
    _global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command(commands, "serve", "run the SMTP ingress and the worker until SIGTERM", cmd_serve)
    worker = commands.add_parser("web-worker", help=argparse.SUPPRESS)  # started by serve (web.workers)
    worker.add_argument("--fd", type=int, required=True)
    worker.set_defaults(run=cmd_web_worker)
    if command_name not in SERVING:
        from listserv.cli.commands import register  # late: see the module doc

        register(commands)
    return parser
