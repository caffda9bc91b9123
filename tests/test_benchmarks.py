"""The benchmark runner's arithmetic and its errors; the figures themselves
are measured by `python -m benchmarks`, never asserted here."""

import subprocess
import sys
from pathlib import Path

from benchmarks import goals
from benchmarks.common import Spread

ROOT = Path(__file__).resolve().parent.parent


def _raw(ratio, speedup, oracle, wall, harness_mb, largest_mb):
    return {
        "overhead": {"total": {"ratio": Spread([ratio]), "bare": Spread([100.0])}},
        "scaling": {"speedup": {1: 1.0, 2: speedup}, "walls": {1: Spread([ratio * 100.0]), 2: Spread([50.0])}},
        "suite": {
            "oracle": Spread([oracle]),
            "wall": Spread([wall]),
            "harness_mb": Spread([harness_mb]),
            "largest": {"harness_mb": largest_mb},
        },
    }


def test_each_goal_is_met_on_its_own_side_of_its_target():
    met = goals.rows(_raw(1.2, 1.8, 10.0, 100.0, 240.0, 200.0))[:5]
    assert [r[3] for r in met] == ["met"] * 5
    missed = goals.rows(_raw(1.3, 1.6, 16.0, 100.0, 260.0, 200.0))[:5]
    assert [r[3] for r in missed] == ["**not met**"] * 5
    # the figures the table shows: -n 1's wall (130 s) against the bare loops' (100 s) is the one-run row
    assert [r[2] for r in missed][:4] == ["1.30x", "1.30x", "1.60x", "16.0%"]


def test_memory_is_held_to_the_same_run_on_the_largest_cases_alone():
    (_, _, measured, ok) = goals.rows(_raw(1, 2, 1, 100, 240.0, 200.0))[4]
    assert measured == "240 MB against 200 MB (largest harness process): 1.20x" and ok == "met"


def test_goals_from_json_figures_and_missing_sections():
    raw = {
        "overhead": {"total": {"ratio": {"median": 1.1, "min": 1.0, "max": 1.2, "values": [1.0, 1.1, 1.2]}}},
        "scaling": {"speedup": {"1": 1.0, "2": 1.9}},
    }
    rows = goals.rows(raw)
    assert rows[0][2:] == ("1.10x", "met") and rows[1][2:] == ("1.90x", "met")
    assert rows[2][2] == rows[3][2] == "not measured"


def _rerun(first, second, diagnosis, mb, paint):
    return {
        "rerun": {
            "first": first,
            "second": second,
            "ratio": second / first,
            "diagnosis": diagnosis,
            "diagnosis_share": diagnosis / first,
            "report_mb": mb,
            "report_files": 10,
            "first_paint": paint and {"median": paint, "min": paint, "max": paint, "values": [paint]},
        }
    }


def test_rerun_goals_on_their_own_side_of_their_targets():
    met = goals.rows(_rerun(1000.0, 500.0, 100.0, 29.9, 0.9))[-4:]
    assert [r[3] for r in met] == ["met"] * 4
    assert [r[2] for r in met] == ["500 s against 1000 s: 50%", "100 s of 1000 s: 10.0%", "29.9 MB, 10 files", "0.90 s"]
    missed = goals.rows(_rerun(1000.0, 501.0, 101.0, 30.0, 1.0))[-4:]
    assert [r[3] for r in missed] == ["**not met**"] * 4
    unpainted = goals.rows(_rerun(1000.0, 400.0, 50.0, 1.0, None))[-1]
    assert unpainted[2:] == ("not measured (no Chromium)", "")


def test_unknown_section_and_backend_are_named():
    for args, named in ((["--sections", "overhead,speed"], "speed"), (["--backends", "torch,nope"], "nope")):
        done = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and named in done.stderr, done.stderr
