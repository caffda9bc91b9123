"""Tests of the float64 NumPy oracle in ``crossbn/oracle/``.

Every expectation here is computed independently of the code under test:
exact rational arithmetic (``fractions.Fraction``, square roots via
``decimal`` at 50 digits), central finite differences, or algebraic
identities.  Tolerances are derived from rounding-error bounds with
u = 2**-53 (float64 unit roundoff) and ``np.spacing`` (1 ulp).
"""

from __future__ import annotations

import warnings
from decimal import Decimal, localcontext
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from crossbn.oracle import batchnorm as ref

U = Fraction(1, 2**53)  # float64 unit roundoff
HALF_ULP_PLUS = Fraction(1, 2) + Fraction(1, 2**20)  # correctly rounded, up to O(u**2)


# --------------------------------------------------------------------------
# Exact (rational) reference, plain Python, element by element
# --------------------------------------------------------------------------


def rows(a, axis):
    """(C, n) list of lists of Python floats: one row per channel."""
    a = np.asarray(a, dtype=np.float64)
    return np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1).tolist()


def ulp(v):
    """1 ulp (np.spacing) at the float64 nearest to the exact value v."""
    return Fraction(float(np.spacing(abs(float(v)))))


def exact_invstd(var, eps):
    """1/sqrt(var + eps) to 50 significant digits, as an exact Fraction."""
    w = var + Fraction(eps)
    with localcontext() as ctx:
        ctx.prec = 50
        return Fraction(1 / (Decimal(w.numerator) / Decimal(w.denominator)).sqrt())


def exact_channel(xs, eps, g, b, dys):
    """Everything for one channel, exactly.  xs/dys: floats; g/b: floats."""
    n = len(xs)
    X = [Fraction(v) for v in xs]
    m = sum(X) / n
    var = sum((v - m) ** 2 for v in X) / n
    s = exact_invstd(var, eps)
    xh = [(v - m) * s for v in X]
    G, B = Fraction(g), Fraction(b)
    y = [G * h + B for h in xh]
    DY = [Fraction(v) for v in dys]
    dbeta = sum(DY)
    dgamma = sum(d * h for d, h in zip(DY, xh))
    dx = [G * s / n * (n * d - dbeta - h * dgamma) for d, h in zip(DY, xh)]
    return dict(
        mean=m,
        var=var,
        invstd=s,
        x_hat=xh,
        y=y,
        dbeta=dbeta,
        dgamma=dgamma,
        dx=dx,
        dx_eval=[d * G * s for d in DY],
        n=n,
    )


def check(computed, exact, tol, what):
    err = abs(Fraction(float(computed)) - exact)
    assert err <= tol, (
        f"{what}: computed {float(computed)!r}, exact {float(exact)!r}, "
        f"error {float(err):.3g} > tolerance {float(tol):.3g}"
    )


# Shapes and channel axes of the exact tests (n = 4..8 per channel).
EXACT_CASES = [((3, 2, 2), 1), ((3, 2, 2), -1), ((4, 3), 1), ((4, 3), -1), ((2, 3, 2, 2), 1), ((2, 3, 2, 2), -1)]


