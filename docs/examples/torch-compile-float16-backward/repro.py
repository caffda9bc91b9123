#!/usr/bin/env python3
"""PyTorch BatchNorm: float16 input gradient dx in training step 2 is off by up to 19.2x the float16 rounding-error bound (either reductions accumulated in float16, or computed in float16 and reductions accumulated in float32: this case cannot tell which)

A standalone reproducer written by crossbn: it needs only NumPy and
torch. It runs PyTorch's BatchNorm on the case below (found
and minimized by crossbn on torch-compile, 2.13.0+cpu, cpu),
computes what BatchNorm should give with an inline float64 NumPy formula, and
compares one output, train1.dx.

    python repro.py     # exit 1: the discrepancy is present; exit 0: it is not
"""
import sys

import numpy as np
import torch

# ---- the case ----------------------------------------------------------------
SHAPE = (15, 3)  # logical (N, C, *spatial)
CHANNELS_LAST = False  # stored as (N, *spatial, C) when True, else (N, C, *spatial)
DTYPE = "float16"
EPS = 1e-05
MOMENTUM = 0.9  # weight on the OLD running value: running = MOMENTUM * running + (1 - MOMENTUM) * batch
CUMULATIVE = False  # running statistics as the plain average of all batches (PyTorch momentum=None)
AFFINE = False  # learnable gamma and beta
TRACK_RUNNING_STATS = True
FROZEN = False  # the layer is frozen as fine-tuning freezes it: its gamma and beta get no gradients
TRAIN_STEPS = 2  # training-mode forward (and backward) passes, each on its own batch
EVAL_STEP = False  # then one eval-mode pass on a fresh batch
GRADIENTS = True  # backward passes with upstream gradient DY
UNBIASED_RUNNING_VAR = True  # documented: the running variance is fed the unbiased batch variance, var * n / (n - 1)
FLOAT32_ATTRIBUTES = False  # eps and momentum are used as given
FROZEN_AS_INFERENCE = False  # a frozen layer's training step still uses, and updates, the batch statistics
TARGET = "train1.dx"  # the output compared: <step>.<output>
# crossbn's rounding-error bound for each element of TARGET: how far a correct
# float16 implementation may stray from the exact value
TOLERANCE = np.array([0.0005, 0.00141, 0.00119, 8.43e-05, 0.000256, 0.00165, 0.0018, 0.000512, 0.000222, 0.000284, 3.67e-05, 0.00153, 0.000922, 8.68e-06, 0.000904, 0.000305, 0.000204, 0.00141, 0.000306, 0.000331, 0.0014, 0.000156, 0.00041, 0.000175, 0.000855, 0.000159, 0.000721, 0.000238, 0.000202, 0.000215, 0.000512, 0.000912, 0.00128, 0.000902, 3.76e-05, 0.000485, 0.000816, 0.000419, 0.00028, 0.00046, 6.33e-05, 0.000556, 0.00148, 6.11e-05, 0.00201]).reshape((15, 3))

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
X = [np.array([0.156005859375, -2.779296875, -0.578125, 0.339111328125, 0.6513671875, 0.76025390625, -0.200439453125, 0.411865234375, 0.63232421875, 0.487548828125, 2.021484375, -0.40771484375, -0.853515625, 0.4150390625, -0.426513671875, -1.4228515625, 0.425537109375, 0.58837890625, 1.478515625, 0.54296875, 1.0048828125, -0.087890625, -1.4833984375, -1.19921875, -0.367919921875, 0.3388671875, 0.6708984375, 1.109375, -0.775390625, -1.0673828125, 0.46484375, -1.390625, -0.98046875, -0.277099609375, 0.76708984375, 0.38037109375, -1.251953125, -1.1337890625, 1.4931640625, 0.449951171875, -1.0615234375, -0.53955078125, 0.4765625, -0.5048828125, 0.95458984375]).reshape((15, 3)),
     np.array([-0.71533203125, -1.3095703125, -0.396484375, -0.44384765625, 0.07952880859375, 0.56005859375, 0.7939453125, -0.45751953125, 1.1318359375, 0.7607421875, -1.9267578125, 1.4892578125, 0.95849609375, 1.0537109375, 0.19873046875, 0.2432861328125, 0.84375, -1.44140625, -0.57373046875, -1.4013671875, -1.13671875, -0.87060546875, -0.30126953125, -0.75341796875, -0.474365234375, 0.73779296875, 0.25439453125, 0.78173828125, -1.9716796875, 0.36328125, -2.46875, -1.2890625, 0.1251220703125, -1.642578125, 0.83544921875, -0.250732421875, -0.712890625, 0.400634765625, -0.2763671875, 1.275390625, -1.4580078125, -0.71875, -0.07550048828125, 1.5556640625, 1.2490234375]).reshape((15, 3))]
