"""Backends with one planted fault each, loaded through the custom-backend API.

`Planted` is a complete BatchNorm in NumPy (training steps with running
statistics, eval, gradients) in a chosen compute dtype, written
independently of `crossbn/oracle/variants.py` (numpy's own reductions, or
adjacent-pair trees where a reduction must round in half precision), so a
fingerprint has to recognise a formulation, not a copy of its own code.
Each subclass plants one fault (FAULTS), in one stage or one variant
formulation; `*-hidden` ones also hide the batch statistics and inverse std
(or, for the running statistics, those), as most frameworks do, so the
localizer has to use its probes; `*-eval` ones plant it in the eval step
alone. tests/test_localize.py plants each one on one case;
benchmarks/localization.py runs them all over the default suite.
"""

import numpy as np

from crossbn.backends.base import Backend
from crossbn.spec.dtypes import UNIT_ROUNDOFF, numpy_dtype


def _welford(v, dt):
    """Row (mean, biased variance) of v (C, n) by Welford's sequential update
    over blocks of 8, the blocks then merged adjacent pair by adjacent pair
    (Chan et al.), everything rounded to `dt`: a GPU kernel's order."""
    c, n = v.shape
    pad = (-n) % 8
    v = v.astype(dt)
    blocks = np.concatenate([v, np.full((c, pad), np.nan, dt)], axis=1).reshape(c, -1, 8)
    cnt = np.zeros(blocks.shape[:2])
    mean = np.zeros(blocks.shape[:2], dt)
    m2 = np.zeros(blocks.shape[:2], dt)
    for j in range(8):
        xj = blocks[:, :, j]
        ok = ~np.isnan(xj)
        cnt = cnt + ok
        d = (xj - mean).astype(dt)
        mean = np.where(ok, (mean + d / np.maximum(cnt, 1).astype(dt)).astype(dt), mean)
        m2 = np.where(ok, (m2 + d * (xj - mean)).astype(dt), m2)
    while mean.shape[1] > 1:
        if mean.shape[1] % 2:
            cnt, mean, m2 = (
                np.concatenate([a, z], axis=1)
                for a, z in ((cnt, np.zeros((c, 1))), (mean, np.zeros((c, 1), dt)), (m2, np.zeros((c, 1), dt)))
            )
        na, nb = cnt[:, 0::2], cnt[:, 1::2]
        tot = np.maximum(na + nb, 1)
        d = (mean[:, 1::2] - mean[:, 0::2]).astype(dt)
        mean = (mean[:, 0::2] + d * (nb / tot).astype(dt)).astype(dt)
        m2 = (m2[:, 0::2] + m2[:, 1::2] + (d * d).astype(dt) * (na * nb / tot).astype(dt)).astype(dt)
        cnt = na + nb
    return mean[:, 0], (m2[:, 0] / dt.type(n)).astype(dt)


def _pairwise_adjacent(v, dt):
    """Row sums of v (C, n), adjacent pairs first, every partial sum in `dt`."""
    v = v.astype(dt)
    while v.shape[1] > 1:
        odd = v[:, -1:] if v.shape[1] % 2 else None
        s = (v[:, 0 : v.shape[1] - 1 : 2].astype(np.float64) + v[:, 1::2].astype(np.float64)).astype(dt)
        v = s if odd is None else np.concatenate([s, odd], axis=1)
    return v[:, 0]


