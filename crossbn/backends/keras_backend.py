"""Keras 3 `layers.BatchNormalization` on each of its backends.

Keras fixes its backend when it is first imported (KERAS_BACKEND), so each of
`keras-tensorflow`, `keras-jax` and `keras-torch` is its own backend with its
own worker process. The layer is the same; only the gradient machinery differs
(GradientTape, jax.vjp over `stateless_call`, torch autograd).

Translation from the canonical case: momentum and eps pass through unchanged
(Keras shares crossbn's momentum convention); `axis` is 1 or -1 from the
layout; affine off is center=False, scale=False; the layer dtype policy is the
case dtype. Keras has no cumulative average and no track_running_stats=False:
those cases are unsupported, not approximated.

Intermediates: in training the layer calls `keras.ops.moments` on the input
upcast to at least float32; the adapter calls the same op on the same tensor
to expose the batch mean and variance.
"""

from __future__ import annotations

from .base import Backend
from .devinfo import (JAX_WORKER_ENV, cpu_name, jax_devices, keras_device, no_running_stats_variants,
                      tensorflow_devices)


class _KerasBackend(Backend):
    keras_backend: str = ""
    extra = "keras"
    model_framework = "keras"  # crossbn/models/keras_net.py
    devices = ("cpu", "cuda")
    conventions = {
        "momentum": "old", "running_var": "biased", "default_eps": "1e-3", "channel_axis": "any",
        "doc": "https://keras.io/api/layers/normalization_layers/batch_normalization/",
    }

    def supports(self, case) -> str | None:
        return no_running_stats_variants(case, "Keras BatchNormalization") or super().supports(case)

    # -- worker side -----------------------------------------------------------
    def describe(self) -> dict:
        import keras

        fw = self.packages[1]
        return {"version": f"keras {keras.__version__} / {fw} {self.versions().get(fw, '?')}",
                "devices": self._devices()}

    def run(self, case, inputs: dict, device: str) -> dict:
        import keras
        import numpy as np

        assert keras.backend.backend() == self.keras_backend, keras.backend.backend()
        layer = keras.layers.BatchNormalization(
            axis=1 if case.channel_axis == 1 else -1,
            momentum=case.momentum,
            epsilon=case.eps,
            center=case.affine,
            scale=case.affine,
            dtype=case.dtype,
        )
        with self._device_scope(device):
            layer.build(case.array_shape)
            for name, var in (("gamma", "gamma"), ("beta", "beta"),
                              ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
                if name in inputs:
                    getattr(layer, var).assign(inputs[name])
            axes = tuple(a for a in range(case.rank) if a != case.channel_axis)
            out: dict = {}
            for k, step in enumerate(case.steps):
                training = step != "eval"
                x, dy = inputs[f"x{k}"], inputs[f"dy{k}"]
                if training:
                    xt = keras.ops.cast(self._tensor(x, device), keras.backend.result_type(case.dtype, "float32"))
                    mean, var = keras.ops.moments(xt, axes=axes)
                    out[f"{step}.batch_mean"] = keras.ops.convert_to_numpy(mean)
                    out[f"{step}.batch_var"] = keras.ops.convert_to_numpy(var)
                y, grads = self._forward_backward(layer, x, dy, training, case.gradients, device)
                out[f"{step}.y"] = np.asarray(y).astype(x.dtype)
                if training:
                    out[f"{step}.running_mean"] = keras.ops.convert_to_numpy(layer.moving_mean.value).astype(x.dtype)
                    out[f"{step}.running_var"] = keras.ops.convert_to_numpy(layer.moving_variance.value).astype(x.dtype)
                for name, g in grads.items():
                    if name == "dx" or case.affine:
                        out[f"{step}.{name}"] = np.asarray(g).astype(x.dtype)
        return out

    # Hooks per Keras backend.
    def _devices(self) -> dict:
        return {"cpu": cpu_name()}

    def _device_scope(self, device):
        import keras

        return keras.device(keras_device(device))

    def _tensor(self, a, device):
        import keras

        return keras.ops.convert_to_tensor(a)

    def _forward_backward(self, layer, x, dy, training, gradients, device):
        raise NotImplementedError


class KerasTensorFlow(_KerasBackend):
    name = "keras-tensorflow"
    keras_backend = "tensorflow"
    packages = ("keras", "tensorflow", "numpy")
    modules = ("keras", "tensorflow")
    worker_env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}

    def _devices(self) -> dict:
        return tensorflow_devices()

    def _forward_backward(self, layer, x, dy, training, gradients, device):
        import tensorflow as tf

        xt = tf.constant(x)
        params = [v.value for v in (getattr(layer, "gamma", None), getattr(layer, "beta", None)) if v is not None]
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=training)
        if not gradients:
            return y.numpy(), {}
        g = tape.gradient(y, [xt, *params], output_gradients=tf.constant(dy))
        grads = {"dx": g[0].numpy()}
        if params:
            grads.update(dgamma=g[1].numpy(), dbeta=g[2].numpy())
        return y.numpy(), grads


