"""Bar charts as SVG markup, drawn on the server: no script, no library, nothing fetched. Colours and
sizes are attributes, not ``style``, so the site's Content-Security-Policy (no inline styles) holds.
Every chart has a title and a text alternative, and the page shows the same figures in a table."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 40
COLOURS = (
    "#0b5cad",
    "#c2570c",
    "#1f6f43",
)  # WCAG AA against white, told apart without colour by the legend order


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def nice_ceiling(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at or above ``value`` (1 for an empty chart)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def bar_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    number: Callable[[float], str],
) -> Markup:
    """Grouped bars, one group per label (period), one bar per series; missing values draw nothing."""
    top = nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(labels), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-labelledby="{chart_id}-title" class="chart" id="{chart_id}" direction="ltr">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d7dce1"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555d66">'
            f"{escape(number(top * fraction))}</text>"
        )
    step = max(1, math.ceil(len(labels) / 12))  # at most 12 period names under the axis
    for i, label in enumerate(labels):
        x0 = LEFT + i * group_w + group_w * 0.1
        for j, one in enumerate(series):
            value = one.values[i]
            if value is None:
                continue
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[j % len(COLOURS)]}" data-value="{value:g}">'
                f"<title>{escape(label)} · {escape(one.name)}: {escape(number(value))}</title></rect>"
            )
        if i % step == 0:
            parts.append(
                f'<text x="{LEFT + (i + 0.5) * group_w:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                f'font-size="11" fill="#1b1f24">{escape(label)}</text>'
            )
    for j, one in enumerate(series if len(series) > 1 else ()):
        x = LEFT + j * 160
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{COLOURS[j % len(COLOURS)]}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#1b1f24">{escape(one.name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
