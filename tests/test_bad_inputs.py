"""Hostile and bad inputs (issue #9): each is a clear error of the loader's
own class, naming what is wrong and where; legitimate edge cases load as
cases to run, not errors.

Every expected message fragment here is what the error must say to be
useful (the file, the table or line, the field, what is allowed), written
from the input, never copied from the output under test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from crossbn.backends import BackendError, choose, discover
from crossbn.records import known, sources
from crossbn.records.results import SCHEMA, ResultsError, read
from crossbn.spec.case import Case
from crossbn.spec.catalogue import CatalogueError
from crossbn.spec.dtypes import NAMES as DTYPES
from crossbn.spec.suites import load_suite
from crossbn.upgrade import baseline

CROSSBN = Path(sys.executable).with_name("crossbn")


def _catalogue(tmp_path, text: str | bytes, name: str = "bad") -> str:
    p = tmp_path / f"{name}.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


def _raises(error, fn, *fragments: str) -> str:
    """Call fn, expect `error`, and every fragment (plain text) in its message."""
    with pytest.raises(error) as info:
        fn()
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in the message: {msg}"
    return msg


# ---------------------------------------------------------------- catalogues: malformed or truncated TOML

VALID = """\
[defaults]
dtype = "float32"

[[group]]
name = "ranks"
train_steps = 2
[group.axes]
shape = [[8, 3], [4, 3, 5]]
layout = ["channels_first", "channels_last"]
"""


def test_the_valid_catalogue_these_tests_cut_loads(tmp_path):
    assert len(load_suite(_catalogue(tmp_path, VALID))) == 3  # rank 2 has one layout


@pytest.mark.parametrize(
    "cut",
    [
        VALID.index("[[group"),
        VALID.index("[[8"),
        VALID.index("[4, 3") + 3,
        VALID.index('"channels_last"') + 5,
        len(VALID) - 2,
    ],
)
def test_truncated_catalogue_names_the_file_and_the_place(tmp_path, cut):
    # each cut leaves an unclosed table header, array or string
    path = _catalogue(tmp_path, VALID[:cut] + ("[[gro" if cut == VALID.index("[[group") else ""))
    msg = _raises(CatalogueError, lambda: load_suite(path), f"{path}: not valid TOML")
    assert re.search(r"\(at (line \d+, column \d+|end of document)\)", msg), msg


def test_catalogue_that_is_not_utf8_is_named(tmp_path):
    path = _catalogue(tmp_path, b'[[group]]\nname = "g\xff"\n')
    _raises(CatalogueError, lambda: load_suite(path), path, "not UTF-8", "0xff")


def test_binary_file_as_catalogue(tmp_path):
    path = _catalogue(tmp_path, bytes(range(256)))
    _raises(CatalogueError, lambda: load_suite(path), path)


def test_model_catalogue_truncated_is_named(tmp_path):
    path = _catalogue(tmp_path, '[[model]]\nname = "m"\nnetwork = "bn_ch')
    _raises(CatalogueError, lambda: load_suite(path), f"{path}: not valid TOML")


# ---------------------------------------------------------------- catalogues: unknown fields and wrong types


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('[[group]]\nname = "g"\nepsilon = 1e-3\n', ["group #1 'g'", "unknown field(s) ['epsilon']", "'eps'"]),
        ("[defaults]\nmomentun = 0.9\n", ["[defaults]", "'momentun'", "'momentum'"]),
        ('[[group]]\nname = "g"\n[group.axes]\nsape = [[8, 3]]\n', ["group #1 'g' [axes]", "'sape'", "'shape'"]),
        ("wat = 1\n", ["unknown top-level key(s) ['wat']", "include, defaults, [[group]]"]),
        ('[[model]]\nname = "m"\nwidth = 3\n', ["[[model]] #1 'm'", "'width'", "'network'"]),
    ],
    ids=["group", "defaults", "axes", "top-level", "model"],
)
def test_unknown_field_is_named_with_the_known_ones(tmp_path, text, fragments):
    path = _catalogue(tmp_path, text)
    _raises(CatalogueError, lambda: load_suite(path), path, *fragments)


@pytest.mark.parametrize(
    "line, field, allowed",
    [
        ('eps = "small"', "eps", "finite number >= 0"),
        ("eps = true", "eps", "finite number >= 0"),
        ('shape = "8x3"', "shape", "list of integers"),
        ("shape = [8.0, 3]", "shape", "list of integers"),
        ("shape = [true, 3]", "shape", "list of integers"),
        ("train_steps = 1.5", "train_steps", "integer >= 0"),
        ("affine = 1", "affine", "true or false"),
        ('seed = "x"', "seed", "integer >= 0"),
        ("distribution = 3", "distribution", "'normal'"),
        ("options = 3", "options", "table of backend switches"),
        ('options = { "flax.use_fast_variance" = 1 }', "options", "must be a bool"),
        ('specials = "nan"', "specials", "[value, step, [index, ...]]"),
        ("description = 3", "description", "must be a string"),
    ],
)
def test_wrong_type_names_the_field_and_what_is_allowed(tmp_path, line, field, allowed):
    path = _catalogue(tmp_path, f'[[group]]\nname = "g"\n{line}\n')
    _raises(CatalogueError, lambda: load_suite(path), f"{path} group #1 'g'", f"'{field}'", allowed)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("group = 3\n", ["'group' must be an array of tables"]),
        ("group = [1]\n", ["group #1: must be a table"]),
        ("defaults = 3\n", ["[defaults] must be a table"]),
        ("[[group]]\nname = 3\n", ["group #1: field 'name' must be a word"]),
        ('[[group]]\nname = "g"\naxes = 3\n', ["[group.axes] must be a table of lists"]),
        ('[[group]]\nname = "g"\n[group.axes]\neps = 0.1\n', ["[axes]: field 'eps' must be a non-empty list"]),
        ("include = 3\n", ["'include' must be a list"]),
        ("include = [3]\n", ["include 3: must be a suite name or a .toml file name"]),
    ],
    ids=["group", "group-item", "defaults", "name", "axes", "axis", "include", "include-item"],
)
def test_wrong_table_shape_names_the_table(tmp_path, text, fragments):
    path = _catalogue(tmp_path, text)
    _raises(CatalogueError, lambda: load_suite(path), path, *fragments)


def test_include_of_a_missing_file_names_the_including_file(tmp_path):
    path = _catalogue(tmp_path, 'include = ["nope.toml"]\n')
    _raises(CatalogueError, lambda: load_suite(path), f"{path}: include 'nope.toml'", str(tmp_path / "nope.toml"))


def test_include_of_an_unknown_suite_lists_the_known_ones(tmp_path):
    path = _catalogue(tmp_path, 'include = ["nosuchsuite"]\n')
    _raises(CatalogueError, lambda: load_suite(path), f"{path}: include 'nosuchsuite'", "known suites:", "default")


# ---------------------------------------------------------------- catalogues: impossible values


@pytest.mark.parametrize(
    "axis, value, allowed",
    [
        ("eps", "-1e-5", ">= 0"),
        ("eps", "nan", "finite"),
        ("eps", "inf", "finite"),
        ("momentum", "1.5", "[0, 1]"),
        ("momentum", "-0.1", "[0, 1]"),
        ("momentum", "nan", "[0, 1]"),
        ("scale", "0.0", "> 0"),
        ("shape", "[8, 0]", "channels C must be >= 1"),
        ("shape", "[8, 3, 0]", "spatial sizes must be >= 1"),
        ("shape", "[-1, 3]", "batch size N must be >= 0"),
        ("shape", "[0, 0]", "channels C must be >= 1"),  # an empty batch still has channels
        ("shape", "[0, 3, 0]", "spatial sizes must be >= 1"),  # and spatial sizes
        ("shape", "[8]", "rank must be 2 to 5"),
        ("shape", "[1, 1, 1, 1, 1, 1]", "rank must be 2 to 5"),
        ("dtype", '"float8"', ", ".join(repr(d) for d in DTYPES)),
        ("layout", '"nhwc"', "'channels_first', 'channels_last'"),
        ("train_steps", "-1", ">= 0"),
        ("seed", "-3", ">= 0"),
    ],
)
def test_impossible_value_names_the_case_the_field_and_what_is_allowed(tmp_path, axis, value, allowed):
    # an axis of two values, the bad one second: the message must say which case
    good = {
        "eps": "1e-3",
        "momentum": "0.9",
        "scale": "1.0",
        "shape": "[8, 3]",
        "dtype": '"float32"',
        "layout": '"channels_first"',
        "train_steps": "1",
        "seed": "0",
    }[axis]
    path = _catalogue(tmp_path, f'[[group]]\nname = "g"\n[group.axes]\n{axis} = [{good}, {value}]\n')
    msg = _raises(
        CatalogueError, lambda: load_suite(path), f"{path} group #1 'g', case ({axis}=", f"field '{axis}'", allowed
    )
    good_value = tomllib.loads(f"v = {good}")["v"]
    assert f"case ({axis}={good_value!r})" not in msg  # it names the bad case, not the good one


@pytest.mark.parametrize(
    "specials, fragment",
    [
        ('[["nan", 0, [0]]]', "index (0,) has 1 coordinate(s), the shape (8, 3) has 2"),  # mismatched shapes
        ('[["nan", 0, [8, 0]]]', "index (8, 0) is outside shape (8, 3)"),
        ('[["nan", 2, [0, 0]]]', "step 2 is not one of the case's 2 steps"),
        ('[["zero", 0, [0, 0]]]', "must be one of ('nan', 'inf', '-inf')"),
    ],
)
def test_impossible_special_value_is_named(tmp_path, specials, fragment):
    path = _catalogue(tmp_path, f'[[group]]\nname = "g"\nshape = [8, 3]\nspecials = {specials}\n')
    _raises(CatalogueError, lambda: load_suite(path), f"{path} group #1 'g'", "field 'specials'", fragment)


def test_model_catalogue_impossible_values_are_named(tmp_path):
    path = _catalogue(tmp_path, '[[model]]\nname = "m"\nnetwork = "resnet"\n')
    _raises(CatalogueError, lambda: load_suite(path), "[[model]] #1 'm'", "field 'network'", "residual_block")
    path = _catalogue(tmp_path, '[[model]]\nname = "m"\nnetwork = "bn_chain"\nbatch = 1\n')
    _raises(CatalogueError, lambda: load_suite(path), "[[model]] #1 'm'", "field 'batch'", ">= 2")


# ---------------------------------------------------------------- legitimate edge cases: cases, not errors


def _only(tmp_path, body: str) -> Case:
    cases = load_suite(_catalogue(tmp_path, f'[[group]]\nname = "edge"\n{body}\n', name="edge"))
    assert len(cases) == 1
    return cases[0]


def _oracle_runs(case: Case) -> dict:
    """The case's inputs and the oracle's outputs: what every backend is held to."""
    from crossbn.oracle import inputs
    from crossbn.verdict.judge import expectation

    x = inputs.generate(case)
    exp, _, _ = expectation(case, x)
    return {"inputs": x, "expected": exp}


def test_eps_zero_is_a_case(tmp_path):
    case = _only(tmp_path, "eps = 0")
    assert case.eps == 0.0
    exp = _oracle_runs(case)["expected"]
    assert np.all(np.isfinite(exp["train0.y"]))  # normal inputs: var > 0, so eps 0 divides by nothing zero


@pytest.mark.parametrize("shape", [[1, 3], [1, 3, 1, 1], [1, 2, 1, 1, 1]])
def test_one_value_per_channel_is_a_case(tmp_path, shape):
    case = _only(tmp_path, f"shape = {shape}")
    assert case.reduction_size == 1
    exp = _oracle_runs(case)["expected"]
    # one value per channel: the batch variance is exactly 0 and x - mean is exactly 0
    assert np.all(exp["train0.batch_var"] == 0)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_inputs_are_a_case(tmp_path, value):
    case = _only(tmp_path, f'shape = [4, 2]\nspecials = [["{value}", 0, [1, 1]]]')
    assert case.specials == ((value, 0, (1, 1)),)
    ran = _oracle_runs(case)
    x = ran["inputs"]["x0"]
    assert str(x[1, 1]) == value and np.isfinite(np.delete(x.ravel(), 1 * 2 + 1)).all()
    # the planted value poisons its channel's statistics in the oracle too
    assert not np.isfinite(ran["expected"]["train0.batch_mean"][1])
    assert np.isfinite(ran["expected"]["train0.batch_mean"][0])


def test_eval_only_case_is_a_case(tmp_path):
    case = _only(tmp_path, "train_steps = 0\neval_step = true")
    assert case.steps == ("eval",)


@pytest.mark.parametrize("shape", [[0, 3], [0, 3, 4, 4]])
def test_empty_batch_is_a_case(tmp_path, shape):
    case = _only(tmp_path, f"shape = {shape}\ntrain_steps = 2")
    assert case.shape == tuple(shape) and case.reduction_size == 0
    ran = _oracle_runs(case)
    assert ran["inputs"]["x0"].shape == tuple(shape)
    exp = ran["expected"]
    # docs/cases.md, "An empty batch": the statistics of no values are NaN, and the
    # running statistics updated with them too; y and dx are empty; dgamma
    # and dbeta are sums over nothing, 0; eval reads NaN running statistics
    for step in ("train0", "train1"):
        for key in ("batch_mean", "batch_var", "invstd", "running_mean", "running_var"):
            assert np.all(np.isnan(exp[f"{step}.{key}"])), (step, key)
    for step in ("train0", "train1", "eval"):
        assert exp[f"{step}.y"].shape == exp[f"{step}.dx"].shape == tuple(shape)
        np.testing.assert_array_equal(exp[f"{step}.dgamma"], np.zeros(3))
        np.testing.assert_array_equal(exp[f"{step}.dbeta"], np.zeros(3))


def test_empty_batch_under_the_keep_convention_keeps_the_running_statistics(tmp_path):
    """PyTorch's convention (empty_batch="skip"): the running statistics as
    given, with the error bound of the stored state (zero: given exactly)."""
    from crossbn.oracle import expected, inputs
    from crossbn.oracle.tolerance import model_bounds

    case = _only(tmp_path, "shape = [0, 3, 4, 4]\ntrain_steps = 2")
    x = inputs.generate(case)
    exp, traces = expected.simulate(case, x, running_var="unbiased", empty_batch="skip")
    bounds = model_bounds(case, traces)
    for step in ("train0", "train1"):
        np.testing.assert_array_equal(exp[f"{step}.running_mean"], x["running_mean"].astype(np.float64))
        np.testing.assert_array_equal(exp[f"{step}.running_var"], x["running_var"].astype(np.float64))
        np.testing.assert_array_equal(bounds[f"{step}.running_mean"], np.zeros(3))
        assert np.all(np.isnan(exp[f"{step}.batch_mean"]))
    with pytest.raises(ValueError, match="empty_batch"):
        expected.simulate(case, x, empty_batch="keep")


class _NoWorker:
    """Probes are refused: the judgement's own comparison, localization and
    fingerprint still run, with no framework."""

    def run(self, case, inputs, device, timeout):
        from crossbn.execution.runner import Outcome

        return Outcome(status="error", message="no worker in this test")


def _judge_outputs(case, backend_name, change=None):
    """The whole judgement of `backend_name` (its declared conventions; no
    framework imported) on outputs that are the oracle's, rounded to float32,
    with `change(outputs, inputs)` applied: verdict, localization, fingerprint."""
    from crossbn.backends import discover, load
    from crossbn.oracle import inputs
    from crossbn.verdict.judge import Clock, Judged, explain_finding

    backend = load(discover()[backend_name])
    x = inputs.generate(case)
    exp = _oracle_runs(case)["expected"]
    out = {k: v.astype(np.float32) for k, v in exp.items() if k.split(".")[1] not in ("batch_var", "invstd")}
    if change:
        change(out, x)
    judged = Judged(case, x, out, backend)
    assert judged.broken is None
    where, diagnosis, _ = explain_finding(judged, backend, backend.name, "cpu", _NoWorker(), 10.0, Clock(), None)
    return judged, where, diagnosis


@pytest.mark.parametrize("shape", [[0, 3], [0, 3, 4, 4]])
def test_empty_batch_judged_without_a_framework(tmp_path, shape):
    """Every stage after the backend (compare, tolerance, localize, the
    formulation fingerprint) on an empty batch: a verdict, never an internal
    error, and the one the semantics of docs/cases.md give."""
    case = _only(tmp_path, f"shape = {shape}")

    # a backend with canonical conventions returning the canonical result: a match
    judged, where, diagnosis = _judge_outputs(case, "tf-nn")
    assert judged.comparison.verdict == "match"
    assert "empty batch" in "; ".join(judged.notes)
    assert diagnosis["explains"] and diagnosis["changes"] == {}

    # PyTorch's documented convention: running statistics kept, not NaN
    def kept(out, x):
        for k in ("train0.running_mean", "train0.running_var"):
            out[k] = x[k.split(".")[1]].copy()
        del out["train0.batch_mean"]  # PyTorch's kernel forms no statistic of an empty batch

    judged, where, diagnosis = _judge_outputs(case, "torch", kept)
    off = {k: o.verdict for k, o in judged.comparison.observables.items() if o.verdict != "match"}
    assert off == {"train0.running_mean": "convention", "train0.running_var": "convention"}
    assert judged.comparison.verdict == "convention" and where["stage"] == "running mean"
    assert diagnosis["explains"] and diagnosis["changes"] == {}  # as documented, nothing beyond
    assert "empty_batch=skip" in "; ".join(judged.notes)

    # the same kept statistics from a backend that does not declare it: not a convention
    judged, _, _ = _judge_outputs(case, "tf-nn", kept)
    assert judged.comparison.verdict == "nan-mismatch"

    # gamma folded into the NaN inverse std: dgamma NaN where the empty sum is 0
    def nan_dgamma(out, x):
        out["train0.dgamma"] = np.full(3, np.nan, np.float32)

    judged, where, diagnosis = _judge_outputs(case, "keras-tensorflow", nan_dgamma)
    assert judged.comparison.verdict == "nan-mismatch" and where["stage"] == "dgamma"
    assert not diagnosis["explains"]


# ---------------------------------------------------------------- results files


def _record(i: int, **extra) -> dict:
    return {
        "schema": SCHEMA,
        "case_id": f"{i:012x}",
        "backend": "torch",
        "device": "cpu",
        "verdict": "match",
        "pytest_id": f"g-f32-8x3-cf-t1e-{i:08x}",
        "observables": {},
        **extra,
    }


def _results(tmp_path, data: bytes) -> Path:
    path = tmp_path / "run" / "results.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _lines(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_empty_results_file_is_zero_records(tmp_path):
    assert read(_results(tmp_path, b"")) == []


def test_torn_last_line_is_skipped(tmp_path):
    """What a killed writer leaves: an interrupted run's results still read."""
    whole = [_record(0), _record(1)]
    torn = json.dumps(_record(2)).encode()[:17]
    assert read(_results(tmp_path, _lines(whole) + torn)) == whole


