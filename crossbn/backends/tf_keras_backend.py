"""Keras 2 BatchNormalization through the `tf_keras` package, unfused and fused.

`tf.keras` is Keras 3 in TensorFlow >= 2.16 (that is `keras-tensorflow`); Keras 2 lives on as the `tf_keras`
package, imported directly here. The driver (steps, GradientTape, outputs) is `tf_backend.TfOpsBackend`.

- `tf-keras`: `tf_keras.layers.BatchNormalization(fused=False)`; its running variance is fed the BIASED batch
  variance.
- `tf-keras-fused`: the same layer with `fused=True` (FusedBatchNormV3); its running variance is fed the UNBIASED
  batch variance. What it cannot fuse, or would silently run unfused, is unsupported.

The layers always keep running statistics (no track_running_stats=False) and have no cumulative average.
Default eps 1e-3.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

from crossbn.backends.base import Unsupported
from crossbn.backends.tf_backend import FUSED_DTYPES, FUSED_FLOAT64, TfOpsBackend, fused_batch_stats, tf_data_format


# ---- Keras 2 ------------------------------------------------------------------
class _TfKerasLayer(TfOpsBackend):
    fused: bool = False
    model_framework = "tf_keras"  # crossbn/backends/networks/keras.py, with the tf_keras module
    packages = ("tf_keras", "tensorflow", "numpy")
    modules = ("tf_keras", "tensorflow")
    extra = "tf-keras"
    # trainable = False: tf.keras then runs the layer in inference mode ("When the
    # layer is not trainable, it overrides the value passed from model",
    # BatchNormalizationBase._get_training_value)
    no_frozen = None

    def _version(self, tf) -> str:
        import tf_keras

        return f"tf_keras {tf_keras.__version__} / tensorflow {tf.__version__}"

    def _setup(self, tf, case, inputs, device):
        import tf_keras

        try:
            layer = tf_keras.layers.BatchNormalization(
                axis=1 if case.channel_axis == 1 else -1,
                momentum=case.momentum,
                epsilon=case.eps,
                center=case.affine,
                scale=case.affine,
                fused=self.fused,
                dtype=case.dtype,
            )
            layer.build(case.array_shape)
        except ValueError as e:
            if self.fused:  # the documented refusal of fused=True
                raise Unsupported(f"tf_keras BatchNormalization(fused=True) refuses the case: {e}") from e
            raise
        layer.trainable = not case.frozen
        if bool(layer.fused) != self.fused:
            raise Unsupported(
                f"tf_keras built the layer with fused={layer.fused!r} for shape "
                f"{case.array_shape} (silent fallback), not the fused={self.fused} path"
            )
        for name, var in (
            ("gamma", "gamma"),
            ("beta", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        ):
            if name in inputs:
                getattr(layer, var).assign(inputs[name].astype(getattr(layer, var).dtype.as_numpy_dtype))
        return {"layer": layer, "device": device}

    def _params(self, state) -> list:
        layer = state["layer"]
        return [layer.gamma, layer.beta] if layer.trainable else []  # a frozen layer's get no gradient

    def _forward(self, tf, case, state, x, training):
        layer = state["layer"]
        # the statistics the layer computes: none when frozen (it runs as inference)
        stats = self._stats(tf, case, layer, x, state["device"]) if training and layer.trainable else {}
        return layer(x, training=training), stats

    def _stats(self, tf, case, layer, x, device) -> dict:
        raise NotImplementedError

    def _running(self, state):
        return state["layer"].moving_mean, state["layer"].moving_variance


class TfKeras(_TfKerasLayer):
    name = "tf-keras"
    fused = False
    conventions = {
        "momentum": "old",
        "running_var": "biased",
        "hyperparameters": "exact",
        "default_eps": "1e-3",
        "channel_axis": "any",
        "frozen": "inference",
        "doc": "https://www.tensorflow.org/versions/r2.15/api_docs/python/tf/keras/layers/BatchNormalization",
    }

    def _stats(self, tf, case, layer, x, device) -> dict:
        # the layer reduces tf.cast(inputs, param dtype) with tf.nn.moments
        mean, var = tf.nn.moments(tf.cast(x, layer.moving_mean.dtype), self._axes(case))
        return {"batch_mean": mean, "batch_var": var}


class TfKerasFused(_TfKerasLayer):
    name = "tf-keras-fused"
    fused = True
    dtypes = FUSED_DTYPES
    conventions = {
        "momentum": "old",
        "running_var": "unbiased",
        "hyperparameters": "float32",
        "default_eps": "1e-3",
        "channel_axis": "any",
        "frozen": "inference",
        # _fused_batch_norm: "the variance computed by fused batch norm is with Bessel's correction"
        "doc": "https://github.com/keras-team/tf-keras/blob/master/tf_keras/layers/normalization/"
        "batch_normalization.py",
    }

    def supports(self, case) -> str | None:
        if case.dtype == "float64":
            return (
                "tf_keras BatchNormalization(fused=True) raises ValueError: only supported when the "
                f"compute dtype is float16, bfloat16, or float32 ({FUSED_FLOAT64})"
            )
        if case.rank not in (4, 5):
            return (
                "tf_keras BatchNormalization(fused=True) raises ValueError: only 4D or 5D input "
                f"tensors (rank {case.rank})"
            )
        return super().supports(case)

    def _stats(self, tf, case, layer, x, device) -> dict:
        return fused_batch_stats(tf, x, tf_data_format(case.rank, case.channel_axis != 1), device)