def make_data(kind, shape, rng):
    z = rng.standard_normal(shape)
    if kind == "gauss":  # zero-mean: the sum cancels, mean << spread
        return z * 1.7
    if kind == "float32":  # values a float32 framework would actually see
        return (z * 3 + 0.5).astype(np.float32).astype(np.float64)
    if kind == "offset":  # mean >> spread
        return 40.0 + z * 0.01
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["gauss", "float32", "offset"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("affine_on", [True, False])
@pytest.mark.parametrize("shape,axis", EXACT_CASES)
def test_against_exact_rationals(shape, axis, affine_on, seed, kind):
    rng = np.random.default_rng([seed, len(shape), axis % len(shape)])
    x = make_data(kind, shape, rng)
    dy = rng.standard_normal(shape)
    C = shape[axis]
    eps = 1e-3
    gamma = rng.uniform(0.5, 2.0, C) * rng.choice([-1, 1], C) if affine_on else None
    beta = rng.standard_normal(C) if affine_on else None
    g = gamma if affine_on else np.ones(C)
    b = beta if affine_on else np.zeros(C)

    fwd = ref.train_forward(x, gamma, beta, eps, channel_axis=axis)
    bwd = ref.train_backward(dy, fwd["x_hat"], fwd["invstd"], gamma, channel_axis=axis)
    ebwd = ref.eval_backward(dy, fwd["x_hat"], fwd["invstd"], gamma, channel_axis=axis)
    out = {k: rows(fwd[k], axis) for k in ("x_hat", "y")}
    out.update({k: rows(bwd[k], axis) for k in ("dx",)})
    dx_eval = rows(ebwd["dx"], axis)

    for c, (xs, dys) in enumerate(zip(rows(x, axis), rows(dy, axis))):
        e = exact_channel(xs, eps, g[c], b[c], dys)
        n, s, G = e["n"], e["invstd"], Fraction(g[c])
        # mean: the refinement leaves m0 + (m - m0)(1 + O(u)) before one final
        # rounding, so it is correctly rounded up to O(u**2) (brief: <= 2 ulp).
        check(fwd["batch_mean"][c], e["mean"], HALF_ULP_PLUS * ulp(e["mean"]), "mean")
        # var: one nearly exact sum (<= 0.5 ulp, rel <= u) and one division
        # (rel <= u): relative 2u < 2 ulp.
        check(fwd["batch_var"][c], e["var"], 2 * ulp(e["var"]), "var")
        check(fwd["invstd"][c], s, 2 * ulp(s), "invstd")
        # A mean off by delta = 1e-3*sigma: sum(d**2) grows by n*delta**2
        # (1e-6 relative, ~1e10 ulp) and the correction term removes it; its
        # own rounding is only ~u*delta**2, so the result stays within 2 ulp.
        delta = 1e-3 * float(e["var"]) ** 0.5
        off = ref.batch_var(np.array([xs]).T, mean=[float(e["mean"]) + delta])
        check(off[0], e["var"], 2 * ulp(e["var"]), "var with shifted mean")
        # dbeta = sum of exact floats, nearly correctly rounded -> 1 ulp.
        check(bwd["dbeta"][c], e["dbeta"], ulp(e["dbeta"]), "dbeta")
        assert ebwd["dbeta"][c] == bwd["dbeta"][c]

        # x_hat = fl(fl(x - m') * s'), with |m' - m| <= 2 ulp(m) and
        # |s' - s| <= 2 ulp(s) <= 4u*s (the brief's bounds, asserted above in
        # tighter form): error <= s*2ulp(m) + |x_hat|*(u + 4u + u).
        # Factor 1.001 covers the neglected second-order (u**2) terms.
        slack = Fraction(1001, 1000)
        t_xh = [slack * (s * 2 * ulp(e["mean"]) + 6 * U * abs(h)) for h in e["x_hat"]]
        for i, h in enumerate(e["x_hat"]):
            check(out["x_hat"][c][i], h, t_xh[i], f"x_hat[{c},{i}]")
            # y = fl(fl(g*x_hat') + b): |g|*t_xh + u*|g*x_hat| + u*|y|.
            ty = slack * (abs(G) * t_xh[i] + U * (abs(G * h) + abs(e["y"][i])))
            check(out["y"][c][i], e["y"][i], ty, f"y[{c},{i}]")

        # dgamma = nearly exact sum of exact products dy*x_hat': the x_hat
        # errors enter as sum|dy|*t_xh, the final rounding as 1 ulp.
        t_dg = ulp(e["dgamma"]) + sum(abs(Fraction(d)) * t for d, t in zip(dys, t_xh))
        check(bwd["dgamma"][c], e["dgamma"], t_dg, "dgamma")
        assert ebwd["dgamma"][c] == bwd["dgamma"][c]

        # dx = fl(K' * I'), K = g*s/n (|K'-K| <= 6u|K|: s' 4u, two roundings),
        # I = n*dy - A - x_hat*B.  First order, per rounding/inherited error:
        #   err(I) <= u|n dy| + ulp(A) + u|n dy - A| + |x_hat|*t_dg + |B|*t_xh
        #             + u|x_hat*B| + u|I|
        #   err(dx) <= |K|*err(I) + 7u|K*I|
        K, A, B = G * s / n, e["dbeta"], e["dgamma"]
        for i, (d, h) in enumerate(zip(dys, e["x_hat"])):
            nd = n * Fraction(d)
            I = nd - A - h * B
            err_i = U * (abs(nd) + abs(nd - A) + abs(h * B) + abs(I)) + ulp(A) + abs(h) * t_dg + abs(B) * t_xh[i]
            check(out["dx"][c][i], e["dx"][i], slack * (abs(K) * err_i + 7 * U * abs(K * I)), f"dx[{c},{i}]")
            # eval: dx = fl(dy * fl(g * s')), s' within 4u: 6u relative.
            check(dx_eval[c][i], e["dx_eval"][i], slack * 6 * U * abs(e["dx_eval"][i]), f"dx_eval[{c},{i}]")


def test_cancelling_sum_is_exact():
    """Mean/var of a channel whose sum cancels by 17 orders of magnitude.

    Worst case, Sum2's second-order term (~u**2 * sum|x| ~ 1e-15) could
    exceed 2 ulp of this mean (~0.46); for these values every TwoSum level
    is exact, so the brief's 2 ulp must hold.  np.mean is off by ~1e16 ulp.
    """
    x = np.array([[1e17, 3.0, -1e17, 1.5, 0.25, -2.0]]).T  # (6, 1), channel axis 1
    e = exact_channel(x.ravel().tolist(), 1e-5, 1.0, 0.0, [0.0] * 6)
    check(ref.batch_mean(x)[0], e["mean"], 2 * ulp(e["mean"]), "mean")
    check(ref.batch_var(x)[0], e["var"], 2 * ulp(e["var"]), "var")
    # Teeth: plain float64 summation gets this mean badly wrong.
    assert abs(Fraction(float(np.mean(x))) - e["mean"]) > 1000 * ulp(e["mean"])


def test_large_offset_variance():
    """1e8 + noise: the two-pass variance is exact to ulps; E[x^2]-E[x]^2 is not."""
    rng = np.random.default_rng(7)
    x = 1e8 + rng.standard_normal((16, 3))  # channel axis -1, var ~ 1
    var = ref.batch_var(x, channel_axis=-1)
    mean = ref.batch_mean(x, channel_axis=-1)
    naive = np.mean(x * x, axis=0) - np.mean(x, axis=0) ** 2
    naive_ok = []
    for c, xs in enumerate(rows(x, -1)):
        e = exact_channel(xs, 1e-5, 1.0, 0.0, [0.0] * len(xs))
        check(mean[c], e["mean"], 2 * ulp(e["mean"]), "mean")
        check(var[c], e["var"], 2 * ulp(e["var"]), "var")
        naive_ok.append(abs(Fraction(float(naive[c])) - e["var"]) <= 2 * ulp(e["var"]))
    # The same tolerance rejects the naive formula (error ~ ulp(1e16) = 2).
    assert not any(naive_ok)


# --------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------

FD_SHAPES = [(4, 3), (2, 3, 4), (2, 3, 2, 2), (2, 3, 1, 2, 2)]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("shape", FD_SHAPES)
def test_gradients_match_finite_differences(shape, axis, mode):
    rng = np.random.default_rng([len(shape), axis % len(shape), int(mode == "train")])
    x = rng.standard_normal(shape) * 2.0 + 0.3
    dy = rng.standard_normal(shape)
    C = shape[axis]
    gamma = rng.uniform(0.5, 2.0, C)
    beta = rng.standard_normal(C)
    eps = 1e-3
    run_mean, run_var = rng.standard_normal(C) * 0.1, rng.uniform(0.5, 2.0, C)

    def loss(x, gamma, beta):
        if mode == "train":
            y = ref.train_forward(x, gamma, beta, eps, channel_axis=axis)["y"]
        else:
            y = ref.eval_forward(x, run_mean, run_var, gamma, beta, eps, channel_axis=axis)["y"]
        return float(np.sum(dy * y))

    if mode == "train":
        f = ref.train_forward(x, gamma, beta, eps, channel_axis=axis)
        grads = ref.train_backward(dy, f["x_hat"], f["invstd"], gamma, channel_axis=axis)
    else:
        f = ref.eval_forward(x, run_mean, run_var, gamma, beta, eps, channel_axis=axis)
        grads = ref.eval_backward(dy, f["x_hat"], f["invstd"], gamma, channel_axis=axis)

    # Central differences with h = 1e-6 * scale of the perturbed input:
    # truncation error ~ h**2/6 * |L'''| ~ 1e-12 * O(invstd**3) (O(1) here),
    # rounding error ~ u * sum|dy*y| / h ~ 1e-16 * 100 / 1e-6 = 1e-8.  Both
    # are far below the asserted 1e-6 (relative to the gradient's scale), and
    # a wrong formula (missing the mean or variance path) is off by O(1/n).
    def fd(args, k):
        a = args[k]
        g = np.zeros_like(a)
        h = 1e-6 * max(1.0, float(np.max(np.abs(a))))
        for idx in np.ndindex(a.shape):
            plus = [v.copy() for v in args]
            minus = [v.copy() for v in args]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (loss(*plus) - loss(*minus)) / (2 * h)
        return g

    args = [x, gamma, beta]
    for k, name in enumerate(["dx", "dgamma", "dbeta"]):
        num = fd(args, k)
        scale = max(1.0, float(np.max(np.abs(num))))
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-6 * scale, err_msg=f"{mode} {name}")


