"""Peak memory of a run's process tree, sampled while it runs.

A `crossbn run` is a tree: the controller (pytest), under `-n N` its xdist
workers, and under those who run the cases the backends' worker processes
(one per framework, execnet). The harness's memory is the controller's and
the xdist workers'; a backend worker's is mostly its framework's. Both are
kept, per process, because the goal is about their shape: the harness's
peak should follow the largest case, never the number of cases.

psutil reads each process's resident set every INTERVAL seconds; a peak
shorter than that can be missed, so the figures are a lower bound.
"""

from __future__ import annotations

import threading

import psutil

INTERVAL = 0.2  # seconds between samples


class TreePeak:
    """Samples `pid` and its descendants in a thread until stop()."""

    def __init__(self, pid: int, backend_depth: int):
        # the depth of the backends' worker processes: 1 under -n 0, 2 under xdist
        self.root, self.backend_depth = psutil.Process(pid), backend_depth
        self.harness_mb = self.backend_mb = self.total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        total = 0.0
        level = [self.root]
        depth = 0
        while level:
            nxt = []
            for p in level:
                try:
                    mb = p.memory_info().rss / 2**20
                    nxt.extend(p.children())
                except psutil.Error:  # it ended between listing and reading
                    continue
                total += mb
                if depth >= self.backend_depth:
                    self.backend_mb = max(self.backend_mb, mb)
                else:
                    self.harness_mb = max(self.harness_mb, mb)
            level, depth = nxt, depth + 1
        self.total_mb = max(self.total_mb, total)

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"harness_mb": self.harness_mb, "backend_mb": self.backend_mb, "total_mb": self.total_mb}
