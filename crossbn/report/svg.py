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

NAN = float("nan")
# fallback fills of the 8 cycling series classes s0..s7 (Tableau 10, colour-blind friendly)
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#e15759")
# fallback (fill, stroke) per verdict class: report.css's --<verdict>-bg and --<verdict>
VERDICT_COLOURS = {"match": ("#e8f5e9", "#2e7d32"), "convention": ("#e3f2fd", "#1565c0"),
                   "deviation": ("#ffebee", "#c62828"), "nan-mismatch": ("#f3e5f5", "#6a1b9a"),
                   "none": ("#ffffff", "#9e9e9e")}
RED, EDGE = "#c62828", "#757575"
_DASHED = ' stroke-width="2" stroke-dasharray="6 3"'


# ---- shared pieces ----------------------------------------------------------------------------

def _e(x) -> str:
    """Escaped text as a plain str (`Markup + str` would escape the str again; f-strings do not)."""
    return str(escape(x))


def _f(v: float) -> str:
    """A coordinate: one decimal keeps the output small and byte-stable."""
    return f"{v:.1f}"


def _num(x) -> float:
    """float() of a record value ("inf", "nan" included); None or anything unreadable is NaN."""
    try:
        return NAN if x is None else float(x)
    except (TypeError, ValueError):
        return NAN


def _token(s) -> str:
    """A CSS class token from data (a verdict, an op): no quote or space gets through."""
    return re.sub(r"[^a-z0-9_-]+", "-", str(s).lower()).strip("-") or "unknown"


def _text(x: float, y: float, s, cls: str = "", anchor: str = "start", size: float = 0, room: int = 0) -> str:
    """Escaped text; longer than `room` characters: cut with "…", the whole as a tooltip."""
    if room and len(str(s)) > room:
        return f"<g><title>{_e(s)}</title>{_text(x, y, str(s)[:room - 1] + '…', cls, anchor, size)}</g>"
    c = f' class="{cls}"' if cls else ""
    fs = f' font-size="{size:g}"' if size else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{c}{fs}>{_e(s)}</text>'


def _line(x1, y1, x2, y2, cls: str, stroke: str = "#9e9e9e", extra: str = "") -> str:
    return (f'<line class="{cls}" x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" '
            f'stroke="{stroke}"{extra}/>')


def _root(kind: str, width: float, height: float, title: str, body: list[str], extra: str = "") -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" role="img" '
                  f'viewBox="0 0 {width:g} {height:g}" width="100%" preserveAspectRatio="xMinYMin meet" '
                  f'font-family="sans-serif" font-size="11"{extra}><title>{_e(title)}</title>'
                  + "".join(body) + "</svg>")


def _empty(kind: str, title: str, width: float = 900) -> Markup:
    """The chart's frame with "no data": the page keeps its layout and says why it is blank."""
    return _root(kind, width, 40, title, [_text(width / 2, 24, "no data", "no-data", "middle")])


def _jitter(i: int) -> float:
    """In [-1, 1) from a hash of the index (Knuth's multiplicative hash): spread like
    noise, yet the same index always lands in the same place."""
    return ((i * 2654435761) % 2**32) / 2**31 - 1.0


def _check_bound(bound: float) -> float:
    bound = float(bound)
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a positive finite number, got {bound!r}")
    return bound


def _arrowhead(x1, y1, x2, y2) -> str:
    """A filled triangle at (x2, y2) pointing along (x1, y1) -> (x2, y2)."""
    d = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / d, (y2 - y1) / d
    bx, by = x2 - 7 * ux, y2 - 7 * uy
    pts = [(x2, y2), (bx - 3.5 * uy, by + 3.5 * ux), (bx + 3.5 * uy, by - 3.5 * ux)]
    return f'<polygon class="arrowhead" points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in pts)}" fill="{EDGE}"/>'


