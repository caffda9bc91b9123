"""The compiled twins of eager backends, in real worker processes:
tf-nn-xla, tf-fused-op-xla and keras-tensorflow-xla (tf.function with
jit_compile=True) and keras-jax-jit (jax.jit).

1. Each runs compiled code, not its eager twin in disguise: on the same
   well-conditioned float32 case both match the oracle, and their outputs
   are not the same bits.
2. The running statistics pass from step to step through the compiled
   function (three training steps, then eval, within bound).
3. One finding pinned: XLA expands FusedBatchNormV3 into BatchNormTraining
   HLO, whose expander computes the variance as E[x²] − E[x]²: at a mean
   offset of 100σ in float32 the batch variance is far past its bound,
   where the eager kernel is within it; the fingerprint names the one-pass
   variance (xfail, so a fix shows up as XPASS).
4. torch.onnx.export(dynamo=True), run on onnxruntime and the reference
   evaluator: an eval-mode export is within bound; a training-mode export is
   an inference graph (the finding, xfail), run as the exporter wrote it.
"""

import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge

pytestmark = pytest.mark.slow  # XLA, jax.jit and torch.onnx.export(dynamo=True) workers compiling per case

TWINS = {
    "tf-nn-xla": "tf-nn",
    "tf-fused-op-xla": "tf-fused-op",
    "keras-tensorflow-xla": "keras-tensorflow",
    "keras-jax-jit": "keras-jax",
}
XLA_ONE_PASS = (
    "XLA's BatchNormExpander computes Var[X] = E[X²] − E[X]² (xla/service/batchnorm_expander.cc), "
    "the one-pass variance, for FusedBatchNormV3 under jit_compile"
)


def _judging(names):
    """judge(case, name) on real workers of `names`, closed at the end; a skip when one is missing."""
    specs = discover()
    backends = {n: load(specs[n]) for n in names}
    missing = {n: b.available() for n, b in backends.items() if b.available()}
    if missing:
        pytest.skip(str(missing))
    pool = WorkerPool({n: specs[n] for n in names}, backends)
    yield lambda case, name: judge(case, name, backends[name], "cpu", pool, timeout=600)
    pool.close()


@pytest.fixture(scope="module")
def run():
    yield from _judging([*TWINS, *TWINS.values()])


@pytest.mark.parametrize("compiled", list(TWINS))
def test_compiled_is_within_bound_and_not_the_eager_bits(run, compiled):
    case = Case(shape=(4, 3, 5, 5), train_steps=3, seed=7)
    ours, eager = run(case, compiled), run(case, TWINS[compiled])
    assert ours["verdict"] == eager["verdict"], (ours["reason"], eager["reason"])
    assert ours["verdict"] in ("match", "convention"), ours["reason"]
    # running statistics of every training step, and the eval step after them
    assert {"train0.running_var", "train2.running_var", "eval.y", "eval.dx"} <= set(ours["digests"])
    assert ours["digests"].keys() == eager["digests"].keys()
    differ = [k for k in ours["digests"] if ours["digests"][k] != eager["digests"][k]]
    assert differ, f"{compiled} gave the eager bits everywhere: not compiled?"
    assert "XLA" in ours["version"] or "jax.jit" in ours["version"]


@pytest.mark.xfail(reason=XLA_ONE_PASS, strict=False)
def test_fused_op_under_xla_keeps_the_batch_variance_within_bound(run):
    case = Case(shape=(8, 4, 6), train_steps=1, offset_ratio=100.0, seed=3)
    eager, ours = run(case, "tf-fused-op"), run(case, "tf-fused-op-xla")
    assert eager["verdict"] in ("match", "convention")
    assert ours["verdict"] in ("match", "convention"), ours["reason"]


def test_the_fused_op_under_xla_is_diagnosed_as_the_one_pass_variance(run):
    ours = run(Case(shape=(8, 4, 6), train_steps=1, offset_ratio=100.0, seed=3), "tf-fused-op-xla")
    assert ours["verdict"] == "deviation"
    assert ours["localization"]["stage"] == "batch variance"
    assert ours["diagnosis"]["changes"].get("variance") == "one-pass", ours["diagnosis"]


# ---- torch.onnx.export(dynamo=True) -------------------------------------------------------
DYNAMO = ("onnxruntime-torch-dynamo", "onnx-reference-torch-dynamo")
DYNAMO_TRAINING = (
    "torch.onnx.export(dynamo=True) exports a training-mode BatchNorm as an inference node "
    "(onnxscript's torchlib sets training = False in _native_batch_norm_legit_functional)"
)


@pytest.fixture(scope="module")
def exported():
    yield from _judging(DYNAMO)


@pytest.mark.parametrize("name", DYNAMO)
def test_a_dynamo_export_in_eval_mode_is_within_bound(exported, name):
    rec = exported(Case(shape=(8, 3, 4, 4), train_steps=0, seed=5), name)
    assert rec["verdict"] in ("match", "convention"), rec["reason"]  # convention: ONNX's float32 attributes
    assert "torch.onnx.export (dynamo=True)" in rec["version"]
    assert any("torch.onnx.export (dynamo" in g for g in rec["backend_info"]["graphs"])


@pytest.mark.parametrize("name", DYNAMO)
@pytest.mark.xfail(reason=DYNAMO_TRAINING, strict=False)
def test_a_dynamo_export_in_training_mode_normalizes_with_the_batch(exported, name):
    rec = exported(Case(shape=(8, 3, 4, 4), train_steps=1, eval_step=False, seed=5), name)
    assert rec["verdict"] in ("match", "convention"), rec["reason"]


@pytest.mark.parametrize("name", DYNAMO)
def test_the_dynamo_training_export_is_an_inference_graph_run_as_it_is(exported, name):
    rec = exported(Case(shape=(8, 3, 4, 4), train_steps=1, eval_step=False, seed=5), name)
    assert rec["verdict"] == "deviation"
    assert rec["backend_info"]["graphs"] == [g for g in rec["backend_info"]["graphs"] if "training_mode=0" in g]
    assert {"train0.running_mean", "train0.running_var"} <= set(rec["not_exposed"])
    assert rec["observables"]["train0.y"]["verdict"] == "deviation"
