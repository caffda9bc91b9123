"""The report's charts as inline SVG strings, from small string templates: four fixed
chart shapes do not need a plotting library, and the report stays self-contained.

Each function returns one `<svg class="chart ...">` as `markupsafe.Markup`, safe to put
in a template unescaped because all text from data goes through `markupsafe.escape`
(`_e`, `_text`). `role="img"`, a `<title>`, a `viewBox` and `width="100%"`: charts scale
and read out as one image. Colours come from CSS classes (report.css); `fill`/`stroke`
attributes are a fallback for a chart saved on its own (CSS beats them). No JavaScript,
no `id`s (several charts share a page: arrowheads are polygons, not <marker>s), no
randomness: same input, same bytes. Numbers as text are `f"{x:.3g}"`; records spell
non-finite floats as the strings "inf"/"nan", hence `float()` on every value.
"""

from __future__ import annotations

import math
import re

import numpy as np
from markupsafe import Markup, escape

from crossbn.records.results import number

NAN = float("nan")
# fallback fills of the 8 cycling series classes s0..s7 (Tableau 10, colour-blind friendly)
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#e15759")
# fallback (fill, stroke) per verdict class: report.css's --<verdict>-bg and --<verdict>
VERDICT_COLOURS = {
    "match": ("#e8f5e9", "#2e7d32"),
    "convention": ("#e3f2fd", "#1565c0"),
    "deviation": ("#ffebee", "#c62828"),
    "nan-mismatch": ("#f3e5f5", "#6a1b9a"),
    "none": ("#ffffff", "#9e9e9e"),
}
RED, EDGE = "#c62828", "#757575"
_DASHED = ' stroke-width="2" stroke-dasharray="6 3"'


# ---- shared pieces ----------------------------------------------------------------------------


def esc(x) -> str:
    """Escaped text as a plain str (`Markup + str` would escape the str again; f-strings do not)."""
    return str(escape(x))


def coord(v: float) -> str:
    """A coordinate: one decimal keeps the output small and byte-stable."""
    return f"{v:.1f}"


def token(s) -> str:
    """A CSS class token from data (a verdict, an op): no quote or space gets through."""
    return re.sub(r"[^a-z0-9_-]+", "-", str(s).lower()).strip("-") or "unknown"


def text(x: float, y: float, s, cls: str = "", anchor: str = "start", size: float = 0, room: int = 0) -> str:
    """Escaped text; longer than `room` characters: cut with "…", the whole as a tooltip."""
    if room and len(str(s)) > room:
        return f"<g><title>{esc(s)}</title>{text(x, y, str(s)[: room - 1] + '…', cls, anchor, size)}</g>"
    c = f' class="{cls}"' if cls else ""
    fs = f' font-size="{size:g}"' if size else ""
    return f'<text x="{coord(x)}" y="{coord(y)}" text-anchor="{anchor}"{c}{fs}>{esc(s)}</text>'


def line(x1, y1, x2, y2, cls: str, stroke: str = "#9e9e9e", extra: str = "") -> str:
    return (
        f'<line class="{cls}" x1="{coord(x1)}" y1="{coord(y1)}" x2="{coord(x2)}" y2="{coord(y2)}" '
        f'stroke="{stroke}"{extra}/>'
    )


def root(kind: str, width: float, height: float, title: str, body: list[str], extra: str = "") -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" role="img" '
        f'viewBox="0 0 {width:g} {height:g}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'font-family="sans-serif" font-size="11"{extra}><title>{esc(title)}</title>' + "".join(body) + "</svg>"
    )


def empty(kind: str, title: str, width: float = 900) -> Markup:
    """The chart's frame with "no data": the page keeps its layout and says why it is blank."""
    return root(kind, width, 40, title, [text(width / 2, 24, "no data", "no-data", "middle")])


def _jitter(i: int) -> float:
    """In [-1, 1) from a hash of the index (Knuth's multiplicative hash): spread like
    noise, yet the same index always lands in the same place."""
    return ((i * 2654435761) % 2**32) / 2**31 - 1.0


