"""The localization-accuracy benchmark (benchmarks/localization.py): its tally
on made-up records, the planted faults it adds (each where it says it is),
and one small real run that finds the planted stages. The figures
themselves are measured by `python -m benchmarks.localization`, never asserted here."""

import json

import numpy as np
import pytest

from benchmarks import localization as bench
from crossbn.backends import discover, load
from crossbn.oracle.inputs import generate
from crossbn.spec.case import Case
from crossbn.verdict.localize import STAGES


def _rec(fault, verdict="deviation", stage=None, diagnosis=None, dtype="float32", case_id="c1"):
    return {
        "backend": f"planted-{fault}",
        "case_id": case_id,
        "pytest_id": f"p-{case_id}",
        "group": "g",
        "case": {"dtype": dtype},
        "verdict": verdict,
        "localization": {
            "stage": stage,
            "how": "observed",
            "probes": [{"name": "momentum-0", "ran": True, "verdict": "match"}],
        }
        if stage
        else None,
        "diagnosis": diagnosis,
    }


def test_tally_counts_findings_stage_and_fingerprint_per_fault():
    records = [
        _rec("mean", stage="batch mean", diagnosis={"changes": {}, "explains": False}),  # right, right
        _rec("mean", stage="normalized", diagnosis={"changes": {}, "explains": False}, case_id="c2"),  # stage wrong
        _rec("mean", stage="batch mean", diagnosis={"changes": {"input": "float16"}, "explains": True}, case_id="c3"),
        _rec("mean", verdict="match"),
        _rec("mean", verdict="unsupported"),
        # a formulation fault: "$dtype" is the case's dtype
        _rec("half-reductions", stage="batch mean", diagnosis={"changes": {"reduce": "bfloat16"}}, dtype="bfloat16"),
        _rec(
            "half-reductions",
            stage="batch mean",
            diagnosis={"changes": {"reduce": "float16"}},
            dtype="bfloat16",
            case_id="c5",
        ),
        # the right changes, but the confidence says nothing explains it
        _rec(
            "half-reductions",
            stage="dx",
            diagnosis={"changes": {"reduce": "float16"}, "confidence": {"level": "unexplained"}},
            dtype="float16",
            case_id="c6",
        ),
        _rec("not-a-fault"),  # another backend: ignored
    ]
    per = bench.tally(records)
    assert set(per) == {"mean", "half-reductions"}
    m, h = per["mean"], per["half-reductions"]
    assert (m.results, m.unsupported, m.findings, m.localized, m.fingerprinted) == (5, 1, 3, 2, 2)
    assert (h.results, h.findings, h.localized, h.fingerprinted) == (3, 3, 3, 1)
    assert [(w["case_id"], w["wrong"]) for w in m.wrong + h.wrong] == [
        ("c2", ["localized"]),
        ("c3", ["fingerprinted"]),
        ("c5", ["fingerprinted"]),
        ("c6", ["fingerprinted"]),
    ]
    assert m.wrong[0]["probes"] == [{"name": "momentum-0", "ran": True, "verdict": "match"}]
    text = bench.tables(per)
    assert "| **all** | 8 | 1 | 6 | **83.3% (5)** | **50.0% (3)** |" in text
    assert "findings localized right: 83.3%, **not met**" in text
    # the misses grouped by what was found instead, largest group first
    assert "| mean | stage normalized (observed) | 1 | c2 (float32, g) |" in text
    assert "| half-reductions | stage right; diagnosis reduce=float16 (explains None, unexplained) | 1 |" in text


def test_a_plain_bug_is_fingerprinted_right_only_when_nothing_claims_to_explain_it():
    def right(diag):
        return bench.judge_finding("mean", _rec("mean", stage="batch mean", diagnosis=diag))["fingerprinted"]

    assert right(None) and right({"explains": False})
    assert not right({"explains": True})
    # the confidence, where present, decides
    assert right({"explains": True, "confidence": {"level": "unexplained"}})
    assert not right({"explains": False, "confidence": {"level": "ambiguous"}})


def test_every_planted_fault_has_an_expectation_in_real_stages():
    spec = {k.removeprefix("planted-") for k in discover((str(bench.PLANTED),)) if k.startswith("planted-")}
    assert spec - {"none"} == set(bench.EXPECT)
    for fault, exp in bench.EXPECT.items():
        assert exp.stages and set(exp.stages) <= set(STAGES), fault


@pytest.fixture(scope="module")
def planted():
    specs = discover((str(bench.PLANTED),))
    return lambda name: load(specs[f"planted-{name}"])


def _run(planted, name, case):
    return planted(name).run(case, generate(case), "cpu")


_CASE = Case(shape=(8, 3, 4), train_steps=2, eval_step=True, seed=1)


@pytest.mark.parametrize("fault", ["invstd-eval", "normalized-eval", "affine-eval", "dx-eval", "dgamma-eval"])
def test_an_eval_fault_leaves_the_training_steps_right(planted, fault):
    case = Case(shape=(8, 3, 4), train_steps=2, eval_step=True, gradients=True, seed=1)
    good, bad = _run(planted, "none", case), _run(planted, fault, case)
    assert good.keys() == bad.keys()
    assert all(np.array_equal(good[k], bad[k]) for k in good if not k.startswith("eval.")), fault
    assert any(not np.array_equal(good[k], bad[k]) for k in good if k.startswith("eval.")), fault


@pytest.mark.parametrize("fault", ["running-mean-hidden", "running-var-hidden"])
def test_hidden_running_statistics_first_show_in_eval(planted, fault):
    good, bad = _run(planted, "none", _CASE), _run(planted, fault, _CASE)
    assert not any("running" in k for k in bad)
    assert all(np.array_equal(good[k], bad[k]) for k in bad if not k.startswith("eval."))
    assert not np.array_equal(good["eval.y"], bad["eval.y"])


def test_formulation_plants_compute_what_they_say(planted):
    case = Case(shape=(64, 2), train_steps=1, dtype="float32", offset_ratio=1000.0, seed=2)
    x = generate(case)["x0"]
    seq = _run(planted, "sequential", case)["train0.batch_mean"]
    running = np.zeros(2, np.float32)
    for row in x:  # a running sum in memory order, then times 1/n
        running = (running + row).astype(np.float32)
    assert np.array_equal(seq, (running * np.float32(1 / 64)).astype(np.float32))
    rounded = _run(planted, "input-f16", case)["train0.batch_mean"]
    assert np.array_equal(rounded, x.astype(np.float16).astype(np.float32).mean(axis=0))
    flat = Case(
        shape=(64, 2), train_steps=1, dtype="float32", distribution="constant_channel", offset_ratio=1e4, seed=2
    )
    with np.errstate(invalid="ignore"):  # the square root of the negative variance: NaN, as planted
        var = _run(planted, "one-pass-unclamped", flat)["train0.batch_var"]
    clamped = _run(planted, "one-pass", flat)["train0.batch_var"]
    assert (var < 0).any() and (clamped >= 0).all() and np.array_equal(np.maximum(var, 0), clamped)
    assert planted("input-f16").supports(Case(shape=(4, 2), dtype="float16"))  # a reason: declined


@pytest.mark.slow
def test_a_small_real_run_finds_the_planted_stages(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = bench.main(["--every", "40", "--dtypes", "float32,float64", "--faults", "mean,running-var", "--out", str(out)])
    assert rc == 0
    raw = json.loads((out / "localization.json").read_text())
    for fault in ("mean", "running-var"):
        t = raw["per_fault"][fault]
        assert t["findings"] >= 3 and t["localized"] == t["findings"], (fault, t)
    assert "| mean |" in capsys.readouterr().out