class Planted(Backend):
    """Correct unless `fault` says otherwise (see FAULTS)."""

    name = "planted-none"
    packages = ("numpy",)
    modules = ("numpy",)
    fault = None
    hide = False  # return no batch_mean / batch_var / invstd
    compute = None  # compute dtype; None = the case's (float32 for halves)
    no_frozen = None  # a frozen layer: no parameter gradients; its training steps as `frozen_as` says
    frozen_as = "batch"  # "batch" (canonical) or "inference" (running statistics, kept)
    eval_only = False  # the fault in the eval step alone (the training steps are right)
    hide_running = False  # return no running_mean / running_var
    input = None  # x and dy rounded to this dtype first (autocast-like input precision)
    reduce = None  # sums accumulated in this dtype, adjacent pairs first

    def supports(self, case):
        if case.cumulative:
            return "no cumulative average"
        return super().supports(case)

    def describe(self):
        return {"version": np.__version__, "devices": {"cpu": "numpy"}}

    def run(self, case, inputs, device):
        fault = f = self.fault
        cname = self.compute or ("float32" if case.dtype in ("float16", "bfloat16") else case.dtype)
        cd = numpy_dtype(cname)
        store = numpy_dtype(case.dtype)
        ax = case.channel_axis
        axes = tuple(a for a in range(case.rank) if a != ax)
        shape = [1] * case.rank
        shape[ax] = case.channels
        n = case.reduction_size
        b = lambda v: np.asarray(v).reshape(shape)  # noqa: E731
        rows = lambda a: np.moveaxis(a, ax, 0).reshape(case.channels, -1)  # noqa: E731

        acc = numpy_dtype(self.reduce) if self.reduce else (store if fault == "half-reductions" else None)
        sequential = fault in ("sequential", "one-pass-sequential")

        def total(a):
            if acc is not None:
                return _pairwise_adjacent(rows(a), acc).astype(cd)
            if sequential:  # a running sum in memory order (cumsum never reorders)
                return np.cumsum(rows(a), axis=1, dtype=cd)[:, -1] if n else np.zeros(case.channels, cd)
            return a.sum(axis=axes, dtype=cd)

        def average(a):
            if sequential:  # sum * (1/n), as XLA on CPU
                return (total(a) * (cd.type(1) / cd.type(max(n, 1)))).astype(cd)
            # NumPy's own mean: float16 summed and divided in float32, then rounded
            if acc is not None:
                return (total(a) / cd.type(n)).astype(cd)
            return a.mean(axis=axes).astype(cd)

        def given(name):
            v = inputs[name]
            return v.astype(numpy_dtype(self.input)).astype(cd) if self.input else v.astype(cd)

        # a plain fault's size: 1 %, or 64 unit roundoffs of the case's dtype where that is
        # larger (3.1 % in float16, 25 % in bfloat16); a smaller error in half precision is
        # within what computing in that precision may do, a rounding, not a bug
        size = max(0.01, 64 * UNIT_ROUNDOFF[case.dtype])
        grow = cd.type(1 + size)
        one, eps = cd.type(1), cd.type(case.eps)
        if f == "clamped-eps":
            eps = cd.type(max(case.eps, 1e-5))
        m = case.momentum
        keep, new = (cd.type(1 - m), cd.type(m)) if f == "momentum-new" else (cd.type(m), cd.type(1 - m))
        gamma = inputs["gamma"].astype(cd) if "gamma" in inputs else None
        beta = inputs["beta"].astype(cd) if "beta" in inputs else None
        rm = inputs["running_mean"].astype(cd) if case.track_running_stats else None
        rv = inputs["running_var"].astype(cd) if case.track_running_stats else None
        out = {}
        for k, step in enumerate(case.steps):
            f = fault if step == "eval" or not self.eval_only else None
            x = given(f"x{k}")
            as_inference = case.frozen and self.frozen_as == "inference" and step != "eval"
            batch = (step != "eval" and not as_inference) or not case.track_running_stats
            if f == "eval-batch-stats":
                batch = True
            if batch:
                mean = average(x)
                if f == "welford":
                    mean, v = _welford(rows(x), cd)
                if f == "mean":
                    mean = (mean + cd.type(size / 10) * np.sqrt(total((x - b(mean)) ** 2) / n)).astype(cd)
                if f == "welford":
                    pass
                elif f in ("one-pass", "one-pass-sequential"):
                    v = np.maximum(average(x * x) - mean * mean, cd.type(0)).astype(cd)
                elif f == "one-pass-unclamped":  # can go negative: NaN downstream
                    v = (average(x * x) - mean * mean).astype(cd)
                else:
                    v = average((x - b(mean)) ** 2)
                if f == "var":
                    v = (v * grow).astype(cd)
                v_norm = (v * cd.type(n / (n - 1))).astype(cd) if f == "unbiased-normalization" else v
            else:
                mean, v = rm, rv
                v_norm = v
            if f == "eps-outside":
                invstd = (one / (np.sqrt(v_norm) + eps)).astype(cd)
            else:
                invstd = (one / np.sqrt(v_norm + eps)).astype(cd)
            if f == "invstd":
                invstd = (invstd * grow).astype(cd)
            if f == "divide":
                x_hat = ((x - b(mean)) / b(np.sqrt(v_norm + eps).astype(cd))).astype(cd)
            else:
                x_hat = ((x - b(mean)) * b(invstd)).astype(cd)
            if f == "normalized":  # an elementwise error: every 7th element off by 1 %
                x_hat = x_hat.copy()
                x_hat.reshape(-1)[::7] *= grow
            g = np.ones(case.channels, cd) if gamma is None else gamma
            be = np.zeros(case.channels, cd) if beta is None else beta
            if f == "affine" and beta is not None:
                be = (be + cd.type(size) * (np.abs(be) + one)).astype(cd)
            if f == "folded-affine":
                a = (g * invstd).astype(cd)
                shift = (be - mean * a).astype(cd)
                y = (x * b(a) + b(shift)).astype(cd)
            else:
                y = (x_hat * b(g) + b(be)).astype(cd)
            out[f"{step}.y"] = y.astype(store)
            if batch and step != "eval" and not self.hide:
                out.update({f"{step}.batch_mean": mean, f"{step}.batch_var": v, f"{step}.invstd": invstd})
            if as_inference and not self.hide_running:
                out[f"{step}.running_mean"], out[f"{step}.running_var"] = rm.astype(store), rv.astype(store)
            elif step != "eval" and case.track_running_stats:
                fed = (v * cd.type(n / (n - 1))).astype(cd) if f == "bessel" and n > 1 else v
                rm = (keep * rm + new * mean).astype(cd)
                rv = (keep * rv + new * fed).astype(cd)
                if f == "running-mean":
                    rm = (rm * grow).astype(cd)
                if f == "running-var":
                    rv = (rv * grow).astype(cd)
                rm, rv = rm.astype(store).astype(cd), rv.astype(store).astype(cd)
                if not self.hide_running:
                    out[f"{step}.running_mean"], out[f"{step}.running_var"] = rm.astype(store), rv.astype(store)
            if case.gradients:
                dy = given(f"dy{k}")
                dbeta = total(dy)
                dgamma = total(dy * x_hat)
                if f == "dbeta":
                    dbeta = (dbeta + cd.type(size) * (np.abs(dbeta) + one)).astype(cd)
                if f == "dgamma":
                    dgamma = (dgamma + cd.type(size) * (np.abs(dgamma) + one)).astype(cd)
                if batch:
                    # the derivative of this formulation's own invstd with respect to the variance,
                    # relative to the canonical one (1 unless the fault changes the invstd formula)
                    k = np.ones(case.channels, cd)
                    if f == "unbiased-normalization":
                        k = k * cd.type(n / (n - 1))
                    if f == "eps-outside":
                        sd = np.sqrt(v_norm).astype(cd)
                        k = np.where(sd > 0, (sd + eps) / np.where(sd > 0, sd, one), one).astype(cd)
                    dx = b(g * invstd / cd.type(n)) * (
                        cd.type(n) * dy - b(total(dy)) - x_hat * b(k * total(dy * x_hat))
                    )
                else:
                    dx = dy * b(g * invstd)
                if f == "dx":
                    dx = dx.copy()
                    dx.reshape(-1)[::5] *= grow
                out[f"{step}.dx"] = dx.astype(store)
                if case.affine and not case.frozen:
                    out[f"{step}.dgamma"], out[f"{step}.dbeta"] = dgamma.astype(store), dbeta.astype(store)
        return out