DY = [np.array([-0.423095703125, -1.267578125, 0.83544921875, 0.8203125, -1.021484375, 1.197265625, 1.3994140625, 0.1524658203125, -1.201171875, 0.4384765625, 1.3369140625, -0.86767578125, -0.5771484375, -0.10858154296875, 0.5791015625, -0.92431640625, 0.37158203125, 0.2388916015625, -1.001953125, -0.53369140625, 0.47265625, 0.302978515625, 0.06170654296875, -0.51806640625, 0.84814453125, 0.282470703125, 0.52197265625, -0.73291015625, -0.0252532958984375, 1.7529296875, 0.4208984375, 0.048309326171875, 1.5322265625, -0.469482421875, -0.9580078125, -0.88671875, 0.1419677734375, -1.732421875, -0.82861328125, 0.09271240234375, -0.0736083984375, -0.82958984375, -1.5400390625, -1.5322265625, -1.3232421875]).reshape((15, 3)),
      np.array([-0.271240234375, 2.48046875, 1.572265625, 0.1280517578125, 0.2802734375, -0.86962890625, 1.931640625, 1.2724609375, 0.316162109375, 0.3837890625, 0.92626953125, -0.8056640625, -0.8564453125, 0.38623046875, 1.3056640625, -0.1611328125, 0.1971435546875, -0.56494140625, 0.53271484375, 0.47998046875, 1.7880859375, 0.095947265625, 0.171630859375, 0.448486328125, 1.0859375, 0.26953125, -0.0687255859375, 0.334228515625, 0.7421875, 0.71142578125, 0.91259765625, -0.22119140625, 1.630859375, -0.5927734375, 0.466552734375, 0.1571044921875, 1.0673828125, 0.99609375, 0.332275390625, -0.41162109375, 0.93603515625, 0.12255859375, -1.333984375, 0.35302734375, 2.181640625]).reshape((15, 3))]
GAMMA = None
BETA = None
RUNNING_MEAN = np.array([-0.2802734375, 0.5166015625, 0.6171875]).reshape((3,))
RUNNING_VAR = np.array([1.82421875, 0.8427734375, 1.1162109375]).reshape((3,))


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
    return torch.__version__


def framework_outputs():
    """torch.nn.BatchNorm1d under torch.compile (Inductor), step by step, on cpu."""
    device, dtype = "cpu", getattr(torch, DTYPE)
    tensor = lambda a: torch.tensor(a, dtype=torch.float64).to(device=device, dtype=dtype)
    bn = torch.nn.BatchNorm1d(SHAPE[1], eps=EPS, momentum=None if CUMULATIVE else 1.0 - MOMENTUM,
                      affine=AFFINE, track_running_stats=TRACK_RUNNING_STATS, device=device, dtype=dtype)
    if FROZEN:  # fine-tuning's freeze: the parameters get no gradients, the module stays in train mode
        for p in bn.parameters():
            p.requires_grad_(False)
    with torch.no_grad():
        if AFFINE:
            bn.weight.copy_(tensor(GAMMA))
            bn.bias.copy_(tensor(BETA))
        if TRACK_RUNNING_STATS:
            bn.running_mean.copy_(tensor(RUNNING_MEAN))
            bn.running_var.copy_(tensor(RUNNING_VAR))
    call = torch.compile(bn, fullgraph=True)
    numpy = lambda t: t.detach().to(device="cpu", dtype=torch.float64).numpy()
    out = {}
    for k, step in enumerate(STEPS):
        bn.train(step != "eval")
        leaf = tensor(X[k]).requires_grad_(GRADIENTS)
        x = leaf.movedim(-1, 1) if CHANNELS_LAST else leaf  # the module takes (N, C, ...)
        bn.zero_grad(set_to_none=True)
        y = call(x)
        y = y.movedim(1, -1) if CHANNELS_LAST else y
        out[step + ".y"] = numpy(y)
        if step != "eval" and TRACK_RUNNING_STATS:
            out[step + ".running_mean"] = numpy(bn.running_mean)
            out[step + ".running_var"] = numpy(bn.running_var)
        if GRADIENTS:
            y.backward(tensor(DY[k]))
            out[step + ".dx"] = numpy(leaf.grad)
            if AFFINE and not FROZEN:
                out[step + ".dgamma"] = numpy(bn.weight.grad)
                out[step + ".dbeta"] = numpy(bn.bias.grad)
    return out



def main():
    print("%s %s, NumPy %s" % ("PyTorch", framework_version(), np.__version__))
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
    print("%s, %s:" % (TARGET, "PyTorch"), got.ravel())
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
