"""`crossbn conventions`: each convention read off targeted runs.

The readings are checked three ways: on the oracle's own exact outputs (the
canonical answer for every property), on planted NumPy backends whose
conventions are known because they were planted (through the CLI, in real
worker processes), and on PyTorch, whose documented conventions differ from
the canonical ones in three places."""

import json
from pathlib import Path

import numpy as np
import pytest

from crossbn.app.cli import main
from crossbn.backends.base import Backend
from crossbn.conventions import infer, probes
from crossbn.oracle import expected
from crossbn.spec.dtypes import numpy_dtype

HERE = Path(__file__).parent
PLANTED = str(HERE / "backends" / "planted.py")
CONVENTION_PLANTS = str(HERE / "backends" / "convention_plants.py")

CANONICAL = {
    "momentum": "old",
    "running_var": "biased",
    "hyperparameters": "exact",
    "eps_floor": "none",
    "variance": "two-pass/welford",
    "reduce_float16": "float32",
    "reduce_bfloat16": "float32",
    "single_value": "beta",
    "eps0_zero_var": "nan",
    "frozen": "batch",
}


class _Everything(Backend):
    name = "oracle"
    no_frozen = None


def read_property(key, ran):
    from crossbn.conventions import read_property

    return read_property(key, _Everything(), ran)


def test_the_oracle_reads_as_the_canonical_conventions():
    """The exact values, stored in the case dtype, read as crossbn's
    canonical conventions: the readings have no bias of their own."""
    ran = {}
    for probe in probes.PROBES:
        case, why = probe.choose(_Everything())
        assert case is not None, why
        inputs = probes.inputs_for(probe.name, case)
        with np.errstate(all="ignore"):
            exact, _ = expected.simulate(case, inputs)
            out = {k: v.astype(numpy_dtype(case.dtype)) for k, v in exact.items()}
        ran[probe.name] = {
            "status": "ok",
            "message": "",
            "case": case,
            "facts": probes.facts(probe.name, case, inputs, out),
        }
    assert {key: read_property(key, ran)[0] for key in infer.PROPERTIES} == CANONICAL


def _records(out: Path) -> dict:
    got = {}
    for line in (out / "conventions.jsonl").read_text().splitlines():
        r = json.loads(line)
        got[(r["backend"], r["property"])] = r
    return got


# plant -> the properties it changes: (observed, finding)
PLANTS = {
    "planted-none": {},
    "planted-momentum-new": {"momentum": ("new", True)},
    "planted-bessel": {"running_var": ("unbiased", True)},
    "planted-clamped-eps": {
        "eps_floor": ("1e-05", True),
        "eps0_zero_var": ("beta", False),
        "hyperparameters": ("exact", False),
    },
    "planted-clamped-eps-declared": {"eps_floor": ("1e-05", False), "eps0_zero_var": ("beta", False)},
    "planted-float32-hyperparameters": {"hyperparameters": ("float32", True)},
    "planted-float32-hyperparameters-declared": {"hyperparameters": ("float32", False)},
    "planted-one-pass": {"variance": ("one-pass", False), "reduce_bfloat16": ("undetermined", False)},
    "planted-one-pass-declared-accurate": {"variance": ("one-pass", True), "reduce_bfloat16": ("undetermined", False)},
    "planted-half-reductions": {"reduce_float16": ("float16", False), "reduce_bfloat16": ("bfloat16", False)},
    "planted-refuses-single-value": {"single_value": ("error", True)},
    "planted-frozen-inference": {"frozen": ("inference", True)},
    "planted-frozen-inference-declared": {"frozen": ("inference", False)},
    "planted-cannot-freeze": {"frozen": ("n/a", False)},
}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conventions")
    code = main(
        [
            "conventions",
            "--backends",
            ",".join(PLANTS),
            "--backend-module",
            PLANTED,
            "--backend-module",
            CONVENTION_PLANTS,
            "--out",
            str(out),
            "-n",
            "2",
            "--strict",
        ]
    )
    return code, _records(out)


@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_conventions_are_observed(planted_run, plant):
    _, records = planted_run
    for key in infer.PROPERTIES:
        r = records[(plant, key)]
        want = PLANTS[plant].get(key, (CANONICAL[key], False))
        assert (r["observed"], r["finding"]) == want, f"{plant} {key}: {r['observed']} ({r['detail']})"
        ran = r["observed"] != "n/a"  # n/a: the backend declined the probe's case (no_frozen)
        assert r["probe"] and all(bool(p["case_id"]) == ran for p in r["probe"].values()), r


def test_strict_exit_status_says_there_were_findings(planted_run):
    code, records = planted_run
    assert code == 1 and sum(r["finding"] for r in records.values()) == sum(
        f for changes in PLANTS.values() for _, f in changes.values()
    )


@pytest.mark.slow  # a real framework's worker (Keras, PyTorch): 4-6 s
def test_torch_observed_as_documented(tmp_path, capsys):
    """PyTorch: momentum weighs the new value, Bessel's correction in the
    running variance, and one value per channel raises; all as declared."""
    pytest.importorskip("torch")
    code = main(["conventions", "--backends", "torch", "--out", str(tmp_path), "--strict"])
    records = _records(tmp_path)
    got = {key: records[("torch", key)]["observed"] for key in infer.PROPERTIES}
    assert got["momentum"] == "new" and got["running_var"] == "unbiased" and got["single_value"] == "error"
    assert got["hyperparameters"] == "exact" and got["eps_floor"] == "none"
    assert got["variance"] == "two-pass/welford" and got["reduce_float16"] == "float32"
    assert got["frozen"] == "batch"  # requires_grad_(False) freezes the parameters only
    assert code == 0 and not any(r["finding"] for r in records.values())
    table = capsys.readouterr().out
    assert "Observed conventions" in table and "torch" in table and "unbiased" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backends", "no-such-backend"], "unknown backend(s) no-such-backend; known:"),
        (["--backends", "torch", "--devices", "tpu"], "unknown device(s) tpu; known: cpu, cuda"),
        (["--backends", "torch", "-n", "0"], "-n 0: must be at least 1"),
        (["--backends", "torch", "--timeout", "soon"], "--timeout soon: must be a positive number of seconds"),
    ],
)
def test_bad_usage_is_named(tmp_path, capsys, argv, message):
    assert main(["conventions", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
