"""The tally table of the hostile-input benchmarks: one row per group, one column per outcome, and a total row."""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

__all__ = ["print_tally"]


def print_tally(rows: Mapping[str, Counter], columns: Sequence[str], label: str) -> Counter:
    """Print how many cases of each group (``label`` column) had each outcome, with a ``tried`` and a total row; returns the totals."""
    width = max([len(label), len("total")] + [len(name) for name in rows])
    cell = max([5] + [len(c) for c in columns])
    print(f"{label:<{width}} {'tried':>5} " + " ".join(f"{c:>{cell}}" for c in columns))
    total: Counter = Counter()
    for name, counts in rows.items():
        total.update(counts)
        print(f"{name:<{width}} {sum(counts.values()):>5} " + " ".join(f"{counts[c]:>{cell}}" for c in columns))
    print(f"{'total':<{width}} {sum(total.values()):>5} " + " ".join(f"{total[c]:>{cell}}" for c in columns))
    return total
