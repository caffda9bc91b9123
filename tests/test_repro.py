"""Bug reports (crossbn/bugreport): shrinking, repro.py, verification, ISSUE.md, fuzzing.

Real parts throughout: Hypothesis's own shrinker, real backends in worker
processes, repro.py run as a maintainer would (a fresh interpreter, in a
virtual environment that has the framework but not crossbn).
"""

import json
import math
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from crossbn.bugreport import casefile
from crossbn.bugreport.group import root_cause
from crossbn.bugreport.shrink import shrink
from crossbn.spec.case import Case
from crossbn.spec.suites import load_suite

from run_crossbn import crossbn

VARIANTS = str(Path(__file__).parent / "backends" / "numpy_variants.py")
# A real finding of the default suite: PyTorch's CPU bfloat16 BatchNorm at a
# large mean offset (up to 143x the bound; crossbn/known/frameworks.toml, torch *float16)
TORCH_BF16 = Case(shape=(8, 4, 5, 5), dtype="bfloat16", train_steps=3, offset_ratio=1e3, seed=0, group="magnitude")


def test_shrink_starts_from_the_failing_case_and_minimizes_each_field():
    case = Case(shape=(8, 4, 5, 5), train_steps=3, layout="channels_last", offset_ratio=3.0, seed=7)
    # holds only for cases of at least 700 elements: random generation over
    # the smaller cases almost never draws one, so finding a 700-element case
    # shows the search started from the original (replayed, then shrunk)
    small, tried = shrink(case, lambda c: math.prod(c.shape) >= 700, budget=60)
    assert math.prod(small.shape) == 700 and small.shape[1:] == (4, 5, 5)
    assert small.train_steps == 0 and small.eval_step and not small.gradients and not small.affine
    assert small.layout == "channels_first" and small.offset_ratio == 0.0 and small.seed == 0
    assert tried > 0
    again, _ = shrink(case, lambda c: math.prod(c.shape) >= 700, budget=60)
    assert again == small  # the same shrink on every run


def test_shrink_keeps_what_the_predicate_needs_and_stops_on_budget():
    case = Case(
        shape=(16, 8, 6), train_steps=2, distribution="uniform", scale=3.0, seed=5, specials=(("nan", 1, (3, 2, 1)),)
    )
    small, _ = shrink(case, lambda c: bool(c.specials) and c.distribution == "uniform" and c.rank == 3, budget=60)
    assert small.specials and small.distribution == "uniform" and small.rank == 3
    assert small.shape == (1, 1, 1) and small.specials[0][1:] == (0, (0, 0, 0)) and len(small.steps) == 1
    start = small
    out, _ = shrink(case, lambda c: True, budget=0)  # no time: the original, unshrunk
    assert out == case and start != case


def test_case_toml_round_trips_through_the_catalogue(tmp_path):
    case = Case(
        shape=(3, 2, 4),
        layout="channels_last",
        dtype="float16",
        eps=1e-3,
        momentum=0.25,
        cumulative=True,
        train_steps=2,
        distribution="near_eps",
        offset_ratio=-2.5,
        seed=9,
        specials=(("-inf", 0, (1, 1, 3)),),
        options={"flax.use_fast_variance": False},
    )
    (tmp_path / "one.toml").write_text(casefile.group_toml(case, "found_x", "why\nsecond line"))
    loaded = load_suite(str(tmp_path / "one.toml"))
    assert [c.id for c in loaded] == [case.id]


def test_found_folder_is_a_suite_the_default_suite_includes():
    found = load_suite("found")
    default = {c.id for c in load_suite("default")}
    assert {c.id for c in found} <= default
    for path in (Path(__file__).parent.parent / "cases" / "found").glob("*.toml"):
        assert path.read_text().startswith("# found by crossbn fuzz")


def test_root_cause_drops_arrangement_details():
    assert root_cause("compute=float32,affine=folded") == "compute=float32"
    assert root_cause("reduce=float16,running_var=unbiased") == "reduce=float16"
    assert root_cause("variance=welford,hyperparameters=float32") == "canonical"
    assert root_cause("variance=one-pass,normalize=divide") == "variance=one-pass"