def test_bad_line_before_the_last_is_an_error_naming_the_line(tmp_path):
    path = _results(tmp_path, _lines([_record(0)]) + b'{"schema": 1, "case_id\n' + _lines([_record(1)]))
    _raises(ResultsError, lambda: read(path), f"{path}:2: not a JSON record")


@pytest.mark.parametrize(
    "data, line, fragment",
    [
        (b"case,backend,verdict\nabc,torch,match\n", 1, "not a JSON record"),
        (b"\xff\xfe\x00\x01 not text", 1, "not a JSON record"),  # no newline, but no record begun either
        (b'[{"case_id": "a"}]\n', 1, "a JSON array, not a record"),
        (b'{"schema": 1}\n"just a string"\n', 2, "a JSON string, not a record"),
    ],
    ids=["csv", "binary", "array", "string"],
)
def test_results_file_that_is_not_json_lines_is_named(tmp_path, data, line, fragment):
    path = _results(tmp_path, data)
    _raises(ResultsError, lambda: read(path), f"{path}:{line}: {fragment}")


def test_results_from_a_newer_schema_are_refused(tmp_path):
    path = _results(tmp_path, _lines([_record(0), _record(1, schema=SCHEMA + 1)]))
    _raises(
        ResultsError,
        lambda: read(path),
        f"{path}:2: schema: written by a newer crossbn: schema {SCHEMA + 1}, this crossbn reads up to {SCHEMA}",
    )


