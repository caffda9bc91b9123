"""`crossbn conventions`: observe every chosen backend, print the table, keep the records.

Backends run concurrently (one thread each waiting on its own worker
process, `-n` at a time); each backend's records are appended (by the main
thread, as each backend finishes) to
`<out>/conventions.jsonl` and flushed the moment it is done, so an
interrupted run keeps every finished backend.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from crossbn.conventions import infer, observe
from crossbn.execution.runner import DEFAULT_TIMEOUT
from crossbn.records.results import finite

DEVICES = ("cpu", "cuda")


def _table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Observed conventions (* differs from the backend's declaration)", show_lines=False)
    table.add_column("backend", no_wrap=True)
    table.add_column("device")
    for key, (header, _, _) in infer.PROPERTIES.items():
        table.add_column(header, no_wrap=True)
    rows: dict[tuple, dict] = {}
    for r in records:
        rows.setdefault((r["backend"], r["device"]), {})[r["property"]] = r
    for (name, device), cells in sorted(rows.items()):
        table.add_row(name, device, *[_cell(cells.get(k)) for k in infer.PROPERTIES])
    Console(width=max(200, Console().width), soft_wrap=False).print(table)


def _cell(r: dict | None) -> str:
    if r is None:
        return ""
    if r["finding"]:
        return f"[bold red]{r['observed']} *[/]"
    return r["observed"]


def _findings(records: list[dict]) -> list[dict]:
    return [r for r in records if r["finding"]]


def run(args) -> int:
    from crossbn.backends import BackendError, choose, discover, instantiate

    try:
        # the same backend modules a run sees: the option's, then CROSSBN_BACKEND_MODULE's
        specs = discover(
            tuple(args.backend_module)
            + tuple(p for p in os.environ.get("CROSSBN_BACKEND_MODULE", "").split(os.pathsep) if p)
        )
        specs, backends = instantiate(choose(args.backends or os.environ.get("CROSSBN_BACKENDS", "all"), specs), specs)
        names = list(backends)
        devices = [
            d.strip() for d in (args.devices or os.environ.get("CROSSBN_DEVICES", "cpu")).split(",") if d.strip()
        ]
        unknown = [d for d in devices if d not in DEVICES]
        if unknown:
            raise BackendError(f"--devices: unknown device(s) {', '.join(unknown)}; known: {', '.join(DEVICES)}")
        raw_timeout = args.timeout or os.environ.get("CROSSBN_TIMEOUT")
        try:
            timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT
        except ValueError:
            timeout = float("nan")
        if not timeout > 0:
            raise BackendError(f"--timeout {raw_timeout}: must be a positive number of seconds")
        if args.n != "auto" and not str(args.n).isdigit():
            raise BackendError(f"-n {args.n}: must be a whole number of backends at once, or auto")
        workers = int(os.cpu_count() or 1) if args.n == "auto" else int(args.n)
        if workers < 1:
            raise BackendError(f"-n {args.n}: must be at least 1 (or auto)")
    except (BackendError, ValueError) as e:
        print(f"crossbn conventions: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or os.environ.get("CROSSBN_OUT") or Path("reports") / time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "conventions.jsonl"
    records: list[dict] = []
    jobs = [(n, d) for n in names for d in devices]
    print(
        f"crossbn conventions: {len(names)} backend(s) on {', '.join(devices)}, -n {workers}, records -> {path}",
        flush=True,
    )
    start = time.perf_counter()
    with path.open("a", encoding="utf-8") as sink, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(observe, n, specs[n], backends[n], d, timeout): (n, d) for n, d in jobs}
        for future in as_completed(futures):
            name, device = futures[future]
            got = future.result()
            for r in got:  # results are consumed here, on the main thread only
                sink.write(json.dumps(finite(r), allow_nan=False) + "\n")
            sink.flush()
            records.extend(got)
            found = len(_findings(got))
            print(f"  {name} ({device}): {found} finding(s), {got[0].get('seconds', 0.0):.1f} s", flush=True)
    _table(records)
    findings = _findings(records)
    for r in sorted(findings, key=lambda r: (r["backend"], r["property"])):
        print(
            f"finding: {r['backend']} ({r['device']}) {r['property']}: observed {r['observed']}, "
            f"declared {r['declared']} -- {r['detail']}"
        )
    print(f"crossbn conventions: {len(findings)} finding(s) in {time.perf_counter() - start:.0f} s; records in {path}")
    return 1 if (args.strict and findings) else 0
