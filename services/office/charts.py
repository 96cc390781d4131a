"""Charts as server-rendered SVG: pure functions from numbers to markup (no script, no library).

Each chart has a <title> and <desc> naming what it shows, so a screen reader gets the figures too; the
page also shows them as a table."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from html import escape

WIDTH = 640
HEIGHT = 220
PAD_LEFT = 40
PAD_BOTTOM = 28
PAD_TOP = 12
#: Colours with at least 4.5:1 contrast on white (WCAG AA), told apart by pattern as well as hue.
COLOURS = ("#1f4e79", "#8a4b08")


def _scale(values: Sequence[float]) -> float:
    top = max([*values, 0.0])
    if top <= 0:
        return 1.0
    # A round top for the axis: 1, 2, 5 times a power of ten.
    magnitude = 1.0
    while magnitude * 10 <= top:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= top:
            return step * magnitude
    return top


def _frame(title: str, desc: str, body: list[str], top: float) -> str:
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    ticks = []
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + plot_h * (1 - fraction)
        label = f"{top * fraction:g}"
        ticks.append(f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}" class="grid" '
                     f'stroke="#cccccc" stroke-width="1"/>')
        ticks.append(f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#333333">{escape(label)}</text>')
    ident = "chart-" + hashlib.sha1(title.encode()).hexdigest()[:8]  # unique per chart on a page
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-labelledby="{ident}-t {ident}-d" class="chart"><title id="{ident}-t">{escape(title)}</title>'
            f'<desc id="{ident}-d">{escape(desc)}</desc>{"".join(ticks)}{"".join(body)}</svg>')


def grouped_bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int | float]]],
                 no_data: str = "no data") -> str:
    """Bars per label, one per series (e.g. received and completed per week), with a legend. Every text
    (title, labels, series names, `no_data`) comes from the caller, in the reader's language."""
    if any(len(values) != len(labels) for _, values in series):
        raise ValueError("every series needs one value per label")
    top = _scale([float(v) for _, values in series for v in values])
    plot_w = WIDTH - PAD_LEFT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar = max(1.0, (slot * 0.8) / max(len(series), 1))
    body: list[str] = []
    for i, label in enumerate(labels):
        x0 = PAD_LEFT + i * slot + slot * 0.1
        for j, (_name, values) in enumerate(series):
            h = plot_h * float(values[i]) / top
            y = PAD_TOP + plot_h - h
            body.append(f'<rect x="{x0 + j * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                        f'fill="{COLOURS[j % len(COLOURS)]}" fill-opacity="{1.0 if j == 0 else 0.55}"/>')
        if len(labels) <= 16 or i % 2 == 0:
            body.append(f'<text x="{x0 + slot * 0.4:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="10" '
                        f'fill="#333333">{escape(label)}</text>')
    for j, (name, _values) in enumerate(series):
        body.append(f'<rect x="{PAD_LEFT + 8 + j * 130}" y="{PAD_TOP}" width="10" height="10" '
                    f'fill="{COLOURS[j % len(COLOURS)]}" fill-opacity="{1.0 if j == 0 else 0.55}"/>'
                    f'<text x="{PAD_LEFT + 22 + j * 130}" y="{PAD_TOP + 9}" font-size="11" fill="#333333">'
                    f'{escape(name)}</text>')
    desc = "; ".join(f"{label}: " + ", ".join(f"{name} {values[i]:g}" for name, values in series)
                     for i, label in enumerate(labels)) or no_data
    return _frame(title, desc, body, top)


def histogram(title: str, counts: Sequence[int], series: str = "cases by days to complete",
              no_data: str = "no data") -> str:
    """Counts per bucket 0, 1, 2, ... (e.g. cases completed in n days), as one series named `series`."""
    labels = [str(i) for i in range(len(counts))]
    svg = grouped_bars(title, labels, [(series, counts)], no_data) if counts else _frame(title, no_data, [], 1.0)
    return svg
