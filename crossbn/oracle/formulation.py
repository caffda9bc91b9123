"""Formulations: one way of computing BatchNorm, simulated in the backend's dtype.

A `Formulation` is one choice per aspect where real implementations differ
(variance algorithm, where eps goes, folded affine, precision of the
reductions and of the arithmetic, running-variance correction, momentum
direction, eps clamping, float32 hyperparameters). `simulate` runs a whole
case with it through `crossbn/oracle/variants.py`; `simulate_with_spread` also
estimates how much its result depends on the summation order (three orders).
fingerprint.py searches formulations for the one that explains a backend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossbn.oracle import steps, variants as var
from crossbn.spec.dtypes import numpy_dtype


@dataclass(frozen=True)
class Formulation:
    compute: str = ""  # arithmetic dtype; "" = the case's (float32 for float16/bfloat16)
    reduce: str = ""  # accumulator dtype of the reductions (sums rounded to compute after); "" = compute
    input: str = ""  # x and dy rounded to this dtype before anything else (autocast-like); "" = the case's
    variance: str = "two-pass"  # "two-pass" | "one-pass" (E[x²]-E[x]², clamped at 0) | "one-pass-unclamped" | "welford"
    order: str = "pairwise"  # reductions summed "pairwise" (NumPy, PyTorch's cascade) | "sequential" (XLA on CPU)
    normalize: str = "multiply"  # (x-mean)*rsqrt(var+eps) | "divide": (x-mean)/sqrt(var+eps)
    eps_in_root: bool = True  # False: 1/(sqrt(var)+eps)
    norm_var: str = "biased"  # variance used to normalize: "biased" | "unbiased" (n/(n-1))
    affine: str = "separate"  # gamma*x_hat+beta | "folded": x*a+b
    running_var: str = "biased"  # variance fed to the running variance: "biased" | "unbiased"
    momentum: str = "old"  # what the case's momentum weighs: "old" (canonical) | "new"
    eps_floor: float = 0.0  # eps is clamped to at least this
    hyperparameters: str = "exact"  # eps and momentum "exact" or rounded to "float32"
    empty_batch: str = "nan"  # an empty batch's running update: "nan" (folds its NaN statistics in,
    # canonical) | "skip" (keeps the running statistics); see expected.py
    frozen: str = "batch"  # a frozen layer's training step: "batch" (canonical) | "inference"
    # (running statistics, left unchanged); see expected.py

    def changes(self, base: Formulation | None = None) -> dict:
        """The aspects where this formulation differs from `base` (the canonical one)."""
        base = base or Formulation()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        }

    def describe(self, case, base: Formulation | None = None) -> str:
        words = {
            "variance": {
                "one-pass": "one-pass variance E[x²]-E[x]² (clamped at 0)",
                "one-pass-unclamped": "one-pass variance E[x²]-E[x]², not clamped at 0",
                "welford": "Welford variance",
            },
            "order": {"sequential": "reductions summed sequentially in memory order"},
            "normalize": {"divide": "division by sqrt(var+eps)"},
            "norm_var": {"unbiased": "unbiased variance in the normalization"},
            "affine": {"folded": "folded affine x·a+b"},
            "running_var": {
                "unbiased": "running variance with Bessel's correction",
                "biased": "running variance without Bessel's correction",
            },
            "momentum": {"new": "momentum weighing the new batch statistic"},
            "frozen": {
                "inference": "a frozen layer's training step run as inference",
                "batch": "a frozen layer's training step run with the batch statistics",
            },
            "empty_batch": {
                "skip": "running statistics left unchanged by an empty batch",
                "nan": "running statistics updated with an empty batch's NaN statistics",
            },
        }
        parts = []
        for k, v in self.changes(base).items():
            if k in words:
                parts.append(words[k][v])
            elif k == "compute":
                parts.append(f"computed in {v}")
            elif k == "reduce":
                parts.append(f"reductions accumulated in {v}")
            elif k == "input":
                parts.append(f"input rounded to {v}")
            elif k == "eps_in_root":
                parts.append("eps outside the square root")
            elif k == "eps_floor":
                parts.append(f"eps clamped to at least {v:g}")
            elif k == "hyperparameters":
                parts.append("eps and momentum rounded to float32")
        if parts:
            return ", ".join(parts)
        return (
            "as documented" if base and base != Formulation() else "the canonical formulas"
        ) + f", computed in {self.compute_dtype(case)}"

    def compute_dtype(self, case) -> str:
        if self.compute:
            return self.compute
        return "float32" if case.dtype in ("float16", "bfloat16") else case.dtype

    def label(self) -> str:
        ch = self.changes()
        return ",".join(f"{k}={v}" for k, v in ch.items()) or "canonical"


# Other summation orders of each channel's elements, as permutations of its
# n elements: reversed, and reversed then rotated by one. The same statistics
# in exact arithmetic, other roundings in floating point. Reversal alone gives
# a pairwise tree over 2^k elements the same pairs, mirrored: the rotation
# pairs them differently.
_ORDERS = (
    lambda n: np.arange(n)[::-1],
    lambda n: np.roll(np.arange(n)[::-1], 1),
)


def _reorder(case, a: np.ndarray, perm, *, undo: bool = False) -> np.ndarray:
    """`a` with each channel's elements (in memory order) permuted by `perm`, or the permutation undone."""
    m = np.moveaxis(a, case.channel_axis, -1)
    flat = m.reshape(-1, m.shape[-1])  # one row per reduced element
    p = perm(flat.shape[0])
    out = flat[np.argsort(p)] if undo else flat[p]
    return np.moveaxis(out.reshape(m.shape), -1, case.channel_axis)


