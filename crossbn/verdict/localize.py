"""Per-operation localization: the first stage inside BatchNorm that deviates.

Stages in dataflow order (STAGES). Where the backend returns a stage's observable (batch_mean,
batch_var, invstd, the running statistics, the gradients), the first non-matching one in dataflow
order is the answer. Where the backend hides the inside of y's chain (statistics -> inverse std
-> normalized -> affine), differential probes derived from the case and run on the same backend
(momentum-0, eval-given-stats, affine-off, unit-dy) take it apart, and a per-channel fit of the
y error separates an inverse-std (scale) error from an elementwise one. The result says which
probes ran and what each showed.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from crossbn.oracle import batchnorm as ref
from crossbn.oracle.expected import simulate as simulate_oracle
from crossbn.oracle.tolerance import model_bounds
from crossbn.spec.verdicts import FAILING, Verdict
from crossbn.verdict.compare import full_bound
from crossbn.verdict.fits import channel_fit, scale_fit

STAGES = (
    "batch mean",
    "batch variance",
    "batch statistics",
    "inverse std",
    "normalized",
    "affine output",
    "running mean",
    "running variance",
    "eval statistics",
    "dbeta",
    "dgamma",
    "dx",
)
DIRECT = {
    "batch_mean": "batch mean",
    "batch_var": "batch variance",
    "invstd": "inverse std",
    "running_mean": "running mean",
    "running_var": "running variance",
    "dbeta": "dbeta",
    "dgamma": "dgamma",
    "dx": "dx",
}


def first_off(comparison, verdict: str):
    """The first observable, in dataflow order, that carries the verdict:
    the first convention difference of a `convention` result, else the
    first failing observable."""
    wanted = {Verdict.CONVENTION} if verdict == Verdict.CONVENTION else FAILING
    return next((o for o in comparison.observables.values() if o.verdict in wanted), None)


# ---- probes: (case, inputs) pairs derived from the case ---------------------------------------


def _step_index(case, step: str) -> int:
    return case.steps.index(step)


def probe_momentum0(case, inputs, step):
    k = _step_index(case, step)
    p = dataclasses.replace(
        case,
        momentum=0.0,
        cumulative=False,
        track_running_stats=True,
        train_steps=1,
        eval_step=False,
        gradients=False,
        specials=(),
    )
    new = {"x0": inputs[f"x{k}"], **_params(case, inputs)}
    new.update(_initial_running(case, inputs))
    return p, new


def probe_eval_given_stats(case, inputs, step, exact_mean, exact_var):
    k = _step_index(case, step)
    p = dataclasses.replace(
        case, cumulative=False, track_running_stats=True, train_steps=0, eval_step=True, gradients=False, specials=()
    )
    dt = inputs[f"x{k}"].dtype
    with np.errstate(over="ignore"):  # a statistic past the dtype's range is stored as inf, as the framework would
        new = {
            "x0": inputs[f"x{k}"],
            "running_mean": np.asarray(exact_mean).astype(dt),
            "running_var": np.asarray(exact_var).astype(dt),
            **_params(case, inputs),
        }
    return p, new


def probe_affine_off(case, inputs):
    p = dataclasses.replace(case, affine=False)
    return p, {k: v for k, v in inputs.items() if k not in ("gamma", "beta")}


def probe_unit_dy(case, inputs):
    return case, {k: (np.ones_like(v) if k.startswith("dy") else v) for k, v in inputs.items()}


def _params(case, inputs):
    return {k: inputs[k] for k in ("gamma", "beta") if k in inputs}


def _initial_running(case, inputs):
    if "running_mean" in inputs:
        return {"running_mean": inputs["running_mean"], "running_var": inputs["running_var"]}
    c = case.channels
    dt = inputs["x0"].dtype
    return {"running_mean": np.zeros(c, dt), "running_var": np.ones(c, dt)}


# ---- the per-channel fit of the y error ------------------------------------------------------


def localize(case, inputs, comparison, verdict: str, actual: dict, traces, full_bounds: dict, run_probe) -> dict:
    """Where the result first departs from the oracle.

    `traces`: the oracle's per-step traces (expected.simulate); `full_bounds`:
    per observable, the bound the verdict used; `run_probe(name, case,
    inputs)` runs a probe on the same backend and returns its Comparison, or
    a string saying why it could not run."""
    first = first_off(comparison, verdict)
    out: dict[str, Any] = {"stage": None, "step": None, "observable": None, "how": "observed", "probes": []}
    if first is None:
        out["how"] = "no observable departs" + (f" ({comparison.note})" if comparison.note else "")
        return out
    step, obs = first.name.split(".", 1)
    out.update(step=step, observable=first.name)
    probes = out["probes"]

    def probe(name, purpose, pc, pin):
        res = run_probe(name, pc, pin)
        entry = {"name": name, "purpose": purpose, "case_id": pc.id}
        if isinstance(res, str):
            entry.update(ran=False, why=res)
            probes.append(entry)
            return None
        entry.update(
            ran=True,
            verdict=res.verdict,
            observables={k: {"verdict": o.verdict, "ratio": o.ratio} for k, o in res.observables.items()},
        )
        probes.append(entry)
        return res

    def fails(res, name):
        o = res.observables.get(name) if res is not None else None
        return None if o is None else o.verdict in (FAILING | {"convention"})

    trace = traces[_step_index(case, step)]
    if obs == "dx" and not trace.training and f"{step}.y" in comparison.observables:
        # an eval-mode dx departs while its y does not: the statistics or inverse std it scales by
        _localize_eval(case, inputs, comparison, actual, trace, first.name, full_bounds, out, probe, fails)
        return out
    if obs in DIRECT:
        out["stage"] = DIRECT[obs]
        if obs in ("dbeta", "dgamma", "dx"):
            pc, pin = probe_unit_dy(case, inputs)
            probe("unit-dy", "a unit upstream gradient isolates the reduction terms of the backward pass", pc, pin)
        return out

    # y: take the chain apart
    if not trace.training:
        _localize_eval(case, inputs, comparison, actual, trace, first.name, full_bounds, out, probe, fails)
        return out
    training = trace.training
    prefix = f"{step}."
    hidden = hidden_stats(comparison, prefix)
    if training and hidden:
        pc, pin = probe_momentum0(case, inputs, step)
        res = probe("momentum-0", "momentum 0: the running statistics are the batch statistics", pc, pin)
        if fails(res, "train0.running_mean"):
            out.update(stage="batch mean", how="probe")
            return out
        if fails(res, "train0.running_var"):
            out.update(stage="batch variance", how="probe")
            return out
    if training and f"{prefix}invstd" not in comparison.observables:
        pc, pin = probe_eval_given_stats(case, inputs, step, trace.mean, trace.var)
        res = probe("eval-given-stats", "the step's exact batch statistics given: reductions bypassed", pc, pin)
        if res is not None and fails(res, "eval.y") is False:
            # right once the statistics are given: the reductions, or the
            # inverse std the training step derives from them
            ran_m0 = any(p["name"] == "momentum-0" and p["ran"] for p in probes)
            stage = "batch statistics" if hidden and not ran_m0 else "inverse std"
            if hidden:  # an offset is the mean's: the inverse std only scales
                fit = channel_fit(case, actual[first.name], trace.y, trace.x_hat, trace.gamma, full_bounds[first.name])
                if fit["structured"] and fit["offset"] > fit["scale"] * fit["x_hat_max"]:
                    stage = "batch mean"
                out["fit"] = fit
            out.update(stage=stage, how="probe")
            return out
    if case.affine:
        pc, pin = probe_affine_off(case, inputs)
        res = probe("affine-off", "gamma = 1, beta = 0: the normalization alone", pc, pin)
        if res is not None and fails(res, f"{step}.y") is False:
            out.update(stage="affine output", how="probe")
            return out
    fit = channel_fit(case, actual[first.name], trace.y, trace.x_hat, trace.gamma, full_bounds[first.name])
    out.update(fit=fit, how="fit")
    # returned and within bounds, the inverse std is not at fault whatever the fit's shape (a
    # channel of two values fits any error): the normalization did not use it as returned
    invstd_right = comparison.observables.get(f"{prefix}invstd") is not None and not fails(
        comparison, f"{prefix}invstd"
    )
    if not fit["structured"]:
        out["stage"] = "normalized"
    elif fit["offset"] > fit["scale"] * fit["x_hat_max"]:
        out["stage"] = "batch mean" if hidden else "normalized"
    else:
        out["stage"] = "normalized" if invstd_right else "inverse std"
    return out


def with_batch_stats(case, inputs, step: str, actual: dict, names) -> float:
    """The worst error/bound of a step's returned `names` (y, dx) against the
    oracle's training step on the same input, normalized with the batch's own
    statistics: at most 1 when an eval-mode step used them."""
    k = _step_index(case, step)
    tc = dataclasses.replace(
        case,
        train_steps=1,
        eval_step=False,
        track_running_stats=False,
        running_stats="drawn",
        cumulative=False,
        frozen=False,
        specials=(),
    )
    tin = {"x0": inputs[f"x{k}"], **_params(case, inputs)}
    if tc.gradients:
        tin["dy0"] = inputs[f"dy{k}"]
    exp, traces = simulate_oracle(tc, tin)
    model = model_bounds(tc, traces)
    worst = 0.0
    for name in names:
        obs = name.split(".", 1)[1]
        if f"train0.{obs}" not in exp or name not in actual:
            continue
        a = np.asarray(actual[name], dtype=np.float64)
        e = exp[f"train0.{obs}"]
        bound = full_bound(model[f"train0.{obs}"], e, np.dtype(actual[name].dtype).name)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(a - e)
            ratio = np.where(err == 0, 0.0, err / bound)
        worst = max(worst, float(np.nanmax(ratio, initial=0.0)) if np.isfinite(a).all() else float("inf"))
    return worst


def _localize_eval(case, inputs, comparison, actual, trace, name, full_bounds, out, probe, fails) -> None:
    """An eval-mode step (running statistics used) departs first, in y or dx.
    Tested, not inferred from where it showed: the statistics the backend
    used against the normalization and affine it applied to them.

    1. Running statistics the backend keeps to itself after training: the
       exact ones given to an eval step; right there, its own were wrong.
    2. The batch's own statistics: the output equals the oracle's training
       step on this input, so they were used instead of the running ones.
    3. dx (= dy * gamma * invstd in eval): a per-channel scale error is the
       inverse std's, anything else dx's own.
    4. affine-off: right without gamma and beta, the affine is wrong.
    5. The fit: an error that no per-channel scale and offset explains is
       elementwise, in the normalization.
    6. eval-given-batch-stats: the batch's exact statistics given as the
       running ones. Right there, the backend is right whenever it is given
       the batch's statistics: on the case it used others (stale ones).
       Still wrong: the statistics are right and their use is not, a scale
       error in the inverse std, an offset in the normalization."""
    step = trace.step
    obs = name.split(".", 1)[1]
    k = _step_index(case, step)
    if case.track_running_stats and case.train_steps and k > 0:
        seen = any(o.endswith((".running_mean", ".running_var")) for o in comparison.observables)
        if not seen:
            pc, pin = probe_eval_given_stats(case, inputs, step, trace.mean, trace.var)
            if case.gradients:
                pc = dataclasses.replace(pc, gradients=True)
                pin["dy0"] = inputs[f"dy{k}"]
            res = probe("eval-given-stats", "the exact running statistics given to an eval step", pc, pin)
            if res is not None and fails(res, f"eval.{obs}") is False:
                if obs == "dx":  # an eval step's dx depends on the variance only
                    out.update(how="probe", stage="running variance")
                    return
                fit = channel_fit(case, actual[name], trace.y, trace.x_hat, trace.gamma, full_bounds[name])
                shift = fit["offset"] > fit["scale"] * fit["x_hat_max"]
                out.update(fit=fit, how="probe", stage="running mean" if shift else "running variance")
                return
    used = [n for n in (f"{step}.y", f"{step}.dx") if n in comparison.observables]
    out["batch_statistics_ratio"] = ratio = with_batch_stats(case, inputs, step, actual, used)
    # where the oracle's own eval outputs pass the same test (the batch's statistics and the
    # running ones lie within rounding of each other, as in a half-precision batch at a large
    # offset), it cannot tell which statistics were used: the checks below decide
    exact = {"y": trace.y, "dx": trace.grads["dx"] if trace.grads else None}
    with np.errstate(over="ignore", invalid="ignore"):  # past a half dtype's range: infinity, as stored
        own = {n: np.asarray(exact[n.split(".", 1)[1]]).astype(actual[n].dtype) for n in used}
    if ratio <= 1.0 and with_batch_stats(case, inputs, step, own, used) > 1.0:
        out.update(stage="eval statistics", how="fit")  # normalized with the batch's own statistics
        return
    if obs == "dx":
        expected = trace.grads["dx"] if trace.grads else None
        scaled = expected is not None and scale_fit(actual[name], expected, full_bounds[name], case.channel_axis)
        out.update(stage="inverse std" if scaled else "dx", how="fit")
        return
    if case.affine:
        pc, pin = probe_affine_off(case, inputs)
        res = probe("affine-off", "gamma = 1, beta = 0: the normalization alone", pc, pin)
        if res is not None and fails(res, name) is False:
            out.update(stage="affine output", how="probe")
            return
    fit = channel_fit(case, actual[name], trace.y, trace.x_hat, trace.gamma, full_bounds[name])
    out.update(fit=fit, how="fit")
    if not fit["structured"]:
        out["stage"] = "normalized"
        return
    batch = ref.train_forward(trace.x, None, None, case.eps, channel_axis=case.channel_axis)
    pc, pin = probe_eval_given_stats(case, inputs, step, batch["batch_mean"], batch["batch_var"])
    res = probe("eval-given-batch-stats", "the batch's own exact statistics given as the running ones", pc, pin)
    wrong = fails(res, "eval.y")
    if wrong is False:
        out.update(stage="eval statistics", how="probe")
    elif wrong:
        out.update(
            stage="normalized" if fit["offset"] > fit["scale"] * fit["x_hat_max"] else "inverse std", how="probe"
        )
    else:  # the probe could not run or judge: the fit alone, which cannot tell the statistics from their use
        out["stage"] = "eval statistics"


def hidden_stats(comparison, prefix: str) -> bool:
    """True when the backend does not return this step's batch mean and variance."""
    return not all(f"{prefix}{o}" in comparison.observables for o in ("batch_mean", "batch_var"))