# --------------------------------------------------------------------------
# Identities (property-based)
# --------------------------------------------------------------------------


@st.composite
def bn_inputs(draw):
    ndim = draw(st.integers(2, 5))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    axis = draw(st.sampled_from([1, -1, 0]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 1.0, -1e4]))
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.5]))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale + offset
    dy = rng.standard_normal(shape)
    C = shape[axis]
    return x, dy, axis, eps, rng.uniform(0.5, 2, C), rng.standard_normal(C)


@settings(max_examples=60, deadline=None, database=None)
@given(bn_inputs())
def test_identities(args):
    x, dy, axis, eps, gamma, beta = args
    C = x.shape[axis]
    f = ref.train_forward(x, gamma, beta, eps, channel_axis=axis)
    xh, var = f["x_hat"], f["batch_var"]
    red = ref.reduction_axes(x.ndim, axis)
    assert f["batch_mean"].shape == var.shape == f["invstd"].shape == (C,)
    assert f["y"].shape == x.shape and f["y"].dtype == np.float64

    # x_hat: per-channel mean 0 and biased variance var/(var+eps).  |x_hat|
    # <= sqrt(n) <= 32, so roundoff is a few u*32 ~ 1e-14; on top, the mean
    # is stored rounded (<= 1 ulp), which shifts every x_hat by
    # invstd*ulp(mean) -- large when a big offset meets a tiny spread.
    shift = 2 * f["invstd"] * np.spacing(np.abs(f["batch_mean"]))
    assert np.all(np.abs(np.mean(xh, axis=red)) <= shift + 1e-13)
    np.testing.assert_allclose(np.var(xh, axis=red), var / (var + eps), rtol=1e-12, atol=1e-13)

    b = ref.train_backward(dy, xh, f["invstd"], gamma, channel_axis=axis)
    np.testing.assert_allclose(b["dbeta"], np.sum(dy, axis=red), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(b["dgamma"], np.sum(dy * xh, axis=red), rtol=1e-12, atol=1e-12)
    # Training dx sums to 0 per channel (the mean path projects constants
    # out), and sum(dx*x_hat) = gamma*invstd*dgamma*(n - sum(x_hat**2)) =
    # gamma*invstd*dgamma * eps/(var+eps) (0 only for eps = 0).
    # Roundoff scales with the terms of dx = K*(n*dy - A - x_hat*B) before
    # they cancel, K = gamma*invstd/n, A = dbeta, B = dgamma.
    n = ref.channel_count(x.shape, axis)
    cs = lambda v: ref.to_channel_shape(v, x.ndim, axis)  # noqa: E731
    K, A, B = gamma * f["invstd"] / n, b["dbeta"], b["dgamma"]
    terms = np.abs(cs(K)) * (n * np.abs(dy) + np.abs(cs(A)) + np.abs(xh * cs(B)))
    # The mean-rounding shift makes sum(x_hat) = n*shift instead of 0, which
    # moves sum(dx) = -K*B*sum(x_hat) and sum(dx*x_hat) by K*(|A|+2|B|)*n*shift.
    drift = np.abs(K) * (np.abs(A) + 2 * np.abs(B) * max(1, np.max(np.abs(xh)))) * n * shift
    assert np.all(np.abs(np.sum(b["dx"], axis=red)) <= 1e-12 * np.sum(terms, axis=red) + drift + 1e-300)
    lhs = np.sum(b["dx"] * xh, axis=red)
    rhs = gamma * f["invstd"] * B * eps / (var + eps)
    tol = 1e-12 * (np.sum(terms * np.abs(xh), axis=red) + np.abs(rhs)) + drift + 1e-300
    assert np.all(np.abs(lhs - rhs) <= tol), (lhs, rhs)

    # Eval with the batch's own statistics reproduces the training forward.
    e = ref.eval_forward(x, f["batch_mean"], var, gamma, beta, eps, channel_axis=axis)
    np.testing.assert_array_equal(e["y"], f["y"])
    np.testing.assert_array_equal(e["x_hat"], xh)

    # Affine off == gamma 1, beta 0, in both directions.
    f0 = ref.train_forward(x, None, None, eps, channel_axis=axis)
    np.testing.assert_array_equal(f0["y"], xh)
    b0 = ref.train_backward(dy, xh, f["invstd"], None, channel_axis=axis)
    b1 = ref.train_backward(dy, xh, f["invstd"], np.ones(C), channel_axis=axis)
    for k in ("dx", "dgamma", "dbeta"):
        np.testing.assert_array_equal(b0[k], b1[k])


# --------------------------------------------------------------------------
# Small stages
# --------------------------------------------------------------------------


def test_shape_helpers():
    assert ref.reduction_axes(4, 1) == (0, 2, 3)
    assert ref.reduction_axes(4, -1) == (0, 1, 2)
    assert ref.reduction_axes(2, 0) == (1,)
    assert ref.channel_count((2, 3, 4, 5), 1) == 40
    assert ref.channel_count((2, 3, 4, 5), -1) == 24
    assert ref.to_channel_shape(np.arange(3), 4, 1).shape == (1, 3, 1, 1)
    assert ref.to_channel_shape(np.arange(3), 3, -1).shape == (1, 1, 3)
    with pytest.raises(ValueError):
        ref.reduction_axes(3, 3)
    with pytest.raises(ValueError):
        ref.to_channel_shape(np.zeros((3, 1)), 3, 1)


def test_inverse_std_eps_inside_root():
    np.testing.assert_array_equal(ref.inverse_std(np.array([3.0, 0.0]), 1.0), [0.5, 1.0])
    np.testing.assert_array_equal(ref.inverse_std(np.array([0.0]), 0.25), [2.0])


def test_inverse_std_is_correctly_rounded():
    """Given an exact float var, 1/sqrt(var+eps) is correctly rounded.

    The Newton step with an exactly formed residual leaves O(u**2) relative
    error before the final rounding; without it (1/np.sqrt: two roundings)
    errors up to ~1.5 ulp occur, so this bound has teeth.
    """
    rng = np.random.default_rng(8)
    var = np.concatenate([np.exp(rng.uniform(-20, 20, 300)), rng.uniform(0, 1e-4, 100), [0.0]])
    for eps in (1e-5, 1e-3, 0.1):
        got = ref.inverse_std(var, eps)
        for v, g in zip(var.tolist(), got.tolist()):
            s = exact_invstd(Fraction(v), eps)
            check(g, s, HALF_ULP_PLUS * ulp(s), f"invstd({v!r}, {eps})")


def test_unbiased_var():
    for n in (2, 3, 7, 1000):
        v = 1.2345678901234567
        check(
            ref.unbiased_var(np.array([v]), n)[0],
            Fraction(v) * n / (n - 1),
            2 * ulp(Fraction(v) * n / (n - 1)),
            f"unbiased n={n}",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ref.unbiased_var(np.array([2.0, 0.0]), 1)
    assert out[0] == np.inf and np.isnan(out[1])


def test_running_update():
    rng = np.random.default_rng(3)
    old, new = rng.standard_normal(5), rng.standard_normal(5)
    np.testing.assert_array_equal(ref.running_update(old, new, 0.0), new)
    np.testing.assert_array_equal(ref.running_update(old, new, 1.0), old)
    m = 0.875  # 1 - m is exact; three roundings: <= 2u*(|m*old| + |(1-m)*new|)
    got = ref.running_update(old, new, m)
    for g, o, b in zip(got, old, new):
        ex = Fraction(m) * Fraction(o) + (1 - Fraction(m)) * Fraction(b)
        check(g, ex, 3 * U * (abs(Fraction(m) * Fraction(o)) + abs((1 - Fraction(m)) * Fraction(b))), "ema")


def test_cumulative_update_is_plain_average():
    rng = np.random.default_rng(4)
    k = 6
    batches = rng.standard_normal((k, 4)) + 3.0
    running = np.zeros(4)  # PyTorch's initial running_mean
    for count in range(1, k + 1):
        running = ref.cumulative_update(running, batches[count - 1], count)
        if count == 1:
            np.testing.assert_array_equal(running, batches[0])
    # Each step adds <= ~3u*max|b| of rounding; k steps: 3k u max|b|.
    bound = 3 * k * U * Fraction(float(np.max(np.abs(batches))))
    for c in range(4):
        check(running[c], sum(Fraction(v) for v in batches[:, c]) / k, bound, "cumulative")
    # count=1 ignores an old value that would swamp the formula.
    np.testing.assert_array_equal(ref.cumulative_update(np.array([1e20]), np.array([1.0]), 1), [1.0])
    with pytest.raises(ValueError):
        ref.cumulative_update(running, batches[0], 0)


# --------------------------------------------------------------------------
# Non-finite inputs and dtypes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1])
def test_nan_poisons_exactly_one_channel(axis):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 2))
    bad = 2 if axis == 1 else 1
    idx = [1, 2, 0] if axis == 1 else [1, 0, 1]
    x[tuple(idx)] = np.nan
    dy = rng.standard_normal(x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # IEEE propagation, no RuntimeWarnings
        f = ref.train_forward(x, np.ones(x.shape[axis]), np.zeros(x.shape[axis]), 1e-5, channel_axis=axis)
        b = ref.train_backward(dy, f["x_hat"], f["invstd"], None, channel_axis=axis)
    C = x.shape[axis]
    for c in range(C):
        expect_nan = c == bad
        for key in ("batch_mean", "batch_var", "invstd"):
            assert np.isnan(f[key][c]) == expect_nan, (key, c)
        yc = np.take(f["y"], c, axis=axis)
        dxc = np.take(b["dx"], c, axis=axis)
        assert np.all(np.isnan(yc)) if expect_nan else np.all(np.isfinite(yc)), c
        assert np.all(np.isnan(dxc)) if expect_nan else np.all(np.isfinite(dxc)), c


def test_inf_gives_inf_mean_nan_var():
    x = np.array([[1.0, 2.0], [np.inf, 3.0], [0.5, 4.0]])  # channel axis 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = ref.batch_mean(x)
        var = ref.batch_var(x)
    assert mean[0] == np.inf and np.isnan(var[0])
    assert mean[1] == 3.0
    check(var[1], Fraction(2, 3), 2 * ulp(Fraction(2, 3)), "var of [2, 3, 4]")


@pytest.mark.parametrize("axis", [1, -1])
def test_bfloat16_input_matches_float64(axis):
    rng = np.random.default_rng(6)
    shape = (3, 4, 5)
    x16 = (rng.standard_normal(shape) * 2 + 1).astype(ml_dtypes.bfloat16)
    dy16 = rng.standard_normal(shape).astype(ml_dtypes.bfloat16)
    g16 = rng.uniform(0.5, 2, shape[axis]).astype(ml_dtypes.bfloat16)
    b16 = rng.standard_normal(shape[axis]).astype(ml_dtypes.bfloat16)
    x64, dy64, g64, b64 = (a.astype(np.float64) for a in (x16, dy16, g16, b16))
    f16 = ref.train_forward(x16, g16, b16, 1e-5, channel_axis=axis)
    f64 = ref.train_forward(x64, g64, b64, 1e-5, channel_axis=axis)
    for k in f64:
        assert f16[k].dtype == np.float64
        np.testing.assert_array_equal(f16[k], f64[k], err_msg=k)
    b16_ = ref.train_backward(dy16, f16["x_hat"], f16["invstd"], g16, channel_axis=axis)
    b64_ = ref.train_backward(dy64, f64["x_hat"], f64["invstd"], g64, channel_axis=axis)
    for k in b64_:
        np.testing.assert_array_equal(b16_[k], b64_[k], err_msg=k)
    # float16 / float32 inputs go through the same exact conversion.
    np.testing.assert_array_equal(ref.batch_mean(x64.astype(np.float32), channel_axis=axis), f64["batch_mean"])


# --------------------------------------------------------------------------
# An empty batch (n = 0): the formulas as written, no special case
# --------------------------------------------------------------------------

# (shape, channel axis): rank 2, rank 4 channels first, rank 4 channels last
EMPTY = [((0, 3), 1), ((0, 3, 4, 4), 1), ((0, 4, 4, 3), -1)]


def _empty(shape, axis):
    rng = np.random.default_rng(7)
    c = shape[axis]
    return (
        np.zeros(shape),
        np.zeros(shape),
        rng.uniform(0.5, 1.5, c),
        rng.standard_normal(c),
        rng.standard_normal(c),
        rng.uniform(0.5, 2.0, c),
    )


@pytest.mark.parametrize("shape,axis", EMPTY)
def test_empty_batch_statistics_are_nan_and_outputs_empty(shape, axis):
    x, _, g, b, _, _ = _empty(shape, axis)
    c = shape[axis]
    assert ref.channel_count(shape, axis) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 is IEEE NaN, not a warning
        f = ref.train_forward(x, g, b, 1e-5, channel_axis=axis)
        u = ref.unbiased_var(f["batch_var"], 0)
    # the mean and variance of no values: 0/0
    for key in ("batch_mean", "batch_var", "invstd"):
        assert f[key].shape == (c,) and np.all(np.isnan(f[key])), key
    assert np.all(np.isnan(u))
    for key in ("x_hat", "y"):
        assert f[key].shape == shape and f[key].dtype == np.float64, key


@pytest.mark.parametrize("shape,axis", EMPTY)
@pytest.mark.parametrize("affine_on", [True, False])
def test_empty_batch_gradients_are_sums_over_nothing(shape, axis, affine_on):
    """dbeta = sum(dy) and dgamma = sum(dy * x_hat) over no elements are
    exactly 0, not NaN, although invstd is NaN in training mode."""
    x, dy, g, b, rm, rv = _empty(shape, axis)
    gamma = g if affine_on else None
    c = shape[axis]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = ref.train_forward(x, gamma, b if affine_on else None, 1e-5, channel_axis=axis)
        tb = ref.train_backward(dy, f["x_hat"], f["invstd"], gamma, channel_axis=axis)
        e = ref.eval_forward(x, rm, rv, gamma, None, 1e-5, channel_axis=axis)
        eb = ref.eval_backward(dy, e["x_hat"], e["invstd"], gamma, channel_axis=axis)
    for grads in (tb, eb):
        assert grads["dx"].shape == shape
        for key in ("dgamma", "dbeta"):
            assert grads[key].shape == (c,)
            np.testing.assert_array_equal(grads[key], np.zeros(c), err_msg=key)
    # eval mode reads no batch statistic: its inverse std is the running one's
    assert np.all(np.isfinite(e["invstd"])) and e["y"].shape == shape


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 1.0])
def test_empty_batch_makes_the_running_statistics_nan(momentum):
    """The canonical update folds the NaN statistics in whatever the
    momentum (IEEE: 0 * NaN = NaN), and so does the cumulative average."""
    old = np.array([0.25, -1.0, 3.0])
    nan = ref.batch_mean(np.zeros((0, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(np.isnan(ref.running_update(old, nan, momentum)))
        for count in (1, 2, 5):
            assert np.all(np.isnan(ref.cumulative_update(old, nan, count)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("shape,axis", EMPTY)
def test_empty_batch_variant_formulations_agree_with_the_oracle(shape, axis, dtype):
    """Every variant formulation (crossbn/oracle/variants.py) gives an empty batch
    the oracle's meaning: NaN statistics, empty outputs, zero sums."""
    from crossbn.oracle import variants as var

    x, dy, g, b, _, _ = _empty(shape, axis)
    c = shape[axis]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(var.tree_sum(x, axis, dtype), np.zeros(c))
        m = var.mean(x, axis, dtype, np.float32)
        stats = {
            "mean": m,
            "two-pass": var.var_two_pass(x, m, axis, dtype),
            "one-pass": var.var_one_pass(x, m, axis, dtype),
            "welford mean": var.var_welford(x, axis, dtype)[0],
            "welford": var.var_welford(x, axis, dtype)[1],
        }
        invstd = var.inverse_std(stats["two-pass"], 1e-5, dtype)
        x_hat = var.normalize(x, m, invstd, axis, dtype)
        y = var.affine(x, x_hat, m, invstd, g, b, axis, dtype, folded=True)
        grads = var.train_backward(dy, x_hat, invstd, g, axis, dtype)
    for name, v in stats.items():
        assert v.shape == (c,) and np.all(np.isnan(v)), name
    assert x_hat.shape == y.shape == grads["dx"].shape == shape
    np.testing.assert_array_equal(grads["dgamma"], np.zeros(c))
    np.testing.assert_array_equal(grads["dbeta"], np.zeros(c))


def test_the_step_plan_is_what_each_step_does():
    """One driver (crossbn/oracle/steps.py) for the oracle and the formulation simulator."""
    from crossbn.oracle.steps import plan
    from crossbn.spec.case import Case

    c = Case(shape=(4, 3), train_steps=2, eval_step=True, cumulative=True)
    got = [(s.name, s.use_batch, s.training, s.update, s.count) for s in plan(c)]
    assert got == [
        ("train0", True, True, "cumulative", 1),
        ("train1", True, True, "cumulative", 2),
        ("eval", False, False, None, 3),
    ]
    frozen = Case(shape=(4, 3), train_steps=1, eval_step=False, frozen=True)
    assert [(s.as_inference, s.use_batch, s.update) for s in plan(frozen, frozen="inference")] == [(True, False, None)]
    assert [(s.as_inference, s.use_batch, s.update) for s in plan(frozen)] == [(False, True, "momentum")]
    empty = Case(shape=(0, 3), train_steps=1, eval_step=False)
    assert [s.update for s in plan(empty, empty_batch="skip")] == ["kept"]
    assert [s.update for s in plan(empty)] == ["momentum"]
    untracked = Case(shape=(4, 3), train_steps=1, eval_step=True, track_running_stats=False)
    assert [(s.use_batch, s.training, s.update) for s in plan(untracked)] == [(True, True, None), (True, False, None)]
    with pytest.raises(ValueError, match="empty_batch must be one of"):
        plan(c, empty_batch="keep")