def _check_bound(bound: float) -> float:
    bound = float(bound)
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a positive finite number, got {bound!r}")
    return bound


def arrowhead(x1, y1, x2, y2) -> str:
    """A filled triangle at (x2, y2) pointing along (x1, y1) -> (x2, y2)."""
    d = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / d, (y2 - y1) / d
    bx, by = x2 - 7 * ux, y2 - 7 * uy
    pts = [(x2, y2), (bx - 3.5 * uy, by + 3.5 * ux), (bx + 3.5 * uy, by - 3.5 * ux)]
    return f'<polygon class="arrowhead" points="{" ".join(f"{coord(a)},{coord(b)}" for a, b in pts)}" fill="{EDGE}"/>'


def _log_axis(lo: int, hi: int, at, a: float, b: float, vertical: bool) -> str:
    """Decade grid lines, ticks and "1e<d>" labels (even decades only on wide axes). Vertical:
    the axis is at x=a, grid lines run to x=b; horizontal: grid from y=a to the axis at y=b."""
    step, out = (1 if hi - lo <= 12 else 2), []
    for d in range(lo, hi + 1):
        p = at(10.0**d)
        if vertical:
            out += [line(a, p, b, p, "grid-line", "#eeeeee"), line(a - 4, p, a, p, "tick")]
            label = text(a - 6, p + 4, f"1e{d}", "tick-label", "end")
        else:
            out += [line(p, a, p, b, "grid-line", "#eeeeee"), line(p, b, p, b + 4, "tick")]
            label = text(p, b + 16, f"1e{d}", "tick-label", "middle")
        out += [label] if d % step == 0 else []
    p0, p1 = at(10.0**lo), at(10.0**hi)
    out.append(line(a, p0, a, p1, "axis") if vertical else line(p0, b, p1, b, "axis"))
    return "".join(out)


def _decades(values: list[float], floor: int, lowest: int, top_at_least: int) -> tuple[int, int]:
    """A log axis's (first, last) decade: from `floor`, lower (not below `lowest`) when small
    values need it, to the decade above the largest finite value, at least `top_at_least`
    and at most 1e16, so one absurd value does not squash the rest."""
    pos = [v for v in values if math.isfinite(v) and v > 0]
    lo = max(min([floor] + [math.floor(math.log10(v)) for v in pos]), lowest)
    return lo, min(max([math.ceil(math.log10(v)) for v in pos] + [top_at_least, lo + 1]), 16)


# ---- 1. distribution of error/bound ratios ----------------------------------------------------

FLOOR_DECADE = -6  # ratios at or below 1e-6 are "exact enough"; 0 and negatives sit here


def ratio_distribution(rows: list[tuple], *, bound: float = 1.0) -> Markup:
    """Error/bound ratios per backend on a log10 x axis (1e-6 .. a decade chosen from the data).

    One row per (label, ratios) or (label, ratios, links): a dot per non-NaN ratio ("dot ok"
    at or under the bound, "dot over" above it, plus "clipped" when inf or beyond the axis),
    jittered vertically by a hash of its index; ratios <= 1e-6 (0, negatives) sit at the left
    edge. links[i], when given and not None, is (href, tooltip): dot i is then an <a> to it
    ("point-link"). A quartile box ("box") and median ("median") of the finite ratios, and
    "n=…, over bound: k" on the right (", NaN: m" when some were NaN and so not drawn). A
    dashed "bound-line" at x=bound.
    """
    bound = _check_bound(bound)
    title = "Distribution of error/bound ratios per backend"
    data = [(str(row[0]), [number(r) for r in row[1]], list(row[2]) if len(row) > 2 else []) for row in rows]
    if not data:
        return empty("ratio-distribution", title)
    # right edge at least 1e2 (room right of the bound) and at least the bound's decade
    lo, hi = _decades(
        [r for _, rs, _ in data for r in rs], FLOOR_DECADE, FLOOR_DECADE, max(2, math.ceil(math.log10(bound)))
    )
    left, plot_w, top, row_h = 160.0, 540.0, 26.0, 30.0  # 200 units on the right for the notes
    bottom = top + row_h * len(data)

    def x_of(r: float) -> float:
        dec = math.log10(r) if r > 0 else lo  # 0 and negatives: the floor
        return left + (min(max(dec, lo), hi) - lo) / (hi - lo) * plot_w

    body = [
        _log_axis(lo, hi, x_of, top, bottom, vertical=False),
        text(left + plot_w, bottom + 30, "error / bound (log scale)", "axis-label", "end"),
    ]
    body += [
        _distribution_row(label, ratios, top + k * row_h + row_h / 2, x_of, hi, bound, links)
        for k, (label, ratios, links) in enumerate(data)
    ]
    xb = x_of(bound)
    body += [
        line(xb, top - 8, xb, bottom, "bound-line", RED, _DASHED),
        text(xb, top - 12, "bound", "bound-label", "middle"),
    ]
    return root("ratio-distribution", 900, bottom + 36, title, body)


