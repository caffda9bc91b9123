#!/usr/bin/env python3
"""ONNX Runtime BatchNorm: float32 output y in training step 1 is off by up to 3.04e+05x the float32 rounding-error bound

A standalone reproducer written by crossbn: it needs only NumPy and
torch, onnx and onnxruntime, onnxscript. It runs ONNX Runtime's BatchNorm on the case below (found
and minimized by crossbn on onnxruntime-torch-dynamo, onnxruntime 1.31.1 (onnx 1.23.2), torch 2.13.0+cpu torch.onnx.export (dynamo=True), cpu),
computes what BatchNorm should give with an inline float64 NumPy formula, and
compares one output, train0.y.

    python repro.py     # exit 1: the discrepancy is present; exit 0: it is not
"""
import sys

import numpy as np
import ml_dtypes  # a dependency of onnx: bfloat16 arrays for NumPy
import onnx
import torch
from onnx import helper
import onnxruntime

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
UNBIASED_RUNNING_VAR = False  # the running variance is fed the batch variance itself
FLOAT32_ATTRIBUTES = True  # documented: eps and momentum reach the computation as 32-bit floats (the expectation uses those values)
FROZEN_AS_INFERENCE = False  # a frozen layer's training step still uses, and updates, the batch statistics
TARGET = "train0.y"  # the output compared: <step>.<output>
# crossbn's rounding-error bound for each element of TARGET: how far a correct
# float32 implementation may stray from the exact value
TOLERANCE = np.array([2.37e-06, 2.8e-06]).reshape((2, 1))

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
X = [np.array([0.15597014129161835, -2.778855323791504]).reshape((2, 1))]
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


DYNAMO = True  # True: the dynamo-based exporter (torch's default since 2.9); False: the TorchScript one
# What the module holds at export time: values that only have to differ from each other (the
# exporter merges equal initializers); the case's own values are fed when the graph runs.
EXPORT_FILL = {"weight": 1.25, "bias": -0.5, "running_mean": 0.25, "running_var": 1.5}


def framework_version():
    return "%s, torch %s torch.onnx.export (%s)" % ("onnxruntime %s (onnx %s)" % (
        onnxruntime.__version__, onnx.__version__),
        torch.__version__, "dynamo=True" if DYNAMO else "TorchScript")


def export(training):
    """torch.onnx.export of torch.nn.BatchNorm1d in training or eval mode; its parameters and
    running statistics made graph inputs, and a training node's running statistics graph outputs."""
    dtype = getattr(torch, DTYPE)
    bn = torch.nn.BatchNorm1d(SHAPE[1], eps=EPS, momentum=1.0 - MOMENTUM, affine=AFFINE,
                      track_running_stats=TRACK_RUNNING_STATS, dtype=dtype)
    with torch.no_grad():
        for name, value in EXPORT_FILL.items():
            if getattr(bn, name, None) is not None:
                getattr(bn, name).fill_(value)
    example = (torch.zeros(SHAPE, dtype=dtype),)
    if DYNAMO:
        bn.train(training)  # the dynamo exporter exports the module in the mode it is in
        model = torch.onnx.export(bn, example, dynamo=True, verbose=False, input_names=["x"],
                                  output_names=["y"]).model_proto
    else:
        import io

        buf = io.BytesIO()
        mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(bn, example, buf, dynamo=False, training=mode, do_constant_folding=False,
                          input_names=["x"], output_names=["y"])
        model = onnx.load_from_string(buf.getvalue())
    g = model.graph
    node = next(n for n in g.node if n.op_type == "BatchNormalization")
    exported_training = {a.name: helper.get_attribute_value(a) for a in node.attribute}.get("training_mode", 0) == 1
    params = [n for n in EXPORT_FILL if getattr(bn, n, None) is not None]
    inits = {t.name: t for t in g.initializer}
    for n in params:
        g.initializer.remove(inits[n])
        g.input.append(helper.make_tensor_value_info(n, inits[n].data_type, list(inits[n].dims)))
    fetches = {"y": "y"}
    if training and TRACK_RUNNING_STATS and exported_training:
        elem = g.input[0].type.tensor_type.elem_type
        for name, out in zip(("running_mean", "running_var"), node.output[1:3]):
            g.output.append(helper.make_tensor_value_info(out, elem, [SHAPE[1]]))
            fetches[name] = out
    # the IR version that goes with the opset: the newest onnx writes one newer than runtimes read
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)
    return model, params, fetches


def run(model, fetches, feeds):
    names = list(fetches)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run([fetches[n] for n in names], feeds)))


def framework_outputs():
    """The exported graph on onnxruntime (CPU), step by step: training steps run the
    training-mode export (as the exporter wrote it) and feed its running statistics, if it returns any, to the next step."""
    if CUMULATIVE:
        raise NotImplementedError("the export traces momentum=None as a fixed factor: no cumulative average")
    dtype = ml_dtypes.bfloat16 if DTYPE == "bfloat16" else np.dtype(DTYPE)
    c = SHAPE[1]
    to_graph = (lambda a: np.ascontiguousarray(np.moveaxis(a, -1, 1))) if CHANNELS_LAST else (lambda a: a)
    from_graph = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if CHANNELS_LAST else (lambda a: a)
    arrays = {"weight": np.asarray(GAMMA if AFFINE else np.ones(c)).astype(dtype),
              "bias": np.asarray(BETA if AFFINE else np.zeros(c)).astype(dtype),
              "running_mean": np.asarray(RUNNING_MEAN if TRACK_RUNNING_STATS else np.zeros(c)).astype(dtype),
              "running_var": np.asarray(RUNNING_VAR if TRACK_RUNNING_STATS else np.ones(c)).astype(dtype)}
    out = {}
    for k, step in enumerate(STEPS):
        training = step != "eval"
        model, params, fetches = export(training or not TRACK_RUNNING_STATS)
        feeds = {"x": to_graph(np.asarray(X[k]).astype(dtype)), **{n: arrays[n] for n in params}}
        got = run(model, fetches, feeds)
        out[step + ".y"] = from_graph(np.asarray(got["y"])).astype(np.float64)
        if training and TRACK_RUNNING_STATS and "running_mean" in got:
            for name in ("running_mean", "running_var"):
                arrays[name] = np.asarray(got[name])
                out[step + "." + name] = arrays[name].astype(np.float64)
    return out



def main():
    print("%s %s, NumPy %s" % ("ONNX Runtime", framework_version(), np.__version__))
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
    print("%s, %s:" % (TARGET, "ONNX Runtime"), got.ravel())
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
