"""The monthly report's chart: posts and posters per month as a PNG bar chart, for mail clients that
show images but no SVG. Pillow is imported here, when a report is drawn, so that ``serve`` does not
load it while idle (most minutes of most months)."""

from __future__ import annotations

import io
from collections.abc import Sequence

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 56
COLOURS = ((11, 92, 173), (194, 87, 12))  # the dashboard's: posts, posters


def bars_png(labels: Sequence[str], series: Sequence[Sequence[int]]) -> bytes:
    """Grouped bars, one group per label, one bar per series, with the axis at 0, half and the top."""
    from PIL import Image, ImageDraw, ImageFont  # late: see the module's docstring

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    top = max((value for values in series for value in values), default=0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        draw.line([(LEFT, y), (WIDTH - RIGHT, y)], fill=(215, 220, 225))
        draw.text((LEFT - 8, y), f"{top * fraction:g}", fill=(85, 93, 102), font=font, anchor="rm")
    group_w = plot_w / max(len(labels), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for i, label in enumerate(labels):
        x0 = LEFT + i * group_w + group_w * 0.1
        for j, values in enumerate(series):
            height = plot_h * values[i] / top
            box = [x0 + j * bar_w, TOP + plot_h - height, x0 + (j + 1) * bar_w - 2, TOP + plot_h]
            draw.rectangle(box, fill=COLOURS[j % len(COLOURS)])
        draw.text(
            (LEFT + (i + 0.5) * group_w, HEIGHT - BOTTOM + 16),
            label,
            fill=(27, 31, 36),
            font=font,
            anchor="mm",
        )
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
