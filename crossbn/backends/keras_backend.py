"""Keras 3 `layers.BatchNormalization` on each of its backends.

Keras fixes its backend when it is first imported (KERAS_BACKEND), so each of `keras-tensorflow`, `keras-jax` and
`keras-torch` is its own backend with its own worker process (`keras-jax-jit` runs keras-jax's layer under
jax.jit). The layer is the same; only the gradient machinery differs (GradientTape, jax.vjp over `stateless_call`,
torch autograd).

Translation from the canonical case: momentum and eps pass through unchanged (Keras shares crossbn's momentum
convention); `axis` is 1 or -1 from the layout; affine off is center=False, scale=False; the layer dtype policy is
the case dtype. Keras has no cumulative average and no track_running_stats=False: those cases are unsupported, not
approximated.

Intermediates: in training the layer calls `keras.ops.moments` on the input upcast to at least float32; the
adapter calls the same op on the same tensor to expose the batch mean and variance.
"""

from __future__ import annotations

from crossbn.backends.base import Backend
from crossbn.backends.devinfo import (
    JAX_WORKER_ENV,
    cpu_name,
    jax_devices,
    keras_device,
    no_running_stats_variants,
    tensorflow_devices,
)
from crossbn.spec.subset import PER_STRATUM


class _KerasBackend(Backend):
    keras_backend: str = ""
    extra = "keras"
    model_framework = "keras"  # crossbn/backends/networks/keras.py
    devices = ("cpu", "cuda")
    conventions = {
        "momentum": "old",
        "running_var": "biased",
        "default_eps": "1e-3",
        "channel_axis": "any",
        # "setting trainable = False on the layer means that the layer will be subsequently run
        # in inference mode" (the layer's docstring; call() normalizes with the batch statistics
        # only `if training and self.trainable`)
        "frozen": "inference",
        "doc": "https://keras.io/api/layers/normalization_layers/batch_normalization/",
    }
    no_frozen = None

    def supports(self, case) -> str | None:
        return no_running_stats_variants(case, "Keras BatchNormalization") or super().supports(case)

    # -- worker side -----------------------------------------------------------
    def describe(self) -> dict:
        import keras

        fw = self.packages[1]
        return {
            "version": f"keras {keras.__version__} / {fw} {self.versions().get(fw, '?')}",
            "devices": self._devices(),
        }

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
            if case.frozen:  # as fine-tuning freezes it (before the values are assigned: on torch,
                layer.trainable = False  # the flag is requires_grad, settable on leaf tensors only)
            for name, var in (
                ("gamma", "gamma"),
                ("beta", "beta"),
                ("running_mean", "moving_mean"),
                ("running_var", "moving_variance"),
            ):
                if name in inputs:
                    getattr(layer, var).assign(inputs[name])
            out: dict = {}
            self._steps = {}  # a compiled step per mode (train, eval), for this case's layer only
            for k, step in enumerate(case.steps):
                training = step != "eval"
                x, dy = inputs[f"x{k}"], inputs[f"dy{k}"]
                stats, y, grads = self._step(layer, case, x, dy, training, device)
                out.update({f"{step}.{name}": keras.ops.convert_to_numpy(v) for name, v in stats.items()})
                out[f"{step}.y"] = np.asarray(y).astype(x.dtype)
                if training:
                    out[f"{step}.running_mean"] = keras.ops.convert_to_numpy(layer.moving_mean.value).astype(x.dtype)
                    out[f"{step}.running_var"] = keras.ops.convert_to_numpy(layer.moving_variance.value).astype(x.dtype)
                for name, g in grads.items():
                    if name == "dx" or case.affine:
                        out[f"{step}.{name}"] = np.asarray(g).astype(x.dtype)
        return out

    @staticmethod
    def _moments(case, xt) -> dict:
        """The batch statistics as the layer computes them in training: keras.ops.moments
        of the input upcast to at least float32."""
        import keras

        axes = tuple(a for a in range(case.rank) if a != case.channel_axis)
        mean, var = keras.ops.moments(keras.ops.cast(xt, keras.backend.result_type(case.dtype, "float32")), axes=axes)
        return {"batch_mean": mean, "batch_var": var}

    def _step(self, layer, case, x, dy, training, device):
        """({intermediate: tensor}, y, {gradient: array}) of one step, eagerly;
        the compiled backends run the whole step compiled instead."""
        stats = self._moments(case, self._tensor(x, device)) if training and layer.trainable else {}
        y, grads = self._forward_backward(layer, x, dy, training, case.gradients, device)
        return stats, y, grads

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

    def _step(self, layer, case, x, dy, training, device):
        import tensorflow as tf

        if training not in self._steps:
            self._steps[training] = self._compile(tf, self._tf_step(layer, case, training))
        stats, y, grads = self._steps[training](tf.constant(x), tf.constant(dy))
        return stats, y.numpy(), {name: g.numpy() for name, g in grads.items()}

    def _compile(self, tf, step):
        """The step as it runs: eagerly here; under XLA in tf_xla_backend.py."""
        return step

    def _tf_step(self, layer, case, training):
        import tensorflow as tf

        params = [v.value for v in layer.trainable_variables]  # gamma, beta; none when frozen

        def step(xt, dyt):
            stats = self._moments(case, xt) if training and layer.trainable else {}
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = layer(xt, training=training)
            grads = {}
            if case.gradients:
                g = tape.gradient(y, [xt, *params], output_gradients=dyt)
                grads["dx"] = g[0]
                if params:
                    grads.update(dgamma=g[1], dbeta=g[2])
            return stats, y, grads

        return step


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

    def _step(self, layer, case, x, dy, training, device):
        if training not in self._steps:
            self._steps[training] = self._jit(self._jax_step(layer, case, training))
        trainable = [v.value for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]
        stats, y, new_frozen, g = self._steps[training](
            self._tensor(x, device), self._tensor(dy, device), trainable, frozen
        )
        for var, value in zip(layer.non_trainable_variables, new_frozen):
            var.assign(value)
        grads = {}
        if g is not None:
            dx, dtrain = g
            grads["dx"] = dx
            for var, gv in zip(layer.trainable_variables, dtrain):
                grads["dgamma" if var.name == "gamma" else "dbeta"] = gv
        return stats, y, grads

    @staticmethod
    def _jit(step):
        """The step as it runs: eagerly here; under jax.jit in keras-jax-jit."""
        return step

    def _jax_step(self, layer, case, training):
        import jax

        def step(xt, dyt, trainable, frozen):
            stats = self._moments(case, xt) if training and layer.trainable else {}

            def f(x, trainable):
                return layer.stateless_call(trainable, frozen, x, training=training)

            y, vjp, new_frozen = jax.vjp(f, xt, trainable, has_aux=True)
            return stats, y, new_frozen, (vjp(dyt) if case.gradients else None)

        return step


