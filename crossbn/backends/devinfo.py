"""Describing the machine a worker runs on (no framework imports)."""

from __future__ import annotations

import platform

# The environment of every JAX worker. float64 cases need 64-bit JAX (float32
# inputs stay float32 under it); JAX_PLATFORMS empty lets it find a GPU; and
# no preallocation: JAX otherwise takes 75% of the GPU's memory in each
# process, and a run has several JAX workers on one GPU at once.
JAX_WORKER_ENV = {"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def cpu_name() -> str:
    """The CPU model as the OS reports it, e.g. 'AMD EPYC 7B13 (x86_64)'."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tensorflow_devices() -> dict:
    """{"cpu": model, "cuda": GPU name when TensorFlow sees one} (imports TensorFlow)."""
    import tensorflow as tf

    out = {"cpu": cpu_name()}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        out["cuda"] = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return out


def jax_devices() -> dict:
    """{"cpu": model, "cuda": GPU kind when JAX sees one} (imports JAX)."""
    import jax

    out = {"cpu": cpu_name()}
    try:
        out["cuda"] = jax.devices("gpu")[0].device_kind
    except RuntimeError:
        pass
    return out


def keras_device(device: str) -> str:
    """The name `keras.device()` takes for a crossbn device on every Keras
    backend: "gpu:0", not "cuda:0", since Keras on JAX looks the device up
    by JAX's platform name, which is "gpu" for a CUDA device (Keras on
    PyTorch turns "gpu" into "cuda" itself)."""
    return "gpu:0" if device == "cuda" else f"{device}:0"


def no_running_stats_variants(case, layer: str) -> str | None:
    """Why a layer that always keeps an exponential running average cannot
    run the case, or None (Keras, tf-keras and Flax layers share this)."""
    if case.cumulative:
        return f"{layer} has no cumulative-average running statistics (PyTorch's momentum=None)"
    if not case.track_running_stats:
        return f"{layer} always keeps running statistics (no track_running_stats=False)"
    return None
