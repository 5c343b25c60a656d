"""Benchmark: how fast the command line starts (issue 12 item 4, issue 15).

Runs ``tsct --help`` and ``tsct analyze --help`` as fresh processes (``--repeats`` times each)
and prints, per command, the median and best wall time, the CPU time (user + system) and the
peak resident set size of the child process (``os.wait4``).  Targets: <= 0.5 s wall and
<= 150 MiB.  On a loaded machine the wall time includes waiting for a CPU, so the CPU time and
the load average are printed beside it.  Then the ``python -X importtime`` entries with the
largest cumulative time for each command.

Usage::

    python bench/bench_cli_startup.py [--repeats 5] [--top 12] [--no-bytecode-cache]

Python children keep their bytecode between runs, as Python does by default (``bench/_process.py``);
``--no-bytecode-cache`` keeps an environment's ``PYTHONDONTWRITEBYTECODE`` instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._process import bytecode_note, child_env, run_measured, set_bytecode_cache  # noqa: E402

ENTRY = "import tsct_cli; tsct_cli.main()"
COMMANDS = {"tsct --help": ["--help"], "tsct analyze --help": ["analyze", "--help"]}


def run_child(args: list[str]) -> tuple[float, float, float, int]:
    """Run ``python -c ENTRY args``; (wall s, CPU s, peak RSS MiB, exit code)."""
    return run_measured([sys.executable, "-c", ENTRY, *args])[:4]


def importtime_top(args: list[str], top: int) -> list[tuple[int, str]]:
    """The ``-X importtime`` entries with the largest cumulative time (microseconds, module)."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", ENTRY, *args], cwd=ROOT, env=child_env(), capture_output=True, text=True)
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line.split(":", 1)[1].split("|", 2)
        rows.append((int(cum_us), name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep the environment's PYTHONDONTWRITEBYTECODE (then every run recompiles the project's modules)",
    )
    args = parser.parse_args()
    set_bytecode_cache(not args.no_bytecode_cache)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {bytecode_note()}")
    for label, argv in COMMANDS.items():
        run_child(argv)  # warm the file cache
        runs = [run_child(argv) for _ in range(args.repeats)]
        codes = {r[3] for r in runs}
        walls = [r[0] for r in runs]
        cpus = [r[1] for r in runs]
        rss = max(r[2] for r in runs)
        print(
            f"{label:22s} wall median {statistics.median(walls):.3f} s (best {min(walls):.3f} s), "
            f"CPU median {statistics.median(cpus):.3f} s, peak RSS {rss:.1f} MiB, exit {sorted(codes)}"
        )
    for label, argv in COMMANDS.items():
        print(f"\npython -X importtime, {label}: top {args.top} by cumulative time")
        for cum_us, name in importtime_top(argv, args.top):
            print(f"  {cum_us / 1000:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
