"""PyTorch networks of the models suite (backends `torch`, `torch-compile`; also the source of the ONNX exports,
networks/onnx.py).

Canonical layout is PyTorch's own, so weights are copied as they are; bn is `nn.BatchNorm2d` (4-D input) or
`nn.BatchNorm1d` (features) with momentum = 1 - canonical momentum (PyTorch weighs the NEW batch statistic).
Steps: `model.train()` for training steps, `model.eval()` for the eval step, forward under `torch.no_grad()`; the
running statistics live in the modules from step to step. `torch-compile` (`backend.model_compile`) runs the same
module under `torch.compile(fullgraph=True)`.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crossbn.spec.network_case import ModelCase
from crossbn.spec.networks import INPUT, KERNEL, POOL, Network


class Net(nn.Module):
    """The spec's layers as modules; forward returns every hidden state, in
    layer order (a tuple, which torch.onnx.export turns into graph outputs)."""

    def __init__(self, spec: Network, case: ModelCase, device: str = "cpu"):
        super().__init__()
        self.spec = spec
        dt = getattr(torch, case.dtype)
        shapes = spec.shapes(case.batch)
        self.blocks = nn.ModuleDict()
        for layer in spec.layers:
            src = shapes[layer.inputs[0]]
            if layer.op == "conv":
                m = nn.Conv2d(src[1], layer.units, KERNEL, padding=KERNEL // 2, device=device, dtype=dt)
            elif layer.op == "bn":
                cls = nn.BatchNorm2d if len(src) == 4 else nn.BatchNorm1d
                m = cls(src[1], eps=case.eps, momentum=1.0 - case.momentum, device=device, dtype=dt)
            elif layer.op == "dense":
                m = nn.Linear(math.prod(src[1:]), layer.units, device=device, dtype=dt)
            else:
                continue
            self.blocks[layer.name] = m

    def forward(self, x):
        h = {INPUT: x}
        for layer in self.spec.layers:
            a = h[layer.inputs[0]]
            if layer.op in ("conv", "bn"):
                y = self.blocks[layer.name](a)
            elif layer.op == "dense":
                y = self.blocks[layer.name](a.flatten(1))
            elif layer.op == "relu":
                y = torch.relu(a)
            elif layer.op == "maxpool":
                y = F.max_pool2d(a, POOL)
            else:  # add
                y = a + h[layer.inputs[1]]
            h[layer.name] = y
        return tuple(h[name] for name in self.spec.names)


_PARAMS = {
    "conv": {"weight": "weight", "bias": "bias"},
    "dense": {"weight": "weight", "bias": "bias"},
    "bn": {"gamma": "weight", "beta": "bias", "running_mean": "running_mean", "running_var": "running_var"},
}


def build(case: ModelCase, inputs: dict, device: str = "cpu") -> Net:
    """The case's network with its weights and initial running statistics."""
    model = Net(case.spec, case, device)
    with torch.no_grad():
        for layer in case.spec.layers:
            for name, attr in _PARAMS.get(layer.op, {}).items():
                getattr(model.blocks[layer.name], attr).copy_(torch.from_numpy(inputs[f"{layer.name}.{name}"]))
    return model


def forward_all(model: Net, case: ModelCase, inputs: dict, device: str = "cpu", call=None) -> dict:
    """Every step's hidden states, {"<step>.<layer>": array}, canonical layout."""
    call = model if call is None else call
    out = {}
    for k, step in enumerate(case.steps):
        model.train(step != "eval")
        with torch.no_grad():
            states = call(torch.from_numpy(inputs[f"x{k}"]).to(device))
        for name, t in zip(case.spec.names, states):
            out[f"{step}.{name}"] = t.detach().cpu().numpy().copy()
    return out


def run(backend, case: ModelCase, inputs: dict, device: str) -> dict:
    model = build(case, inputs, device)
    if getattr(backend, "model_compile", False):
        return forward_all(model, case, inputs, device, _compiled(model, backend))
    return forward_all(model, case, inputs, device)


def _compiled(model: Net, backend):
    """torch.compile(fullgraph=True) of the network, configured as the
    torch-compile backend configures its BatchNorm modules: never a silent
    fallback to eager (recompile limit raised, hitting it an error), compile
    time and graphs in the result's backend_info."""
    import torch._dynamo

    from crossbn.backends.torch_compile_backend import UNBOUNDED, Timed

    torch._dynamo.config.recompile_limit = UNBOUNDED
    torch._dynamo.config.accumulated_recompile_limit = UNBOUNDED
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    backend.run_info = {"compile_seconds": 0.0, "graphs_compiled": 0}
    return Timed(torch, torch.compile(model, fullgraph=True), backend.run_info)