class KerasJax(_KerasBackend):
    name = "keras-jax"
    keras_backend = "jax"
    packages = ("keras", "jax", "jaxlib", "numpy")
    modules = ("keras", "jax")
    worker_env = {"KERAS_BACKEND": "jax", **JAX_WORKER_ENV}

    def _devices(self) -> dict:
        return jax_devices()

    def _tensor(self, a, device):
        import jax

        return jax.device_put(a, jax.devices("gpu" if device == "cuda" else "cpu")[0])

    def _forward_backward(self, layer, x, dy, training, gradients, device):
        import jax

        xt = self._tensor(x, device)
        trainable = [v.value for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]

        def f(x, trainable):
            return layer.stateless_call(trainable, frozen, x, training=training)

        y, vjp, new_frozen = jax.vjp(f, xt, trainable, has_aux=True)
        for var, value in zip(layer.non_trainable_variables, new_frozen):
            var.assign(value)
        if not gradients:
            return y, {}
        dx, dtrain = vjp(self._tensor(dy, device))
        grads = {"dx": dx}
        names = [v.name for v in layer.trainable_variables]
        for n, g in zip(names, dtrain):
            grads["dgamma" if n == "gamma" else "dbeta"] = g
        return y, grads


class KerasTorch(_KerasBackend):
    name = "keras-torch"
    keras_backend = "torch"
    packages = ("keras", "torch", "numpy")
    modules = ("keras", "torch")
    worker_env = {"KERAS_BACKEND": "torch"}

    def _devices(self) -> dict:
        from .torch_backend import torch_devices

        return torch_devices()

    def _tensor(self, a, device):
        import torch

        from .torch_backend import _to_torch

        return _to_torch(torch, a, device)

    def _forward_backward(self, layer, x, dy, training, gradients, device):
        import torch

        from .torch_backend import _to_numpy

        # stateless_call with our own leaf tensors: autograd then reports the
        # gradients of exactly the values the layer used.
        xt = self._tensor(x, device).requires_grad_(gradients)
        trainable = [v.value.detach().clone().requires_grad_(gradients) for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]
        y, new_frozen = layer.stateless_call(trainable, frozen, xt, training=training)
        for var, value in zip(layer.non_trainable_variables, new_frozen):
            var.assign(value)
        if not gradients:
            return _to_numpy(torch, y), {}
        leaves = [xt, *trainable]
        g = torch.autograd.grad(y, leaves, self._tensor(dy, device))
        grads = {"dx": _to_numpy(torch, g[0])}
        for var, gv in zip(layer.trainable_variables, g[1:]):
            grads["dgamma" if var.name == "gamma" else "dbeta"] = _to_numpy(torch, gv)
        return _to_numpy(torch, y), grads
