"""Time a reader actively spends on a case, with pauses left out.

The reading service records ``reading_time_s`` when a case is finished. Open-to-finish time
would count a coffee break or an overnight stop as reading, so the app measures *active* time:
every interaction with the case (the viewer reports one at least every few seconds while the
reader scrolls, windows or marks, and every page action counts) adds the time since the previous
one, but at most ``idle_cap_s``: a gap longer than that counts as ``idle_cap_s`` (the reader
looked at the image without touching it, or left). The totals are kept per reader and case read
in the server process, so a browser reload or another tab continues the same count; after a server
restart the count starts again from the next interaction.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable

__all__ = ["ActiveTimeTracker"]


class ActiveTimeTracker:
    """Accumulates active time per key (e.g. ``(reader_id, case_read_id)``).

    Parameters
    ----------
    idle_cap_s : the most a single gap between interactions adds.
    clock : monotonic seconds (tests pass a fake).
    """

    def __init__(self, idle_cap_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not idle_cap_s > 0:
            raise ValueError(f"idle_cap_s must be positive, got {idle_cap_s}.")
        self.idle_cap_s = float(idle_cap_s)
        self._clock = clock
        self._total: dict[Hashable, float] = {}
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def touch(self, key: Hashable) -> float:
        """Record an interaction now; returns the active seconds so far."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            total = self._total.get(key, 0.0)
            if last is not None:
                total += min(max(0.0, now - last), self.idle_cap_s)
            self._total[key] = total
            self._last[key] = now
            return total

    def total_s(self, key: Hashable) -> float:
        """Active seconds so far (0 for a key never touched)."""
        with self._lock:
            return self._total.get(key, 0.0)

    def pop(self, key: Hashable) -> float | None:
        """Forget a key (after its case is finished); returns its total, or ``None`` if unknown."""
        with self._lock:
            self._last.pop(key, None)
            return self._total.pop(key, None)
