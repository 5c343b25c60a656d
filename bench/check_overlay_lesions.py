"""How much of each truth lesion the colour overlay shows, and whether every candidate is coloured.

For every abnormal case of a case list whose pairs are registered in WORK (``tsct detect batch
--no-zscore``), runs the z-score stage with its defaults and prints per lesion the share of its
voxels coloured with the lesion's sign by the overlay as it was before Dec 2026 (voxel-wise
``|z| >= 4``) and as it is now (the candidate score from the operating threshold,
``detector.zscore_outputs.overlay_map``), then whether each candidate's peak is coloured.

Usage::

    python bench/check_overlay_lesions.py CASELIST WORK
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case_list", type=Path)
    parser.add_argument("work", type=Path)
    args = parser.parse_args()

    from cases import read_case_list, read_exam, read_volume
    from detector.zscore import OutOfDomainWarning
    from detector.zscore_outputs import ZScoreSettings, overlay_map, zscore_stage

    rows = []
    coloured, total = 0, 0
    for case in read_case_list(args.case_list):
        if not case.lesions:
            continue
        cur = read_exam(case.current).volume
        wd = args.work / case.case_id
        warped = read_volume(wd / "warped_prior.nii.gz")
        roi = read_volume(wd / "bone_roi.nii.gz", label=True)
        prior_spacing = json.loads((wd / "qc.json").read_text())["inputs"]["prior"]["spacing_mm"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            res = zscore_stage(cur, warped, roi, settings=ZScoreSettings(), prior_spacing_mm=prior_spacing)
        shown, style = overlay_map(res)
        z, s, t = res.zmap.z.array, shown.array, style.threshold
        lab = read_volume(case.lesions[0].label_map, label=True)
        if not lab.same_space(cur):
            lab = lab.resample_to(cur)
        for les in case.lesions:
            m = lab.array == les.label_value
            kind = les.lesion_type.value
            sign = -1.0 if kind == "lytic" else 1.0
            old = float((np.abs(z[m]) >= 4).mean()) if kind == "mixed" else float((sign * z[m] >= 4).mean())
            new = float((np.abs(s[m]) >= t).mean()) if kind == "mixed" else float((sign * s[m] >= t).mean())
            rows.append((case.case_id, kind, les.location.value, int(m.sum()), float(np.median(z[m])), old, new))
            print(
                f"{case.case_id} {kind:8s} {les.location.value:15s} {int(m.sum()):5d} voxels, median z {np.median(z[m]):+6.1f}: coloured before {old:6.1%}, now {new:6.1%}"
            )
        for c in res.candidates:
            k, j, i = np.round(cur.point_to_index(c.peak_mm)).astype(int)[::-1]
            total += 1
            coloured += bool(abs(s[k, j, i]) >= t)
    print(f"candidates at the operating point coloured at their peak: {coloured} of {total}")
    for kind in ("lytic", "blastic", "mixed"):
        sel = [r for r in rows if r[1] == kind]
        if sel:
            print(
                f"{kind}: {len(sel)} lesions, mean share coloured before {np.mean([r[5] for r in sel]):.1%}, now {np.mean([r[6] for r in sel]):.1%}"
            )


if __name__ == "__main__":
    main()
