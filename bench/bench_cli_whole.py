"""Benchmark: whole-process analyses, as a statistician runs them (issue 15).

1. ``tsct analyze st dataset04.xlsx`` (Zanca FROC, 5 treatments x 4 readers x 200 cases,
   wAFROC, all analyses) for DBM and for OR, each a fresh process, and for both in one
   process (``--method BOTH``, compared with Rscript): wall time, CPU time and
   peak RSS (``os.wait4``).  Where ``Rscript`` and RJafroc are installed, the same file read by
   ``DfReadDataFile`` and analysed by ``St()`` for DBM and OR in one R process is timed beside
   it (target: ours >= 5x faster); elsewhere that line says why it is missing.

   Where R and the CRAN packages that RJafroc imports are installed but RJafroc is not (Debian's
   ``r-base-core`` and ``r-cran-*`` packages, say), a **lower bound** of that R process is timed
   instead: ``Rscript`` loading the namespaces RJafroc 2.1 imports (``R_IMPORTS``, its
   DESCRIPTION) and reading the workbook's three sheets with readxl (``excel_sheets``,
   ``read_xlsx``), the calls RJafroc's ``DfReadDataFile`` makes.  ``library(RJafroc)`` (its own
   R code, compiled code and data sets), the rest of ``DfReadDataFile`` and ``St()`` can only add
   to that time, so the ratio printed beside it is a lower bound of the real speed-up.  The
   script is written here from the packages' documented APIs; no RJafroc code is used.
2. A 2-treatment x 11-reader x 10,000-case FROC workbook (``bench/_studies.py``, seed 1; made
   once and kept in ``--workdir``): read and fully analysed (DBM and OR, all analyses) in one
   process, timed stage by stage, and ``tsct analyze st`` on it as a fresh process.  Target:
   <= 5 s and <= 1 GB.  ``--reader openpyxl`` times the old row reader for comparison.

On a shared machine the wall time includes waiting for a CPU; the load average and the CPU
time are printed beside it.

Usage::

    python bench/bench_cli_whole.py [--repeats 3] [--cases 10000] [--workdir /tmp/tsct-bench]
    python bench/bench_cli_whole.py --skip-big-workbook [--breakdown]  # dataset04 and the Rscript comparison only

Python children keep their bytecode between runs, as Python does by default (``bench/_process.py``);
``--no-bytecode-cache`` keeps an environment's ``PYTHONDONTWRITEBYTECODE`` instead.
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
from bench._process import bytecode_note, child_env, run_measured, set_bytecode_cache  # noqa: E402

DATASET04 = ROOT / "tests" / "data" / "rjafroc" / "datasets" / "dataset04.xlsx"
ENTRY = "import tsct_cli; tsct_cli.main()"

R_SCRIPT = """
suppressMessages(library(RJafroc))
ds <- DfReadDataFile("{path}", newExcelFileFormat = TRUE)
for (m in c("DBM", "OR")) invisible(St(ds, FOM = "wAFROC", method = m, analysisOption = "ALL"))
"""


#: RJafroc 2.1's ``Imports:`` (its DESCRIPTION on CRAN), loaded as ``library(RJafroc)`` loads them
R_IMPORTS = ("bbmle", "binom", "dplyr", "ggplot2", "mvtnorm", "numDeriv", "openxlsx", "readxl", "Rcpp", "stats", "stringr", "tools", "utils")

#: the lower bound: load those namespaces, then read the TRUTH, NL/FP and LL/TP sheets with readxl
R_LOWER_BOUND = """
for (p in commandArgs(TRUE)[-1]) loadNamespace(p)
f <- commandArgs(TRUE)[1]
up <- toupper(readxl::excel_sheets(f))
truth <- data.frame(readxl::read_xlsx(f, which(up == "TRUTH"), range = readxl::cell_cols(1:6)))
nl <- data.frame(readxl::read_xlsx(f, which(up %in% c("NL", "FP")), range = readxl::cell_cols(1:4)))
ll <- data.frame(readxl::read_xlsx(f, which(up %in% c("LL", "TP")), range = readxl::cell_cols(1:5)))
stopifnot(nrow(truth) > 0, nrow(nl) + nrow(ll) > 0)
"""


#: where the CPU time of one ``tsct analyze st --method BOTH`` process goes, stage by stage, in a
#: fresh process (the stages in the order the command meets them; each is the CPU time since
#: the previous one, ``time.process_time``, so they add up to the whole process; the command's
#: option parsing, a few ms, is not in it)
STAGES = """
import io, json, sys, time, warnings
clock = time.process_time
marks = [("Python start-up (interpreter, site)", clock())]
import tsct_cli
marks.append(("tsct_cli: typer (its own click), rich", clock()))
import analysis.cli as cli
marks.append(("analysis.cli: the analyze commands", clock()))
import numpy
marks.append(("numpy", clock()))
from analysis.stats._distributions import t_quantile
t_quantile(0.975, 10.0)  # loads scipy.special's compiled ufuncs, not scipy.special's __init__
marks.append(("scipy.special's ufuncs (p values, quantiles)", clock()))
from analysis.io import read_observer_data
from analysis.significance import significance_test
from analysis.results import Provenance
marks.append(("analysis modules (data, formats, stats, results)", clock()))
data = read_observer_data(sys.argv[1])
marks.append(("read the workbook (python-calamine)", clock()))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    results = [significance_test(data, "wAFROC", method=m, provenance=Provenance.from_file(sys.argv[1])) for m in ("DBM", "OR")]
marks.append(("DBM and OR, all analyses (and the provenance)", clock()))
from rich.console import Console
cli.console = Console(file=io.StringIO(), soft_wrap=True)
for r in results:
    cli._print_result(r)
