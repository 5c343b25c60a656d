"""Load and crash benchmark of mark saving: 11 readers, >= 10,000 marks, server killed mid-run.

For each database (SQLite file with WAL and synchronous=FULL; PostgreSQL in a throw-away
cluster on 127.0.0.1 with fsync on), 11 simulated readers save marks concurrently, without pauses,
through a mark server process on 127.0.0.1 (reader_study.harness.loadtest). Once 40 % of the marks are
acknowledged the server is killed with SIGKILL and restarted; clients retry unacknowledged
saves with the same client key. Afterwards every acknowledged mark must be in the database exactly
once. Prints marks per second and save latency percentiles (target: p95 <= 50 ms on SQLite).

    .venv/bin/python bench/bench_marks_load.py                     # both databases
    .venv/bin/python bench/bench_marks_load.py --backend sqlite --marks 20000 --json reports/marks-load.json

Bounded: at most --marks marks (rounded up to whole cases), loopback only; a few minutes at most.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reader_study.harness import PostgresUnavailable, TemporaryPostgres  # noqa: E402
from reader_study.harness.loadtest import run_load_test  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--readers", type=int, default=11, help="simulated readers (default 11)")
    parser.add_argument("--marks", type=int, default=10_000, help="at least this many marks in all (default 10,000)")
    parser.add_argument("--cases", type=int, default=40, help="study cases per reader session (default 40)")
    parser.add_argument("--kill-fraction", type=float, default=0.4, help="kill the server after this share of marks (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sqlite-synchronous",
        nargs="+",
        default=["FULL"],
        choices=["FULL", "NORMAL"],
        help="SQLite durability mode(s) to run (default FULL, the platform default)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not 1 <= args.readers <= 64 or not 1 <= args.marks <= 200_000:
        parser.error("keep it bounded: 1-64 readers and at most 200,000 marks")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    runs = [(b, mode) for b in backends for mode in (args.sqlite_synchronous if b == "sqlite" else [None])]
    results = []
    failed = False
    load_before = os.getloadavg()
    for backend, mode in runs:
        if mode:
            os.environ["TSCT_SQLITE_SYNCHRONOUS"] = mode  # read by the server process too
        with tempfile.TemporaryDirectory(prefix="tsct-load-") as tmp:
            folder = Path(tmp)
            kwargs = dict(
                n_readers=args.readers, n_marks=args.marks, n_cases=args.cases, kill_fraction=args.kill_fraction, seed=args.seed, progress=True
            )
            if backend == "sqlite":
                result = run_load_test(f"sqlite:///{folder / 'load.sqlite3'}", folder, **kwargs)
            else:
                try:
                    with TemporaryPostgres(durable=True) as pg:
                        result = run_load_test(pg.create_database(), folder, **kwargs)
                except PostgresUnavailable as exc:
                    print(f"postgresql: skipped ({exc})")
                    continue
        label = f"{result.backend} (synchronous={mode})" if mode else f"{result.backend} (fsync on)"
        print(label + result.summary()[len(result.backend) :])
        failed |= not result.exactly_once
        results.append(
            {
                "backend": result.backend,
                "durability": f"synchronous={mode}" if mode else "fsync=on, synchronous_commit=on",
                "readers": result.n_readers,
                "marks_acknowledged": result.n_marks_acknowledged,
                "marks_in_db": result.n_marks_in_db,
                "missing": result.n_missing,
                "duplicated": result.n_duplicates,
                "exactly_once": result.exactly_once,
                "elapsed_s": round(result.elapsed_s, 2),
                "restart_s": round(result.downtime_s, 2),
                "marks_per_s": round(result.marks_per_s, 1),
                "latency_ms": {q: round(result.percentile_ms(q), 1) for q in (50, 95, 99)},
                "killed_after_marks": result.killed_after_marks,
                "requests_failed_at_kill": result.n_failed_at_kill,
                "max_latency_through_kill_ms": round(max(result.outage_latencies_ms), 1) if result.outage_latencies_ms else None,
                "sqlite_integrity": result.integrity or None,
            }
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": platform.platform(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    print(
        f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine slows the run)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
