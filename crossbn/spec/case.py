"""One BatchNorm test case: a frozen record of everything that determines it.

A `Case` is pure data. Together with its seed it fixes every input byte (see
`inputs.py`), so the same case gives the same arrays on every machine and in
every worker. Its `id` is a content hash: two catalogues that describe the same
case give the same id, and renaming a catalogue group does not change it.

Conventions are crossbn's canonical ones, never a framework default:
- `momentum` is the weight kept on the OLD running value
  (running = momentum * running + (1 - momentum) * batch), as in Keras, Flax and
  ONNX. Adapters translate (PyTorch gets 1 - momentum).
- `eps` is always explicit.
- The channel axis follows from `layout`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from crossbn.spec.dtypes import NAMES as DTYPES

LAYOUTS = ("channels_first", "channels_last")
DISTRIBUTIONS = ("normal", "uniform", "constant_channel", "near_eps", "fp16_stress")
SPECIAL_VALUES = ("nan", "inf", "-inf")
RUNNING_STATS = ("drawn", "data")

# Backend-specific switches a case may set: name -> the framework's default.
# The family (text before the dot) is the backend's `option_family`.
OPTIONS = {
    # flax.linen/nnx BatchNorm: variance as E[x^2]-E[x]^2 (True, the default)
    # or as E[(x-mean)^2] (False).
    "flax.use_fast_variance": True,
    # flax BatchNorm: reduce float16/bfloat16 inputs in float32 (True, default).
    "flax.force_float32_reductions": True,
}

# Short tags for readable pytest ids (`-k f16`, `-k cl`, `-k eval`).
_DTYPE_TAG = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_LAYOUT_TAG = {"channels_first": "cf", "channels_last": "cl"}


_FLOAT_FIELDS = ("eps", "momentum", "scale", "offset_ratio")


class CaseError(ValueError):
    """A case that cannot exist; the message names the field and the value."""


@dataclass(frozen=True)
class Case:
    # --- where it came from (not part of the id) --------------------------
    suite: str = "adhoc"
    # Catalogue file stem the case was expanded from, e.g. "default".
    group: str = "case"
    # Name of the catalogue entry that produced it, e.g. "offset": says why the
    # case exists and makes `-k offset` select the whole family.

    # --- the tensor -------------------------------------------------------
    shape: tuple[int, ...] = (8, 3)
    # Logical shape in channels-first order (N, C, *spatial); rank 2 to 5.
    # Independent of `layout`, so the same numbers mean the same case.
    # N may be 0 (an empty batch: statistics NaN, y empty; see docs/cases.md, "An empty batch").
    layout: str = "channels_first"
    # How the array is stored and handed to the framework: "channels_first"
    # puts C at axis 1, "channels_last" at axis -1 (rank 2 is the same for both).
    dtype: str = "float32"
    # Dtype of inputs, parameters, running statistics and outputs.

    # --- the layer ----------------------------------------------------------
    eps: float = 1e-5
    # Added to the variance inside the square root. Always explicit.
    momentum: float = 0.9
    # Canonical: weight kept on the OLD running value (Keras/Flax/ONNX meaning).
    cumulative: bool = False
    # PyTorch's momentum=None: running stats are the cumulative average of all
    # batches seen. `momentum` is then unused. Only frameworks that have it run it.
    affine: bool = True
    # Learnable scale gamma and shift beta (seeded values). False: no parameters,
    # which is the same as gamma = 1, beta = 0 and no dgamma/dbeta.
    track_running_stats: bool = True
    # False: the layer keeps no running statistics and normalizes with the batch
    # statistics in eval too (PyTorch track_running_stats=False).
    frozen: bool = False
    # The layer is frozen, as fine-tuning freezes it (Keras `trainable = False`,
    # PyTorch parameters `requires_grad_(False)` in train mode): its parameters
    # get no gradients. What its training steps compute is a convention
    # (backends/base.py "frozen"): canonically, batch statistics with the
    # running statistics updated (only the parameters are frozen); Keras runs
    # a frozen BatchNorm in inference mode instead.

    # --- what is run --------------------------------------------------------
    train_steps: int = 1
    # Training-mode steps, each a forward and backward pass on a fresh batch
    # that updates the running statistics.
    eval_step: bool = True
    # After training, one eval-mode forward/backward on a fresh batch using the
    # running statistics (or the batch ones when track_running_stats is False).
    gradients: bool = True
    # Also compare dx, dgamma, dbeta for a seeded upstream gradient dy.

    # --- the values ----------------------------------------------------------
    distribution: str = "normal"
    # How x is drawn: "normal", "uniform", "constant_channel" (channel 0 has
    # zero variance), "near_eps" (spread such that var ~ eps), "fp16_stress"
    # (magnitudes near float16's maximum). See inputs.py.
    scale: float = 1.0
    # Spread sigma of x (ignored by "near_eps", which derives it from eps).
    offset_ratio: float = 0.0
    # Mean offset |mu|/sigma: conditioning of the normalization. 0 = centred.
    specials: tuple[tuple[str, int, tuple[int, ...]], ...] = ()
    # Non-finite values planted after generation: (value, step, index) with
    # value "nan" | "inf" | "-inf", step the batch number, index in logical
    # (channels-first) coordinates.
    running_stats: str = "drawn"
    # The initial running statistics: "drawn" (seeded, independent of the
    # data) or "data" (the exact mean and biased variance of the last step's
    # batch, rounded once to the dtype: what a model trained on that data
    # holds, so eval normalizes its own data, however far from zero it lies).
    seed: int = 0
    # Seeds every generated array (x per step, dy per step, gamma, beta and the
    # initial running statistics).

    # --- one framework's own switches ---------------------------------------
    options: tuple[tuple[str, object], ...] = ()
    # Backend-specific switches as (name, value) pairs, named "<family>.<switch>"
    # (see OPTIONS), e.g. ("flax.use_fast_variance", False). Only the backends
    # of that family run such a case; it is not generated for the others.
    # Values equal to the switch's default are dropped, so () is the default
    # case and catalogues list the default first. In TOML: a table,
    # options = { "flax.use_fast_variance" = false }.

    # derived, cached
    _id: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        for name in _FLOAT_FIELDS:  # 1 and 1.0 are one case: one spelling, one id
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "options", _options(self.options))
        if len(self.shape) == 2:  # (N, C) has one layout: keep one spelling, one id
            object.__setattr__(self, "layout", "channels_first")
        object.__setattr__(self, "_id", _content_hash(self))

    # ---------------------------------------------------------------- derived
    @property
    def id(self) -> str:
        """Stable 12-hex-digit content hash (suite and group excluded)."""
        return self._id

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def channel_axis(self) -> int:
        return 1 if self.layout == "channels_first" or self.rank == 2 else self.rank - 1

    @property
    def option_families(self) -> frozenset[str]:
        """Families of the backend-specific switches this case sets."""
        return frozenset(name.split(".", 1)[0] for name, _ in self.options)

    def option(self, name: str):
        """The value of a backend-specific switch (its default when unset)."""
        return dict(self.options).get(name, OPTIONS[name])

    @property
    def array_shape(self) -> tuple[int, ...]:
        """Shape of the stored arrays (channels moved last for channels_last)."""
        if self.channel_axis == 1:
            return self.shape
        n, c, *spatial = self.shape
        return (n, *spatial, c)

    @property
    def reduction_size(self) -> int:
        """Elements per channel that the batch statistics reduce over."""
        return math.prod(self.shape) // self.channels

    @property
    def steps(self) -> tuple[str, ...]:
        """Step names in execution order: train0, train1, ..., eval."""
        names = tuple(f"train{k}" for k in range(self.train_steps))
        return names + (("eval",) if self.eval_step else ())

    @property
    def pytest_id(self) -> str:
        """Readable, -k friendly id: group, dtype, shape, layout, mode, hash."""
        shape = "x".join(map(str, self.shape))
        mode = f"t{self.train_steps}" + ("e" if self.eval_step else "")
        return f"{self.group}-{_DTYPE_TAG[self.dtype]}-{shape}-{_LAYOUT_TAG[self.layout]}-{mode}-{self.id[:8]}"

    def to_dict(self) -> dict:
        """Plain JSON-able dict (lists for tuples); inverse of `from_dict`."""
        d = dataclasses.asdict(self)
        d.pop("_id")
        d["options"] = dict(self.options)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown:
            raise CaseError(f"unknown case field(s): {', '.join(sorted(unknown))}")
        if "shape" in d:
            if not isinstance(d["shape"], (list, tuple)):
                raise CaseError(f"field 'shape' = {d['shape']!r}: must be a list of integers (N, C, *spatial)")
            d["shape"] = tuple(d["shape"])
        if "specials" in d:
            d["specials"] = _specials(d["specials"])
        return cls(**d)


def _specials(raw) -> tuple:
    """[[value, step, [index...]], ...] -> tuple form, or a CaseError saying what is wrong."""
    form = "a list of [value, step, [index, ...]] entries"
    if not isinstance(raw, (list, tuple)):
        raise CaseError(f"field 'specials' = {raw!r}: must be {form}")
    out = []
    for entry in raw:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[2], (list, tuple))):
            raise CaseError(f"field 'specials' = {raw!r}: entry {entry!r} must be [value, step, [index, ...]]")
        out.append((entry[0], entry[1], tuple(entry[2])))
    return tuple(out)


def _options(raw) -> tuple:
    """A table or (name, value) pairs -> sorted pairs without default values."""
    form = 'a table of backend switches, e.g. { "flax.use_fast_variance" = false }'
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in raw):
        items = [tuple(p) for p in raw]
    else:
        raise CaseError(f"field 'options' = {raw!r}: must be {form}")
    out = {}
    for name, value in items:
        if name not in OPTIONS:
            raise CaseError(f"field 'options': unknown switch {name!r}; known: {', '.join(OPTIONS)}")
        if type(value) is not type(OPTIONS[name]):
            raise CaseError(f"field 'options': {name} = {value!r} must be a {type(OPTIONS[name]).__name__}")
        if value != OPTIONS[name]:
            out[name] = value
    return tuple(sorted(out.items()))


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_LATER_FIELDS = {"options": (), "frozen": False, "running_stats": "drawn"}


def _content_hash(case: Case) -> str:
    d = dataclasses.asdict(case)
    for name in ("suite", "group", "_id"):
        d.pop(name)
    # fields added later are left out at their default: older cases keep their ids
    for name, default in _LATER_FIELDS.items():
        if d[name] == default:
            d.pop(name)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _check_shape(shape, bad) -> None:
    """(N, C, *spatial), the wrong one named. N may be 0: an empty batch is a
    case (the oracle's meaning of it is in crossbn/oracle/batchnorm.py and$
    docs/cases.md, "An empty batch"); channels and spatial sizes must be >= 1."""
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise bad("shape", "must be a list of integers (N, C, *spatial)")
    if not 2 <= len(shape) <= 5:
        raise bad("shape", "rank must be 2 to 5 (N, C, *spatial)")
    if shape[0] < 0:
        raise bad("shape", "the batch size N must be >= 0")
    if shape[1] < 1:
        raise bad("shape", "the number of channels C must be >= 1")
    if any(s < 1 for s in shape[2:]):
        raise bad("shape", "spatial sizes must be >= 1")


def _validate(c: Case) -> None:
    def bad(name: str, why: str) -> CaseError:
        return CaseError(f"field '{name}' = {getattr(c, name)!r}: {why}")

    _check_shape(c.shape, bad)
    if c.layout not in LAYOUTS:
        raise bad("layout", f"must be one of {LAYOUTS}")
    if c.dtype not in DTYPES:
        raise bad("dtype", f"must be one of {DTYPES}")
    if not (_is_number(c.eps) and math.isfinite(c.eps) and c.eps >= 0):
        raise bad("eps", "must be a finite number >= 0")
    if not (_is_number(c.momentum) and 0.0 <= c.momentum <= 1.0):
        raise bad("momentum", "must be in [0, 1] (weight kept on the old running value)")
    if not isinstance(c.train_steps, int) or isinstance(c.train_steps, bool) or c.train_steps < 0:
        raise bad("train_steps", "must be an integer >= 0")
    if c.train_steps == 0 and not c.eval_step:
        raise bad("eval_step", "a case with no training steps must have an eval step")
    if c.distribution not in DISTRIBUTIONS:
        raise bad("distribution", f"must be one of {DISTRIBUTIONS}")
    if not (_is_number(c.scale) and math.isfinite(c.scale) and c.scale > 0):
        raise bad("scale", "must be a finite number > 0")
    if not (_is_number(c.offset_ratio) and math.isfinite(c.offset_ratio)):
        raise bad("offset_ratio", "must be a finite number")
    if c.cumulative and not c.track_running_stats:
        raise bad("cumulative", "a cumulative average needs track_running_stats")
    if c.frozen and not c.track_running_stats:
        raise bad("frozen", "a frozen layer is one with running statistics (track_running_stats)")
    if c.running_stats not in RUNNING_STATS:
        raise bad("running_stats", f"must be one of {RUNNING_STATS}")
    if c.running_stats == "data" and not c.track_running_stats:
        raise bad("running_stats", "'data' sets running statistics: it needs track_running_stats")
    for special in c.specials:
        if not (isinstance(special, tuple) and len(special) == 3 and isinstance(special[2], tuple)):
            raise bad("specials", f"entry {special!r} must be (value, step, (index, ...))")
        value, step, index = special
        if (
            not isinstance(step, int)
            or isinstance(step, bool)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in index)
        ):
            raise bad("specials", f"step and index of {special!r} must be integers")
        if value not in SPECIAL_VALUES:
            raise bad("specials", f"value {value!r} must be one of {SPECIAL_VALUES}")
        if not 0 <= step < len(c.steps):
            raise bad("specials", f"step {step} is not one of the case's {len(c.steps)} steps")
        if len(index) != len(c.shape):
            raise bad(
                "specials",
                f"index {tuple(index)} has {len(index)} coordinate(s), the shape {c.shape} has {len(c.shape)}",
            )
        if not all(0 <= i < s for i, s in zip(index, c.shape)):
            raise bad("specials", f"index {tuple(index)} is outside shape {c.shape}")
    if not isinstance(c.seed, int) or isinstance(c.seed, bool) or c.seed < 0:
        raise bad("seed", "must be an integer >= 0")
    for name in ("cumulative", "affine", "track_running_stats", "frozen", "eval_step", "gradients"):
        if not isinstance(getattr(c, name), bool):
            raise bad(name, "must be true or false")
