"""ISSUE.md's wording and numbers: "What happened" measured as repro.py measures
it (the expected values the backend is held to, the element furthest past its
bound with its own difference), NaN/Inf said in words, a title that names a
cause only when one explains the outputs and never asserts what the case
cannot tell, and the verification output quoted without log lines or local
paths. The last test holds every committed example in docs/examples to that."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from crossbn.bugreport import happened, issue, verify
from crossbn.bugreport.attempt import round_up
from crossbn.bugreport.observed import statement
from crossbn.spec.case import Case
from crossbn.verdict.compare import full_bound
from crossbn.verdict.fingerprint import base_formulation

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"


def _attempt(actual, canonical, convention, bounds, target="train0.running_var", dtype="float32"):
    """An attempt as attempt.Lab gives one: its judged outputs and repro.py's tolerance (the full
    bound around the expected values it is held to, rounded up as repro.py writes it)."""
    actual = np.asarray(actual, dtype)
    held = np.asarray(canonical if convention is None else convention, np.float64)
    judged = SimpleNamespace(
        actual={target: actual},
        exp={target: np.asarray(canonical, np.float64)},
        bounds={target: np.asarray(bounds, np.float64)},
        convention=None if convention is None else ({target: held}, {target: np.asarray(bounds, np.float64)}),
    )
    full = full_bound(np.asarray(bounds, np.float64), held, dtype)
    at = SimpleNamespace(judged=judged, target=target, tolerance=round_up(full), strength=None, record={})
    return at, full


def test_what_happened_is_measured_against_what_the_backend_is_held_to():
    # TensorFlow's XLA finding: held to the unbiased running variance (2.0728), not the biased one (1.8575)
    at, full = _attempt([2.0671470165252686], [1.8574755191802979], [2.0728039741516113], [1e-6])
    text = happened.sentence("TensorFlow", at.target, happened.measure(at))
    assert "in 1 of 1 elements" in text and "2.067147017 where 2.072803974 is expected" in text, text
    diff = 2.0728039741516113 - float(np.float32(2.0671470165252686))
    assert f"a difference of {diff:.3g} ({diff / full[0]:.3g} times the bound" in text, text
    assert "1.857" not in text and "0.21" not in text


def test_the_element_furthest_past_its_bound_is_named_with_its_own_difference():
    # a wide bound on the largest difference, a narrow one elsewhere (torch.compile's float16 dx)
    got, want = [1.4345703125, -0.0015239715576171875], [1.4339070894249726, -0.001690980216518688]
    at, full = _attempt(got, want, None, [5e-4, 2e-6], "train1.dx", "float16")
    text = happened.sentence("PyTorch", at.target, happened.measure(at))
    furthest = abs(got[1] - want[1])
    assert "in 1 of 2 elements" in text, text
    assert "Furthest past its bound is index [1]: -0.001523971558 where -0.001690980217 is expected" in text, text
    assert f"a difference of {furthest:.3g} ({furthest / full[1]:.3g} times the bound" in text, text
    assert f"The largest difference, {abs(got[0] - want[0]):.3g}, is at index [0]" in text, text


def test_nan_and_inf_are_said_in_words_with_plain_numbers():
    at, _ = _attempt([np.nan], [np.inf], None, [1e-6])
    at.strength = math.inf
    measured = happened.measure(at)
    assert happened.sentence("tf-keras", at.target, measured).endswith("at index [0], NaN where +Inf is expected.")
    kept = issue.kept_sentence(at, ("train1.running_var", math.inf, 10.0))
    assert "NaN where +Inf is expected" in kept and "inf times" not in kept and "np.float64" not in kept, kept


def _stated(diagnosis, dtype="float16"):
    case = Case(shape=(2, 4), dtype=dtype, train_steps=1)
    return statement(diagnosis, case, base_formulation(case), {}, "torch on cpu")


def test_a_title_names_a_cause_only_when_one_other_than_the_documented_behaviour_explains_it():
    closest = {"formulation": "canonical", "description": "the canonical formulas, computed in float32"}
    assert _stated({**closest, "explains": False}, "float32").cause == ""
    assert _stated({**closest, "explains": True}, "float32").cause == ""  # the documented behaviour is no cause
    nearer = {"formulation": "variance=one-pass", "description": "one-pass variance E[x²]-E[x]²"}
    assert _stated({**nearer, "explains": False}, "float32").cause == ""
    assert _stated({**nearer, "explains": True}, "float32").cause == "one-pass variance E[x²]-E[x]²"


def test_a_tie_between_accumulators_is_said_once_without_asserting_either():
    # PyTorch's float16 CPU kernel as the bfloat16 reports record it: bfloat16 arithmetic with float32 sums,
    # and bfloat16 sums, alike
    tied = {
        "formulation": "compute=bfloat16,reduce=float32",
        "explains": True,
        "ulps": 26.2,
        "evidence": [
            {"formulation": "compute=bfloat16,reduce=float32", "score": 0.056, "ulps": 26.2},
            {"formulation": "compute=bfloat16", "score": 0.06, "ulps": 30.6},
        ],
    }
    cause = _stated(tied, "bfloat16").cause
    assert (
        cause == "computed in bfloat16, with the sums accumulated in bfloat16 or float32: this case cannot tell which"
    )


def test_the_verification_output_is_quoted_without_log_lines_or_local_paths(tmp_path):
    folder = tmp_path / "crossbn-repro-abc"
    folder.mkdir()
    script = folder / "repro.py"
    script.write_text(
        "import os, sys, warnings\n"
        "print('DISCREPANCY: 1 of 1 elements of train0.y differ')\n"
        "sys.stderr.write('I0000 00:00:1796401719.975435    5237 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "sys.stderr.write('W1204 16:30:11.297000 5910 torch/onnx/_registration.py:107] torchvision is not installed\\n')\n"
        "warnings.warn('exporting a module in training mode')\n"
        "sys.stderr.write(os.__file__ + ':105: FutureWarning: deprecated\\n')\n"
        "sys.exit(1)\n"
    )
    ran = verify.run(script, sys.executable)
    assert ran.reproduced, ran.output
    assert str(folder) in ran.output and "port.cc" in ran.output  # the raw output keeps everything
    assert "DISCREPANCY: 1 of 1" in ran.shown and "repro.py:5: UserWarning: exporting" in ran.shown, ran.shown
    assert re.search(r"^python/lib/python3\.\d+/os\.py:105: FutureWarning", ran.shown, re.M), ran.shown
    assert str(tmp_path) not in ran.shown and sys.prefix not in ran.shown and sys.base_prefix not in ran.shown
    assert "port.cc" not in ran.shown and "torchvision" not in ran.shown


_FURTHEST = re.compile(r"furthest past its tolerance at index (\[[\d, ]*\]): got (\S+), expected (\S+), tolerance")
_LARGEST = re.compile(r"largest difference (\S+) at index (\[[\d, ]*\])")


def check_issue(text: str) -> None:
    """An ISSUE.md is self-consistent: its "What happened" names the element and the numbers
    its repro.py printed, and its title and output say nothing they should not."""
    title = text.splitlines()[0]
    assert "as documented" not in title and "the canonical formulas" not in title, title
    # a tie is said once, as the two it is between or as one accumulator or the other, never as one of them
    tie = re.compile(r"\((?:either [^()]+, or [^()]+|[^()]*accumulated in \w+ or \w+): this case cannot tell which\)$")
    assert "cannot tell" not in title or tie.search(title), title
    happened_text = text.split("## What happened", 1)[1].split("##", 1)[0]
    prose = text.split("## Reproduce", 1)[0]
    assert "np.float" not in prose and "inf times" not in prose, happened_text
    output = text.split("## Reproduce", 1)[1].split("```", 2)[1]
    assert "/tmp/" not in output and "/root/" not in output and "absl" not in output and "cuInit" not in output
    furthest = _FURTHEST.search(output)
    if furthest is None:
        return  # the framework raised, or a NaN/Inf: nothing numeric to hold the sentence to
    where, got, want = furthest.group(1), float(furthest.group(2)), float(furthest.group(3))
    if not (math.isfinite(got) and math.isfinite(want)):
        return
    said = re.search(
        r"Furthest past its bound is index (\[[\d, ]*\]): (\S+) where (\S+) is expected, a difference of (\S+)",
        happened_text,
    )
    assert said is not None, happened_text
    assert said.group(1) == where, (said.group(1), where)
    assert float(said.group(2)) == pytest.approx(got, rel=1e-9)
    assert float(said.group(3)) == pytest.approx(want, rel=1e-8)
    assert float(said.group(4)) == pytest.approx(abs(got - want), rel=5e-3)
    count = re.search(r"DISCREPANCY: (\d+) of (\d+) elements", output).groups()
    assert f"in {count[0]} of {count[1]} elements" in happened_text
    largest, at = _LARGEST.search(output).groups()
    if at != where and f"{float(largest):.3g}" != f"{float(said.group(4)):.3g}":
        assert f"The largest difference, {float(largest):.3g}, is at index {at}" in happened_text, happened_text


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "ISSUE.md").is_file()))
def test_committed_examples_say_what_their_repro_shows(example):
    check_issue((EXAMPLES / example / "ISSUE.md").read_text())
