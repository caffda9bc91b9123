"""A real network with one planted fault, loaded as a user backend.

`torch-wrong-eps` is the `torch` backend's network (crossbn/backends/networks/torch.py)
with the eps of its LAST BatchNorm layer 1000 times the case's: every other
layer is PyTorch's own. The models suite must localize the inconsistency to
that layer (tests/test_models.py), through the same worker, judge and record
path as every backend.
"""

from crossbn.backends.torch_backend import TorchBackend

FACTOR = 1000.0


class TorchWrongEps(TorchBackend):
    name = "torch-wrong-eps"

    def run_model(self, model_case, inputs: dict, device: str) -> dict:
        from crossbn.backends.networks import torch as torch_net

        model = torch_net.build(model_case, inputs, device)
        model.blocks[model_case.spec.batchnorms[-1]].eps = model_case.eps * FACTOR
        return torch_net.forward_all(model, model_case, inputs, device)
