"""`torch.compile` (TorchInductor, default options) of the same `nn.BatchNorm` module.

Everything about the case translates as for eager PyTorch (`torch_backend.py`); what differs is that the module's
forward, and its backward through AOTAutograd, run as generated code, so this is a row of its own.

The worker keeps one compiled module per configuration that dynamo guards on and reuses it across cases. The
module is compiled with `fullgraph=True` and a raised `recompile_limit` whose hitting is an error, so that no
case silently tests eager PyTorch. The backend runs the stratified subset of a suite (crossbn/spec/subset.py);
each result's `backend_info` records `compile_seconds` and `graphs_compiled`. Intermediates: none.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import time

from crossbn.backends.base import Unsupported
from crossbn.backends.torch_backend import TorchBackend, value_error_in
from crossbn.spec.subset import PER_STRATUM

UNBOUNDED = 1_000_000  # recompiles allowed per frame: never fall back to eager


class TorchCompile(TorchBackend):
    name = "torch-compile"
    model_compile = True  # crossbn/backends/networks/torch.py compiles the network too
    subset = PER_STRATUM  # cases per group and dtype of a suite (crossbn/spec/subset.py)

    def __init__(self) -> None:
        self._compiled: dict = {}

    def _module(self, torch, case, device):
        import torch._dynamo

        torch._dynamo.config.recompile_limit = UNBOUNDED
        torch._dynamo.config.accumulated_recompile_limit = UNBOUNDED
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        key = (
            case.rank,
            case.channels,
            case.dtype,
            device,
            case.eps,
            case.momentum,
            case.cumulative,
            case.affine,
            case.track_running_stats,
            case.frozen,
        )
        if key not in self._compiled:
            bn, _ = super()._module(torch, case, device)
            self._compiled[key] = (bn, torch.compile(bn, fullgraph=True))
        bn, compiled = self._compiled[key]
        if bn.num_batches_tracked is not None:
            with torch.no_grad():
                bn.num_batches_tracked.zero_()  # a fresh layer for every case
        self.run_info = {"compile_seconds": 0.0, "graphs_compiled": 0}
        return bn, Timed(torch, compiled, self.run_info)

    @staticmethod
    def _intermediates(torch, bn, x, step) -> dict:
        return {}


class Timed:
    """Calls the compiled module and adds the calls that compiled a graph to
    `info`. AOTAutograd compiles the backward together with the forward (the
    first backward measured 0.00 s here), so timing the forward calls
    captures the compile cost."""

    def __init__(self, torch, compiled, info: dict):
        from torch._dynamo.utils import counters

        self._compiled, self._info, self._counters = compiled, info, counters

    def _graphs(self) -> int:
        return int(self._counters["stats"]["unique_graphs"])

    def __call__(self, x):
        import torch._dynamo.exc

        before, start = self._graphs(), time.perf_counter()
        try:
            y = self._compiled(x)
        except torch._dynamo.exc.UserError as e:
            # e.g. momentum=None: the factor 1/num_batches_tracked is a
            # data-dependent float that fullgraph compilation cannot guard on
            # (without fullgraph it is a graph break: eager code, not compiled)
            if "data-dependent" not in str(e):
                raise
            first = str(e).splitlines()[0]
            raise Unsupported(f"torch.compile(fullgraph=True) cannot compile this module: {first}") from e
        except torch._dynamo.exc.TorchRuntimeError as e:
            # PyTorch's own refusal (one value per channel, eps 0 in training), met
            # while tracing with fake tensors: the same case eager PyTorch refuses
            refused = value_error_in(e)
            if refused is None:
                raise
            raise Unsupported(f"PyTorch refuses the case (while torch.compile traces it): {refused}") from e
        compiled_now = self._graphs() - before
        if compiled_now:
            self._info["graphs_compiled"] += compiled_now
            self._info["compile_seconds"] += time.perf_counter() - start
        return y
