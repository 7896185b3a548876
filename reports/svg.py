"""A small plotting module: inline SVG strings, no dependency, no external resource.

Each function returns one ``<svg>`` element sized in pixels. Marks carry a ``data-tip``
attribute (the page's script shows it as a tooltip) and a ``<title>`` (the browser's own
tooltip, and what a screen reader reads). Numbers are laid out on linear or log axes with
1-2-5 ticks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

PALETTE = [
    "#3366cc",
    "#dc7633",
    "#2e9e5b",
    "#9b59b6",
    "#c0392b",
    "#17a2b8",
    "#8d6e63",
    "#e91e63",
    "#607d8b",
    "#b7950b",
]
SHARE_COLOURS = {"npu": "#2e9e5b", "gpu": "#dc7633", "cpu": "#3366cc", "other": "#9e9e9e"}
CHANGE_COLOUR = "#c0392b"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
CHAR_W = 6.4  # average glyph width at 11px, for laying out labels


def _f(v: float) -> str:
    return f"{v:.1f}"


def fmt_number(v: float) -> str:
    if v != v:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _tip(text: str) -> str:
    t = escape(text, quote=True)
    return f' data-tip="{t}"'


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _line(x1: float, x2: float, y1: float, y2: float, stroke: str, extra: str = "") -> str:
    return (
        f'<line x1="{_f(x1)}" x2="{_f(x2)}" y1="{_f(y1)}" y2="{_f(y2)}" stroke="{stroke}"{extra}/>'
    )


def _text(x: float, y: float, text: str, anchor: str = "end", fill: str | None = "#444") -> str:
    """``text`` (escaped here) at (x, y), anchored at its ``anchor`` end."""
    colour = f' fill="{fill}"' if fill else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{colour}>{escape(text)}</text>'


@dataclass(frozen=True)
class Scale:
    """Maps data values onto a pixel range, linearly or on a log scale."""

    lo: float
    hi: float
    start: float
    end: float
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            v, lo, hi = math.log10(max(v, 1e-12)), math.log10(self.lo), math.log10(self.hi)
        else:
            lo, hi = self.lo, self.hi
        span = hi - lo or 1.0
        return self.start + (v - lo) / span * (self.end - self.start)

    def ticks(self, n: int = 6) -> list[float]:
        if self.log:
            out = []
            for e in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1):
                for m in (1, 2, 5):
                    v = m * 10.0**e
                    if self.lo <= v <= self.hi:
                        out.append(v)
            return out if len(out) >= 2 else [self.lo, self.hi]
        ticks = nice_ticks(self.lo, self.hi, n)
        while len(ticks) < 3 and n < 12:  # a narrow range: finer steps rather than one lonely tick
            n += 2
            ticks = nice_ticks(self.lo, self.hi, n)
        return ticks


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def padded_range(
    values: Sequence[float], log: bool = False, pad: float = 0.06
) -> tuple[float, float]:
    v = np.asarray([x for x in values if x == x and (x > 0 or not log)], dtype=np.float64)
    if not v.size:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        span = max(lhi - llo, 0.2)
        return 10 ** (llo - span * pad), 10 ** (lhi + span * pad)
    span = hi - lo or abs(hi) * 0.1 or 1.0
    return lo - span * pad, hi + span * pad


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{escape(label, quote=True)}" '
        f'style="{FONT};font-size:11px">' + "".join(body) + "</svg>"
    )


def _x_axis(scale: Scale, y: float, top: float, unit: str) -> list[str]:
    out = [_line(scale.start, scale.end, y, y, "#888")]
    for t in scale.ticks():
        x = scale(t)
        out.append(_line(x, x, top, y, "#e4e4e4"))
        out.append(_text(x, y + 14, fmt_number(t), "middle"))
    out.append(_text(scale.end, y + 27, unit))
    return out


def _y_axis(scale: Scale, x: float, right: float, unit: str) -> list[str]:
    out = [_line(x, x, scale.start, scale.end, "#888")]
    for t in scale.ticks(5):
        y = scale(t)
        out.append(_line(x, right, y, y, "#e4e4e4"))
        out.append(_text(x - 5, y + 4, fmt_number(t)))
    out.append(_text(x - 5, scale.end - 10, unit))
    return out


# -- box plots -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    label: str
    samples: Sequence[float]


def box_plot(
    boxes: Sequence[Box], title: str, unit: str = "ms", width: int = 640, max_points: int = 40
) -> str:
    """Horizontal box plots: box from p25 to p75, median line, p90 tick, whiskers to the last
    sample within 1.5 IQR, the most extreme samples beyond them as dots. A log axis when the
    medians span more than a factor of 8."""
    boxes = [b for b in boxes if len(b.samples)]
    left = min(max(120, 12 + CHAR_W * max((len(b.label) for b in boxes), default=10)), 330)
    row_h, top = 26, 28
    height = top + row_h * max(len(boxes), 1) + 54
    body = [f'<text x="8" y="16" font-weight="600" font-size="12px">{escape(title)}</text>']
    if not boxes:
        body.append(f'<text x="8" y="{top + 16}" fill="#666">no samples</text>')
        return _svg(width, height, body, title)
    arrays = [np.asarray(b.samples, dtype=np.float64) for b in boxes]
    medians = [float(np.median(a)) for a in arrays]
    log = max(medians) / max(min(medians), 1e-9) > 8
    values = [v for a in arrays for v in (a.min(), a.max())]
    scale = Scale(*padded_range(values, log=log), left, width - 16, log=log)
    bottom = top + row_h * len(boxes)
    body += _x_axis(scale, bottom + 4, top - 4, f"{unit}{' (log scale)' if log else ''}")
    for i, (b, a) in enumerate(zip(boxes, arrays, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        cy = top + row_h * i + row_h / 2
        q1, med, q3, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
        iqr = q3 - q1
        lo_w = float(a[a >= q1 - 1.5 * iqr].min())
        hi_w = float(a[a <= q3 + 1.5 * iqr].max())
        tip = (
            f"{b.label}: n={a.size}, p50 {fmt_number(med)} {unit}, p90 {fmt_number(p90)} {unit}, "
            f"p99 {fmt_number(p99)} {unit}, min {fmt_number(a.min())}, max {fmt_number(a.max())}"
        )
        body.append(_text(left - 6, cy + 4, b.label, fill=None))
        body.append(f'<g class="mark"{_tip(tip)}>{_title(tip)}')
        body.append(_line(scale(lo_w), scale(hi_w), cy, cy, colour))
        for w in (lo_w, hi_w):
            body.append(_line(scale(w), scale(w), cy - 5, cy + 5, colour))
        box_w = max(scale(q3) - scale(q1), 1)
        body.append(
            f'<rect x="{_f(scale(q1))}" y="{_f(cy - 8)}" width="{_f(box_w)}" '
            f'height="16" fill="{colour}" fill-opacity="0.25" stroke="{colour}"/>'
        )
        body.append(_line(scale(med), scale(med), cy - 8, cy + 8, colour, ' stroke-width="2.5"'))
        body.append(f'<path d="M{_f(scale(p90))},{_f(cy - 11)} l-4,-5 h8 z" fill="{colour}"/>')
        beyond = a[(a < lo_w) | (a > hi_w)]
        if beyond.size > max_points:  # the most extreme ones tell the story
            beyond = np.sort(beyond)[-max_points:]
        for v in beyond:
            body.append(
                f'<circle cx="{_f(scale(v))}" cy="{_f(cy)}" r="1.8" fill="{colour}" '
                'fill-opacity="0.6"/>'
            )
        body.append("</g>")
    body.append(
        f'<text x="8" y="{height - 4}" fill="#666">box: p25-p75, '
        f"bar: median, triangle: p90, whiskers: 1.5 IQR</text>"
    )
    return _svg(width, height, body, title)


# -- latency vs accuracy -------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    group: str = ""


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Points no other point beats on both lower x and higher y, by increasing x."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.x, -p.y)):
        if not front or p.y > front[-1].y:
            front.append(p)
    return front


def pareto_plot(
    points: Sequence[Point],
    title: str,
    x_unit: str,
    y_unit: str,
    width: int = 560,
    height: int = 300,
) -> str:
    """Scatter of latency (x, log axis when wide) against accuracy (y), the Pareto front as a
    step line, front points ringed, colours by group."""
    body = [f'<text x="8" y="16" font-weight="600" font-size="12px">{escape(title)}</text>']
    pts = [p for p in points if p.x == p.x and p.y == p.y and p.x > 0]
    if not pts:
        body.append(
            '<text x="8" y="40" fill="#666">no cell has both a latency and an accuracy</text>'
        )
        return _svg(width, 60, body, title)
    left, right, top, bottom = 58, width - 16, 40, height - 52
    xs = [p.x for p in pts]
    log = max(xs) / min(xs) > 8
    sx = Scale(*padded_range(xs, log=log, pad=0.1), left, right, log=log)
    sy = Scale(*padded_range([p.y for p in pts], pad=0.15), bottom, top)
    body += _x_axis(sx, bottom, top, f"{x_unit}{' (log scale)' if log else ''}")
    body += _y_axis(sy, left, right, y_unit)
    front = pareto_front(pts)
    if len(front) > 1:
        d = f"M{_f(sx(front[0].x))},{_f(sy(front[0].y))}"
        for p in front[1:]:
            d += f" H{_f(sx(p.x))} V{_f(sy(p.y))}"
        body.append(f'<path d="{d}" fill="none" stroke="#333" stroke-dasharray="4 3"/>')
    groups = list(dict.fromkeys(p.group for p in pts))
    on_front = {id(p) for p in front}
    labelled: list[tuple[float, float]] = []
    for p in pts:
        colour = PALETTE[groups.index(p.group) % len(PALETTE)]
        tip = f"{p.label}: {fmt_number(p.x)} {x_unit}, {y_unit} {p.y:.4f}" + (
            " (Pareto front)" if id(p) in on_front else ""
        )
        ring = ' stroke="#111" stroke-width="1.5"' if id(p) in on_front else ""
        x, y = sx(p.x), sy(p.y)
        body.append(
            f'<circle class="mark" cx="{_f(x)}" cy="{_f(y)}" r="5" fill="{colour}"{ring}'
            f"{_tip(tip)}>{_title(tip)}</circle>"
        )
        # label front points where there is room; tooltips name them all
        crowded = any(abs(x - lx) < 90 and abs(y - ly) < 12 for lx, ly in labelled)
        if id(p) in on_front and not crowded:
            labelled.append((x, y))
            anchor, dx = ("end", -8) if x > left + (right - left) * 0.6 else ("start", 8)
            body.append(
                f'<text x="{_f(x + dx)}" y="{_f(y - 7)}" text-anchor="{anchor}" fill="#333" '
                f'font-size="10px">{escape(p.label)}</text>'
            )
    x = left
    for i, g in enumerate(groups):  # legend under the axis
        if not g:
            continue
        colour = PALETTE[i % len(PALETTE)]
        body.append(f'<rect x="{_f(x)}" y="{height - 14}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{_f(x + 14)}" y="{height - 5}">{escape(g)}</text>')
        x += 24 + CHAR_W * len(g)
    return _svg(width, height, body, title)


# -- stacked bars --------------------------------------------------------------------------


def stacked_bars(rows: Sequence[tuple[str, dict[str, float]]], title: str, width: int = 900) -> str:
    """One horizontal bar per row, its segments (fractions of 1) stacked in SHARE_COLOURS order."""
    left = min(max(120, 12 + CHAR_W * max((len(r[0]) for r in rows), default=10)), 330)
    top, row_h = 30, 22
    height = top + row_h * max(len(rows), 1) + 44
    body = [f'<text x="8" y="16" font-weight="600" font-size="12px">{escape(title)}</text>']
    scale = Scale(0.0, 1.0, left, width - 16)
    bottom = top + row_h * len(rows)
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = scale(t)
        body.append(_line(x, x, top - 4, bottom, "#e4e4e4"))
        body.append(_text(x, bottom + 14, f"{t:.0%}", "middle"))
    for i, (label, shares) in enumerate(rows):
        y = top + row_h * i
        body.append(_text(left - 6, y + row_h / 2 + 4, label, fill=None))
        x0 = 0.0
        for unit, colour in SHARE_COLOURS.items():
            v = float(shares.get(unit, 0.0) or 0.0)
            if v <= 0:
                continue
            tip = f"{label}: {unit.upper()} {v:.0%}"
            seg_w = scale(x0 + v) - scale(x0)
            body.append(
                f'<rect class="mark" x="{_f(scale(x0))}" y="{_f(y + 3)}" width="{_f(seg_w)}" '
                f'height="{row_h - 6}" fill="{colour}"{_tip(tip)}>{_title(tip)}</rect>'
            )
            x0 += v
    x = left
    for unit, colour in SHARE_COLOURS.items():
        body.append(f'<rect x="{_f(x)}" y="{height - 14}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{_f(x + 14)}" y="{height - 5}">{unit.upper()}</text>')
        x += 60
    return _svg(width, height, body, title)


# -- trends --------------------------------------------------------------------------------


def trend_plot(
    run_labels: Sequence[str],
    positions: Sequence[int],
    p50: Sequence[float],
    p90: Sequence[float],
    changes: Sequence[tuple[int, str]],
    title: str,
    n_runs: int,
    unit: str = "ms",
    width: int = 420,
    height: int = 172,
) -> str:
    """p50 (line) and p90 (faint line) per run at ``positions`` (0..n_runs-1); each change
    (position, text) marked with a red dashed line and a triangle. ``title`` may hold line
    breaks."""
    lines = title.split("\n")
    left, right, bottom = 46, width - 10, height - 22
    top = 22 + 13 * len(lines)
    fits = int((width - 12) / 6.2)
    body = [
        f'<text x="6" y="{14 + 13 * i}" font-weight="600" font-size="11px">'
        f"{escape(line if len(line) <= fits else line[: fits - 1] + '…')}</text>"
        for i, line in enumerate(lines)
    ]
    sx = Scale(-0.5, max(n_runs - 0.5, 0.5), left, right)
    sy = Scale(*padded_range([*p50, *p90], pad=0.1), bottom, top)
    body += [_line(left, right, bottom, bottom, "#888")]
    for t in sy.ticks(4):
        y = sy(t)
        body.append(_line(left, right, y, y, "#eee"))
        body.append(_text(left - 4, y + 4, fmt_number(t)))
    body.append(_text(left - 4, top - 10, unit))
    room = (
        int((right - left) / 2 / 6.0) - 1
    )  # first and last run id share the axis: keep their ends

    def tail(text: str) -> str:
        return text if len(text) <= room else "…" + text[-(room - 1) :]

    if run_labels:
        body.append(
            f'<text x="{left}" y="{height - 6}" fill="#666">{escape(tail(run_labels[0]))}</text>'
        )
        body.append(
            f'<text x="{right}" y="{height - 6}" text-anchor="end" fill="#666">'
            f"{escape(tail(run_labels[-1]))}</text>"
        )
    for pos, text in changes:
        x = sx(pos - 0.5)
        dashed = _line(
            x, x, top, bottom, CHANGE_COLOUR, ' stroke-dasharray="4 3" stroke-width="1.5"'
        )
        body.append(
            f'<g class="mark change"{_tip(text)}>{_title(text)}{dashed}'
            f'<path d="M{_f(x)},{top - 1} l-5,-7 h10 z" fill="{CHANGE_COLOUR}"/></g>'
        )
    for series, colour, w in ((p90, "#9bb3e0", 1.2), (p50, PALETTE[0], 2.0)):
        pts = " ".join(
            f"{_f(sx(p))},{_f(sy(v))}" for p, v in zip(positions, series, strict=True) if v == v
        )
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{w}"/>')
    for p, v, v90, lab in zip(positions, p50, p90, run_labels, strict=True):
        tip = f"{lab}: p50 {fmt_number(v)} {unit}, p90 {fmt_number(v90)} {unit}"
        body.append(
            f'<circle class="mark" cx="{_f(sx(p))}" cy="{_f(sy(v))}" r="2.6" fill="{PALETTE[0]}"'
            f"{_tip(tip)}>{_title(tip)}</circle>"
        )
    return _svg(width, height, body, title)
