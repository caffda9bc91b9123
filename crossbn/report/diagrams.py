"""BatchNorm's dataflow and a network's localization map as inline SVG.

Drawn with svg.py's primitives and under its conventions (role="img", a
title, CSS classes with fallback colours, every text escaped, no script,
no ids, the same bytes for the same input).
"""

from __future__ import annotations

import math

from markupsafe import Markup

from crossbn.records.results import number
from crossbn.report.svg import EDGE, RED, VERDICT_COLOURS, arrowhead, coord, empty, esc, line, root, text, token
from crossbn.spec.networks import INPUT

# ---- 3. BatchNorm's dataflow ------------------------------------------------------------------

_R1, _R2, _R3, _R4 = 30.0, 110.0, 210.0, 310.0  # rows: inputs, forward, running/eval, backward
_BOX, _NODE = (56.0, 19.0), (26.0, 13.0)  # half width, half height
_STAGE_AT = {
    "batch mean": (180.0, _R2),
    "batch variance": (310.0, _R2),
    "inverse std": (450.0, _R2),
    "normalized": (590.0, _R2),
    "affine output": (730.0, _R2),
    "running mean": (180.0, _R3),
    "running variance": (310.0, _R3),
    "eval statistics": (450.0, _R3),
    "dbeta": (180.0, _R4),
    "dgamma": (310.0, _R4),
    "dx": (450.0, _R4),
}
GROUP = "batch statistics"  # drawn around batch mean + batch variance
STAGES_DRAWN = (*_STAGE_AT, GROUP)
_GROUP_BOX = (112.0, _R2 - 39, 378.0, _R2 + 39)  # x0, y0, x1, y1: room above the boxes for the label
_NODE_AT = {"x": (50.0, _R2), "y": (850.0, _R2), "eps": (450.0, _R1), "γ, β": (730.0, _R1), "dy": (50.0, _R4)}
_AT = {**_STAGE_AT, **_NODE_AT}
# (from, to, edge label, depth): depth 0 is a straight arrow between the boxes' borders,
# otherwise a curve from bottom to bottom that dips that far, under the boxes between
_FLOW = [
    ("x", "batch mean", "", 0),
    ("batch mean", "batch variance", "", 0),
    ("batch variance", "inverse std", "", 0),
    ("eps", "inverse std", "", 0),
    ("inverse std", "normalized", "", 0),
    ("normalized", "affine output", "x̂", 0),
    ("γ, β", "affine output", "", 0),
    ("affine output", "y", "", 0),
    ("batch mean", "running mean", "momentum", 0),
    ("batch variance", "running variance", "momentum", 0),
    ("running variance", "eval statistics", "", 0),
    ("running mean", "eval statistics", "", 36),
    ("eval statistics", "normalized", "eval", 0),
    ("dy", "dbeta", "", 0),
    ("dy", "dgamma", "", 30),
    ("dy", "dx", "", 44),
]
# "first departs here": (dx, dy, anchor) from a box's centre, clear of the arrows that
# attach at the centre lines; under the forward row, over the others
_MARK = {
    name: (6, _BOX[1] + 12, "start")
    for name in ("batch mean", "inverse std", "normalized", "affine output", "eval statistics")
}
_MARK["batch variance"] = (-6, _BOX[1] + 12, "end")  # inside the group, left of its arrow
_ROW_CAPTIONS = [
    (20.0, _R1 + 4, "forward (training)"),
    (560.0, _R3 + 4, "running statistics, eval mode"),
    (540.0, _R4 + 4, "backward (uses x̂, inverse std)"),
]


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
        d = (
            f"M {coord(xa)} {coord(ya)} C {coord(xa)} {coord(ya + depth)}, "
            f"{coord(xb)} {coord(yb + depth)}, {coord(xb)} {coord(yb)}"
        )
        return f'<path class="edge" d="{d}" fill="none" stroke="{EDGE}"/>' + arrowhead(xb, yb + depth, xb, yb)
    (x1, y1), (x2, y2) = _border(a, _AT[b]), _border(b, _AT[a])
    out = line(x1, y1, x2, y2, "edge", EDGE) + arrowhead(x1, y1, x2, y2)
    return out + (text((x1 + x2) / 2 + 4, (y1 + y2) / 2 - 3, label, "edge-label", size=10) if label else "")


