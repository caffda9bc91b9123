"""The small networks of the `models` suite, as data.

A network (`Network`) is a list of named layers (`Layer`) in execution order, each naming the layers it reads;
the network input is the pseudo-layer "input". The operations (`OPS`) are conv, bn, relu, maxpool, dense and add,
in the canonical layout NCHW for images, OIHW for conv kernels, (out, in) for dense weights, as PyTorch stores
them. `NETWORKS` names the suite's networks. Every framework adapter builds the same network from this spec;
nothing here imports a framework.

The operations in detail and design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT = "input"
OPS = ("conv", "bn", "relu", "maxpool", "dense", "add")
KERNEL = 3  # conv kernel size; padding KERNEL // 2 keeps H and W
POOL = 2  # maxpool window and stride


@dataclass(frozen=True)
class Layer:
    name: str  # unique within the network; a hidden state is "<step>.<name>"
    op: str  # one of OPS
    inputs: tuple[str, ...]  # predecessor layers (or INPUT); two for "add", one otherwise
    units: int = 0  # conv: output channels; dense: output features; else unused


@dataclass(frozen=True)
class Network:
    name: str
    input_shape: tuple[int, int, int]  # one sample, (C, H, W)
    layers: tuple[Layer, ...]
    description: str = ""

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"network {self.name} has no layer {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def batchnorms(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers if layer.op == "bn")

    def shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Canonical shape of every hidden state (and of "input") for a batch size."""
        out: dict[str, tuple[int, ...]] = {INPUT: (batch, *self.input_shape)}
        for layer in self.layers:
            src = out[layer.inputs[0]]
            if layer.op == "conv":
                out[layer.name] = (batch, layer.units, *src[2:])
            elif layer.op == "maxpool":
                out[layer.name] = (batch, src[1], src[2] // POOL, src[3] // POOL)
            elif layer.op == "dense":
                out[layer.name] = (batch, layer.units)
            else:  # bn, relu, add keep the shape
                out[layer.name] = src
        return out

    def params(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Every parameter and BatchNorm statistic, "<layer>.<name>" -> canonical shape."""
        shapes, out = self.shapes(batch), dict[str, tuple[int, ...]]()
        for layer in self.layers:
            src = shapes[layer.inputs[0]]
            if layer.op == "conv":
                out[f"{layer.name}.weight"] = (layer.units, src[1], KERNEL, KERNEL)
                out[f"{layer.name}.bias"] = (layer.units,)
            elif layer.op == "dense":
                fan_in = 1
                for s in src[1:]:
                    fan_in *= s
                out[f"{layer.name}.weight"] = (layer.units, fan_in)
                out[f"{layer.name}.bias"] = (layer.units,)
            elif layer.op == "bn":
                for name in ("gamma", "beta", "running_mean", "running_var"):
                    out[f"{layer.name}.{name}"] = (src[1],)
        return out


# ---- layout helpers for the adapters that hold images channels-last ---------
def dense_kernel(w: np.ndarray, src_shape: tuple[int, ...]) -> np.ndarray:
    """Canonical (out, C*H*W) weight -> (H*W*C, out) kernel for a dense layer
    after an NHWC flatten; (out, in) -> (in, out) for a features input."""
    if len(src_shape) == 2:
        return np.ascontiguousarray(w.T)
    _, c, h, wd = src_shape
    return np.ascontiguousarray(w.reshape(w.shape[0], c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, -1))


def to_canonical(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def to_channels_last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def _check(net: Network) -> Network:
    """A malformed spec is a programming error: fail at import, naming it."""
    seen = {INPUT}
    for layer in net.layers:
        if layer.op not in OPS:
            raise ValueError(f"network {net.name}: layer {layer.name}: unknown op {layer.op!r}")
        if layer.name in seen or "." in layer.name:
            raise ValueError(f"network {net.name}: layer name {layer.name!r} is repeated or contains '.'")
        if len(layer.inputs) != (2 if layer.op == "add" else 1) or not set(layer.inputs) <= seen:
            raise ValueError(
                f"network {net.name}: layer {layer.name} reads {layer.inputs}, "
                f"which are not earlier layers (or the wrong number of them)"
            )
        seen.add(layer.name)
    shapes = net.shapes(1)
    for layer in net.layers:
        if layer.op == "add" and shapes[layer.inputs[0]] != shapes[layer.inputs[1]]:
            raise ValueError(
                f"network {net.name}: add {layer.name} of shapes "
                f"{shapes[layer.inputs[0]]} and {shapes[layer.inputs[1]]}"
            )
    return net


def _chain(*specs) -> tuple[Layer, ...]:
    """Layers that each read the previous one: (name, op[, units]) tuples."""
    out, prev = [], INPUT
    for spec in specs:
        name, op, *units = spec
        out.append(Layer(name, op, (prev,), *units))
        prev = name
    return tuple(out)


NETWORKS: dict[str, Network] = {
    n.name: _check(n)
    for n in (
        Network(
            "conv_bn_relu_pool_dense",
            (3, 8, 8),
            _chain(
                ("conv1", "conv", 6), ("bn1", "bn"), ("relu1", "relu"), ("pool1", "maxpool"), ("dense1", "dense", 10)
            ),
            "the textbook block: conv -> BN -> ReLU -> 2x2 max pool -> dense classifier",
        ),
        Network(
            "residual_block",
            (3, 8, 8),
            _chain(
                ("conv0", "conv", 4),
                ("bn0", "bn"),
                ("relu0", "relu"),
                ("conv1", "conv", 4),
                ("bn1", "bn"),
                ("relu1", "relu"),
                ("conv2", "conv", 4),
                ("bn2", "bn"),
            )
            + (Layer("add", "add", ("bn2", "relu0")), Layer("relu2", "relu", ("add",))),
            "a stem (conv-BN-ReLU) and a ResNet basic block whose second BN feeds the skip addition",
        ),
        Network(
            "bn_before_relu",
            (3, 8, 8),
            _chain(
                ("conv1", "conv", 6),
                ("bn1", "bn"),
                ("relu1", "relu"),
                ("conv2", "conv", 6),
                ("bn2", "bn"),
                ("relu2", "relu"),
            ),
            "BN between the convolution and its activation (the original BatchNorm placement)",
        ),
        Network(
            "bn_after_relu",
            (3, 8, 8),
            _chain(
                ("conv1", "conv", 6),
                ("relu1", "relu"),
                ("bn1", "bn"),
                ("conv2", "conv", 6),
                ("relu2", "relu"),
                ("bn2", "bn"),
            ),
            "BN after the activation: it normalizes non-negative, half-zero inputs",
        ),
        Network(
            "bn_chain",
            (3, 8, 8),
            _chain(
                ("conv1", "conv", 6),
                ("bn1", "bn"),
                ("bn2", "bn"),
                ("bn3", "bn"),
                ("relu1", "relu"),
                ("pool1", "maxpool"),
                ("dense1", "dense", 8),
                ("bn4", "bn"),
            ),
            "three BNs in a row (each normalizes an already normalized input), then a BN over dense features",
        ),
    )
}