# name -> (fault, hide intermediates, compute dtype)
FAULTS = {
    "mean": ("mean", False, None),
    "mean-hidden": ("mean", True, None),
    "var": ("var", False, None),
    "var-hidden": ("var", True, None),
    "invstd": ("invstd", False, None),
    "invstd-hidden": ("invstd", True, None),
    "normalized": ("normalized", False, None),
    "affine": ("affine", False, None),
    "affine-hidden": ("affine", True, None),
    "running-mean": ("running-mean", False, None),
    "running-var": ("running-var", False, None),
    "eval-batch-stats": ("eval-batch-stats", False, None),
    "dbeta": ("dbeta", False, None),
    "dgamma": ("dgamma", False, None),
    "dx": ("dx", False, None),
    "one-pass": ("one-pass", False, None),
    "one-pass-hidden": ("one-pass", True, None),
    "eps-outside": ("eps-outside", False, None),
    "unbiased-normalization": ("unbiased-normalization", False, None),
    "bessel": ("bessel", False, None),
    "momentum-new": ("momentum-new", False, None),
    "clamped-eps": ("clamped-eps", False, None),
    "half-reductions": ("half-reductions", False, None),
    "float32-compute": (None, False, "float32"),
    "float16-compute": (None, False, "float16"),
    "folded-affine-f16": ("folded-affine", False, "float16"),
    "divide-f16": ("divide", False, "float16"),
    "welford-f16": ("welford", False, "float16"),
    # first visible in the eval step, or through hidden running statistics
    "invstd-eval": ("invstd", False, None),
    "normalized-eval": ("normalized", False, None),
    "normalized-hidden": ("normalized", True, None),
    "affine-eval": ("affine", False, None),
    "running-mean-hidden": ("running-mean", False, None),
    "running-var-hidden": ("running-var", False, None),
    "eval-batch-stats-hidden": ("eval-batch-stats", True, None),
    "dx-eval": ("dx", False, None),
    "dgamma-eval": ("dgamma", False, None),
    # formulations as frameworks do them
    "one-pass-unclamped": ("one-pass-unclamped", False, None),
    "one-pass-unclamped-hidden": ("one-pass-unclamped", True, None),
    "sequential": ("sequential", False, None),
    "one-pass-sequential": ("one-pass-sequential", False, None),  # Flax on XLA's CPU
    "folded-affine": ("folded-affine", False, None),
    "input-f16": (None, False, None),
    "input-bf16": (None, False, None),
    "input-f16-half-reductions": (None, False, None),
}

