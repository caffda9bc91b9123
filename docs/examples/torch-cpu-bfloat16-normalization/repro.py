#!/usr/bin/env python3
"""PyTorch BatchNorm: bfloat16 output y in training step 1 is off by up to 11.9x the bfloat16 rounding-error bound (either computed in bfloat16 and reductions accumulated in float32, or reductions accumulated in bfloat16: this case cannot tell which)

A standalone reproducer written by crossbn: it needs only NumPy and
torch. It runs PyTorch's BatchNorm on the case below (found
and minimized by crossbn on torch, 2.13.0+cpu, cpu),
computes what BatchNorm should give with an inline float64 NumPy formula, and
compares one output, train0.y.

    python repro.py     # exit 1: the discrepancy is present; exit 0: it is not
"""
import sys

import numpy as np
import torch

# ---- the case ----------------------------------------------------------------
SHAPE = (7, 2, 3, 5)  # logical (N, C, *spatial)
CHANNELS_LAST = False  # stored as (N, *spatial, C) when True, else (N, C, *spatial)
DTYPE = "bfloat16"
EPS = 1e-05
MOMENTUM = 0.9  # weight on the OLD running value: running = MOMENTUM * running + (1 - MOMENTUM) * batch
CUMULATIVE = False  # running statistics as the plain average of all batches (PyTorch momentum=None)
AFFINE = True  # learnable gamma and beta
TRACK_RUNNING_STATS = True
FROZEN = False  # the layer is frozen as fine-tuning freezes it: its gamma and beta get no gradients
TRAIN_STEPS = 1  # training-mode forward (and backward) passes, each on its own batch
EVAL_STEP = False  # then one eval-mode pass on a fresh batch
GRADIENTS = False  # backward passes with upstream gradient DY
UNBIASED_RUNNING_VAR = True  # documented: the running variance is fed the unbiased batch variance, var * n / (n - 1)
FLOAT32_ATTRIBUTES = False  # eps and momentum are used as given
FROZEN_AS_INFERENCE = False  # a frozen layer's training step still uses, and updates, the batch statistics
TARGET = "train0.y"  # the output compared: <step>.<output>
# crossbn's rounding-error bound for each element of TARGET: how far a correct
# bfloat16 implementation may stray from the exact value
TOLERANCE = np.array([0.000769, 0.0332, 0.00887, 0.00127, 0.00472, 0.00592, 0.0047, 0.00207, 0.0045, 0.00291, 0.0198, 0.00699, 0.0119, 0.00209, 0.00719, 0.0158, 0.00229, 0.0039, 0.0126, 0.00344, 0.008, 0.00276, 0.0165, 0.0136, 0.0055, 0.00145, 0.0047, 0.00899, 0.00948, 0.0124, 0.00265, 0.0178, 0.0133, 0.00555, 0.00597, 0.00172, 0.0163, 0.015, 0.014, 0.00248, 0.0142, 0.00843, 0.00278, 0.00805, 0.00803, 0.00487, 0.00127, 0.00212, 0.00753, 0.0189, 0.00313, 0.00631, 0.00336, 0.00479, 0.0119, 0.00191, 0.0115, 0.00455, 0.0034, 0.00219, 0.00812, 0.00729, 0.00211, 0.0107, 0.0161, 0.00786, 0.00468, 0.00588, 0.000215, 0.00881, 0.000818, 0.013, 0.00657, 0.0039, 0.00795, 0.00929, 0.00791, 0.00354, 0.00945, 0.00114, 0.00466, 0.0103, 0.00241, 0.00883, 0.00964, 0.000986, 0.00845, 0.0183, 0.00711, 0.00753, 0.00335, 0.00133, 0.00872, 0.00329, 0.00838, 0.015, 0.0122, 0.00734, 0.00304, 0.0071, 0.00201, 0.0231, 0.0113, 0.00136, 0.029, 0.00853, 0.00386, 0.00382, 0.0073, 0.00139, 0.00761, 0.00273, 0.00195, 0.00027, 0.00235, 0.00547, 0.00366, 0.011, 0.00654, 0.0127, 0.00467, 0.00739, 0.00125, 0.00601, 0.00924, 0.0239, 0.00874, 0.00405, 0.00904, 0.012, 0.00932, 0.01, 0.00709, 0.0167, 0.00998, 0.0211, 0.00355, 0.00615, 0.00998, 0.000392, 0.0039, 0.0118, 0.00409, 0.0112, 0.00527, 0.0182, 0.00108, 0.00195, 0.00286, 0.00933, 0.008, 0.00574, 0.00587, 0.015, 0.0245, 0.0129, 0.027, 0.006, 0.00321, 0.0106, 0.0177, 0.0136, 0.0121, 0.00808, 0.0134, 0.00765, 0.00535, 0.00355, 0.00375, 0.00133, 0.0096, 0.00749, 0.00555, 0.0017, 0.0065, 0.00884, 0.000814, 0.0122, 0.0132, 0.00237, 0.0102, 0.0131, 0.00206, 0.00455, 0.00241, 0.0173, 0.00779, 0.00471, 0.00572, 0.00555, 0.028, 0.00609, 0.00766, 0.00182, 0.00493, 0.00104, 0.0184, 0.00579, 2.83e-05, 0.00286, 0.00285, 0.00486, 0.00329, 0.00367, 0.0147, 0.0173, 0.0108, 0.0147, 0.0075, 0.00715]).reshape((7, 2, 3, 5))

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
X = [np.array([0.15625, -2.78125, -0.578125, 0.33984375, 0.65234375, 0.76171875, -0.2001953125, 0.412109375, 0.6328125, 0.48828125, 2.015625, -0.408203125, -0.8515625, 0.4140625, -0.42578125, -1.421875, 0.42578125, 0.58984375, 1.4765625, 0.54296875, 1.0078125, -0.087890625, -1.484375, -1.1953125, -0.3671875, 0.33984375, 0.671875, 1.109375, -0.7734375, -1.0703125, 0.46484375, -1.390625, -0.98046875, -0.27734375, 0.765625, 0.380859375, -1.25, -1.1328125, 1.4921875, 0.44921875, -1.0625, -0.5390625, 0.4765625, -0.50390625, 0.953125, -0.302734375, 0.064453125, 0.408203125, -0.57421875, -1.734375, 0.51171875, 0.8359375, 0.53515625, -0.294921875, -1.015625, -0.0008392333984375, -0.98046875, 0.65625, 0.5390625, 0.416015625, 0.9609375, -0.435546875, 0.0341796875, 1.1953125, -1.234375, 0.9375, -0.1982421875, 0.7578125, 0.244140625, 1.0234375, 0.298828125, 1.40625, 0.8203125, -0.1279296875, 0.9453125, -0.75390625, -0.61328125, -0.1669921875, 1.15625, 0.30859375, -0.28125, 1.2421875, -0.0517578125, -0.70703125, -0.7890625, 0.29296875, -0.66796875, -1.671875, -0.53125, -0.57421875, -0.078125, 0.10546875, 1.015625, -0.072265625, 0.984375, -1.1328125, -0.8828125, -0.439453125, 0.5, -0.41796875, 0.043701171875, -1.8671875, 1.25, 0.10302734375, -2.40625, 1.0625, 0.5859375, -0.1962890625, -0.55078125, 0.333984375, -0.58203125, -0.08447265625, -0.00518798828125, 0.166015625, 0.431640625, 0.75, -0.1796875, 1.3125, 0.859375, -1.1015625, -0.197265625, 0.89453125, 0.337890625, 0.76953125, 1.0625, -1.9375, -0.56640625, -0.1416015625, -0.59375, -0.859375, 1.0703125, -0.68359375, 0.8671875, 1.7421875, -0.6796875, 2.34375, 0.5546875, -0.43359375, -0.82421875, 0.232421875, -0.2041015625, -1.0078125, 0.609375, 1.3359375, -0.34375, 2.046875, 0.302734375, -0.00494384765625, -0.09765625, -0.7578125, -0.5, -0.294921875, -0.306640625, -1.1328125, -1.9921875, -0.94140625, 2.671875, -0.318359375, 0.515625, 1.1875, 1.828125, -1.0078125, -0.87109375, 0.95703125, -0.98828125, 0.97265625, -0.3515625, 0.5546875, 0.57421875, 0.328125, 1.171875, -0.5703125, 0.7578125, 0.365234375, -0.46875, 1.09375, 0.275390625, -1.046875, -1.1484375, 0.43359375, -0.703125, 1.4140625, 0.03955078125, 0.63671875, 0.0069580078125, 1.796875, -0.48046875, -0.201171875, -0.29296875, -0.27734375, -2.3125, -0.326171875, -0.46875, 0.060791015625, 0.671875, 0.298828125, -1.6796875, -0.396484375, 0.1953125, -0.09765625, 0.482421875, 0.6875, 0.52734375, 0.56640625, 1.6875, -1.5703125, 1.296875, -1.3046875, 0.95703125, -0.53515625]).reshape((7, 2, 3, 5))]
DY = [np.array([-0.423828125, -1.265625, 0.8359375, 0.8203125, -1.0234375, 1.1953125, 1.3984375, 0.15234375, -1.203125, 0.439453125, 1.3359375, -0.8671875, -0.578125, -0.1083984375, 0.578125, -0.92578125, 0.37109375, 0.2392578125, -1.0, -0.53515625, 0.47265625, 0.302734375, 0.061767578125, -0.51953125, 0.84765625, 0.283203125, 0.5234375, -0.734375, -0.0252685546875, 1.75, 0.421875, 0.04833984375, 1.53125, -0.46875, -0.95703125, -0.88671875, 0.1416015625, -1.734375, -0.828125, 0.0927734375, -0.07373046875, -0.828125, -1.5390625, -1.53125, -1.3203125, 1.1640625, -0.62109375, 1.140625, -1.8203125, 0.236328125, 0.48046875, 0.345703125, -0.056640625, -0.6875, 0.50390625, 1.5703125, 1.6328125, 0.431640625, 0.37890625, -2.359375, 2.5625, -0.58203125, -1.5234375, 0.291015625, -0.2451171875, -1.6796875, 0.48046875, -0.166015625, 0.73046875, 0.341796875, 1.328125, -1.671875, 1.2109375, -2.328125, -0.40234375, 0.076171875, -0.490234375, 0.2373046875, -0.47265625, -1.3515625, -0.3046875, -1.234375, 1.1484375, -0.0849609375, -1.671875, 0.83984375, 0.484375, 0.408203125, -0.60546875, -0.028076171875, -0.41796875, 1.421875, -1.828125, 0.412109375, 0.326171875, 0.91796875, -0.625, 0.890625, 0.26953125, 0.53515625, 0.76953125, 0.453125, -0.451171875, 0.447265625, -0.64453125, 2.53125, -1.1328125, 0.53515625, -2.34375, -1.609375, 1.375, 2.1875, 0.431640625, -0.4921875, 0.7265625, 0.9296875, 1.4375, 0.6171875, 0.984375, -0.8125, 1.296875, -0.33203125, 0.91015625, -1.1484375, -0.1513671875, -0.0203857421875, -0.2734375, 0.296875, -0.201171875, 0.23046875, 0.005645751953125, -0.53125, 0.353515625, 0.486328125, -0.306640625, 0.056640625, -1.3984375, -0.1533203125, 0.07373046875, -1.96875, 0.435546875, 0.5625, 0.703125, -0.006561279296875, 1.125, -0.70703125, -0.234375, 0.8046875, -0.39453125, 0.8984375, 0.91796875, -0.36328125, 1.5703125, -1.375, 0.353515625, 0.3515625, 0.76953125, -1.3125, -0.099609375, 0.6015625, 1.640625, 0.57421875, 0.60546875, -1.5078125, 0.27734375, 1.5078125, -0.0086669921875, 0.326171875, -0.7265625, -0.0419921875, 2.0625, 0.06689453125, -1.109375, 0.2890625, 1.3828125, -1.0234375, -0.5703125, -0.734375, 0.318359375, 2.46875, 1.4765625, 0.79296875, 0.9296875, -2.296875, 0.640625, -1.0078125, 0.96875, 1.0625, 0.75, 0.65625, -2.28125, -0.52734375, 0.19140625, -0.63671875, -1.359375, 1.015625, -0.5625, 2.828125, -1.1328125, -0.6328125, -1.28125, 0.333984375, -0.01153564453125, -0.51171875, -0.9375, -0.50390625, -2.0, 1.296875, 0.60546875, -0.0169677734375]).reshape((7, 2, 3, 5))]
GAMMA = np.array([1.390625, 1.0546875]).reshape((2,))
BETA = np.array([-0.30078125, -0.1748046875]).reshape((2,))
RUNNING_MEAN = np.array([-0.279296875, 0.515625]).reshape((2,))
RUNNING_VAR = np.array([1.828125, 0.84375]).reshape((2,))


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
    """torch.nn.BatchNorm2d, step by step, on cpu."""
    device, dtype = "cpu", getattr(torch, DTYPE)
    tensor = lambda a: torch.tensor(a, dtype=torch.float64).to(device=device, dtype=dtype)
    bn = torch.nn.BatchNorm2d(SHAPE[1], eps=EPS, momentum=None if CUMULATIVE else 1.0 - MOMENTUM,
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
    call = bn
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
