"""Small SVG charts for reports, drawn with no plotting library.

The Prefect UI renders markdown images whose source is a ``data:`` URI (it
strips inline ``<svg>``), so every chart is returned as SVG text and embedded
with :func:`image_markdown`. Charts are deterministic (same input, same
bytes) and carry a ``<title>`` for screen readers.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Sequence

# Colour-blind-safe pair (Okabe-Ito): challenger/patients blue, champion/controls orange.
BLUE, ORANGE, GREY, RED = "#0072B2", "#E69F00", "#999999", "#D55E00"
W, H = 420, 300
PAD_L, PAD_R, PAD_T, PAD_B = 52, 14, 30, 44


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = BLUE
    dashed: bool = False


@dataclass(frozen=True)
class Band:
    xs: Sequence[float]
    lo: Sequence[float]
    hi: Sequence[float]
    color: str = BLUE


def image_markdown(svg: str, alt: str) -> str:
    """A markdown image of ``svg`` as a base64 data URI (what the Prefect UI draws)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"![{html.escape(alt, quote=True)}](data:image/svg+xml;base64,{data})"


class _Canvas:
    """Axes mapping data coordinates into the plot area of one chart."""

    def __init__(self, title: str, x_range: tuple[float, float], y_range: tuple[float, float], width: int = W, height: int = H):
        self.title, self.w, self.h = title, width, height
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range if y_range[1] > y_range[0] else (y_range[0], y_range[0] + 1.0)
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1.0
        self.parts: list[str] = []

    def px(self, x: float) -> float:
        return PAD_L + (x - self.x0) / (self.x1 - self.x0) * (self.w - PAD_L - PAD_R)

    def py(self, y: float) -> float:
        return self.h - PAD_B - (y - self.y0) / (self.y1 - self.y0) * (self.h - PAD_T - PAD_B)

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(self, x: float, y: float, s: str, *, size: int = 11, anchor: str = "middle", color: str = "#333", rotate: bool = False) -> None:
        rot = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}"{rot}>{html.escape(s)}</text>')

    def axes(self, x_label: str, y_label: str, x_ticks: Sequence[float], y_ticks: Sequence[float], fmt: str = "{:g}") -> None:
        left, bottom = PAD_L, self.h - PAD_B
        for t in y_ticks:
            y = self.py(t)
            self.add(f'<line x1="{left}" y1="{y:.1f}" x2="{self.w - PAD_R}" y2="{y:.1f}" stroke="#eee"/>')
            self.text(left - 6, y + 4, fmt.format(t), size=10, anchor="end")
        for t in x_ticks:
            x = self.px(t)
            self.add(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#666"/>')
            self.text(x, bottom + 16, fmt.format(t), size=10)
        self.add(f'<line x1="{left}" y1="{bottom}" x2="{self.w - PAD_R}" y2="{bottom}" stroke="#666"/>')
        self.add(f'<line x1="{left}" y1="{PAD_T}" x2="{left}" y2="{bottom}" stroke="#666"/>')
        self.text((left + self.w - PAD_R) / 2, self.h - 8, x_label)
        self.text(14, (PAD_T + bottom) / 2, y_label, rotate=True)

    def polyline(self, xs: Sequence[float], ys: Sequence[float], color: str, *, dashed: bool = False, width: float = 2.0) -> None:
        pts = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(xs, ys))
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.add(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>')

    def band(self, band: Band) -> None:
        upper = [f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(band.xs, band.hi)]
        lower = [f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in zip(reversed(band.xs), reversed(band.lo))]
        self.add(f'<polygon points="{" ".join(upper + lower)}" fill="{band.color}" fill-opacity="0.18" stroke="none"/>')

    def legend(self, entries: Sequence[tuple[str, str]], x: float | None = None, y: float | None = None) -> None:
        x = self.w - PAD_R - 150 if x is None else x
        y = self.h - PAD_B - 14 * len(entries) - 6 if y is None else y
        for i, (label, color) in enumerate(entries):
            yy = y + 14 * i
            self.add(f'<rect x="{x:.1f}" y="{yy - 8:.1f}" width="10" height="10" fill="{color}"/>')
            self.text(x + 14, yy + 1, label, size=10, anchor="start")

    def svg(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" viewBox="0 0 {self.w} {self.h}" '
            f'font-family="Helvetica, Arial, sans-serif"><title>{html.escape(self.title)}</title>'
            f'<rect width="100%" height="100%" fill="white"/>'
        )
        self.text(self.w / 2, 18, self.title, size=13, color="#111")
        return head + "".join(self.parts) + "</svg>"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / (n - 1)
    return [round(lo + i * step, 10) for i in range(n)]


def roc_chart(title: str, curves: Sequence[Series], bands: Sequence[Band] = ()) -> str:
    """ROC curves (false-positive rate -> true-positive rate) with optional interval bands and the chance line."""
    c = _Canvas(title, (0.0, 1.0), (0.0, 1.0))
    c.axes("false-positive rate (1 - specificity)", "true-positive rate (sensitivity)", _ticks(0, 1, 6), _ticks(0, 1, 6))
    c.polyline([0, 1], [0, 1], GREY, dashed=True, width=1.0)
    for band in bands:
        c.band(band)
    for s in curves:
        c.polyline(s.xs, s.ys, s.color, dashed=s.dashed)
    c.legend([(s.label, s.color) for s in curves])
    return c.svg()


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str) -> str:
    """Lines over a shared x axis (e.g. losses per epoch); missing or non-finite points are left out."""
    series = [Series(s.label, *zip(*pts), s.color, s.dashed) if (pts := [(x, y) for x, y in zip(s.xs, s.ys) if _finite(x) and _finite(y)])
              else Series(s.label, [], [], s.color, s.dashed) for s in series]
    xs = [x for s in series for x in s.xs] or [0.0, 1.0]
    ys = [y for s in series for y in s.ys] or [0.0, 1.0]
    lo, hi = min(0.0, min(ys)), max(ys) * 1.05 or 1.0
    c = _Canvas(title, (min(xs), max(xs)), (lo, hi))
    c.axes(x_label, y_label, _ticks(min(xs), max(xs), min(6, len(set(xs))) or 2), _ticks(lo, hi), fmt="{:.3g}")
    for s in series:
        c.polyline(s.xs, s.ys, s.color, dashed=s.dashed)
    c.legend([(s.label, s.color) for s in series], y=PAD_T + 10)
    return c.svg()