def _distribution_row(label: str, ratios: list[float], mid: float, x_of, hi: int, bound: float, links=()) -> str:
    out = [text(8, mid + 4, label, "row-label", room=26)]
    finite = [r for r in ratios if math.isfinite(r)]
    if finite:  # the box first: dots paint over it
        x1, xm, x3 = (x_of(float(q)) for q in np.percentile(finite, [25, 50, 75]))
        out.append(
            f'<rect class="box" x="{coord(x1)}" y="{coord(mid - 8)}" width="{coord(max(x3 - x1, 1))}" '
            f'height="16" fill="none" stroke="#424242"/>'
        )
        out.append(line(xm, mid - 10, xm, mid + 10, "median", "#000000", ' stroke-width="2"'))
    n = over = nans = 0
    for i, r in enumerate(ratios):
        if math.isnan(r):
            nans += 1
            continue
        n, over = n + 1, over + (r > bound)
        clipped = r > 10.0**hi  # inf, or off the right edge
        cls = ("dot over" if r > bound else "dot ok") + (" clipped" if clipped else "")
        fill = "#8d2a00" if clipped else RED if r > bound else "#2e7d32"
        dot = (
            f'<circle class="{cls}" cx="{coord(x_of(r))}" cy="{coord(mid + _jitter(i) * 11)}" '
            f'r="2.5" fill="{fill}" fill-opacity="0.7"/>'
        )
        link = links[i] if i < len(links) else None
        if link:  # a finding: the dot opens its page
            dot = f'<a class="point-link" href="{esc(link[0])}"><title>{esc(link[1])}</title>{dot}</a>'
        out.append(dot)
    note = f"n={n}, over bound: {over}" + (f", NaN: {nans}" if nans else "")
    out.append(text(x_of(10.0**hi) + 12, mid + 4, note, "row-note"))
    return "".join(out)


# ---- 2. per-channel errors --------------------------------------------------------------------

MAX_BARS = 256  # channel slots; beyond this, consecutive channels share a bar (their max)


def _bucket(values: list[float | None], size: int) -> list[float | None]:
    """Max over each run of `size` channels; NaN wins (the worse failure), None (not
    available) only when the whole run is None."""
    out: list[float | None] = []
    for start in range(0, len(values), size):
        chunk = [v for v in values[start : start + size] if v is not None]
        out.append(None if not chunk else NAN if any(math.isnan(v) for v in chunk) else max(chunk))
    return out


def _slot_label(j: int, size: int, n_ch: int) -> str:
    return f"c{j}" if size == 1 else f"c{j * size}-{min((j + 1) * size, n_ch) - 1}"


