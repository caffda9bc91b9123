"""Flax `linen.BatchNorm` and `nnx.BatchNorm`, each eager and under jit.

Four backends, four worker processes: `flax-linen` and `flax-nnx` run the layer op by op (JAX's eager dispatch);
`flax-linen-jit` and `flax-nnx-jit` run the very same step function under `jax.jit` / `nnx.jit`. One training or
eval step is one function: forward, the updated running statistics and, with `case.gradients`, the VJP for dy.

momentum and eps pass through unchanged (Flax's momentum is crossbn's convention); the running statistics are
handed to Flax in the dtype Flax allocates them in (float32; float64 for float64 cases). The switches
`flax.use_fast_variance` and `flax.force_float32_reductions` go to the constructor. Cumulative averages and
track_running_stats=False are unsupported. float64 needs 64-bit JAX: the worker runs with JAX_ENABLE_X64=1.

Design notes: docs/internals/backends.md.
"""

from __future__ import annotations

from crossbn.backends.base import Backend, Unsupported
from crossbn.backends.devinfo import JAX_WORKER_ENV, jax_devices, no_running_stats_variants

# case switch -> constructor argument
_SWITCHES = {
    "flax.use_fast_variance": "use_fast_variance",
    "flax.force_float32_reductions": "force_float32_reductions",
}


class _FlaxBackend(Backend):
    packages = ("flax", "jax", "jaxlib", "numpy")
    modules = ("flax", "jax")
    extra = "flax"
    devices = ("cpu", "cuda")
    option_family = "flax"
    worker_env = JAX_WORKER_ENV
    model_framework = "flax"  # crossbn/backends/networks/flax.py (linen, or nnx for FlaxNnx)
    no_frozen = (
        "Flax has no frozen layer: parameters are frozen by the optimizer (optax.multi_transform, "
        "nnx.Optimizer's wrt filter), which the BatchNorm module never sees; the module's one switch, "
        "use_running_average, is what the eval step runs"
    )
    conventions = {
        "momentum": "old",
        "running_var": "biased",
        "hyperparameters": "exact",
        "default_eps": "1e-5",
        "channel_axis": "any",
        # use_fast_variance=True (default): "a faster, but less numerically stable, calculation for the
        # variance"; force_float32_reductions=True (default): statistics of half inputs in float32
        "variance": "one-pass",
        "half_reductions": "float32",
        "doc": "https://flax.readthedocs.io/en/latest/api_reference/flax.linen/layers.html#flax.linen.BatchNorm",
    }
    jit: bool = False

    def supports(self, case) -> str | None:
        return no_running_stats_variants(case, "Flax BatchNorm") or super().supports(case)

    # -- worker side -----------------------------------------------------------
    def describe(self) -> dict:
        import flax
        import jax

        mode = "jit" if self.jit else "eager"
        return {
            "version": f"flax {flax.__version__} / jax {jax.__version__} "
            f"/ jaxlib {self.versions().get('jaxlib', '?')} ({mode})",
            "devices": jax_devices(),
        }

    def run(self, case, inputs: dict, device: str) -> dict:
        import jax
        import numpy as np

        from crossbn.spec.dtypes import numpy_dtype

        if case.dtype == "float64" and not jax.config.jax_enable_x64:
            raise RuntimeError("float64 case in a worker without JAX_ENABLE_X64=1: JAX would compute in float32")
        dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        dt = numpy_dtype(case.dtype)
        switches = self._switches(case)
        out: dict = {}
        with jax.default_device(dev):
            put = lambda a: jax.device_put(a, dev)
            state = self._init(case, inputs, switches, put)
            for k, step in enumerate(case.steps):
                training = step != "eval"
                x, dy = put(inputs[f"x{k}"]), put(inputs[f"dy{k}"])
                res = self._step(case, switches, state, x, dy, training)
                out[f"{step}.y"] = np.asarray(res["y"]).astype(dt)
                if training:
                    out[f"{step}.batch_mean"] = np.asarray(res["batch_mean"])
                    out[f"{step}.batch_var"] = np.asarray(res["batch_var"])
                    out[f"{step}.running_mean"] = np.asarray(res["running_mean"]).astype(dt)
                    out[f"{step}.running_var"] = np.asarray(res["running_var"]).astype(dt)
                if case.gradients:
                    out[f"{step}.dx"] = np.asarray(res["dx"]).astype(dt)
                    if case.affine:
                        out[f"{step}.dgamma"] = np.asarray(res["dgamma"]).astype(dt)
                        out[f"{step}.dbeta"] = np.asarray(res["dbeta"]).astype(dt)
        return out

    def _switches(self, case) -> dict:
        """Constructor kwargs for the case's flax switches; Unsupported for a
        switch set off its default that the installed constructor lacks."""
        import inspect

        from crossbn.spec.case import OPTIONS

        cls = self._constructor()
        # linen modules are dataclasses (fields in the class signature); nnx
        # modules take them in __init__ (the metaclass hides it from the class's)
        params = {**inspect.signature(cls.__init__).parameters, **inspect.signature(cls).parameters}
        kwargs = {}
        for name, arg in _SWITCHES.items():
            value = case.option(name)
            if arg in params:
                kwargs[arg] = value
            elif value != OPTIONS[name]:
                import flax

                raise Unsupported(
                    f"{cls.__module__}.{cls.__qualname__} in flax {flax.__version__} has no "
                    f"'{arg}' argument (the case sets {name} = {value})"
                )
        return kwargs

    # Hooks per API.
    def _constructor(self):
        raise NotImplementedError

    def _init(self, case, inputs, switches, put):
        raise NotImplementedError

    def _step(self, case, switches, state, x, dy, training) -> dict:
        raise NotImplementedError


