"""Tiny inline-SVG time-series charts for self-contained HTML reports (no plotting library).

>>> from datetime import datetime, timedelta, UTC
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> svg = chart("demo", [Series("x", [(t0, 1.0), (t0 + timedelta(minutes=5), 3.0)])])
>>> svg.startswith("<svg") and "<polyline" in svg and "demo" in svg
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]


@dataclass
class Series:
    """A line; ``band`` adds a shaded interval (lower, upper) at the same times."""

    name: str
    points: list[tuple[datetime, float]]
    color: str | None = None
    dashed: bool = False
    band: list[tuple[datetime, float, float]] = field(default_factory=list)


@dataclass
class Span:
    """A shaded time interval (an alert, a fault) with a label."""

    start: datetime
    end: datetime
    label: str
    color: str = "#d62728"
    row: int = 0  # spans on separate rows do not overlap (0 = full height)


def chart(
    title: str,
    series: list[Series],
    spans: list[Span] | None = None,
    *,
    width: int = 900,
    height: int = 220,
    t_range: tuple[datetime, datetime] | None = None,
    y_label: str = "",
) -> str:
    """An SVG line chart with time on x; spans are drawn behind the lines."""
    spans = spans or []
    pad_l, pad_r, pad_t, pad_b = 60, 150, 24, 28
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    times = [t for s in series for t, _ in s.points] + [t for s in series for t, _, _ in s.band]
    times += [sp.start for sp in spans] + [sp.end for sp in spans]
    values = [v for s in series for _, v in s.points] + [v for s in series for _, lo, hi in s.band for v in (lo, hi)]
    t0, t1 = t_range or ((min(times), max(times)) if times else (None, None))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{pad_l}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if t0 is None or t1 is None or (not values and not spans):
        out.append(f'<text x="{pad_l}" y="{pad_t + ph / 2}" font-size="12" fill="#888">no data</text></svg>')
        return "".join(out)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    margin = (hi - lo) * 0.05
    lo, hi = lo - margin, hi + margin
    span_s = max((t1 - t0).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return pad_l + pw * min(max((t - t0).total_seconds() / span_s, 0.0), 1.0)

    def y(v: float) -> float:
        return pad_t + ph * (1 - (v - lo) / (hi - lo))

    out.append(f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
    rows = max((sp.row for sp in spans), default=0)
    for sp in spans:
        if sp.row == 0:
            top, h = pad_t, ph
        else:
            h = ph / rows
            top = pad_t + (sp.row - 1) * h
        w = max(x(sp.end) - x(sp.start), 1.5)
        out.append(
            f'<rect x="{x(sp.start):.1f}" y="{top:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="{sp.color}" fill-opacity="0.18"><title>{escape(sp.label)}</title></rect>'
        )
        out.append(
            f'<text x="{x(sp.start) + 2:.1f}" y="{top + 11:.1f}" font-size="10" fill="{sp.color}">'
            f"{escape(sp.label[:40])}</text>"
        )
    for i in range(5 if values else 0):  # y grid and labels
        v = lo + (hi - lo) * i / 4
        out.append(f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{pad_l - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.3g}</text>')
    for i in range(6):  # time labels
        t = t0 + (t1 - t0) * (i / 5)
        out.append(
            f'<text x="{x(t):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
            f"{t.strftime('%m-%d %H:%M')}</text>"
        )
    if y_label:
        out.append(
            f'<text x="12" y="{pad_t + ph / 2}" font-size="10" transform="rotate(-90 12 {pad_t + ph / 2})">'
            f"{escape(y_label)}</text>"
        )
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        if s.band:
            upper = " ".join(f"{x(t):.1f},{y(h):.1f}" for t, _, h in s.band)
            lower = " ".join(f"{x(t):.1f},{y(lo_):.1f}" for t, lo_, _ in reversed(s.band))
            out.append(f'<polygon points="{upper} {lower}" fill="{color}" fill-opacity="0.2" stroke="none"/>')
        if s.points:
            pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s.points)
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>')
        ly = pad_t + 12 + 14 * i
        out.append(
            f'<line x1="{width - pad_r + 8}" x2="{width - pad_r + 24}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        out.append(f'<text x="{width - pad_r + 28}" y="{ly}" font-size="11">{escape(s.name[:18])}</text>')
    out.append("</svg>")
    return "".join(out)
