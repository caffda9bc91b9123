"""Sharding a run: `--shard K/N` keeps the tests of shard K of N.

A test belongs to the shard its own id hashes to (sha256 of
"CASE-BACKEND-DEVICE", modulo N), so the split depends on nothing but the
test: the same on every machine and every run, under any -n, whatever else
is installed, and a test is in exactly one shard. Shards are run as separate
processes or on separate machines; `crossbn report A B` (store.merge)
joins their results into one report, sorted as one run's would be.
"""

from __future__ import annotations

import hashlib
import re


class ShardError(ValueError):
    pass


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """ "K/N" as (K, N), 1 <= K <= N; None for no sharding."""
    if text is None or str(text).strip() in ("", "all"):
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ShardError(f"{text!r} is not K/N (e.g. 1/2: the first of two shards)")
    k, n = int(m[1]), int(m[2])
    if not 1 <= k <= n:
        raise ShardError(f"{text!r}: K must be between 1 and N (got shard {k} of {n})")
    return k, n


def in_shard(test_id: str, k: int, n: int) -> bool:
    """Whether the test `test_id` (its parametrized name) is in shard k of n."""
    bracket = test_id.find("[")
    key = test_id[bracket + 1 : -1] if bracket >= 0 and test_id.endswith("]") else test_id
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n == k - 1
