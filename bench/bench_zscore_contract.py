"""CPU cost of input contract 3 (the resolution-matched prior) in the network's z-map, on registered pairs.

For each case folder given (``tsct detect batch`` outputs: ``warped_prior.nii.gz``,
``bone_roi.nii.gz``, ``qc.json``; the current exam from the case list), it times
:func:`detector.zscore.compute_zmap` with a bundle run as it is (contract 1 or 2) and with the same
weights under contract 3, and, on the working grid the map uses, :func:`detector.zscore_model.network_prior_input`
alone. CPU time of this process (``time.process_time``) and wall time are printed; the figure
that matters is the match's share of the map. The network is forced (``force=True``): the point
is the time.

Usage::

    PYTHONPATH=. python bench/bench_zscore_contract.py CASELIST WORK [--cases RCT0001,RCT0002] [--model detector/weights/zscore-v2.pt] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caselist", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--cases", default="", help="comma-separated case ids (default: the first two)")
    ap.add_argument("--model", type=Path, default=ROOT / "detector" / "weights" / "zscore-v2.pt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)

    import numpy as np
    import torch

    from cases import read_case_list, read_exam, read_volume
    from detector.working_grid import make_working_grid, to_working_grid
    from detector.zscore import compute_zmap, load_zscore_model
    from detector.zscore_model import INPUT_CONTRACT_RESOLUTION_MATCH, ZScoreModel, network_prior_input

    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    cl = read_case_list(a.caselist)
    wanted = [c for c in a.cases.split(",") if c] or [c.case_id for c in cl.cases[:2]]
    base = load_zscore_model(a.model)
    c3 = ZScoreModel(
        net=base.net,
        metadata={**base.metadata, "input": {**base.metadata.get("input", {}), "contract": INPUT_CONTRACT_RESOLUTION_MATCH}},
        path=base.path,
        device=base.device,
    )
    by_id = {c.case_id: c for c in cl.cases}
    for cid in wanted:
        case = by_id.get(cid)
        folder = a.work / cid
        if case is None or not (folder / "warped_prior.nii.gz").is_file():
            print(f"{cid}: not in the case list or not registered in {a.work}; skipped", file=sys.stderr)
            continue
        current = read_exam(case.current).volume
        warped = read_volume(folder / "warped_prior.nii.gz")
        roi_vol = read_volume(folder / "bone_roi.nii.gz", label=True)
        prior_sp = json.loads((folder / "qc.json").read_text())["inputs"]["prior"]["spacing_mm"]
        roi = roi_vol.array != 0
        grid = make_working_grid(current, roi, base.working_spacing_mm, (base.net.receptive_radius_vox + 2) * base.working_spacing_mm)
        assert grid is not None
        cur_w = to_working_grid(current.array.astype(np.float32), grid, current.spacing_mm)
        pri_w = to_working_grid(warped.array.astype(np.float32), grid, current.spacing_mm)
        roi_w = to_working_grid(roi, grid, current.spacing_mm, label=True) > 0.5
        rows = []
        for label, model in ((f"contract {base.input_contract}", base), ("contract 3", c3)):
            best = None
            for _ in range(a.repeats):
                c0, w0 = time.process_time(), time.perf_counter()
                compute_zmap(current, warped, roi_vol, model=model, prior_spacing_mm=prior_sp, force=True)
                t = (time.process_time() - c0, time.perf_counter() - w0)
                best = t if best is None or t[0] < best[0] else best
            rows.append((label, best))
        best_m = None
        for _ in range(a.repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            network_prior_input(cur_w, pri_w, roi_w, INPUT_CONTRACT_RESOLUTION_MATCH)
            t = (time.process_time() - c0, time.perf_counter() - w0)
            best_m = t if best_m is None or t[0] < best_m[0] else best_m
        print(
            f"{cid}: exam {current.shape[::-1]} voxels of {tuple(round(s, 2) for s in current.spacing_mm)} mm, working grid {cur_w.shape[::-1]} "
            f"({int(roi_w.sum())} ROI voxels); best of {a.repeats}, {a.threads} torch thread(s)"
        )
        for label, (cpu, wall) in rows:
            print(f"  compute_zmap, {label}: {cpu:.2f} s CPU, {wall:.2f} s wall")
        print(f"  network_prior_input alone: {best_m[0]:.2f} s CPU, {best_m[1]:.2f} s wall")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
