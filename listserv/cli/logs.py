"""How the process logs: plain lines, or with ``--log-format json`` / ``logging.format: json`` one JSON
object per line for a log collector: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the
message), and ``message_id`` and ``list`` when the line names them (our log lines carry the Message-ID
about which they speak; the list is found among the configured list names), ``error`` with a traceback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s]+>")


class JsonFormatter(logging.Formatter):
    def __init__(self, list_names: Iterable[str]) -> None:
        super().__init__()
        names = sorted(list_names, key=len, reverse=True)
        self.list_name = (
            re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])") if names else None
        )

    def format(self, record: logging.LogRecord) -> str:
        event = record.getMessage()
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": event,
        }
        message_id = getattr(record, "message_id", None) or _first(MESSAGE_ID, event)
        list_name = getattr(record, "list", None) or (self.list_name and _first(self.list_name, event))
        if message_id:
            entry["message_id"] = message_id
        if list_name:
            entry["list"] = list_name
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(found.lastindex or 0) if found else None


def use_format(log_format: str, list_names: Iterable[str]) -> None:
    """Switch every handler of the root logger to ``log_format`` (text is what basicConfig set)."""
    if log_format != "json":
        return
    formatter = JsonFormatter(list_names)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
