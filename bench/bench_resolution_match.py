"""Time of the analytic model's resolution matching (:func:`detector.zscore_analytic.match_resolution`) on a clinical-size exam.

The cost depends on the size of the ROI's bounding box (four separable Gaussian filters over it)
and on the number of ROI voxels (the estimate is formed at each), not on the anatomy, so the
exam is synthetic: 512 x 512 x 300 voxels, a bone ROI of about 2.8 million voxels scattered
through a clinical-size box (260 x 200 x 320 voxels), like the 2.9 million of the whole-chain
benchmark's pair. Prints the wall time of each repeat.

Usage::

    python bench/bench_resolution_match.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from scipy import ndimage as ndi

    from detector.zscore_analytic import match_resolution

    rng = np.random.default_rng(0)
    shape = (300, 512, 512)
    prior = rng.normal(200.0, 20.0, shape).astype(np.float32)
    roi = np.zeros(shape, dtype=bool)
    roi[20:280, 150:350, 100:420] = rng.random((260, 200, 320)) < 0.17
    # a current of another "kernel": the prior blurred in-plane, with its own noise
    current = ndi.gaussian_filter(prior, (0.0, 0.8, 0.8)) + rng.normal(0.0, 10.0, shape).astype(np.float32)
    print(f"exam {shape[2]} x {shape[1]} x {shape[0]} voxels, ROI {int(roi.sum())} voxels")
    for k in range(args.repeats):
        t = time.perf_counter()
        _, info = match_resolution(current, prior, roi)
        print(
            f"repeat {k + 1}: match_resolution {time.perf_counter() - t:.2f} s wall "
            f"(residual robust SD {info['residual_rsd_hu'][0]:.1f} -> {info['residual_rsd_hu'][1]:.1f} HU)"
        )


if __name__ == "__main__":
    main()
