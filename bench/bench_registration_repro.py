"""Reproducibility and cost of `detector.register`: the same pair registered several times.

Prints, per call, a SHA-1 of the transform's parameters (rigid + deformation, bit for bit), the
final metric of each stage, the wall time of each stage and the process CPU time of the call.
Equal hashes mean bit-identical transforms. Run it twice (two processes) to compare across
processes.

``--threaded-rigid`` runs the rigid metric on SimpleITK's default work units, as before the
reproducibility fix (``SetNumberOfWorkUnits`` made a no-op), to measure what the fix costs;
``--busy`` keeps another thread running SimpleITK filters and switching the global thread
count between 1 and 2 meanwhile.

Usage::

    .venv/bin/python bench/bench_registration_repro.py                        # small synthetic pair
    .venv/bin/python bench/bench_registration_repro.py --data DIR --calls 2   # a pair written by cases.write_pair
    .venv/bin/python bench/bench_registration_repro.py --data DIR --threaded-rigid
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _transform_hash(reg) -> str:  # noqa: ANN001
    parts = [reg.rigid.GetParameters(), reg.rigid.GetFixedParameters()]
    if reg.deformation is not None:
        parts += [reg.deformation.GetParameters(), reg.deformation.GetFixedParameters()]
    return hashlib.sha1(b"".join(np.asarray(p, dtype=np.float64).tobytes() for p in parts)).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder with current.nii.gz and prior.nii.gz (default: the small synthetic test pair)")
    parser.add_argument("--calls", type=int, default=2, help="register() calls in this process (default 2)")
    parser.add_argument("--threaded-rigid", action="store_true", help="rigid metric on the default work units (the code before the fix)")
    parser.add_argument("--busy", action="store_true", help="another thread runs SimpleITK filters meanwhile")
    args = parser.parse_args()

    import SimpleITK as sitk

    from cases import read_exam, synthesize_pair
    from detector.registration import register

    if args.threaded_rigid:
        sitk.ImageRegistrationMethod.SetNumberOfWorkUnits = lambda self, n: None  # type: ignore[method-assign]
    if args.data is None:
        pair = synthesize_pair("bench-repro", seed=11, size="small")
        fixed, moving, name = pair.current, pair.prior, "small synthetic pair (seed 11)"
    else:
        for f in ("current.nii.gz", "prior.nii.gz"):
            if not (args.data / f).is_file():
                sys.exit(f"--data {args.data}: {f} not found (expected a pair written by cases.write_pair)")
        fixed, moving, name = read_exam(args.data / "current.nii.gz").volume, read_exam(args.data / "prior.nii.gz").volume, str(args.data)

    stop = threading.Event()

    def _busy() -> None:
        image = sitk.Image([96, 96, 96], sitk.sitkFloat32)
        k = 0
        while not stop.is_set():
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1 + k % 2)
            sitk.SmoothingRecursiveGaussian(image, 2.0)
            k += 1

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    thread = threading.Thread(target=_busy) if args.busy else None
    mode = "threaded rigid (before the fix)" if args.threaded_rigid else "as shipped"
    print(f"{name}, {fixed.shape} (z, y, x); {mode}; SimpleITK threads {before}{'; busy SimpleITK thread' if args.busy else ''}")
    if thread is not None:
        thread.start()
    try:
        for i in range(args.calls):
            c0, t0 = time.process_time(), time.perf_counter()
            reg = register(fixed, moving)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            metrics = " ".join(f"{s.name} {s.final_metric!r} ({s.elapsed_s:.2f} s)" for s in reg.stages)
            print(f"call {i + 1}: transform {_transform_hash(reg)}  {metrics}  wall {wall:.2f} s  cpu {cpu:.1f} s", flush=True)
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


if __name__ == "__main__":
    main()
