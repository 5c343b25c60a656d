"""The training domain of a z-score network, and whether an exam or a pair lies inside it.

Each bundle records in its metadata (``domain``) the ranges it was trained on: voxel spacing per
axis of each exam, the bone-HU percentiles of the network's input inside the bone ROI, and the
soft-tissue noise index of each exam. :func:`check_domain_ranges` compares measured figures with
those ranges (with the tolerances the metadata states) and says, in one sentence per failed check,
what was measured and what was trained. The temporal map falls back to the analytic error model
out of domain; the single-exam map refuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from .working_grid import make_working_grid, to_working_grid

if TYPE_CHECKING:
    from .zscore_model import ZScoreModel

__all__ = [
    "SOFT_TISSUE_HU",
    "OutOfDomainWarning",
    "DomainCheck",
    "noise_index_hu",
    "bone_hu_statistics",
    "effective_spacing_mm",
    "check_domain_ranges",
    "check_domain",
]

#: HU range of the soft tissue where the noise level is measured.
SOFT_TISSUE_HU = (-150.0, 150.0)


class OutOfDomainWarning(UserWarning):
    """The pair lies outside the data the z-score network was trained on."""


@dataclass(frozen=True)
class DomainCheck:
    """Whether a pair lies inside the network's training domain.

    Attributes
    ----------
    in_domain : True when every check passed.
    reasons : one sentence per failed check, naming the measured value and the trained range.
    measured : the pair's figures (``spacing_mm``, ``bone_hu_p5/p50/p95``, ``noise_current_hu``,
        ``noise_prior_hu``).
    """

    in_domain: bool
    reasons: tuple[str, ...]
    measured: dict[str, Any]

    def summary(self) -> str:
        if self.in_domain:
            return "inside the network's training domain"
        return "outside the network's training domain: " + "; ".join(self.reasons)


def noise_index_hu(hu: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Robust noise level of a CT in soft tissue, HU.

    ``1.4826 x MAD`` of neighbour differences ``(v[i+1] - v[i]) / sqrt(2)`` along x and y,
    over pairs of voxels that both lie in soft tissue (-150 to 150 HU) and outside ``exclude``
    (the bone ROI). For white noise this is the noise standard deviation; correlated noise (soft
    kernels, interpolation) reads lower. The network is trained and applied with the same index,
    so only consistency matters. NaN when fewer than 500 voxel pairs qualify.
    """
    lo, hi = SOFT_TISSUE_HU
    soft = (hu >= lo) & (hu <= hi)
    if exclude is not None:
        soft &= ~exclude
    diffs = []
    for axis in (1, 2):
        a = np.swapaxes(hu, 0, axis)
        s = np.swapaxes(soft, 0, axis)
        ok = s[1:] & s[:-1]
        d = (a[1:] - a[:-1])[ok]
        diffs.append(d.astype(np.float32) / math.sqrt(2.0))
    d = np.concatenate(diffs)
    if d.size < 500:
        return float("nan")
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def bone_hu_statistics(prior_hu: np.ndarray, roi: np.ndarray) -> dict[str, float]:
    """Percentiles (5, 50, 95) of the warped prior's HU inside the bone ROI."""
    v = prior_hu[roi]
    if v.size == 0:
        return {"bone_hu_p5": float("nan"), "bone_hu_p50": float("nan"), "bone_hu_p95": float("nan")}
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"bone_hu_p5": float(p5), "bone_hu_p50": float(p50), "bone_hu_p95": float(p95)}


def effective_spacing_mm(spacing_mm: Sequence[float], floor_mm: float | None) -> list[float]:
    """Voxel spacing as the network sees it: ``max(spacing, floor_mm)`` per axis (``floor_mm`` None: unchanged).

    An exam finer than the working grid is anti-aliased onto it (:func:`~detector.working_grid.to_working_grid`),
    so its detail below the working spacing never reaches the network; what remains of the
    difference (less noise) is measured by the noise index.
    """
    return [max(float(s), float(floor_mm)) if floor_mm else float(s) for s in spacing_mm]


