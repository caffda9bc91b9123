"""`crossbn bisect` end to end: bad input, a planted framework on a local
package index (real pip, real side-by-side runs, no network), and the real
package index."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from crossbn.upgrade.releases import ReleaseError, between, list_releases

ROOT = Path(__file__).resolve().parent.parent
MODULE = str(ROOT / "tests" / "backends" / "planted_releases.py")
FW = "crossbn-planted-fw"
RELEASES = [f"1.{k}.0" for k in range(9)]


def crossbn(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "crossbn", "bisect", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


def _wheel(folder: Path, version: str, body: str) -> None:
    dist = FW.replace("-", "_")
    files = {
        f"{dist}/__init__.py": body,
        f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {FW}\nVersion: {version}\n"
        "Project-URL: Changelog, https://example.org/planted/changelog\n",
        f"{dist}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}-{version}.dist-info/RECORD"] = "\n".join([*record, f"{dist}-{version}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def planted_index(root: Path, first_fault: str, broken: tuple[str, ...] = ()) -> str:
    """A PEP 503 index with releases 1.0.0 .. 1.8.0 of the planted framework:
    the batch variance 1% off (planted.py's `var`) from `first_fault` on;
    `broken` releases are files pip cannot install."""
    project = root / "simple" / FW
    project.mkdir(parents=True)
    for v in RELEASES:
        fault = "'var'" if tuple(map(int, v.split("."))) >= tuple(map(int, first_fault.split("."))) else "None"
        if v in broken:
            (project / f"crossbn_planted_fw-{v}-py3-none-any.whl").write_bytes(b"not a zip file")
        else:
            _wheel(project, v, f'__version__ = "{v}"\nFAULT = {fault}\n')
    links = "".join(f'<a href="{p.name}">{p.name}</a><br>' for p in sorted(project.iterdir()))
    (project / "index.html").write_text(f"<html><body>{links}</body></html>")
    (root / "simple" / "index.html").write_text(f'<html><body><a href="{FW}/">{FW}</a></body></html>')
    return (root / "simple").as_uri()


def catalogue(root: Path) -> str:
    path = root / "cases.toml"
    path.write_text(
        '[[group]]\nname = "p"\ntrain_steps = 1\neval_step = false\ngradients = false\n'
        "[group.axes]\nshape = [[8, 3, 4], [16, 2]]\n"
    )
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch", "1.0", "2.0", "--suite", "smoke"], "no backend of crossbn runs 'nosuch'"),
        (["keras", "3.11.0", "3.12.0"], "name what to bisect: --finding, --results or --suite"),
        (["keras", "3.11.0", "3.12.0", "--suite", "smoke", "--backends", "torch"], "not backends of keras"),
        (["keras", "3.11.0", "3.12.0", "--suite", "nosuch"], "nosuch"),
        (["keras", "3.11.0", "3.12.0", "--results", "no/such/run"], "no/such/run"),
        (["keras", "3.11.0", "3.12.0", "--suite", "smoke", "-n", "zero"], "-n zero"),
        (["keras", "3.11.0", "3.12.0", "--suite", "smoke", "--dtypes", "float8"], "no case of float8"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2_before_anything_runs(tmp_path, args, message):
    proc = crossbn(*args, "--out", str(tmp_path / "out"), "--index-url", (tmp_path / "none").as_uri())
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_versions_not_on_the_index_or_out_of_order_are_bad_usage(tmp_path):
    index = planted_index(tmp_path, "1.5.0")
    assert list_releases(FW, index_url=index) == RELEASES
    with pytest.raises(ReleaseError, match="1.9.0: not a release on the package index"):
        between(RELEASES, FW, "1.0.0", "1.9.0")
    with pytest.raises(ReleaseError, match="GOOD 1.5.0 must be older than BAD 1.2.0"):
        between(RELEASES, FW, "1.5.0", "1.2.0")
    with pytest.raises(ReleaseError, match="no such package"):
        list_releases("crossbn-no-such-framework", index_url=index)
    proc = crossbn(
        FW,
        "1.5.0",
        "1.2.0",
        "--suite",
        catalogue(tmp_path),
        "--backend-module",
        MODULE,
        "--backends",
        "planted-fw",
        "--index-url",
        index,
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2 and "GOOD 1.5.0 must be older than BAD 1.2.0" in proc.stderr, proc.stderr


def planted_bisect(tmp_path, index: str, good: str, bad: str, name: str, *more: str):
    """crossbn bisect on the planted framework (its own cache and --out per call, under `name`)."""
    return crossbn(
        FW, good, bad, "--suite", catalogue(tmp_path), "--backend-module", MODULE, "--index-url", index,
        "--cache", str(tmp_path / name / "cache"), "--out", str(tmp_path / name / "out"), *more,
    )  # fmt: skip


@pytest.mark.slow  # a few side-by-side runs of crossbn, releases installed by pip
def test_bisect_finds_the_planted_release_around_one_that_cannot_be_installed(tmp_path):
    index = planted_index(tmp_path, "1.6.0", broken=("1.4.0",))
    proc = planted_bisect(tmp_path, index, "1.0.0", "1.8.0", "one", "--backends", "planted-fw")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"first bad {FW} 1.6.0, last good 1.5.0: 2 result(s)" in proc.stdout
    assert "skipped 1.4.0: crossbn-planted-fw==1.4.0 cannot be installed here" in proc.stdout
    out = tmp_path / "one" / "out"
    data = json.loads((out / "bisect.json").read_text())
    assert {(a["last_good"], a["first_bad"]) for a in data["answers"]} == {("1.5.0", "1.6.0")}
    assert "1.4.0" in data["skipped"] and len(data["steps"]) <= 5  # BAD, then about log2(8) releases
    assert re.search(r"match [0-9.e+-]+ at 1\.5\.0 -> deviation [0-9.e+-]+ at 1\.6\.0", proc.stdout)  # what changed
    assert "release notes: https://example.org/planted/changelog" in proc.stdout  # from the release's metadata
    page = (out / "bisect.html").read_text()
    assert "https://example.org/planted/changelog" in page and "could not run" in page and "1.6.0" in page
    # one finding that does not differ at BAD: said, exit 2 (its backend taken from the finding)
    finding = "p-f32-8x3x4-cf-t1-a02038b0--planted-fw--cpu"
    proc = planted_bisect(tmp_path, index, "1.0.0", "1.3.0", "three", "--finding", finding)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--finding {finding}: its outputs at BAD 1.3.0 do not differ from GOOD 1.0.0's" in proc.stderr
    # an end that cannot be installed: nothing to bisect against
    proc = planted_bisect(tmp_path, index, "1.4.0", "1.8.0", "four", "--backends", "planted-fw")
    assert proc.returncode == 2 and "crossbn-planted-fw==1.4.0 cannot be installed here" in proc.stderr, proc.stderr
    # the release that could not run hides where the change is: said, and exit 1
    index2 = planted_index(tmp_path / "two", "1.5.0", broken=("1.4.0",))
    proc = planted_bisect(tmp_path, index2, "1.0.0", "1.8.0", "two", "--backends", "planted-fw")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "first bad crossbn-planted-fw 1.5.0, last good 1.3.0 (or one of 1.4.0, which could not be run)" in proc.stdout
    )


@pytest.mark.slow
def test_the_real_package_index_lists_keras_releases():
    try:
        releases = list_releases("keras")
    except ReleaseError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the package index must be reachable in CI: {e}")
        pytest.skip(f"the package index is not reachable: {e}")
    assert {"3.11.3", "3.12.0"} <= set(releases)
    assert between(releases, "keras", "3.11.3", "3.12.0") == ["3.11.3", "3.12.0"]