def _venv_without_crossbn(where: Path) -> Path:
    """A virtual environment that sees this one's installed frameworks (a .pth
    line adds its site-packages) but not crossbn: crossbn is installed in
    editable mode through a .pth *file* in site-packages, which a path added
    this way does not process."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "numpy").is_dir())
    Path(site, "frameworks.pth").write_text(ours + "\n")
    return python


@pytest.mark.slow
def test_repro_of_a_real_torch_finding_runs_without_crossbn(tmp_path):
    pytest.importorskip("torch")
    suite = tmp_path / "one.toml"
    suite.write_text(casefile.group_toml(TORCH_BF16, "magnitude"))
    proc = crossbn(
        "repro",
        f"{TORCH_BF16.id}--torch--cpu",
        "--suite",
        str(suite),
        "--budget",
        "40s",
        "--out",
        str(tmp_path / "br"),
        "--known",
        "frameworks",
    )  # the built-in file, by name
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "written: reproduced" in proc.stdout
    folder = next((tmp_path / "br").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["ISSUE.md", "case.toml", "finding.json", "repro.py"]
    small = load_suite(str(folder / "case.toml"))[0]
    assert math.prod(small.shape) < math.prod(TORCH_BF16.shape) and small.dtype == "bfloat16"
    record = json.loads((folder / "finding.json").read_text())
    assert record["verdict"] == "deviation" and record["case_id"] == small.id
    issue = (folder / "ISSUE.md").read_text()
    assert issue.startswith("# PyTorch BatchNorm: bfloat16")
    for heading in (
        "## Environment",
        "## What was expected",
        "## What happened",
        "## Minimal case",
        "## Diagnosis",
        "## Reproduce",
        "## Related",
    ):
        assert heading in issue
    assert "batch_norm_kernel.cpp" in issue  # the known-differences entry's link
    assert (folder / "repro.py").read_text() in issue

    python = _venv_without_crossbn(tmp_path / "env")
    check = subprocess.run([str(python), "-c", "import crossbn"], capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode != 0 and "No module named 'crossbn'" in check.stderr
    ran = subprocess.run(
        [str(python), str(folder / "repro.py")], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "DISCREPANCY:" in ran.stdout and "largest difference" in ran.stdout


@pytest.mark.slow  # a real framework's worker (Keras, PyTorch): 4-6 s
def test_repro_says_so_when_there_is_no_finding(tmp_path):
    pytest.importorskip("torch")
    suite = tmp_path / "one.toml"
    plain = Case(shape=(4, 3), train_steps=1)
    suite.write_text(casefile.group_toml(plain, "plain"))
    proc = crossbn("repro", f"{plain.id}--torch", "--suite", str(suite), "--out", str(tmp_path / "br"))
    assert proc.returncode == 1 and "no-finding" in proc.stdout and not (tmp_path / "br").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a--b--c--d", "expected CASE--BACKEND--DEVICE"),
        # a bare case is accepted (`crossbn bugs` lists one), but with no run to find it in, it needs its backend
        ("nonsense", "no result of case 'nonsense' in any run"),
        ("0123456789ab--torch--cpu", "no case '0123456789ab' on torch/cpu"),
    ],
)
def test_repro_usage_errors(spec, message, tmp_path):
    proc = crossbn("repro", spec, "--suite", "smoke", cwd=tmp_path)  # no reports/ here: the suite is searched
    assert proc.returncode == 2 and message in proc.stderr


def test_repro_rejects_a_bad_budget_and_an_unknown_backend():
    case = load_suite("smoke")[0]
    bad = crossbn("repro", f"{case.id}--torch", "--suite", "smoke", "--budget", "soon")
    assert bad.returncode == 2 and "--budget 'soon'" in bad.stderr
    unknown = crossbn("repro", f"{case.id}--nosuch", "--suite", "smoke")
    assert unknown.returncode == 2 and "unknown backend(s) nosuch" in unknown.stderr


def _fuzz(out: Path):
    return crossbn(
        "fuzz",
        "--backends",
        "numpy-onepass",
        "--backend-module",
        VARIANTS,
        "--dtypes",
        "float32",
        "--examples",
        "40",
        "--seed",
        "3",
        "--budget",
        "5m",
        "--shrink-budget",
        "30s",
        "--out",
        str(out / "run"),
        "--found",
        str(out / "found"),
    )


@pytest.mark.slow
def test_fuzz_with_a_seed_is_reproducible_and_saves_minimized_regression_cases(tmp_path):
    first, second = _fuzz(tmp_path / "a"), _fuzz(tmp_path / "b")
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    saved = sorted(p.name for p in (tmp_path / "a" / "found").glob("*.toml"))
    assert saved and saved == sorted(p.name for p in (tmp_path / "b" / "found").glob("*.toml"))
    for name in saved:
        assert (tmp_path / "a" / "found" / name).read_text() == (tmp_path / "b" / "found" / name).read_text()
    ids = [
        [json.loads(line)["case_id"] for line in (tmp_path / d / "run" / "fuzz.jsonl").read_text().splitlines()]
        for d in ("a", "b")
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 40
    cases = load_suite(str(tmp_path / "a" / "found" / saved[0]))
    assert len(cases) == 1 and math.prod(cases[0].shape) <= 16  # shrunk: the one-pass variance needs little
    # the saved case still shows the finding when run as a suite
    run = crossbn(
        "run",
        "--suite",
        str(tmp_path / "a" / "found" / saved[0]),
        "--backends",
        "numpy-onepass",
        "--backend-module",
        VARIANTS,
        "-n",
        "0",
        "--no-conventions",
        "--progress",
        "off",
        "--out",
        str(tmp_path / "rerun"),
    )
    rec = json.loads((tmp_path / "rerun" / "results.jsonl").read_text().splitlines()[0])
    assert run.returncode == 0 and rec["verdict"] == "deviation"


def test_fuzz_usage_errors():
    bad = crossbn("fuzz", "--backends", "torch", "--dtypes", "float8")
    assert bad.returncode == 2 and "--dtypes 'float8'" in bad.stderr
    unknown = crossbn("fuzz", "--backends", "nosuch")
    assert unknown.returncode == 2 and "unknown backend(s) nosuch" in unknown.stderr


@pytest.mark.slow
def test_run_bug_reports_one_per_root_cause_linked_from_every_finding_page(tmp_path, browser):
    pytest.importorskip("torch")
    from chromium_page import open_page

    out = tmp_path / "run"
    proc = crossbn(
        "run",
        "--suite",
        "smoke",
        "--backends",
        "torch",
        "--bug-reports",
        "--repro-budget",
        "15s",
        "-n",
        "0",
        "--no-conventions",
        "--progress",
        "off",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    findings = [r for r in records if r["verdict"] in ("deviation", "nan-mismatch")]
    assert findings  # PyTorch's CPU half-precision findings (crossbn/known/frameworks.toml)
    index = json.loads((out / "bug-reports" / "index.json").read_text())
    folders = sorted(set(index.values()))
    assert len(index) == len(findings) and len(folders) < len(findings)  # grouped: fewer reports than findings
    for name in folders:
        assert sorted(p.name for p in (out / "bug-reports" / name).iterdir()) == [
            "ISSUE.md",
            "case.toml",
            "finding.json",
            "repro.py",
        ]
    # every finding's page links its root cause's report, and the link resolves
    for slug, folder in index.items():
        page, problems = open_page(browser, out / "findings" / f"{slug}.html")
        link = page.locator("#bug-reports a", has_text="ISSUE.md")
        assert link.count() == 1 and problems == []
        link.click()
        assert page.url.endswith(f"bug-reports/{folder}/ISSUE.md")
        assert "## What happened" in page.content()


@pytest.fixture(scope="module")
def without_crossbn(tmp_path_factory):
    return _venv_without_crossbn(tmp_path_factory.mktemp("venv") / "env")


@pytest.mark.slow
@pytest.mark.parametrize(
    "example",
    sorted(
        p.name for p in (Path(__file__).parent.parent / "docs" / "examples").iterdir() if (p / "repro.py").is_file()
    ),
)
def test_committed_examples_reproduce_without_crossbn(example, without_crossbn, tmp_path):
    folder = Path(__file__).parent.parent / "docs" / "examples" / example
    ran = subprocess.run(
        [str(without_crossbn), str(folder / "repro.py")], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert ran.returncode == 1, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "DISCREPANCY:" in ran.stdout
    issue = (folder / "ISSUE.md").read_text()
    assert (folder / "repro.py").read_text().rstrip() in issue  # the issue carries the script it was verified with
    case = load_suite(str(folder / "case.toml"))[0]
    assert json.loads((folder / "finding.json").read_text())["case_id"] == case.id


def _bisected(folder: Path, case_id: str, **answer) -> str:
    """A bisect folder as `crossbn bisect` leaves it, with one answer."""
    folder.mkdir(parents=True)
    data = {
        "framework": "torch",
        "good": "2.11.0",
        "bad": "2.13.0",
        "bitwise": False,
        "releases": ["2.11.0", "2.12.0", "2.12.1", "2.13.0"],
        "notes": {"2.12.1": "https://github.com/pytorch/pytorch/releases?q=2.12.1"},
        "steps": {"2.13.0": [], "2.12.0": [], "2.12.1": []},
        "answers": [
            {
                "case_id": case_id,
                "backend": "torch",
                "device": "cpu",
                "reproduced": True,
                "last_good": "2.12.0",
                "first_bad": "2.12.1",
                "untold": [],
                **answer,
            }
        ],
    }
    (folder / "bisect.json").write_text(json.dumps(data))
    return str(folder)


@pytest.mark.slow  # PyTorch's worker
def test_repro_states_the_release_bisect_found(tmp_path):
    pytest.importorskip("torch")
    suite = tmp_path / "one.toml"
    suite.write_text(casefile.group_toml(TORCH_BF16, "magnitude"))
    found = _bisected(tmp_path / "bisect", TORCH_BF16.id)
    args = ("repro", f"{TORCH_BF16.id}--torch--cpu", "--suite", str(suite), "--budget", "0", "--bisect", found)
    proc = crossbn(*args, "--out", str(tmp_path / "br"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    issue = (next((tmp_path / "br").iterdir()) / "ISSUE.md").read_text()
    assert issue.splitlines()[0].endswith("(regression in torch 2.12.1)")
    assert "## Regression\n\nThis is a regression in torch 2.12.1: the outputs of 2.12.0" in issue
    assert "and 2.12.1's differ from them (`crossbn bisect torch 2.11.0 2.13.0`: 3 of the 4 releases" in issue
    assert "Release notes: https://github.com/pytorch/pytorch/releases?q=2.12.1" in issue


def test_repro_refuses_a_bisect_folder_without_an_answer_for_the_finding(tmp_path):
    case = load_suite("smoke")[0]
    nothing = crossbn("repro", f"{case.id}--torch", "--suite", "smoke", "--bisect", str(tmp_path))
    assert nothing.returncode == 2 and "no readable bisect.json" in nothing.stderr
    other = _bisected(tmp_path / "other", "0123456789ab")
    wrong = crossbn("repro", f"{case.id}--torch", "--suite", "smoke", "--bisect", other)
    assert wrong.returncode == 2 and f"no answer for case {case.id} on torch/cpu" in wrong.stderr
    same = _bisected(tmp_path / "same", case.id, reproduced=False, first_bad=None)
    unchanged = crossbn("repro", f"{case.id}--torch", "--suite", "smoke", "--bisect", same)
    assert unchanged.returncode == 2 and "does not differ between 2.11.0 and 2.13.0" in unchanged.stderr