def test_results_schema_that_is_not_a_number_is_refused(tmp_path):
    path = _results(tmp_path, _lines([_record(0, schema="1")]))
    _raises(ResultsError, lambda: read(path), f"{path}:1: schema: '1' is not a version number")


def test_report_sources_turn_a_bad_results_file_into_a_report_error(tmp_path):
    path = _results(tmp_path, _lines([_record(0, schema=SCHEMA + 1)]))
    _raises(sources.ReportError, lambda: sources.load([str(path)]), f"{path}:1: schema")


def test_baseline_from_bad_results_is_a_baseline_error(tmp_path):
    path = _results(tmp_path, b"not json\n")
    _raises(baseline.BaselineError, lambda: baseline.load(str(path), root=tmp_path / "baselines"), f"{path}:1")
    _raises(baseline.BaselineError, lambda: baseline.save("b", str(path), root=tmp_path / "baselines"), f"{path}:1")


def test_baseline_from_records_that_are_not_results_is_a_baseline_error(tmp_path):
    path = _results(tmp_path, b'{"schema": 1, "case_id": "a"}\n')
    _raises(
        baseline.BaselineError,
        lambda: baseline.load(str(path), root=tmp_path / "baselines"),
        f"{path}: record 1: not a crossbn result",
        "backend",
    )