def _log_axis(lo: int, hi: int, at, a: float, b: float, vertical: bool) -> str:
    """Decade grid lines, ticks and "1e<d>" labels (even decades only on wide axes). Vertical:
    the axis is at x=a, grid lines run to x=b; horizontal: grid from y=a to the axis at y=b."""
    step, out = (1 if hi - lo <= 12 else 2), []
    for d in range(lo, hi + 1):
        p = at(10.0 ** d)
        if vertical:
            out += [_line(a, p, b, p, "grid-line", "#eeeeee"), _line(a - 4, p, a, p, "tick")]
            label = _text(a - 6, p + 4, f"1e{d}", "tick-label", "end")
        else:
            out += [_line(p, a, p, b, "grid-line", "#eeeeee"), _line(p, b, p, b + 4, "tick")]
            label = _text(p, b + 16, f"1e{d}", "tick-label", "middle")
        out += [label] if d % step == 0 else []
    p0, p1 = at(10.0 ** lo), at(10.0 ** hi)
    out.append(_line(a, p0, a, p1, "axis") if vertical else _line(p0, b, p1, b, "axis"))
    return "".join(out)


def _decades(values: list[float], floor: int, lowest: int, top_at_least: int) -> tuple[int, int]:
    """A log axis's (first, last) decade: from `floor`, lower (not below `lowest`) when small
    values need it, to the decade above the largest finite value, at least `top_at_least`
    and at most 1e16, so one absurd value does not squash the rest."""
    pos = [v for v in values if math.isfinite(v) and v > 0]
    lo = max(min([floor] + [math.floor(math.log10(v)) for v in pos]), lowest)
    return lo, min(max([math.ceil(math.log10(v)) for v in pos] + [top_at_least, lo + 1]), 16)


# ---- 1. distribution of error/bound ratios ----------------------------------------------------

FLOOR_DECADE = -6          # ratios at or below 1e-6 are "exact enough"; 0 and negatives sit here


def ratio_distribution(rows: list[tuple[str, list[float]]], *, bound: float = 1.0) -> Markup:
    """Error/bound ratios per backend on a log10 x axis (1e-6 .. a decade chosen from the data).

    One row per (label, ratios): a dot per non-NaN ratio ("dot ok" at or under the bound,
    "dot over" above it, plus "clipped" when inf or beyond the axis), jittered vertically by
    a hash of its index; ratios <= 1e-6 (0, negatives) sit at the left edge. A quartile box
    ("box") and median ("median") of the finite ratios, and "n=…, over bound: k" on the
    right (", NaN: m" when some were NaN and so not drawn). A dashed "bound-line" at x=bound.
    """
    bound = _check_bound(bound)
    title = "Distribution of error/bound ratios per backend"
    data = [(str(label), [_num(r) for r in ratios]) for label, ratios in rows]
    if not data:
        return _empty("ratio-distribution", title)
    # right edge at least 1e2 (room right of the bound) and at least the bound's decade
    lo, hi = _decades([r for _, rs in data for r in rs], FLOOR_DECADE, FLOOR_DECADE,
                      max(2, math.ceil(math.log10(bound))))
    left, plot_w, top, row_h = 160.0, 540.0, 26.0, 30.0      # 200 units on the right for the notes
    bottom = top + row_h * len(data)

    def x_of(r: float) -> float:
        dec = math.log10(r) if r > 0 else lo                 # 0 and negatives: the floor
        return left + (min(max(dec, lo), hi) - lo) / (hi - lo) * plot_w

    body = [_log_axis(lo, hi, x_of, top, bottom, vertical=False),
            _text(left + plot_w, bottom + 30, "error / bound (log scale)", "axis-label", "end")]
    body += [_distribution_row(label, ratios, top + k * row_h + row_h / 2, x_of, hi, bound)
             for k, (label, ratios) in enumerate(data)]
    xb = x_of(bound)
    body += [_line(xb, top - 8, xb, bottom, "bound-line", RED, _DASHED),
             _text(xb, top - 12, "bound", "bound-label", "middle")]
    return _root("ratio-distribution", 900, bottom + 36, title, body)


