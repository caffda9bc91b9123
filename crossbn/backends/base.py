"""The Backend protocol every framework adapter implements.

A backend object lives on both sides of the process boundary:
- in the pytest process, only its cheap, import-free parts are used: `name`,
  `worker_env`, `packages`, `conventions`, `available()` and `supports()`;
- in its worker process (see `runner.py`), `describe()` and `run()` import the
  framework, lazily, and do the work.

`run()` returns observables named `<step>.<observable>` (for example
`train0.y`, `train2.running_var`, `eval.dx`) as NumPy arrays in the case's
stored layout and dtype. Observables a framework cannot produce are simply
absent; a case it cannot express at all raises `Unsupported`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

# Observables in dataflow order: localization and reports read them in this order.
OBSERVABLES = (
    "batch_mean",
    "batch_var",
    "invstd",
    "y",
    "running_mean",
    "running_var",
    "dbeta",
    "dgamma",
    "dx",
)

# The canonical semantics; a backend declares where it differs on purpose.
CANONICAL_CONVENTIONS = {
    # variance fed into the running variance: "biased" or "unbiased" (n/(n-1))
    "running_var": "biased",
    # precision in which eps and momentum reach the computation: "exact" (as
    # given) or "float32" (ONNX stores float attributes as 32-bit floats)
    "hyperparameters": "exact",
    # what a training step on an empty batch (N = 0) does to the running
    # statistics: "nan" (the EMA formula with the NaN mean and variance of no
    # values; ONNX, TensorFlow, Keras, Flax) or "skip" (left unchanged; PyTorch)
    "empty_batch": "nan",
    # what a training step of a frozen layer (Case.frozen) computes: "batch"
    # (only the parameters are frozen: batch statistics normalize and the
    # running ones are updated; PyTorch's requires_grad_(False)) or
    # "inference" (the step runs as inference: running statistics, left
    # unchanged; Keras' and tf.keras' trainable = False)
    "frozen": "batch",
}

# What every backend declares about its documented semantics (`conventions`),
# one place per backend; README's backend table is generated from them and
# issue-4's observed conventions are checked against them.
CONVENTION_KEYS = {
    "momentum": "what the framework's momentum argument weighs: 'old' (the running value, "
    "Keras/Flax/ONNX/TF) or 'new' (the batch statistic, PyTorch)",
    "running_var": "variance folded into the running variance: 'biased' or 'unbiased' (n/(n-1))",
    "hyperparameters": "eps and momentum as given ('exact') or rounded to 'float32' by the format",
    "default_eps": "the framework's default epsilon",
    "channel_axis": "where the channel axis may be: 'first', 'last' or 'any'",
    "doc": "the documentation the declaration is taken from",
}


# Declared only where the framework documents them; `crossbn conventions`
# observes them for every backend and reports a finding where a declared one
# is not what the runs show (crossbn/conventions/infer.py).
OPTIONAL_CONVENTION_KEYS = {
    "eps_floor": "the smallest eps the computation uses: 'none' (eps as given, the canonical default) or a value",
    "variance": "batch-variance algorithm: 'two-pass/welford' (accurate) or 'one-pass' (E[x²]-E[x]²)",
    "half_reductions": "accumulator dtype of float16/bfloat16 inputs' statistics: 'float32' or the half dtype",
    "single_value": "training on one value per channel: 'error' (raises), 'beta' (y = beta) or 'nan'",
    "eps0_zero_var": "training with eps 0 on a constant channel: 'nan', 'beta' or 'error'",
}


class ConventionError(ValueError):
    """A backend's `conventions` name an unknown key or an impossible value; the message names the backend."""


