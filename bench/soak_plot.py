"""The soak's plot, drawn with Pillow as ``listserv/weekly/report_chart.py`` draws the monthly chart: three
panels over the run's minutes — posts, replies and web pages per second; recipients delivered per second;
serve's RSS — with the digests and the prompt marked where they reached the sink."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from soak_load import Record

if TYPE_CHECKING:
    from soak_report import Sample

WIDTH, PANEL_H, LEFT, RIGHT, TOP, GAP = 900, 190, 64, 150, 28, 40
BIN = 10.0  # seconds per point of the rates
GRID, TEXT, AXIS = (215, 220, 225), (27, 31, 36), (85, 93, 102)
COLOURS = ((11, 92, 173), (194, 87, 12), (46, 139, 87), (148, 0, 211))
Series = tuple[str, Sequence[tuple[float, float]]]  # label, (minute, value) points


def per_second(times: Sequence[float], began: float, ended: float, weights: Sequence[float] | None = None):
    """(minute, events per second) of each BIN-second bin from ``began`` to ``ended``."""
    bins = max(1, int((ended - began) // BIN))
    counts = [0.0] * bins
    for index, at in enumerate(times):
        slot = int((at - began) // BIN)
        if 0 <= slot < bins:
            counts[slot] += weights[index] if weights else 1
    return [((slot + 0.5) * BIN / 60, count / BIN) for slot, count in enumerate(counts)]


def panel(draw, font, top: float, title: str, series: list[Series], minutes: float, marks: list) -> None:
    plot_w = WIDTH - LEFT - RIGHT
    highest = max((value for _, points in series for _, value in points), default=0) or 1
    draw.text((LEFT, top - 18), title, fill=TEXT, font=font)
    for fraction in (0, 0.5, 1):
        y = top + PANEL_H * (1 - fraction)
        draw.line([(LEFT, y), (LEFT + plot_w, y)], fill=GRID)
        draw.text((LEFT - 6, y), f"{highest * fraction:,.0f}", fill=AXIS, font=font, anchor="rm")
    for _label, minute in marks:
        x = LEFT + plot_w * minute / minutes
        draw.line([(x, top), (x, top + PANEL_H)], fill=(200, 30, 30), width=1)
    for index, (label, points) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        xy = [(LEFT + plot_w * m / minutes, top + PANEL_H * (1 - v / highest)) for m, v in points]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        draw.text((LEFT + plot_w + 10, top + 14 + 16 * index), label, fill=colour, font=font)


def draw(
    path: Path, record: Record, samples: Sequence[Sample], began: float, load_end: float, ended: float
) -> None:
    """The load from ``began`` to ``load_end``, then the drain until ``ended``."""
    from PIL import Image, ImageDraw, ImageFont  # late, as the project does

    minutes = max((ended - began) / 60, 1 / 60)
    height = TOP + 3 * (PANEL_H + GAP) + 10
    image = Image.new("RGB", (WIDTH, height), "white")
    pen, font = ImageDraw.Draw(image), ImageFont.load_default(size=13)
    with record.lock:
        posts = [end for _, end in record.acked.values()]
        replies = [end for _, end, _ in record.replies.values()]
        notices = list(record.notices.values())
        pages = [end for _, _, end, _ in record.pages]
        delivered = [at for at, _ in record.deliveries]
        weights = [float(recipients) for _, recipients in record.deliveries]
        marks = [(r.kind, (r.at - began) / 60) for r in record.received if r.kind in ("digest", "prompt")]
    firsts: dict[str, float] = {}
    for kind, minute in sorted(marks, key=lambda mark: mark[1]):
        firsts.setdefault(kind, minute)
    first_marks = [*firsts.items(), ("load ends", (load_end - began) / 60)]
    rates: list[Series] = [
        ("posts acked/s", per_second(posts, began, ended)),
        ("notices in sink/s", per_second(notices, began, ended)),
        ("replies acked/s", per_second(replies, began, ended)),
        ("web pages/s", per_second(pages, began, ended)),
    ]
    delivery: list[Series] = [("recipients/s", per_second(delivered, began, ended, weights))]
    memory: list[Series] = [
        ("serve RSS, MB", [((s.at - began) / 60, s.rss_mb) for s in samples if began <= s.at <= ended])
    ]
    titles = (
        "Posts acknowledged, notices received, replies acknowledged, web pages, per second",
        "Copies delivered to the sink, recipients per second",
        "serve's resident memory, MB",
    )
    for index, (title, series) in enumerate(zip(titles, (rates, delivery, memory), strict=True)):
        panel(pen, font, TOP + index * (PANEL_H + GAP), title, series, minutes, first_marks)
    plot_w = WIDTH - LEFT - RIGHT
    for row, (kind, minute) in enumerate(first_marks):
        x = LEFT + plot_w * minute / minutes
        pen.text((x + 3, TOP + 2 + 14 * row), kind, fill=(200, 30, 30), font=font)
    bottom = TOP + 2 * (PANEL_H + GAP) + PANEL_H
    for minute in range(int(minutes) + 1):
        x = LEFT + plot_w * minute / minutes
        pen.text((x, bottom + 6), str(minute), fill=AXIS, font=font, anchor="mt")
    pen.text((WIDTH - RIGHT + 10, bottom + 6), "minutes", fill=AXIS, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
