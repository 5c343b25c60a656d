"""Benchmark: vectorised wAFROC figure of merit + case-deletion jackknife on a large study.

Generates a synthetic FROC study with a fixed seed (default: 2 treatments x 11 readers x 2000
cases, half of them abnormal with 1-5 lesions each, 0-4 NL marks per case, ratings on a
continuous scale with some ties; ``bench/_studies.py``), then times ``fom_matrix`` and ``jackknife_fom_matrix`` /
``pseudovalues`` and reports the peak memory traced by :mod:`tracemalloc` (NumPy allocations
included).

Usage::

    python bench/bench_fom.py [--treatments 2] [--readers 11] [--cases 2000] [--seed 1] [--fom wAFROC]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import fom_matrix, jackknife_fom_matrix, pseudovalues  # noqa: E402
from bench._studies import add_study_options, synthetic_froc_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_options(parser)
    parser.add_argument("--fom", default="wAFROC")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = synthetic_froc_study(args.treatments, args.readers, args.cases, seed=args.seed)
    print(data.summary())
    fom_matrix(data, args.fom)  # warm-up

    times = {"fom_matrix": [], "jackknife_fom_matrix": [], "pseudovalues": []}
    for _ in range(args.repeats):
        for label, fn in (("fom_matrix", fom_matrix), ("jackknife_fom_matrix", jackknife_fom_matrix), ("pseudovalues", pseudovalues)):
            t0 = time.perf_counter()
            fn(data, args.fom)
            times[label].append(time.perf_counter() - t0)

    tracemalloc.start()
    pv = pseudovalues(data, args.fom)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(
        f"\n{args.fom}: I={data.n_treatments} J={data.n_readers} K={data.n_cases} "
        f"(K1={data.n_normal}, K2={data.n_abnormal}, lesions={data.n_lesions}); "
        f"output {pv.shape}"
    )
    for label, ts in times.items():
        print(f"  {label:22s} median {np.median(ts) * 1e3:8.1f} ms   min {min(ts) * 1e3:8.1f} ms")
    print(f"  peak traced memory (pseudovalues): {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
