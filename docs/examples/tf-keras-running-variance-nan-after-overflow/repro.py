#!/usr/bin/env python3
"""tf-keras BatchNorm: float32 running variance in training step 2 is NaN where +Inf is expected

A standalone reproducer written by crossbn: it needs only NumPy and
tf-keras (and tensorflow). It runs tf-keras's BatchNorm on the case below (found
and minimized by crossbn on tf-keras, tf_keras 2.21.0 / tensorflow 2.21.0, cpu),
computes what BatchNorm should give with an inline float64 NumPy formula, and
compares one output, train1.running_var.

    python repro.py     # exit 1: the discrepancy is present; exit 0: it is not
"""
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import sys

import numpy as np
import ml_dtypes  # a dependency of tensorflow: bfloat16 arrays for NumPy
import tensorflow as tf
import tf_keras

# ---- the case ----------------------------------------------------------------
SHAPE = (2, 1)  # logical (N, C, *spatial)
CHANNELS_LAST = False  # stored as (N, *spatial, C) when True, else (N, C, *spatial)
DTYPE = "float32"
EPS = 1e-05
MOMENTUM = 0.9  # weight on the OLD running value: running = MOMENTUM * running + (1 - MOMENTUM) * batch
CUMULATIVE = False  # running statistics as the plain average of all batches (PyTorch momentum=None)
AFFINE = False  # learnable gamma and beta
TRACK_RUNNING_STATS = True
FROZEN = False  # the layer is frozen as fine-tuning freezes it: its gamma and beta get no gradients
TRAIN_STEPS = 2  # training-mode forward (and backward) passes, each on its own batch
EVAL_STEP = False  # then one eval-mode pass on a fresh batch
GRADIENTS = False  # backward passes with upstream gradient DY
UNBIASED_RUNNING_VAR = False  # the running variance is fed the batch variance itself
FLOAT32_ATTRIBUTES = False  # eps and momentum are used as given
FROZEN_AS_INFERENCE = True  # documented: a frozen layer's training step runs as inference (running statistics, left unchanged)
TARGET = "train1.running_var"  # the output compared: <step>.<output>
# crossbn's rounding-error bound for each element of TARGET: how far a correct
# float32 implementation may stray from the exact value
TOLERANCE = np.array([np.inf]).reshape((1,))

STEPS = ["train%d" % k for k in range(TRAIN_STEPS)] + (["eval"] if EVAL_STEP else [])
CHANNEL_AXIS = len(SHAPE) - 1 if CHANNELS_LAST else 1
AXES = tuple(a for a in range(len(SHAPE)) if a != CHANNEL_AXIS)


def round_to_dtype(a):
    """float64 values rounded to DTYPE (to nearest, ties to even), kept in float64."""
    a = np.asarray(a, np.float64)
    if DTYPE != "bfloat16":
        return a.astype(DTYPE).astype(np.float64)
    # bfloat16 (8 significant bits, float32's exponent range) without ml_dtypes
    with np.errstate(over="ignore", invalid="ignore"):
        m, e = np.frexp(a)
        e = np.maximum(e, -125)  # subnormals: spacing 2**-133
        r = np.ldexp(np.round(np.ldexp(a, 8 - e)), e - 8)
        return np.where(np.isfinite(a) & (np.abs(r) > 3.3895313892515355e38), np.copysign(np.inf, a), r)


def per_channel(v):
    """A (C,) vector shaped to broadcast against the stored layout."""
    shape = [1] * len(SHAPE)
    shape[CHANNEL_AXIS] = -1
    return np.reshape(v, shape)


# ---- inputs: exact values of DTYPE, written in float64, in stored layout --------
X = [np.array([1.5597014443676926e+19, -2.7788553743889754e+20]).reshape((2, 1)),
     np.array([-7.151249135724868e+19, -1.3096722803091046e+20]).reshape((2, 1))]
DY = [np.array([-0.4230559170246124, -1.26753568649292]).reshape((2, 1)),
      np.array([-0.27117371559143066, 2.480668067932129]).reshape((2, 1))]
GAMMA = None
BETA = None
RUNNING_MEAN = np.array([-0.2802535593509674]).reshape((1,))
RUNNING_VAR = np.array([1.8246078491210938]).reshape((1,))


def expected():
    """What BatchNorm should give, in float64, with NumPy alone."""
    out = {}
    n = int(np.prod(SHAPE)) // SHAPE[1]  # values per channel
    gamma = per_channel(GAMMA if AFFINE else np.ones(SHAPE[1]))
    beta = per_channel(BETA if AFFINE else np.zeros(SHAPE[1]))
    rmean, rvar = RUNNING_MEAN, RUNNING_VAR
    eps, momentum = (float(np.float32(EPS)), float(np.float32(MOMENTUM))) if FLOAT32_ATTRIBUTES else (EPS, MOMENTUM)
    with np.errstate(all="ignore"):
        for k, step in enumerate(STEPS):
            x = X[k]
            as_inference = FROZEN and FROZEN_AS_INFERENCE and step != "eval"
            batch = (step != "eval" and not as_inference) or not TRACK_RUNNING_STATS
            if batch:
                mean = x.mean(axis=AXES)
                var = ((x - per_channel(mean)) ** 2).mean(axis=AXES)
            else:
                mean, var = rmean, rvar
            invstd = 1.0 / np.sqrt(var + eps)
            xhat = (x - per_channel(mean)) * per_channel(invstd)
            out[step + ".y"] = xhat * gamma + beta
            if as_inference:  # the running statistics are read, and kept
                out[step + ".running_mean"], out[step + ".running_var"] = rmean, rvar
            elif step != "eval" and TRACK_RUNNING_STATS:
                fed = var * n / (n - 1) if UNBIASED_RUNNING_VAR and n > 1 else var
                if CUMULATIVE:
                    rmean, rvar = ((mean, fed) if k == 0 else
                                   (rmean + (mean - rmean) / (k + 1), rvar + (fed - rvar) / (k + 1)))
                else:
                    rmean = momentum * rmean + (1 - momentum) * mean
                    rvar = momentum * rvar + (1 - momentum) * fed
                rmean, rvar = round_to_dtype(rmean), round_to_dtype(rvar)  # the state is stored in DTYPE
                out[step + ".running_mean"], out[step + ".running_var"] = rmean, rvar
            if GRADIENTS:
                dy = DY[k]
                g = dy * gamma
                if batch:  # the batch statistics depend on x too
                    dx = per_channel(invstd) * (g - per_channel(g.mean(axis=AXES))
                                                - xhat * per_channel((g * xhat).mean(axis=AXES)))
                else:
                    dx = g * per_channel(invstd)
                out[step + ".dx"] = dx
                if AFFINE and not FROZEN:
                    out[step + ".dgamma"] = (dy * xhat).sum(axis=AXES)
                    out[step + ".dbeta"] = dy.sum(axis=AXES)
    return out


