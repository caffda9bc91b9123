"""crossbn's cache (crossbn/records/cache.py): an unchanged output's judgement is
reused, one output bit changed is judged afresh, a corrupt entry is warned
about and ignored, and `crossbn run` reruns from it; real worker processes."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crossbn.backends import discover, load
from crossbn.execution.runner import WorkerPool
from crossbn.records import cache
from crossbn.spec.case import Case
from crossbn.verdict.judge import judge
from crossbn.verdict.root_causes import RootCauses

HERE = Path(__file__).resolve().parent
NUDGED = str(HERE / "backends" / "nudged.py")
ROOT = HERE.parent
# what a hit takes from the run at hand; everything else is the judgement
_FRESH = set(cache.FRESH) | {"cached"}


def _pool(nudge: bool):
    specs = {k: v for k, v in discover((NUDGED,)).items() if k == "planted-nudged"}
    backend = load(specs["planted-nudged"])
    backend.worker_env = {"CROSSBN_TEST_NUDGE": "1" if nudge else "0"}
    return WorkerPool(specs, {"planted-nudged": backend}), backend


@pytest.fixture(scope="module")
def pools():
    plain, nudged = _pool(False), _pool(True)
    yield plain, nudged
    plain[0].close()
    nudged[0].close()


# a correct backend: its results are matches, judged and cached like any other
CASES = [Case(shape=(8, 4, 5, 5), train_steps=2, eval_step=True, seed=s, suite="c", group="g") for s in range(3)]


def _run(pool_backend, judgements, causes=None):
    pool, backend = pool_backend
    return [
        judge(
            c,
            "planted-nudged",
            backend,
            "cpu",
            pool,
            timeout=120,
            causes=causes or RootCauses("grouped"),
            cache=judgements,
        )
        for c in CASES
    ]


def _judgement(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in _FRESH}


def test_an_unchanged_output_reuses_its_judgement(pools, tmp_path):
    judgements = cache.Judgements(tmp_path)
    first = _run(pools[0], judgements)
    assert judgements.misses == 3 and judgements.hits == 0
    again = _run(pools[0], judgements)
    assert judgements.hits == 3
    for a, b in zip(first, again):
        assert "cached" not in a and b["cached"] is True
        assert json.loads(json.dumps(_judgement(b))) == json.loads(json.dumps(_judgement(a)))
        assert "oracle" not in b["timings"] and "oracle" in a["timings"]  # not judged again
        assert b["backend_seconds"] > 0  # the backend still ran


def test_one_changed_output_bit_is_judged_afresh(pools, tmp_path):
    judgements = cache.Judgements(tmp_path)
    plain = _run(pools[0], judgements)
    nudged = _run(pools[1], judgements)
    assert all("cached" not in r for r in nudged), "a changed bit must not reuse a judgement"
    for a, b in zip(plain, nudged):
        assert a["digests"]["train0.y"] != b["digests"]["train0.y"]
        assert a["digests"]["train0.dx"] == b["digests"]["train0.dx"]
        assert b["observables"]["train0.y"]["max_ulp"] > 0  # its own comparison, with the nudge in it


def test_a_corrupt_entry_is_warned_about_ignored_and_rewritten(pools, tmp_path):
    judgements = cache.Judgements(tmp_path)
    first = _run(pools[0], judgements)
    entries = sorted((tmp_path / "judgements").rglob("*.json.gz"))
    assert len(entries) == 3
    entries[0].write_bytes(b"not gzip")
    entries[1].write_bytes(gzip.compress(b'{"schema": 1, "record": '))  # truncated JSON
    entries[2].write_bytes(gzip.compress(json.dumps({"schema": 999, "record": {}}).encode()))
    with pytest.warns(cache.CacheWarning) as caught:
        again = _run(pools[0], judgements)
    assert len(caught) == 3 and all("judged afresh" in str(w.message) for w in caught)
    assert all("cached" not in r for r in again)
    assert [_judgement(r)["verdict"] for r in again] == [r["verdict"] for r in first]
    third = _run(pools[0], judgements)  # rewritten whole
    assert all(r.get("cached") for r in third)


def test_the_key_covers_what_the_judgement_depends_on():
    base = dict(
        case=CASES[0],
        backend="b",
        device="cpu",
        description={"version": "1"},
        mode="grouped",
        inputs={"x0": "a"},
        outputs={"train0.y": "b"},
    )
    k = cache.key(**base)
    for field, other in (
        ("case", CASES[1]),
        ("backend", "c"),
        ("device", "cuda"),
        ("description", {"version": "2"}),
        ("mode", "each"),
        ("inputs", {"x0": "z"}),
        ("outputs", {"train0.y": "c"}),
    ):
        assert cache.key(**{**base, field: other}) != k, field
    assert cache.key(**base) == k


def _crossbn(*args, env_extra=None, cwd=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "crossbn", *args], capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=600
    )


def test_cache_info_and_clear(tmp_path):
    judgements = cache.Judgements(tmp_path)
    judgements.put("ab" * 32, {"verdict": "match", "seconds": 1.0})
    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "entry").write_bytes(b"x" * 2048)
    info = _crossbn("cache", "info", "--dir", str(tmp_path))
    assert info.returncode == 0, info.stderr
    rows = {line.split()[0]: line.split()[1] for line in info.stdout.splitlines()[1:]}
    assert rows["judgements"] == "1" and rows["jax"] == "1" and rows["inductor"] == "0" and rows["total"] == "2"
    cleared = _crossbn("cache", "clear", "--dir", str(tmp_path))
    assert cleared.returncode == 0 and not (tmp_path / "judgements").exists() and not (tmp_path / "jax").exists()
    off = _crossbn("cache", "info", env_extra={"CROSSBN_CACHE": "off"})
    assert off.returncode == 2 and "off" in off.stderr


@pytest.mark.slow
def test_crossbn_run_twice_reuses_every_judgement_and_jax_compilations(tmp_path):
    """The whole path: `crossbn run` on the smoke suite, then again on the
    same releases: every judged result comes from the cache with the same
    verdict, and JAX kept its compilations under the cache's root."""
    root = tmp_path / "cache"
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        r = _crossbn(
            "run",
            "--suite",
            "smoke",
            "--backends",
            "onnxruntime-opset15,flax-linen-jit",
            "-n",
            "0",
            "--no-conventions",
            "--progress",
            "off",
            "--cache",
            str(root),
            "--out",
            str(out),
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        runs.append({(x["case_id"], x["backend"]): x for x in map(json.loads, (out / "results.jsonl").open())})
    judged = [k for k, rec in runs[0].items() if rec["verdict"] != "unsupported"]
    assert judged and all("cached" not in runs[0][k] for k in judged)
    assert all(runs[1][k].get("cached") for k in judged)
    assert all(runs[1][k]["verdict"] == runs[0][k]["verdict"] for k in runs[0])
    assert any((root / "jax").iterdir()), "JAX's persistent compilation cache is not under the cache root"
    off = tmp_path / "off"
    r = _crossbn(
        "run",
        "--suite",
        "smoke",
        "--backends",
        "onnxruntime-opset15",
        "-n",
        "0",
        "--no-conventions",
        "--progress",
        "off",
        "--cache",
        str(root),
        "--no-cache",
        "--out",
        str(off),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not any(x.get("cached") for x in map(json.loads, (off / "results.jsonl").open()))
