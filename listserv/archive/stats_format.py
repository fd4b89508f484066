"""The participation rows written out: CSV (the dashboard's download and ``stats --format csv``),
JSON and an aligned table for the terminal. Pure."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from listserv.archive.stats import FIELDS


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in FIELDS])
    return out.getvalue()


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps([{name: row[name] for name in FIELDS} for row in rows], indent=2) + "\n"


def as_table(rows: list[dict[str, Any]]) -> str:
    cells = [list(FIELDS), *[[_cell(row[name]) or "-" for name in FIELDS] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(FIELDS))]
    lines = []
    for line in cells:
        lines.append(
            "  ".join(
                text.ljust(width) if i < 2 else text.rjust(width)
                for i, (text, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines) + "\n"


FORMATS = {"table": as_table, "csv": as_csv, "json": as_json}
