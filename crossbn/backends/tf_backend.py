"""TensorFlow's own BatchNorm ops, tf.nn and FusedBatchNormV3, and the driver the Keras 2 layers share with them.

- `tf-nn`: `tf.nn.moments` + `tf.nn.batch_normalization` in the case dtype, as a user writes them, the running
  statistics updated by the canonical `momentum * running + (1 - momentum) * batch` in TF ops (biased variance).
- `tf-fused-op`: `tf.raw_ops.FusedBatchNormV3` directly, with `exponential_avg_factor = 1 - momentum`; float32
  scale, offset and statistics for every x dtype; 4-D/5-D input (rank 2 and 3 are reshaped to 4-D); the kernel
  applies Bessel's correction to the running variance; no float64.

`TfOpsBackend` is the driver the Keras 2 layers (`tf_keras_backend.py`) share: every step runs eagerly, gradients
by `tf.GradientTape` with the case's dy as output gradient (dx, and dgamma/dbeta when the case is affine).

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

from crossbn.backends.base import Backend
from crossbn.backends.devinfo import no_running_stats_variants, tensorflow_devices

FUSED_DTYPES = ("float32", "float16", "bfloat16")
FUSED_FLOAT64 = "FusedBatchNormV3 has no float64 kernel (its T is half, bfloat16 or float)"


def tf_data_format(rank: int, channels_last: bool) -> str:
    return {(4, False): "NCHW", (4, True): "NHWC", (5, False): "NCDHW", (5, True): "NDHWC"}[(rank, channels_last)]


def _fused_shape(case) -> tuple[tuple[int, ...], str]:
    """The 4-D/5-D shape (a reshape of the stored array) and data format the
    fused op sees."""
    shape = case.array_shape
    if case.rank == 2:  # (N, C)
        return (shape[0], 1, 1, shape[1]), "NHWC"
    if case.rank == 3:
        if case.channel_axis == 1:  # (N, C, L)
            return (*shape, 1), "NCHW"
        return (shape[0], shape[1], 1, shape[2]), "NHWC"  # (N, L, C)
    return shape, tf_data_format(case.rank, case.channel_axis != 1)


class TfOpsBackend(Backend):
    """Shared driver: device scope, steps, GradientTape, conversion of the
    observables to the case dtype and stored layout. Subclasses build their
    state (`_setup`) and run one forward pass (`_forward`)."""

    packages = ("tensorflow", "numpy")
    modules = ("tensorflow",)
    extra = "tensorflow"
    devices = ("cpu", "cuda")
    worker_env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    # Whether the case's track_running_stats=False is expressible.
    batch_stats_only: bool = False
    model_framework = "tf"  # crossbn/backends/networks/tf.py: the network in TF ops, BN as this backend's op
    no_frozen = (
        "a raw op has no layer to freeze: the caller chooses the statistics (training or not), "
        "and those choices are the training and eval steps"
    )

    def supports(self, case) -> str | None:
        why = no_running_stats_variants(case, self.name)
        if why and (case.cumulative or not self.batch_stats_only):
            return why
        return super().supports(case)

    # -- worker side -----------------------------------------------------------
    def describe(self) -> dict:
        import tensorflow as tf

        return {"version": self._version(tf), "devices": self._devices()}

    def _version(self, tf) -> str:
        return f"tensorflow {tf.__version__}"

    def _devices(self) -> dict:
        return tensorflow_devices()

    def run(self, case, inputs: dict, device: str) -> dict:
        import numpy as np
        import tensorflow as tf

        dt = inputs["x0"].dtype

        def numpy(t):  # rounded once to the case dtype (past its range: ±Inf, as it must)
            with np.errstate(over="ignore"):
                return np.asarray(t.numpy()).astype(dt)

        out: dict = {}
        with tf.device("/GPU:0" if device == "cuda" else "/CPU:0"):
            state = self._setup(tf, case, inputs, device)

            def one_step(x, dy, running, training):
                # the running statistics go in and come out as arguments, so a
                # compiled step (tf_xla_backend.py) sees each step's own
                local = dict(state) if running is None else {**state, "running": running}
                params = self._params(local) if case.affine else []
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y, stats = self._forward(tf, case, local, x, training)
                grads = tape.gradient(y, [x, *params], output_gradients=dy) if case.gradients else []
                return y, stats, self._running(local), grads

            step_fn = self._compile(tf, one_step)
            for k, step in enumerate(case.steps):
                training = step != "eval"
                y, stats, running, g = step_fn(
                    tf.constant(inputs[f"x{k}"]), tf.constant(inputs[f"dy{k}"]), state.get("running"), training
                )
                if running is not None:
                    state["running"] = running
                out[f"{step}.y"] = numpy(y)
                if training:
                    # intermediates keep the dtype they were computed in
                    out.update({f"{step}.{n}": np.asarray(v.numpy()) for n, v in stats.items()})
                    if running is not None:
                        out[f"{step}.running_mean"], out[f"{step}.running_var"] = map(numpy, running)
                if case.gradients:
                    out[f"{step}.dx"] = numpy(g[0])
                    if len(g) == 3:  # gamma and beta watched: affine, and not frozen
                        out[f"{step}.dgamma"], out[f"{step}.dbeta"] = numpy(g[1]), numpy(g[2])
        return out

    def _compile(self, tf, step):
        """The step as it runs: eagerly here; under XLA in tf_xla_backend.py."""
        return step

    @staticmethod
    def _axes(case) -> list[int]:
        return [a for a in range(case.rank) if a != case.channel_axis]

    # Hooks.
    def _setup(self, tf, case, inputs, device):
        raise NotImplementedError

    def _params(self, state) -> list:
        """[gamma, beta] as watched variables (affine cases)."""
        raise NotImplementedError

    def _forward(self, tf, case, state, x, training):
        """(y, {intermediate: tensor}) for one step; updates the running state."""
        raise NotImplementedError

    def _running(self, state):
        """(running_mean, running_var) after the step, or None."""
        raise NotImplementedError


def fused_batch_stats(tf, x, data_format, device) -> dict:
    """The batch mean (reserve_space_1) and, on CPU, the biased batch variance
    (reserve_space_2) as FusedBatchNormV3 computes them; float32."""
    c = x.shape[1 if data_format.startswith("NC") else -1]
    r = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=tf.ones([c], tf.float32),
        offset=tf.zeros([c], tf.float32),
        mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32),
        epsilon=0.0,
        exponential_avg_factor=1.0,
        data_format=data_format,
        is_training=True,
    )
    return _reserve_stats(r, device)


def _reserve_stats(r, device) -> dict:
    """The intermediates in a training-mode FusedBatchNormV3 result. None for
    an empty input: the kernel then sets its running-statistics outputs to
    NaN and returns ("If input is empty, return NaN mean/variance",
    fused_batch_norm_op.cc) without writing the reserve spaces, which hold
    whatever the allocator left there."""
    if r.y.shape.num_elements() == 0:
        return {}
    stats = {"batch_mean": r.reserve_space_1}
    if device == "cpu":  # cuDNN's reserve_space_2 is the inverse variance
        stats["batch_var"] = r.reserve_space_2
    return stats


# ---- tf.nn ----------------------------------------------------------------------
class TfNn(TfOpsBackend):
    name = "tf-nn"
    batch_stats_only = True
    conventions = {
        "momentum": "old",
        "running_var": "biased",
        "hyperparameters": "exact",
        "default_eps": "none (required)",
        "channel_axis": "any",
        "doc": "https://www.tensorflow.org/api_docs/python/tf/nn/batch_normalization",
    }

    def _setup(self, tf, case, inputs, device):
        state = {"shape": [case.channels if a == case.channel_axis else 1 for a in range(case.rank)]}
        for name in ("gamma", "beta"):
            if name in inputs:
                state[name] = tf.Variable(inputs[name])
        if case.track_running_stats:
            state["running"] = (tf.constant(inputs["running_mean"]), tf.constant(inputs["running_var"]))
        return state

    def _params(self, state) -> list:
        return [state["gamma"], state["beta"]]

    def _forward(self, tf, case, state, x, training):
        stats = {}
        if training or "running" not in state:
            mean, var = tf.nn.moments(x, self._axes(case))
            if training:
                stats = {"batch_mean": mean, "batch_var": var}
                if "running" in state:
                    state["running"] = tuple(
                        self._update(tf, case, old, new) for old, new in zip(state["running"], (mean, var))
                    )
        else:
            mean, var = state["running"]

        def b(t):
            return None if t is None else tf.reshape(t, state["shape"])

        y = tf.nn.batch_normalization(x, b(mean), b(var), b(state.get("beta")), b(state.get("gamma")), case.eps)
        return y, stats

    @staticmethod
    def _update(tf, case, old, new):
        """momentum * old + (1 - momentum) * new, stored in the case dtype. The
        adapter's own arithmetic (tf.nn has no running statistics), so for
        half dtypes it runs in float32: a momentum rounded to bfloat16 (0.9 ->
        0.8984) would otherwise be charged to TensorFlow."""
        dt = tf.float32 if old.dtype in (tf.float16, tf.bfloat16) else old.dtype
        m = tf.constant(case.momentum, dt)
        mixed = m * tf.cast(old, dt) + tf.constant(1.0 - case.momentum, dt) * tf.cast(tf.stop_gradient(new), dt)
        return tf.cast(mixed, old.dtype)

    def _running(self, state):
        return state.get("running")


# ---- FusedBatchNormV3 -------------------------------------------------------------
class TfFusedOp(TfOpsBackend):
    name = "tf-fused-op"
    batch_stats_only = True
    dtypes = FUSED_DTYPES
    conventions = {
        "momentum": "new",
        "running_var": "unbiased",
        "hyperparameters": "float32",
        "default_eps": "1e-4",
        "channel_axis": "any",
        "doc": "https://www.tensorflow.org/api_docs/python/tf/raw_ops/FusedBatchNormV3",
    }

    def supports(self, case) -> str | None:
        if case.dtype == "float64":
            return f"tf.raw_ops.FusedBatchNormV3: {FUSED_FLOAT64}"
        return super().supports(case)

    def _setup(self, tf, case, inputs, device):
        f32 = lambda a: tf.constant(a.astype("float32"))
        c = case.channels
        shape, fmt = _fused_shape(case)
        state = {
            "shape4": shape,
            "format": fmt,
            "device": device,
            "scale": tf.ones([c], tf.float32),
            "offset": tf.zeros([c], tf.float32),
        }
        if case.affine:
            state["scale"], state["offset"] = tf.Variable(f32(inputs["gamma"])), tf.Variable(f32(inputs["beta"]))
        if case.track_running_stats:
            state["running"] = (f32(inputs["running_mean"]), f32(inputs["running_var"]))
        return state

    def _params(self, state) -> list:
        return [state["scale"], state["offset"]]

    def _forward(self, tf, case, state, x, training):
        running = state.get("running")
        if running is None:  # track_running_stats=False: batch statistics, no state
            mean = var = tf.constant([], tf.float32)
            is_training, factor = True, 1.0
        else:
            (mean, var), is_training = running, training
            factor = 1.0 - case.momentum if training else 1.0
        r = tf.raw_ops.FusedBatchNormV3(
            x=tf.reshape(x, state["shape4"]),
            scale=state["scale"],
            offset=state["offset"],
            mean=mean,
            variance=var,
            epsilon=case.eps,
            exponential_avg_factor=factor,
            data_format=state["format"],
            is_training=is_training,
        )
        stats = {}
        if training:
            stats = _reserve_stats(r, state["device"])
            if running is not None:
                state["running"] = (r.batch_mean, r.batch_variance)
        return tf.reshape(r.y, case.array_shape), stats

    def _running(self, state):
        return state.get("running")
