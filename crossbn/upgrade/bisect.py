"""Which release changed a result: bisection over a framework's releases.

Pure logic over an ordered list of releases (GOOD first, BAD last) and a
`test(release, keys)` that runs one release for some results and says, for
each, whether its outputs differ from GOOD's (True), do not (False), or
could not be told (None: the release's run failed for that result). A
release that cannot be installed or run at all is a string (why), skipped
for every result, and the search goes on around it, as `git bisect skip`
does. Every result is searched on its own, but a release is run once for
all the results that need it at that step (the one most of their midpoints
fall on), and never twice. `sweep` runs every release instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

Outcome = bool | None
# test(release, keys) -> {key: Step} for the keys it ran, or a string: why the release could not run
Test = Callable[[str, list], "dict[Any, Step] | str"]


@dataclass(frozen=True)
class Step:
    """One result at one release."""

    differs: Outcome  # from GOOD's outputs, beyond the bound (or in any bit, bitwise)
    verdict: str = ""  # against the oracle at this release
    ratio: float | None = None  # its error/bound
    against_good: str = ""  # the side-by-side verdict: bitwise, agree, disagree, ...


@dataclass
class Answer:
    """One result's bisection: the last release like GOOD and the first not."""

    key: Hashable
    last_good: str | None = None
    first_bad: str | None = None
    # releases between the two that could not be told (not installed, not run):
    # the change is in one of them or in first_bad
    untold: list[str] = field(default_factory=list)
    reproduced: bool = True  # False: the result does not differ at BAD

    @property
    def exact(self) -> bool:
        return self.reproduced and not self.untold


@dataclass
class Bisection:
    releases: list[str]
    answers: dict[Any, Answer]
    steps: dict[str, dict[Any, Step]]  # release -> what it gave, for the results it ran
    skipped: dict[str, str]  # release -> why it could not run


def _run(test: Test, release: str, keys: list, steps: dict, skipped: dict) -> dict | None:
    if release in skipped:
        return None
    got = test(release, keys)
    if isinstance(got, str):
        skipped[release] = got
        return None
    steps.setdefault(release, {}).update(got)
    return got


def bisect(releases: list[str], keys: list, test: Test) -> Bisection:
    """Each key's first release that differs from releases[0] (GOOD), given
    that releases[-1] (BAD) differs; BAD is run first to find which do."""
    if len(releases) < 2:
        raise ValueError("bisection needs GOOD and BAD, two releases at least")
    steps: dict[str, dict[Any, Step]] = {}
    skipped: dict[str, str] = {}
    answers = {k: Answer(k) for k in keys}
    last = len(releases) - 1
    at_bad = _run(test, releases[last], list(keys), steps, skipped)
    if at_bad is None:
        raise ValueError(f"BAD {releases[last]} could not run: {skipped[releases[last]]}")
    bounds: dict[Any, list[int]] = {}
    unknown: dict[Any, set[int]] = {}
    for k in keys:
        s = at_bad.get(k)
        if s is None or s.differs is not True:
            answers[k].reproduced = False
        else:
            bounds[k], unknown[k] = [0, last], set()
    while True:
        mids = {k: m for k in bounds if (m := _midpoint(bounds[k], unknown[k], skipped, releases)) is not None}
        if not mids:
            break
        pick = min(Counter(mids.values()).most_common(), key=lambda c: (-c[1], c[0]))[0]
        here = [k for k in bounds if bounds[k][0] < pick < bounds[k][1] and pick not in unknown[k]]
        got = _run(test, releases[pick], here, steps, skipped)
        for k in here:
            s = None if got is None else got.get(k)
            if s is None or s.differs is None:
                unknown[k].add(pick)
            elif s.differs:
                bounds[k][1] = pick
            else:
                bounds[k][0] = pick
    for k, (lo, hi) in bounds.items():
        a = answers[k]
        a.last_good, a.first_bad = releases[lo], releases[hi]
        a.untold = [releases[i] for i in range(lo + 1, hi)]
    return Bisection(releases, answers, steps, skipped)


def _midpoint(bound: list[int], unknown: set[int], skipped: dict, releases: list[str]) -> int | None:
    """The release nearest the middle of (lo, hi) not yet found untellable."""
    lo, hi = bound
    left = [i for i in range(lo + 1, hi) if i not in unknown and releases[i] not in skipped]
    if not left:
        return None
    middle = (lo + hi) / 2
    return min(left, key=lambda i: (abs(i - middle), i))


def sweep(releases: list[str], keys: list, test: Test) -> Bisection:
    """Every release run for every key: the timeline. Each answer is read off
    it as the first release that differs, the one before it as last good."""
    steps: dict[str, dict[Any, Step]] = {}
    skipped: dict[str, str] = {}
    for release in releases:
        _run(test, release, list(keys), steps, skipped)
    answers = {}
    for k in keys:
        a = Answer(k)
        told = [(r, steps[r][k]) for r in releases if k in steps.get(r, {}) and steps[r][k].differs is not None]
        bad = next((i for i, (_, s) in enumerate(told) if s.differs), None)
        if bad is None:
            a.reproduced = False
        else:
            a.first_bad = told[bad][0]
            a.last_good = told[bad - 1][0] if bad else None
            lo = releases.index(a.last_good) if a.last_good else 0
            a.untold = [r for r in releases[lo + 1 : releases.index(a.first_bad)] if r not in dict(told)]
        answers[k] = a
    return Bisection(releases, answers, steps, skipped)
