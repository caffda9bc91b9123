"""ONNX `BatchNormalization` graphs on onnxruntime and on the onnx reference evaluator.

Ten backends: a graph source times a runtime. Graph sources: `*-opset9`, `*-opset14`, `*-opset15` (one
BatchNormalization node written with onnx.helper at that opset) and `*-torch-export` / `*-torch-dynamo` (the
`torch` backend's nn.BatchNorm{1,2,3}d exported by torch.onnx.export, TorchScript or dynamo exporter); the graphs
are built in onnx_graphs.py. Runtimes: `onnxruntime-*` (onnxruntime.InferenceSession, CPU or CUDA provider) and
`onnx-reference-*` (onnx.reference.ReferenceEvaluator, NumPy, cpu only).

eps and momentum are FLOAT attributes, so the graph holds them rounded to float32; channels-last arrays are
transposed to channels-first around the graph; training steps run the training graph and feed its updated running
statistics into the next step. Cumulative averages are unsupported, and there are no gradients (an ONNX graph is
a forward computation).

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import time
from typing import ClassVar

from crossbn.backends.base import Backend, Unsupported
from crossbn.backends.devinfo import cpu_name
from crossbn.spec.subset import PER_STRATUM

_SPEC = "https://onnx.ai/onnx/operators/onnx__BatchNormalization.html#l-onnx-op-batchnormalization-{}"
_CUMULATIVE = (
    "ONNX BatchNormalization has one fixed momentum attribute per node: no cumulative average (PyTorch's momentum=None)"
)
_BF16_OPSET9 = "BatchNormalization-9 allows float16, float and double only (bfloat16 came with opset 14)"
_BF16_ORT = (
    "onnxruntime registers no bfloat16 BatchNormalization kernel "
    "(NOT_IMPLEMENTED: Could not find an implementation for BatchNormalization(14/15))"
)


def _conventions(opset: int) -> dict:
    # epsilon and momentum are FLOAT attributes: a float64 graph runs with
    # them rounded to float32 (the spec's attribute type, not a runtime choice)
    return {
        "momentum": "old",
        "running_var": "biased",
        "hyperparameters": "float32",
        "default_eps": "1e-5",
        "channel_axis": "first",
        "doc": _SPEC.format(opset),
    }


class _OnnxBackend(Backend):
    """Shared: case translation and the step loop. Subclasses pick a runtime
    (`_Ort`, `_Reference`) and a graph source (`_Opset`, `_TorchExport`)."""

    extra = "onnx"
    dtypes = ("float64", "float32", "float16")
    no_gradients = (
        "ONNX BatchNormalization graphs are forward computations: onnxruntime (inference build) "
        "and the onnx reference evaluator compute no gradients"
    )
    no_frozen = (
        "ONNX has no trainable flag: a graph says only training_mode, and a frozen layer exports "
        "as the same BatchNormalization node as a trainable one"
    )
    model_framework = "onnx"  # crossbn/backends/networks/onnx.py: the torch network exported
    model_train = (
        "the exported network is an inference graph; running BatchNormalization in training mode "
        "would need every BN's running statistics threaded between session runs, which "
        "torch.onnx.export does not write"
    )
    # why the dtypes left out of `dtypes` are not run
    dtype_reasons: ClassVar[dict[str, str]] = {}
    cumulative_reason: ClassVar[str] = _CUMULATIVE
    # what the runtime puts in opset 9's saved_var output: "invstd" or "batch_var"
    saved_var_is: ClassVar[str] = "batch_var"

    def __init__(self):
        self._cache: dict = {}

    def supports(self, case) -> str | None:
        if case.cumulative:
            return self.cumulative_reason
        if case.dtype in self.dtype_reasons:
            return f"{self.name} does not run {case.dtype}: {self.dtype_reasons[case.dtype]}"
        return super().supports(case)

    # -- worker side -----------------------------------------------------------
    def run(self, case, inputs: dict, device: str) -> dict:
        import numpy as np

        channels_last = case.channel_axis != 1
        to_graph = (lambda a: np.ascontiguousarray(np.moveaxis(a, -1, 1))) if channels_last else (lambda a: a)
        from_graph = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if channels_last else (lambda a: a)
        dt = inputs["x0"].dtype
        ones, zeros = np.ones(case.channels, dt), np.zeros(case.channels, dt)
        arrays = {
            "gamma": inputs.get("gamma", ones),
            "beta": inputs.get("beta", zeros),
            "running_mean": inputs.get("running_mean", zeros),
            "running_var": inputs.get("running_var", ones),
        }
        out: dict = {}
        self.run_info = {"graphs": [], "build_seconds": 0.0}
        for k, step in enumerate(case.steps):
            train_step = step != "eval"
            graph, call = self._compiled(case, train_step or not case.track_running_stats, device)
            if graph.summary not in self.run_info["graphs"]:
                self.run_info["graphs"].append(graph.summary)
            arrays["x"] = to_graph(inputs[f"x{k}"])
            names = list(graph.fetches)
            got = dict(
                zip(names, call([graph.fetches[n] for n in names], {graph.feeds[n]: arrays[n] for n in graph.feeds}))
            )
            out[f"{step}.y"] = from_graph(np.asarray(got["y"]))
            if not train_step:
                continue
            if "batch_mean" in got:
                out[f"{step}.batch_mean"] = np.asarray(got["batch_mean"])
            if "saved_var" in got:
                out[f"{step}.{self.saved_var_is}"] = np.asarray(got["saved_var"])
            if case.track_running_stats and "running_mean" in got:  # a dynamo export of a training module has none
                for name in ("running_mean", "running_var"):
                    arrays[name] = np.asarray(got[name])
                    out[f"{step}.{name}"] = arrays[name].copy()
        return out

    def _compiled(self, case, training: bool, device: str):
        """(Graph, call(output names, feeds) -> arrays), cached per graph and device."""
        key = (self._graph_key(case, training), device)
        if key not in self._cache:
            start = time.perf_counter()
            graph = self._graph(case, training)
            self._cache[key] = (graph, self._runner(graph, device))
            # graph building (the torch export) and session creation, not yet cached in this worker
            self.run_info["build_seconds"] += round(time.perf_counter() - start, 6)
        return self._cache[key]

    # graph source hooks
    def _graph_key(self, case, training: bool) -> tuple:
        raise NotImplementedError

    def _graph(self, case, training: bool):
        raise NotImplementedError

    # runtime hooks
    def _runner(self, graph, device: str):
        raise NotImplementedError

    def _runtime_version(self) -> str:
        raise NotImplementedError


# ---- graph sources -------------------------------------------------------------
class _Opset(_OnnxBackend):
    opset: ClassVar[int]

    def _graph_key(self, case, training):
        return ("opset", self.opset, case.shape, case.dtype, training, case.eps, case.momentum)

    def _graph(self, case, training):
        from crossbn.backends.onnx_graphs import opset_graph
        from crossbn.spec.dtypes import numpy_dtype

        return opset_graph(self.opset, case.shape, numpy_dtype(case.dtype), training, case.eps, case.momentum)

    def describe(self) -> dict:
        return {
            "version": f"{self._runtime_version()}, BatchNormalization opset {self.opset}",
            "devices": self._devices(),
        }


class _TorchExport(_OnnxBackend):
    dynamo: ClassVar[bool] = False  # the TorchScript exporter; True: the dynamo-based one
    conventions = _conventions(15)  # the exporter's default opset 20 has BatchNormalization-15
    cumulative_reason = (
        "torch.onnx.export traces momentum=None as the fixed factor of the export-time forward "
        "(momentum attribute 1 - 1/(num_batches_tracked+1): 0.0 for a fresh module), "
        "so the exported graph has no cumulative average"
    )

    def _graph_key(self, case, training):
        return (
            "torch-export",
            case.shape,
            case.dtype,
            case.affine,
            case.track_running_stats,
            training,
            case.eps,
            case.momentum,
        )

    def _graph(self, case, training):
        from crossbn.backends.onnx_graphs import torch_export_graph

        return torch_export_graph(case, training, dynamo=self.dynamo)

    def describe(self) -> dict:
        import torch

        exporter = "dynamo=True" if self.dynamo else "TorchScript"
        return {
            "version": f"{self._runtime_version()}, torch {torch.__version__} torch.onnx.export ({exporter})",
            "devices": self._devices(),
        }


# ---- runtimes ------------------------------------------------------------------
class _Ort(_OnnxBackend):
    devices = ("cpu", "cuda")
    saved_var_is = "invstd"  # onnxruntime fills opset 9's saved_var with 1/sqrt(var + eps)

    def _runtime_version(self) -> str:
        import onnx
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (onnx {onnx.__version__})"

    def _devices(self) -> dict:
        import onnxruntime

        out = {"cpu": cpu_name()}
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            out["cuda"] = "CUDAExecutionProvider"
        return out

    def _runner(self, graph, device):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if device == "cuda":
            # every node on the GPU, or an error: never a silent CPU fallback
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        provider = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[device]
        session = onnxruntime.InferenceSession(graph.model.SerializeToString(), options, providers=[provider])
        return session.run


class _Reference(_OnnxBackend):
    packages = ("onnx", "numpy")
    modules = ("onnx",)

    def _runtime_version(self) -> str:
        import onnx

        return f"onnx {onnx.__version__} ReferenceEvaluator"

    def _devices(self) -> dict:
        return {"cpu": cpu_name()}

    def _runner(self, graph, device):
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(graph.model)

        def call(names, feeds):
            try:
                return evaluator.run(names, feeds)
            except RuntimeError as e:
                # the kernel returned fewer outputs than the node has: a mode it does not implement
                if "Unable to find output name" not in str(e):
                    raise
                kernel = type(evaluator.rt_nodes_[-1]).__name__
                raise Unsupported(
                    f"the onnx reference evaluator cannot run {graph.summary}: its kernel {kernel} returns "
                    f"{'Y only' if graph.training else 'fewer outputs'}, so outputs {names[1:]} are never "
                    f"produced ({str(e).split(', proto is')[0]})"
                ) from e

        return call


# ---- the eight backends --------------------------------------------------------
class OrtOpset9(_Ort, _Opset):
    name = "onnxruntime-opset9"
    packages = ("onnxruntime", "onnx", "numpy")
    modules = ("onnxruntime", "onnx")
    opset = 9
    conventions = _conventions(9)
    dtype_reasons = {"bfloat16": _BF16_OPSET9}


class OrtOpset14(OrtOpset9):
    name = "onnxruntime-opset14"
    opset = 14
    conventions = _conventions(14)
    dtype_reasons = {"bfloat16": _BF16_ORT}


class OrtOpset15(OrtOpset14):
    name = "onnxruntime-opset15"
    opset = 15
    conventions = _conventions(15)


class OrtTorchExport(_Ort, _TorchExport):
    name = "onnxruntime-torch-export"
    packages = ("onnxruntime", "onnx", "torch", "numpy")
    modules = ("onnxruntime", "onnx", "torch")
    dtype_reasons = {"bfloat16": _BF16_ORT}


class OrtTorchDynamo(OrtTorchExport):
    name = "onnxruntime-torch-dynamo"
    dynamo = True
    subset = PER_STRATUM  # an export per case and mode (0.6 s each here): the stratified subset
    model_framework = None
    no_models = "its network adapter exports with the TorchScript exporter; the dynamo export is not yet written"


class RefOpset9(_Reference, _Opset):
    name = "onnx-reference-opset9"
    opset = 9
    conventions = _conventions(9)
    dtype_reasons = {"bfloat16": _BF16_OPSET9}


class RefOpset14(_Reference, _Opset):
    name = "onnx-reference-opset14"
    opset = 14
    conventions = _conventions(14)
    dtypes = ("float64", "float32", "float16", "bfloat16")


class RefOpset15(RefOpset14):
    name = "onnx-reference-opset15"
    opset = 15
    conventions = _conventions(15)


class RefTorchExport(_Reference, _TorchExport):
    name = "onnx-reference-torch-export"
    packages = ("onnx", "torch", "numpy")
    modules = ("onnx", "torch")
    dtypes = ("float64", "float32", "float16", "bfloat16")


class RefTorchDynamo(RefTorchExport):
    name = "onnx-reference-torch-dynamo"
    dynamo = True
    subset = PER_STRATUM
    model_framework = None
    no_models = OrtTorchDynamo.no_models