# more class attributes for some faults (see Planted's; `dtypes`, the Backend's: the case dtypes the
# fault is meant for, others unsupported); the rest keep the defaults
_MORE = {
    "invstd-eval": {"eval_only": True},
    "normalized-eval": {"eval_only": True},
    "affine-eval": {"eval_only": True},
    "dx-eval": {"eval_only": True},
    "dgamma-eval": {"eval_only": True},
    "running-mean-hidden": {"hide_running": True},
    "running-var-hidden": {"hide_running": True},
    # (half-reductions runs every dtype: in float32 or float64 its sums are a correct algorithm, and
    # crossbn conventions reads its momentum and variance conventions off float32 and float64 cases)
    "float32-compute": {"dtypes": ("float64",)},
    "float16-compute": {"dtypes": ("float16",)},
    "folded-affine-f16": {"dtypes": ("float16",)},
    "divide-f16": {"dtypes": ("float16",)},
    "welford-f16": {"dtypes": ("float16",)},
    "input-f16": {"input": "float16", "dtypes": ("float32", "float64")},
    "input-bf16": {"input": "bfloat16", "dtypes": ("float32",)},
    "input-f16-half-reductions": {"input": "float16", "reduce": "float16", "dtypes": ("float32",)},
}

for _label, (_fault, _hide, _compute) in FAULTS.items():
    _cls = type(
        f"Planted_{_label.replace('-', '_')}",
        (Planted,),
        {
            "name": f"planted-{_label}",
            "fault": _fault,
            "hide": _hide,
            "compute": _compute,
            "__module__": __name__,
            **_MORE.get(_label, {}),
        },
    )
    globals()[_cls.__name__] = _cls
