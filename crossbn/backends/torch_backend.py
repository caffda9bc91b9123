"""PyTorch eager `nn.BatchNorm{1,2,3}d`.

Translation from the canonical case:
- momentum: PyTorch weights the NEW batch statistic, so it gets 1 - momentum; `cumulative` becomes momentum=None.
- channels_last: the stored (N, *spatial, C) array is viewed as (N, C, *spatial) with `movedim`, which for rank 4/5
  is exactly PyTorch's channels_last(_3d) memory format: the module sees the framework's own channels-last path.
- declared convention: the running variance is fed the UNBIASED batch variance, and an empty batch (N = 0) leaves
  the running statistics unchanged.
- a frozen layer is the fine-tuning recipe: weight and bias `requires_grad_(False)`, the module left in train mode
  (so, canonically, it still normalizes with the batch statistics and updates the running ones); its parameters
  then have no `.grad`.
- intermediates: `aten.native_batch_norm` (the CPU kernel the module calls) returns the batch mean and inverse std
  it computed, on a copy of the state.
"""

from __future__ import annotations

from crossbn.backends.base import Backend, Unsupported
from crossbn.backends.devinfo import cpu_name

_MODULES = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}


def to_torch(torch, a, device):
    if a.dtype.name == "bfloat16":  # torch.from_numpy does not know ml_dtypes
        import numpy as np

        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(a).to(device)


def torch_to_numpy(torch, t):
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()  # never share memory with a buffer updated in place later


def value_error_in(e: BaseException) -> ValueError | None:
    """The ValueError an exception was raised from, if any: PyTorch's own
    refusal of a case (one value per channel, eps 0 in training), met inside
    torch.compile's or torch.export's tracing, which wrap it in their errors."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ValueError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def torch_devices() -> dict:
    """{"cpu": model, "cuda": GPU name when present}, as PyTorch sees them."""
    import torch

    devices = {"cpu": cpu_name()}
    if torch.cuda.is_available():
        devices["cuda"] = torch.cuda.get_device_name(0)
    return devices


class TorchBackend(Backend):
    name = "torch"
    packages = ("torch", "numpy")
    modules = ("torch",)
    extra = "torch"
    devices = ("cpu", "cuda")
    conventions = {
        "momentum": "new",
        "running_var": "unbiased",
        "default_eps": "1e-5",
        "channel_axis": "first",
        # torch.nn.functional.batch_norm: "Expected more than 1 value per channel when training"
        "single_value": "error",
        # ATen batch_norm / _batch_norm_impl_index (aten/src/ATen/native/Normalization.cpp): an input
        # with no elements returns input.clone() * weight[0] + bias[0] before any statistic is
        # computed, so the running statistics are left unchanged (num_batches_tracked still counts it)
        "empty_batch": "skip",
        "doc": "https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html",
    }
    no_frozen = None
    model_framework = "torch"  # crossbn/backends/networks/torch.py

    def describe(self) -> dict:
        import torch

        return {"version": str(torch.__version__), "devices": torch_devices()}

    def _module(self, torch, case, device):
        """(the BatchNorm module, the callable that runs it): here both the
        eager module; torch-compile returns its compiled wrapper as the callable."""
        bn = getattr(torch.nn, _MODULES[case.rank])(
            case.channels,
            eps=case.eps,
            momentum=None if case.cumulative else 1.0 - case.momentum,
            affine=case.affine,
            track_running_stats=case.track_running_stats,
            device=device,
            dtype=getattr(torch, case.dtype),
        )
        if case.frozen:
            for p in bn.parameters():
                p.requires_grad_(False)
        return bn, bn

    def run(self, case, inputs: dict, device: str) -> dict:
        import torch

        bn, call = self._module(torch, case, device)
        with torch.no_grad():
            for name, attr in (
                ("gamma", "weight"),
                ("beta", "bias"),
                ("running_mean", "running_mean"),
                ("running_var", "running_var"),
            ):
                if name in inputs:
                    getattr(bn, attr).copy_(to_torch(torch, inputs[name], device))

        channels_last = case.channel_axis != 1
        out: dict = {}
        for k, step in enumerate(case.steps):
            training = step != "eval"
            bn.train(training)
            leaf = to_torch(torch, inputs[f"x{k}"], device).requires_grad_(case.gradients)
            x = leaf.movedim(-1, 1) if channels_last else leaf
            if training:
                out.update(self._intermediates(torch, bn, x.detach(), step))
            bn.zero_grad(set_to_none=True)
            try:
                y = call(x)
            except ValueError as e:  # documented: one value per channel in training
                raise Unsupported(f"PyTorch refuses the case: {e}") from e
            y_stored = y.movedim(1, -1) if channels_last else y
            out[f"{step}.y"] = torch_to_numpy(torch, y_stored.contiguous())
            if training and case.track_running_stats:
                out[f"{step}.running_mean"] = torch_to_numpy(torch, bn.running_mean)
                out[f"{step}.running_var"] = torch_to_numpy(torch, bn.running_var)
            if case.gradients:
                dy = to_torch(torch, inputs[f"dy{k}"], device)
                y_stored.backward(dy)
                out[f"{step}.dx"] = torch_to_numpy(torch, leaf.grad)
                if case.affine and bn.weight.grad is not None:  # None: a frozen parameter
                    out[f"{step}.dgamma"] = torch_to_numpy(torch, bn.weight.grad)
                    out[f"{step}.dbeta"] = torch_to_numpy(torch, bn.bias.grad)
        return out

    @staticmethod
    def _intermediates(torch, bn, x, step) -> dict:
        """Batch mean and inverse std as the kernel computed them (copies of the
        running state, so the module's own update is not disturbed)."""
        clone = lambda t: None if t is None else t.detach().clone()
        try:
            _, mean, invstd = torch.ops.aten.native_batch_norm(
                x,
                clone(bn.weight),
                clone(bn.bias),
                clone(bn.running_mean),
                clone(bn.running_var),
                True,
                0.0,
                bn.eps,
            )
        except (RuntimeError, ValueError):
            return {}
        return {f"{step}.batch_mean": torch_to_numpy(torch, mean), f"{step}.invstd": torch_to_numpy(torch, invstd)}
