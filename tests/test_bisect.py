"""crossbn bisect's search, on planted releases (no package index, no framework)."""

import pytest

from crossbn.upgrade.bisect import Step, bisect, sweep

RELEASES = [f"1.{i}.0" for i in range(10)]  # 1.0.0 (GOOD) ... 1.9.0 (BAD)


def planted(changes: dict, broken: dict | None = None, untellable: dict | None = None, calls: list | None = None):
    """A test whose result `k` differs from GOOD from release changes[k] on
    (None: never); `broken` releases cannot run (why); `untellable[k]`: the
    releases that run but cannot tell result k."""

    def test(release, keys):
        if calls is not None:
            calls.append((release, tuple(keys)))
        if broken and release in broken:
            return broken[release]
        out = {}
        for k in keys:
            if untellable and release in untellable.get(k, ()):
                out[k] = Step(None, "crash")
                continue
            first = changes[k]
            differs = first is not None and RELEASES.index(release) >= RELEASES.index(first)
            out[k] = Step(differs, "deviation" if differs else "match", 3.0 if differs else 0.2)
        return out

    return test


@pytest.mark.parametrize("first", RELEASES[1:])
def test_each_release_can_be_found_in_log2_runs(first):
    calls = []
    b = bisect(RELEASES, ["r"], planted({"r": first}, calls=calls))
    a = b.answers["r"]
    assert (a.first_bad, a.exact) == (first, True)
    assert a.last_good == RELEASES[RELEASES.index(first) - 1]
    assert len(calls) <= 1 + 4  # BAD, then at most ceil(log2(9)) midpoints
    assert len({r for r, _ in calls}) == len(calls)  # no release run twice


def test_results_share_runs_and_each_gets_its_own_answer():
    calls = []
    changes = {"a": "1.3.0", "b": "1.3.0", "c": "1.7.0", "d": None}
    b = bisect(RELEASES, list(changes), planted(changes, calls=calls))
    assert {k: b.answers[k].first_bad for k in "abc"} == {"a": "1.3.0", "b": "1.3.0", "c": "1.7.0"}
    assert b.answers["d"].reproduced is False and b.answers["d"].first_bad is None
    assert calls[0] == ("1.9.0", ("a", "b", "c", "d"))  # BAD first, for every result
    assert all("d" not in keys for _, keys in calls[1:])  # one that does not differ at BAD is not searched
    assert len(calls) < 1 + 2 * 4  # a and b searched together


def test_a_release_that_cannot_be_installed_is_skipped_and_searched_around():
    broken = {"1.4.0": "cannot be installed here: no wheel for this Python", "1.5.0": "no wheel"}
    b = bisect(RELEASES, ["r"], planted({"r": "1.6.0"}, broken=broken))
    a = b.answers["r"]
    assert (a.last_good, a.first_bad, a.untold, a.exact) == ("1.3.0", "1.6.0", ["1.4.0", "1.5.0"], False)
    assert set(b.skipped) == {"1.4.0", "1.5.0"}
    exact = bisect(RELEASES, ["r"], planted({"r": "1.2.0"}, broken=broken)).answers["r"]
    assert (exact.last_good, exact.first_bad, exact.exact) == ("1.1.0", "1.2.0", True)


def test_a_result_a_release_cannot_tell_is_searched_around_for_that_result_only():
    changes = {"a": "1.5.0", "b": "1.5.0"}
    b = bisect(RELEASES, ["a", "b"], planted(changes, untellable={"a": {"1.4.0"}}))
    assert (b.answers["a"].first_bad, b.answers["a"].untold) == ("1.5.0", ["1.4.0"])
    assert (b.answers["b"].first_bad, b.answers["b"].exact) == ("1.5.0", True)


def test_bad_that_cannot_run_is_an_error_and_good_bad_need_two_releases():
    with pytest.raises(ValueError, match="BAD 1.9.0 could not run: no wheel"):
        bisect(RELEASES, ["r"], planted({"r": "1.1.0"}, broken={"1.9.0": "no wheel"}))
    with pytest.raises(ValueError, match="two releases"):
        bisect(RELEASES[:1], ["r"], planted({"r": None}))


def test_sweep_runs_every_release_and_reads_the_answer_off_the_timeline():
    calls = []
    changes = {"a": "1.3.0", "b": None}
    s = sweep(RELEASES, list(changes), planted(changes, broken={"1.2.0": "no wheel"}, calls=calls))
    assert [r for r, _ in calls] == RELEASES
    assert (s.answers["a"].last_good, s.answers["a"].first_bad, s.answers["a"].untold) == ("1.1.0", "1.3.0", ["1.2.0"])
    assert s.answers["b"].reproduced is False
    assert [s.steps[r]["a"].verdict for r in RELEASES if r != "1.2.0"] == ["match"] * 2 + ["deviation"] * 7
