"""Catalogues: the shipped suites load and cover every axis; mistakes are named."""

import pytest

from crossbn.spec.catalogue import CatalogueError, available_suites
from crossbn.spec.suites import load_suite


def test_shipped_suites_load():
    assert {"smoke", "default", "edge"} <= set(available_suites())
    for s in ("smoke", "default", "edge"):
        cases = load_suite(s)
        assert len({c.id for c in cases}) == len(cases)


def test_default_covers_every_axis():
    # default.toml's own groups (the regression cases it includes from crossbn/cases/found/ vary as the fuzzer saves them)
    cases = [c for c in load_suite("default") if c.suite == "default"]
    assert len(cases) >= 400
    seen = lambda f: {f(c) for c in cases}  # noqa: E731
    assert {2, 3, 4, 5} <= seen(lambda c: c.rank)
    assert {"channels_first", "channels_last"} <= seen(lambda c: c.layout)
    assert {1, 2, 3, 8, 32, 128} <= seen(lambda c: c.shape[0])
    assert max(c.shape[0] for c in cases) >= 512  # "one large"
    assert {1, 64} <= seen(lambda c: c.channels)
    assert {0.0, 1e-5, 1e-3, 0.1} <= seen(lambda c: c.eps)
    assert {0.0, 0.1, 0.9, 0.99, 1.0} <= seen(lambda c: c.momentum)
    assert {1, 3, 10} <= seen(lambda c: c.train_steps)
    assert all(c.eval_step for c in cases)
    assert {True, False} <= seen(lambda c: c.affine)
    assert {True, False} <= seen(lambda c: c.track_running_stats)
    assert {True} <= seen(lambda c: c.cumulative)
    assert {"float64", "float32", "float16", "bfloat16"} <= seen(lambda c: c.dtype)
    assert {"normal", "uniform", "constant_channel", "near_eps", "fp16_stress"} <= seen(lambda c: c.distribution)
    assert {1.0, 1e4} <= seen(lambda c: c.offset_ratio)
    assert {"nan", "inf", "-inf"} <= {v for c in cases for v, _, _ in c.specials}
    assert min(c.scale for c in cases) <= 1e-6 and max(c.scale for c in cases) >= 1e6


def test_smoke_is_small():
    assert len(load_suite("smoke")) <= 20


def _write(tmp_path, text):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[[group]]\nname = 'g'\nshape = [8]\n", r"bad\.toml group #1 'g', case \(the only case\): field 'shape'"),
        (
            "[[group]]\nname = 'g'\n[group.axes]\ndtype = ['float32', 'float8']\n",
            r"bad\.toml group #1 'g', case \(dtype='float8'\): field 'dtype'",
        ),
        ("[[group]]\nname = 'g'\nmomentun = 0.9\n", r"bad\.toml group #1 'g': unknown field\(s\) \['momentun'\]"),
        (
            "[[group]]\nname = 'g'\n[group.axes]\neps = 0.1\n",
            r"bad\.toml group #1 'g' \[axes\]: field 'eps' must be a non-empty list",
        ),
        ("[[group]]\nshape = [8, 3]\n", r"bad\.toml group #1: field 'name'"),
        ("[defaults]\nepz = 1\n", r"bad\.toml \[defaults\]: unknown field\(s\) \['epz'\]"),
        ("[[group]\nname='g'\n", r"bad\.toml: not valid TOML"),
        ("wat = 1\n", r"bad\.toml: unknown top-level key"),
        ("include = ['nosuchsuite']\n", r"unknown suite 'nosuchsuite'"),
    ],
)
def test_malformed_catalogue_names_file_group_case_field(tmp_path, text, expected):
    with pytest.raises(CatalogueError, match=expected):
        load_suite(_write(tmp_path, text))


def test_unknown_suite_lists_known():
    with pytest.raises(CatalogueError, match="known suites: .*default"):
        load_suite("nope")
