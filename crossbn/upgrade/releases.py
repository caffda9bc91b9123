"""A framework's releases: listed from the package index by pip, each one
installed once into an environment of its own under crossbn's cache.

A pure-Python framework (Keras, Flax, tf-keras) gets a light environment:
that release alone, everything else (NumPy, JAX, PyTorch, TensorFlow) seen
from the running environment through a `.pth` file, as
`tools/release-venv` makes it. A framework with compiled parts gets a full
environment with that release and NumPy from the index. A release that
cannot be installed here raises `ReleaseError` with pip's reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.version import InvalidVersion, Version

# distributions with compiled parts: their releases need a whole environment
COMPILED = frozenset({"torch", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "onnxruntime", "onnx"})
MARKER = ".crossbn-release"
TIMEOUT = 900.0  # seconds for one pip command (a compiled framework's wheels are large)


class ReleaseError(ValueError):
    """A release that cannot be listed or installed; the message says which and why."""


def distribution(name: str) -> str:
    """The normalized distribution name (PEP 503): tf_keras -> tf-keras."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(python: str, args: list[str], index_url: str | None) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "pip", *args, "--disable-pip-version-check"]
    if index_url:
        cmd += ["--index-url", index_url]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 1, "", f"pip did not finish in {TIMEOUT:.0f} s")


def _why(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or [f"pip exited {proc.returncode}"])[-1].removeprefix("ERROR: ")


def list_releases(package: str, *, python: str = sys.executable, index_url: str | None = None) -> list[str]:
    """Every final release of `package` on the package index, oldest first
    (`pip index versions`: pip's own index access, its configuration included)."""
    proc = _pip(python, ["index", "versions", package], index_url)
    if proc.returncode != 0:
        why = _why(proc)
        if "No matching distribution" in why:
            raise ReleaseError(f"{package}: no such package on the package index")
        raise ReleaseError(f"cannot list {package}'s releases: {why}")
    for line in proc.stdout.splitlines():
        if line.strip().startswith("Available versions:"):
            found = [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
            return sorted(found, key=Version)
    raise ReleaseError(f"cannot list {package}'s releases: pip printed no versions")


def between(releases: list[str], package: str, good: str, bad: str) -> list[str]:
    """The releases from GOOD to BAD, both included, oldest first."""
    for label, v in (("GOOD", good), ("BAD", bad)):
        try:
            Version(v)
        except InvalidVersion:
            raise ReleaseError(f"{label} {v!r}: not a version number") from None
        if v not in releases:
            near = ", ".join(releases[-5:])
            raise ReleaseError(f"{package} {v}: not a release on the package index (newest: {near})")
    if Version(good) >= Version(bad):
        raise ReleaseError(f"GOOD {good} must be older than BAD {bad}")
    return [v for v in releases if Version(good) <= Version(v) <= Version(bad)]


def environment(
    package: str, version: str, cache: Path, *, python: str = sys.executable, index_url: str | None = None
) -> str:
    """The interpreter of an environment holding `package`==`version`, built
    once under `cache`/releases/ and reused while its marker says so."""
    where = Path(cache) / "releases" / f"{distribution(package)}-{version}"
    spec = f"{package}=={version}"
    exe = where / "bin" / "python"
    light = distribution(package) not in COMPILED
    site = _site(exe) if exe.exists() else None
    if site is not None and (site / MARKER).is_file() and (site / MARKER).read_text().strip() == spec:
        return str(exe)
    where.parent.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [python, "-m", "venv", *(["--without-pip"] if light else []), str(where)], capture_output=True, text=True
    )
    if made.returncode != 0:
        raise ReleaseError(f"{spec}: cannot make an environment in {where}: {_why(made)}")
    site = _site(exe)
    if light:  # that release alone; everything else from this environment, after it
        proc = _pip(python, ["install", "-q", "--no-deps", "--upgrade", "--target", str(site), spec], index_url)
        paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (site / "zz-parent-environment.pth").write_text("\n".join(sorted(paths)) + "\n", encoding="utf-8")
    else:
        proc = _pip(str(exe), ["install", "-q", spec, "numpy"], index_url)
    if proc.returncode != 0:
        raise ReleaseError(f"{spec} cannot be installed here: {_why(proc)}")
    (site / MARKER).write_text(spec + "\n", encoding="utf-8")
    return str(exe)


def _site(exe: Path) -> Path:
    proc = subprocess.run(
        [str(exe), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    if proc.returncode != 0:
        raise ReleaseError(f"{exe}: the environment's python does not run: {proc.stderr.strip()[-200:]}")
    return Path(proc.stdout.strip())


def release_notes(python: str, package: str, version: str) -> str | None:
    """A link to `version`'s release notes from its own package metadata: a
    URL it labels as a changelog or release notes, else its GitHub
    repository's releases matching the version; None when it names neither."""
    code = (
        "import importlib.metadata as m, json, sys; d = m.metadata(sys.argv[1]); "
        "print(json.dumps([d.get_all('Project-URL') or [], d.get('Home-page') or '']))"
    )
    proc = subprocess.run([python, "-c", code, package], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    try:
        labelled, home = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    pairs = [(label.strip(), url.strip()) for label, _, url in (e.partition(",") for e in labelled)]
    for label, url in pairs:
        if re.search(r"change|release|news|history", label, re.IGNORECASE):
            return url
    for url in [u for _, u in pairs] + [home]:
        repo = re.match(r"https?://github\.com/[^/#?]+/[^/#?]+", url or "")
        if repo:
            return f"{repo.group(0).removesuffix('.git')}/releases?q={version}"
    return None