marks.append(("print the tables", clock()))
print(json.dumps(marks))
"""


def stage_breakdown(repeats: int) -> None:
    """Print the median CPU time of each stage of :data:`STAGES` over ``repeats`` fresh processes."""
    import json

    runs = []
    for _ in range(repeats + 1):  # the first warms the file cache
        res = subprocess.run([sys.executable, "-c", STAGES, str(DATASET04)], cwd=ROOT, env=child_env(), capture_output=True, text=True, check=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    runs = runs[1:]
    print(f"  where the CPU time of tsct analyze st --method BOTH goes (median of {repeats} fresh processes):")
    previous = [0.0] * len(runs)
    for n, (label, _) in enumerate(runs[0]):
        spent = [run[n][1] - previous[k] for k, run in enumerate(runs)]
        previous = [run[n][1] for run in runs]
        print(f"    {label:52s} {1000 * statistics.median(spent):6.0f} ms")
    print(f"    {'total':52s} {1000 * statistics.median(previous):6.0f} ms")


def run_child(cmd: list[str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MiB, exit code) of a fresh process; the end of its error output when it fails."""
    wall, cpu, rss, code, err = run_measured(cmd)
    if code != 0:
        print(f"    (exit {code}: {err.strip()[-300:]})")
    return wall, cpu, rss, code


def _summary(label: str, runs: list[tuple[float, float, float, int]]) -> float:
    return _summary_cpu(label, runs)[0]


def _summary_cpu(label: str, runs: list[tuple[float, float, float, int]]) -> tuple[float, float]:
    """Print a line of medians; (median wall s, median CPU s)."""
    walls = [r[0] for r in runs]
    cpus = [r[1] for r in runs]
    print(
        f"  {label:46s} wall median {statistics.median(walls):6.2f} s (best {min(walls):6.2f}), "
        f"CPU median {statistics.median(cpus):6.2f} s, peak RSS {max(r[2] for r in runs):7.1f} MiB"
    )
    return statistics.median(walls), statistics.median(cpus)


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


def r_packages() -> tuple[list[str], list[str]] | None:
    """(installed, missing) among :data:`R_IMPORTS`; None without Rscript or readxl."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    probe = "for (p in commandArgs(TRUE)) cat(p, requireNamespace(p, quietly = TRUE), '\\n')"
    res = subprocess.run([rscript, "-e", probe, "--args", *R_IMPORTS], capture_output=True, text=True)
    found = dict(line.split() for line in res.stdout.splitlines() if len(line.split()) == 2)
    installed = [p for p in R_IMPORTS if found.get(p) == "TRUE"]
    if "readxl" not in installed:
        return None
    return installed, [p for p in R_IMPORTS if p not in installed]


def bench_r_lower_bound(repeats: int, ours: tuple[float, float]) -> None:
    """Time :data:`R_LOWER_BOUND` on dataset04 and print it beside ``ours`` (wall s, CPU s)."""
    pkgs = r_packages()
    if pkgs is None:
        print("  Rscript lower bound: not run: Rscript or its readxl package is not installed")
        return
    installed, missing = pkgs
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "lower_bound.R"
        script.write_text(R_LOWER_BOUND, encoding="utf-8")
        cmd = [shutil.which("Rscript") or "Rscript", str(script), str(DATASET04), *installed]
        run_child(cmd)  # warm the file cache
        wall, cpu = _summary_cpu("Rscript LOWER BOUND: imports + readxl sheets", [run_child(cmd) for _ in range(repeats)])
    print(f"    (loads {len(installed)} of RJafroc's {len(R_IMPORTS)} imports; not installed here: {', '.join(missing) or 'none'};")
    print("     without RJafroc itself, the rest of DfReadDataFile and St(): the real Rscript run is slower)")
    print(f"  speed-up, lower bound (Rscript lower bound / tsct --method BOTH): wall {wall / ours[0]:.1f}x, CPU {cpu / ours[1]:.1f}x (target >= 5x)")


def bench_dataset04(repeats: int) -> None:
    print(f"1. tsct analyze st {DATASET04.name} (wAFROC, all analyses), fresh processes")
    ours = 0.0
    for method in ("DBM", "OR"):
        cmd = [sys.executable, "-c", ENTRY, "analyze", "st", str(DATASET04), "--method", method]
        run_child(cmd)  # warm the file cache
        ours += _summary(f"tsct analyze st --method {method}", [run_child(cmd) for _ in range(repeats)])
    print(f"  {'tsct: DBM + OR (two processes)':46s} wall {ours:6.2f} s")
    cmd = [sys.executable, "-c", ENTRY, "analyze", "st", str(DATASET04), "--method", "BOTH"]
    ours_both = _summary_cpu("tsct analyze st --method BOTH (one process)", [run_child(cmd) for _ in range(repeats)])
    ours = ours_both[0]
    bench_r_lower_bound(repeats, ours_both)
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
    parser.add_argument("--skip-big-workbook", action="store_true", help="only part 1 (dataset04, and Rscript where installed)")
    parser.add_argument("--breakdown", action="store_true", help="also print where the CPU time of st on dataset04 goes, stage by stage")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep the environment's PYTHONDONTWRITEBYTECODE (then every run recompiles the project's modules)",
    )
    args = parser.parse_args()
    set_bytecode_cache(not args.no_bytecode_cache)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {bytecode_note()}")
    if not args.skip_dataset04:
        bench_dataset04(args.repeats)
        if args.breakdown:
            stage_breakdown(args.repeats)
    if not args.skip_big_workbook:
        bench_big_workbook(args.cases, args.workdir, args.reader)


if __name__ == "__main__":
    main()
