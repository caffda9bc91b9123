"""Planted backends for `crossbn conventions` (tests/test_conventions.py):
conventions planted in the independent NumPy BatchNorm of planted.py, each
with a declaration that either matches it (no finding) or does not (a finding)."""

import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loaded by path, beside planted.py
from planted import Planted, Planted_clamped_eps, Planted_one_pass  # noqa: E402


class Float32Hyperparameters(Planted):
    """eps and momentum rounded to float32 (as a format with 32-bit
    attributes stores them), declared exact: a finding."""

    name = "planted-float32-hyperparameters"

    def run(self, case, inputs, device):
        rounded = dataclasses.replace(case, eps=float(np.float32(case.eps)), momentum=float(np.float32(case.momentum)))
        return super().run(rounded, inputs, device)


class Float32HyperparametersDeclared(Float32Hyperparameters):
    name = "planted-float32-hyperparameters-declared"
    conventions = {"hyperparameters": "float32"}


class OnePassDeclaredAccurate(Planted_one_pass):
    """E[x²]-E[x]² while declaring an accurate variance: a finding."""

    name = "planted-one-pass-declared-accurate"
    conventions = {"variance": "two-pass/welford"}


class ClampedEpsDeclared(Planted_clamped_eps):
    """eps clamped to 1e-5 and declared so: no finding."""

    name = "planted-clamped-eps-declared"
    conventions = {"eps_floor": "1e-05"}


class RefusesSingleValue(Planted):
    """Raises on one value per channel in training, declared to give beta: a finding."""

    name = "planted-refuses-single-value"
    conventions = {"single_value": "beta"}

    def run(self, case, inputs, device):
        if case.train_steps and case.reduction_size == 1:
            raise ValueError("Expected more than 1 value per channel when training")
        return super().run(case, inputs, device)


class FrozenAsInference(Planted):
    """A frozen layer's training step run as inference (Keras' reading), declared canonical: a finding."""

    name = "planted-frozen-inference"
    frozen_as = "inference"


class FrozenAsInferenceDeclared(FrozenAsInference):
    name = "planted-frozen-inference-declared"
    conventions = {"frozen": "inference"}


class CannotFreeze(Planted):
    """No way to freeze a layer: the frozen probe does not run."""

    name = "planted-cannot-freeze"
    no_frozen = "it has no trainable flag"
