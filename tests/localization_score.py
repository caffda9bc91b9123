"""The planted faults, where each is planted, and what localization must say.

Used by tests/test_localize.py (one test per plant) and runnable on its own
for the score table in docs/localization.md:

    .venv/bin/python tests/localization_score.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLANTED = str(HERE / "backends" / "planted.py")

_BASE = dict(shape=(8, 4, 5, 5), train_steps=2, eval_step=True, seed=3)

# plant -> (case fields over _BASE, expected stage, expected fingerprint changes or None)
# Fingerprint changes are relative to the backend's documented semantics;
# None: no formulation applies (a plain bug), so none is required.
PLANTS = {
    "mean": ({}, "batch mean", None),
    "mean-hidden": ({}, "batch mean", None),
    "var": ({}, "batch variance", None),
    "var-hidden": ({}, "batch variance", None),
    "invstd": ({}, "inverse std", None),
    "invstd-hidden": ({}, "inverse std", None),
    "normalized": ({}, "normalized", None),
    "affine": ({}, "affine output", None),
    "affine-hidden": ({}, "affine output", None),
    "running-mean": ({}, "running mean", None),
    "running-var": ({}, "running variance", None),
    "eval-batch-stats": ({}, "eval statistics", None),
    "dbeta": ({}, "dbeta", None),
    "dgamma": ({}, "dgamma", None),
    "dx": ({}, "dx", None),
    "one-pass": ({"offset_ratio": 1000.0}, "batch variance", {"variance": "one-pass"}),
    "one-pass-hidden": ({"offset_ratio": 1000.0}, "batch variance", {"variance": "one-pass"}),
    "eps-outside": ({"eps": 1e-3, "distribution": "near_eps"}, "inverse std", {"eps_in_root": False}),
    "unbiased-normalization": ({"shape": (4, 3)}, "inverse std", {"norm_var": "unbiased"}),
    "bessel": ({}, "running variance", {"running_var": "unbiased"}),
    "momentum-new": ({}, "running mean", {"momentum": "new"}),
    "clamped-eps": ({"eps": 1e-8, "distribution": "near_eps"}, "inverse std", {"eps_floor": 1e-5}),
    "half-reductions": (
        {"dtype": "float16", "shape": (64, 4, 8, 8), "offset_ratio": 4.0},
        "batch mean",
        {"reduce": "float16"},
    ),
    "float32-compute": ({"dtype": "float64"}, "batch mean", {"compute": "float32"}),
    # computed in float16: the statistics come back in float16 and are within
    # its rounding; the elementwise normalization is where float16 first shows
    # (NumPy's float16 sums accumulate in float32: reduce=float32)
    "float16-compute": ({"dtype": "float16"}, "normalized", {"compute": "float16", "reduce": "float32"}),
    "folded-affine-f16": (
        {"dtype": "float16", "offset_ratio": 8.0},
        "normalized",
        {"compute": "float16", "reduce": "float32", "affine": "folded"},
    ),
    "divide-f16": (
        {"dtype": "float16"},
        "normalized",
        {"compute": "float16", "reduce": "float32", "normalize": "divide"},
    ),
    "welford-f16": (
        {"dtype": "float16", "offset_ratio": 8.0},
        "batch variance",
        {"compute": "float16", "variance": "welford"},
    ),
    # first visible in the eval step: the stage is tested there, not inferred from where it showed
    "invstd-eval": ({}, "inverse std", None),
    "normalized-eval": ({}, "normalized", None),
    "affine-eval": ({}, "affine output", None),
    "running-mean-hidden": ({}, "running mean", None),
    "running-var-hidden": ({}, "running variance", None),
    "eval-batch-stats-hidden": ({}, "eval statistics", None),
    "invstd-eval-only": ({"train_steps": 0}, "inverse std", None),
    # formulations as frameworks do them
    "one-pass-unclamped": (  # NumPy sums the rank-2 batch axis row after row: sequentially
        {"offset_ratio": 1e4, "shape": (64, 4)},
        "batch variance",
        {"variance": "one-pass-unclamped", "order": "sequential"},
    ),
    "one-pass-sequential": (
        {"offset_ratio": 1000.0, "shape": (64, 4)},
        "batch variance",
        {"variance": "one-pass", "order": "sequential"},
    ),
    "input-f16-half-reductions": ({"offset_ratio": 4.0}, "batch mean", {"input": "float16", "reduce": "float16"}),
    # where the fit is hardest: a bfloat16 output rounds large values by far more than small
    # ones; a NaN or infinity both sides have; two values a channel, which any scale and offset fit
    "invstd-hidden-bf16": ({"dtype": "bfloat16", "train_steps": 0}, "inverse std", None),
    "running-mean-nonfinite": ({"shape": (8, 3, 4), "specials": (("inf", 0, (1, 1, 2)),)}, "running mean", None),
    "normalized-two-a-channel": ({"dtype": "float64", "shape": (2, 5), "seed": 0}, "normalized", None),
    # a bfloat16 batch at 1e4 sigma: its own and the running statistics alike within rounding
    "dx-bf16-far-offset": ({"dtype": "bfloat16", "offset_ratio": 1e4, "shape": (16, 4, 6, 6)}, "dx", None),
}
# plant -> the planted backend it runs on, where that is not planted-<plant>
BACKEND = {
    "invstd-eval-only": "invstd-eval",
    "invstd-hidden-bf16": "invstd-hidden",
    "running-mean-nonfinite": "running-mean-hidden",
    "normalized-two-a-channel": "normalized",
    "dx-bf16-far-offset": "dx",
}


def plant_case(plant: str):
    from crossbn.spec.case import Case

    fields, _, _ = PLANTS[plant]
    return Case(**{**_BASE, **fields, "suite": "planted", "group": plant})


def judge_plant(plant: str, pool, backends) -> dict:
    from crossbn.verdict.judge import judge

    name = f"planted-{BACKEND.get(plant, plant)}"
    return judge(plant_case(plant), name, backends[name], "cpu", pool, timeout=120)


def outcome(plant: str, record: dict) -> dict:
    """detected / localized / fingerprinted for one plant's record."""
    _, stage, changes = PLANTS[plant]
    loc = record.get("localization") or {}
    diag = record.get("diagnosis") or {}
    return {
        "detected": record["verdict"] in ("deviation", "nan-mismatch", "convention"),
        "localized": loc.get("stage") == stage,
        "fingerprinted": None if changes is None else diag.get("changes") == changes,
        "stage": loc.get("stage"),
        "how": loc.get("how"),
        "formulation": diag.get("formulation"),
        "explains": diag.get("explains"),
        "margin": diag.get("margin"),
    }


