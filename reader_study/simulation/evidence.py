"""What a simulated reader sees: candidate regions of a case with their CT and overlay evidence.

The image analysis behind :mod:`reader_study.simulation.readers`. Unaided, a reader's eye picks
out *blobs* in bone (:func:`ct_blob_map`: the signed Hessian blob response of the CT, scaled by how
strong such blobs usually are in bone of the same thickness in the same exam); aided, the coloured
regions of the detector's z-map overlay (``|z| >= overlay_threshold``) as well.
:func:`case_evidence` turns one case's images into :class:`CaseEvidence` (computed once, shared by
all readers), and :class:`SuspicionScale` says how rare a finding of a given conspicuity is among
all the cases a reader reads (truth is never used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from ..errors import ReaderStudyError

__all__ = ["Candidate", "CaseEvidence", "SuspicionScale", "ct_blob_map", "case_evidence", "FILL_SCALE_MM", "THICKNESS_CLASSES_MM"]


@dataclass(frozen=True)
class Candidate:
    """A region a reader may look at: centre (LPS mm), CT evidence and overlay evidence."""

    center_mm: tuple[float, float, float]
    ct_evidence: float
    overlay_evidence: float
    polarity: int
    ct_visible: bool
    overlay_visible: bool


@dataclass(frozen=True)
class CaseEvidence:
    """The candidate regions of one case, computed once from its images and shared by all readers."""

    case_code: str
    candidates: tuple[Candidate, ...]
    has_overlay: bool


def _lps_centers(labels: np.ndarray, index: Sequence[int], volume) -> list[tuple[float, float, float]]:  # noqa: ANN001
    centers = ndimage.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, index)
    return [tuple(float(v) for v in volume.index_to_point_mm((c[2], c[1], c[0]))) for c in centers]


def _components(score: np.ndarray, threshold: float, min_voxels: int) -> tuple[np.ndarray, list[int], list[float]]:
    labels, n = ndimage.label(score >= threshold)
    if n == 0:
        return labels, [], []
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(score, dtype=np.float32), labels, idx)
    peaks = ndimage.maximum(score, labels, idx)
    keep = [int(i) for i, s in zip(idx, sizes) if s >= min_voxels]
    return labels, keep, [float(peaks[i - 1]) for i in keep]


#: Scale (mm) of the bone mean that fills the CT outside the bone before the blob analysis.
FILL_SCALE_MM = 4.0

#: Bone-thickness classes (mm) within which blob strengths are compared.
THICKNESS_CLASSES_MM: tuple[float, ...] = (0.0, 3.0, 5.0, 8.0, 12.0, math.inf)


def ct_blob_map(
    ct_hu: np.ndarray,
    spacing_mm_zyx: Sequence[float],
    bone: np.ndarray,
    *,
    scales_mm: Sequence[float] = (1.5, 3.0),
    reference_percentile: float = 95.0,
) -> np.ndarray:
    """Signed blob conspicuity of every bone voxel of a CT: what a reader's eye picks out unaided.

    At each scale s the Hessian of the Gaussian-smoothed CT (times s², so scales compare) has three
    eigenvalues; a bright blob has all three negative and its strength is the smallest magnitude,
    a dark blob all three positive. Sheets (cortex, endplates) and rods (thin processes) have a
    near-zero eigenvalue and so no blob strength. The strongest response over the scales is then
    divided by the ``reference_percentile`` of same-polarity responses in bone of the same
    thickness class (:data:`THICKNESS_CLASSES_MM`, from the distance transform of ``bone``) in this
    exam, times 2: a blob counts by how unusual it is for that kind of bone.

    Parameters
    ----------
    ct_hu : CT volume (z, y, x), HU.
    spacing_mm_zyx : voxel spacing in the array's axis order, mm.
    bone : boolean mask (same shape) of the bone to search.

    Returns
    -------
    ndarray of float32
        Positive for denser-than-surroundings blobs, negative for less dense; 0 outside ``bone``.
    """
    sp = np.asarray(spacing_mm_zyx, dtype=float)
    ct = np.asarray(ct_hu, dtype=np.float32)
    idx = np.nonzero(bone)
    out = np.zeros(ct.shape, np.float32)
    if idx[0].size == 0:
        return out
    # Outside the bone, the CT is replaced by the mean of the nearby bone, so the bone's own
    # boundary (cortex against fat, the spinal canal) does not look like a blob.
    weight = ndimage.gaussian_filter(bone.astype(np.float32), FILL_SCALE_MM / sp)
    nearby = ndimage.gaussian_filter(np.where(bone, ct, 0.0).astype(np.float32), FILL_SCALE_MM / sp) / np.maximum(weight, 1e-3)
    ct = np.where(bone, ct, np.where(weight > 1e-3, nearby, 0.0)).astype(np.float32)
    best = np.zeros(idx[0].size, np.float32)
    for scale in scales_mm:
        sigma = scale / sp
        hessian = np.empty((idx[0].size, 3, 3), np.float32)
        for a in range(3):
            for b in range(a, 3):
                order = [0, 0, 0]
                order[a] += 1
                order[b] += 1
                d = ndimage.gaussian_filter(ct, sigma, order=order)[idx] * (scale * scale / (sp[a] * sp[b]))
                hessian[:, a, b] = hessian[:, b, a] = d
        lam = np.linalg.eigvalsh(hessian)
        response = np.where(lam[:, 2] < 0, -lam[:, 2], 0.0) - np.where(lam[:, 0] > 0, lam[:, 0], 0.0)
        best = np.where(np.abs(response) > np.abs(best), response, best).astype(np.float32)
    thickness = (2.0 * ndimage.maximum_filter(ndimage.distance_transform_edt(bone, sampling=sp), size=5))[idx]
    scaled = np.zeros_like(best)
    for lo, hi in zip(THICKNESS_CLASSES_MM[:-1], THICKNESS_CLASSES_MM[1:]):
        in_class = (thickness >= lo) & (thickness < hi)
        for polarity in (1.0, -1.0):
            sel = in_class & (polarity * best > 0)
            if sel.sum() < 50:
                continue
            reference = float(np.percentile(polarity * best[sel], reference_percentile))
            scaled[sel] = 2.0 * best[sel] / max(reference, 1e-3)
    out[idx] = scaled
    return out


@dataclass(frozen=True)
class SuspicionScale:
    """How often findings of a given conspicuity occur per case, learned from candidates, not truth.

    ``surprise(e) = -log10(n(≥ e) / n_cases)``: a finding at least as conspicuous as one met once
    per case has surprise 0, once in ten cases 1. CT evidence and overlay evidence have separate
    tables. Built by :meth:`from_cases` over every case a reader reads (normal and abnormal alike:
    a case's many candidate regions are almost all normal structures).
    """

    ct_evidence: np.ndarray
    overlay_evidence: np.ndarray
    n_cases: int

    @classmethod
    def from_cases(cls, evidences: Iterable["CaseEvidence"]) -> "SuspicionScale":
        evidences = list(evidences)
        ct = np.sort([c.ct_evidence for e in evidences for c in e.candidates if c.ct_visible])
        ov = np.sort([c.overlay_evidence for e in evidences for c in e.candidates if c.overlay_visible])
        return cls(np.asarray(ct, dtype=float), np.asarray(ov, dtype=float), max(len(evidences), 1))

    @staticmethod
    def _surprise(table: np.ndarray, value: float, n_cases: int) -> float:
        n_at_least = float(table.size - np.searchsorted(table, value, side="left"))
        return float(-math.log10(max(n_at_least, 0.5) / n_cases))

    def ct(self, evidence: float) -> float:
        """Surprise of a CT finding of this evidence (log10 units)."""
        return self._surprise(self.ct_evidence, evidence, self.n_cases)

    def overlay(self, evidence: float) -> float:
        """Surprise of an overlay region of this peak |z| (log10 units)."""
        return self._surprise(self.overlay_evidence, evidence, self.n_cases)


def _detector_outputs(case_code: str, case_dir: str | Path | None, current):  # noqa: ANN001 - cases.Volume
    """The case's detector outputs (:func:`detector.read_case_outputs`), checked to lie on the current exam's grid.

    None without a folder; a folder without a finished manifest, or outputs on another grid, is
    an error (an aided reading without its overlay would be simulated silently otherwise).
    """
    if case_dir is None:
        return None
    from detector.outputs import CaseOutputsError, read_case_outputs

    try:
        outputs = read_case_outputs(case_dir)
        outputs.check_grid(current, f"the current exam of case {case_code}")
    except CaseOutputsError as exc:
        raise ReaderStudyError(f"Case {case_code}: {exc}") from None
    return outputs


def case_evidence(
    case_code: str,
    current_path: str | Path,
    detector_dir: str | Path | None,
    *,
    overlay_threshold: float = 4.0,
    lesion_scale_mm: float = 1.5,
    ct_threshold: float = 2.0,
    min_region_mm3: float = 15.0,
    merge_distance_mm: float = 6.0,
) -> CaseEvidence:
    """Find the regions a reader could look at in one case, with their CT and overlay evidence.

    The CT map is :func:`ct_blob_map` at ``lesion_scale_mm`` and twice that, in the bone (2 mm
    inside the detector's bone ROI, or a threshold mask without it); CT regions are where
    ``|map| ≥ ct_threshold``. The overlay map is the detector's z-map (or the scaled subtraction);
    overlay regions are where ``|z| ≥ overlay_threshold``. Regions of at least ``min_region_mm3``
    within ``merge_distance_mm`` of each other with the same polarity are one candidate.
    """
    from cases import read_volume

    current = read_volume(current_path)
    ct = current.array.astype(np.float32)
    spacing_zyx = np.asarray(current.spacing_mm[::-1])
    outputs = _detector_outputs(case_code, detector_dir, current)
    roi_path = outputs.path("bone_roi") if outputs is not None and outputs.has("bone_roi") else None
    if roi_path is not None and roi_path.is_file():
        # The detector's ROI is the bone of either exam grown by 3 mm: deeper than 3 mm is bone.
        roi = read_volume(roi_path, label=True).array > 0
        bone = ndimage.distance_transform_edt(roi, sampling=spacing_zyx) > 3.0
    else:
        bone = ndimage.binary_fill_holes(ndimage.binary_closing(ct > 200, iterations=2))
    ct_map = ct_blob_map(ct, spacing_zyx, bone, scales_mm=(lesion_scale_mm, 2 * lesion_scale_mm, 4 * lesion_scale_mm))

    overlay_map = None
    if outputs is not None:
        zpath = outputs.path("zmap") if outputs.has("zmap") else None
        spath = outputs.path("subtraction") if outputs.has("subtraction") else None
        if zpath is not None and zpath.is_file():
            overlay_map = read_volume(zpath).array.astype(np.float32)
        elif spath is not None and spath.is_file():
            sub = read_volume(spath).array.astype(np.float32)
            inside = sub[bone]
            mad = 1.4826 * float(np.median(np.abs(inside - np.median(inside)))) if inside.size else 1.0
            overlay_map = sub / max(mad, 1.0)
        if overlay_map is not None:
            overlay_map = np.where(ndimage.binary_dilation(bone, iterations=2), overlay_map, 0.0)

    min_voxels = max(1, int(round(min_region_mm3 / current.voxel_volume_mm3)))
    raw: list[tuple[tuple[float, float, float], float, float, int, bool, bool]] = []
    for polarity in (+1, -1):
        labels, keep, peaks = _components(polarity * ct_map, ct_threshold, min_voxels)
        for center, peak in zip(_lps_centers(labels, keep, current), peaks):
            raw.append((center, peak, 0.0, polarity, True, False))
        if overlay_map is not None:
            labels, keep, peaks = _components(polarity * overlay_map, overlay_threshold, min_voxels)
            for center, peak in zip(_lps_centers(labels, keep, current), peaks):
                raw.append((center, 0.0, peak, polarity, False, True))

    merged: list[list] = []
    for center, ct_e, ov_e, pol, ct_vis, ov_vis in sorted(raw, key=lambda r: -(r[1] + r[2])):
        for m in merged:
            if m[3] == pol and np.linalg.norm(np.subtract(m[0], center)) <= merge_distance_mm:
                m[1] = max(m[1], ct_e)
                m[2] = max(m[2], ov_e)
                m[4] = m[4] or ct_vis
                m[5] = m[5] or ov_vis
                break
        else:
            merged.append([center, ct_e, ov_e, pol, ct_vis, ov_vis])
    # Overlay evidence at CT candidates that the overlay components did not reach (below threshold).
    if overlay_map is not None:
        for m in merged:
            if not m[5]:
                idx = np.rint(current.point_to_index(m[0])).astype(int)[::-1]
                lo = np.maximum(idx - 2, 0)
                hi = np.minimum(idx + 3, overlay_map.shape)
                patch = m[3] * overlay_map[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
                m[2] = float(max(patch.max(initial=0.0), 0.0))
    candidates = tuple(Candidate(tuple(m[0]), float(m[1]), float(m[2]), int(m[3]), bool(m[4]), bool(m[5])) for m in merged)
    return CaseEvidence(case_code=case_code, candidates=candidates, has_overlay=overlay_map is not None)