# ---------------------------------------------------------------- baseline files


@pytest.fixture
def saved(tmp_path) -> Path:
    """baselines/base, saved by crossbn from two results."""
    src = _results(tmp_path, _lines([_record(0), _record(1, verdict="deviation")]))
    return baseline.save("base", str(src), root=tmp_path / "baselines")


def test_the_saved_baseline_loads(saved):
    assert len(baseline.load("base", root=saved.parent)) == 2


def test_truncated_baseline_is_named(saved):
    path = saved / "baseline.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    n = data.count(b"\n")  # the cut falls in the last line
    _raises(
        baseline.BaselineError, lambda: baseline.load("base", root=saved.parent), f"{path}:{n}: not JSON", "truncated?"
    )


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"<html>not a baseline</html>\n", ":1: not JSON"),
        (b"\xff\xfe\n", ":1: not JSON"),
        (b'{"case_id": "a", "backend": "torch"}\n', ":1: not a baseline entry"),
        (b"[1, 2]\n", ":1: not a baseline entry"),
    ],
    ids=["html", "binary", "missing-fields", "array"],
)
def test_baseline_that_is_not_json_lines_of_entries_is_named(saved, data, fragment):
    (saved / "baseline.jsonl").write_bytes(data)
    _raises(
        baseline.BaselineError,
        lambda: baseline.load("base", root=saved.parent),
        f"{saved / 'baseline.jsonl'}{fragment}",
    )


