"""Benchmark of the detector's first half on one clinical-size pair (512 x 512 x 300).

Prints the wall time, CPU time and peak memory (RSS high-water mark) of each stage of
registration + subtraction + outputs, and the accuracy against the known deformation (TRE in
bone, artifact level, lesion contrast kept).

Usage::

    .venv/bin/python bench/bench_detector.py                 # generate the pair, then measure
    .venv/bin/python bench/bench_detector.py --data DIR      # reuse a pair written earlier
    .venv/bin/python bench/bench_detector.py --dicom         # also time the derived DICOM series

The pair is generated in a child process and written to disk, so that the generator's own
memory does not count in the measured peak. Target on a 2-core machine: <= 45 s and <= 6 GB for
registration + subtraction + outputs. On a shared machine the wall time depends on the load,
which is printed too; the CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB


def _generate(folder: Path, seed: int, dicom: bool = False) -> None:
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from cases import synthesize_pair, write_pair\n"
        "p = synthesize_pair('bench', seed=%d, size='clinical', abnormal=True, n_lesions=4, "
        "lesion_types=['lytic', 'blastic', 'lytic', 'mixed'], vary_acquisition=False)\n"
        "write_pair(p, %r, dicom=%r)\n"
        "print(p.summary())\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code % (str(ROOT), seed, str(folder), dicom)], check=True, capture_output=True, text=True)
    print(f"generated the pair in {time.perf_counter() - start:.0f} s (child process): {out.stdout.strip()}")


def add_pair_options(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark on one generated (or given) pair: --data, --seed, --out."""
    parser.add_argument("--data", type=Path, help="folder of a pair written by cases.write_pair (generated when missing)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the generated pair")
    parser.add_argument("--out", type=Path, help="keep the outputs in this folder (default: a temporary folder, deleted)")


def prepared_pair(
    data: Path | None, seed: int, *, dicom: bool = False, prefix: str = "tsct-bench-"
) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The pair's folder (``data``, or a temporary one to clean up), with the pair generated there unless it is already."""
    tmp = None
    folder = data
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        folder = Path(tmp.name)
    if not (folder / "current.nii.gz").is_file() or (dicom and not (folder / "current_dicom").is_dir()):
        _generate(folder, seed, dicom)
    return folder, tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_options(parser)
    parser.add_argument("--dicom", action="store_true", help="read the exams from DICOM and time the derived DICOM series")
    parser.add_argument("--deformable", default="bspline", help="deformable stage: bspline, demons, diffeomorphic_demons, none")
    args = parser.parse_args()

    folder, tmp = prepared_pair(args.data, args.seed, dicom=args.dicom)

    import SimpleITK as sitk

    from cases import load_true_transform, read_exam, read_volume
    from detector import RegistrationConfig, measure_registration, run_pair

    print(
        f"machine: {os.cpu_count()} CPUs, SimpleITK threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}, "
        f"load average before {os.getloadavg()[0]:.1f}"
    )
    print("GPU: none used (the chain is CPU-only: SimpleITK + NumPy/SciPy)")
    t0, c0 = time.perf_counter(), time.process_time()
    if args.dicom:
        prior = read_exam(folder / "prior_dicom")
        current = read_exam(folder / "current_dicom")
    else:
        prior = read_exam(folder / "prior.nii.gz")
        current = read_exam(folder / "current.nii.gz")
    load_s, load_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"pair: prior {prior.volume.size}, current {current.volume.size} voxels, spacing {current.volume.spacing_mm} mm")
    print(f"{'stage':<13}{'wall s':>8}{'cpu s':>8}{'peak RSS GB':>13}")
    print(f"{'load':<13}{load_s:8.1f}{load_cpu:8.1f}{_rss_gb():13.2f}   (not part of the target)")

    marks: list[tuple[str, float, float, float]] = []

    def on_stage(name: str) -> None:
        marks.append((name, time.perf_counter(), time.process_time(), _rss_gb()))

    out_tmp = None if args.out else tempfile.TemporaryDirectory(prefix="tsct-bench-out-")
    out_dir = args.out if args.out else Path(out_tmp.name)  # type: ignore[union-attr]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = run_pair(prior, current, out_dir, config=RegistrationConfig(deformable=args.deformable), on_stage=on_stage, write_dicom=args.dicom)
    end, cpu_end, rss_end = time.perf_counter(), time.process_time(), _rss_gb()
    bounds = marks + [("end", end, cpu_end, rss_end)]
    for (name, t, c, _), (_, t_next, c_next, rss_next) in zip(bounds, bounds[1:]):
        print(f"{name:<13}{t_next - t:8.1f}{c_next - c:8.1f}{rss_next:13.2f}")
    total_wall, total_cpu = end - start, cpu_end - cpu_start
    print(f"{'TOTAL':<13}{total_wall:8.1f}{total_cpu:8.1f}{rss_end:13.2f}   registration + subtraction + QC + outputs")
    reg = result.registration
    print("registration: " + "; ".join(f"{s.name} {s.elapsed_s:.1f} s, iterations {list(s.n_iterations)}" for s in reg.stages))
    print(f"outputs: {sum(p.stat().st_size for p in out_dir.rglob('*') if p.is_file()) / 1e6:.0f} MB in {out_dir}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")

    truth = load_true_transform(folder / "true_transform.h5")
    params = json.loads((folder / "params.json").read_text())
    m = measure_registration(
        reg,
        truth,
        current.volume,
        prior=prior.volume,
        subtraction=result.subtraction,
        bone=read_volume(folder / "bone.nii.gz", label=True),
        lesion_labels=read_volume(folder / "lesions.nii.gz", label=True),
        lesion_types=[les["lesion_type"] for les in params["lesions"]],
    )
    print(m.summary())
    for les in m.lesions:
        print(
            f"  lesion {les['label_value']} ({les['lesion_type']}, {les['n_voxels']} voxels): true {les['true_change_hu']:+.0f} HU, "
            f"plain {les['plain_change_hu']:+.0f} HU ({les['kept_plain_pct']:.0f}%), VM {les['vm_change_hu']:+.0f} HU ({les['kept_vm_pct']:.0f}%)"
        )
    print(f"QC: {result.qc.summary().splitlines()[0]}")
    ok_time = total_wall <= 45.0
    ok_mem = rss_end <= 6.0
    print(
        f"target <= 45 s: {'met' if ok_time else 'NOT met'} ({total_wall:.1f} s wall, {total_cpu:.1f} s CPU); "
        f"<= 6 GB: {'met' if ok_mem else 'NOT met'} ({rss_end:.2f} GB peak, including loading)"
    )
    if out_tmp is not None:
        out_tmp.cleanup()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