def framework_version():
    return "%s (tensorflow %s)" % (tf_keras.__version__, tf.__version__)


def framework_outputs():
    """tf_keras.layers.BatchNormalization(fused=False) (Keras 2), step by step, on the CPU."""
    if CUMULATIVE or not TRACK_RUNNING_STATS:
        raise NotImplementedError("tf_keras BatchNormalization has no cumulative average and always tracks statistics")
    dtype = ml_dtypes.bfloat16 if DTYPE == "bfloat16" else np.dtype(DTYPE)

    def stored(t):  # an output in the case dtype, then float64 for the comparison
        with np.errstate(over="ignore"):
            return np.asarray(t.numpy()).astype(dtype).astype(np.float64)

    out = {}
    with tf.device("/CPU:0"):
        layer = tf_keras.layers.BatchNormalization(axis=-1 if CHANNELS_LAST else 1, momentum=MOMENTUM, epsilon=EPS,
                                                   center=AFFINE, scale=AFFINE, fused=False, dtype=DTYPE)
        layer.build(X[0].shape)
        layer.trainable = not FROZEN  # frozen, as fine-tuning freezes it
        # float16/bfloat16 layers keep float32 variables
        for value, var in ((GAMMA, getattr(layer, "gamma", None)), (BETA, getattr(layer, "beta", None)),
                           (RUNNING_MEAN, layer.moving_mean), (RUNNING_VAR, layer.moving_variance)):
            if var is not None:
                var.assign(np.asarray(value).astype(var.dtype.as_numpy_dtype))
        for k, step in enumerate(STEPS):
            training = step != "eval"
            x = tf.constant(np.asarray(X[k]).astype(dtype))
            params = [layer.gamma, layer.beta] if AFFINE and not FROZEN else []
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=training)
            out[step + ".y"] = stored(y)
            if training:
                out[step + ".running_mean"] = stored(layer.moving_mean)
                out[step + ".running_var"] = stored(layer.moving_variance)
            if GRADIENTS:
                g = tape.gradient(y, [x, *params], output_gradients=tf.constant(np.asarray(DY[k]).astype(dtype)))
                out[step + ".dx"] = stored(g[0])
                if params:
                    out[step + ".dgamma"], out[step + ".dbeta"] = stored(g[1]), stored(g[2])
    return out



def main():
    print("%s %s, NumPy %s" % ("tf-keras", framework_version(), np.__version__))
    print("case: shape %s, %s, %s, eps %g, momentum %g, steps %s"
          % (SHAPE, DTYPE, "channels_last" if CHANNELS_LAST else "channels_first", EPS, MOMENTUM, STEPS))
    actual = framework_outputs()
    if len(sys.argv) > 2 and sys.argv[1] == "--save":  # every output, for crossbn's own checks
        np.savez(sys.argv[2], **actual)
    got, want = np.asarray(actual[TARGET], np.float64), expected()[TARGET]
    with np.errstate(invalid="ignore"):
        diff = np.where(np.isfinite(got) & np.isfinite(want), np.abs(got - want), 0.0)
        off = (diff > TOLERANCE) | (np.isnan(got) != np.isnan(want)) | \
            (np.isposinf(got) != np.isposinf(want)) | (np.isneginf(got) != np.isneginf(want))
    np.set_printoptions(precision=10, threshold=40, edgeitems=4)
    print("%s, %s:" % (TARGET, "tf-keras"), got.ravel())
    print("%s, expected:" % TARGET, want.ravel())
    tol = np.broadcast_to(TOLERANCE, got.shape)
    if got.size:
        at = np.unravel_index(int(np.argmax(diff)), got.shape)
        print("largest difference %.6g at index %s: got %r, expected %r (tolerance there %.3g)"
              % (diff[at], list(map(int, at)), float(got[at]), float(want[at]), tol[at]))
        with np.errstate(divide="ignore", invalid="ignore"):
            at = np.unravel_index(int(np.argmax(np.where(off, 1.0 + np.nan_to_num(diff / tol, posinf=1e300), 0.0))),
                                  got.shape)
        if off[at]:
            print("furthest past its tolerance at index %s: got %r, expected %r, tolerance %.3g"
                  % (list(map(int, at)), float(got[at]), float(want[at]), tol[at]))
    if off.any():
        print("DISCREPANCY: %d of %d elements of %s differ" % (int(off.sum()), off.size, TARGET))
        return 1
    print("no discrepancy: %s is within tolerance" % TARGET)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a broken run is not a reproduction: exit 2, not 1
        import traceback

        traceback.print_exc()
        sys.exit(2)
