"""Observed conventions: what each backend actually does, from targeted runs.

`crossbn conventions` runs the probes of `probes.py` on each backend, in its own worker process
(runner.BackendWorker, the same as the suite), reads each convention off the outputs (`infer.py`)
and sets it beside the backend's declaration (its `conventions`). Nothing is taken from
documentation: an observation that differs from the declaration is a finding.

One record (kind "observed-convention") per (backend, device, property) is appended to
`<out>/conventions.jsonl` as soon as the backend is done: the property, what was observed and
declared, whether they differ (`finding`), and the probes and numbers it was read from.

Design notes: docs/internals/oracle-and-verdict.md.
"""

from __future__ import annotations

import time

from crossbn.conventions import infer, probes
from crossbn.execution.runner import DEFAULT_TIMEOUT, BackendWorker, WorkerPool, device_problem, open_worker

__all__ = ["observe", "PROPERTIES"]
PROPERTIES = infer.PROPERTIES


def _run_probes(backend, worker: BackendWorker, device: str, timeout: float) -> dict:
    """{probe name: {"status", "message", "case", "facts", "seconds"}}."""
    ran = {}
    for probe in probes.PROBES:
        case, why = probe.choose(backend)
        entry = {"purpose": probe.purpose}
        if case is None:
            entry.update(status="unsupported", message=why, case=None, facts=None, seconds=0.0)
        else:
            inputs = probes.inputs_for(probe.name, case)
            outcome = worker.run(case, inputs, device, timeout)
            entry.update(
                status=outcome.status,
                message=outcome.message.splitlines()[0] if outcome.message else "",
                case=case,
                seconds=outcome.seconds,
                facts=None,
            )
            if outcome.status == "ok":
                entry["facts"] = probes.facts(probe.name, case, inputs, outcome.observables)
        ran[probe.name] = entry
    return ran


def read_property(key: str, backend, ran: dict) -> tuple[str, str]:
    """(observed, detail) for one property from the probes it reads."""
    sources = [ran[name] for name in infer.SOURCE[key]]
    if key == "hyperparameters":
        usable = {
            name: e["facts"]
            for name, e in zip(infer.SOURCE[key], sources)
            if e["status"] == "ok" and "missing" not in e["facts"]
        }
        cases = {name: e["case"] for name, e in zip(infer.SOURCE[key], sources)}
        return infer.hyperparameters(usable.get("train"), usable.get("eps"), cases)
    e = sources[0]
    if e["status"] == "unsupported" and e["case"] is not None and key in infer.OUTCOMES:
        # supports() accepted the case and the run refused it: the framework
        # raised on this input (adapters turn a documented refusal into Unsupported)
        return "error", e["message"]
    if e["status"] == "unsupported":
        return "n/a", f"unsupported: {e['message']}"
    if e["status"] != "ok":
        return e["status"], e["message"]
    if "missing" in e["facts"]:
        return "undetermined", e["facts"]["missing"]
    return infer.READERS[key](e["facts"], e["case"], backend)


def conclude(name: str, backend, description: dict, device: str, ran: dict) -> list[dict]:
    records = []
    for key in infer.PROPERTIES:
        observed, detail = read_property(key, backend, ran)
        said = infer.declared(backend, key)
        facts = ran[infer.SOURCE[key][0]]["facts"]
        records.append(
            {
                "kind": "observed-convention",
                "backend": name,
                "version": description.get("version", ""),
                "device": device,
                "device_name": description.get("devices", {}).get(device, ""),
                "property": key,
                "observed": observed,
                "declared": said,
                "finding": infer.differs(key, observed, said, facts),
                "detail": detail,
                "probe": {
                    p: {
                        "case_id": ran[p]["case"].id if ran[p]["case"] else None,
                        "case": ran[p]["case"].to_dict() if ran[p]["case"] else None,
                        **{k: ran[p][k] for k in ("purpose", "status", "message", "facts", "seconds")},
                    }
                    for p in infer.SOURCE[key]
                },
            }
        )
    return records


def observe(name: str, spec: str, backend, device: str = "cpu", timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
    """Every property's record for one backend on one device (runs its worker)."""
    start = time.perf_counter()
    pool = WorkerPool({name: spec}, {name: backend})
    try:
        worker, description, problem = open_worker(name, backend, pool, timeout)
        if problem is not None:
            verdict = "n/a" if problem[0] == "unsupported" else problem[0]
            return [_blank(name, device, key, verdict, problem[1]) for key in infer.PROPERTIES]
        why = device_problem(name, device, description)
        if why is not None:
            return [_blank(name, device, key, "n/a", why) for key in infer.PROPERTIES]
        ran = _run_probes(backend, worker, device, timeout)
    finally:
        pool.close()
    records = conclude(name, backend, description, device, ran)
    for r in records:
        r["seconds"] = time.perf_counter() - start
    return records


def _blank(name, device, key, observed, detail) -> dict:
    return {
        "kind": "observed-convention",
        "backend": name,
        "version": "",
        "device": device,
        "device_name": "",
        "property": key,
        "observed": observed,
        "declared": None,
        "finding": False,
        "detail": detail,
        "probe": {},
    }
