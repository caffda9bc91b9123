"""Each framework's repro.py template runs BatchNorm the way crossbn's backend does.

For every backend a repro.py can be written for, the rendered script's own
outputs (`repro.py --save FILE`) are compared with what crossbn's worker got
for the same case and inputs: they must be bit-identical, and every public
output the backend returns must be there. The script's inline float64
expectation is held against crossbn's oracle. A case that exercises steps,
layout, affine parameters, running statistics and gradients at once.
"""

import subprocess
import sys

import numpy as np
import pytest

from crossbn.bugreport.attempt import PUBLIC, Lab
from crossbn.bugreport.script import render, templated
from crossbn.oracle.inputs import generate
from crossbn.spec.case import Case

pytestmark = pytest.mark.slow  # each template's script run in a fresh process, per backend

# suite "smoke": torch-compile runs every smoke case (other suites are sampled to bound compile time)
CASES = {
    "cl-f32-t2e": Case(
        suite="smoke", shape=(4, 3, 2, 3), layout="channels_last", dtype="float32", train_steps=2, offset_ratio=2.0
    ),
    "cf-f16-t1e": Case(suite="smoke", shape=(5, 2, 3), dtype="float16", train_steps=1, affine=False),
    "flax-two-pass": Case(
        suite="smoke", shape=(6, 2, 3), train_steps=1, offset_ratio=30.0, options={"flax.use_fast_variance": False}
    ),  # Flax's switches reach the script
    # a frozen layer over the data's own running statistics, large enough that the script
    # regenerates its inputs (and those statistics) from the seeds instead of embedding them
    "frozen-trained": Case(
        suite="smoke", shape=(64, 2, 40), train_steps=1, frozen=True, running_stats="data", offset_ratio=3.0
    ),
}


@pytest.fixture(scope="module")
def labs():
    opened = {}
    yield opened
    for lab in opened.values():
        lab.close()


@pytest.mark.parametrize("label", sorted(CASES))
@pytest.mark.parametrize("backend", templated())
def test_script_outputs_are_the_backends_bit_for_bit(backend, label, labs, tmp_path):
    case = CASES[label]
    # torch-compile's worker reuses graphs dynamo compiled for earlier shapes (then with dynamic
    # sizes, other kernels): a worker of its own per case compiles as the fresh script does
    key = (backend, label) if backend == "torch-compile" else backend
    if key not in labs:
        labs[key] = Lab(backend)
    lab = labs[key]
    missing = lab.backend.available()
    if missing:
        pytest.skip(missing)
    if not lab.backend.applies(case):
        pytest.skip(f"{backend} does not have the case's switches")
    if lab.backend.supports(case) is not None:
        pytest.skip(lab.backend.supports(case))
    inputs = generate(case)
    got = lab.pool.worker(lab.name).run(case, inputs, "cpu")
    if got.status == "unsupported":
        pytest.skip(got.message)
    if got.status == "error" and case.frozen and backend == "keras-torch":
        pytest.xfail(f"Keras 3 on torch cannot freeze a layer built under keras.device: {got.message[:200]}")
    assert got.status == "ok", got.message
    target = f"{case.steps[-1]}.y"
    text = render(
        case=case,
        inputs=inputs,
        backend_name=backend,
        backend=lab.backend,
        device="cpu",
        version="",
        target=target,
        tolerance=np.full(1, 1e-2),
        title="fidelity",
    )
    (tmp_path / "repro.py").write_text(text)
    ran = subprocess.run(
        [sys.executable, "-I", "repro.py", "--save", "out.npz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode in (0, 1), ran.stdout[-2000:] + ran.stderr[-3000:]
    saved = np.load(tmp_path / "out.npz", allow_pickle=False)
    public = {k for k in got.observables if k.split(".")[1] in PUBLIC}
    assert public <= set(saved.files), f"repro.py lacks {sorted(public - set(saved.files))}"
    for name in sorted(public):
        want = np.asarray(got.observables[name]).astype(np.float64)
        assert np.array_equal(saved[name], want, equal_nan=True), f"{backend} {name}: repro.py differs from the worker"


@pytest.mark.parametrize(
    "backend, running_var, hyperparameters, frozen",
    [
        ("torch", "unbiased", "exact", "batch"),  # PyTorch's documented running variance
        ("onnx-reference-opset15", "biased", "float32", "batch"),  # ONNX's 32-bit float attributes
        ("tf-keras", "biased", "exact", "inference"),  # a frozen layer runs as inference
    ],
)
def test_inline_expectation_agrees_with_the_oracle(backend, running_var, hyperparameters, frozen, tmp_path):
    """The script's short float64 formula against crossbn's oracle, on every
    output, under the convention each template is rendered with."""
    import runpy

    from crossbn.verdict.judge import expectation

    lab = Lab(backend)
    if lab.backend.available():
        pytest.skip(lab.backend.available())
    try:
        cases = [
            *(c for c in CASES.values() if not c.options),
            Case(shape=(3, 2, 4), track_running_stats=False, train_steps=1, dtype="float64"),
            Case(shape=(5, 3), momentum=0.1, train_steps=3, dtype="float64"),
        ]
        if backend == "torch":
            cases.append(Case(shape=(6, 2), cumulative=True, train_steps=3, dtype="bfloat16"))
        for case in cases:
            at = lab.attempt(case)
            # the formula needs no framework: a case the backend does not run still has its inputs
            inputs = at.inputs if at.inputs is not None else generate(case)
            text = render(
                case=case,
                inputs=inputs,
                backend_name=backend,
                backend=lab.backend,
                device="cpu",
                version="",
                target=f"{case.steps[0]}.y",
                tolerance=np.full(1, 1.0),
                title="oracle",
            )
            (tmp_path / "repro.py").write_text(text)
            script = runpy.run_path(str(tmp_path / "repro.py"), run_name="not_main")
            inline = script["expected"]()
            exp = expectation(case, inputs, running_var, hyperparameters, frozen=frozen)[0]
            for name, value in exp.items():
                if name.split(".")[1] in PUBLIC:  # float64 rounding apart, the same numbers
                    assert np.abs(inline[name] - value).max() <= 1e-12 * max(1.0, np.abs(value).max()), (case, name)
    finally:
        lab.close()
