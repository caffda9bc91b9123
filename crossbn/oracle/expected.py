"""What a case should produce: the oracle run step by step, in float64.

`simulate` drives `crossbn/oracle/` through a case's steps (training steps that update the running
statistics, then eval) and returns both the expected observables and a per-step trace of every
intermediate, which the error-bound model (`tolerance.py`) needs for its conditioning terms.

Its options are conventions, canonical first: `running_var` ("biased" | "unbiased", PyTorch's
n/(n-1)), `empty_batch` ("nan" | "skip": the running statistics after an N = 0 training step) and
`frozen` ("batch" | "inference": what a frozen layer's training step computes). Computing both
lets `compare.py` tell a documented convention difference from a deviation.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crossbn.oracle import batchnorm as ref, steps
from crossbn.spec.case import Case
from crossbn.spec.dtypes import numpy_dtype


@dataclass
class StepTrace:
    """The oracle's float64 values for one step."""

    step: str  # "train0", ..., "eval"
    training: bool  # batch statistics (True) or running ones (False)
    x: np.ndarray  # the input, upcast
    mean: np.ndarray  # (C,) statistics used to normalize
    var: np.ndarray  # (C,) biased variance used to normalize
    invstd: np.ndarray
    x_hat: np.ndarray
    y: np.ndarray
    gamma: np.ndarray | None
    beta: np.ndarray | None
    dy: np.ndarray | None = None
    grads: dict | None = None  # dx, dgamma, dbeta
    running_before: tuple | None = None  # (mean, var) before this step's update
    running_after: tuple | None = None  # (mean, var) after it
    factor: float = 0.0  # weight given to the new batch statistic
    var_fed: np.ndarray | None = None  # the batch variance fed into running_var
    var_fed_factor: float = 1.0  # var_fed / var: n/(n-1) when unbiased, else 1
    running_kept: bool = False  # an empty batch left the running statistics as they were
    # (empty_batch="skip"): running_after is running_before


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _stored(a: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a.astype(numpy_dtype(dtype)).astype(np.float64)


def simulate(
    case: Case, inputs: dict, *, running_var: str = "biased", empty_batch: str = "nan", frozen: str = "batch"
) -> tuple[dict, list[StepTrace]]:
    plan = steps.plan(case, frozen=frozen, empty_batch=empty_batch)
    ax = case.channel_axis
    gamma, beta = _f64(inputs.get("gamma")), _f64(inputs.get("beta"))
    # (mean, var) as stored; None without running statistics
    running: Any = (_f64(inputs["running_mean"]), _f64(inputs["running_var"])) if case.track_running_stats else None
    n = case.reduction_size
    expected: dict[str, np.ndarray] = {}
    traces: list[StepTrace] = []
    for s in plan:
        k, step, use_batch = s.index, s.name, s.use_batch
        x = _f64(inputs[f"x{k}"])
        if use_batch:
            fwd = ref.train_forward(x, gamma, beta, case.eps, channel_axis=ax)
            mean, var = fwd["batch_mean"], fwd["batch_var"]
        else:
            mean, var = running
            fwd = ref.eval_forward(x, mean, var, gamma, beta, case.eps, channel_axis=ax)
        t = StepTrace(step, s.training, x, mean, var, fwd["invstd"], fwd["x_hat"], fwd["y"], gamma, beta)
        expected[f"{step}.y"] = t.y
        if s.as_inference:  # a frozen layer run as inference: the state is read, never written
            t.running_before = t.running_after = running
            t.running_kept = True
            expected[f"{step}.running_mean"], expected[f"{step}.running_var"] = running
        if t.training:
            expected.update({f"{step}.batch_mean": mean, f"{step}.batch_var": var, f"{step}.invstd": t.invstd})
        if s.update is not None:
            t.running_before = running
            t.var_fed_factor = n / (n - 1) if running_var == "unbiased" and n > 1 else 1.0
            # n == 1 has no Bessel correction to apply (n - 1 = 0): the unbiased
            # convention then feeds the biased variance, as TensorFlow's
            # n / max(n - 1, 1) does (PyTorch refuses such a batch).
            t.var_fed = ref.unbiased_var(var, n) if running_var == "unbiased" and n > 1 else var
            if s.update == "kept":
                # the statistics of no values are never formed: the state is kept
                # (PyTorch still counts the batch in num_batches_tracked, so a
                # cumulative average's count k + 1 is unchanged)
                t.running_kept = True
            elif s.update == "cumulative":
                t.factor = 1.0 / s.count
                running = (
                    ref.cumulative_update(running[0], mean, s.count),
                    ref.cumulative_update(running[1], t.var_fed, s.count),
                )
            else:
                t.factor = 1.0 - case.momentum
                running = (
                    ref.running_update(running[0], mean, case.momentum),
                    ref.running_update(running[1], t.var_fed, case.momentum),
                )
            # The state is stored in the case dtype: the best any implementation
            # can hold is the correctly rounded value (±Inf past the range),
            # and that is what the next step and eval read back.
            running = tuple(_stored(r, case.dtype) for r in running)
            t.running_after = running
            expected[f"{step}.running_mean"], expected[f"{step}.running_var"] = running
        if case.gradients:
            t.dy = _f64(inputs[f"dy{k}"])
            backward = ref.train_backward if use_batch else ref.eval_backward
            t.grads = backward(t.dy, t.x_hat, t.invstd, gamma, channel_axis=ax)
            expected[f"{step}.dx"] = t.grads["dx"]
            if case.affine and not case.frozen:
                expected[f"{step}.dgamma"] = t.grads["dgamma"]
                expected[f"{step}.dbeta"] = t.grads["dbeta"]
        traces.append(t)
    return expected, traces
