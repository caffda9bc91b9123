"""Flax networks of the models suite: linen (`flax-linen` eager, `flax-linen-jit` under `jax.jit`) and nnx
(`flax-nnx` eager, `flax-nnx-jit` under `nnx.jit`); the backend's `jit` flag and class pick.

Images are NHWC, Flax's layout (inputs transposed in, hidden states transposed back to NCHW); weights come from
the canonical layouts (OIHW kernels as HWIO, dense kernel rows permuted from the (C, H, W) order). bn is
`nn.BatchNorm(axis=-1, momentum, epsilon)` (Flax's momentum is the canonical one); `dtype`, `param_dtype` and the
running statistics are in the case dtype. linen steps are pure `apply` functions (jitted and cached under
flax-linen-jit); nnx layers hold the case's values and update their BatchStats in place.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import linen as nn

from crossbn.spec.networks import INPUT, KERNEL, POOL, dense_kernel, to_canonical, to_channels_last


def _walk(spec, x, parametric):
    """Every layer's output, in spec order: `parametric(layer, a)` runs the
    layers with weights (conv, bn, dense) the linen or nnx way; relu, max
    pool and add are the same for both."""
    h = {INPUT: x}
    for layer in spec.layers:
        a = h[layer.inputs[0]]
        if layer.op == "relu":
            h[layer.name] = nn.relu(a)
        elif layer.op == "maxpool":
            h[layer.name] = nn.max_pool(a, (POOL, POOL), strides=(POOL, POOL))
        elif layer.op == "add":
            h[layer.name] = a + h[layer.inputs[1]]
        else:
            h[layer.name] = parametric(layer, a)
    return tuple(h[name] for name in spec.names)


def _net(case):
    spec = case.spec

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            def parametric(layer, a):
                if layer.op == "conv":
                    return nn.Conv(
                        layer.units,
                        (KERNEL, KERNEL),
                        padding="SAME",
                        dtype=case.dtype,
                        param_dtype=case.dtype,
                        name=layer.name,
                    )(a)
                if layer.op == "bn":
                    return nn.BatchNorm(
                        use_running_average=not train,
                        axis=-1,
                        momentum=case.momentum,
                        epsilon=case.eps,
                        dtype=case.dtype,
                        param_dtype=case.dtype,
                        name=layer.name,
                    )(a)
                return nn.Dense(layer.units, dtype=case.dtype, param_dtype=case.dtype, name=layer.name)(
                    a.reshape(a.shape[0], -1)
                )

            return _walk(spec, x, parametric)

    return Net()


def variables(case, inputs: dict) -> dict:
    """The case's weights and statistics as linen variables (channels-last)."""
    shapes = case.spec.shapes(case.batch)
    params, stats = {}, {}
    for layer in case.spec.layers:
        p = lambda name: inputs[f"{layer.name}.{name}"]
        if layer.op == "conv":
            params[layer.name] = {"kernel": p("weight").transpose(2, 3, 1, 0), "bias": p("bias")}
        elif layer.op == "dense":
            params[layer.name] = {"kernel": dense_kernel(p("weight"), shapes[layer.inputs[0]]), "bias": p("bias")}
        elif layer.op == "bn":
            params[layer.name] = {"scale": p("gamma"), "bias": p("beta")}
            stats[layer.name] = {"mean": p("running_mean"), "var": p("running_var")}
    return {"params": params, "batch_stats": stats}


_STEPS: dict = {}


def step_fn(case, jit: bool):
    """(params, batch_stats, x, train) -> (hidden states, new batch_stats)."""
    key = (case.network, case.dtype, case.eps, case.momentum, jit)
    if key not in _STEPS:
        model = _net(case)

        def step(params, batch_stats, x, train):
            if train:
                states, updates = model.apply(
                    {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
                )
                return states, updates["batch_stats"]
            return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False), batch_stats

        _STEPS[key] = jax.jit(step, static_argnames="train") if jit else step
    return _STEPS[key]


def _nnx_net(case, inputs: dict, put):
    """An nnx.Module with the spec's layers as attributes, holding the case's values."""
    from flax import nnx

    spec, var = case.spec, variables(case, inputs)
    shapes = spec.shapes(case.batch)
    kw = dict(dtype=case.dtype, param_dtype=case.dtype, rngs=nnx.Rngs(0))

    class Net(nnx.Module):
        def __init__(self):
            for layer in spec.layers:
                src = shapes[layer.inputs[0]]
                if layer.op == "conv":
                    m = nnx.Conv(src[1], layer.units, (KERNEL, KERNEL), padding="SAME", **kw)
                elif layer.op == "dense":
                    m = nnx.Linear(int(np.prod(src[1:])), layer.units, **kw)
                elif layer.op == "bn":
                    m = nnx.BatchNorm(src[1], axis=-1, momentum=case.momentum, epsilon=case.eps, **kw)
                    m.mean = nnx.BatchStat(put(var["batch_stats"][layer.name]["mean"]))
                    m.var = nnx.BatchStat(put(var["batch_stats"][layer.name]["var"]))
                else:
                    continue
                for name, value in var["params"][layer.name].items():
                    setattr(m, name, nnx.Param(put(value)))
                setattr(self, layer.name, m)

        def __call__(self, x, train: bool):
            def parametric(layer, a):
                module = getattr(self, layer.name)
                if layer.op == "bn":
                    return module(a, use_running_average=not train)
                return module(a.reshape(a.shape[0], -1) if layer.op == "dense" else a)

            return _walk(spec, x, parametric)

    return Net()


def _nnx_call(model, x, train):
    return model(x, train)


_NNX_JIT: list = []


def _nnx_step(jit: bool):
    if not jit:
        return _nnx_call
    if not _NNX_JIT:
        from flax import nnx

        _NNX_JIT.append(nnx.jit(_nnx_call, static_argnames="train"))
    return _NNX_JIT[0]


def run(backend, case, inputs: dict, device: str) -> dict:
    from crossbn.backends.flax_backend import FlaxNnx

    if case.dtype == "float64" and not jax.config.jax_enable_x64:
        raise RuntimeError("float64 case in a worker without JAX_ENABLE_X64=1: JAX would compute in float32")
    dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    jit = getattr(backend, "jit", False)
    out = {}
    if isinstance(backend, FlaxNnx):
        with jax.default_device(dev):
            model, fn = _nnx_net(case, inputs, lambda a: jax.device_put(a, dev)), _nnx_step(jit)
            for k, step in enumerate(case.steps):
                states = fn(model, jax.device_put(to_channels_last(inputs[f"x{k}"]), dev), train=step != "eval")
                out.update({f"{step}.{n}": to_canonical(np.asarray(a)) for n, a in zip(case.spec.names, states)})
        return out
    fn = step_fn(case, jit)
    with jax.default_device(dev):
        var = jax.device_put(variables(case, inputs), dev)
        params, stats = var["params"], var["batch_stats"]
        for k, step in enumerate(case.steps):
            x = jax.device_put(to_channels_last(inputs[f"x{k}"]), dev)
            states, stats = fn(params, stats, x, train=step != "eval")
            for name, a in zip(case.spec.names, states):
                out[f"{step}.{name}"] = to_canonical(np.asarray(a))
    return out
