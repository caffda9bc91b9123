"""ONNX graphs for the ONNX backends (`onnx_backend.py`): built, never run, here.

Two sources of a graph, both channels-first, both with the statistics and parameters as graph inputs so that one
graph serves every case of its shape:

- `opset_graph`: one BatchNormalization node written with `onnx.helper` at opset 9, 14 or 15;
- `torch_export_graph`: `torch.onnx.export` of the `nn.BatchNorm{1,2,3}d` module the `torch` backend builds
  (TorchScript or dynamo exporter), with its initializers made graph inputs.

Every model gets the IR version that goes with its opset and passes `onnx.checker.check_model(full_check=True)`.
Graphs are described by `Graph`: the model plus which graph input takes which case array and which graph output
is which observable.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from crossbn.backends.base import Unsupported

# Canonical names of what a graph is fed (`feeds`) and what it returns (`fetches`).
#   feeds:   x (channels-first), gamma, beta, running_mean, running_var
#   fetches: y, running_mean, running_var, batch_mean, and at opset 9 "saved_var"
#            (what the runtime puts in the opset-9 saved_var output; see onnx_backend.py)


@dataclass(frozen=True)
class Graph:
    model: object  # onnx.ModelProto
    feeds: dict[str, str]  # canonical input name -> graph input name
    fetches: dict[str, str]  # canonical output name -> graph output name
    training: bool  # normalizes with the batch statistics
    summary: str = ""  # what the graph contains, for error messages and docs


def _finish(model, onnx):
    """Set the IR version that goes with the model's opset, and validate."""
    from onnx import helper

    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)
    return model


def opset_graph(opset: int, shape: tuple[int, ...], dtype, training: bool, eps: float, momentum: float) -> Graph:
    """One BatchNormalization node at `opset` on an NCHW input of `shape`.

    `eps` and `momentum` are FLOAT attributes in every opset: the graph holds
    them rounded to float32 (momentum is ONNX's, the weight on the old value).
    """
    import numpy as np
    import onnx
    from onnx import helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    c = shape[1]
    names = ["X", "scale", "B", "input_mean", "input_var"]
    inputs = [helper.make_tensor_value_info("X", elem, list(shape))]
    inputs += [helper.make_tensor_value_info(n, elem, [c]) for n in names[1:]]
    attrs = {"epsilon": float(eps), "momentum": float(momentum)}
    if not training:
        outs = ["Y"]
        if opset >= 14:
            attrs["training_mode"] = 0
    elif opset >= 14:
        outs = ["Y", "running_mean", "running_var"]
        attrs["training_mode"] = 1
    else:  # opset 9: training is signalled by the optional outputs
        outs = ["Y", "running_mean", "running_var", "saved_mean", "saved_var"]
    outputs = [helper.make_tensor_value_info("Y", elem, list(shape))]
    outputs += [helper.make_tensor_value_info(n, elem, [c]) for n in outs[1:]]
    node = helper.make_node("BatchNormalization", names, outs, name="bn", **attrs)
    graph = helper.make_graph([node], f"batchnorm_opset{opset}", inputs, outputs)
    model = _finish(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="crossbn"), onnx
    )
    fetches = {"y": "Y"}
    if training:
        fetches.update(running_mean="running_mean", running_var="running_var")
        if opset < 14:
            fetches.update(batch_mean="saved_mean", saved_var="saved_var")
    feeds = dict(zip(("x", "gamma", "beta", "running_mean", "running_var"), names))
    mode = ("training_mode=1" if opset >= 14 else "5 outputs") if training else "inference"
    return Graph(model, feeds, fetches, training, f"BatchNormalization-{opset} ({mode})")


# Values the module holds at export time. They only have to differ from each
# other: the exporter merges identical initializers (a default module's weight
# and running_var, both ones, come out as one tensor and an Identity), and a
# merged tensor could not be fed separately. Exact in every dtype.
_EXPORT_FILL = {"weight": 1.25, "bias": -0.5, "running_mean": 0.25, "running_var": 1.5}


