"""The loaders of user files under generated input (issue #9): catalogues,
known-differences files, results and baselines either load or raise their
documented error (CatalogueError, KnownError, ResultsError, BaselineError),
never anything else. Where the input is known to be good (a catalogue built
from valid values, results cut at a byte offset) the outcome is exact.

Each example writes one file into a directory shared by the module's
examples (Hypothesis runs a test's examples in one call of it).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from crossbn.records import known
from crossbn.records.results import SCHEMA, ResultsError, read
from crossbn.spec.case import DISTRIBUTIONS, LAYOUTS, OPTIONS
from crossbn.spec.catalogue import CatalogueError
from crossbn.spec.dtypes import NAMES as DTYPES
from crossbn.spec.network_case import FIELDS as MODEL_FIELDS
from crossbn.spec.suites import load_suite
from crossbn.upgrade import baseline

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def work():
    d = Path(tempfile.mkdtemp(prefix="crossbn-loaders-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- TOML text, written here (tomllib only reads)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def _value(v) -> str:
    """Inline TOML for a value: JSON's string escapes are TOML's too."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(_value, v)) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict) -> str:
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in doc.items())


# ---------------------------------------------------------------- catalogues

SHAPES = st.integers(2, 5).flatmap(lambda r: st.lists(st.integers(1, 4), min_size=r, max_size=r))
# Field -> values that make a valid case whatever the other fields are.
VALID_VALUES = {
    "shape": SHAPES,
    "layout": st.sampled_from(LAYOUTS),
    "dtype": st.sampled_from(DTYPES),
    "eps": st.one_of(st.just(0.0), st.floats(1e-12, 1.0)),
    "momentum": st.floats(0.0, 1.0),
    "affine": st.booleans(),
    "gradients": st.booleans(),
    "train_steps": st.integers(1, 3),
    "distribution": st.sampled_from(DISTRIBUTIONS),
    "scale": st.floats(1e-3, 1e3),
    "offset_ratio": st.floats(-100, 100),
    "seed": st.integers(0, 2**31),
    "options": st.fixed_dictionaries({}, optional={k: st.booleans() for k in OPTIONS}),
}


@st.composite
def valid_catalogues(draw) -> tuple[dict, list[dict]]:
    """A catalogue document and, per group, {field: the values it may take}."""
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True), min_size=1, max_size=3, unique=True))
    defaults = draw(st.fixed_dictionaries({}, optional={k: VALID_VALUES[k] for k in ("dtype", "eps", "seed")}))
    doc, allowed = ({"defaults": defaults} if defaults else {}), []
    groups = []
    for name in names:
        fields = draw(st.lists(st.sampled_from(sorted(VALID_VALUES)), max_size=4, unique=True))
        split = draw(st.integers(0, len(fields)))
        fixed = {f: draw(VALID_VALUES[f]) for f in fields[:split]}
        axes = {f: draw(st.lists(VALID_VALUES[f], min_size=1, max_size=2)) for f in fields[split:]}
        group = {"name": name, **fixed, **({"axes": axes} if axes else {})}
        groups.append(group)
        allowed.append({**{k: [v] for k, v in defaults.items()}, **{k: [v] for k, v in fixed.items()}, **axes})
    doc["group"] = groups
    return doc, allowed


def _load(work: Path, text: str | bytes, name: str = "gen"):
    path = work / f"{name}.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return load_suite(str(path))


def _same(declared, value) -> bool:
    """A catalogue's value and the Case field it became (lists become tuples,
    numbers floats, options default-free pairs)."""
    if isinstance(declared, dict):
        return dict(value) == {k: v for k, v in declared.items() if v != OPTIONS[k]}
    if isinstance(declared, list):
        return tuple(declared) == value
    return declared == value


@SETTINGS
@given(valid_catalogues())
def test_a_valid_catalogue_loads_with_the_declared_values(work, catalogue):
    doc, allowed = catalogue
    cases = _load(work, _toml(doc))
    # every group contributes at least one case and at most its axes' product (equal ones kept once)
    assert 1 <= len(cases) <= sum(math.prod(len(v) for v in a.values()) for a in allowed)
    for case in cases:
        values = allowed[[g["name"] for g in doc["group"]].index(case.group)]
        for field, options in values.items():
            if field == "layout" and case.rank == 2:
                continue  # (N, C) has one layout, spelled channels_first
            assert any(_same(o, getattr(case, field)) for o in options), (field, options, getattr(case, field))


