"""A `crossbn bisect` answer for one finding, as ISSUE.md states it
("regression in X.Y.Z"): read from the bisect folder's bisect.json."""

from __future__ import annotations

import json
from pathlib import Path


class RegressionError(ValueError):
    """A bisect folder that cannot say which release changed this finding."""


def answer_for(folder: str, case_id: str, backend: str, device: str) -> dict:
    """The answer of `folder`/bisect.json for this result (its case, its
    backend without the @release label, its device)."""
    path = Path(folder) / "bisect.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RegressionError(f"--bisect {folder}: no readable bisect.json ({e})") from e
    base = backend.split("@")[0]
    for a in data.get("answers", []):
        if (a.get("case_id"), a.get("backend"), a.get("device")) == (case_id, base, device):
            if not a.get("reproduced") or not a.get("first_bad"):
                raise RegressionError(
                    f"--bisect {folder}: this finding does not differ between {data['good']} and {data['bad']}"
                )
            return {
                "framework": data["framework"],
                "good": data["good"],
                "bad": data["bad"],
                "runs": len(data.get("steps", {})),
                "bitwise": bool(data.get("bitwise")),
                "releases": len(data.get("releases", [])),
                "notes": (data.get("notes") or {}).get(a["first_bad"]),
                **{k: a[k] for k in ("last_good", "first_bad", "untold")},
            }
    raise RegressionError(f"--bisect {folder}: no answer for case {case_id} on {base}/{device} there")


def sentence(r: dict) -> str:
    """ISSUE.md's paragraph on when the finding appeared."""
    where = f"{r['framework']} {r['first_bad']}"
    if r["untold"]:
        where += f" (or {', '.join(r['untold'])}, which could not be installed or run to tell)"
    alike = "bit for bit" if r.get("bitwise") else "within their error bounds"
    text = (
        f"This is a regression in {where}: the outputs of {r['last_good']}, the release before it, agree with "
        f"{r['good']}'s on this finding's case ({alike}), and {r['first_bad']}'s differ from them "
        f"(`crossbn bisect {r['framework']} {r['good']} {r['bad']}`: {r['runs']} of the {r['releases']} "
        f"releases from {r['good']} to {r['bad']} run side by side with {r['good']})."
    )
    if r.get("notes"):
        text += f" Release notes: {r['notes']}"
    return text
