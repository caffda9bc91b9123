"""TensorFlow-op networks of the models suite: `tf-nn` and `tf-fused-op`, the network written with raw TensorFlow
ops, as one writes it without Keras.

Images are NHWC (TensorFlow's CPU convolution runs no other layout): inputs go in transposed, hidden states come
back as NCHW. Everything runs eagerly in the case dtype. The BatchNorm layers are the backend's own op, translated
as its BatchNorm suite adapter does (crossbn/backends/tf_backend.py): `tf.nn.moments` +
`tf.nn.batch_normalization` for `tf-nn`, `tf.raw_ops.FusedBatchNormV3` for `tf-fused-op` (float32 only).

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from crossbn.spec.networks import INPUT, POOL, dense_kernel, to_canonical, to_channels_last


def _batchnorm_nn(case, state, x, training):
    axes = list(range(x.shape.rank - 1))
    if training:
        mean, var = tf.nn.moments(x, axes)
        m = tf.constant(case.momentum, x.dtype)
        state["mean"] = m * state["mean"] + tf.constant(1.0 - case.momentum, x.dtype) * mean
        state["var"] = m * state["var"] + tf.constant(1.0 - case.momentum, x.dtype) * var
    else:
        mean, var = state["mean"], state["var"]
    return tf.nn.batch_normalization(x, mean, var, state["beta"], state["gamma"], case.eps)


def _batchnorm_fused(case, state, x, training):
    shape = x.shape
    x4 = x if shape.rank == 4 else tf.reshape(x, [shape[0], 1, 1, shape[1]])
    r = tf.raw_ops.FusedBatchNormV3(
        x=x4,
        scale=state["gamma"],
        offset=state["beta"],
        mean=state["mean"],
        variance=state["var"],
        epsilon=case.eps,
        exponential_avg_factor=1.0 - case.momentum if training else 1.0,
        data_format="NHWC",
        is_training=training,
    )
    if training:
        state["mean"], state["var"] = r.batch_mean, r.batch_variance
    return tf.reshape(r.y, shape)


def run(backend, case, inputs: dict, device: str) -> dict:
    from crossbn.backends.tf_backend import TfFusedOp

    batchnorm = _batchnorm_fused if isinstance(backend, TfFusedOp) else _batchnorm_nn
    spec = case.spec
    shapes = spec.shapes(case.batch)
    out = {}
    with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
        c = lambda name: tf.constant(inputs[name])
        bn = {
            layer.name: {
                "gamma": c(f"{layer.name}.gamma"),
                "beta": c(f"{layer.name}.beta"),
                "mean": c(f"{layer.name}.running_mean"),
                "var": c(f"{layer.name}.running_var"),
            }
            for layer in spec.layers
            if layer.op == "bn"
        }
        for k, step in enumerate(case.steps):
            h = {INPUT: tf.constant(to_channels_last(inputs[f"x{k}"]))}
            for layer in spec.layers:
                a = h[layer.inputs[0]]
                w = lambda name: inputs[f"{layer.name}.{name}"]
                if layer.op == "conv":
                    y = tf.nn.bias_add(tf.nn.conv2d(a, w("weight").transpose(2, 3, 1, 0), 1, "SAME"), w("bias"))
                elif layer.op == "bn":
                    y = batchnorm(case, bn[layer.name], a, step != "eval")
                elif layer.op == "dense":
                    kernel = dense_kernel(w("weight"), shapes[layer.inputs[0]])
                    y = tf.matmul(tf.reshape(a, [a.shape[0], -1]), kernel) + w("bias")
                elif layer.op == "relu":
                    y = tf.nn.relu(a)
                elif layer.op == "maxpool":
                    y = tf.nn.max_pool2d(a, POOL, POOL, "VALID")
                else:
                    y = a + h[layer.inputs[1]]
                h[layer.name] = y
            out.update({f"{step}.{n}": to_canonical(np.asarray(h[n].numpy())) for n in spec.names})
    return out
