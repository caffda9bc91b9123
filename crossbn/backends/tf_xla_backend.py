"""TensorFlow's compiled path: `tf-nn-xla`, `tf-fused-op-xla` and `keras-tensorflow-xla`, the same BatchNorm as
`tf-nn`, `tf-fused-op` and Keras 3 on TensorFlow, inside `tf.function(jit_compile=True)`, as a compiled train step
runs it.

XLA is a second implementation, not a wrapper: FusedBatchNormV3 is lowered to XLA's own BatchNorm HLO and tf.nn's
ops to fused XLA code. One training or eval step (forward, intermediates, new running statistics, gradients) is
one compiled function, the running statistics passed in and out as arguments. XLA compiles per shape, so these
backends run a stratified subset of a suite (see `Backend.subset`). Conventions and translation: the eager twin's.

Design notes: docs/internals/backends.md.
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
