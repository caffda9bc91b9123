"""A first run and a second run on unchanged releases, side by side, and the
report of the first.

`crossbn run --suite S -n 2` twice with one cache folder that starts empty
(crossbn/records/cache.py): the first judges everything and fills the cache (and
JAX's and Inductor's compilation caches under it); the second runs every
backend again and reuses each judgement whose outputs did not change. Of
the first run: diagnosis (localization with its probes, and the
fingerprint; the records' `timings`, summed, divided by the workers)
against its wall; how many findings were searched in full and how many
confirmed against their root cause's representative (crossbn/verdict/root_causes.py);
and its HTML report: files and megabytes, the time `crossbn report` takes
to write it, and the index's first paint in Chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from .common import PYTHON, ROOT, Spread, records, run_crossbn


def _report_size(out: Path) -> tuple[int, float]:
    """(files, MB) of the report itself: index.html and the pages, not the results it renders."""
    files = [out / "index.html", *(out / "findings").glob("*.html")]
    return len(files), sum(f.stat().st_size for f in files) / 2**20


def first_paint(index: Path, reps: int = 3) -> Spread | None:
    """Seconds to the index's first contentful paint in headless Chromium
    (None where Chromium or Playwright is missing)."""
    exe = os.environ.get("CROSSBN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if exe is None:
        return None
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(reps):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            paint = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
            times.append((paint or 0.0) / 1000)
            page.close()
        browser.close()
    return Spread(times)


def measure(backends: list[str], suite, folder: Path, workers: int, log) -> dict:
    cache = folder / "rerun-cache"
    shutil.rmtree(cache, ignore_errors=True)
    walls, outs = [], []
    for i, label in enumerate(("first", "second")):
        out = folder / f"rerun-{label}"
        wall, _ = run_crossbn(suite, ",".join(backends), workers, out, extra=("--cache", str(cache)))
        walls.append(wall)
        outs.append(out)
        log(f"rerun: {label} run {wall:.0f} s")
    first, second = records(outs[0]), records(outs[1])
    judged = [r for r in second if r["verdict"] != "unsupported"]
    spent = {
        p: sum((r.get("timings") or {}).get(p, 0.0) for r in first) / workers
        for p in ("localize", "diagnose", "backend", "oracle", "compare")
    }
    sources = [((r.get("diagnosis") or {}).get("source") or {}).get("how") for r in first if r.get("diagnosis")]
    start = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "crossbn", "report", str(outs[0]), "--out", str(folder / "rerun-report")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    render = time.perf_counter() - start
    files, mb = _report_size(folder / "rerun-report")
    paint = first_paint(folder / "rerun-report" / "index.html")
    return {
        "workers": workers,
        "records": len(first),
        "first": walls[0],
        "second": walls[1],
        "ratio": walls[1] / walls[0],
        "cached": sum(1 for r in judged if r.get("cached")),
        "judged": len(judged),
        # the results judged again: their outputs were not the first run's, bit for bit
        "judged_again": dict(Counter(r["backend"] for r in judged if not r.get("cached"))),
        "diagnosis": spent["localize"] + spent["diagnose"],
        "diagnosis_share": (spent["localize"] + spent["diagnose"]) / walls[0],
        "spent": spent,
        "own": sources.count("own"),
        "confirmed": sources.count("confirmed"),
        "findings": sum(1 for r in first if r["verdict"] in ("deviation", "nan-mismatch", "error", "crash", "timeout")),
        "report_files": files,
        "report_mb": mb,
        "report_seconds": render,
        "first_paint": None if paint is None else paint.to_dict(),
    }


def table(r: dict) -> list[str]:
    paint = r["first_paint"]
    return [
        "| | first run (cache empty) | second run (same releases) |",
        "|---|---:|---:|",
        f"| wall s | {r['first']:.0f} | {r['second']:.0f} ({r['ratio']:.0%}) |",
        f"| judgements reused | – | {r['cached']} of {r['judged']} |",
        "",
        "Judged again in the second run (outputs not bit-identical to the first's), per backend: "
        + (", ".join(f"{b} {n}" for b, n in sorted(r.get("judged_again", {}).items())) or "none")
        + ".",
        "",
        f"First run, {r['records']} results, -n {r['workers']}: diagnosis (localization with its probes, and the "
        f"fingerprint) {r['diagnosis']:.0f} s of wall, {r['diagnosis_share']:.1%} of the run; of the findings' "
        f"diagnoses {r['own']} were searched in full and {r['confirmed']} confirmed against their root cause's "
        f"representative. Its report: {r['report_files']} files, {r['report_mb']:.1f} MB (index and pages; "
        f"{r['findings']} findings), written in {r['report_seconds']:.1f} s; the index's first paint in Chromium "
        + (f"{paint['median']:.2f} s (median of {len(paint['values'])})." if paint else "not measured (no Chromium)."),
    ]
