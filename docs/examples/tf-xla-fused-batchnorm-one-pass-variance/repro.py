#!/usr/bin/env python3
"""TensorFlow BatchNorm: float32 running variance in training step 1 is off by up to 2.95e+03x the float32 rounding-error bound

A standalone reproducer written by crossbn: it needs only NumPy and
tensorflow. It runs TensorFlow's BatchNorm on the case below (found
and minimized by crossbn on tf-fused-op-xla, tensorflow 2.21.0 (XLA: tf.function(jit_compile=True)), cpu),
computes what BatchNorm should give with an inline float64 NumPy formula, and
compares one output, train0.running_var.

    python repro.py     # exit 1: the discrepancy is present; exit 0: it is not
"""
import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import sys

import numpy as np
import ml_dtypes  # a dependency of tensorflow: bfloat16 arrays for NumPy
import tensorflow as tf

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
TRAIN_STEPS = 1  # training-mode forward (and backward) passes, each on its own batch
EVAL_STEP = False  # then one eval-mode pass on a fresh batch
GRADIENTS = False  # backward passes with upstream gradient DY
UNBIASED_RUNNING_VAR = True  # documented: the running variance is fed the unbiased batch variance, var * n / (n - 1)
FLOAT32_ATTRIBUTES = True  # documented: eps and momentum reach the computation as 32-bit floats (the expectation uses those values)
FROZEN_AS_INFERENCE = False  # a frozen layer's training step still uses, and updates, the batch statistics
TARGET = "train0.running_var"  # the output compared: <step>.<output>
# crossbn's rounding-error bound for each element of TARGET: how far a correct
# float32 implementation may stray from the exact value
TOLERANCE = np.array([1.92e-06]).reshape((1,))

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
X = [np.array([1000.1559448242188, 997.2211303710938]).reshape((2, 1))]
DY = [np.array([-0.4230559170246124, -1.26753568649292]).reshape((2, 1))]
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
    return tf.__version__


def fused_shape():
    """The 4-D/5-D shape the op takes (a reshape of the stored array, never a transpose) and its data format."""
    shape = [int(s) for s in SHAPE]
    if CHANNELS_LAST:
        shape = [shape[0], *shape[2:], shape[1]]
    if len(shape) == 2:
        return [shape[0], 1, 1, shape[1]], "NHWC"
    if len(shape) == 3:
        return ([shape[0], shape[1], 1, shape[2]], "NHWC") if CHANNELS_LAST else ([*shape, 1], "NCHW")
    return shape, {(4, False): "NCHW", (4, True): "NHWC", (5, False): "NCDHW", (5, True): "NDHWC"}[
        (len(shape), CHANNELS_LAST)]


def framework_outputs():
    """tf.raw_ops.FusedBatchNormV3 on the CPU, each training or eval step inside
    tf.function(jit_compile=True): is_training with exponential_avg_factor = 1 - MOMENTUM
    in training, the op's running statistics carried to the next step; scale, offset and the
    statistics in float32 (the op's U) for every x dtype."""
    if CUMULATIVE:
        raise NotImplementedError("FusedBatchNormV3 has no cumulative average")
    if DTYPE == "float64":
        raise NotImplementedError("FusedBatchNormV3 has no float64 kernel (its T is half, bfloat16 or float)")
    dtype = ml_dtypes.bfloat16 if DTYPE == "bfloat16" else np.dtype(DTYPE)
    shape4, data_format = fused_shape()

    def stored(t):  # an output in the case dtype, then float64 for the comparison
        with np.errstate(over="ignore"):
            return np.asarray(t.numpy()).astype(dtype).astype(np.float64)

    out = {}
    with tf.device("/CPU:0"):
        f32 = (lambda a: tf.constant(np.asarray(a).astype(np.float32)))
        if AFFINE:
            scale, offset = tf.Variable(f32(GAMMA)), tf.Variable(f32(BETA))
        else:
            scale, offset = tf.ones([SHAPE[1]], tf.float32), tf.zeros([SHAPE[1]], tf.float32)
        running = (f32(RUNNING_MEAN), f32(RUNNING_VAR)) if TRACK_RUNNING_STATS else None

        def one_step(x, dy, running, training):
            with tf.GradientTape() as tape:
                tape.watch(x)
                if running is None:  # no running statistics: the batch's, in every step
                    mean = var = tf.constant([], tf.float32)
                    is_training, factor = True, 1.0
                else:
                    (mean, var), is_training = running, training
                    factor = 1.0 - MOMENTUM if training else 1.0
                r = tf.raw_ops.FusedBatchNormV3(
                    x=tf.reshape(x, shape4), scale=scale, offset=offset, mean=mean, variance=var, epsilon=EPS,
                    exponential_avg_factor=factor, data_format=data_format, is_training=is_training)
                y = tf.reshape(r.y, x.shape)
            if training and running is not None:
                running = (r.batch_mean, r.batch_variance)
            params = [scale, offset] if AFFINE else []
            grads = tape.gradient(y, [x, *params], output_gradients=dy) if GRADIENTS else []
            return y, running, grads

        one_step = tf.function(one_step, jit_compile=True)  # each step compiled by XLA

        for k, step in enumerate(STEPS):
            training = step != "eval"
            y, running, g = one_step(tf.constant(np.asarray(X[k]).astype(dtype)),
                                     tf.constant(np.asarray(DY[k]).astype(dtype)), running, training)
            out[step + ".y"] = stored(y)
            if training and running is not None:
                out[step + ".running_mean"], out[step + ".running_var"] = stored(running[0]), stored(running[1])
            if GRADIENTS:
                out[step + ".dx"] = stored(g[0])
                if AFFINE:
                    out[step + ".dgamma"], out[step + ".dbeta"] = stored(g[1]), stored(g[2])
    return out



def main():
    print("%s %s, NumPy %s" % ("TensorFlow", framework_version(), np.__version__))
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
    print("%s, %s:" % (TARGET, "TensorFlow"), got.ravel())
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
