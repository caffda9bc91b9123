"""The report's inline SVG charts and diagrams (crossbn/report/svg.py, diagrams.py): well-formed, escaped,
deterministic, and drawing what their docstrings promise."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from crossbn.report import diagrams, svg

NS = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script> & co"


def parse(markup) -> ET.Element:
    assert isinstance(markup, Markup)
    return ET.fromstring(str(markup))


def find(root, tag: str, cls: str | None = None) -> list[ET.Element]:
    """Elements of a tag (any tag: "*") carrying every class in `cls`."""
    want = set((cls or "").split())
    return [e for e in root.iter(NS + tag if tag != "*" else tag) if want <= set(e.get("class", "").split())]


def texts(root) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(NS + "text")]


def axis_decades(root) -> tuple[int, int]:
    """(first, last) decade of a log axis: one grid line per decade, in order; the labels
    may skip some, so count from the grid line under the first label."""
    label, grid = find(root, "text", "tick-label")[0], find(root, "line", "grid-line")
    vertical = grid[0].get("y1") == grid[0].get("y2")
    at = float(label.get("y")) - 4 if vertical else float(label.get("x"))
    k = min(range(len(grid)), key=lambda i: abs(float(grid[i].get("y1" if vertical else "x1")) - at))
    first = int(label.text[2:]) - k
    return first, first + len(grid) - 1


def tick_x(root, decade: int) -> float:
    (label,) = [t for t in find(root, "text", "tick-label") if t.text == f"1e{decade}"]
    return float(label.get("x"))


def tick_y(root, decade: int) -> float:
    (label,) = [t for t in find(root, "text", "tick-label") if t.text == f"1e{decade}"]
    return float(label.get("y")) - 4  # labels sit 4 units under their grid line


def layer(name, op="conv", inputs=("input",), delta=1e-7, R=0.5, introduces=False):
    return {
        "name": name,
        "op": op,
        "inputs": list(inputs),
        "delta": delta,
        "R": R,
        "R_threshold": 2.0,
        "introduces": introduces,
    }


RESNET = [
    layer("conv1"),
    layer("bn1", "bn", ["conv1"]),
    layer("relu1", "relu", ["bn1"]),
    layer("conv2", inputs=["relu1"]),
    layer("bn2", "bn", ["conv2"]),
    layer("add1", "add", ["bn2", "relu1"]),
    layer("add2", "add", ["add1", "input"]),
    layer("dense", "dense", ["add2"]),
]

CHARTS = {
    "ratio_distribution": lambda label: svg.ratio_distribution([(label, [0.1, 2.0, "inf", "nan"])]),
    "channel_errors": lambda label: svg.channel_errors([(label, [0.1, 2.0, None, "nan"])]),
    "dataflow": lambda label: diagrams.dataflow({"batch mean": label, "dx": "deviation"}, highlighted={"dx"}),
    "network_graph": lambda label: diagrams.network_graph(
        [layer(label), layer("b", "bn", [label])], highlighted={label}
    ),
}


# ---- every chart ------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", CHARTS)
def test_root_is_a_scalable_accessible_svg(chart):
    root = parse(CHARTS[chart]("name"))
    assert root.tag == NS + "svg"
    assert root.get("role") == "img" and root.get("width") == "100%"
    assert len(root.get("viewBox").split()) == 4
    assert "chart" in root.get("class").split()
    assert root[0].tag == NS + "title" and root[0].text


@pytest.mark.parametrize("chart", CHARTS)
def test_text_from_data_is_escaped(chart):
    out = str(CHARTS[chart](EVIL))
    assert "<script" not in out and "&lt;script&gt;" in out
    root = parse(Markup(out))
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert not [a for e in root.iter() for a in e.attrib if a.lower().startswith("on")]
    everything = " ".join(texts(root) + ["".join(t.itertext()) for t in root.iter(NS + "title")])
    assert EVIL in everything


@pytest.mark.parametrize("chart", CHARTS)
def test_same_input_same_bytes(chart):
    assert str(CHARTS[chart]("a")) == str(CHARTS[chart]("a"))


@pytest.mark.parametrize(
    "make,kind",
    [
        (lambda: svg.ratio_distribution([]), "ratio-distribution"),
        (lambda: svg.channel_errors([]), "channel-errors"),
        (lambda: svg.channel_errors([("train0.y", []), ("train0.dx", [])]), "channel-errors"),
        (lambda: diagrams.network_graph([], highlighted=set()), "network"),
    ],
)
def test_empty_input_draws_an_empty_chart_saying_no_data(make, kind):
    root = parse(make())
    assert kind in root.get("class").split()
    assert "no data" in texts(root)


@pytest.mark.parametrize("bound", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bound_that_is_not_positive_and_finite_is_refused(bound):
    with pytest.raises(ValueError):
        svg.ratio_distribution([("a", [1.0])], bound=bound)
    with pytest.raises(ValueError):
        svg.channel_errors([("a", [1.0])], bound=bound)


# ---- ratio_distribution -----------------------------------------------------------------------

MIXED = [0.5, 2.0, float("inf"), "inf", "nan", float("nan"), 0.0, -1.0, 1e-9, 1.0, "3e-4"]


def test_one_dot_per_non_nan_ratio_classed_by_the_bound():
    root = parse(svg.ratio_distribution([("numpy/cpu", MIXED)]))
    assert len(find(root, "circle", "dot")) == len(MIXED) - 2
    assert len(find(root, "circle", "dot ok")) == 6  # 0.5, 0, -1, 1e-9, 1.0 (<= bound), 3e-4
    assert len(find(root, "circle", "dot over")) == 3  # 2, inf, "inf"
    assert len(find(root, "circle", "dot clipped")) == 2  # the two infs
    assert "n=9, over bound: 3, NaN: 2" in texts(root)


def test_zero_and_negative_ratios_sit_at_the_floor_and_inf_at_the_right_edge():
    root = parse(svg.ratio_distribution([("a", [0.0, -3.0, 1e-12, float("inf")])]))
    xs = [float(c.get("cx")) for c in find(root, "circle", "dot")]
    assert xs[:3] == [pytest.approx(tick_x(root, -6), abs=0.05)] * 3
    assert xs[3] == pytest.approx(tick_x(root, 2), abs=0.05)  # nothing finite above 1e2: ceiling 1e2


def test_bound_line_lies_on_the_bound_of_the_log_axis():
    root = parse(svg.ratio_distribution([("a", [1e-3, 5.0])]))
    (line,) = find(root, "line", "bound-line")
    x = float(line.get("x1"))
    assert tick_x(root, -1) < x < tick_x(root, 1)
    assert x == pytest.approx(tick_x(root, 0), abs=0.05)
    assert [t.text for t in find(root, "text", "bound-label")] == ["bound"]
    root = parse(svg.ratio_distribution([("a", [1e-3, 5.0])], bound=10.0))
    assert float(find(root, "line", "bound-line")[0].get("x1")) == pytest.approx(tick_x(root, 1), abs=0.05)


@pytest.mark.parametrize(
    "ratios,last", [([1e-3], 2), ([3e5], 6), ([1e5], 5), ([1e30, 1.0], 16), ([float("inf")], 2), ([], 2)]
)
def test_the_axis_runs_from_1e_minus_6_to_a_decade_chosen_from_the_data(ratios, last):
    root = parse(svg.ratio_distribution([("a", ratios)]))
    assert axis_decades(root) == (-6, last)


def test_wide_axes_label_every_other_decade_keeping_1e0():
    root = parse(svg.ratio_distribution([("a", [1e15])]))
    assert [t.text for t in find(root, "text", "tick-label")] == [f"1e{d}" for d in range(-6, 16, 2)]
    assert len(find(root, "line", "grid-line")) == len(find(root, "line", "tick")) == 22


def test_quartile_box_and_median_of_the_finite_ratios():
    root = parse(svg.ratio_distribution([("a", [1e-4, 1e-2, 1.0, float("inf"), "nan"]), ("b", ["nan"])]))
    (box,) = find(root, "rect", "box")  # row b has nothing finite: no box
    (median,) = find(root, "line", "median")
    assert float(median.get("x1")) == pytest.approx(tick_x(root, -2), abs=0.05)
    x0, x1 = float(box.get("x")), float(box.get("x")) + float(box.get("width"))
    assert tick_x(root, -4) < x0 < tick_x(root, -2) < x1 < tick_x(root, 0)
    assert "n=0, over bound: 0, NaN: 1" in texts(root)


def test_dots_are_jittered_within_their_own_row():
    root = parse(svg.ratio_distribution([("a", [0.1] * 50), ("b", [0.1] * 50)]))
    ys = [float(c.get("cy")) for c in find(root, "circle", "dot")]
    a, b = ys[:50], ys[50:]
    assert len(set(a)) > 10 and max(a) < min(b)  # spread out, and rows do not overlap
    assert max(a) - min(a) < 30 and max(b) - min(b) < 30


def test_a_long_row_label_is_cut_with_the_whole_as_tooltip():
    label = "backend-with-a-very-long-name/device-with-a-long-name"
    root = parse(svg.ratio_distribution([(label, [1.0])]))
    (row,) = find(root, "text", "row-label")
    assert row.text.endswith("…") and len(row.text) <= 26
    assert label in ["".join(t.itertext()) for t in root.iter(NS + "title")]


# ---- channel_errors ---------------------------------------------------------------------------


def test_one_bar_per_available_value_classed_by_series_and_bound():
    root = parse(svg.channel_errors([("train0.y", [0.1, 2.0, None, 0.0]), ("train0.dx", [1e-5, "inf", "nan", -1.0])]))
    assert len(find(root, "rect", "bar")) == 6  # None and NaN draw no bar
    assert len(find(root, "rect", "bar s0")) == 3 and len(find(root, "rect", "bar s1")) == 3
    over = find(root, "rect", "bar over")
    assert len(over) == 2 and {e.get("class") for e in over} == {"bar s0 over", "bar s1 over clipped"}
    assert len(find(root, "circle", "nan-mark")) == 1
    assert ["c0", "c1", "c2", "c3"] == [t.text for t in find(root, "text", "tick-label") if t.text.startswith("c")]
    assert {"train0.y", "train0.dx"} <= set(texts(root))  # the legend


def test_bars_stand_on_the_floor_and_reach_their_value():
    root = parse(svg.channel_errors([("a", [1e-2, 1e-8, float("inf")])]))
    small, tiny, inf = find(root, "rect", "bar")
    floor = tick_y(root, -8)  # 1e-8 lowers the floor from 1e-3
    for bar in (small, tiny, inf):
        assert float(bar.get("y")) + float(bar.get("height")) == pytest.approx(floor, abs=0.1)
    assert float(small.get("y")) == pytest.approx(tick_y(root, -2), abs=0.1)
    assert float(tiny.get("height")) >= 1  # at the floor: still visible
    assert float(inf.get("y")) == pytest.approx(tick_y(root, 1), abs=0.1)  # top: a decade above the bound


@pytest.mark.parametrize(
    "values,first,last",
    [([0.5], -3, 1), ([1e-5, 0.0], -5, 1), ([1e-12, 3e4], -8, 5), ([float("inf"), "nan"], -3, 1), ([1e40], -3, 16)],
)
def test_y_axis_floor_and_top_follow_the_data(values, first, last):
    assert axis_decades(parse(svg.channel_errors([("a", values)]))) == (first, last)


def test_bound_line_is_horizontal_at_the_bound():
    root = parse(svg.channel_errors([("a", [1e-3, 5.0])]))
    (line,) = find(root, "line", "bound-line")
    assert line.get("y1") == line.get("y2")
    assert tick_y(root, 1) < float(line.get("y1")) < tick_y(root, -1)


def test_series_classes_cycle_through_eight():
    root = parse(svg.channel_errors([(f"s{i}", [0.1]) for i in range(10)]))
    assert [e.get("class") for e in find(root, "rect", "bar")] == [f"bar s{i % 8}" for i in range(10)]


def test_many_channels_share_bars_taking_the_max():
    values = [1e-4] * 1000
    values[500] = 50.0
    root = parse(svg.channel_errors([("train0.y", values), ("train0.dx", [1e-3] * 10)]))
    bars = find(root, "rect", "bar s0")
    assert len(bars) == 250 and len(find(root, "rect", "bar s1")) == 3  # buckets of 4 channels
    assert len(find(root, "rect", "bar over")) == 1
    assert "".join(find(root, "rect", "bar over")[0].itertext()) == "train0.y c500-503: 50"
    assert any(t.startswith("channels 0-3, 4-7") for t in texts(root))
    assert len([t for t in find(root, "text", "tick-label") if t.text.startswith("c")]) <= 16


def test_no_caption_when_every_channel_has_its_bar():
    root = parse(svg.channel_errors([("a", [0.1] * 256)]))
    assert len(find(root, "rect", "bar")) == 256 and not find(root, "text", "caption")


# ---- dataflow ---------------------------------------------------------------------------------


def stage_boxes(root) -> dict[str, ET.Element]:
    return {e.get("data-stage"): e for e in root.iter() if e.get("data-stage")}


def test_one_box_per_localization_stage():
    from crossbn.verdict.localize import STAGES

    root = parse(diagrams.dataflow({}, highlighted=set()))
    boxes = stage_boxes(root)
    assert set(boxes) == set(STAGES) and len([e for e in root.iter() if e.get("data-stage")]) == len(STAGES)
    assert all(b.get("class") == "stage v-none" for b in boxes.values())
    assert not find(root, "*", "highlighted") and "first departs here" not in texts(root)
    assert {"x", "y", "dy", "eps", "γ, β"} <= set(texts(root))
    assert {"match", "convention", "deviation", "nan-mismatch"} <= set(texts(root))  # legend


def test_boxes_carry_their_verdict_and_only_the_highlighted_one_is_highlighted():
    verdicts = {
        "batch mean": "match",
        "batch variance": "deviation",
        "running mean": "convention",
        "dx": "nan-mismatch",
        "dgamma": "",
    }
    root = parse(diagrams.dataflow(verdicts, highlighted={"batch variance"}))
    boxes = stage_boxes(root)
    for name, v in verdicts.items():
        assert boxes[name].get("class").split()[:2] == ["stage", f"v-{v or 'none'}"]
    assert find(root, "*", "highlighted") == [boxes["batch variance"]]
    assert texts(root).count("first departs here") == 1


def test_highlighting_batch_statistics_highlights_the_group_around_mean_and_variance():
    root = parse(diagrams.dataflow({"batch statistics": "deviation"}, highlighted={"batch statistics"}))
    boxes = stage_boxes(root)
    group = boxes["batch statistics"]
    assert find(root, "*", "highlighted") == [group] and "v-deviation" in group.get("class").split()

    def extent(e):
        x, y = float(e.get("x")), float(e.get("y"))
        return x, y, x + float(e.get("width")), y + float(e.get("height"))

    gx0, gy0, gx1, gy1 = extent(group)
    for inner in ("batch mean", "batch variance"):
        x0, y0, x1, y1 = extent(boxes[inner])
        assert gx0 < x0 < x1 < gx1 and gy0 < y0 < y1 < gy1
    x0, _, _, _ = extent(boxes["inverse std"])
    assert x0 > gx1


def test_a_verdict_cannot_break_out_of_its_class_attribute():
    root = parse(diagrams.dataflow({"dx": 'x" onload="alert(1)'}, highlighted=set()))
    assert stage_boxes(root)["dx"].get("class") == "stage v-x-onload-alert-1"
    assert not [a for e in root.iter() for a in e.attrib if a.startswith("on")]


def test_arrows_connect_the_stages():
    root = parse(diagrams.dataflow({}, highlighted=set()))
    edges = find(root, "*", "edge")
    assert len(edges) == len(diagrams._FLOW) and len(find(root, "polygon", "arrowhead")) == len(edges)


# ---- network_graph ----------------------------------------------------------------------------


def nodes(root) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("data-layer") is not None]


def test_one_node_per_layer_plus_input_top_to_bottom():
    root = parse(diagrams.network_graph(RESNET, highlighted=set()))
    drawn = nodes(root)
    assert [n.get("data-layer") for n in drawn] == ["input"] + [la["name"] for la in RESNET]
    ys = [float(n.get("y")) for n in drawn]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)
    assert [n.get("class") for n in drawn[:3]] == ["layer input", "layer op-conv", "layer op-bn"]


def test_one_edge_per_input_reference_and_skip_edges_are_paths():
    root = parse(diagrams.network_graph(RESNET, highlighted=set()))
    edges = find(root, "*", "edge")
    assert len(edges) == sum(len(la["inputs"]) for la in RESNET) == 10
    skips = find(root, "*", "edge skip")
    assert len(skips) == 2 and all(e.tag == NS + "path" for e in skips)  # add1<-relu1, add2<-input
    assert all(e.tag == NS + "line" for e in edges if e not in skips)


def test_introducing_layers_are_marked_and_only_they():
    root = parse(diagrams.network_graph(RESNET, highlighted={"bn1", "add2"}))
    marked = find(root, "*", "introduces")
    assert [n.get("data-layer") for n in marked] == ["bn1", "add2"]
    assert texts(root).count("introduces") == 2


def test_node_text_shows_delta_and_r_or_a_dash():
    layers = [
        layer("conv1", delta=1.2e-7, R=3.4),
        layer("bn1", "bn", ["conv1"], delta=None, R=None),
        layer("relu", "relu", ["bn1"], delta="nan", R="inf"),
        layer("odd", "?", ["relu"]),
    ]
    root = parse(diagrams.network_graph(layers, highlighted=set()))
    t = texts(root)
    assert "conv1  conv" in t and "δ 1.2e-07  R 3.4" in t
    assert "δ –  R –" in t and "δ nan  R inf" in t
    assert nodes(root)[-1].get("class") == "layer op-unknown"


def test_thirty_layers_fit_and_unknown_inputs_are_left_out():
    layers = [layer("l0")] + [layer(f"l{i}", "relu", [f"l{i - 1}"]) for i in range(1, 30)]
    layers.append(layer("ghost", "add", ["l29", "not-a-layer"]))
    root = parse(diagrams.network_graph(layers, highlighted={"l7"}))
    assert len(nodes(root)) == 32 and len(find(root, "*", "edge")) == 31
    height = float(root.get("viewBox").split()[3])
    last = nodes(root)[-1]
    assert float(last.get("y")) + float(last.get("height")) <= height


def test_numbers_are_three_significant_digits():
    root = parse(diagrams.network_graph([layer("a", delta=math.pi * 1e-7, R=123456.0)], highlighted=set()))
    assert "δ 3.14e-07  R 1.23e+05" in texts(root)
    (bar,) = find(parse(svg.channel_errors([("a", [math.pi])])), "rect", "bar")
    assert "".join(bar.itertext()) == "a c0: 3.14"
