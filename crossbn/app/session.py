"""One pytest process's crossbn session: the resolved options, the run as the
controller keeps it, and the worker pool and result writer started on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crossbn.app.options import Resolved
from crossbn.records.results import worker_id
from crossbn.records.summary import Summary


@dataclass
class ControllerRun:
    """What the run's bookkeeping writes as it goes (the plugin's hooks, run_folder.py)."""

    done: set = field(default_factory=set)  # resume: (case id, backend, device) keys already recorded
    resumed: dict | None = None  # resume (controller): {"kept", "rerun"} from resume.prepare
    earlier: int = 0  # resume (controller): records from before the interruption, counted in `summary`
    crashed: list[str] = field(default_factory=list)  # tests whose xdist worker died under them (controller)
    live: Any = None  # run_folder.py: the controller's live results.jsonl
    last_sync: float = 0.0
    restore_sigterm: bool = False
    tmp: str | None = None  # run_folder.py: the run's own TMPDIR
    tmp_was: str | None = None
    # the controller's end of run (pytest_sessionfinish): run.json, the comparison, the report
    started: float = 0.0
    run_info: dict | None = None
    comparison: Any = None
    report: Any = None
    report_error: str | None = None
    side_by_side: list[dict] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)


class Session:
    """The resolved options (`options`), the controller's run (`run`), and the
    services a test needs, started on first use (`pool`, `record`)."""

    def __init__(self, config):
        self.options = Resolved(config)
        self.run = ControllerRun()
        self.worker_id = worker_id()
        self._pool: Any = None
        self._writer: Any = None

    @property
    def pool(self):
        if self._pool is None:
            from crossbn.execution.runner import WorkerPool

            o = self.options
            self._pool = WorkerPool(o.specs, o.backends, worker_max_bytes=o.limits.worker_max_bytes)
        return self._pool

    def record(self, rec: dict) -> None:
        if self.options.out is None:
            return
        if self._writer is None:
            from crossbn.records.store import ResultWriter

            self._writer = ResultWriter(self.options.out, self.worker_id)
        self._writer.write(rec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._writer is not None:
            self._writer.close()