def _mutate(text: str, data) -> str:
    """One edit a careless hand or a broken copy makes."""
    kind = data.draw(st.sampled_from(["cut", "delete", "insert", "replace"]))
    i = data.draw(st.integers(0, len(text)))
    if kind == "cut":
        return text[:i]
    if kind == "delete":
        return text[:i] + text[i + data.draw(st.integers(1, 8)) :]
    junk = data.draw(
        st.one_of(
            st.sampled_from(
                [
                    '"',
                    "'",
                    "[",
                    "]",
                    "{",
                    "}",
                    "=",
                    "\n",
                    ",",
                    "#",
                    "[[group]]\n",
                    "-1",
                    "0",
                    "nan",
                    "true",
                    '"x"',
                    "[]",
                    "{}",
                    "1979-05-27",
                    "\\",
                    "\x00",
                    "\ufeff",
                    "axes",
                    "name",
                ]
            ),
            st.text(max_size=6),
        )
    )
    return text[:i] + junk + text[i + (data.draw(st.integers(1, 6)) if kind == "replace" else 0) :]


@SETTINGS
@given(valid_catalogues(), st.data())
def test_a_mutated_catalogue_loads_or_is_a_catalogue_error(work, catalogue, data):
    text = _mutate(_toml(catalogue[0]), data)
    try:
        _load(work, text)
    except CatalogueError:
        pass


# Values of any TOML type, small; keys from what catalogues use, and others.
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(list(DTYPES) + list(LAYOUTS) + ["nan", "found", "smoke", "x.toml"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)
CASE_KEYS = sorted(VALID_VALUES) + [
    "cumulative",
    "track_running_stats",
    "eval_step",
    "specials",
    "name",
    "axes",
    "description",
    "suite",
    "group",
]


def _tables(keys):
    return st.dictionaries(
        st.sampled_from(keys),
        st.one_of(
            VALUES,
            SHAPES,
            st.lists(SHAPES, max_size=2),
            st.dictionaries(st.sampled_from(keys), st.lists(VALUES, max_size=2), max_size=2),
        ),
        max_size=5,
    )


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "group": st.one_of(st.lists(_tables(CASE_KEYS), max_size=3), VALUES),
            "defaults": st.one_of(_tables(CASE_KEYS), VALUES),
            "include": st.one_of(
                st.lists(st.sampled_from(["smoke", "nosuch", "gen.toml", "other.toml", ""]), max_size=2), VALUES
            ),
            "model": st.one_of(st.lists(_tables(sorted(MODEL_FIELDS) + ["name", "axes"]), max_size=2), VALUES),
            "wat": VALUES,
        },
    )
)
def test_any_toml_document_loads_or_is_a_catalogue_error(work, doc):
    try:
        _load(work, _toml(doc))
    except CatalogueError:
        pass


@SETTINGS
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_any_bytes_load_or_are_a_catalogue_error(work, data):
    try:
        _load(work, data)
    except CatalogueError:
        pass


# ---------------------------------------------------------------- known-differences files

KNOWN_KEYS = [
    "backend",
    "case",
    "device",
    "observable",
    "verdict",
    "dtype",
    "stage",
    "formulation",
    "version",
    "reason",
    "link",
    "other",
]


@SETTINGS
@given(
    st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "known": st.one_of(
                    st.lists(
                        st.dictionaries(
                            st.sampled_from(KNOWN_KEYS),
                            st.one_of(st.text(max_size=8), st.sampled_from(["deviation", "match"]), VALUES),
                            max_size=6,
                        ),
                        max_size=3,
                    ),
                    VALUES,
                ),
                "other": VALUES,
            },
        ).map(_toml),
        st.text(max_size=200),
        st.binary(max_size=200),
    )
)
def test_any_known_differences_file_loads_or_is_a_known_error(work, data):
    path = work / "known.toml"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    try:
        entries = known.load(path)
    except known.KnownError:
        return
    assert all(isinstance(e.backend, str) and e.backend and e.reason for e in entries)


# ---------------------------------------------------------------- results files

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
RECORDS = st.lists(
    st.fixed_dictionaries(
        {
            "schema": st.integers(1, SCHEMA),
            "case_id": st.text(min_size=1, max_size=12),
            "backend": st.sampled_from(["torch", "keras-jax", "onnxruntime-opset15", "mine"]),
            "device": st.sampled_from(["cpu", "cuda"]),
            "verdict": st.sampled_from(
                ["match", "deviation", "convention", "nan-mismatch", "crash", "error", "unsupported"]
            ),
        },
        optional={"pytest_id": st.text(max_size=20), "version": st.text(max_size=6), "extra": JSON},
    ),
    max_size=5,
)


def _line(record) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()  # UTF-8: a cut may split a character


def _jsonl(records) -> bytes:
    return b"".join(_line(r) + b"\n" for r in records)


def _results_file(work: Path, data: bytes) -> Path:
    path = work / "run" / "results.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _whole_lines(records, cut: int) -> list[dict]:
    """The records whose line a file cut after `cut` bytes still holds in
    full (the last one may have lost only its newline)."""
    kept, end = [], 0
    for r in records:
        end += len(_line(r))
        if end > cut:
            break
        kept.append(r)
        end += 1  # its newline
    return kept


