"""Backend against backend (crossbn/report/pairs.py): on tests/test_report.py's
real runs (a two-pass and a one-pass NumPy BatchNorm in real worker
processes), the state of every (case, device) follows the two verdicts, the
bounds the records give on the two backends' difference hold for their
actual outputs (recomputed here by the same backends), and
`crossbn report --pair` shows just the named pair, or names a bad one in
one line and stops before writing anything."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from backends.numpy_variants import OnePass, TwoPass
from test_report import runs  # noqa: F401 - the fixture: two real runs and their merged report

from crossbn.oracle.inputs import generate
from crossbn.records.results import read
from crossbn.report import pairs
from crossbn.spec.case import Case
from crossbn.verdict.compare import full_bound
from crossbn.verdict.judge import expectation

A, B = "numpy-twopass", "numpy-onepass"


def _by_case(records, backend):
    return {(r["case_id"], r["device"]): r for r in records if r["backend"] == backend}


def test_each_case_gets_the_state_its_two_verdicts_give(runs):  # noqa: F811
    records = read(runs["a"] / "results.jsonl")
    a, b = _by_case(records, A), _by_case(records, B)
    assert set(a) == set(b)
    states = {k: pairs.compare(a[k], b[k])["state"] for k in a}
    for k, state in states.items():
        va, vb = a[k]["verdict"], b[k]["verdict"]
        if "unsupported" in (va, vb):
            assert state == "not compared"
        elif vb == "deviation":  # the one-pass variance departs at a large offset; the two-pass never does
            assert va == "match" and state == "b departs"
        else:
            assert (va, vb) == ("match", "match") and state in ("identical", "both pass")
    counts = {s: list(states.values()).count(s) for s in set(states.values())}
    assert counts.get("b departs", 0) >= 1 and counts.get("not compared", 0) >= 1
    view = pairs.pair(records, A, B, links={})
    assert view["compared"] == len(states) - counts["not compared"]
    assert view["agree"] == counts.get("identical", 0) + counts.get("both pass", 0)
    assert [r["state"] for r in view["rows"]] == ["b departs"] * counts["b departs"]
    assert view["left_out"] == {}


def test_a_pair_page_lists_a_few_rows_per_state_and_counts_the_rest(runs, monkeypatch):  # noqa: F811
    records = read(runs["a"] / "results.jsonl")
    whole = pairs.pair(records, A, B, links={})
    n = whole["counts"]["b departs"]
    assert n >= 2
    monkeypatch.setattr(pairs, "ROWS_PER_STATE", 1)
    few = pairs.pair(records, A, B, links={})
    assert few["counts"] == whole["counts"] and few["agree"] == whole["agree"]
    assert few["rows"] == whole["rows"][:1] and few["left_out"] == {"b departs": n - 1}


def test_the_bounds_hold_for_the_actual_outputs(runs):  # noqa: F811
    """|a − b| / (2 × bound), measured on both backends' real outputs, lies
    within the interval the records give; identical digests mean identical
    arrays. The one-pass deviations are proven apart (lower bound > 1)."""
    records = read(runs["a"] / "results.jsonl")
    a, b = _by_case(records, A), _by_case(records, B)
    proven_apart = 0
    for k in sorted(a):
        row = pairs.compare(a[k], b[k])
        if row["state"] == "not compared":
            continue
        case = Case.from_dict(a[k]["case"])
        inputs = generate(case)
        out_a, out_b = TwoPass().run(case, inputs, "cpu"), OnePass().run(case, inputs, "cpu")
        exact, model, _ = expectation(case, inputs)
        for name in a[k]["observables"]:
            if name not in b[k]["observables"]:
                continue
            x, y = np.asarray(out_a[name], np.float64), np.asarray(out_b[name], np.float64)
            bound = full_bound(model[name], exact[name], str(out_a[name].dtype))
            both = np.isfinite(x) & np.isfinite(y)
            measured = float(np.max(np.where(both, np.abs(x - y), 0.0) / (2 * bound), initial=0.0))
            one = pairs.compare(
                {**a[k], "observables": {name: a[k]["observables"][name]}},
                {**b[k], "observables": {name: b[k]["observables"][name]}},
            )
            if one["exact"]:
                assert np.array_equal(x, y) and measured == 0.0
                continue
            assert one["low"] * (1 - 1e-9) <= measured <= one["high"] * (1 + 1e-9), (k, name)
            assert float(np.max(np.abs(x - y)[both], initial=0.0)) <= one["abs_high"] * (1 + 1e-9)
            proven_apart += one["low"] > 1
    assert proven_apart >= 1


def _report(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "crossbn", "report", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_report_pair_shows_just_that_pair(runs, tmp_path):  # noqa: F811
    out = tmp_path / "two"
    proc = _report(str(runs["merged"]), "--pair", f"{B},{A}", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "pairs").iterdir()) == [f"{B}--vs--{A}.html"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="grid pair-list"' in index and 'class="grid pair-matrix"' not in index
    assert f'href="pairs/{B}--vs--{A}.html">{B} against {A}</a>' in index
    page = (out / "pairs" / f"{B}--vs--{A}.html").read_text(encoding="utf-8")
    assert f"{B} departs" in page  # the order given: the one-pass backend first


def test_a_bad_pair_is_named_in_one_line_before_any_work(runs, tmp_path):  # noqa: F811
    for value, words in (
        (f"{A},nosuch", f"--pair '{A},nosuch': no results of nosuch here (backends: numpy-hostile, {B}, {A})"),
        (A, f"--pair '{A}': give two backend names separated by a comma"),
        (f"{A},{A}", "a backend against itself"),
    ):
        out = tmp_path / "never"
        proc = _report(str(runs["merged"]), "--pair", value, "--out", str(out))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
        assert not out.exists()