def channel_errors(series: list[tuple[str, list[float | None]]], *, bound: float = 1.0) -> Markup:
    """Per-channel error/bound ratio of each observable: grouped bars on a log y axis.

    Slot j holds one bar per series ("bar s0".."bar s7", cycling), plus "over" when above
    the bound and "clipped" when inf or off the top; values at or below the floor (0,
    negatives) get a 1-unit stub. None draws nothing; NaN draws a "nan-mark" at the top.
    With more than 256 channels, consecutive channels share a bar (their max) and a
    "caption" says which. A dashed "bound-line" at y=bound, a legend of series names.
    """
    bound = _check_bound(bound)
    title = "Per-channel error/bound ratio of each observable"
    data = [(str(name), [None if v is None else number(v) for v in values]) for name, values in series]
    n_ch = max((len(v) for _, v in data), default=0)
    if n_ch == 0:
        return empty("channel-errors", title)
    size = math.ceil(n_ch / MAX_BARS)
    data = [(name, _bucket(v + [None] * (n_ch - len(v)), size)) for name, v in data]
    n_slots = len(data[0][1])
    # floor 1e-3 or lower down to 1e-8; top at least a decade above the bound's
    lo, hi = _decades([v for _, vs in data for v in vs if v is not None], -3, -8, math.floor(math.log10(bound)) + 1)
    left, plot_w, plot_h = 50.0, 830.0, 220.0
    legend, legend_y = _legend([n for n, _ in data], left, left + plot_w)
    top = legend_y + 22
    bottom = top + plot_h

    def y_of(v: float) -> float:
        dec = math.log10(v) if v > 0 else lo
        return bottom - (min(max(dec, lo), hi) - lo) / (hi - lo) * plot_h

    body = [legend, _log_axis(lo, hi, y_of, left, left + plot_w, vertical=True)]
    slot_w = plot_w / n_slots
    bar_w = slot_w * 0.8 / len(data)
    nans = 0
    for s, (name, values) in enumerate(data):
        for j, v in enumerate(values):
            x, tip = left + (j + 0.1) * slot_w + s * bar_w, f"{name} {_slot_label(j, size, n_ch)}: "
            if v is not None and math.isnan(v):
                nans += 1
                body.append(
                    f'<circle class="nan-mark" cx="{coord(x + bar_w / 2)}" cy="{coord(top + 4)}" r="2.5" '
                    f'fill="#6a1b9a"><title>{esc(tip)}NaN</title></circle>'
                )
            elif v is not None:
                cls = f"bar s{s % 8}" + (" over" if v > bound else "") + (" clipped" if v > 10.0**hi else "")
                y = min(y_of(v), bottom - 1)  # at/below the floor: a visible stub
                body.append(
                    f'<rect class="{cls}" x="{coord(x)}" y="{coord(y)}" width="{coord(bar_w)}" '
                    f'height="{coord(bottom - y)}" '
                    f'fill="{PALETTE[s % 8]}"><title>{esc(tip)}{esc(f"{v:.3g}")}</title></rect>'
                )
    every = math.ceil(n_slots / (16 if size == 1 else 8))  # at most ~16 labels (8 ranges)
    body += [
        text(left + (j + 0.5) * slot_w, bottom + 14, _slot_label(j, size, n_ch), "tick-label", "middle")
        for j in range(0, n_slots, every)
    ]
    yb = y_of(bound)
    body += [
        line(left, yb, left + plot_w, yb, "bound-line", RED, _DASHED),
        text(left + plot_w, yb - 4, "bound", "bound-label", "end"),
    ]
    notes = (
        [f"channels 0-{size - 1}, {size}-{2 * size - 1}, … per bar (the max of {size} channels)"] if size > 1 else []
    ) + ([f"NaN: {nans} (dots at the top)"] if nans else [])
    if notes:
        body.append(text(left, bottom + 34, "; ".join(notes), "caption"))
    return root("channel-errors", 900, bottom + 44, title, body)


def _legend(names: list[str], x0: float, x_max: float) -> tuple[str, float]:
    """Swatch + name per series, flowing onto new lines; returns (svg, last baseline)."""
    out, x, y = [], x0, 14.0
    for s, name in enumerate(names):
        w = 22 + 6.5 * len(name)  # rough width of 11px text
        if x > x0 and x + w > x_max:
            x, y = x0, y + 16
        out.append(
            f'<rect class="swatch s{s % 8}" x="{coord(x)}" y="{coord(y - 9)}" width="10" height="10" '
            f'fill="{PALETTE[s % 8]}"/>'
        )
        out.append(text(x + 14, y, name, "legend-label"))
        x += w + 12
    return "".join(out), y
