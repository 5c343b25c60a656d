"""Make docs/images/overlay-example.png: the z-score overlay on a synthetic pair, axial and sagittal.

Run from the repository root: ``python docs/images/make_overlay_example.py`` (about a minute on
two cores: one small synthetic pair, its registration, the z-map with the shipped network).
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

from cases import synthesize_pair  # noqa: E402
from detector import run_pair  # noqa: E402
from detector.overlay import OverlayStyle, render_overlay  # noqa: E402
from detector.zscore_outputs import zscore_stage  # noqa: E402


def main(out: Path = ROOT / "docs" / "images" / "overlay-example.png") -> None:
    pair = synthesize_pair(
        "OVERLAY",
        seed=4242,
        size="small",
        abnormal=True,
        n_lesions=2,
        lesion_types=["lytic", "blastic"],
        lesion_locations=["vertebral_body", "vertebral_body"],
        lesion_radius_mm=(5.0, 7.0),
        include_pelvis=False,
        vary_acquisition=False,
        benign_finding=False,
    )
    result = run_pair(pair.prior, pair.current)
    stage = zscore_stage(pair.current, result.warped_prior, result.bone_roi, prior_spacing_mm=pair.prior.spacing_mm)
    z = stage.zmap.z.array
    ct = pair.current.array
    style = OverlayStyle()
    labels = pair.lesion_labels.array
    lytic = next(les for les in pair.lesions if les.lesion_type.value == "lytic")
    blastic = next(les for les in pair.lesions if les.lesion_type.value == "blastic")
    k = int(np.argmax((labels == lytic.label_value).sum(axis=(1, 2))))  # axial slice through the lytic lesion
    xb = int(np.argmax((labels == blastic.label_value).sum(axis=(0, 1))))  # sagittal plane through the blastic lesion
    axial = render_overlay(
        ct[k], z[k], window=style.window, threshold=style.threshold, palette=style.palette, opacity=style.opacity, z_max=style.z_max
    )
    sag = render_overlay(
        ct[:, :, xb], z[:, :, xb], window=style.window, threshold=style.threshold, palette=style.palette, opacity=style.opacity, z_max=style.z_max
    )
    sx, sy, sz = pair.current.spacing_mm
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.6), dpi=120)
    axes[0].imshow(axial, aspect=sy / sx)
    axes[0].set_title(f"axial: lytic lesion (orange), z <= -{style.threshold:g}", fontsize=9)
    axes[1].imshow(sag[::-1], aspect=sz / sy)  # superior up
    axes[1].set_title(f"sagittal: blastic lesion (green), z >= +{style.threshold:g}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    how = f"network v{stage.zmap.model_version}" if stage.zmap.method == "network" else "analytic error model"
    fig.suptitle(
        f"z-score overlay on the current CT (bone window L {style.window_level_hu:g} / W {style.window_width_hu:g}; {how}; synthetic case)",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}; {stage.candidates.summary().splitlines()[0]}")


if __name__ == "__main__":
    main()
