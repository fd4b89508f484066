"""``listserv mta postfix`` (what to paste into Postfix to put it in front of us, after Mailman's
``postfix_lmtp``) and ``listserv dkim keygen`` (a signing key and its DNS record)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from listserv.config import Settings
from listserv.mail.addresses import AddressBook
from listserv.outgoing.signing import generate_key

TRANSPORT_MAP = "listserv_transport"
RECIPIENT_MAP = "listserv_recipients"
MAP_TYPES = ("hash", "lmdb", "cdb", "texthash")  # texthash: read as is, no postmap (Postfix ≥ 3.0)


class MtaCommandError(Exception):
    pass


def register(commands: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser]) -> None:
    mta = commands.add_parser("mta", help="configuration for the mail server in front")
    mta_actions = mta.add_subparsers(dest="mta_command", required=True, metavar="MTA")
    postfix = command(mta_actions, "postfix", "Postfix main.cf settings and maps for our lists", cmd_postfix)
    postfix.add_argument("--dir", type=Path, default=Path("/etc/postfix"), help="where the maps go")
    postfix.add_argument("--map-type", choices=MAP_TYPES, default="hash")
    postfix.add_argument(
        "--host", help="the address Postfix reaches listserv at (default: smtp.host; 127.0.0.1 for 0.0.0.0)"
    )
    dkim = commands.add_parser("dkim", help="DKIM signing keys")
    dkim_actions = dkim.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")
    keygen = command(dkim_actions, "keygen", "write a new signing key; print its DNS record", cmd_keygen)
    keygen.add_argument("--selector", required=True, help="e.g. listserv2026")
    keygen.add_argument("--out", type=Path, required=True, help="the key file (created mode 0600)")
    keygen.add_argument("--domain", help="signing domain (default: delivery.dkim.domain, else site.domain)")


def postfix_config(settings: Settings, folder: Path, map_type: str, host: str | None = None) -> str:
    """Three blocks, each headed ``# ---- <where> ----``: main.cf lines, the transport map, the
    recipient map; then the commands that make Postfix read them."""
    book = AddressBook(settings.site.domain, settings.lists)
    smtp = settings.smtp
    where = host or (smtp.host if smtp.host not in ("0.0.0.0", "::", "") else "127.0.0.1")
    where = f"[{where}]" if ":" in where else where
    nexthop = f"lmtp:inet:{where}:{smtp.port}" if smtp.protocol == "lmtp" else f"smtp:[{where}]:{smtp.port}"
    transport, recipients = folder / TRANSPORT_MAP, folder / RECIPIENT_MAP
    width = max(len(address) for address in book.addresses()) + 2
    lines = [
        f"# listserv for @{book.domain}: {len(settings.lists)} lists, handed over by {nexthop}",
        "# ---- main.cf ----",
        f"relay_domains = {book.domain}",
        f"transport_maps = {map_type}:{transport}",
        f"relay_recipient_maps = {map_type}:{recipients}",
        "# ta-en-moderate+CODE@ and ta-en-bounces+TOKEN@ are looked up without +CODE:",
        "recipient_delimiter = +",
        f"# The lists accept up to {smtp.max_message_bytes} bytes; Postfix should not take more:",
        f"message_size_limit = {smtp.max_message_bytes}",
        "# listserv delivers through this Postfix: its address must be in mynetworks (127.0.0.0/8 is).",
        f"# ---- {transport} ----",
        *(f"{address:<{width}}{nexthop}" for address in book.addresses()),
        f"# ---- {recipients} ----",
        *(f"{address:<{width}}OK" for address in book.addresses()),
        "# ---- then ----",
    ]
    if map_type != "texthash":
        lines.append(f"# postmap {transport} {recipients}")
    lines.append("# postfix reload")
    return "\n".join(lines) + "\n"


def cmd_postfix(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    print(postfix_config(settings, args.dir, args.map_type, args.host), end="")
    return 0


def cmd_keygen(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    configured = settings.delivery.dkim
    domain = args.domain or (configured.domain if configured else settings.site.domain)
    try:
        record = generate_key(args.selector, domain, args.out)
    except FileExistsError:
        raise MtaCommandError(f"{args.out} exists; a key is never overwritten (choose another)") from None
    except OSError as error:
        raise MtaCommandError(f"cannot write {args.out}: {error.strerror}") from None
    print(f"# key written to {args.out} (mode 0600); publish this record, then set delivery.dkim:")
    print(record)
    print(f"# delivery: {{dkim: {{domain: {domain}, selector: {args.selector}, key_file: {args.out}}}}}")
    return 0
