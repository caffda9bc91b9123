"""Case: validation, stable content ids, readable pytest ids."""

import dataclasses

import pytest

from crossbn.spec.case import Case, CaseError


def test_same_content_same_id_regardless_of_suite_and_group():
    a = Case(suite="default", group="ranks", shape=(4, 3, 5))
    b = Case(suite="edge", group="other", shape=(4, 3, 5))
    assert a.id == b.id
    assert len(a.id) == 12 and int(a.id, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        dict(shape=(4, 3, 6)),
        dict(layout="channels_last"),
        dict(dtype="float16"),
        dict(eps=1e-3),
        dict(momentum=0.5),
        dict(cumulative=True),
        dict(affine=False),
        dict(track_running_stats=False),
        dict(train_steps=2),
        dict(eval_step=False),
        dict(gradients=False),
        dict(distribution="uniform"),
        dict(scale=2.0),
        dict(offset_ratio=10.0),
        dict(specials=(("nan", 0, (0, 0, 0)),)),
        dict(seed=1),
    ],
)
def test_every_field_changes_the_id(change):
    base = Case(shape=(4, 3, 5))
    assert dataclasses.replace(base, **change).id != base.id


def test_id_is_stable_across_processes():
    import subprocess
    import sys

    code = "from crossbn.spec.case import Case; print(Case(shape=(4, 3, 5), dtype='bfloat16', seed=7).id)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == Case(shape=(4, 3, 5), dtype="bfloat16", seed=7).id


def test_rank2_has_a_single_layout():
    assert Case(shape=(8, 3), layout="channels_last").id == Case(shape=(8, 3)).id


def test_channel_axis_and_array_shape():
    c = Case(shape=(2, 3, 4, 5), layout="channels_last")
    assert c.channel_axis == 3 and c.array_shape == (2, 4, 5, 3) and c.reduction_size == 40
    assert Case(shape=(2, 3, 4, 5)).channel_axis == 1


def test_pytest_id_is_readable_and_k_friendly():
    pid = Case(group="offset", shape=(8, 4, 6), dtype="float16", layout="channels_last", train_steps=3).pytest_id
    assert pid.startswith("offset-f16-8x4x6-cl-t3e-")
    assert " " not in pid and "[" not in pid


def test_roundtrip_dict():
    c = Case(shape=(2, 3, 4), specials=(("inf", 0, (1, 2, 3)),))
    assert Case.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(shape=(8,)), "shape"),
        (dict(shape=(1, 2, 3, 4, 5, 6)), "shape"),
        (dict(shape=(-1, 3)), "shape"),
        (dict(shape=(0, 0)), "shape"),
        (dict(shape=(0, 3, 0)), "shape"),
        (dict(layout="nhwc"), "layout"),
        (dict(dtype="float8"), "dtype"),
        (dict(eps=-1.0), "eps"),
        (dict(momentum=1.5), "momentum"),
        (dict(train_steps=-1), "train_steps"),
        (dict(train_steps=0, eval_step=False), "eval_step"),
        (dict(distribution="cauchy"), "distribution"),
        (dict(scale=0.0), "scale"),
        (dict(specials=(("nan", 5, (0, 0)),)), "specials"),
        (dict(specials=(("nan", 0, (9, 0)),)), "specials"),
        (dict(specials=(("zero", 0, (0, 0)),)), "specials"),
        (dict(cumulative=True, track_running_stats=False), "cumulative"),
        (dict(affine="yes"), "affine"),
        (dict(seed=-3), "seed"),
    ],
)
def test_invalid_cases_name_the_field(bad, field):
    with pytest.raises(CaseError, match=f"field '{field}'"):
        Case(**{"shape": (8, 3), **bad})


def test_unknown_field_is_named():
    with pytest.raises(CaseError, match="momentun"):
        Case.from_dict({"shape": [8, 3], "momentun": 0.9})


def test_int_and_float_spellings_are_one_case():
    assert Case(shape=(8, 3), momentum=1, eps=0).id == Case(shape=(8, 3), momentum=1.0, eps=0.0).id


@pytest.mark.parametrize("specials", [[["nan", 0]], [["nan", "x", [0, 0]]], [["nan", 0, [0.5, 0]]], "nan"])
def test_malformed_specials_are_named(specials):
    with pytest.raises(CaseError, match="field 'specials'"):
        Case.from_dict({"shape": [8, 3], "specials": specials})