class KerasJaxJit(KerasJax):
    """Keras 3 on JAX as its trainer runs it: the layer's stateless call (and
    its vjp) inside jax.jit, one compiled step per mode; the same layer,
    conventions and translation as keras-jax. Compiles per case: runs the
    stratified subset of a suite (crossbn/spec/subset.py)."""

    name = "keras-jax-jit"
    subset = PER_STRATUM
    model_framework = None
    no_models = (
        "its network adapter runs eagerly; the jitted path is judged on the BatchNorm suite, not yet on networks"
    )

    @staticmethod
    def _jit(step):
        import jax

        return jax.jit(step)

    def describe(self) -> dict:
        out = super().describe()
        return {**out, "version": out["version"] + " (jax.jit)"}


class KerasTorch(_KerasBackend):
    name = "keras-torch"
    keras_backend = "torch"
    packages = ("keras", "torch", "numpy")
    modules = ("keras", "torch")
    worker_env = {"KERAS_BACKEND": "torch"}

    def _devices(self) -> dict:
        from crossbn.backends.torch_backend import torch_devices

        return torch_devices()

    def _tensor(self, a, device):
        import torch

        from crossbn.backends.torch_backend import to_torch

        return to_torch(torch, a, device)

    def _forward_backward(self, layer, x, dy, training, gradients, device):
        import torch

        from crossbn.backends.torch_backend import torch_to_numpy

        # stateless_call with our own leaf tensors: autograd then reports the
        # gradients of exactly the values the layer used.
        xt = self._tensor(x, device).requires_grad_(gradients)
        trainable = [v.value.detach().clone().requires_grad_(gradients) for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]
        y, new_frozen = layer.stateless_call(trainable, frozen, xt, training=training)
        for var, value in zip(layer.non_trainable_variables, new_frozen):
            var.assign(value)
        if not gradients:
            return torch_to_numpy(torch, y), {}
        leaves = [xt, *trainable]
        g = torch.autograd.grad(y, leaves, self._tensor(dy, device))
        grads = {"dx": torch_to_numpy(torch, g[0])}
        for var, gv in zip(layer.trainable_variables, g[1:]):
            grads["dgamma" if var.name == "gamma" else "dbeta"] = torch_to_numpy(torch, gv)
        return torch_to_numpy(torch, y), grads