def _distribution_row(label: str, ratios: list[float], mid: float, x_of, hi: int, bound: float) -> str:
    out = [_text(8, mid + 4, label, "row-label", room=26)]
    finite = [r for r in ratios if math.isfinite(r)]
    if finite:                                               # the box first: dots paint over it
        x1, xm, x3 = (x_of(float(q)) for q in np.percentile(finite, [25, 50, 75]))
        out.append(f'<rect class="box" x="{_f(x1)}" y="{_f(mid - 8)}" width="{_f(max(x3 - x1, 1))}" '
                   f'height="16" fill="none" stroke="#424242"/>')
        out.append(_line(xm, mid - 10, xm, mid + 10, "median", "#000000", ' stroke-width="2"'))
    n = over = nans = 0
    for i, r in enumerate(ratios):
        if math.isnan(r):
            nans += 1
            continue
        n, over = n + 1, over + (r > bound)
        clipped = r > 10.0 ** hi                             # inf, or off the right edge
        cls = ("dot over" if r > bound else "dot ok") + (" clipped" if clipped else "")
        fill = "#8d2a00" if clipped else RED if r > bound else "#2e7d32"
        out.append(f'<circle class="{cls}" cx="{_f(x_of(r))}" cy="{_f(mid + _jitter(i) * 11)}" '
                   f'r="2.5" fill="{fill}" fill-opacity="0.7"/>')
    note = f"n={n}, over bound: {over}" + (f", NaN: {nans}" if nans else "")
    out.append(_text(x_of(10.0 ** hi) + 12, mid + 4, note, "row-note"))
    return "".join(out)


# ---- 2. per-channel errors --------------------------------------------------------------------

MAX_BARS = 256          # channel slots; beyond this, consecutive channels share a bar (their max)


def _bucket(values: list[float | None], size: int) -> list[float | None]:
    """Max over each run of `size` channels; NaN wins (the worse failure), None (not
    available) only when the whole run is None."""
    out: list[float | None] = []
    for start in range(0, len(values), size):
        chunk = [v for v in values[start:start + size] if v is not None]
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
    data = [(str(name), [None if v is None else _num(v) for v in values]) for name, values in series]
    n_ch = max((len(v) for _, v in data), default=0)
    if n_ch == 0:
        return _empty("channel-errors", title)
    size = math.ceil(n_ch / MAX_BARS)
    data = [(name, _bucket(v + [None] * (n_ch - len(v)), size)) for name, v in data]
    n_slots = len(data[0][1])
    # floor 1e-3 or lower down to 1e-8; top at least a decade above the bound's
    lo, hi = _decades([v for _, vs in data for v in vs if v is not None], -3, -8,
                      math.floor(math.log10(bound)) + 1)
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
                body.append(f'<circle class="nan-mark" cx="{_f(x + bar_w / 2)}" cy="{_f(top + 4)}" r="2.5" '
                            f'fill="#6a1b9a"><title>{_e(tip)}NaN</title></circle>')
            elif v is not None:
                cls = f"bar s{s % 8}" + (" over" if v > bound else "") + (" clipped" if v > 10.0 ** hi else "")
                y = min(y_of(v), bottom - 1)                 # at/below the floor: a visible stub
                body.append(f'<rect class="{cls}" x="{_f(x)}" y="{_f(y)}" width="{_f(bar_w)}" height="{_f(bottom - y)}" '
                            f'fill="{PALETTE[s % 8]}"><title>{_e(tip)}{_e(f"{v:.3g}")}</title></rect>')
    every = math.ceil(n_slots / (16 if size == 1 else 8))   # at most ~16 labels (8 ranges)
    body += [_text(left + (j + 0.5) * slot_w, bottom + 14, _slot_label(j, size, n_ch), "tick-label", "middle")
             for j in range(0, n_slots, every)]
    yb = y_of(bound)
    body += [_line(left, yb, left + plot_w, yb, "bound-line", RED, _DASHED),
             _text(left + plot_w, yb - 4, "bound", "bound-label", "end")]
    notes = ([f"channels 0-{size - 1}, {size}-{2 * size - 1}, … per bar (the max of {size} channels)"]
             if size > 1 else []) + ([f"NaN: {nans} (dots at the top)"] if nans else [])
    if notes:
        body.append(_text(left, bottom + 34, "; ".join(notes), "caption"))
    return _root("channel-errors", 900, bottom + 44, title, body)


def _legend(names: list[str], x0: float, x_max: float) -> tuple[str, float]:
    """Swatch + name per series, flowing onto new lines; returns (svg, last baseline)."""
    out, x, y = [], x0, 14.0
    for s, name in enumerate(names):
        w = 22 + 6.5 * len(name)                             # rough width of 11px text
        if x > x0 and x + w > x_max:
            x, y = x0, y + 16
        out.append(f'<rect class="swatch s{s % 8}" x="{_f(x)}" y="{_f(y - 9)}" width="10" height="10" '
                   f'fill="{PALETTE[s % 8]}"/>')
        out.append(_text(x + 14, y, name, "legend-label"))
        x += w + 12
    return "".join(out), y