def pool_and_backends():
    from crossbn.backends import discover, load
    from crossbn.execution.runner import WorkerPool

    specs = {k: v for k, v in discover((PLANTED,)).items() if k.startswith("planted-")}
    backends = {n: load(s) for n, s in specs.items()}
    return WorkerPool(specs, backends), backends


def main() -> int:
    pool, backends = pool_and_backends()
    rows, totals = [], {"detected": 0, "localized": 0, "fingerprinted": 0, "formulations": 0}
    try:
        for plant in PLANTS:
            o = outcome(plant, judge_plant(plant, pool, backends))
            totals["detected"] += o["detected"]
            totals["localized"] += o["localized"]
            if o["fingerprinted"] is not None:
                totals["formulations"] += 1
                totals["fingerprinted"] += o["fingerprinted"]
            rows.append((plant, o))
    finally:
        pool.close()
    print("| plant | detected | stage (how) | fingerprint |")
    print("|---|---|---|---|")
    for plant, o in rows:
        fp = (
            ""
            if o["fingerprinted"] is None
            else ("right: " if o["fingerprinted"] else "WRONG: ") + str(o["formulation"])
        )
        print(
            f"| {plant} | {'yes' if o['detected'] else 'NO'} | {o['stage']} ({o['how']})"
            f"{'' if o['localized'] else ' WRONG'} | {fp} |"
        )
    n = len(PLANTS)
    print(
        f"\ndetected {totals['detected']}/{n}, correctly localized {totals['localized']}/{n}, "
        f"fingerprint names the planted formulation {totals['fingerprinted']}/{totals['formulations']}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
