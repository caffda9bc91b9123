"""`crossbn run --resume DIR` (`--crossbn-resume`): finish an interrupted run.

What is done is what DIR's records say: each (case, backend, device) with a
record is not run again, except a `crash` or `timeout` verdict: killing a
backend's worker process, or the machine stalling under the kill, looks
exactly like one, so those run again (a real crash then crashes again and is
recorded again). Before the run the controller gathers every record DIR
holds (its `results.jsonl` and its part files) into one part file,
`results-earlier.jsonl`, and removes the rest; every process then reads the
done keys from that file and deselects their tests. The run's options are
DIR's own, from run.json's `options`, so the resumed run selects the same
tests; at its end DIR holds the results an uninterrupted run would have.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossbn.records import environment, store

RERUN = ("crash", "timeout")
EARLIER = "results-earlier.jsonl"


class ResumeError(ValueError):
    """DIR cannot be resumed; the message says why and what to do."""


def run_options(folder: Path) -> dict:
    """The options DIR's run was started with (run.json `options`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResumeError(f"--resume {folder}: no such folder")
    info = environment.read(folder)
    if info is None:
        raise ResumeError(
            f"--resume {folder}: no run.json there (not a crossbn run folder, or the run was "
            f"killed before it started: run it again without --resume)"
        )
    options = info.get("options")
    if not isinstance(options, dict):
        raise ResumeError(
            f"--resume {folder}: its run.json records no options (written by an older crossbn); "
            f"run it again without --resume"
        )
    return options


def prepare(folder: Path) -> dict:
    """Gather DIR's records into `results-earlier.jsonl`, dropping crash and
    timeout records (to run again); returns {"kept": n, "rerun": n}."""
    from crossbn.records.results import key, read

    folder = Path(folder)
    records: dict[tuple, dict] = {}
    sources = [p for p in (folder / store.RESULTS_FILE,) if p.is_file()] + store.parts(folder)
    for path in sources:
        for r in read(path):
            records[key(r)] = r
    keep = [records[k] for k in sorted(records) if records[k].get("verdict") not in RERUN]
    store.write_whole(folder / EARLIER, keep)
    for path in sources:
        if path.name != EARLIER:
            path.unlink(missing_ok=True)
    return {"kept": len(keep), "rerun": len(records) - len(keep)}


def done(folder: Path) -> set[tuple]:
    """The (case id, backend, device) keys DIR's earlier records hold."""
    path = Path(folder) / EARLIER
    if not path.is_file():
        return set()
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
                out.add((r["case_id"], r["backend"], r["device"]))
            except (ValueError, KeyError, TypeError):
                continue  # prepare wrote the file whole; a line it did not write is no record
    return out