# The values each convention can take; a key absent here takes any string, and
# "<number>" any decimal number (an eps).
_VALUES: dict[str, tuple[str, ...]] = {
    "momentum": ("old", "new"),
    "running_var": ("biased", "unbiased"),
    "hyperparameters": ("exact", "float32"),
    "empty_batch": ("nan", "skip"),
    "frozen": ("batch", "inference"),
    "default_eps": ("<number>", "none (required)"),
    "channel_axis": ("first", "last", "any"),
    "eps_floor": ("none", "<number>"),
    "variance": ("two-pass/welford", "one-pass"),
    "half_reductions": ("float32", "float16", "bfloat16"),
    "single_value": ("error", "beta", "nan"),
    "eps0_zero_var": ("nan", "beta", "error"),
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Conventions:
    """A backend's declared semantics, checked: the canonical ones where it
    declares none; None for an optional key it leaves undeclared."""

    momentum: str = "old"
    running_var: str = CANONICAL_CONVENTIONS["running_var"]
    hyperparameters: str = CANONICAL_CONVENTIONS["hyperparameters"]
    empty_batch: str = CANONICAL_CONVENTIONS["empty_batch"]
    frozen: str = CANONICAL_CONVENTIONS["frozen"]
    default_eps: str = ""
    channel_axis: str = ""
    doc: str = ""
    eps_floor: str | None = None
    variance: str | None = None
    half_reductions: str | None = None
    single_value: str | None = None
    eps0_zero_var: str | None = None

    @classmethod
    def of(cls, backend: str, declared: Mapping[str, object]) -> Conventions:
        """`declared` checked key by key (ConventionError naming `backend` and the key)."""
        known = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(declared, Mapping):
            raise ConventionError(
                f"backend {backend}: conventions must be a dict of strings, not {type(declared).__name__}"
            )
        for key, value in declared.items():
            if key not in known:
                raise ConventionError(f"backend {backend}: unknown convention {key!r}; known: {', '.join(known)}")
            if not isinstance(value, str):
                raise ConventionError(f"backend {backend}: convention {key} = {value!r} must be a string")
            allowed = _VALUES.get(key)
            if allowed and value not in allowed and not ("<number>" in allowed and _is_number(value)):
                raise ConventionError(
                    f"backend {backend}: convention {key} = {value!r}; expected one of {', '.join(allowed)}"
                )
        return cls(**declared)  # type: ignore[arg-type]


class Unsupported(Exception):
    """The backend cannot express this case; the message says why."""


class Backend:
    """Base class with the shared cheap parts; subclasses set the ClassVars."""

    name: ClassVar[str]
    # Distribution names whose versions describe this backend (first is the framework).
    packages: ClassVar[tuple[str, ...]] = ()
    # Modules that must be importable for the backend to be available.
    modules: ClassVar[tuple[str, ...]] = ()
    # Environment variables its worker process needs (e.g. KERAS_BACKEND).
    worker_env: ClassVar[dict[str, str]] = {}
    # Documented semantics, every key of CONVENTION_KEYS (keys of
    # CANONICAL_CONVENTIONS may be left out when the backend is canonical
    # there), and any of OPTIONAL_CONVENTION_KEYS the framework documents.
    conventions: ClassVar[dict[str, str]] = {}
    # Case dtypes the framework runs (others are `unsupported` by the default supports()).
    dtypes: ClassVar[tuple[str, ...]] = ("float64", "float32", "float16", "bfloat16")
    # Devices the backend has a path for; which exist is decided in the worker.
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    # Family of the case `options` this backend understands ("flax" for
    # "flax.use_fast_variance"); cases setting another family's switches are
    # not generated for it.
    option_family: ClassVar[str | None] = None
    # None, or why this backend cannot freeze a layer (Case.frozen): how each
    # framework spells a frozen BatchNorm is in its adapter; one without a
    # spelling runs no frozen case, with this reason.
    no_frozen: ClassVar[str | None] = "it has no way to freeze a layer"
    # None, or why this backend has no gradients (dx, dgamma, dbeta are then
    # not expected of it, and results say why they are missing).
    no_gradients: ClassVar[str | None] = None

    # Set per run by `backends.instantiate`: the other Python interpreter the
    # worker runs under (None: this one), and the backend of the same framework
    # this one is compared with, result by result (None: none in the run).
    interpreter: str | None = None
    compare_with: str | None = None

    # A compiled backend pays a compilation for nearly every case: it runs
    # this many cases per (group, dtype) of a suite (crossbn/spec/subset.py);
    # None runs every case. `bind_suite` (the plugin, per run) sets `chosen`,
    # the ids of that subset; unbound (repro, fuzz, conventions) every case runs.
    subset: ClassVar[int | None] = None
    chosen: frozenset[str] | None = None

    def bind_suite(self, cases) -> None:
        """Choose this run's subset of `cases` (ValueError: a bad CROSSBN_COMPILED_SUBSET)."""
        from crossbn.spec import subset

        self._per_stratum = subset.size(self.subset) if self.subset else None
        self.chosen = subset.stratified(cases, self._per_stratum)

    def available(self) -> str | None:
        """None, or why the backend cannot run here (checked without importing it).
        Under another interpreter, its worker answers (see `_worker.py`)."""
        if self.interpreter is not None:
            return None
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"{self.name}: Python module '{module}' is not installed (pip install 'crossbn[{self.extra}]')"
        return None

    extra: ClassVar[str] = "all"

    def versions(self) -> dict[str, str]:
        out = {}
        for pkg in self.packages:
            try:
                out[pkg] = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                out[pkg] = "not installed"
        return out

    @functools.cached_property
    def declared(self) -> Conventions:
        """`conventions`, checked (ConventionError); `backends.load` checks it when the backend loads."""
        return Conventions.of(self.name, self.conventions)

    def convention(self, key: str) -> str:
        """A canonical convention's value for this backend (CANONICAL_CONVENTIONS' keys)."""
        return getattr(self.declared, key)

    def differs_from_canonical(self) -> bool:
        return any(self.convention(k) != v for k, v in CANONICAL_CONVENTIONS.items())

    def semantics(self) -> dict[str, str]:
        """The declared conventions the oracle simulates, by CANONICAL_CONVENTIONS key
        (expected.simulate, fingerprint.diagnose take them as keywords)."""
        return {k: self.convention(k) for k in CANONICAL_CONVENTIONS}

    def applies(self, case) -> bool:
        """False for a case that sets another backend family's switches."""
        return all(f == self.option_family for f in case.option_families)

    def supports(self, case) -> str | None:
        """None, or why this case does not apply (decided without importing)."""
        if self.chosen is not None and case.id not in self.chosen:
            from crossbn.spec import subset

            return subset.reason(self.name, self._per_stratum)
        if case.dtype not in self.dtypes:
            return f"{self.name} does not run {case.dtype} (runs {', '.join(self.dtypes)})"
        if case.frozen and self.no_frozen:
            return f"{self.name} runs no frozen layer: {self.no_frozen}"
        return None

    # ---- worker side ---------------------------------------------------------
    def describe(self) -> dict:
        """Versions and devices, from inside the worker (imports the framework)."""
        raise NotImplementedError

    # Set by run() to tell the results something about this run (JSON data:
    # numbers, strings), e.g. torch-compile's compile time. Reset per run.
    run_info: dict = {}

    def run(self, case, inputs: dict, device: str) -> dict:
        raise NotImplementedError

    # ---- the `models` suite (crossbn/backends/networks/) ----------------------------------
    # Which adapter of crossbn/backends/networks builds this backend's networks ("torch",
    # "keras", "tf_keras", "flax", "onnx", "tf"; see crossbn.backends.networks.ADAPTERS),
    # or None: the backend runs no networks, and `no_models` says why.
    model_framework: ClassVar[str | None] = None
    no_models: ClassVar[str] = "it has no network adapter in crossbn/backends/networks (model_framework is None)"
    # None, or why the backend runs only eval-mode networks (model cases with
    # training steps are then unsupported with this reason).
    model_train: ClassVar[str | None] = None

    def supports_model(self, model_case) -> str | None:
        """None, or why this model case does not apply (decided without importing)."""
        if self.model_framework is None:
            return f"{self.name} runs no networks: {self.no_models}"
        if model_case.dtype not in self.dtypes:
            return f"{self.name} does not run {model_case.dtype} (runs {', '.join(self.dtypes)})"
        if model_case.train_steps and self.model_train:
            return f"{self.name} runs networks in eval mode only: {self.model_train}"
        return None

    def run_model(self, model_case, inputs: dict, device: str) -> dict:
        """Every layer's hidden state per step, {"<step>.<layer>": array} in
        canonical layout and the case dtype (worker side). The adapter module
        of `model_framework` does the work; `Unsupported` for what it cannot express."""
        why = self.supports_model(model_case)
        if why is not None:
            raise Unsupported(why)
        import importlib

        from crossbn.backends.networks import ADAPTERS

        return importlib.import_module(f"crossbn.backends.networks.{ADAPTERS[self.model_framework]}").run(
            self, model_case, inputs, device
        )
