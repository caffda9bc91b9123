"""Keras networks of the models suite: one builder for Keras 3 (`keras-tensorflow`, `keras-jax`, `keras-torch`: the
worker's KERAS_BACKEND decides) and Keras 2 (`tf-keras`, `tf-keras-fused`: the `tf_keras` package), parameterized
by the keras module.

Images are channels-last (NHWC in, hidden states transposed back to NCHW); bn is `BatchNormalization(axis=-1,
momentum, epsilon)` (Keras's momentum is the canonical one; tf-keras-fused adds fused=True, tf-keras fused=False);
every layer gets `dtype=case.dtype`. Steps: `layer(x, training=True)` updates the BatchNorm moving statistics in
place (eager), `training=False` uses them.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import numpy as np

from crossbn.backends.base import Unsupported
from crossbn.backends.devinfo import keras_device
from crossbn.spec.networks import INPUT, KERNEL, POOL, dense_kernel, to_canonical, to_channels_last


def _keras(backend):
    """The keras module the backend runs: Keras 2 for tf-keras*, else Keras 3."""
    if backend.model_framework == "tf_keras":
        import tf_keras

        return tf_keras
    import keras

    return keras


def build(K, case, inputs: dict, fused=None) -> dict:
    """{layer name: built Keras layer with the case's weights} (Flatten layers
    under "<dense>/flatten")."""
    net, dt = case.spec, case.dtype
    shapes = net.shapes(case.batch)
    layers = {}
    for layer in net.layers:
        src = shapes[layer.inputs[0]]
        src_last = (None, *src[2:], src[1]) if len(src) == 4 else (None, src[1])
        p = lambda name: inputs[f"{layer.name}.{name}"]
        if layer.op == "conv":
            m = K.layers.Conv2D(layer.units, KERNEL, padding="same", dtype=dt)
            m.build(src_last)
            m.set_weights([p("weight").transpose(2, 3, 1, 0), p("bias")])
        elif layer.op == "bn":
            kwargs = {} if fused is None else {"fused": fused}
            m = K.layers.BatchNormalization(axis=-1, momentum=case.momentum, epsilon=case.eps, dtype=dt, **kwargs)
            try:
                m.build(src_last)
            except ValueError as e:
                if not fused:
                    raise
                raise Unsupported(f"tf_keras BatchNormalization(fused=True) refuses {layer.name}: {e}") from e
            if fused is not None and bool(m.fused) != fused:
                raise Unsupported(
                    f"tf_keras built {layer.name} with fused={m.fused!r} (silent fallback), not the fused={fused} path"
                )
            m.set_weights([p("gamma"), p("beta"), p("running_mean"), p("running_var")])
        elif layer.op == "dense":
            m = K.layers.Dense(layer.units, dtype=dt)
            m.build((None, int(np.prod(src[1:]))))
            m.set_weights([dense_kernel(p("weight"), src), p("bias")])
            if len(src) == 4:
                layers[f"{layer.name}/flatten"] = K.layers.Flatten(dtype=dt)
        elif layer.op == "relu":
            m = K.layers.ReLU(dtype=dt)
        elif layer.op == "maxpool":
            m = K.layers.MaxPooling2D(POOL, dtype=dt)
        else:
            m = K.layers.Add(dtype=dt)
        layers[layer.name] = m
    return layers


def forward(layers: dict, case, x, training: bool, to_numpy) -> dict:
    """One step: {layer: canonical NumPy hidden state}."""
    h = {INPUT: x}
    for layer in case.spec.layers:
        a = h[layer.inputs[0]]
        m = layers[layer.name]
        if layer.op == "bn":
            y = m(a, training=training)
        elif layer.op == "add":
            y = m([a, h[layer.inputs[1]]])
        elif layer.op == "dense" and f"{layer.name}/flatten" in layers:
            y = m(layers[f"{layer.name}/flatten"](a))
        else:
            y = m(a)
        h[layer.name] = y
    return {name: to_canonical(np.asarray(to_numpy(h[name]))) for name in case.spec.names}


def run(backend, case, inputs: dict, device: str) -> dict:
    K = _keras(backend)
    if K.__name__ == "tf_keras":
        import tensorflow as tf

        scope = tf.device(f"/{'GPU' if device == 'cuda' else 'CPU'}:0")
        to_numpy = lambda t: t.numpy()
        to_tensor = lambda a: tf.constant(a)
        fused = getattr(backend, "fused", None)
    else:
        assert K.backend.backend() == backend.keras_backend, K.backend.backend()
        scope = K.device(keras_device(device))
        to_numpy = K.ops.convert_to_numpy
        to_tensor = K.ops.convert_to_tensor
        fused = None
    out = {}
    with scope:
        layers = build(K, case, inputs, fused)
        for k, step in enumerate(case.steps):
            states = forward(layers, case, to_tensor(to_channels_last(inputs[f"x{k}"])), step != "eval", to_numpy)
            out.update({f"{step}.{name}": a for name, a in states.items()})
    return out