def torch_export_graph(case, training: bool, dynamo: bool = False) -> Graph:
    """`torch.onnx.export` (its default opset) of the module the `torch`
    backend builds for `case`, in training or eval mode: with the TorchScript
    exporter (`dynamo=False`, TrainingMode.TRAINING or EVAL), or with the
    dynamo-based one (`dynamo=True`, the default since torch 2.9: it exports
    the module in the mode it is in, as users call it; its optimizer on, the
    default). Only the case's shape, dtype, affine, track_running_stats, eps
    and momentum enter the graph; the values are fed at run time."""
    import onnx
    import torch
    from onnx import helper

    from crossbn.backends.torch_backend import TorchBackend, value_error_in

    shape, dtype = case.shape, getattr(torch, case.dtype)
    bn, _ = TorchBackend()._module(torch, case, "cpu")
    with torch.no_grad():
        for name, value in _EXPORT_FILL.items():
            if getattr(bn, name, None) is not None:
                getattr(bn, name).fill_(value)
    exporter = "dynamo" if dynamo else "TorchScript"
    example = (torch.zeros(shape, dtype=dtype),)
    with warnings.catch_warnings():
        # the legacy exporter is deprecated, and says so, several times per export
        warnings.simplefilter("ignore")
        # a training export runs the module forward once, updating its buffers:
        # `bn` is a throwaway copy for exactly that reason
        try:
            if dynamo:
                bn.train(training)
                model = torch.onnx.export(
                    bn, example, dynamo=True, verbose=False, input_names=["x"], output_names=["y"]
                ).model_proto
            else:
                buf = io.BytesIO()
                mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
                torch.onnx.export(
                    bn,
                    example,
                    buf,
                    dynamo=False,
                    training=mode,
                    do_constant_folding=False,
                    input_names=["x"],
                    output_names=["y"],
                )
                model = onnx.load_from_string(buf.getvalue())
        except Exception as e:
            # the module's own documented refusals (as in the torch backend), raised
            # directly (TorchScript) or wrapped by torch.export's error (dynamo)
            refused = value_error_in(e)
            if refused is None:
                raise
            raise Unsupported(f"PyTorch refuses the case while torch.onnx.export runs the module: {refused}") from e
    g = model.graph
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    if len(bns) != 1:
        raise RuntimeError(
            f"torch.onnx.export gave {len(bns)} BatchNormalization nodes, expected 1: {[n.op_type for n in g.node]}"
        )
    node = bns[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # parameters and running statistics: initializers -> graph inputs
    params = [n for n in _EXPORT_FILL if getattr(bn, n, None) is not None]
    inits = {t.name: t for t in g.initializer}
    missing = [n for n in params if n not in inits]
    if missing:
        raise RuntimeError(
            f"torch.onnx.export: no initializer named {missing} (has {sorted(inits)}); the exporter's naming changed"
        )
    for n in params:
        t = inits[n]
        g.initializer.remove(t)
        g.input.append(helper.make_tensor_value_info(n, t.data_type, list(t.dims)))
    fetches = {"y": "y"}
    exported_training = attrs.get("training_mode", 0) == 1
    # The dynamo exporter writes what it writes: for a module in training mode,
    # an inference node (onnxscript's torchlib sets training = False for
    # _native_batch_norm_legit_functional), which normalizes with the running
    # statistics and returns none: that is the finding, so it is run as it is.
    if training and case.track_running_stats and (exported_training or not dynamo):
        if not exported_training or len(node.output) < 3:
            raise RuntimeError(
                f"torch.onnx.export in TrainingMode.TRAINING gave {attrs} with "
                f"{len(node.output)} outputs, expected training_mode=1 and 3 outputs"
            )
        elem = g.input[0].type.tensor_type.elem_type
        for canonical, out in zip(("running_mean", "running_var"), node.output[1:3]):
            g.output.append(helper.make_tensor_value_info(out, elem, [shape[1]]))
            fetches[canonical] = out
    model = _finish(model, onnx)
    feeds = {
        "x": "x",
        **{
            canonical: n
            for canonical, n in zip(("gamma", "beta", "running_mean", "running_var"), _EXPORT_FILL)
            if n in params
        },
    }
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    ops = ", ".join(dict.fromkeys(n.op_type for n in g.node))
    summary = (
        f"torch.onnx.export ({exporter}, opset {opset}): {ops}; "
        f"BatchNormalization training_mode={int(exported_training)}, momentum={attrs.get('momentum')}"
    )
    return Graph(model, feeds, fetches, exported_training, summary)