def test_baseline_from_a_newer_schema_is_refused(saved):
    meta = json.loads((saved / "meta.json").read_text())
    (saved / "meta.json").write_text(json.dumps({**meta, "schema": baseline.SCHEMA + 1}))
    _raises(
        baseline.BaselineError,
        lambda: baseline.load("base", root=saved.parent),
        f"{saved / 'meta.json'}: schema: written by a newer crossbn: schema {baseline.SCHEMA + 1}, "
        f"this crossbn reads up to {baseline.SCHEMA}",
    )


def test_baseline_meta_that_is_not_json_is_named(saved):
    (saved / "meta.json").write_text('{"schema": 1, "name": "ba')
    _raises(
        baseline.BaselineError, lambda: baseline.load("base", root=saved.parent), f"{saved / 'meta.json'}: not JSON"
    )


# ---------------------------------------------------------------- known-differences files


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b'[[known]]\nbackend = "torch"\nreason = "one-pa', "not valid TOML"),
        (b'[[known]]\nbackend = "torch\xff"\n', "not UTF-8"),
        (b'[[known]]\nbackend = "torch"\nreason = 3\n', "[[known]] #1: 'reason' must be a string"),
        (b'[[known]]\nbackend = "torch"\nreason = "r"\nbackends = "x"\n', "[[known]] #1: unknown field(s) backends"),
    ],
    ids=["truncated", "binary", "wrong-type", "unknown-field"],
)
def test_bad_known_differences_file_is_named(tmp_path, data, fragment):
    path = tmp_path / "known.toml"
    path.write_bytes(data)
    _raises(known.KnownError, lambda: known.load(path), str(path), fragment)