# ---- 3. BatchNorm's dataflow ------------------------------------------------------------------

_R1, _R2, _R3, _R4 = 30.0, 110.0, 210.0, 310.0       # rows: inputs, forward, running/eval, backward
_BOX, _NODE = (56.0, 19.0), (26.0, 13.0)             # half width, half height
_STAGE_AT = {"batch mean": (180.0, _R2), "batch variance": (310.0, _R2), "inverse std": (450.0, _R2),
             "normalized": (590.0, _R2), "affine output": (730.0, _R2),
             "running mean": (180.0, _R3), "running variance": (310.0, _R3), "eval statistics": (450.0, _R3),
             "dbeta": (180.0, _R4), "dgamma": (310.0, _R4), "dx": (450.0, _R4)}
GROUP = "batch statistics"                           # drawn around batch mean + batch variance
STAGES_DRAWN = (*_STAGE_AT, GROUP)
_GROUP_BOX = (112.0, _R2 - 39, 378.0, _R2 + 39)      # x0, y0, x1, y1: room above the boxes for the label
_NODE_AT = {"x": (50.0, _R2), "y": (850.0, _R2), "eps": (450.0, _R1), "γ, β": (730.0, _R1), "dy": (50.0, _R4)}
_AT = {**_STAGE_AT, **_NODE_AT}
# (from, to, edge label, depth): depth 0 is a straight arrow between the boxes' borders,
# otherwise a curve from bottom to bottom that dips that far, under the boxes between
_FLOW = [("x", "batch mean", "", 0), ("batch mean", "batch variance", "", 0),
         ("batch variance", "inverse std", "", 0), ("eps", "inverse std", "", 0),
         ("inverse std", "normalized", "", 0), ("normalized", "affine output", "x̂", 0),
         ("γ, β", "affine output", "", 0), ("affine output", "y", "", 0),
         ("batch mean", "running mean", "momentum", 0), ("batch variance", "running variance", "momentum", 0),
         ("running variance", "eval statistics", "", 0), ("running mean", "eval statistics", "", 36),
         ("eval statistics", "normalized", "eval", 0),
         ("dy", "dbeta", "", 0), ("dy", "dgamma", "", 30), ("dy", "dx", "", 44)]
# "first departs here": (dx, dy, anchor) from a box's centre, clear of the arrows that
# attach at the centre lines; under the forward row, over the others
_MARK = {name: (6, _BOX[1] + 12, "start") for name in ("batch mean", "inverse std", "normalized",
                                                       "affine output", "eval statistics")}
_MARK["batch variance"] = (-6, _BOX[1] + 12, "end")   # inside the group, left of its arrow
_ROW_CAPTIONS = [(20.0, _R1 + 4, "forward (training)"), (560.0, _R3 + 4, "running statistics, eval mode"),
                 (540.0, _R4 + 4, "backward (uses x̂, inverse std)")]