def simulate_with_spread(case, inputs: dict, f: Formulation, sign_noise: float = 0.0) -> tuple[dict, dict]:
    """`simulate`, and the rounding spread of each observable: how far three
    summation orders land apart (their range). A few orders can agree by
    chance in one channel or step, so the spread is pooled over every channel
    and step of the same observable (e.g. all `*.batch_var`): for per-channel
    statistics the largest range; for y and dx, whose noise is inherited
    from the statistics of their channel, the largest range relative to the
    channel's magnitude, times that magnitude. `sign_noise`: how many spreads
    of the batch variance leave an unclamped one-pass variance's sign open."""
    first = simulate(case, inputs, f)
    axes = tuple(a for a in range(case.rank) if a != case.channel_axis)
    others = []
    for perm in _ORDERS:
        moved = {k: (_reorder(case, v, perm) if k[:1] == "x" or k[:2] == "dy" else v) for k, v in inputs.items()}
        out = simulate(case, moved, f)
        others.append(
            {k: (_reorder(case, v, perm, undo=True) if k.endswith((".y", ".dx")) else v) for k, v in out.items()}
        )
    diff: dict[str, Any] = {}
    scale: dict[str, Any] = {}
    pooled: dict[str, Any] = {}
    for k, v in first.items():
        with np.errstate(invalid="ignore"):
            samples = [v] + [o[k] for o in others]
            ok = np.logical_and.reduce([np.isfinite(w) for w in samples])
            diff[k] = np.where(ok, np.max(samples, axis=0) - np.min(samples, axis=0), 0.0)
            kind = k.split(".", 1)[1]
            if kind in ("y", "dx"):
                # initial=0: an empty batch's y and dx have no elements, and no spread
                scale[k] = np.where(ok, np.abs(v), 0.0).max(axis=axes, keepdims=True, initial=0.0)
                rel = np.where(scale[k] > 0, diff[k].max(axis=axes, keepdims=True, initial=0.0) / scale[k], 0.0)
                pooled[kind] = max(pooled.get(kind, 0.0), float(rel.max(initial=0.0)))
            else:
                pooled[kind] = max(pooled.get(kind, 0.0), float(diff[k].max(initial=0.0)))
    spread = {}
    for k, d in diff.items():
        kind = k.split(".", 1)[1]
        spread[k] = (
            np.broadcast_to(pooled[kind] * scale[k], d.shape) if kind in ("y", "dx") else np.full(d.shape, pooled[kind])
        )
    if f.variance == "one-pass-unclamped" and sign_noise > 0:
        _undetermined_sign(
            case, first, spread, {k: sign_noise * pooled.get(k, 0.0) for k in ("batch_var", "running_var")}
        )
    return first, spread


def _undetermined_sign(case, out: dict, spread: dict, noise: dict) -> None:
    """An unclamped E[x²]-E[x]² within `noise` of 0 has no sign that rounding
    decides: where another summation order makes it negative, the inverse std
    is NaN, and so is an eval step's where the running variance it fed is.
    Such a channel's invstd, y, dx and dgamma may be anything, NaN included:
    an infinite spread there (scored as unbounded, NaN or not)."""
    running = None  # the running variance the next eval-mode step reads
    for step in case.steps:
        if f"{step}.batch_var" in out:
            used, kind = out[f"{step}.batch_var"], "batch_var"
        elif running is not None:
            used, kind = running, "running_var"
        else:
            used = None
        running = out.get(f"{step}.running_var", running)
        if used is None:
            continue
        loose = np.abs(used) <= noise[kind]  # (C,)
        if not loose.any():
            continue
        for obs in ("invstd", "y", "dx", "dgamma"):
            key = f"{step}.{obs}"
            if key not in spread:
                continue
            per_element = obs in ("y", "dx")
            shape = [1] * np.ndim(spread[key])
            if per_element:
                shape[case.channel_axis] = -1
            mask = loose.reshape(shape) if per_element else loose
            spread[key] = np.where(mask, np.inf, spread[key])


