"""A backend's declared conventions are checked when it loads: a frozen
record, every key known and every value one the conventions can take; a
wrong one is a usage error that names the backend, before any work."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from crossbn.backends import BackendError, discover, load
from crossbn.backends.base import CANONICAL_CONVENTIONS, ConventionError, Conventions

from run_crossbn import crossbn

HERE = Path(__file__).parent
MODULES = tuple(str(HERE / "backends" / m) for m in ("numpy_variants.py", "planted.py", "convention_plants.py"))


def test_every_backend_declares_what_the_conventions_can_be():
    specs = discover(MODULES)
    assert len(specs) > 30
    for name, spec in specs.items():
        declared = load(spec).declared
        assert isinstance(declared, Conventions), name


def test_undeclared_keys_are_the_canonical_ones_or_none():
    c = Conventions.of("mine", {"running_var": "unbiased"})
    assert c.running_var == "unbiased"
    assert {k: getattr(c, k) for k in CANONICAL_CONVENTIONS if k != "running_var"} == {
        k: v for k, v in CANONICAL_CONVENTIONS.items() if k != "running_var"
    }
    assert c.variance is None and c.eps_floor is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.running_var = "biased"  # type: ignore[misc]


@pytest.mark.parametrize(
    "declared, message",
    [
        ({"runing_var": "biased"}, "backend mine: unknown convention 'runing_var'; known: momentum, running_var"),
        ({"momentum": "newest"}, "backend mine: convention momentum = 'newest'; expected one of old, new"),
        ({"eps_floor": "tiny"}, "backend mine: convention eps_floor = 'tiny'; expected one of none, <number>"),
        ({"default_eps": 1e-5}, "backend mine: convention default_eps = 1e-05 must be a string"),
    ],
)
def test_a_wrong_key_or_value_names_the_backend(declared, message):
    with pytest.raises(ConventionError) as e:
        Conventions.of("mine", declared)
    assert str(e.value).startswith(message)


def test_a_number_is_an_eps():
    assert Conventions.of("mine", {"eps_floor": "1e-05", "default_eps": "1e-3"}).eps_floor == "1e-05"


def test_a_backend_with_a_wrong_convention_is_a_usage_error(tmp_path):
    module = tmp_path / "mine.py"
    module.write_text(
        textwrap.dedent(
            """
            from crossbn.backends import Backend

            class Mine(Backend):
                name = "mine"
                conventions = {"running_var": "unbaised"}

                def run(self, case, inputs, device):
                    raise AssertionError("never run")
            """
        )
    )
    with pytest.raises(BackendError, match="convention running_var = 'unbaised'; expected one of biased, unbiased"):
        load(f"{module}:Mine")
    out = tmp_path / "out"
    proc = crossbn("run", "--suite", "smoke", "--backend-module", module, "--backends", "mine", "--out", out, "-n", "0")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "backend mine" in lines[0] and "running_var = 'unbaised'" in lines[0], lines
    assert not (out / "results.jsonl").exists()