def _stats_dtype(case, force_float32: bool):
    """The dtype Flax keeps the running statistics in (float64 kept wide)."""
    import jax.numpy as jnp

    return jnp.promote_types(case.dtype, jnp.float32) if force_float32 else jnp.dtype(case.dtype)


def _reduction_axes(case) -> tuple[int, ...]:
    return tuple(a for a in range(case.rank) if a != case.channel_axis)


# ---------------------------------------------------------------- linen ------
class FlaxLinen(_FlaxBackend):
    name = "flax-linen"

    def _constructor(self):
        from flax import linen

        return linen.BatchNorm

    def _init(self, case, inputs, switches, put):
        import jax.numpy as jnp

        sdt = _stats_dtype(case, switches.get("force_float32_reductions", True))
        params = {}
        if case.affine:
            params = {"scale": put(inputs["gamma"]), "bias": put(inputs["beta"])}
        stats = {
            "mean": put(jnp.asarray(inputs["running_mean"], sdt)),
            "var": put(jnp.asarray(inputs["running_var"], sdt)),
        }
        return {"params": params, "batch_stats": stats}

    def _step(self, case, switches, state, x, dy, training) -> dict:
        fn = _linen_step_fn(case, switches, training, case.gradients, self.jit)
        res = fn(state["params"], state["batch_stats"], x, dy)
        if training:
            state["batch_stats"] = {"mean": res["running_mean"], "var": res["running_var"]}
        return res


class FlaxLinenJit(FlaxLinen):
    name = "flax-linen-jit"
    jit = True


_LINEN_CACHE: dict = {}


def _linen_step_fn(case, switches, training, gradients, jit):
    """One step as a pure function (params, batch_stats, x, dy) -> dict,
    jitted when asked; cached per layer configuration (jax.jit's own cache
    then keys on shapes and dtypes)."""
    key = (
        case.channel_axis,
        case.momentum,
        case.eps,
        case.dtype,
        case.affine,
        tuple(sorted(switches.items())),
        training,
        gradients,
        jit,
    )
    if key in _LINEN_CACHE:
        return _LINEN_CACHE[key]
    import jax
    from flax import linen
    from flax.linen.normalization import _compute_stats

    bn = linen.BatchNorm(
        axis=case.channel_axis,
        momentum=case.momentum,
        epsilon=case.eps,
        dtype=case.dtype,
        param_dtype=case.dtype,
        use_bias=case.affine,
        use_scale=case.affine,
        **switches,
    )

    def step(params, batch_stats, x, dy):
        def forward(x, params):
            y, updates = bn.apply(
                {"params": params, "batch_stats": batch_stats},
                x,
                use_running_average=not training,
                mutable=["batch_stats"],
            )
            return y, updates.get("batch_stats", batch_stats)

        out = {}
        if gradients:
            y, vjp, new_stats = jax.vjp(forward, x, params, has_aux=True)
            dx, dparams = vjp(dy)
            out["dx"] = dx
            if params:
                out.update(dgamma=dparams["scale"], dbeta=dparams["bias"])
        else:
            y, new_stats = forward(x, params)
        out["y"] = y
        if training:
            out["running_mean"], out["running_var"] = new_stats["mean"], new_stats["var"]
            axes = tuple(a for a in range(x.ndim) if a != bn.axis)
            out["batch_mean"], out["batch_var"] = _compute_stats(
                x,
                axes,
                dtype=bn.dtype,
                use_fast_variance=bn.use_fast_variance,
                force_float32_reductions=bn.force_float32_reductions,
            )
        return out

    fn = jax.jit(step) if jit else step
    _LINEN_CACHE[key] = fn
    return fn


