"""Throughput of ``tsct detect batch --cluster local`` (pairs per hour) with 1 and 2 workers.

Each worker runs one case at a time (the pipeline is already multi-threaded inside a case). The
cases are synthetic "small" pairs (128 x 128 x 96 voxels, 1.5 x 1.5 x 2 mm); every case of a run
is written to a fresh output folder, so nothing is skipped. The machine's load average and core
count are printed with the figures: on a shared machine the throughput depends on them.

Usage::

    .venv/bin/python bench/bench_cluster.py                        # 4 cases, rigid only, no z-map
    .venv/bin/python bench/bench_cluster.py --cases 8 --deformable bspline --zscore
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=4, help="cases per run (default 4)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    ap.add_argument("--deformable", default="none", help="deformable stage (default none: rigid only, to keep the benchmark short)")
    ap.add_argument("--zscore", action="store_true", help="also run the z-score stage")
    args = ap.parse_args()

    from cases import Case, CaseList, synthesize_pair, write_case_list, write_volume
    from detector import RegistrationConfig
    from detector.cluster import run_case_list_on_cluster

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        rows = []
        for i in range(args.cases):
            pair = synthesize_pair(f"b{i}", seed=100 + i, size="small", abnormal=False, vary_acquisition=False, benign_finding=False)
            prior = write_volume(pair.prior, folder / f"b{i}_prior.nii.gz")
            current = write_volume(pair.current, folder / f"b{i}_current.nii.gz")
            rows.append(Case(f"b{i}", prior, current, abnormal=False))
        case_list = write_case_list(CaseList(tuple(rows)), folder / "cases.csv")
        print(f"{args.cases} small cases (128x128x96), deformable={args.deformable}, zscore={args.zscore}; {os.cpu_count()} cores")
        for n in [int(v) for v in args.workers.split(",")]:
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            result = run_case_list_on_cluster(
                case_list,
                folder / f"out-{n}",
                cluster="local",
                n_workers=n,
                retries=0,
                config=RegistrationConfig(deformable=args.deformable),
                zscore=args.zscore,
                save_transform=False,
            )
            wall = time.perf_counter() - start
            done = len(result.completed)
            print(
                f"{n} worker(s): {done}/{args.cases} cases in {wall:.1f} s (cluster start included) -> "
                f"{3600 * done / wall:.0f} pairs/hour; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
                + (f"; FAILED: {result.failed}" if result.failed else "")
            )


if __name__ == "__main__":
    main()
