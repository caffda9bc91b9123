"""TensorFlow's compiled path: the same BatchNorm as `tf-nn`, `tf-fused-op`
and Keras 3 on TensorFlow, inside `tf.function(jit_compile=True)`, as a
compiled train step runs it (Keras' `fit` with `jit_compile=True`, the
default on GPU; a user's own `@tf.function(jit_compile=True)` step).

XLA is a second implementation, not a wrapper: tf2xla lowers
FusedBatchNormV3 to XLA's BatchNormTraining/Inference HLO, which the
compiler expands with its own formulas, computes half-precision input in
the float32 statistics type, and applies the running-statistics update and
Bessel's correction itself (tensorflow/compiler/tf2xla/kernels/
batch_norm_op.cc); tf.nn's moments and normalization become fused XLA
reductions and elementwise code.

What is compiled is one training or eval step, forward and backward: the
output, the intermediates the eager adapter exposes, the new running
statistics and the gradients (GradientTape inside the function) are the
compiled function's outputs; the running statistics go in and come out as
arguments, so each step's are the previous step's. One function per case,
traced once per mode (train, eval); XLA compiles per shape, so each case
pays its compile (0.6-0.9 s a trace here), and these backends run a
stratified subset of a suite (see `Backend.subset`).

Declared conventions and translation: those of the eager twin (the case
means the same thing; only the implementation differs). Intermediates: as
the eager twin; FusedBatchNormV3's reserve_space_2 is the biased batch
variance on CPU and rsqrt(variance + eps) on a GPU under XLA too, so only
the batch mean is exposed there.
"""

from __future__ import annotations

from crossbn.backends.keras_backend import KerasTensorFlow
from crossbn.backends.tf_backend import TfFusedOp, TfNn
from crossbn.spec.subset import PER_STRATUM

XLA = "XLA: tf.function(jit_compile=True)"  # how the version strings name the compiled path
_NO_NETWORK = (
    "its network adapter runs eagerly; the compiled path is judged on the BatchNorm suite, not yet on networks"
)


class _Xla:
    """Mixin: the step runs under tf.function(jit_compile=True)."""

    subset = PER_STRATUM
    model_framework = None
    no_models = _NO_NETWORK

    def _compile(self, tf, step):
        return tf.function(step, jit_compile=True)

    def _version(self, tf) -> str:
        return f"tensorflow {tf.__version__} ({XLA})"


class TfNnXla(_Xla, TfNn):
    name = "tf-nn-xla"


class TfFusedOpXla(_Xla, TfFusedOp):
    name = "tf-fused-op-xla"


class KerasTensorFlowXla(_Xla, KerasTensorFlow):
    name = "keras-tensorflow-xla"

    def describe(self) -> dict:
        out = super().describe()
        return {**out, "version": f"{out['version']} ({XLA})"}