def simulate(case, inputs: dict, f: Formulation) -> dict:
    """The observables an implementation computing `f` returns for `case`."""
    cd_name = f.compute_dtype(case)
    cd, rd = numpy_dtype(cd_name), numpy_dtype(f.reduce or cd_name)
    store = var.rounder(numpy_dtype(case.dtype))
    rc = var.rounder(cd)
    ax = case.channel_axis
    eps, momentum = case.eps, case.momentum
    if f.hyperparameters == "float32":
        eps, momentum = float(np.float32(eps)), float(np.float32(momentum))
    eps = max(eps, f.eps_floor)
    eps_c = float(rc(eps))
    # the inputs as the implementation holds them: cast to its compute dtype
    f64 = lambda a: None if a is None else rc(np.asarray(a, dtype=np.float64))  # noqa: E731
    held = var.rounder(numpy_dtype(f.input)) if f.input else (lambda a: a)  # the input's own precision
    gamma, beta = f64(inputs.get("gamma")), f64(inputs.get("beta"))
    running: Any = (f64(inputs["running_mean"]), f64(inputs["running_var"])) if case.track_running_stats else None
    n = case.reduction_size
    out: dict[str, np.ndarray] = {}
    for s in steps.plan(case, frozen=f.frozen, empty_batch=f.empty_batch):
        k, step, use_batch = s.index, s.name, s.use_batch
        x = f64(held(inputs[f"x{k}"]))
        var_term: float | np.ndarray = 1.0
        if use_batch:
            if f.variance == "welford":  # the running (count, mean, M2) state is the accumulator
                mean, v = var.var_welford(x, ax, rd)
            else:
                mean = var.mean(x, ax, cd, rd, order=f.order)
                if f.variance.startswith("one-pass"):
                    v = var.var_one_pass(x, mean, ax, cd, rd, order=f.order, clamp=f.variance == "one-pass")
                else:
                    v = var.var_two_pass(x, mean, ax, cd, rd, order=f.order)
            mean, v = rc(mean), rc(v)
            v_norm = rc(v * (n / (n - 1))) if f.norm_var == "unbiased" and n > 1 else v
            if f.norm_var == "unbiased" and n > 1:
                var_term = n / (n - 1)
        else:
            mean, v = running
            v_norm = v
        invstd = var.inverse_std(v_norm, eps_c, cd, eps_in_root=f.eps_in_root)
        if not f.eps_in_root:
            with np.errstate(divide="ignore", invalid="ignore"):
                sd = np.sqrt(v_norm)
                var_term = var_term * np.where(sd > 0, (sd + eps_c) / sd, 1.0)
        with np.errstate(invalid="ignore"):  # an unclamped negative variance: NaN, as the backend's
            divide_by = rc(np.sqrt(rc(v_norm + eps_c))) if f.normalize == "divide" and f.eps_in_root else None
        x_hat = var.normalize(x, mean, invstd, ax, cd, divide_by=divide_by)
        y = var.affine(x, x_hat, mean, invstd, gamma, beta, ax, cd, folded=f.affine == "folded")
        out[f"{step}.y"] = store(y)
        if use_batch:
            out.update({f"{step}.batch_mean": mean, f"{step}.batch_var": v, f"{step}.invstd": invstd})
        if s.update is not None:
            fed = rc(v * (n / (n - 1))) if f.running_var == "unbiased" and n > 1 else v
            if s.update == "kept":
                pass  # an empty batch: the state is kept
            elif s.update == "cumulative":
                running = (
                    var.cumulative_update(running[0], mean, s.count, cd),
                    var.cumulative_update(running[1], fed, s.count, cd),
                )
            else:
                direction = "old" if f.momentum == "old" else "new"
                running = (
                    var.running_update(running[0], mean, momentum, cd, weight_on=direction),
                    var.running_update(running[1], fed, momentum, cd, weight_on=direction),
                )
            running = (store(running[0]), store(running[1]))
            out[f"{step}.running_mean"], out[f"{step}.running_var"] = running
        if s.as_inference:  # the state, read and kept
            out[f"{step}.running_mean"], out[f"{step}.running_var"] = running
        if case.gradients:
            dy = f64(held(inputs[f"dy{k}"]))
            if use_batch:
                g = var.train_backward(dy, x_hat, invstd, gamma, ax, cd, var_term=var_term, acc=rd, order=f.order)
            else:
                g = var.eval_backward(dy, x_hat, invstd, gamma, ax, cd, acc=rd, order=f.order)
            out[f"{step}.dx"] = store(g["dx"])
            if case.affine and not case.frozen:
                out[f"{step}.dgamma"], out[f"{step}.dbeta"] = store(g["dgamma"]), store(g["dbeta"])
    return out
