"""A bar chart drawn as inline SVG on the server: no chart library, no script, and it
passes the UI's strict Content-Security-Policy (no inline styles)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

_WIDTH, _HEIGHT = 720, 200
_LEFT, _BOTTOM, _TOP = 78, 24, 10


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket: its axis label, stacked parts ``(value, css class)`` and hover text."""

    label: str
    parts: tuple[tuple[float, str], ...]
    title: str

    @property
    def total(self) -> float:
        return sum(value for value, _ in self.parts)


def _nice_ceiling(value: float, least: float) -> float:
    """The axis top: 2, 4, 6, 8 or 10 times a power of ten, at or above ``value``, so
    that its half (the middle grid line) is a round number too."""
    value = max(value, least)
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    for factor in (2, 4, 6, 8, 10):
        if base * factor >= value * (1 - 1e-9):
            return base * factor
    return base * 10


def bar_chart(bars: Sequence[Bar], value_text: Callable[[float], str], label_every: int = 1,
              caption: str = "", least: float = 0.0) -> str:
    """The SVG markup (already escaped) of ``bars`` with a y axis labelled by ``value_text``;
    the axis reaches at least ``least`` (2 for counts keeps its middle line a whole number)."""
    top = _nice_ceiling(max((bar.total for bar in bars), default=0), least)
    plot_w, plot_h = _WIDTH - _LEFT - 8, _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / max(1, len(bars))
    out = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(caption)}" '
           f'preserveAspectRatio="xMidYMid meet">']
    for step in range(3):
        value = top * step / 2
        y = _TOP + plot_h - plot_h * step / 2
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(value_text(value))}</text>')
    for index, bar in enumerate(bars):
        x = _LEFT + index * slot + slot * 0.15
        width = max(1.0, slot * 0.7)
        base = _TOP + plot_h
        out.append(f'<g><title>{escape(bar.title)}</title>')
        out.append(f'<rect class="hover" x="{_LEFT + index * slot:.1f}" y="{_TOP}" width="{slot:.1f}" height="{plot_h}"/>')
        for value, css in bar.parts:
            height = plot_h * value / top if top else 0
            if height <= 0:
                continue
            base -= height
            out.append(f'<rect class="{escape(css)}" x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" '
                       f'height="{max(height, 0.5):.1f}"/>')
        out.append("</g>")
        if index % label_every == 0:
            out.append(f'<text class="axis" x="{x + width / 2:.1f}" y="{_HEIGHT - 6}" '
                       f'text-anchor="middle">{escape(bar.label)}</text>')
    out.append("</svg>")
    return "".join(out)