# ---------------------------------------------------------------- nnx --------
class FlaxNnx(_FlaxBackend):
    name = "flax-nnx"
    conventions = {
        **_FlaxBackend.conventions,
        "doc": "https://flax.readthedocs.io/en/latest/api_reference/flax.nnx/nn/normalization.html",
    }

    def _constructor(self):
        from flax import nnx

        return nnx.BatchNorm

    def _init(self, case, inputs, switches, put):
        import jax.numpy as jnp
        from flax import nnx

        layer = nnx.BatchNorm(
            case.channels,
            axis=case.channel_axis,
            momentum=case.momentum,
            epsilon=case.eps,
            dtype=case.dtype,
            param_dtype=case.dtype,
            use_bias=case.affine,
            use_scale=case.affine,
            rngs=nnx.Rngs(0),
            **switches,
        )
        if case.affine:
            layer.scale = nnx.Param(put(inputs["gamma"]))
            layer.bias = nnx.Param(put(inputs["beta"]))
        # nnx.BatchNorm allocates its statistics in float32 whatever the dtype
        sdt = _stats_dtype(case, True)
        layer.mean = nnx.BatchStat(put(jnp.asarray(inputs["running_mean"], sdt)))
        layer.var = nnx.BatchStat(put(jnp.asarray(inputs["running_var"], sdt)))
        return {"layer": layer}

    def _step(self, case, switches, state, x, dy, training) -> dict:
        fn = _nnx_step_fn(self.jit)
        return fn(state["layer"], x, dy, _reduction_axes(case), training, case.gradients)


class FlaxNnxJit(FlaxNnx):
    name = "flax-nnx-jit"
    jit = True


_NNX_CACHE: dict = {}


def _nnx_step(layer, x, dy, axes, training, gradients):
    """One step on an nnx.BatchNorm; updates the layer's BatchStat in place."""
    import jax
    from flax import nnx
    from flax.nnx.nn.normalization import _compute_stats

    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def forward(x, params, rest):
        m = nnx.merge(graphdef, params, rest)
        y = m(x, use_running_average=not training)
        return y, nnx.state(m, nnx.BatchStat)

    out = {}
    if gradients:
        y, vjp, new_stats = jax.vjp(forward, x, params, rest, has_aux=True)
        dx, dparams, _ = vjp(dy)
        out["dx"] = dx
        if layer.scale is not None:
            out.update(dgamma=dparams["scale"][...], dbeta=dparams["bias"][...])
    else:
        y, new_stats = forward(x, params, rest)
    out["y"] = y
    if training:
        nnx.update(layer, new_stats)
        out["running_mean"], out["running_var"] = layer.mean[...], layer.var[...]
        # the layer promotes x to its dtype before computing the statistics
        xs = x.astype(layer.dtype) if layer.dtype is not None else x
        out["batch_mean"], out["batch_var"] = _compute_stats(
            xs, axes, dtype=layer.dtype, use_fast_variance=layer.use_fast_variance
        )
    return out


def _nnx_step_fn(jit: bool):
    if jit not in _NNX_CACHE:
        from flax import nnx

        # nnx.jit keys its cache on the layer's graphdef (its static
        # configuration) and on the static arguments; shapes as jax.jit does.
        _NNX_CACHE[jit] = nnx.jit(_nnx_step, static_argnames=("axes", "training", "gradients")) if jit else _nnx_step
    return _NNX_CACHE[jit]