def _stage_box(name: str, verdict: str, box: tuple[float, float, float, float], highlighted: bool) -> str:
    v = token(verdict) if verdict else "none"
    fill, stroke = VERDICT_COLOURS.get(v, VERDICT_COLOURS["none"])
    x0, y0, x1, y1 = box
    cls, width = (f"stage v-{v} highlighted", ' stroke-width="4"') if highlighted else (f"stage v-{v}", "")
    return (
        f'<rect class="{cls}" data-stage="{esc(name)}" x="{coord(x0)}" y="{coord(y0)}" width="{coord(x1 - x0)}" '
        f'height="{coord(y1 - y0)}" rx="6" fill="{fill}" stroke="{RED if highlighted else stroke}"{width}>'
        f"<title>{esc(name)}: {esc(verdict or 'not observed')}</title></rect>"
    )


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
    body = [
        _stage_box(GROUP, verdict[GROUP], _GROUP_BOX, GROUP in highlighted),
        text(gx0 + 6, gy0 + 12, GROUP, "group-label", size=10),
    ]
    body += [_flow_edge(*edge) for edge in _FLOW]
    (hw, hh), (nw, nh) = _BOX, _NODE
    for name, (x, y) in _STAGE_AT.items():
        body += [
            _stage_box(name, verdict[name], (x - hw, y - hh, x + hw, y + hh), name in highlighted),
            text(x, y - 2, name, "stage-name", "middle"),
            text(x, y + 12, verdict[name] or "–", "stage-verdict", "middle", 9),
        ]
    for name, (x, y) in _NODE_AT.items():
        body += [
            f'<rect class="io" x="{coord(x - nw)}" y="{coord(y - nh)}" width="{coord(2 * nw)}" height="{coord(2 * nh)}" '
            f'rx="{coord(nh)}" fill="#fafafa" stroke="#616161"/>',
            text(x, y + 4, name, "io-label", "middle"),
        ]
    for name in sorted(highlighted & set(STAGES_DRAWN)):  # sorted: a set's order is not stable
        if name == GROUP:
            body.append(text(gx0, gy0 - 5, "first departs here", "highlight-label"))
        else:
            (x, y), (dx, dy, anchor) = _STAGE_AT[name], _MARK.get(name, (6, -hh - 5, "start"))
            body.append(text(x + dx, y + dy, "first departs here", "highlight-label", anchor))
    body += [text(x, y, s, "row-caption", size=10) for x, y, s in _ROW_CAPTIONS]
    body.append(_verdict_legend(20.0, _R4 + 78))
    return root("dataflow", 900, _R4 + 92, "BatchNorm dataflow: verdict of each stage", body)


def _verdict_legend(x: float, y: float) -> str:
    out = []
    for v in ("match", "convention", "deviation", "nan-mismatch", "none"):
        fill, stroke = VERDICT_COLOURS[v]
        label = "not observed" if v == "none" else v
        out += [
            f'<rect class="stage v-{v} legend-swatch" x="{coord(x)}" y="{coord(y - 10)}" width="14" height="12" '
            f'rx="3" fill="{fill}" stroke="{stroke}"/>',
            text(x + 18, y, label, "legend-label"),
        ]
        x += 40 + 7 * len(label)
    return "".join(out)


# ---- 4. a network's localization map ----------------------------------------------------------


_NX, _NW, _NH, _NSTEP = 20.0, 270.0, 40.0, 60.0  # node column: left, width, height, pitch


def _delta_r(layer: dict) -> str:
    d, r = layer.get("delta"), layer.get("R")
    return f"δ {'–' if d is None else f'{number(d):.3g}'}  R {'–' if r is None else f'{number(r):.3g}'}"


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
        return empty("network", title, 380)
    names = [INPUT] + [str(layer.get("name", "")) for layer in layers]
    row = {name: i for i, name in enumerate(names)}  # a duplicate name: the last one wins
    body = [
        _net_edge(row[str(src)], i)  # edges first: nodes paint over their ends
        for i, layer in enumerate(layers, start=1)
        for src in layer.get("inputs") or []
        if row.get(str(src), i) < i
    ]
    body.append(_net_node(0, INPUT, "layer input", [INPUT], False, "the network input"))
    for i, layer in enumerate(layers, start=1):
        name, op, intro = names[i], str(layer.get("op", "")), names[i] in highlighted
        threshold = layer.get("R_threshold")
        tip = f"{name} ({op}): {_delta_r(layer)}" + (
            "" if threshold is None else f", R threshold {number(threshold):.3g}"
        )
        cls = f"layer op-{token(op)}" + (" introduces" if intro else "")
        body.append(_net_node(i, name, cls, [f"{name}  {op}", _delta_r(layer)], intro, tip))
    # xml:space keeps the two spaces between "name  op" and "δ …  R …" (SVG collapses them)
    return root("network", 380, _NSTEP * len(names) + 10, title, body, ' xml:space="preserve"')


def _net_node(i: int, name: str, cls: str, lines: list[str], intro: bool, tip: str) -> str:
    y = 10 + i * _NSTEP
    fill, stroke = ("#ffebee", RED) if intro else ("#ffffff", "#616161")
    out = [
        f'<rect class="{cls}" data-layer="{esc(name)}" x="{coord(_NX)}" y="{coord(y)}" width="{coord(_NW)}" '
        f'height="{coord(_NH)}" rx="5" fill="{fill}" stroke="{stroke}" stroke-width="{3 if intro else 1}">'
        f"<title>{esc(tip)}</title></rect>"
    ]
    out += [
        text(_NX + 8, y + 16 + 15 * k, s, "layer-stats" if k else "layer-name", room=38) for k, s in enumerate(lines)
    ]
    if intro:
        out.append(text(_NX + _NW - 8, y + 16, "introduces", "introduces-label", "end"))
    return "".join(out)


def _net_edge(src: int, dst: int) -> str:
    """Consecutive nodes: a straight line, bottom to top. A skip: an arc from the right side
    of one to the right side of the other, wider the further it reaches, so nested skips
    do not lie on top of each other."""
    y_src, y_dst = 10 + src * _NSTEP, 10 + dst * _NSTEP
    if dst == src + 1:
        cx = _NX + _NW / 2
        return line(cx, y_src + _NH, cx, y_dst, "edge", EDGE) + arrowhead(cx, y_src + _NH, cx, y_dst)
    x, bulge = _NX + _NW, min(18 + 10 * (dst - src), 80)
    y1, y2 = y_src + _NH / 2, y_dst + _NH / 2
    d = f"M {coord(x)} {coord(y1)} C {coord(x + bulge)} {coord(y1)}, {coord(x + bulge)} {coord(y2)}, {coord(x)} {coord(y2)}"
    return f'<path class="edge skip" d="{d}" fill="none" stroke="{EDGE}"/>' + arrowhead(x + bulge, y2, x, y2)
