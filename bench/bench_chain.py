"""Benchmark of the whole detector chain on one clinical-size pair (512 x 512 x 300).

From the two exams on disk to the files a reader opens: load both exams, register (rigid +
B-spline), warp, bone ROI (with the blood-pool exclusion), subtraction, QC, z-map (shipped
network or the analytic fallback), matched-filter candidates with splitting, and every output
file. Prints wall time, CPU time and the peak memory (RSS high-water mark) per stage and in
total, the machine's load average before and after (other jobs share the CPU), and whether
the targets are met (<= 45 s and <= 6 GB on 2 CPU cores). Work that runs in threads beside a
stage counts in that stage's CPU time: the subtraction is made by the writer thread beside QC
and the z-map (its row is about 0), QC runs beside the z-map (its row is 0).

Usage::

    .venv/bin/python bench/bench_chain.py                 # generate the pair (child process), then measure
    .venv/bin/python bench/bench_chain.py --data DIR      # reuse a pair written earlier (cases.write_pair)
    .venv/bin/python bench/bench_chain.py --device cuda   # the network on a GPU

The pair is generated in a child process, so the generator's memory does not count.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # type: ignore[no-untyped-def]
    """Warnings (a pair outside the network's domain, say) as one line, as ``tsct detect`` prints them."""
    return f"warning: {' '.join(str(message).split())}\n"


warnings.formatwarning = _one_line_warning


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB


def main() -> None:
    from bench_detector import add_pair_options, prepared_pair

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_options(parser)
    parser.add_argument("--device", default="cpu", help="torch device of the network: cpu, cuda, auto")
    args = parser.parse_args()

    folder, tmp = prepared_pair(args.data, args.seed, prefix="tsct-chain-")

    import SimpleITK as sitk

    from cases import read_exam_pair
    from detector import run_pair
    from detector.zscore_outputs import ZScoreSettings

    load_before = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs visible, SimpleITK threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}, "
        f"load average before {load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} (1/5/15 min; other jobs share the CPU)"
    )
    out_tmp = None if args.out else tempfile.TemporaryDirectory(prefix="tsct-chain-out-")
    out_dir = args.out if args.out else Path(out_tmp.name)  # type: ignore[union-attr]

    marks: list[tuple[str, float, float, float]] = []

    def on_stage(name: str) -> None:
        marks.append((name, time.perf_counter(), time.process_time(), _rss_gb()))

    start, cpu_start = time.perf_counter(), time.process_time()
    on_stage("load")
    prior, current = read_exam_pair(folder / "prior.nii.gz", folder / "current.nii.gz")  # in two threads
    result = run_pair(prior, current, out_dir, on_stage=on_stage, write_dicom=False, zscore_settings=ZScoreSettings(device=args.device))
    end, cpu_end, rss_end = time.perf_counter(), time.process_time(), _rss_gb()
    print(
        f"pair: prior {prior.volume.size}, current {current.volume.size} voxels, spacing {tuple(round(s, 3) for s in current.volume.spacing_mm)} mm"
    )
    print(f"{'stage':<13}{'wall s':>8}{'cpu s':>8}{'peak RSS GB':>13}")
    bounds = marks + [("end", end, cpu_end, rss_end)]
    for (name, t, c, _), (_, t_next, c_next, rss_next) in zip(bounds, bounds[1:]):
        print(f"{name:<13}{t_next - t:8.1f}{c_next - c:8.1f}{rss_next:13.2f}")
    total_wall, total_cpu = end - start, cpu_end - cpu_start
    print(f"{'TOTAL':<13}{total_wall:8.1f}{total_cpu:8.1f}{rss_end:13.2f}   load + registration + subtraction + QC + z-map + candidates + outputs")
    zs = result.zscore
    if zs is not None:
        print(
            f"z-map: {zs.zmap.method}; candidates at the operating point: {len(zs.candidates)} "
            f"(threshold {zs.candidates.parameters.get('threshold')}, split {zs.candidates.parameters.get('split_mm')} mm)"
        )
    print(f"QC: {result.qc.status}; bone ROI {result.qc.metrics.get('bone_roi_volume_ml', float('nan')):.0f} mL")
    print(f"outputs: {sum(p.stat().st_size for p in out_dir.rglob('*') if p.is_file()) / 1e6:.0f} MB")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f}")
    print(
        f"target <= 45 s: {'met' if total_wall <= 45.0 else 'NOT met'} ({total_wall:.1f} s wall, {total_cpu:.1f} s CPU); "
        f"<= 6 GB: {'met' if rss_end <= 6.0 else 'NOT met'} ({rss_end:.2f} GB peak)"
    )
    if out_tmp is not None:
        out_tmp.cleanup()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
