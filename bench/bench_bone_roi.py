"""The detector's bone ROI on real CT, against TotalSegmentator labels.

For every CT of ``../shared/reference/real-ct/totalsegmentator`` (or ``--ct-dir``) the ROI is
made as the detector makes it for a single exam (``detector.bone_mask`` with the blood-pool
exclusion, grown by 3 mm) and compared with the label map that comes with the CT:

* ``precision``: share of the ROI within 3 mm of a bone label (vertebrae, sacrum, ribs,
  sternum, pelvis, scapulae, ...); needs a full label map;
* ``vertebrae``: share of the vertebra-label voxels (TotalSegmentator 25-50, sacrum to C1; in a
  partial label map the vertebrae it holds) inside the ROI;
* per organ / vessel label (heart, aorta, kidneys, liver, spleen, bowel, bladder, ...): mL inside
  the ROI, and the share of its core (the label eroded by one voxel) inside, which the 3 mm
  growth of bone touching an organ cannot explain.

The issue-13 targets are precision >= 90 % and vertebrae >= 98 %. A CT without any label map is
listed with its ROI volume only.

Usage::

    .venv/bin/python bench/bench_bone_roi.py [--ct-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DIR = ROOT.parent / "shared" / "reference" / "real-ct" / "totalsegmentator"
if not DEFAULT_DIR.is_dir():
    DEFAULT_DIR = ROOT.parents[1] / "shared" / "reference" / "real-ct" / "totalsegmentator"

#: TotalSegmentator "total" classes that are bone (sacrum, vertebrae, limbs and girdles, skull, ribs, sternum).
BONE_LABELS = list(range(25, 51)) + list(range(69, 79)) + list(range(91, 117))
#: Vertebrae and sacrum.
VERTEBRA_LABELS = list(range(25, 51))
#: Soft organs and vessels the ROI must leave out (label -> name).
ORGANS = {
    1: "spleen",
    2: "kidney R",
    3: "kidney L",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "pancreas",
    18: "small bowel",
    19: "duodenum",
    20: "colon",
    21: "bladder",
    51: "heart",
    52: "aorta",
    63: "IVC",
    64: "portal/splenic v.",
    65: "iliac a. L",
    66: "iliac a. R",
    67: "iliac v. L",
    68: "iliac v. R",
}


def _label_map(ct_path: Path) -> tuple[Path, bool] | None:
    """The label map stored next to a CT and whether it is a full multi-class map."""
    stem = ct_path.name[: -len(".nii.gz")]
    full = ct_path.with_name(stem + "_labels.nii.gz")
    if full.is_file():
        return full, True
    partial = sorted(ct_path.parent.glob(stem + "_vertebra_*.nii.gz"))
    return (partial[0], False) if partial else None


def measure(ct_path: Path) -> dict[str, object]:
    """ROI volume, precision, vertebra coverage and organs inside for one CT."""
    from cases import read_volume
    from detector.bone import bone_mask, dilate_mask
    from detector.detection_eval import bone_roi_agreement

    ct = read_volume(ct_path)
    t0 = time.perf_counter()
    roi = dilate_mask(bone_mask(ct), 3.0).array != 0
    seconds = time.perf_counter() - t0
    ml = ct.voxel_volume_mm3 / 1000.0
    row: dict[str, object] = {
        "ct": ct_path.name,
        "grid": "x".join(str(n) for n in ct.size),
        "spacing": "x".join(f"{s:g}" for s in ct.spacing_mm),
        "roi_ml": roi.sum() * ml,
        "seconds": seconds,
        "precision": None,
        "vertebrae": None,
        "organs": {},
        "labels": "none",
    }
    found = _label_map(ct_path)
    if found is None:
        return row
    path, full = found
    labels = read_volume(path, label=True)
    if not labels.same_space(ct):
        labels = labels.resample_to(ct)
    lab = labels.array
    if full:
        row["labels"] = path.name
        truth = np.where(np.isin(lab, BONE_LABELS), np.where(np.isin(lab, VERTEBRA_LABELS), 1, 2), 0)
        agreement = bone_roi_agreement(roi, truth, ct.spacing_mm)
        row["precision"], row["vertebrae"] = agreement["precision_3mm"], agreement["vertebral_body_inside"]
        organs = {}
        for value, name in ORGANS.items():
            organ = lab == value
            if organ.sum() * ml < 1.0:
                continue
            core = ndi.binary_erosion(organ)
            organs[name] = (float((organ & roi).sum() * ml), float(roi[core].mean()) if core.any() else 0.0)
        row["organs"] = organs
    else:
        row["labels"] = path.name + " (vertebra only)"
        vert = lab != 0
        row["vertebrae"] = float(roi[vert].mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct-dir", type=Path, default=DEFAULT_DIR, help="folder of CTs (*.nii.gz) with optional label maps next to them")
    args = parser.parse_args()
    if not args.ct_dir.is_dir():
        sys.exit(f"{args.ct_dir}: no such folder; pass --ct-dir with the real CTs (shared/reference/real-ct/totalsegmentator).")
    cts = [p for p in sorted(args.ct_dir.glob("*.nii.gz")) if "_labels" not in p.name and "_vertebra_" not in p.name]
    if not cts:
        sys.exit(f"{args.ct_dir}: no CT (*.nii.gz) found.")
    print(f"{'CT':<34}{'grid':>15}{'mm':>14}{'ROI mL':>9}{'wall s':>8}{'precision':>11}{'vertebrae':>11}  labels")
    rows = [measure(p) for p in cts]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    for r in rows:
        print(
            f"{r['ct']:<34}{r['grid']:>15}{r['spacing']:>14}{r['roi_ml']:9.0f}{r['seconds']:8.1f}{pct(r['precision']):>11}{pct(r['vertebrae']):>11}  {r['labels']}"
        )
    for r in rows:
        if r["organs"]:
            print(f"\n{r['ct']}: organs and vessels inside the ROI (mL of the label; share of its core, the label eroded by 1 voxel)")
            for name, (inside_ml, core) in r["organs"].items():
                print(f"  {name:<20}{inside_ml:8.1f} mL{100 * core:8.1f} %")
    print("\ntargets (issue 13): precision >= 90 %, vertebrae >= 98 %")


if __name__ == "__main__":
    main()
