"""A fresh Python (or R) process, measured: for the command-line start-up and whole-process benchmarks.

The child runs in the repository root with the project on ``PYTHONPATH``; its wall time, CPU
time (user + system) and peak resident set size come from ``os.wait4``, so they are the child's
own, not the benchmark's.

Python children keep their compiled bytecode between runs, as Python does by default and as
installed code runs (pip compiles it at install): an environment that sets
``PYTHONDONTWRITEBYTECODE`` would otherwise have every run recompile the project's own modules,
about 0.07 s of CPU for ``tsct analyze st``.  The bytecode goes to :data:`PYCACHE` (outside the
source tree and the shared environment); ``set_bytecode_cache(False)`` keeps the environment's
setting instead.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: where the children's compiled bytecode goes (``PYTHONPYCACHEPREFIX``) while the cache is on
PYCACHE = Path(tempfile.gettempdir()) / "tsct-bench-pycache"

__all__ = ["PYCACHE", "bytecode_note", "child_env", "run_measured", "set_bytecode_cache"]

_bytecode_cache = True


def set_bytecode_cache(on: bool) -> None:
    """Whether Python children keep their bytecode between runs (default) or follow the environment."""
    global _bytecode_cache
    _bytecode_cache = on


def bytecode_note() -> str:
    """One line saying how the children treat bytecode, for the benchmarks' header."""
    if _bytecode_cache:
        return f"bytecode cached between runs (PYTHONPYCACHEPREFIX={os.environ.get('PYTHONPYCACHEPREFIX') or PYCACHE})"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "bytecode NOT cached: PYTHONDONTWRITEBYTECODE is set, so every run recompiles what has no .pyc"
    return "bytecode as the environment has it (PYTHONDONTWRITEBYTECODE unset: cached)"


def child_env() -> dict[str, str]:
    """This process's environment with the repository root first on ``PYTHONPATH`` (and, unless
    :func:`set_bytecode_cache` turned it off, the bytecode cache on)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if _bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    return env


def run_measured(cmd: list[str]) -> tuple[float, float, float, int, str]:
    """Run ``cmd`` to the end: (wall s, CPU s, peak RSS MiB, exit code, its standard error)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""  # drained, so a chatty child never blocks
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status), err
