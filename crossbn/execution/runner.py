"""Backends in isolated worker processes, through execnet.

One worker process per backend (per pytest process, `BackendWorker`, kept in a `WorkerPool`); arrays cross as
named dtype + bytes (`wire.py`), never pickled. A call returns an `Outcome` (ok, unsupported, error, crash or
timeout); it never raises for the framework's sake, and a worker that crashed, timed out or grew past its memory
limit is replaced by a fresh one for the next call.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import execnet

from crossbn.execution import wire, worker as _worker

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])  # where the worker imports crossbn from
DEFAULT_TIMEOUT = 300.0


@dataclass
class Outcome:
    status: str  # ok | unsupported | error | crash | timeout
    observables: dict = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    description: dict = field(default_factory=dict)  # reply to "describe"
    info: dict = field(default_factory=dict)  # the backend's `run_info` (JSON data)


class BackendWorker:
    """A lazily started worker process serving one backend."""

    def __init__(
        self, name: str, spec: str, env: dict[str, str], python: str | None = None, max_bytes: int | None = None
    ):
        self.name, self.spec, self.env, self.python = name, spec, dict(env), python or sys.executable
        self.max_bytes = max_bytes
        self.recycled = 0
        self._group: execnet.Group | None = None
        self._channel = None
        self._description: dict | None = None

    def _start(self) -> None:
        self._group = execnet.Group()
        env = "".join(f"//env:{k}={v}" for k, v in self.env.items())
        gw = self._group.makegateway(f"popen//python={self.python}{env}")
        self._channel = gw.remote_exec(_worker)
        self._channel.send((PROJECT_ROOT, self.spec))

    def stop(self) -> None:
        if self._group is not None:
            self._group.terminate(timeout=2.0)
        self._group = self._channel = None

    def request(self, message: dict, timeout: float) -> Outcome:
        try:
            if self._channel is None:
                self._start()
            self._channel.send(message)
            reply = self._channel.receive(timeout=timeout)
        except execnet.TimeoutError:
            self.stop()
            return Outcome("timeout", message=f"{self.name}: no reply within {timeout:g} s; worker killed")
        except (EOFError, OSError, execnet.RemoteError, execnet.HostNotFound, execnet.DataFormatError) as e:
            self.stop()
            return Outcome("crash", message=f"{self.name}: worker process died: {type(e).__name__}: {e}".strip())
        status = reply.get("status", "error")
        message = reply.get("message", "")
        if reply.get("traceback"):
            message += "\n" + reply["traceback"]
        info = dict(reply.get("info", {}))
        rss = reply.get("rss") or 0
        if self.max_bytes is not None and rss > self.max_bytes:
            self.stop()  # what the framework kept goes with the process; the next request starts afresh
            self.recycled += 1
            info["worker_recycled_mb"] = round(rss / 2**20)
        return Outcome(
            status,
            wire.decode(reply.get("observables", {})),
            message,
            reply.get("seconds", 0.0),
            reply.get("describe", {}),
            info,
        )

    def describe(self, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """{"version": ..., "devices": {device: name}, "python": ...}, or
        {"unavailable": why} (its framework is not installed in the worker's
        interpreter), or {"error": why}; cached."""
        if self._description is None or "error" in self._description:
            outcome = self.request({"op": "describe"}, timeout)
            if outcome.status == "ok":
                self._description = outcome.description
            elif outcome.status == "unsupported":
                self._description = {"unavailable": outcome.message}
            else:
                self._description = {"error": f"{outcome.status}: {outcome.message}"}
        return self._description

    def run(self, case, inputs: dict, device: str, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
        return self.request(
            {"op": "run", "case": case.to_dict(), "device": device, "inputs": wire.encode(inputs)}, timeout
        )

    def run_model(self, model_case, inputs: dict, device: str, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
        """The models suite: every layer's hidden state per step, as `observables`."""
        return self.request(
            {"op": "run_model", "case": model_case.to_dict(), "device": device, "inputs": wire.encode(inputs)}, timeout
        )


class WorkerPool:
    """The worker processes of one pytest process, started on first use."""

    def __init__(self, specs: dict[str, str], backends: dict, worker_max_bytes: int | None = None):
        self._specs, self._backends = specs, backends
        self._max_bytes = worker_max_bytes
        self._workers: dict[str, BackendWorker] = {}

    def worker(self, name: str) -> BackendWorker:
        if name not in self._workers:
            b = self._backends[name]
            self._workers[name] = BackendWorker(name, self._specs[name], b.worker_env, b.interpreter, self._max_bytes)
        return self._workers[name]

    def has(self, name: str) -> bool:
        return name in self._specs

    def close(self) -> None:
        for w in self._workers.values():
            w.stop()
        self._workers.clear()


def open_worker(name: str, backend, pool: WorkerPool, timeout: float):
    """The worker of a backend, started and described: (worker, description,
    None), or (None, description, (verdict, reason)) when no case can run on
    it (its framework is not installed, the worker did not start)."""
    missing = backend.available()
    if missing is not None:
        return None, {}, ("unsupported", f"backend unavailable: {missing}")
    worker = pool.worker(name)
    description = worker.describe(timeout)
    if "unavailable" in description:
        where = f" (in {backend.interpreter})" if backend.interpreter else ""
        return None, description, ("unsupported", f"backend unavailable{where}: {description['unavailable']}")
    if "error" in description:
        return None, description, ("crash", f"worker failed to start: {description['error']}")
    return worker, description, None


def device_problem(name: str, device: str, description: dict) -> str | None:
    if device in description["devices"]:
        return None
    return f"device '{device}' is not available to {name} here (has: {', '.join(description['devices'])})"


def other_release(backend, device: str, pool: WorkerPool, timeout: float):
    """Side by side: the worker of the release this backend is compared with
    (`Backend.compare_with`) and its description, or (None, a `cross_version`
    saying why it cannot run this device); (None, None) when there is none."""
    if not backend.compare_with or not pool.has(backend.compare_with):
        return None, None
    other = pool.worker(backend.compare_with)
    description = other.describe(timeout)
    if "version" not in description or device not in description["devices"]:
        why = description.get("unavailable") or description.get("error") or f"no device '{device}'"
        return None, {"against": other.name, "verdict": "unsupported", "note": why.splitlines()[0]}
    return other, description
