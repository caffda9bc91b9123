"""A complete crossbn backend: BatchNorm written in NumPy, computed in float32.

Run it against the oracle:

    crossbn run --backend-module examples/numpy_backend.py --backends numpy-float32 --suite smoke

A backend is a `crossbn.backends.Backend` subclass with a `name`. The
controller uses only its cheap class attributes and `supports()`; `describe()`
and `run()` execute in the backend's own worker process, so a framework is
imported there (inside the methods), never at module level. `run()` gets the
case, its generated inputs (x0, dy0, x1, dy1, ..., gamma, beta, running_mean,
running_var: NumPy arrays in the case's stored layout and dtype) and the
device, and returns the observables it can produce, named "<step>.<name>",
in the stored layout; y, running statistics and gradients in the case dtype.
Steps are case.steps: "train0", "train1", ..., then "eval". Anything it cannot
express is `Unsupported("why")`; an exception, a crash or a hang becomes a
verdict, never a crashed run.

To ship a backend as a package instead, register the class in its
pyproject.toml, exactly as crossbn registers its own:

    [project.entry-points."crossbn.backends"]
    numpy-float32 = "my_package.numpy_backend:NumpyFloat32"
"""

from __future__ import annotations

from crossbn.backends import Backend, Unsupported


class NumpyFloat32(Backend):
    name = "numpy-float32"
    packages = ("numpy",)  # versions recorded with every result
    modules = ("numpy",)  # must be importable, or every case says so
    devices = ("cpu",)
    dtypes = ("float32", "float16", "bfloat16")  # computes in float32: a float64 case would deviate
    conventions = {  # the documented semantics (README table, issue 4's checks)
        "momentum": "old",
        "running_var": "biased",
        "default_eps": "1e-5",
        "channel_axis": "any",
        "doc": "examples/numpy_backend.py",
    }

    def supports(self, case) -> str | None:
        if case.cumulative:
            return "no cumulative-average running statistics"
        return super().supports(case)  # dtypes

    def describe(self) -> dict:
        import numpy as np

        return {"version": np.__version__, "devices": {"cpu": "NumPy"}}

    def run(self, case, inputs: dict, device: str) -> dict:
        import numpy as np

        f32 = np.float32
        axes = tuple(a for a in range(case.rank) if a != case.channel_axis)
        shape = [1] * case.rank
        shape[case.channel_axis] = case.channels
        n = case.reduction_size
        if n == 1 and case.train_steps:
            raise Unsupported("one value per channel: the batch variance is 0/0 here")
        gamma = inputs["gamma"].astype(f32) if case.affine else np.ones(case.channels, f32)
        beta = inputs["beta"].astype(f32) if case.affine else np.zeros(case.channels, f32)
        if case.track_running_stats:  # otherwise there are no running statistics at all
            running_mean = inputs["running_mean"].astype(f32)
            running_var = inputs["running_var"].astype(f32)
        m, eps = f32(case.momentum), f32(case.eps)
        out = {}
        for k, step in enumerate(case.steps):
            x = inputs[f"x{k}"].astype(f32)
            batch = step != "eval" or not case.track_running_stats
            if batch:
                mean = x.mean(axis=axes, dtype=f32)
                var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes, dtype=f32)  # two-pass, biased
            else:
                mean, var = running_mean, running_var
            invstd = f32(1) / np.sqrt(var + eps)
            x_hat = (x - mean.reshape(shape)) * invstd.reshape(shape)
            y = x_hat * gamma.reshape(shape) + beta.reshape(shape)
            out[f"{step}.y"] = y.astype(inputs[f"x{k}"].dtype)
            if step != "eval" and case.track_running_stats:
                running_mean = m * running_mean + (f32(1) - m) * mean
                running_var = m * running_var + (f32(1) - m) * var
                out[f"{step}.batch_mean"], out[f"{step}.batch_var"] = mean, var
                out[f"{step}.running_mean"] = running_mean.astype(inputs["running_mean"].dtype)
                out[f"{step}.running_var"] = running_var.astype(inputs["running_var"].dtype)
            if case.gradients:
                dy = inputs[f"dy{k}"].astype(f32)
                dbeta = dy.sum(axis=axes, dtype=f32)
                dgamma = (dy * x_hat).sum(axis=axes, dtype=f32)
                scale = (gamma * invstd).reshape(shape)
                if batch:  # the statistics depend on x too
                    dx = scale * (dy - (dbeta.reshape(shape) + x_hat * dgamma.reshape(shape)) / f32(n))
                else:
                    dx = scale * dy
                dt = inputs[f"x{k}"].dtype
                out[f"{step}.dx"] = dx.astype(dt)
                if case.affine:
                    out[f"{step}.dgamma"], out[f"{step}.dbeta"] = dgamma.astype(dt), dbeta.astype(dt)
        return out