# ---------------------------------------------------------------- backend and device names


def test_unknown_backend_lists_the_valid_ones():
    specs = discover()
    msg = _raises(BackendError, lambda: choose("torch,nope", specs), "unknown backend(s) nope; known:")
    assert all(name in msg for name in specs)


def test_a_backends_value_that_names_nothing_is_an_error():
    _raises(BackendError, lambda: choose(" , ", discover()), "names no backend; known:", "torch")


# ---------------------------------------------------------------- custom backend modules that fail to import


@pytest.mark.parametrize(
    "source, fragments",
    [
        ("class Mine(:\n", ["import failed: SyntaxError", "line 1"]),
        (
            "import os\nimport crossbn_no_such_framework\n",
            ["import failed: ModuleNotFoundError", "crossbn_no_such_framework", "mine.py:2)"],
        ),
        ("x = 1\nraise RuntimeError('no GPU here')\n", ["import failed: RuntimeError: no GPU here", "mine.py:2)"]),
        # a script that parses its arguments at import would otherwise end crossbn with its own usage
        ("import sys\nsys.exit(2)\n", ["import failed: SystemExit: 2", "mine.py:2)"]),
        ("x = 1\n", ["defines no crossbn Backend subclass"]),
    ],
    ids=["syntax", "import", "exception", "exit", "empty"],
)
def test_backend_module_that_fails_to_import_names_file_and_exception(tmp_path, source, fragments):
    path = tmp_path / "mine.py"
    path.write_text(source)
    _raises(BackendError, lambda: discover((str(path),)), f"backend module {path}", *fragments)


