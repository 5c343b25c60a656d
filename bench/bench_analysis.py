"""Benchmark: full DBM + Obuchowski-Rockette analysis (RRRC, FRRC, RRFC) including the jackknife.

Two workloads:

1. ``dataset04`` (Zanca/Federica FROC: 5 treatments x 4 readers x 200 cases) with wAFROC, read
   from ``tests/data/rjafroc/datasets/dataset04.xlsx`` (reading the file is not timed).
   Target: < 0.1 s for DBM + OR together.
2. A synthetic FROC study, reproducible from ``--seed``: 2 treatments x 11 readers x 2000
   cases (half abnormal, 1-5 lesions each, 0-4 NL marks per case, reader skill and a
   treatment effect).  Target: < 5 s and < 2 GB peak memory.  Also times the OR analysis
   with the DeLong covariance and with a 2000-resample stratified bootstrap.

Each timing is the median of ``--repeats`` runs of ``significance_test(data, fom,
method=...)`` for both methods (FOMs, jackknife, ANOVA, all three analyses).  Peak memory is
reported two ways: the peak of Python/NumPy allocations traced by :mod:`tracemalloc` during one
DBM + OR run, and the process's peak resident set size (``resource.getrusage``).

Usage::

    python bench/bench_analysis.py [--readers 11] [--cases 2000] [--seed 1] [--repeats 5]

Whole processes (``tsct analyze st`` on dataset04 beside ``Rscript`` + ``St()``, and a
10,000-case workbook read and analysed) are timed by ``bench/bench_cli_whole.py``; the start-up
of ``tsct --help`` / ``tsct analyze --help`` by ``bench/bench_cli_startup.py``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import ObserverData, read_jafroc_excel, significance_test  # noqa: E402
from bench._studies import add_study_options, synthetic_froc_study  # noqa: E402


def _full_analysis(data: ObserverData, fom: str) -> tuple:
    return (significance_test(data, fom, method="DBM"), significance_test(data, fom, method="OR"))


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _report(label: str, times: list[float]) -> None:
    print(f"  {label:44s} median {np.median(times) * 1e3:9.1f} ms   min {min(times) * 1e3:9.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_options(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bootstraps", type=int, default=2000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    print("1) dataset04 (FROC, 5 treatments x 4 readers x 200 cases), wAFROC")
    d04 = read_jafroc_excel(ROOT / "tests" / "data" / "rjafroc" / "datasets" / "dataset04.xlsx")
    _full_analysis(d04, "wAFROC")  # warm-up (imports, caches)
    _report("DBM + OR, RRRC/FRRC/RRFC, incl. jackknife", _time(lambda: _full_analysis(d04, "wAFROC"), args.repeats * 4))
    dbm, orr = _full_analysis(d04, "wAFROC")
    print(f"  RRRC: F = {orr['RRRC'].statistic:.4f}, ddf = {orr['RRRC'].ddf:.3f}, p = {orr['RRRC'].p_value:.3g}")
    _rjafroc_side_by_side(d04)

    print(f"\n2) synthetic FROC study: {args.treatments} treatments x {args.readers} readers x {args.cases} cases (seed {args.seed})")
    t0 = time.perf_counter()
    data = synthetic_froc_study(args.treatments, args.readers, args.cases, seed=args.seed)
    print(f"  generated in {time.perf_counter() - t0:.2f} s: K1 = {data.n_normal}, K2 = {data.n_abnormal}, lesions = {data.n_lesions}")
    _report("DBM + OR, RRRC/FRRC/RRFC, incl. jackknife", _time(lambda: _full_analysis(data, "wAFROC"), args.repeats))
    _report("OR with DeLong covariance", _time(lambda: significance_test(data, "wAFROC", covariance="delong"), args.repeats))
    _report(
        f"OR with stratified bootstrap (B = {args.bootstraps})",
        _time(lambda: significance_test(data, "wAFROC", covariance="bootstrap", n_bootstraps=args.bootstraps, random_state=0), 1),
    )
    tracemalloc.start()
    dbm, orr = _full_analysis(data, "wAFROC")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  RRRC: F = {orr['RRRC'].statistic:.4f}, ddf = {orr['RRRC'].ddf:.3f}, p = {orr['RRRC'].p_value:.3g}")
    print(f"  peak traced allocations during DBM + OR: {peak / 2**20:.1f} MiB")
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"  peak resident set size of this process:  {rss_kib / 2**10:.1f} MiB")


def _rjafroc_side_by_side(data) -> None:  # noqa: ANN001
    """The same DBM + OR analysis through RJafroc (rpy2), timed, where R and RJafroc are installed."""
    from analysis import rjafroc_available

    ok, reason = rjafroc_available()
    if not ok:
        print(f"  RJafroc side by side: skipped ({reason})")
        return

    def _rjafroc() -> None:
        for method in ("DBM", "OR"):
            significance_test(data, "wAFROC", method=method, backend="rjafroc")

    _rjafroc()  # warm-up (R start-up, package load)
    _report("RJafroc St(): DBM + OR, all analyses", _time(_rjafroc, 3))


if __name__ == "__main__":
    main()
