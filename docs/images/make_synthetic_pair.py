"""Make docs/images/synthetic-pair.png: one synthetic clinical-size pair, axial and sagittal.

Run from the repository root: ``python docs/images/make_synthetic_pair.py`` (about 30 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cases.synth import synthesize_pair  # noqa: E402

WINDOW = {"cmap": "gray", "vmin": -300, "vmax": 800}  # level 250, width 1100 HU


def main(out: Path = ROOT / "docs" / "images" / "synthetic-pair.png") -> None:
    pair = synthesize_pair(
        "DEMO",
        seed=2024,
        size="clinical",
        abnormal=True,
        n_lesions=3,
        lesion_types=["blastic", "lytic", "lytic"],
        lesion_locations=["vertebral_body", "vertebral_body", "pedicle"],
        include_pelvis=False,
        vary_acquisition=False,
        benign_finding=False,
    )
    prior, current = pair.prior, pair.current
    # axial: through the lytic lesion, on the slice closest to its vertebra's mid-level (pedicles
    # in view); parasagittal: through the blastic lesion
    blastic, lytic = pair.lesions[0], pair.lesions[1]
    level_mid = np.asarray(pair.parameters["landmarks_current_mm"][pair.parameters["lesions"][1]["level"]])
    k_mid = int(round(current.point_to_index(level_mid)[2]))
    ks = np.nonzero((pair.lesion_labels.array == lytic.label_value).any(axis=(1, 2)))[0]
    k = int(ks[np.argmin(np.abs(ks - k_mid))])
    c_cur = current.index_to_point_mm((*current.point_to_index(lytic.center_mm)[:2], k))
    c_pri = np.asarray(pair.true_transform.TransformPoint(tuple(c_cur)))
    i_cur = np.round(current.point_to_index(c_cur)).astype(int)
    i_pri = np.round(prior.point_to_index(c_pri)).astype(int)
    b_cur = np.asarray(blastic.center_mm)
    s_cur = np.round(current.point_to_index(b_cur)).astype(int)
    s_pri = np.round(prior.point_to_index(pair.true_transform.TransformPoint(tuple(b_cur)))).astype(int)

    fig, axes = plt.subplots(2, 2, figsize=(10, 10.6), facecolor="black")
    half = int(60 / prior.spacing_mm[0])

    def crop_axial(vol, idx):
        x0, y0 = idx[0] - half, idx[1] - int(1.1 * half)
        return vol.array[idx[2], max(y0, 0) : y0 + int(2.3 * half), max(x0, 0) : x0 + 2 * half], (x0, y0)

    for ax, vol, idx, title in ((axes[0, 0], prior, i_pri, "prior"), (axes[0, 1], current, i_cur, "current (6 months later)")):
        img, (x0, y0) = crop_axial(vol, idx)
        ax.imshow(img, **WINDOW)
        if vol is current:
            lab = pair.lesion_labels.array[idx[2], max(y0, 0) : y0 + int(2.3 * half), max(x0, 0) : x0 + 2 * half]
            ax.contour(lab > 0, levels=[0.5], colors="#ff7f0e", linewidths=0.8)
        ax.set_title(f"{title}: axial", color="white", fontsize=11)
    for ax, vol, idx, title in ((axes[1, 0], prior, s_pri, "prior"), (axes[1, 1], current, s_cur, "current")):
        sag = vol.array[:, :, idx[0]][::-1]
        aspect = vol.spacing_mm[2] / vol.spacing_mm[1]
        y_lo = max(idx[1] - int(1.6 * half), 0)
        ax.imshow(sag[:, y_lo : idx[1] + int(1.6 * half)], aspect=aspect, **WINDOW)
        if vol is current:
            lab = pair.lesion_labels.array[:, :, idx[0]][::-1][:, y_lo : idx[1] + int(1.6 * half)]
            ax.contour(lab > 0, levels=[0.5], colors="#ff7f0e", linewidths=0.8)
        ax.set_title(f"{title}: parasagittal", color="white", fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "Synthetic thoracolumbar CT pair (512 x 512 x 300, 0.75 x 0.75 x 1 mm): patient repositioned, spinal curvature\n"
        "changed, new lytic and blastic metastases in the current exam (truth outlined in orange). W 1100 / L 250 HU.",
        color="white",
        fontsize=9.5,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor="black")
    print(f"wrote {out}: {pair.summary()}")


if __name__ == "__main__":
    main()
