"""A fresh Python (or R) process, measured: for the command-line start-up and whole-process benchmarks.

The child runs in the repository root with the project on ``PYTHONPATH``; its wall time, CPU
time (user + system) and peak resident set size come from ``os.wait4``, so they are the child's
own, not the benchmark's.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["child_env", "run_measured"]


def child_env() -> dict[str, str]:
    """This process's environment with the repository root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_measured(cmd: list[str]) -> tuple[float, float, float, int, str]:
    """Run ``cmd`` to the end: (wall s, CPU s, peak RSS MiB, exit code, its standard error)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""  # drained, so a chatty child never blocks
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status), err