def _border(name: str, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from a box's centre toward a point leaves the box."""
    (cx, cy), (hw, hh) = _AT[name], _BOX if name in _STAGE_AT else _NODE
    dx, dy = toward[0] - cx, toward[1] - cy
    t = min(hw / abs(dx) if dx else math.inf, hh / abs(dy) if dy else math.inf)
    return cx + t * dx, cy + t * dy


def _flow_edge(a: str, b: str, label: str, depth: float) -> str:
    if depth:
        (xa, ya), (xb, yb) = _AT[a], _AT[b]
        ya, yb = ya + (_BOX if a in _STAGE_AT else _NODE)[1], yb + _BOX[1]
        d = f"M {_f(xa)} {_f(ya)} C {_f(xa)} {_f(ya + depth)}, {_f(xb)} {_f(yb + depth)}, {_f(xb)} {_f(yb)}"
        return f'<path class="edge" d="{d}" fill="none" stroke="{EDGE}"/>' + _arrowhead(xb, yb + depth, xb, yb)
    (x1, y1), (x2, y2) = _border(a, _AT[b]), _border(b, _AT[a])
    out = _line(x1, y1, x2, y2, "edge", EDGE) + _arrowhead(x1, y1, x2, y2)
    return out + (_text((x1 + x2) / 2 + 4, (y1 + y2) / 2 - 3, label, "edge-label", size=10) if label else "")


def _stage_box(name: str, verdict: str, box: tuple[float, float, float, float], highlighted: bool) -> str:
    v = _token(verdict) if verdict else "none"
    fill, stroke = VERDICT_COLOURS.get(v, VERDICT_COLOURS["none"])
    x0, y0, x1, y1 = box
    cls, width = (f"stage v-{v} highlighted", ' stroke-width="4"') if highlighted else (f"stage v-{v}", "")
    return (f'<rect class="{cls}" data-stage="{_e(name)}" x="{_f(x0)}" y="{_f(y0)}" width="{_f(x1 - x0)}" '
            f'height="{_f(y1 - y0)}" rx="6" fill="{fill}" stroke="{RED if highlighted else stroke}"{width}>'
            f'<title>{_e(name)}: {_e(verdict or "not observed")}</title></rect>')


def dataflow(stages: dict[str, str], *, highlighted: set[str]) -> Markup:
    """BatchNorm's computation as boxes and arrows, one box per stage of localize.STAGES.

    Forward: x -> batch mean -> batch variance -> inverse std (eps) -> normalized (x̂) ->
    affine output (γ, β) -> y, with a "batch statistics" group around mean and variance;
    below, the running statistics (momentum) -> eval statistics -> normalized (eval); last,
    dy -> dbeta, dgamma, dx. Each box is a rect "stage v-<verdict>" ("v-none" for "" or a
    missing stage) with data-stage="<name>"; stages in `highlighted` also get "highlighted"
    and a "first departs here" label. Plain nodes (x, y, dy, eps, γ, β) are rects "io".
    """
    verdict = {name: str(stages.get(name) or "") for name in STAGES_DRAWN}
    gx0, gy0 = _GROUP_BOX[:2]
    # the group first so that the boxes and arrows sit on top of its fill
    body = [_stage_box(GROUP, verdict[GROUP], _GROUP_BOX, GROUP in highlighted),
            _text(gx0 + 6, gy0 + 12, GROUP, "group-label", size=10)]
    body += [_flow_edge(*edge) for edge in _FLOW]
    (hw, hh), (nw, nh) = _BOX, _NODE
    for name, (x, y) in _STAGE_AT.items():
        body += [_stage_box(name, verdict[name], (x - hw, y - hh, x + hw, y + hh), name in highlighted),
                 _text(x, y - 2, name, "stage-name", "middle"),
                 _text(x, y + 12, verdict[name] or "–", "stage-verdict", "middle", 9)]
    for name, (x, y) in _NODE_AT.items():
        body += [f'<rect class="io" x="{_f(x - nw)}" y="{_f(y - nh)}" width="{_f(2 * nw)}" height="{_f(2 * nh)}" '
                 f'rx="{_f(nh)}" fill="#fafafa" stroke="#616161"/>', _text(x, y + 4, name, "io-label", "middle")]
    for name in sorted(highlighted & set(STAGES_DRAWN)):     # sorted: a set's order is not stable
        if name == GROUP:
            body.append(_text(gx0, gy0 - 5, "first departs here", "highlight-label"))
        else:
            (x, y), (dx, dy, anchor) = _STAGE_AT[name], _MARK.get(name, (6, -hh - 5, "start"))
            body.append(_text(x + dx, y + dy, "first departs here", "highlight-label", anchor))
    body += [_text(x, y, s, "row-caption", size=10) for x, y, s in _ROW_CAPTIONS]
    body.append(_verdict_legend(20.0, _R4 + 78))
    return _root("dataflow", 900, _R4 + 92, "BatchNorm dataflow: verdict of each stage", body)


def _verdict_legend(x: float, y: float) -> str:
    out = []
    for v in ("match", "convention", "deviation", "nan-mismatch", "none"):
        fill, stroke = VERDICT_COLOURS[v]
        label = "not observed" if v == "none" else v
        out += [f'<rect class="stage v-{v} legend-swatch" x="{_f(x)}" y="{_f(y - 10)}" width="14" height="12" '
                f'rx="3" fill="{fill}" stroke="{stroke}"/>', _text(x + 18, y, label, "legend-label")]
        x += 40 + 7 * len(label)
    return "".join(out)


# ---- 4. a network's localization map ----------------------------------------------------------

INPUT = "input"          # the network input's pseudo-name, as in crossbn/models/networks.py
_NX, _NW, _NH, _NSTEP = 20.0, 270.0, 40.0, 60.0     # node column: left, width, height, pitch


def _delta_r(layer: dict) -> str:
    d, r = layer.get("delta"), layer.get("R")
    return f"δ {'–' if d is None else f'{_num(d):.3g}'}  R {'–' if r is None else f'{_num(r):.3g}'}"


def network_graph(layers: list[dict], *, highlighted: set[str]) -> Markup:
    """CRADLE's per-layer map: the "input" pseudo-node, then one node per layer in execution
    order, top to bottom. A node is a rect "layer op-<op>" with data-layer="<name>" and the
    text "name  op" over "δ …  R …" ("–" when None); layers in `highlighted` also get class
    "introduces" and an "introduces" marker. One "edge" per input reference to an earlier
    node: a straight line from the node just above, else an "edge skip" path arcing on the
    right, wider the further it reaches. References to names not drawn are left out.
    """
    title = "Per-layer localization map"
    if not layers:
        return _empty("network", title, 380)
    names = [INPUT] + [str(layer.get("name", "")) for layer in layers]
    row = {name: i for i, name in enumerate(names)}          # a duplicate name: the last one wins
    body = [_net_edge(row[str(src)], i)                      # edges first: nodes paint over their ends
            for i, layer in enumerate(layers, start=1)
            for src in layer.get("inputs") or [] if row.get(str(src), i) < i]
    body.append(_net_node(0, INPUT, "layer input", [INPUT], False, "the network input"))
    for i, layer in enumerate(layers, start=1):
        name, op, intro = names[i], str(layer.get("op", "")), names[i] in highlighted
        threshold = layer.get("R_threshold")
        tip = f"{name} ({op}): {_delta_r(layer)}" + ("" if threshold is None else f", R threshold {_num(threshold):.3g}")
        cls = f"layer op-{_token(op)}" + (" introduces" if intro else "")
        body.append(_net_node(i, name, cls, [f"{name}  {op}", _delta_r(layer)], intro, tip))
    # xml:space keeps the two spaces between "name  op" and "δ …  R …" (SVG collapses them)
    return _root("network", 380, _NSTEP * len(names) + 10, title, body, ' xml:space="preserve"')


def _net_node(i: int, name: str, cls: str, lines: list[str], intro: bool, tip: str) -> str:
    y = 10 + i * _NSTEP
    fill, stroke = ("#ffebee", RED) if intro else ("#ffffff", "#616161")
    out = [f'<rect class="{cls}" data-layer="{_e(name)}" x="{_f(_NX)}" y="{_f(y)}" width="{_f(_NW)}" '
           f'height="{_f(_NH)}" rx="5" fill="{fill}" stroke="{stroke}" stroke-width="{3 if intro else 1}">'
           f'<title>{_e(tip)}</title></rect>']
    out += [_text(_NX + 8, y + 16 + 15 * k, text, "layer-stats" if k else "layer-name", room=38)
            for k, text in enumerate(lines)]
    if intro:
        out.append(_text(_NX + _NW - 8, y + 16, "introduces", "introduces-label", "end"))
    return "".join(out)


def _net_edge(src: int, dst: int) -> str:
    """Consecutive nodes: a straight line, bottom to top. A skip: an arc from the right side
    of one to the right side of the other, wider the further it reaches, so nested skips
    do not lie on top of each other."""
    y_src, y_dst = 10 + src * _NSTEP, 10 + dst * _NSTEP
    if dst == src + 1:
        cx = _NX + _NW / 2
        return _line(cx, y_src + _NH, cx, y_dst, "edge", EDGE) + _arrowhead(cx, y_src + _NH, cx, y_dst)
    x, bulge = _NX + _NW, min(18 + 10 * (dst - src), 80)
    y1, y2 = y_src + _NH / 2, y_dst + _NH / 2
    d = f"M {_f(x)} {_f(y1)} C {_f(x + bulge)} {_f(y1)}, {_f(x + bulge)} {_f(y2)}, {_f(x)} {_f(y2)}"
    return f'<path class="edge skip" d="{d}" fill="none" stroke="{EDGE}"/>' + _arrowhead(x + bulge, y2, x, y2)
