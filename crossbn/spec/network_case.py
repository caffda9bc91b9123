"""One model case: a network, a dtype, a run mode and a seed, as frozen data.

Like crossbn.spec.case.Case: the id is a content hash (suite and group excluded),
so the same case has the same id whichever catalogue lists it, and the seed
fixes every weight and input byte (see models/inputs.py).

Run mode: `train_steps` forward passes in training mode (batch statistics,
each updating every BatchNorm's running statistics; the weights are never
updated, so no optimizer enters the comparison), then, with `eval_step`, one
eval-mode forward on a fresh batch through the running statistics.

`momentum` has crossbn's canonical meaning: the weight kept on the OLD
running value (running = momentum * running + (1 - momentum) * batch), as in
Keras, Flax and ONNX; the PyTorch adapter passes 1 - momentum.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from crossbn.spec.networks import NETWORKS

DTYPES = ("float64", "float32")
_DTYPE_TAG = {"float64": "f64", "float32": "f32"}


class ModelCaseError(ValueError):
    """A model case that cannot exist; the message names the field and the value."""


@dataclass(frozen=True)
class ModelCase:
    # --- where it came from (not part of the id) -----------------------------
    suite: str = "adhoc"
    # Catalogue file stem the case was expanded from, e.g. "models".
    group: str = "model"
    # Name of the catalogue entry ([[model]] name): `-k <group>` selects it.

    # --- the network ------------------------------------------------------------
    network: str = "conv_bn_relu_pool_dense"
    # A key of networks.NETWORKS: layers, their wiring and sizes.
    batch: int = 8
    # N, the batch size of every step's input (the sample shape is the network's).
    dtype: str = "float32"
    # Dtype of the weights, inputs, running statistics and every hidden state.

    # --- every BatchNorm layer of it ------------------------------------------------
    eps: float = 1e-5
    # Added to the variance inside the square root. Always explicit.
    momentum: float = 0.9
    # Canonical: weight kept on the OLD running value (Keras/Flax/ONNX meaning).

    # --- what is run ------------------------------------------------------------------
    train_steps: int = 2
    # Training-mode forward passes, each on a fresh batch, each updating the
    # running statistics (no weight update).
    eval_step: bool = True
    # Then one eval-mode forward on a fresh batch through the running statistics.
    seed: int = 0
    # Seeds every weight, initial running statistic and input batch.

    _id: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        for name in ("eps", "momentum"):  # 1 and 1.0 are one case: one spelling, one id
            object.__setattr__(self, name, float(getattr(self, name)))
        d = dataclasses.asdict(self)
        for name in ("suite", "group", "_id"):
            d.pop(name)
        blob = json.dumps({"kind": "model", **d}, sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "_id", hashlib.sha256(blob.encode()).hexdigest()[:12])

    @property
    def id(self) -> str:
        """Stable 12-hex-digit content hash (suite and group excluded)."""
        return self._id

    @property
    def spec(self):
        """The networks.Network this case runs."""
        return NETWORKS[self.network]

    @property
    def steps(self) -> tuple[str, ...]:
        """Step names in execution order: train0, train1, ..., eval."""
        return tuple(f"train{k}" for k in range(self.train_steps)) + (("eval",) if self.eval_step else ())

    @property
    def option_families(self) -> frozenset[str]:
        """No backend-specific switches: every backend's `applies` accepts a model case."""
        return frozenset()

    @property
    def pytest_id(self) -> str:
        """Readable, -k friendly id: group, network, dtype, batch, mode, hash."""
        mode = f"t{self.train_steps}" + ("e" if self.eval_step else "")
        return f"{self.group}-{self.network}-{_DTYPE_TAG[self.dtype]}-n{self.batch}-{mode}-{self.id[:8]}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("_id")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelCase:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown:
            raise ModelCaseError(f"unknown model case field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


FIELDS = tuple(f.name for f in dataclasses.fields(ModelCase) if f.init and f.name not in ("suite", "group"))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _validate(c: ModelCase) -> None:
    def bad(name: str, why: str) -> ModelCaseError:
        return ModelCaseError(f"field '{name}' = {getattr(c, name)!r}: {why}")

    if c.network not in NETWORKS:
        raise bad("network", f"must be one of {', '.join(NETWORKS)}")
    if c.dtype not in DTYPES:
        raise bad("dtype", f"must be one of {DTYPES}")
    if not _is_int(c.batch) or c.batch < 2:
        raise bad("batch", "must be an integer >= 2 (training-mode BatchNorm over dense features needs 2)")
    if not (isinstance(c.eps, (int, float)) and not isinstance(c.eps, bool) and math.isfinite(c.eps) and c.eps > 0):
        raise bad("eps", "must be a finite number > 0")
    if not (isinstance(c.momentum, (int, float)) and not isinstance(c.momentum, bool) and 0 <= c.momentum <= 1):
        raise bad("momentum", "must be in [0, 1] (weight kept on the old running value)")
    if not _is_int(c.train_steps) or c.train_steps < 0:
        raise bad("train_steps", "must be an integer >= 0")
    if not isinstance(c.eval_step, bool):
        raise bad("eval_step", "must be true or false")
    if c.train_steps == 0 and not c.eval_step:
        raise bad("eval_step", "a case with no training steps must have an eval step")
    if not _is_int(c.seed) or c.seed < 0:
        raise bad("seed", "must be an integer >= 0")


def is_model_case(case) -> bool:
    return isinstance(case, ModelCase)
