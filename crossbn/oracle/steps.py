"""The step driver: what each step of a case does, decided once for every simulator.

`plan` turns a case and the conventions in force (how a frozen layer trains,
what an empty batch does to the running statistics) into one `Step` per step:
which statistics normalize, whether the running ones change and how.
expected.py (the exact oracle) and formulation.py (a framework's formulation
in its own dtypes) both walk this plan and differ only in their arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

EMPTY_BATCH = ("nan", "skip")
FROZEN = ("batch", "inference")


@dataclass(frozen=True)
class Step:
    index: int  # 0, 1, ...: the inputs' x<index>, dy<index>
    name: str  # "train0", ..., "eval"
    as_inference: bool  # a frozen layer's training step run as inference: the running statistics, read and kept
    use_batch: bool  # normalized with the batch's own statistics (else the running ones)
    training: bool  # use_batch on a training step: its statistics are observables and feed the running ones
    # how the running statistics change: None (none kept, or not a training step), "kept" (an empty batch
    # under empty_batch="skip"), "cumulative" (their average over `count` batches) or "momentum"
    update: str | None
    count: int  # the batches averaged so far, this one included (cumulative)


def plan(case, *, frozen: str = "batch", empty_batch: str = "nan") -> list[Step]:
    if empty_batch not in EMPTY_BATCH:
        raise ValueError(f"empty_batch must be one of {EMPTY_BATCH}, not {empty_batch!r}")
    if frozen not in FROZEN:
        raise ValueError(f"frozen must be one of {FROZEN}, not {frozen!r}")
    out = []
    for k, name in enumerate(case.steps):
        as_inference = bool(case.frozen) and frozen == "inference" and name != "eval"
        use_batch = (name != "eval" and not as_inference) or not case.track_running_stats
        training = use_batch and name != "eval"
        update = None
        if training and case.track_running_stats:
            if case.reduction_size == 0 and empty_batch == "skip":
                update = "kept"  # the statistics of no values are never formed
            else:
                update = "cumulative" if case.cumulative else "momentum"
        out.append(Step(k, name, as_inference, use_batch, training, update, k + 1))
    return out
