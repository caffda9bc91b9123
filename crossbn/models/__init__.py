"""The `models` suite: BatchNorm in context, localized per layer (CRADLE's method).

Small networks (networks.py) built identically in every framework from one
spec with the same seeded weights and inputs (inputs.py), run for a few
training steps and an eval step (case.py), and compared hidden state by
hidden state with a float64 NumPy oracle network (oracle.py) to find the
layers that introduce an inconsistency (metrics.py). judge.py turns one
(model case, backend, device) into a result record; catalogue.py reads
`cases/models.toml`. One adapter module per framework builds the networks:
torch_net, keras_net (Keras 3 and tf-keras), flax_net, onnx_net, tf_net;
the backend classes in crossbn/backends/ only name theirs (`model_framework`).

Importing this package imports no framework.
"""

from .case import ModelCase

__all__ = ["ADAPTERS", "ModelCase", "is_model_case"]

# Backend.model_framework -> the adapter module (in this package) that builds its networks.
ADAPTERS = {"torch": "torch_net", "keras": "keras_net", "tf_keras": "keras_net", "flax": "flax_net",
            "onnx": "onnx_net", "tf": "tf_net"}


def is_model_case(case) -> bool:
    return isinstance(case, ModelCase)
