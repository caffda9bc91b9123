"""The models suite: networks, oracle, CRADLE's δ/R localization, adapters, end to end."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.oracle import batchnorm as ref, network_inputs as inputs_mod, networks as oracle
from crossbn.records.results import make_record, read
from crossbn.spec.catalogue import CatalogueError
from crossbn.spec.network_case import ModelCase, ModelCaseError
from crossbn.spec.networks import NETWORKS
from crossbn.spec.suites import load_suite
from crossbn.verdict import network_metrics as metrics
from crossbn.verdict.network_judge import localize, model_record

FAULTS = str(Path(__file__).parent / "backends" / "model_faults.py")
# Measured: every sound adapter within 17 ulps of each layer's scale in float64
# (PyTorch and Flax at a BN after ReLU or over dense features, the end of a
# chain of rounded layers); a float32 computation sits near 1e9.
FEW_ULPS = 32
# Values exact in float32, so that the ONNX float attributes and tf_keras's
# float32 decay (1 - momentum) change nothing: the float64 check is of the
# networks, not of those known hyperparameter findings.
EXACT = dict(eps=2.0**-17, momentum=0.875)


def _case(network="bn_before_relu", **kw) -> ModelCase:
    return ModelCase(network=network, **{"dtype": "float32", "train_steps": 2, **kw})


# ---- the case and the catalogue ------------------------------------------------
def test_model_case_id_is_content_and_round_trips():
    a, b = _case(suite="x", group="g"), _case(suite="y", group="h")
    assert a.id == b.id and len(a.id) == 12 and a.pytest_id.startswith("g-bn_before_relu-f32-n8-t2e-")
    assert ModelCase.from_dict(a.to_dict()) == a and ModelCase.from_dict(a.to_dict()).id == a.id
    assert _case(momentum=1).id == _case(momentum=1.0).id != _case(momentum=0.5).id
    assert a.steps == ("train0", "train1", "eval")
    with pytest.raises(ModelCaseError, match="field 'network'"):
        _case(network="nope")
    with pytest.raises(ModelCaseError, match="field 'eval_step'"):
        _case(train_steps=0, eval_step=False)


def test_models_suite_loads_and_is_listed():
    cases = load_suite("models")
    assert all(isinstance(c, ModelCase) for c in cases) and len({c.id for c in cases}) == len(cases)
    assert {c.network for c in cases} == set(NETWORKS) and {c.dtype for c in cases} == {"float32", "float64"}
    assert {0, 2} <= {c.train_steps for c in cases}
    out = subprocess.run([sys.executable, "-m", "crossbn", "suites"], capture_output=True, text=True)
    assert ["models", str(len(cases)), "cases"] in [line.split() for line in out.stdout.splitlines()]


@pytest.mark.parametrize(
    "body, field",
    [
        ('[[model]]\nname = "a"\nnetworks = ["bn_chain"]\n', "networks"),
        ('[[model]]\nname = "a"\n[model.axes]\nnetwork = ["bn_chain", "nope"]\n', "network"),
        ('[[model]]\nname = "a"\nbatch = 1\n', "batch"),
        ('[defaults]\nmomentum = 2\n[[model]]\nname = "a"\n', "momentum"),
        ('extra = 1\n[[model]]\nname = "a"\n', "extra"),
    ],
)
def test_malformed_model_catalogue_names_file_and_field(tmp_path, body, field):
    path = tmp_path / "mine.toml"
    path.write_text(body)
    with pytest.raises(CatalogueError) as e:
        load_suite(str(path))
    assert str(path) in str(e.value) and field in str(e.value)


# ---- the oracle ---------------------------------------------------------------------
def _torch_functional(case, inputs) -> dict:
    """The networks in float64 with torch.nn.functional: independent of the
    oracle and of the torch adapter. F.batch_norm feeds the UNBIASED variance
    into the running variance (PyTorch's convention)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = lambda name: torch.from_numpy(inputs[name]).clone()
    stats = {bn: (t(f"{bn}.running_mean"), t(f"{bn}.running_var")) for bn in case.spec.batchnorms}
    out = {}
    for k, step in enumerate(case.steps):
        h = {"input": t(f"x{k}")}
        for layer in case.spec.layers:
            a, p = h[layer.inputs[0]], (lambda n: t(f"{layer.name}.{n}"))
            if layer.op == "conv":
                y = F.conv2d(a, p("weight"), p("bias"), padding=1)
            elif layer.op == "bn":
                y = F.batch_norm(
                    a,
                    *stats[layer.name],
                    p("gamma"),
                    p("beta"),
                    training=step != "eval",
                    momentum=1 - case.momentum,
                    eps=case.eps,
                )
            elif layer.op == "relu":
                y = F.relu(a)
            elif layer.op == "maxpool":
                y = F.max_pool2d(a, 2)
            elif layer.op == "dense":
                y = F.linear(a.flatten(1), p("weight"), p("bias"))
            else:
                y = a + h[layer.inputs[1]]
            h[layer.name] = y
            out[f"{step}.{layer.name}"] = y.numpy()
    return out


def _ulps(actual: dict, expected: dict) -> dict:
    return {k: float(np.max(np.abs(actual[k] - e)) / np.spacing(np.max(np.abs(e)))) for k, e in expected.items()}


@pytest.mark.parametrize("network", list(NETWORKS))
def test_oracle_matches_an_independent_float64_computation(network):
    case = _case(network, dtype="float64", momentum=0.7)
    inputs = inputs_mod.generate(case)
    run = oracle.forward(case, inputs, running_var="unbiased")
    ulps = _ulps(_torch_functional(case, inputs), run.states)
    assert set(ulps) == {f"{s}.{n}" for s in case.steps for n in NETWORKS[network].names}
    assert max(ulps.values()) <= FEW_ULPS, ulps


def _perturbed(layer, x, w, size):
    """(input deviation, output deviation) of a conv or dense layer whose
    input deviation sits in the one input channel (dense: feature) with the
    largest column sum |w|, at an interior pixel: where gain must be attained."""
    a = np.abs(w)
    c = int(np.argmax(a.sum(axis=0).reshape(a.shape[1], -1).sum(axis=1)))
    e = np.zeros_like(x)
    if layer.op == "conv":
        e[:, c, x.shape[2] // 2, x.shape[3] // 2] = size
        return e, oracle.conv2d(e, w)
    e.reshape(len(e), -1)[:, c] = size
    return e, oracle.dense(e, w)


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("train", [True, False])
def test_gain_bounds_a_correct_layers_propagation(network, train):
    """gain · δ_pre is what a correct layer may make of its inputs' deviation:
    conv and dense attain it exactly with the deviation in their most amplified
    input (the largest row sum, the max-abs norm, stays 1.6x below that at the
    dense layers), a BatchNorm stays within it in training and in eval."""
    case = _case(network, dtype="float64", train_steps=int(train), eval_step=not train)
    inputs = inputs_mod.generate(case)
    run = oracle.forward(case, inputs)
    (step,) = case.steps
    f64 = lambda name: inputs[name].astype(np.float64)
    rng = np.random.default_rng(0)
    for layer in case.spec.layers:
        src = layer.inputs[0]
        x = f64("x0") if src == "input" else run.states[f"{step}.{src}"]
        gain = run.gains[f"{step}.{layer.name}"]
        if layer.op in ("conv", "dense"):
            e, dy = _perturbed(layer, x, f64(f"{layer.name}.weight"), 1e-3)
            assert metrics.delta(dy, 0) == pytest.approx(gain * metrics.delta(e, 0), rel=1e-9), layer.name
        elif layer.op == "bn":
            p = lambda name: f64(f"{layer.name}.{name}")
            bn = (
                (lambda z: ref.train_forward(z, p("gamma"), p("beta"), case.eps)["y"])
                if train
                else (
                    lambda z: ref.eval_forward(z, p("running_mean"), p("running_var"), p("gamma"), p("beta"), case.eps)[
                        "y"
                    ]
                )
            )
            for c in range(x.shape[1]):  # the deviation in one channel, then in all
                for e in (np.zeros_like(x), rng.normal(0, 1e-6, x.shape)):
                    e[:, c] = rng.normal(0, 1e-6, e[:, c].shape)
                    # (1 + 1e-9): eval attains the bound in its largest-gain channel, up to float64 rounding
                    assert metrics.delta(bn(x + e), bn(x)) <= gain * metrics.delta(e, 0) * (1 + 1e-9), (layer.name, c)


# ---- δ, R and the introducing layers ---------------------------------------------------
def test_delta_and_rate_by_hand():
    assert metrics.delta([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(2 / 3)
    assert metrics.rate(3e-7, 1e-7) == pytest.approx(1.0)  # (3e-7 - 1e-7) / (1e-7 + 1e-7)
    assert metrics.rate(1e-7, 0.0) == pytest.approx(1.0)  # ε = 1e-7 when the input agrees
    assert metrics.rate(0.5e-7, 1e-7) == pytest.approx(-0.25)
    assert metrics.rate(math.inf, 1.0) == math.inf and math.isnan(metrics.rate(1.0, math.nan))
    assert metrics.third_quartile([5, 1, 4, 2, 3, math.inf]) == 4.0


def test_layer_map_by_hand():
    """residual_block with hidden states offset by hand-chosen constants, gain 1
    and no rounding: the bound is δ_pre, so a layer introduces when its δ
    exceeds its largest input's."""
    case = _case("residual_block", train_steps=0)
    shapes = case.spec.shapes(case.batch)
    offsets = {
        "conv0": 0,
        "bn0": 0,
        "relu0": 0,
        "conv1": 1e-3,
        "bn1": 1e-3,
        "relu1": 5e-4,
        "conv2": 5e-4,
        "bn2": 2e-3,
        "add": 2e-3,
        "relu2": 3e-3,
    }
    expected = {f"eval.{n}": np.zeros(shapes[n]) for n in offsets}
    actual = {k: v + offsets[k.split(".")[1]] for k, v in expected.items()}
    keys = list(expected)
    run = oracle.OracleRun(gains=dict.fromkeys(keys, 1.0), local=dict.fromkeys(keys, 0.0))
    layers = metrics.layer_map(case, actual, expected, run)["eval"]
    assert layers["conv1"]["delta"] == pytest.approx(1e-3) and layers["conv1"]["delta_pre"] == 0.0
    assert layers["conv1"]["R"] == pytest.approx(1e-3 / 1e-7)
    assert layers["add"]["delta_pre"] == pytest.approx(2e-3)  # max of bn2 (2e-3) and relu0 (0)
    assert layers["relu1"]["R"] == pytest.approx((5e-4 - 1e-3) / (1e-3 + 1e-7))
    assert metrics.introducing({"eval": layers}) == ["eval.conv1", "eval.bn2", "eval.relu2"]
    for e in layers.values():  # R > its threshold exactly when δ > bound
        assert e["introduces"] == (e["R"] > e["R_threshold"]) == (e["delta"] > e["bound"])
    # rounding enters the bound: SAFETY * u * local
    run.local["eval.relu2"] = 1e-3 / (metrics.SAFETY * 2.0**-24) * 1.01
    layers = metrics.layer_map(case, actual, expected, run)["eval"]
    assert not layers["relu2"]["introduces"] and layers["relu2"]["ratio"] < 1
    # float64: the oracle rounds at the backend's u too, so both sides are charged
    f64 = _case("residual_block", train_steps=0, dtype="float64")
    for factor, introduces in ((0.99, True), (1.01, False)):
        run.local["eval.relu2"] = 1e-3 / (2 * metrics.SAFETY * 2.0**-53) * factor
        assert metrics.layer_map(f64, actual, expected, run)["eval"]["relu2"]["introduces"] == introduces


# ---- a planted fault is localized to its layer ------------------------------------------
def _planted(case, fault):
    from crossbn.backends.networks import torch as torch_net

    inputs = inputs_mod.generate(case)
    model = torch_net.build(case, inputs)
    fault(model)
    return torch_net.forward_all(model, case, inputs), inputs


def _eps(layer):
    return lambda m: setattr(m.blocks[layer], "eps", 1e-3)


def _momentum(layer):
    return lambda m: setattr(m.blocks[layer], "momentum", 0.5)


def _weight(layer):
    def perturb(m):
        import torch

        with torch.no_grad():
            m.blocks[layer].weight[0].mul_(1 + 1e-3)

    return perturb


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "network, fault, where",
    [
        ("bn_before_relu", _eps("bn2"), {"train0.bn2", "train1.bn2", "eval.bn2"}),
        ("bn_chain", _eps("bn2"), {"train0.bn2", "train1.bn2", "eval.bn2"}),
        ("residual_block", _weight("conv1"), {"train0.conv1", "train1.conv1", "eval.conv1"}),
        ("bn_chain", _momentum("bn4"), {"eval.bn4"}),  # the running statistics only show in eval
    ],
)
def test_planted_fault_is_localized_by_R(network, fault, where, dtype):
    pytest.importorskip("torch")
    case = _case(network, dtype=dtype)
    states, inputs = _planted(case, fault)
    run = oracle.forward(case, inputs, running_var="unbiased")  # PyTorch's declared convention
    layers = metrics.layer_map(case, states, run.states, run)
    assert set(metrics.introducing(layers)) == where
    for step, entries in layers.items():  # the largest R of each affected step is the planted layer
        planted = [k.split(".")[1] for k in where if k.startswith(step + ".")]
        if planted:
            assert max(entries, key=lambda n: entries[n]["R"]) == planted[0]
    # backend against backend: the faulty network against the sound one
    sound, _ = _planted(case, lambda m: None)
    assert set(metrics.introducing(metrics.compare_backends(case, states, sound, inputs))) == where
    same = metrics.compare_backends(case, sound, sound, inputs)
    assert all(e["delta"] == 0 and not e["introduces"] for s in same.values() for e in s.values())


def test_a_backend_is_held_to_its_declared_conventions():
    """As in compare.py: hidden states that follow the canonical oracle from a
    backend that declares PyTorch's unbiased running variance deviate (at the
    first eval BN); following the declaration is a convention difference."""
    backend = load(discover()["torch"])  # declares running_var = unbiased; imports no torch
    case = _case("bn_before_relu", dtype="float64")
    inputs = inputs_mod.generate(case)
    canonical, declared = (oracle.forward(case, inputs, rv).states for rv in ("biased", "unbiased"))
    verdict, reason, _, worst, where = localize(case, canonical, inputs, backend)
    assert verdict == "deviation" and where["observable"] == "eval.bn1", reason
    assert worst["verdict"] == "deviation" and "held to its declared conventions" in reason
    verdict, reason, layers, _, where = localize(case, declared, inputs, backend)
    assert verdict == "convention" and where["observable"] == "eval.bn1", reason
    assert not any(e["convention"]["introduces"] for entries in layers.values() for e in entries.values())


# ---- every framework adapter builds the same network ------------------------------------------
ADAPTERS = [
    "torch",
    "keras-tensorflow",
    "keras-jax",
    "keras-torch",
    "tf-keras",
    "flax-linen",
    "flax-nnx",
    "tf-nn",
    "onnx-reference-torch-export",
]
# Keras 3 on JAX and on PyTorch: BatchNormalization computes a float64 layer in float32 (found by this suite
# and by the BatchNorm suite); the conv, dense and pooling layers around it are float64.
FLOAT32_BN = {"keras-jax", "keras-torch"}


@pytest.fixture(scope="module")
def pool():
    specs = discover()
    backends = {n: load(specs[n]) for n in ADAPTERS}
    p = WorkerPool(specs, backends)
    yield backends, p
    p.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_float64_matches_the_oracle_within_few_ulps(pool, name):
    backends, p = pool
    backend = backends[name]
    if backend.available():
        pytest.skip(backend.available())
    worst = {}
    for network in NETWORKS:
        case = ModelCase(
            network=network, dtype="float64", batch=4, train_steps=0 if backend.model_train else 1, **EXACT
        )
        inputs = inputs_mod.generate(case)
        outcome = p.worker(name).run_model(case, inputs, "cpu", 300)
        assert outcome.status == "ok", outcome.message
        run = oracle.forward(case, inputs, backend.convention("running_var"), backend.convention("hyperparameters"))
        assert all(outcome.observables[k].dtype == np.float64 for k in run.states)
        worst.update(_ulps(outcome.observables, run.states))
    key = max(worst, key=worst.get)
    if name in FLOAT32_BN:
        assert worst[key] > 1e6 and ".bn" in key, (key, worst[key])
        pytest.xfail(f"{name}: BatchNormalization computes float64 in float32 ({worst[key]:.3g} ulps at {key})")
    assert worst[key] <= FEW_ULPS, f"{name}: {worst[key]:.3g} ulps at {key}"


# ---- end to end -----------------------------------------------------------------------------
@pytest.mark.slow
def test_models_suite_end_to_end(tmp_path):
    """`crossbn run --suite models` on two real backends and the planted fault:
    one record per (case, backend), each with per-layer δ and R, and the fault
    localized to the last BatchNorm of every network."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("keras") is None:
        pytest.skip("needs torch and keras")
    backends = ["torch", "keras-tensorflow", "torch-wrong-eps"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "run",
            "--no-conventions",
            "--suite",
            "models",
            "--backends",
            ",".join(backends),
            "--backend-module",
            FAULTS,
            "-n",
            "0",
            "--out",
            str(tmp_path),
            "--",
            "-k",
            "bn_before_relu or bn_chain",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read(tmp_path / "results.jsonl")
    cases = [c for c in load_suite("models") if c.network in ("bn_before_relu", "bn_chain")]
    assert {(r["case_id"], r["backend"]) for r in records} == {(c.id, b) for c in cases for b in backends}
    keys = set(make_record(case=cases[0], backend="torch", device="cpu", verdict="match"))
    by_id = {c.id: c for c in cases}
    for r in records:
        assert set(r) == keys | {"layers"}
        case = by_id[r["case_id"]]
        assert r["verdict"] in ("match", "convention", "deviation"), r["reason"]
        assert list(r["layers"]) == list(case.steps)
        for step in case.steps:
            assert list(r["layers"][step]) == list(case.spec.names)
            for e in r["layers"][step].values():
                assert {"delta", "delta_pre", "R", "introduces", "dtype", "shape", "max_abs"} <= set(e)
                assert e["dtype"] == case.dtype
        # against the oracle the verdict rests on: the declared conventions', where compared
        hits = {
            f"{s}.{n}"
            for s, entries in r["layers"].items()
            for n, e in entries.items()
            if e.get("convention", e)["introduces"]
        }
        last_bn = case.spec.batchnorms[-1]
        if r["backend"] == "torch-wrong-eps":
            assert r["verdict"] == "deviation" and last_bn in r["reason"]
            assert {k.split(".")[1] for k in hits} == {last_bn}, hits
            assert r["worst"]["observable"].endswith("." + last_bn) and r["localization"]["stage"] == last_bn
        elif r["backend"] == "keras-tensorflow":
            assert r["verdict"] == "match" and not hits, r["reason"]
        else:  # torch: the unbiased running variance, and nothing else
            assert r["verdict"] == ("convention" if case.train_steps else "match"), r["reason"]
    assert "crossbn verdicts" in proc.stdout
    json.dumps(records)  # plain JSON throughout


def test_model_record_has_the_result_fields_and_layers():
    case = _case()
    rec = model_record(case=case, backend="torch", device="cpu", verdict="unsupported", reason="why")
    assert set(rec) == set(make_record(case=case, backend="torch", device="cpu", verdict="match")) | {"layers"}
    assert rec["layers"] == {} and rec["case"]["network"] == "bn_before_relu"
