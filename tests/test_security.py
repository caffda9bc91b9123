"""Security (issue #9): data never runs.

- No pickle where data crosses a process or a file: arrays as dtype + bytes
  (wire.py) or .npy/.npz read with allow_pickle=False, records as JSON; no
  eval/exec on anything read (a static audit of the sources).
- Every string that reaches HTML is escaped: a real run of a planted backend
  (tests/backends/hostile.py) whose version, device name and error message
  are markup, from a catalogue file whose name is markup, with a
  known-differences file and a baseline whose strings are markup and
  template/Python payloads, plus records with markup in every free-text
  field; the report is checked as text and in Chromium (no planted script
  runs, no planted element exists).
- A generated repro.py holds a finding's strings as data: the payloads only
  change the values of string constants, and running the script creates
  nothing.
- Known-differences and baseline files load as plain data and match nothing
  spuriously.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from crossbn.bugreport import casefile, script
from crossbn.execution import wire
from crossbn.records import known
from crossbn.records.results import read
from crossbn.spec import catalogue, suites
from crossbn.spec.case import Case
from crossbn.upgrade import baseline

from run_crossbn import crossbn

HERE = Path(__file__).parent
ROOT = HERE.parent
HOSTILE = str(HERE / "backends" / "hostile.py")

# Each sets window.__pwned (or makes an element) if it ever reaches a page as markup.
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=2">',
    '</textarea><svg onload="window.__pwned=3">',
    '\'><iframe srcdoc="<script>parent.__pwned=4</script>"></iframe>',
)
MARKUP = " ".join(PAYLOADS)
# Template and Python payloads: inert text unless something evaluates them.
JINJA = "{{ ''.__class__.__mro__ }}{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}"
PYTHON = "__import__('os').system('touch PWNED')"
# A file name cannot hold "/": the catalogue's name carries the payloads without one.
SUITE_MARKUP = 'x"><img src=x onerror="window.__pwned=5"><svg onload=\'window.__pwned=6\'>'
BASELINE_NAME = 'old<img src=x onerror="window.__pwned=7">'
FORBIDDEN_TAGS = {"img", "iframe", "textarea", "object", "embed", "frame"}


def _toml(entries: list[dict]) -> str:
    # a TOML basic string is a JSON string for these characters
    return "".join("[[known]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in e.items()) + "\n" for e in entries)


KNOWN = [
    # matches the hostile backend's error: its reason and link are shown on the finding page
    {
        "backend": "numpy-hostile",
        "verdict": "error",
        "reason": f"{MARKUP} {JINJA} {PYTHON}",
        "link": "javascript:window.__pwned=8",
    },
    # payloads as patterns: they must match nothing
    {"backend": JINJA, "reason": PYTHON},
    {"backend": "*", "case": PYTHON, "reason": JINJA},
    {"backend": "*", "version": "{{*", "reason": MARKUP},
]


# ---- a real run of the hostile backend, a baseline, planted records: one report ---------------


def _plant(rec: dict, n: int) -> dict:
    """The record with markup in every free-text field a results file carries."""
    r = json.loads(json.dumps(rec))
    tag = f"{MARKUP} #{n}"
    r.update(
        case_id=f"planted{n:05d}",
        pytest_id=f"case {tag}",
        group=tag,
        backend=f"backend {tag}",
        device=f"dev {tag}",
        device_name=tag,
        version=f"v {tag} {JINJA}",
        reason=f"{tag}\n{JINJA}",
        interpreter=f"/py {tag}",
        known={"entry": tag, "reason": tag, "link": f"https://x/{tag}"},
    )
    r["case"] = {**r["case"], "suite": tag, "group": tag}
    r["localization"] = {**(r.get("localization") or {}), "stage": tag, "how": tag, "observable": tag}
    diagnosis = r.get("diagnosis") or {}
    r["diagnosis"] = {
        **diagnosis,
        "formulation": tag,
        "description": tag,
        "documented": tag,
        "evidence": [{**e, "formulation": tag, "description": tag} for e in diagnosis.get("evidence", [])],
    }
    # observable names reach the per-channel chart's legend (inline SVG built by hand)
    r["observables"] = {
        f"train0.y {tag}" if k == "train0.y" else k: {**o, "note": tag, "dtype": tag}
        for k, o in r["observables"].items()
    }
    r["inputs"] = {tag if k == "x0" else k: {**v, "dtype": tag} for k, v in (r.get("inputs") or {}).items()}
    r["cross_device"] = {"verdict": "deviation", "note": tag, "observables": {tag: {"verdict": tag, "note": tag}}}
    return r


def _baseline(folder: Path, records: list[dict]) -> None:
    """A baseline in which every result matched, with payloads in its strings, plus one entry of a
    result that no longer exists (the comparison lists it with the baseline's own strings)."""
    entries = [
        {
            "case_id": r["case_id"],
            "backend": r["backend"],
            "device": r["device"],
            "verdict": "match",
            "pytest_id": f"{MARKUP} {JINJA}",
            "version": f"{MARKUP} {PYTHON}",
            "ratio": 0.5,
            "observable": MARKUP,
            "ratios": {MARKUP: 0.5},
            "digests": {},
        }
        for r in records
    ]
    entries.append({**entries[0], "case_id": "gone00000000", "backend": f"gone {MARKUP}"})
    folder.mkdir(parents=True)
    (folder / "baseline.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


@pytest.fixture(scope="module")
def hostile(built_once):
    """The hostile backend's run, its comparison and a report over it and
    planted records, made once for the session's workers."""
    root = built_once("security-run", _hostile_run_and_report)
    return {
        "root": root,
        "run": root / "run",
        "records": read(root / "run" / "results.jsonl"),
        "report": root / "report",
    }


def _hostile_run_and_report(root):
    suite = root / f"{SUITE_MARKUP}.toml"
    suite.write_text(
        "[[group]]\nname = 'offset'\nshape = [16, 3, 5]\noffset_ratio = 1000.0\n[group.axes]\nseed = [1, 15]\n"
    )  # seed 1 deviates, seed 15 raises (hostile.py)
    (root / "known.toml").write_text(_toml(KNOWN), encoding="utf-8")
    run = root / "run"
    proc = crossbn(
        "run",
        "--suite",
        str(suite),
        "--backends",
        "numpy-hostile",
        "--backend-module",
        HOSTILE,
        "-n",
        "0",
        "--no-conventions",
        "--progress",
        "off",
        "--known",
        str(root / "known.toml"),
        "--out",
        str(run),
        env={"CROSSBN_HOSTILE_MARKUP": MARKUP},
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = read(run / "results.jsonl")
    _baseline(root / "baselines" / BASELINE_NAME, records)
    proc = crossbn("compare", BASELINE_NAME, str(run), "--dir", str(root / "baselines"), "--out", str(run), cwd=root)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # every finding regressed against an all-match baseline
    planted = root / "planted"
    planted.mkdir()
    deviation = next(r for r in records if r["verdict"] == "deviation")
    odd_verdict = {**_plant(deviation, 2), "verdict": MARKUP}  # no page of its own, but counted in the index
    (planted / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in (_plant(deviation, 1), odd_verdict)), encoding="utf-8"
    )
    from crossbn.report import build

    index = build([run, planted], root / "report")
    assert index.parent == root / "report"


def test_the_run_carried_the_markup(hostile):
    """The strings reached the records as they are (else the rest proves nothing)."""
    by_verdict = {r["verdict"]: r for r in hostile["records"]}
    assert set(by_verdict) == {"deviation", "error"}
    assert all(MARKUP in r["version"] and MARKUP in r["device_name"] for r in hostile["records"])
    assert MARKUP in by_verdict["error"]["reason"]
    run_json = json.loads((hostile["run"] / "run.json").read_text())
    assert SUITE_MARKUP in run_json["suite"]
    from crossbn.report.pairs import all_pairs, page_name

    backends = {r["backend"] for r in read(hostile["report"] / "results.jsonl")}
    assert sorted(p.name for p in hostile["report"].rglob("*.html")) == sorted(
        ["index.html", "comparison.html"]
        + [f"{n}.html" for n in _finding_slugs(hostile)]
        + [Path(page_name(a, b)).name for a, b in all_pairs(backends)]  # backend against backend
    )


def _finding_slugs(hostile) -> list[str]:
    from crossbn.records.naming import slug

    return [slug(r) for r in read(hostile["report"] / "results.jsonl") if r["verdict"] in ("deviation", "error")]


class _Tags(HTMLParser):
    """Every start tag with its attributes, the text, and the scripts' contents, of one page."""

    def __init__(self, html: str):
        super().__init__()
        self.tags, self.text, self.scripts, self._in_script = [], [], [], False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def _scheme(url: str) -> str:
    """A link's scheme ("" when relative), read as a browser reads it: without whitespace, any case."""
    head = "".join(url.split()).lower()
    for stop in "/?#":
        head = head.partition(stop)[0]
    return head.partition(":")[0] if ":" in head else ""


def _pages(hostile) -> list[Path]:
    return sorted(hostile["report"].rglob("*.html"))


def test_no_markup_from_data_in_any_page(hostile):
    from crossbn.report.render import environment

    ours = environment().globals["inline_js"]
    for path in _pages(hostile):
        html = path.read_text(encoding="utf-8")
        for payload in (*PAYLOADS, SUITE_MARKUP, BASELINE_NAME):
            assert payload not in html, f"{path.name}: {payload!r} is in the page unescaped"
        page = _Tags(html)
        assert not FORBIDDEN_TAGS & {t for t, _ in page.tags}, f"{path.name}: a planted element"
        handlers = [(t, a) for t, attrs in page.tags for a, _ in attrs if a.lower().startswith("on")]
        assert handlers == [], f"{path.name}: event handler attributes {handlers}"
        # links lead to the report's own pages or to the web, never to a script
        links = [v for _, attrs in page.tags for a, v in attrs if a in ("href", "src", "action", "formaction")]
        schemes = {_scheme(v or "") for v in links}
        assert schemes <= {"", "http", "https"}, f"{path.name}: links of scheme {schemes}"
        assert [s.strip() for s in page.scripts] == [ours.strip()], f"{path.name}: a script that is not ours"
        # the template payload in the data was shown, never evaluated
        assert "<class '" not in "".join(page.text), f"{path.name}: a template in the data was evaluated"


def test_strings_are_shown_as_text(hostile):
    """Escaped, not dropped: the finding pages show the planted strings verbatim."""
    report = hostile["report"]
    error = next(r for r in hostile["records"] if r["verdict"] == "error")
    from crossbn.records.naming import slug

    text = "".join(_Tags((report / "findings" / f"{slug(error)}.html").read_text(encoding="utf-8")).text)
    assert MARKUP in text and PYTHON in text and JINJA in text  # the version, the reason, the known entry
    index = "".join(_Tags((report / "index.html").read_text(encoding="utf-8")).text)
    assert SUITE_MARKUP in index and BASELINE_NAME in index and f"case {MARKUP} #1" in index
    comparison = "".join(_Tags((report / "comparison.html").read_text(encoding="utf-8")).text)
    assert f"{MARKUP} {JINJA}" in comparison and f"{MARKUP} {PYTHON}" in comparison


def test_known_entries_with_payloads_match_nothing_spuriously(hostile):
    error, deviation = (next(r for r in hostile["records"] if r["verdict"] == v) for v in ("error", "deviation"))
    assert error["known"]["entry"] == 1 and error["known"]["reason"] == KNOWN[0]["reason"]
    assert error["known"]["link"] == "javascript:window.__pwned=8"
    assert not deviation.get("known")
    assert not (hostile["root"] / "PWNED").exists() and not Path("PWNED").exists()


def test_no_planted_script_runs_in_chromium(hostile, browser):
    from chromium_page import open_page

    pages = _pages(hostile)
    assert len(pages) >= 5  # index, comparison, two findings of the run, one planted
    for path in pages:
        page, problems = open_page(browser, path)
        assert problems == [], f"{path.name}: {problems}"
        assert page.evaluate("() => window.__pwned") is None, path.name
        planted = page.locator(", ".join(sorted(FORBIDDEN_TAGS)) + ", [onload], [onerror], [srcdoc]")
        assert planted.count() == 0, path.name
        assert page.locator("script").count() == 1, path.name  # the report's own
        page.context.close()


def test_a_catalogue_rejects_markup_in_a_group_name(tmp_path):
    """A group name becomes part of pytest ids, file names and the report: a word, nothing else."""
    for name in PAYLOADS + (JINJA, PYTHON, "a b", "x;y"):
        path = tmp_path / "cat.toml"
        path.write_text(f"[[group]]\nname = {json.dumps(name)}\nshape = [4, 2]\n")
        with pytest.raises(catalogue.CatalogueError, match="must be a word"):
            suites.load_suite(str(path))


# ---- known differences and baselines: data only -------------------------------------------------


def test_known_file_loads_payloads_as_plain_strings(tmp_path):
    path = tmp_path / "known.toml"
    path.write_text(_toml(KNOWN), encoding="utf-8")
    entries = known.load(path)
    assert [e.reason for e in entries] == [k["reason"] for k in KNOWN]
    assert entries[1].backend == JINJA and entries[2].case == PYTHON
    rec = {
        "verdict": "deviation",
        "backend": "numpy-onepass",
        "device": "cpu",
        "version": "1.0",
        "pytest_id": "offset-f32-8x3-cf-t1e-0123abcd",
        "case_id": "0123abcd0123",
        "case": {"dtype": "float32"},
        "observables": {"train0.y": {"verdict": "deviation"}},
    }
    assert known.first_match(entries, rec) is None
    assert PYTHON in entries[2].label() and not (tmp_path / "PWNED").exists()


def test_baseline_loads_payloads_as_plain_strings(tmp_path):
    rec = {"case_id": "0123abcd0123", "backend": "numpy-onepass", "device": "cpu", "verdict": "deviation"}
    _baseline(tmp_path / BASELINE_NAME, [rec])
    loaded = baseline.load(BASELINE_NAME, tmp_path)
    entry = loaded[("0123abcd0123", "numpy-onepass", "cpu")]
    assert entry["pytest_id"] == f"{MARKUP} {JINJA}" and entry["version"] == f"{MARKUP} {PYTHON}"
    rows = baseline.compare(loaded, {})
    assert {r["class"] for r in rows} == {"removed"}
    assert all(JINJA in baseline.describe(r) for r in rows)
    assert not (tmp_path / "PWNED").exists()


# ---- repro.py: a finding's strings go in as data ------------------------------------------------

REPRO_PAYLOADS = (
    '"""; import os; os.system("touch PWNED") #',
    '"""; __import__("os").system("touch PWNED"); """',  # valid code if it ends the docstring
    '"; __import__("os").system("touch PWNED"); "',  # valid code if it ends a "..." literal
    '\n__import__("os").system("touch PWNED")\n',
    "'''",
    '\\"; __import__("os").system("touch PWNED"); "\\',
    "\r\n# -*- coding: latin-1 -*-\n\x00",
)
REPRO_CASE = Case(shape=(4, 2), train_steps=1, offset_ratio=3.0)


def _repro(backend: str, *, suffix: str = "", **strings) -> str:
    """repro.py for REPRO_CASE on `backend` (its name given a "@suffix" label when `suffix`)."""
    from crossbn.backends import discover, load
    from crossbn.oracle.inputs import generate

    fields = {"title": "a title", "version": "1.0", "device": "cpu", "target": "train0.y", **strings}
    return script.render(
        case=REPRO_CASE,
        inputs=generate(REPRO_CASE),
        backend=load(discover()[backend]),
        backend_name=f"{backend}@{suffix}" if suffix else backend,
        tolerance=np.full(1, 1e-2),
        **fields,
    )


def _hostile_strings(payload: str) -> dict:
    """Every string of a finding that reaches repro.py, each carrying the payload."""
    return {
        "title": f"title {payload}",
        "version": f"1.0 {payload}",
        "device": f"cpu{payload}",
        "target": f"train0.y{payload}",
        "suffix": f"2.0{payload}",
    }


def _shape(text: str) -> str:
    """The script's syntax tree with every string constant blanked: what it does, not what it says."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def _strings(text: str) -> list[str]:
    return [n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


@functools.cache
def _benign_shape(backend: str) -> str:
    return _shape(_repro(backend))


@pytest.mark.parametrize("backend", script.templated())
@pytest.mark.parametrize("payload", REPRO_PAYLOADS, ids=range(len(REPRO_PAYLOADS)))
def test_repro_holds_hostile_strings_as_string_constants(backend, payload):
    hostile = _repro(backend, **_hostile_strings(payload))
    # the payloads changed what the script says, never what it does
    assert _shape(hostile) == _benign_shape(backend)
    if "touch PWNED" in payload:
        assert any("touch PWNED" in s for s in _strings(hostile))  # kept, as data
    # the comparison target and the device are read back exactly
    assert f"train0.y{payload}" in _strings(hostile)


def test_template_strings_that_could_break_out_are_refused():
    """A template that prints a string unfiltered (not through |py or |prose) fails to render."""
    env = script.environment()
    for payload in REPRO_PAYLOADS:
        with pytest.raises(ValueError, match="unfiltered"):
            env.from_string('X = "{{ s }}"').render(s=payload)
        assert ast.literal_eval(env.from_string("{{ s | py }}").render(s=payload)) == payload


@pytest.mark.slow
def test_repro_with_hostile_strings_runs_and_creates_nothing(tmp_path):
    pytest.importorskip("torch")
    for k, payload in enumerate(REPRO_PAYLOADS):
        strings = {k: v for k, v in _hostile_strings(payload).items() if k not in ("device", "target")}
        folder = tmp_path / str(k)
        folder.mkdir()
        (folder / "repro.py").write_text(_repro("torch", **strings), encoding="utf-8")
        ran = subprocess.run(
            [sys.executable, "-I", "repro.py"], cwd=folder, capture_output=True, text=True, timeout=300
        )
        assert ran.returncode in (0, 1), ran.stdout[-2000:] + ran.stderr[-2000:]
        made = sorted(p.name for p in folder.iterdir())
        assert made == ["repro.py"], f"payload {k} made {made}"


def test_case_toml_comment_cannot_add_entries():
    """case.toml's comment carries the finding's title and original test id: it stays a comment."""
    text = casefile.group_toml(REPRO_CASE, "found_x", f"title\n[[group]]\nname = 'evil'\n{PYTHON}\r[defaults]")
    data = tomllib.loads(text)
    assert [g["name"] for g in data["group"]] == ["found_x"] and set(data) == {"group"}


# ---- no pickle, no eval: the wire and a static audit --------------------------------------------


def test_wire_refuses_non_numeric_dtypes():
    """An array's dtype arrives as a name: only numbers are rebuilt from bytes."""
    for dtype in ("object", "O", "V8", "S4", "U1"):
        with pytest.raises(TypeError, match="numbers only"):
            wire.decode({"a": [dtype, [1], b"\0" * 8]})
    back = wire.decode(wire.encode({"x": np.arange(3.0)}))
    assert back["x"].tolist() == [0.0, 1.0, 2.0]


_UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}
_SOURCES = ("crossbn", "benchmarks", "tools", "tests", "examples")


def _calls(tree) -> list[tuple[str, ast.Call]]:
    """(dotted name of the callee, the call) for every call of a plain or dotted name."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                out.append((".".join([f.id, *reversed(parts)]), node))
    return out


def _keyword(call: ast.Call, name: str):
    return next((k.value.value for k in call.keywords if k.arg == name and isinstance(k.value, ast.Constant)), None)


def _audit(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        found += [f"imports {n}" for n in names if n.split(".")[0] in _UNSAFE_MODULES]
    for name, call in _calls(tree):
        if name in ("eval", "exec", "__import__", "yaml.load", "yaml.unsafe_load", "pd.read_pickle"):
            found.append(f"calls {name}")
        if name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") is not False:
            found.append(f"calls {name} without allow_pickle=False")
        if name == "torch.load" and _keyword(call, "weights_only") is not True:
            found.append("calls torch.load without weights_only=True")
    return [f"{path.relative_to(ROOT)}:{problem}" for problem in found]


def test_no_pickle_eval_or_exec_in_the_sources():
    files = [p for d in _SOURCES for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts]
    assert len(files) > 50
    assert [problem for p in files for problem in _audit(p)] == []


def test_generated_code_loads_arrays_without_pickle():
    """The repro.py templates write text that runs elsewhere: the same rules, on the text."""
    for path in (ROOT / "crossbn" / "bugreport" / "templates").rglob("*.j2"):
        text = path.read_text(encoding="utf-8")
        assert "pickle" not in text.replace("allow_pickle=False", ""), path.name
        assert text.count("np.load(") == text.count("allow_pickle=False"), path.name


def test_loaders_of_user_files_execute_nothing():
    """Known differences, baselines, catalogues, results and the report's sources are read as
    TOML/JSON and used as values: none of these modules evaluates, compiles, imports or templates
    what it reads."""
    modules = [
        "records/known.py",
        "upgrade/baseline.py",
        "spec/catalogue.py",
        "spec/suites.py",
        "records/results.py",
        "records/store.py",
        "records/sources.py",
        "spec/network_catalogue.py",
        "bugreport/finding.py",
        "bugreport/batch.py",
        "bugreport/casefile.py",
    ]
    risky_calls = {"eval", "exec", "compile", "__import__", "os.system", "jinja2.Template"}
    risky_methods = {"import_module", "spec_from_file_location", "exec_module", "from_string"}
    for m in modules:
        called = {name for name, _ in _calls(ast.parse((ROOT / "crossbn" / m).read_text(encoding="utf-8")))}
        bad = (called & risky_calls) | {n for n in called if n.rsplit(".", 1)[-1] in risky_methods}
        assert not bad, f"crossbn/{m} calls {sorted(bad)}"


def test_report_templates_escape_everything_but_their_own_assets():
    from crossbn.report.render import environment

    env = environment()
    assert env.autoescape is True
    templates = ROOT / "crossbn" / "report" / "templates"
    unescaped = [
        line.strip()
        for p in templates.glob("*.j2")
        for line in p.read_text().splitlines()
        if re.search(r"\|\s*safe\b", line)
    ]
    assert unescaped == ["{{ inline_css | safe }}", "{{ inline_js | safe }}"]


def test_a_results_file_cannot_choose_the_interpreter_repro_runs(tmp_path):
    """Side by side, a record names the other release's interpreter; `crossbn
    repro` starts it only when the user names it too (--interpreter)."""
    from crossbn.records.results import make_record
    from crossbn.spec.case import Case

    planted = tmp_path / "python"
    touched = tmp_path / "PWNED"
    planted.write_text(f"#!/bin/sh\ntouch {touched}\n")
    planted.chmod(0o755)
    case = Case(shape=(8, 3), suite="smoke", group="smoke")
    rec = make_record(
        case=case, backend="torch@evil", device="cpu", verdict="deviation", version="2.0", interpreter=str(planted)
    )
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossbn",
            "repro",
            f"{case.id}--torch@evil--cpu",
            "--results",
            str(tmp_path),
            "--budget",
            "5s",
            "--out",
            str(tmp_path / "br"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"pass --interpreter {planted}" in proc.stderr
    assert not touched.exists()
