"""The controller's upgrade checks at the end of a conformance run (called
from plugin.pytest_sessionfinish, once the results are merged): the run
against a baseline (--crossbn-compare) and, side by side, each later-named
release of a framework against the first-named one. Either writes its JSON
beside the results for the report, and a regression fails the session."""

from __future__ import annotations

import pytest


def compare_with_baseline(session, st) -> None:
    """--crossbn-compare: the merged results against the baseline (under
    --crossbn-baselines), written beside them; a result of a --crossbn-fail-on
    class (a regression, by default) makes the session fail."""
    base = st.options.compare
    if not base or not (st.options.out / "results.jsonl").exists():
        return
    from crossbn.upgrade.baseline import BaselineError, compare, failing, load, write_comparison

    try:
        rows = compare(load(base, st.options.baselines), load(st.options.out))
    except BaselineError as e:
        st.run.comparison = {"error": str(e)}
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    st.run.comparison = write_comparison(rows, st.options.out, base, str(st.options.out), st.options.fail_on)
    if failing(st.run.comparison):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def compare_side_by_side(session, st) -> None:
    """Two releases of one framework in the run (`torch@/other/python,torch`):
    the later-named one's results classified against the first-named one's,
    as against a baseline; a regression makes the session fail."""
    pairs = [(b.compare_with, name) for name, b in st.options.backends.items() if b.compare_with]
    if not pairs or not (st.options.out / "results.jsonl").exists():
        return
    from crossbn.upgrade.baseline import failing, side_by_side, write_side_by_side

    st.run.side_by_side = side_by_side(st.options.out, pairs, st.options.fail_on)
    write_side_by_side(st.run.side_by_side, st.options.out)
    if any(failing(c) for c in st.run.side_by_side):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary_lines(st) -> list[tuple[str, bool]]:
    """The terminal summary's lines about both checks: (text, red)."""
    out = []
    if st.run.comparison is not None and "error" in st.run.comparison:
        out.append((f"compare: {st.run.comparison['error']}", True))
    elif st.run.comparison is not None:
        out.append(_counts_line(f"compared with {st.run.comparison['base']}", st.run.comparison))
    for c in st.run.side_by_side:
        out.append(_counts_line(f"side by side, {c['new']} against {c['base']}", c))
    return out


def _counts_line(what: str, comparison: dict) -> tuple[str, bool]:
    from crossbn.upgrade.baseline import failing

    counts = ", ".join(f"{c} {n}" for c, n in comparison["counts"].items())
    return f"{what}: {counts}", bool(failing(comparison))