def histogram_chart(title: str, edges: Sequence[float], groups: Sequence[tuple[str, Sequence[float], str]],
                    x_label: str = "predicted probability of patient", y_label: str = "files") -> str:
    """Counts (or shares) per bin for each group, drawn side by side within each bin; a threshold-free view of separation."""
    top = max([max(counts) for _, counts, _ in groups if len(counts)] or [1]) or 1
    c = _Canvas(title, (edges[0], edges[-1]), (0.0, top * 1.1))
    c.axes(x_label, y_label, _ticks(edges[0], edges[-1], 6), _ticks(0, top * 1.1, 5), fmt="{:.3g}")
    k = max(1, len(groups))
    for g, (_, counts, color) in enumerate(groups):
        for lo, hi, n in zip(edges[:-1], edges[1:], counts):
            if n <= 0:
                continue
            x0 = c.px(lo) + (c.px(hi) - c.px(lo)) * g / k
            width = (c.px(hi) - c.px(lo)) / k
            c.add(f'<rect x="{x0:.1f}" y="{c.py(n):.1f}" width="{max(width - 0.5, 0.5):.1f}" height="{c.py(0) - c.py(n):.1f}" fill="{color}" fill-opacity="0.85"/>')
    c.legend([(label, color) for label, _, color in groups], y=PAD_T + 10)
    return c.svg()


def confusion_chart(title: str, tn: int, fp: int, fn: int, tp: int) -> str:
    """The 2x2 confusion matrix as shaded cells with counts."""
    size, left, top = 110, 150, 50
    c = _Canvas(title, (0, 1), (0, 1), width=left + 2 * size + 30, height=top + 2 * size + 50)
    total = max(1, tn + fp + fn + tp)
    cells = [("control", "control", tn, True), ("control", "patient", fp, False), ("patient", "control", fn, False), ("patient", "patient", tp, True)]
    for i, (actual, predicted, n, right) in enumerate(cells):
        x, y = left + size * (i % 2), top + size * (i // 2)
        shade = 0.15 + 0.75 * n / total
        color = BLUE if right else RED
        c.add(f'<rect x="{x}" y="{y}" width="{size - 4}" height="{size - 4}" fill="{color}" fill-opacity="{shade:.2f}"/>')
        c.text(x + size / 2 - 2, y + size / 2 + 6, str(n), size=20, color="#111")
    for j, label in enumerate(("control", "patient")):
        c.text(left + size * j + size / 2, top - 8, f"predicted {label}", size=11)
        c.text(left - 8, top + size * j + size / 2 + 4, f"actual {label}", size=11, anchor="end")
    return c.svg()


def interval_chart(title: str, rows: Sequence[tuple[str, float | None, float | None, float | None]], floor: float | None = None, x_label: str = "balanced accuracy") -> str:
    """One row per group: the value as a dot and its interval as a whisker; an optional floor line."""
    height = PAD_T + PAD_B + 22 * max(1, len(rows))
    left = 170
    c = _Canvas(title, (0.0, 1.0), (0.0, float(len(rows) or 1)), width=W + 80, height=height)
    scale = lambda v: left + v * (c.w - left - PAD_R)  # noqa: E731 - a local axis mapping
    for t in _ticks(0, 1, 6):
        c.add(f'<line x1="{scale(t):.1f}" y1="{PAD_T}" x2="{scale(t):.1f}" y2="{height - PAD_B}" stroke="#eee"/>')
        c.text(scale(t), height - PAD_B + 16, f"{t:g}", size=10)
    if floor is not None:
        c.add(f'<line x1="{scale(floor):.1f}" y1="{PAD_T}" x2="{scale(floor):.1f}" y2="{height - PAD_B}" stroke="{RED}" stroke-dasharray="4 3"/>')
        c.text(scale(floor) + 3, PAD_T + 8, f"floor {floor:g}", size=10, anchor="start", color=RED)
    for i, (label, value, lo, hi) in enumerate(rows):
        y = PAD_T + 22 * i + 14
        c.text(left - 8, y + 4, label, size=10, anchor="end")
        if lo is not None and hi is not None:
            c.add(f'<line x1="{scale(lo):.1f}" y1="{y}" x2="{scale(hi):.1f}" y2="{y}" stroke="{BLUE}" stroke-width="2"/>')
        if value is not None:
            c.add(f'<circle cx="{scale(value):.1f}" cy="{y}" r="4" fill="{BLUE}"/>')
        else:
            c.text(left + 6, y + 4, "not defined (one class)", size=10, anchor="start", color=GREY)
    c.text((left + c.w - PAD_R) / 2, height - 8, x_label)
    return c.svg()