@SETTINGS
@given(RECORDS, st.data())
def test_results_cut_anywhere_read_as_the_whole_lines_before_the_cut(work, records, data):
    """What a killed writer leaves is never an error, and loses only the line it cut."""
    whole = _jsonl(records)
    cut = data.draw(st.integers(0, len(whole)))
    assert read(_results_file(work, whole[:cut])) == _whole_lines(records, cut)


@SETTINGS
@given(RECORDS.filter(bool), st.data())
def test_a_record_of_a_newer_schema_is_refused_naming_its_line(work, records, data):
    i = data.draw(st.integers(0, len(records) - 1))
    records[i] = {**records[i], "schema": SCHEMA + data.draw(st.integers(1, 10**6))}
    with pytest.raises(ResultsError, match=rf"results\.jsonl:{i + 1}: schema: written by a newer crossbn"):
        read(_results_file(work, _jsonl(records)))


def _readers(path: Path):
    """Each reader of a results file, with the one error it may raise."""
    from crossbn.records import sources

    yield read, ResultsError
    yield (lambda p: sources.load([str(p)])), sources.ReportError
    yield (lambda p: baseline.load(str(p), root=p.parent / "no-baselines")), baseline.BaselineError


def _corrupt(data: bytes, draw) -> bytes:
    i = draw(st.integers(0, len(data)))
    junk = draw(
        st.one_of(
            st.binary(max_size=8),
            st.sampled_from(
                [
                    b"\n",
                    b"{",
                    b"}",
                    b'"',
                    b"\xff",
                    b"[1]\n",
                    b"null\n",
                    b'{"schema": 99}\n',
                    b'{"schema": "1"}\n',
                    b"\r\n",
                ]
            ),
        )
    )
    return data[:i] + junk + data[i + draw(st.integers(0, 4)) :]


@SETTINGS
@given(RECORDS, st.data())
def test_corrupted_or_garbage_results_load_or_raise_the_documented_error(work, records, data):
    raw = data.draw(st.one_of(st.builds(lambda: None), st.binary(max_size=120)))
    body = _corrupt(_jsonl(records), data.draw) if raw is None else raw
    path = _results_file(work, body)
    for reader, error in _readers(path):
        try:
            reader(path)
        except error:
            pass


# ---------------------------------------------------------------- baselines


@SETTINGS
@given(RECORDS, st.data())
def test_a_baseline_cut_anywhere_loads_its_whole_lines_or_is_a_baseline_error(work, records, data):
    """Unlike results, nothing appends to a baseline: a cut mid-line is damage, named."""
    root = work / "baselines"
    shutil.rmtree(root, ignore_errors=True)
    folder = baseline.save("b", str(_results_file(work, _jsonl(records))), root=root)
    written = (folder / "baseline.jsonl").read_bytes()
    lines = written.split(b"\n")[:-1]  # every entry line ends in a newline
    cut = data.draw(st.integers(0, len(written)))
    (folder / "baseline.jsonl").write_bytes(written[:cut])
    full = written[:cut].count(b"\n")
    tail = written[:cut].rsplit(b"\n", 1)[-1]  # what is left of the line the cut falls in
    complete = bool(tail) and tail == lines[full]  # only its newline lost
    try:
        loaded = baseline.load("b", root=root)
    except baseline.BaselineError as e:
        assert tail and not complete, f"a cut between lines refused: {e}"
        assert f"baseline.jsonl:{full + 1}: not JSON" in str(e) and "truncated?" in str(e)
        return
    assert not tail or complete, "a line cut short loaded"
    kept = [json.loads(line) for line in lines[: full + complete]]
    assert set(loaded) == {(e["case_id"], e["backend"], e["device"]) for e in kept}


@SETTINGS
@given(RECORDS, st.data())
def test_a_corrupted_baseline_loads_or_is_a_baseline_error(work, records, data):
    root = work / "baselines"
    shutil.rmtree(root, ignore_errors=True)
    folder = baseline.save("b", str(_results_file(work, _jsonl(records))), root=root)
    target = folder / data.draw(st.sampled_from(["baseline.jsonl", "meta.json"]))
    raw = data.draw(
        st.one_of(
            st.builds(lambda: None),
            st.binary(max_size=120),
            JSON.map(lambda v: json.dumps(v).encode()),
            st.integers(-3, 10**6).map(lambda s: json.dumps({"schema": s}).encode()),
        )
    )
    target.write_bytes(_corrupt(target.read_bytes(), data.draw) if raw is None else raw)
    try:
        baseline.load("b", root=root)
    except baseline.BaselineError:
        pass
