"""Benchmark: whole-process analyses, as a statistician runs them (issue 15).

1. ``tsct analyze st dataset04.xlsx`` (Zanca FROC, 5 treatments x 4 readers x 200 cases,
   wAFROC, all analyses) for DBM and for OR, each a fresh process, and for both in one
   process (``--method BOTH``, compared with Rscript): wall time, CPU time and
   peak RSS (``os.wait4``).  Where ``Rscript`` and RJafroc are installed, the same file read by
   ``DfReadDataFile`` and analysed by ``St()`` for DBM and OR in one R process is timed beside
   it (target: ours >= 5x faster); elsewhere that line says why it is missing.
2. A 2-treatment x 11-reader x 10,000-case FROC workbook (``bench/_studies.py``, seed 1; made
   once and kept in ``--workdir``): read and fully analysed (DBM and OR, all analyses) in one
   process, timed stage by stage, and ``tsct analyze st`` on it as a fresh process.  Target:
   <= 5 s and <= 1 GB.  ``--reader openpyxl`` times the old row reader for comparison.

On a shared machine the wall time includes waiting for a CPU; the load average and the CPU
time are printed beside it.

Usage::

    python bench/bench_cli_whole.py [--repeats 3] [--cases 10000] [--workdir /tmp/tsct-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._process import run_measured  # noqa: E402

DATASET04 = ROOT / "tests" / "data" / "rjafroc" / "datasets" / "dataset04.xlsx"
ENTRY = "import tsct_cli; tsct_cli.main()"

R_SCRIPT = """
suppressMessages(library(RJafroc))
ds <- DfReadDataFile("{path}", newExcelFileFormat = TRUE)
for (m in c("DBM", "OR")) invisible(St(ds, FOM = "wAFROC", method = m, analysisOption = "ALL"))
"""


def run_child(cmd: list[str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MiB, exit code) of a fresh process; the end of its error output when it fails."""
    wall, cpu, rss, code, err = run_measured(cmd)
    if code != 0:
        print(f"    (exit {code}: {err.strip()[-300:]})")
    return wall, cpu, rss, code


def _summary(label: str, runs: list[tuple[float, float, float, int]]) -> float:
    walls = [r[0] for r in runs]
    cpus = [r[1] for r in runs]
    print(
        f"  {label:46s} wall median {statistics.median(walls):6.2f} s (best {min(walls):6.2f}), "
        f"CPU median {statistics.median(cpus):6.2f} s, peak RSS {max(r[2] for r in runs):7.1f} MiB"
    )
    return statistics.median(walls)


def rjafroc_in_r() -> tuple[bool, str]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False, "Rscript is not on PATH (R is not installed here)"
    res = subprocess.run(
        [rscript, "-e", "suppressMessages(library(RJafroc)); cat(as.character(packageVersion('RJafroc')))"], capture_output=True, text=True
    )
    if res.returncode != 0:
        return False, "R is installed but RJafroc is not (in R: install.packages('RJafroc'))"
    return True, f"RJafroc {res.stdout.strip()}"


def bench_dataset04(repeats: int) -> None:
    print(f"1. tsct analyze st {DATASET04.name} (wAFROC, all analyses), fresh processes")
    ours = 0.0
    for method in ("DBM", "OR"):
        cmd = [sys.executable, "-c", ENTRY, "analyze", "st", str(DATASET04), "--method", method]
        run_child(cmd)  # warm the file cache
        ours += _summary(f"tsct analyze st --method {method}", [run_child(cmd) for _ in range(repeats)])
    print(f"  {'tsct: DBM + OR (two processes)':46s} wall {ours:6.2f} s")
    cmd = [sys.executable, "-c", ENTRY, "analyze", "st", str(DATASET04), "--method", "BOTH"]
    ours = _summary("tsct analyze st --method BOTH (one process)", [run_child(cmd) for _ in range(repeats)])
    ok, why = rjafroc_in_r()
    if not ok:
        print(f"  Rscript + RJafroc St(): not run: {why}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "st.R"
        script.write_text(R_SCRIPT.format(path=str(DATASET04).replace("\\", "/")), encoding="utf-8")
        cmd = [shutil.which("Rscript") or "Rscript", str(script)]
        run_child(cmd)
        theirs = _summary(f"Rscript: DfReadDataFile + St() DBM + OR ({why})", [run_child(cmd) for _ in range(repeats)])
    print(f"  speed-up (Rscript wall / tsct wall): {theirs / ours:.1f}x (target >= 5x)")


def bench_big_workbook(n_cases: int, workdir: Path, reader: str) -> None:
    import resource
    import warnings

    from analysis import read_jafroc_excel, significance_test, write_jafroc_excel
    from bench._studies import synthetic_froc_study

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"froc-2x11x{n_cases}-seed1.xlsx"
    print(f"\n2. 2 treatments x 11 readers x {n_cases} cases FROC workbook: {path}")
    if not path.exists():
        t0 = time.perf_counter()
        write_jafroc_excel(synthetic_froc_study(2, 11, n_cases, seed=1), path)
        print(f"  (written once in {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 2**20:.1f} MiB)")
    if reader == "openpyxl":
        import analysis.formats.jafroc_excel as jx

        jx._load_workbook = jx._load_workbook_openpyxl  # the reader before issue 15, for comparison
    cmd = [sys.executable, "-c", ENTRY, "analyze", "st", str(path), "--method", "OR"]
    if reader != "openpyxl":
        run_child(cmd)
        _summary("tsct analyze st --method OR (fresh process)", [run_child(cmd)])
        cmd[-1] = "DBM"
        _summary("tsct analyze st --method DBM (fresh process)", [run_child(cmd)])
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    data = read_jafroc_excel(path)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dbm = significance_test(data, "wAFROC", method="DBM")
        t2 = time.perf_counter()
        orr = significance_test(data, "wAFROC", method="OR")
    t3 = time.perf_counter()
    cpu = time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        f"  in one process ({reader} reader): read {t1 - t0:.2f} s, DBM {t2 - t1:.2f} s, OR {t3 - t2:.2f} s; "
        f"total {t3 - t0:.2f} s wall, {cpu:.2f} s CPU; peak RSS {rss:.0f} MiB (target <= 5 s, <= 1024 MiB)"
    )
    print(
        f"  {data.n_treatments} x {data.n_readers} x {data.n_cases} cases, {int(data.lesions_per_case.sum())} lesions; "
        f"RRRC p: DBM {dbm['RRRC'].p_value:.3g}, OR {orr['RRRC'].p_value:.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tsct-bench")
    parser.add_argument("--reader", choices=("default", "openpyxl"), default="default")
    parser.add_argument("--skip-dataset04", action="store_true")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.skip_dataset04:
        bench_dataset04(args.repeats)
    bench_big_workbook(args.cases, args.workdir, args.reader)


if __name__ == "__main__":
    main()
