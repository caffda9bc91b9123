"""ONNX networks of the models suite: the PyTorch network (networks/torch.py) exported by `torch.onnx.export`, run on
the backend's runtime (onnxruntime or the onnx reference evaluator: the backend's own `_runner`, as for its
BatchNorm graphs).

The TorchScript exporter (`dynamo=False`) exports the module in eval mode, every layer's output a graph output;
the `*-torch-export` backends export at the exporter's default opset, the `*-opset{9,14,15}` backends at their
own. The exported graph must keep one BatchNormalization node per BN layer: a BN folded into its Conv is an error,
not a result. Model cases with training steps are unsupported (the backend's `model_train` says so); eval-only
cases run on the initial running statistics. eps and momentum are FLOAT attributes (`hyperparameters = "float32"`).

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import io
import warnings

from crossbn.backends.base import Unsupported

_CACHE: dict = {}


def export(case, inputs: dict, opset: int | None):
    """onnx_graphs.Graph of the case's network (eval mode, weights baked in)."""
    import onnx
    import torch
    from onnx import helper

    from crossbn.backends.networks import torch as torch_net
    from crossbn.backends.onnx_graphs import Graph

    net = case.spec
    model = torch_net.build(case, inputs).eval()
    buf = io.BytesIO()
    kwargs = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter says it is deprecated, several times
        torch.onnx.export(
            model,
            (torch.from_numpy(inputs["x0"]),),
            buf,
            dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=False,
            input_names=["x"],
            output_names=list(net.names),
            **kwargs,
        )
    proto = onnx.load_from_string(buf.getvalue())
    ops = [n.op_type for n in proto.graph.node]
    if ops.count("BatchNormalization") != len(net.batchnorms):
        raise RuntimeError(
            f"torch.onnx.export of {net.name} gave {ops.count('BatchNormalization')} "
            f"BatchNormalization nodes for {len(net.batchnorms)} BN layers: {ops}"
        )
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.checker.check_model(proto, full_check=True)
    version = max(i.version for i in proto.opset_import if i.domain in ("", "ai.onnx"))
    return Graph(
        proto,
        {"x": "x"},
        {n: n for n in net.names},
        training=False,
        summary=f"{net.name} exported by torch.onnx.export at opset {version}",
    )


def run(backend, case, inputs: dict, device: str) -> dict:
    import numpy as np

    if case.train_steps:  # supports_model says so first; this guards direct calls
        raise Unsupported(backend.model_train)
    key = (backend.name, case.id, device)  # the session is the backend's runtime, the graph its opset
    if key not in _CACHE:
        graph = export(case, inputs, getattr(backend, "opset", None))
        try:
            _CACHE[key] = (graph, backend._runner(graph, device))
        except Exception as e:
            # onnxruntime's documented refusal: no kernel for an op in this dtype
            if "NOT_IMPLEMENTED" not in str(e):
                raise
            raise Unsupported(
                f"{backend.name} cannot run {graph.summary} in {case.dtype}: {str(e).splitlines()[0][:300]}"
            ) from e
    graph, call = _CACHE[key]
    names = list(case.spec.names)
    got = call(names, {"x": inputs["x0"]})
    return {f"eval.{n}": np.asarray(a) for n, a in zip(names, got)}