def test_backend_module_that_is_not_a_file_is_named(tmp_path):
    _raises(BackendError, lambda: discover((str(tmp_path),)), f"backend module {tmp_path}: not a file")
    _raises(BackendError, lambda: discover((str(tmp_path / "gone.py"),)), "gone.py: no such file")


# ---------------------------------------------------------------- the command line: exit 2, the message on stderr


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(CROSSBN), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_run_with_a_malformed_catalogue(tmp_path):
    path = _catalogue(tmp_path, '[[group]]\nname = "g"\nmomentum = 2\n')
    r = _cli(
        "run",
        "--suite",
        path,
        "--backends",
        "torch",
        "--out",
        str(tmp_path / "out"),
        "--no-conventions",
        "-n",
        "0",
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{path} group #1 'g'" in r.stderr and "field 'momentum'" in r.stderr and "[0, 1]" in r.stderr


def test_cli_run_with_unknown_backend_and_device_names(tmp_path):
    r = _cli("run", "--backends", "nope", "--out", str(tmp_path / "out"), "--no-conventions", "-n", "0", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown backend(s) nope; known:" in r.stderr and "torch" in r.stderr
    r = _cli(
        "run",
        "--backends",
        "torch",
        "--devices",
        "tpu",
        "--out",
        str(tmp_path / "out"),
        "--no-conventions",
        "-n",
        "0",
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown device(s) tpu; known: cpu, cuda" in r.stderr


def test_cli_backends_with_a_module_that_exits_at_import(tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("import argparse\nargparse.ArgumentParser().parse_args(['--mine'])\n")
    r = _cli("backends", "--backend-module", str(mine), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"backend module {mine}: import failed: SystemExit" in r.stderr


def test_cli_compare_and_known_with_bad_files(tmp_path):
    src = _results(tmp_path, _lines([_record(0)]))
    folder = baseline.save("base", str(src), root=tmp_path / "baselines")
    (folder / "meta.json").write_text(json.dumps({"schema": baseline.SCHEMA + 1}))
    r = _cli("compare", "base", str(src), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "meta.json: schema: written by a newer crossbn" in r.stderr

    bad = _results(tmp_path, _lines([_record(0)]) + b"garbage\n" + _lines([_record(1)]))
    (tmp_path / "known.toml").write_text('[[known]]\nbackend = "torch"\nreason = "r"\n')
    r = _cli("known", "known.toml", str(bad), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{bad}:2: not a JSON record" in r.stderr