def check_domain_ranges(
    domain: dict[str, Any],
    *,
    spacings: Sequence[tuple[str, str, Sequence[float] | None]],
    bone_hu: np.ndarray,
    roi: np.ndarray,
    noises: Sequence[tuple[str, str, float]],
    measured: dict[str, Any] | None = None,
) -> DomainCheck:
    """Compare measured figures with the training ranges recorded in a bundle's ``domain``.

    Parameters
    ----------
    domain : the metadata's ``domain``: ``<key>_min_mm``/``<key>_max_mm`` per spacing key,
        ``spacing_tolerance`` (relative), ``spacing_floor_mm`` (spacings below it count as it,
        :func:`effective_spacing_mm`; absent in older bundles), ``bone_hu_p50``/``bone_hu_p95``
        ranges with ``hu_margin``, a range per noise key with ``noise_factor``.
    spacings : ``(key, exam label, spacing (x, y, z) or None)``, e.g. ``("spacing", "the current exam", ...)``.
    bone_hu, roi : the network's input on the working grid and the ROI there (bone-HU percentiles).
    noises : ``(key, label, measured noise index)``.
    measured : figures to report besides the ones measured here.
    """
    out: dict[str, Any] = dict(measured or {})
    out.update(bone_hu_statistics(bone_hu, roi))
    reasons: list[str] = []
    tol = float(domain.get("spacing_tolerance", 0.1))
    floor = domain.get("spacing_floor_mm")
    for key, exam, spacing in spacings:
        lo, hi = domain.get(f"{key}_min_mm"), domain.get(f"{key}_max_mm")
        if spacing is None or lo is None or hi is None:
            continue
        of = f" of {exam}" if exam else ""
        for axis, native, s, a, b in zip("xyz", spacing, effective_spacing_mm(spacing, floor), lo, hi):
            if s < a * (1 - tol) - 1e-6 or s > b * (1 + tol) + 1e-6:
                seen = f" (seen as {s:.2f} mm on the working grid)" if abs(s - float(native)) > 1e-6 else ""
                reasons.append(f"voxel spacing{of} along {axis} is {float(native):.2f} mm{seen}, trained on {a:.2f}-{b:.2f} mm")
    margin = float(domain.get("hu_margin", 50.0))
    for key, label in (("bone_hu_p50", "median bone HU"), ("bone_hu_p95", "95th percentile of bone HU")):
        rng, v = domain.get(key), out.get(key)
        if rng is not None and v is not None and math.isfinite(v) and (v < rng[0] - margin or v > rng[1] + margin):
            reasons.append(f"{label} is {v:.0f} HU, trained on {rng[0]:.0f}-{rng[1]:.0f} HU (±{margin:.0f})")
    factor = float(domain.get("noise_factor", 1.3))
    for key, label, value in noises:
        rng = domain.get(key)
        if rng is None:
            continue
        if not math.isfinite(value):
            reasons.append(f"{label} could not be measured (too little soft tissue around the bone)")
        elif value < rng[0] / factor or value > rng[1] * factor:
            reasons.append(f"{label} is {value:.1f} HU (soft-tissue index), trained on {rng[0]:.1f}-{rng[1]:.1f} HU (x/÷{factor:g})")
    return DomainCheck(in_domain=not reasons, reasons=tuple(reasons), measured=out)


def check_domain(
    model: "ZScoreModel", current: Volume, warped_prior: Volume, bone_roi: LabelVolume, *, prior_spacing_mm: Sequence[float] | None = None
) -> DomainCheck:
    """Whether a registered pair lies inside the training domain of ``model``.

    Checks both exams' voxel spacings against the trained ranges, the warped prior's bone HU
    percentiles (on the working grid, in the ROI) and both exams' soft-tissue noise levels.
    """
    roi = bone_roi.array != 0
    grid = make_working_grid(current, roi, model.working_spacing_mm, 4.0)
    if grid is None:
        return DomainCheck(False, ("the bone ROI is empty",), {})
    prior_w = to_working_grid(warped_prior.array, grid, current.spacing_mm)
    cur_w = to_working_grid(current.array, grid, current.spacing_mm)
    roi_w = to_working_grid(roi.astype(np.float32), grid, current.spacing_mm, label=True) > 0.5
    grown = ndi.binary_dilation(roi_w, iterations=2) if roi_w.any() else roi_w
    return model.check_domain(current, prior_w, roi_w, noise_index_hu(cur_w, grown), noise_index_hu(prior_w, grown), prior_spacing_mm)
