"""Network adapters for the `models` suite: one module per framework that
builds the networks of crossbn/spec/networks.py with the same seeded weights
and inputs, runs their training steps and eval step, and returns every hidden
state. A backend class only names its adapter (`Backend.model_framework`).
Importing this package imports no framework.
"""

# Backend.model_framework -> the adapter module (in this package) that builds its networks.
ADAPTERS = {"torch": "torch", "keras": "keras", "tf_keras": "keras", "flax": "flax", "onnx": "onnx", "tf": "tf"}
