"""Benchmark: z-score map inference on one clinical-size pair (bone region); time and peak memory.

Targets (issue 7): <= 15 s on a 2-core CPU, <= 2 s on a GPU.

What is timed: :func:`detector.zscore.compute_zmap` with the network (resampling the bone region
to the 1.5 mm working grid, the network on every 64^3 tile holding bone, interpolation back,
z on the 512 x 512 x 300 grid, the field-of-view margin and the native-grid z), then the
lesion candidates as the z-score stage makes them (:func:`detector.matched_filter_score` of the
native-grid z, then :func:`detector.find_candidates`). The pair is a synthetic
clinical-size case (0.75 x 0.75 x 1 mm) whose prior is warped with the *true* transform, so no
registration time is included. The shipped network was trained on 1.4-1.7 mm data, so this pair
is outside its domain: the run forces the network (``force=True``) because the point is speed.

Each device is measured in a fresh subprocess so that its peak resident memory (``ru_maxrss``)
is the inference's own, reported together with the memory held just after loading the inputs.

Usage::

    python bench/bench_zscore.py                      # CPU, and the GPU when one is present
    python bench/bench_zscore.py --work /tmp/zbench   # keep the generated pair for re-runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_gib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def prepare(work: Path, seed: int) -> None:
    """Generate the clinical pair, warp the prior with the true transform, make the bone ROI."""
    import numpy as np
    import SimpleITK as sitk

    from cases import LabelVolume, Volume, synthesize_pair, write_volume
    from detector import bone_mask

    if (work / "roi.nii.gz").is_file():
        return
    t = time.perf_counter()
    pair = synthesize_pair("ZBENCH", seed=seed, size="clinical", abnormal=True)
    print(f"generated {pair.summary()} in {time.perf_counter() - t:.0f} s", flush=True)
    warped = sitk.Resample(pair.prior.to_sitk(), pair.current.to_sitk(), pair.true_transform, sitk.sitkLinear, -1024.0)
    warped_vol = Volume.from_sitk(warped)
    both = np.maximum(pair.current.array, warped_vol.array)
    bone = bone_mask(pair.current.with_array(both))
    dist = sitk.SignedMaurerDistanceMap(bone.to_sitk() > 0, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    roi = LabelVolume((sitk.GetArrayFromImage(dist) <= 3.0).astype(np.uint8), bone.spacing_mm, bone.origin_mm, bone.direction)
    work.mkdir(parents=True, exist_ok=True)
    write_volume(pair.current, work / "current.nii.gz")
    write_volume(warped_vol, work / "warped_prior.nii.gz")
    write_volume(roi, work / "roi.nii.gz")
    (work / "prior_spacing.json").write_text(json.dumps(list(pair.prior.spacing_mm)))


def measure(work: Path, device: str, repeats: int, precision: str = "float32") -> dict:
    """Run in a subprocess: load inputs, time compute_zmap + candidates."""
    import warnings

    import numpy as np
    import torch

    from cases import read_volume
    from detector.candidates import find_candidates, matched_filter_score
    from detector.zscore import OutOfDomainWarning, compute_zmap, load_zscore_model

    current = read_volume(work / "current.nii.gz")
    warped = read_volume(work / "warped_prior.nii.gz")
    roi = read_volume(work / "roi.nii.gz", label=True)
    prior_spacing = json.loads((work / "prior_spacing.json").read_text())
    model = load_zscore_model(device=device)
    rss_inputs = _rss_gib()
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, cand_times, cpu_times = [], [], []
    for _ in range(repeats):
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        c = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            zm = compute_zmap(current, warped, roi, model=model, prior_spacing_mm=prior_spacing, force=True, precision=precision)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
        t = time.perf_counter()
        # as the z-score stage does: matched filter (1.5 mm) of the native-grid z, then the regions
        score = matched_filter_score(zm.candidate_z, roi, sigma_mm=1.5)
        cands = find_candidates(score, roi=roi, threshold=4.0, low_threshold=3.0, min_volume_mm3=20.0)
        cand_times.append(time.perf_counter() - t)
    roi_arr = roi.array != 0
    out = {
        "device": str(model.device),
        "precision": precision,
        "gpu": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "grid_zyx": list(current.shape),
        "spacing_mm": list(current.spacing_mm),
        "roi_voxels": int(roi_arr.sum()),
        "method": zm.method,
        "zmap_s": times,
        "zmap_cpu_s": cpu_times,
        "candidates_s": cand_times,
        "n_candidates": len(cands),
        "rss_after_inputs_gib": rss_inputs,
        "load_average": load_average,
        "peak_rss_gib": _rss_gib(),
        "peak_gpu_gib": torch.cuda.max_memory_allocated(model.device) / 2**30 if model.device.type == "cuda" else None,
        "frac_abs_z_gt3": float(np.mean(np.abs(zm.z.array[roi_arr]) > 3)),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for the generated pair (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", action="append", help="cpu, cuda (repeatable); default: cpu, and cuda when available")
    parser.add_argument("--precision", action="append", help="float32, bfloat16 (repeatable); default: both")
    parser.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / f"tsct-zbench-{args.seed}"
    if args._measure:
        dev, prec = args._measure.split(":")
        print(json.dumps(measure(work, dev, args.repeats, prec)))
        return
    prepare(work, args.seed)
    devices = args.device
    if not devices:
        import torch

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    runs = [(dev, prec) for dev in devices for prec in (args.precision or ["float32", "bfloat16"])]
    for dev, prec in runs:
        proc = subprocess.run(
            [sys.executable, __file__, "--work", str(work), "--repeats", str(args.repeats), "--_measure", f"{dev}:{prec}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(f"{dev} {prec}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        target = 2.0 if dev.startswith("cuda") else 15.0
        best = min(r["zmap_s"])
        print(
            f"{r['device']}{' (' + r['gpu'] + ')' if r['gpu'] else ''}, {r['precision']}, {r['torch_threads']} threads: grid {r['grid_zyx']} (z, y, x) at "
            f"{', '.join(f'{s:.2f}' for s in r['spacing_mm'])} mm, {r['roi_voxels']:,} bone-ROI voxels"
        )
        print(
            f"  z-map ({r['method']}): wall {', '.join(f'{t:.2f}' for t in r['zmap_s'])} s (best {best:.2f} s; target <= {target:g} s: {'met' if best <= target else 'NOT met'})"
        )
        print(
            f"  z-map CPU time (all threads): {', '.join(f'{t:.1f}' for t in r['zmap_cpu_s'])} s; load average before the run: {r['load_average']:.1f}"
        )
        print(f"  candidates: {', '.join(f'{t:.2f}' for t in r['candidates_s'])} s ({r['n_candidates']} candidates)")
        mem = f"  peak RSS {r['peak_rss_gib']:.2f} GiB (inputs loaded: {r['rss_after_inputs_gib']:.2f} GiB)"
        if r["peak_gpu_gib"] is not None:
            mem += f"; peak GPU memory {r['peak_gpu_gib']:.2f} GiB"
        print(mem)


if __name__ == "__main__":
    main()
