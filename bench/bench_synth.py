"""Benchmark: generate one clinical-size synthetic prior/current pair; print wall time and peak memory.

Target (issue): under 60 s and under 6 GB peak on a 2-core machine.

Usage::

    python bench/bench_synth.py                 # one clinical pair, seed 0
    python bench/bench_synth.py --seed 3 --write /tmp/bench_case   # also time writing NIfTI + transform

Peak memory is the process's maximum resident set size (``resource.getrusage``), which
includes the Python interpreter and imported libraries (measured separately before the run).
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_gib() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="clinical", choices=["small", "clinical"])
    parser.add_argument("--abnormal", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--write", type=Path, default=None, help="also write the case (NIfTI, labels, transform) here and time it")
    args = parser.parse_args()

    from cases.synth import synthesize_pair, write_pair

    rss_start = _rss_gib()
    stages: list[tuple[str, float]] = []
    t0 = time.perf_counter()

    def progress(stage: str, _fraction: float) -> None:
        if not stages or stages[-1][0] != stage:
            stages.append((stage, time.perf_counter() - t0))

    pair = synthesize_pair("BENCH", seed=args.seed, size=args.size, abnormal=args.abnormal, progress=progress)
    wall = time.perf_counter() - t0
    peak = _rss_gib()

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"case: {pair.summary()}")
    print(
        f"prior {pair.prior.shape} (z, y, x), current {pair.current.shape}; anatomy grid {pair.parameters['geometry']['anatomy']['size_xyz']} (x, y, z)"
    )
    print("stages (start time):")
    for (name, start), nxt in zip(stages, stages[1:] + [("end", wall)]):
        print(f"  {name:16s} {start:6.1f} s  ({nxt[1] - start:5.1f} s)")
    print(f"wall time: {wall:.1f} s (target < 60 s)")
    print(f"peak RSS: {peak:.2f} GiB (interpreter and libraries before the run: {rss_start:.2f} GiB; target < 6 GB)")
    if args.write is not None:
        t1 = time.perf_counter()
        paths = write_pair(pair, args.write)
        size_mb = sum(p.stat().st_size for p in paths.values() if p.is_file()) / 1e6
        print(f"writing: {time.perf_counter() - t1:.1f} s, {size_mb:.0f} MB in {args.write}")
        print(f"peak RSS after writing: {_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
