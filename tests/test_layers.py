"""The package's layers: every import goes down (or stays in its package),
no module imports itself back through others, and no private name crosses a
module. Function-level imports count like top-level ones: they are the ones
that hide cycles. docs/architecture.md explains the layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "crossbn"

# Lowest first; packages in one tuple share a rank and may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("spec",),
    ("oracle",),
    ("backends",),
    ("execution",),
    ("records",),
    ("verdict",),
    ("conventions",),
    ("upgrade", "bugreport"),
    ("report",),
    ("app", "conformance"),
    ("__main__",),
]
RANK = {package: i for i, group in enumerate(LAYERS) for package in group}


def read_package(root: Path, name: str = "crossbn") -> dict[str, str]:
    """{module name: source} of every module under `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((name, *parts))] = path.read_text()
    return out


def imports(modules: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """{module: [(imported module, private name or "")]} for imports of the package itself."""
    top = next(iter(modules)).split(".")[0]
    out: dict[str, list[tuple[str, str]]] = {}
    for name, source in modules.items():
        is_package = f"{name}.__init__" in modules or any(m.startswith(name + ".") for m in modules)
        edges = out.setdefault(name, [])
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                edges += [(a.name, "") for a in node.names if a.name.split(".")[0] == top]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if base.split(".")[0] != top:
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in modules:
                        edges.append((sub, ""))
                    else:
                        edges.append((base, a.name if a.name.startswith("_") and not a.name.startswith("__") else ""))
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def problems(modules: dict[str, str]) -> list[str]:
    """Every import against the layers, every cycle, every private name imported across modules."""
    graph = imports(modules)
    out = []
    for module, edges in graph.items():
        for target, private in edges:
            if private and target != module:
                out.append(f"{module} imports the private name {private} from {target}")
            mine, theirs = layer(module), layer(target)
            if not mine or not theirs or mine == theirs:
                continue
            if mine not in RANK or theirs not in RANK:
                out.append(f"{module}: {mine if mine not in RANK else theirs} is in no layer")
            elif RANK[theirs] >= RANK[mine]:
                out.append(f"{module} ({mine}) imports {target} ({theirs}): against the layers")
    out += [
        f"import cycle: {' -> '.join(c)}"
        for c in cycles({m: {t for t, _ in e if t in graph} for m, e in graph.items()})
    ]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v] - {v}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_crossbn_follows_its_layers():
    modules = read_package(PACKAGE)
    assert len(modules) > 80
    assert problems(modules) == []


def test_every_subpackage_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(RANK), packages - set(RANK)


def test_the_check_sees_an_upward_import_a_cycle_and_a_private_name():
    fake = {
        "crossbn": "",
        "crossbn.spec": "",
        "crossbn.spec.case": "def f():\n    from crossbn.verdict.judge import judge\n",
        "crossbn.verdict": "",
        "crossbn.verdict.judge": "from crossbn.spec.case import _secret\nfrom . import compare\n",
        "crossbn.verdict.compare": "from .judge import judge\n",
    }
    found = problems(fake)
    assert "crossbn.spec.case (spec) imports crossbn.verdict.judge (verdict): against the layers" in found
    assert "crossbn.verdict.judge imports the private name _secret from crossbn.spec.case" in found
    # one component, listed once
    assert [c for c in found if c.startswith("import cycle:")] == [
        "import cycle: crossbn.spec.case -> crossbn.verdict.compare -> crossbn.verdict.judge"
    ]


def test_a_clean_package_has_no_problems():
    clean = {
        "crossbn": "",
        "crossbn.spec": "",
        "crossbn.spec.case": "import numpy\n",
        "crossbn.verdict": "",
        "crossbn.verdict.judge": "from crossbn.spec.case import Case\n",
    }
    assert problems(clean) == []


def test_module_docstrings_say_what_the_module_is_for_in_a_few_lines():
    """Design notes live in docs/ (docs/internals/); a module's docstring stays short."""
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        if doc and len(doc.strip().splitlines()) > 15:
            long[str(path.relative_to(PACKAGE.parent))] = len(doc.strip().splitlines())
    assert long == {}


def test_the_tests_import_no_private_name_of_crossbn():
    tests = {f"tests.{p.stem}": p.read_text() for p in sorted(PACKAGE.parent.joinpath("tests").glob("*.py"))}
    private = [
        f"{module} imports {a.name} from {node.module}"
        for module, source in tests.items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crossbn")
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]
    assert private == []
