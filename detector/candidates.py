"""Lesion candidates: connected regions of a score map (z-map or subtraction) above a threshold.

A bone of a million voxels gives thousands of voxels with ``|z| > 3`` by chance alone even when
``z`` is perfectly calibrated, so single voxels are not findings. A **candidate** is a connected
region (26-connectivity) of one polarity:

* ``blastic``: ``score >= +threshold`` (bone became denser);
* ``lytic``: ``score <= -threshold`` (bone lost density);

optionally grown by **hysteresis**: the region is every voxel with ``|score| >= low_threshold``
connected to at least one voxel with ``|score| >= threshold``, so a lesion is outlined by its
whole extent while only strong seeds start one. Regions smaller than ``min_volume_mm3`` are
dropped. Each candidate carries its centre (centroid, LPS mm), the position of its peak, volume,
peak ``|score|`` (its rating for FROC analysis), mean score and mean HU change.

Candidates are written as ``candidates.json`` (with the parameters) and ``candidates.csv``.

Matched-filter score (:func:`matched_filter_score`)
---------------------------------------------------
A small lesion of several voxels that are each only moderately surprising (``z`` about -3 in a
thin rib or process) is a weak voxel-wise finding but a clear *regional* one, while an isolated
noisy voxel is the reverse. The matched filter for a blob in independent unit-variance noise is a
weighted sum of ``z`` over the neighbourhood, scaled to unit variance:

    s(x) = sum_i w_i(x) z_i / sqrt(sum_i w_i(x)^2),

``w`` a Gaussian of ``sigma_mm`` restricted to the ROI (so bone next to soft tissue is not diluted
by zeros). Real ``z`` maps are spatially correlated (the network works on a 1.5 mm grid and its
errors are smooth), so ``s`` is then divided by its own robust spread over the ROI (1.4826 x MAD):
one number per exam that puts ``s`` back in "sigmas". Candidates found and rated on ``s`` are what
``tsct detect evaluate`` scores for every method (see docs/detector-zscore.md for the measured gain).
"""

from __future__ import annotations

import csv
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from ._errors import DetectorInputError
from ._geometry import mask_bounding_box

__all__ = ["Candidate", "CandidateSet", "find_candidates", "matched_filter_score", "CANDIDATE_COLUMNS"]

Polarity = Literal["blastic", "lytic"]

#: Columns of ``candidates.csv`` (and of :meth:`CandidateSet.to_frame`).
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "candidate_id",
    "polarity",
    "center_x_mm",
    "center_y_mm",
    "center_z_mm",
    "peak_x_mm",
    "peak_y_mm",
    "peak_z_mm",
    "volume_mm3",
    "n_voxels",
    "peak_abs_score",
    "mean_score",
    "mean_change_hu",
)

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Candidate:
    """One lesion candidate.

    Attributes
    ----------
    candidate_id : 1-based, ordered by decreasing ``peak_abs_score``.
    polarity : ``"blastic"`` (score > 0, density increase) or ``"lytic"`` (score < 0).
    center_mm : centroid of the region's voxels, LPS mm.
    peak_mm : position of the voxel with the largest ``|score|``, LPS mm.
    volume_mm3 : region volume, mm³.
    n_voxels : region size in voxels.
    peak_abs_score : largest ``|score|`` in the region (the candidate's rating).
    mean_score : mean score over the region (signed).
    mean_change_hu : mean HU change (current − prior) over the region, when a change map was given.
    """

    candidate_id: int
    polarity: Polarity
    center_mm: tuple[float, float, float]
    peak_mm: tuple[float, float, float]
    volume_mm3: float
    n_voxels: int
    peak_abs_score: float
    mean_score: float
    mean_change_hu: float | None = None

    def to_row(self) -> dict[str, Any]:
        """Flat dictionary with the :data:`CANDIDATE_COLUMNS`."""
        return {
            "candidate_id": self.candidate_id,
            "polarity": self.polarity,
            "center_x_mm": self.center_mm[0],
            "center_y_mm": self.center_mm[1],
            "center_z_mm": self.center_mm[2],
            "peak_x_mm": self.peak_mm[0],
            "peak_y_mm": self.peak_mm[1],
            "peak_z_mm": self.peak_mm[2],
            "volume_mm3": self.volume_mm3,
            "n_voxels": self.n_voxels,
            "peak_abs_score": self.peak_abs_score,
            "mean_score": self.mean_score,
            "mean_change_hu": self.mean_change_hu,
        }


@dataclass(frozen=True)
class CandidateSet:
    """The candidates of one case and how they were found.

    Attributes
    ----------
    candidates : ordered by decreasing ``peak_abs_score``.
    parameters : threshold, low threshold, minimum volume, score name, ...
    case_id : the case, if known.
    """

    candidates: tuple[Candidate, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    case_id: str | None = None

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    def by_polarity(self, polarity: Polarity) -> list[Candidate]:
        return [c for c in self.candidates if c.polarity == polarity]

    def summary(self) -> str:
        who = f"{self.case_id}: " if self.case_id else ""
        p = self.parameters
        thr = f"|{p.get('score', 'score')}| >= {p.get('threshold')}"
        if p.get("low_threshold") is not None:
            thr += f" (grown to >= {p['low_threshold']})"
        lines = [
            f"{who}{len(self)} candidate(s) ({len(self.by_polarity('blastic'))} blastic, {len(self.by_polarity('lytic'))} lytic); {thr}, >= {p.get('min_volume_mm3')} mm³"
        ]
        for c in self.candidates[:20]:
            dhu = f", mean change {c.mean_change_hu:+.0f} HU" if c.mean_change_hu is not None else ""
            lines.append(
                f"  #{c.candidate_id} {c.polarity:7s} at ({c.center_mm[0]:.1f}, {c.center_mm[1]:.1f}, {c.center_mm[2]:.1f}) mm, "
                f"{c.volume_mm3:.0f} mm³, peak |{p.get('score', 'score')}| {c.peak_abs_score:.1f}{dhu}"
            )
        if len(self) > 20:
            lines.append(f"  ... and {len(self) - 20} more")
        return "\n".join(lines)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """One row per candidate with the :data:`CANDIDATE_COLUMNS`."""
        import pandas as pd

        return pd.DataFrame([c.to_row() for c in self.candidates], columns=list(CANDIDATE_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "parameters": self.parameters,
            "coordinates": "DICOM/ITK LPS patient coordinates of the current exam, mm",
            "candidates": [_jsonable(asdict(c)) for c in self.candidates],
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    def write_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(CANDIDATE_COLUMNS))
            w.writeheader()
            for c in self.candidates:
                w.writerow({k: ("" if v is None else (round(v, 4) if isinstance(v, float) else v)) for k, v in c.to_row().items()})
        return path

    @classmethod
    def read_json(cls, path: str | Path) -> "CandidateSet":
        """Read a ``candidates.json`` written by :meth:`write_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cands = tuple(
                Candidate(
                    candidate_id=int(c["candidate_id"]),
                    polarity=c["polarity"],
                    center_mm=tuple(c["center_mm"]),
                    peak_mm=tuple(c["peak_mm"]),
                    volume_mm3=float(c["volume_mm3"]),
                    n_voxels=int(c["n_voxels"]),
                    peak_abs_score=float(c["peak_abs_score"]),
                    mean_score=float(c["mean_score"]),
                    mean_change_hu=None if c.get("mean_change_hu") is None else float(c["mean_change_hu"]),
                )
                for c in data["candidates"]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DetectorInputError(f"{path}: not a candidates file written by the detector ({exc}).") from None
        return cls(cands, data.get("parameters", {}), data.get("case_id"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _roi_mask(roi: Any, score: Volume) -> np.ndarray:
    """The ROI as a boolean array on ``score``'s grid (a LabelVolume/Volume, an array, or None = everywhere)."""
    if isinstance(roi, Volume):
        if not roi.same_space(score):
            raise DetectorInputError("The ROI is not on the score map's grid; resample it first.")
        return roi.array != 0
    if roi is not None:
        inside = np.asarray(roi, dtype=bool)
        if inside.shape != score.shape:
            raise DetectorInputError(f"The ROI array has shape {inside.shape}, the score map {score.shape}.")
        return inside
    return np.ones(score.shape, dtype=bool)


def find_candidates(
    score: Volume,
    *,
    roi: LabelVolume | np.ndarray | None = None,
    threshold: float = 4.0,
    low_threshold: float | None = 3.0,
    min_volume_mm3: float = 20.0,
    change_hu: Volume | None = None,
    score_name: str = "z",
    case_id: str | None = None,
    split_mm: float | None = None,
    split_dip: float = 0.75,
) -> CandidateSet:
    """Connected regions of ``score`` beyond ``±threshold`` as lesion candidates.

    Parameters
    ----------
    score : the score map on the current exam's grid (a z-map, or a subtraction in HU).
    roi : only voxels inside it count (e.g. the bone ROI); None: everywhere.
    threshold : a region must reach ``|score| >= threshold`` (its seed).
    low_threshold : hysteresis: the region grows over connected voxels with ``|score| >=
        low_threshold``; None (or equal to ``threshold``) means no hysteresis.
    min_volume_mm3 : smaller regions are dropped, mm³.
    change_hu : HU change map (current − prior) for each candidate's mean change.
    score_name : how the score is called in summaries and parameters (``"z"``, ``"HU"``).
    case_id : written into the result.
    split_mm : split a region holding several peaks of one polarity (two nearby lesions) into one
        candidate per peak: peaks are local maxima of ``|score|`` over a ball of this radius (mm)
        reaching the threshold; the region is divided among them by a watershed of ``|score|``,
        and two neighbouring parts are merged back when the lowest point between them (the
        saddle: the highest score on their common border) is at least ``split_dip`` times the
        lower of their two peaks (one lesion with a noisy top, not two lesions). None: no split.
    split_dip : see ``split_mm``.

    Returns
    -------
    CandidateSet
        Candidates ordered by decreasing peak ``|score|``, numbered from 1.

    Raises
    ------
    DetectorInputError
        For a low threshold above the threshold, a non-positive threshold, or maps not on one grid.
    """
    if not threshold > 0:
        raise DetectorInputError(f"threshold must be positive (it applies to |score|), got {threshold}.")
    low = threshold if low_threshold is None else float(low_threshold)
    if low > threshold or low <= 0:
        raise DetectorInputError(f"low_threshold must be in (0, threshold] = (0, {threshold}], got {low_threshold}.")
    arr = np.asarray(score.array, dtype=np.float32)
    inside = _roi_mask(roi, score)
    if change_hu is not None and not change_hu.same_space(score):
        raise DetectorInputError("change_hu is not on the score map's grid.")
    voxel_mm3 = score.voxel_volume_mm3
    min_vox = max(1, int(math.ceil(min_volume_mm3 / voxel_mm3 - 1e-9)))
    # Work on the ROI's bounding box only, and with O(n) label statistics (bincount), so that a
    # 512 x 512 x 300 exam takes seconds rather than the minute of scipy's sorted per-label reductions.
    box = mask_bounding_box(inside)
    if box is None:
        box = (slice(0, 0), slice(0, 0), slice(0, 0))
    offset = np.asarray([b.start for b in box])
    sub = arr[box]
    ins = inside[box]
    change_sub = change_hu.array[box] if change_hu is not None else None

    def regions_of(polarity: Polarity, sign: float) -> list[dict[str, Any]]:
        """The candidates of one polarity (labelling releases the GIL: the two run in two threads)."""
        found: list[dict[str, Any]] = []
        signed = sub * np.float32(sign)
        region = (signed >= low) & ins
        if not region.any():
            return found
        labels, n = ndi.label(region, structure=_STRUCTURE_26)
        if n == 0:
            return found
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        seeded = np.zeros(n + 1, dtype=bool)
        seeded[np.unique(labels[(signed >= threshold) & region])] = True
        seeded[0] = False
        keep = np.nonzero(seeded & (sizes >= min_vox))[0]
        if keep.size == 0:
            return found
        objects = ndi.find_objects(labels)
        parts: list[tuple[tuple[slice, slice, slice], np.ndarray]] = []
        for lab in keep:
            sl = objects[int(lab) - 1]
            m = labels[sl] == lab
            if split_mm:
                pieces = _split_region(signed[sl], m, threshold, split_mm, split_dip, score.spacing_mm)
                parts.extend((sl, piece) for piece in pieces if piece.sum() >= min_vox)
            else:
                parts.append((sl, m))
        for sl, m in parts:
            vals = signed[sl][m]
            coords = np.argwhere(m) + offset + np.asarray([q.start for q in sl])  # (n, 3) z, y, x
            centroid_zyx = coords.mean(axis=0)
            peak_zyx = coords[int(np.argmax(vals))]
            mean_change = float(change_sub[sl][m].mean()) if change_sub is not None else None
            found.append(
                {
                    "polarity": polarity,
                    "center_mm": tuple(float(v) for v in score.index_to_point_mm(centroid_zyx[::-1])),
                    "peak_mm": tuple(float(v) for v in score.index_to_point_mm(peak_zyx[::-1])),
                    "volume_mm3": float(m.sum() * voxel_mm3),
                    "n_voxels": int(m.sum()),
                    "peak_abs_score": float(vals.max()),
                    "mean_score": float(sign * vals.mean()),
                    "mean_change_hu": mean_change,
                }
            )
        return found

    with ThreadPoolExecutor(max_workers=1) as pool:
        lytic = pool.submit(regions_of, "lytic", -1.0)
        found = regions_of("blastic", 1.0) + lytic.result()
    found.sort(key=lambda c: -c["peak_abs_score"])
    candidates = tuple(Candidate(candidate_id=i + 1, **c) for i, c in enumerate(found))
    params = {
        "score": score_name,
        "threshold": float(threshold),
        "low_threshold": None if low_threshold is None else float(low),
        "min_volume_mm3": float(min_volume_mm3),
        "connectivity": 26,
        "split_mm": None if not split_mm else float(split_mm),
        "split_dip": float(split_dip) if split_mm else None,
    }
    return CandidateSet(candidates, params, case_id)


def _split_region(
    signed: np.ndarray, region: np.ndarray, threshold: float, radius_mm: float, dip: float, spacing_mm: tuple[float, ...]
) -> list[np.ndarray]:
    """Divide one candidate region among its peaks (watershed), merging parts without a real dip.

    ``signed`` is the polarity-signed score on the region's bounding box, ``region`` its mask.
    Returns the masks of the parts (the region itself when it has one peak).
    """
    from skimage.segmentation import watershed

    vals = np.where(region, signed, -np.inf).astype(np.float32)
    r = [max(1, int(round(radius_mm / float(sp)))) for sp in reversed(spacing_mm)]
    zz, yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    ball = (zz / max(r[0], 1e-3)) ** 2 + (yy / max(r[1], 1e-3)) ** 2 + (xx / max(r[2], 1e-3)) ** 2 <= 1.0
    local_max = (vals == ndi.maximum_filter(vals, footprint=ball, mode="constant", cval=-np.inf)) & region & (signed >= threshold)
    peaks, n = ndi.label(local_max, structure=_STRUCTURE_26)  # plateaus count once
    if n <= 1:
        return [region]
    basins = watershed(-np.where(region, signed, 0.0), markers=peaks, mask=region, connectivity=3)
    peak_val = np.asarray(ndi.maximum(np.where(region, signed, -np.inf), basins, index=np.arange(1, n + 1)), dtype=float)
    # saddle between two touching basins: the highest score on their common border
    parent = list(range(n + 1))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    saddles: dict[tuple[int, int], float] = {}
    for axis in range(3):
        a = np.moveaxis(basins, axis, 0)
        v = np.moveaxis(np.where(region, signed, -np.inf), axis, 0)
        l0, l1 = a[:-1], a[1:]
        touch = (l0 != l1) & (l0 > 0) & (l1 > 0)
        if not touch.any():
            continue
        s = np.minimum(v[:-1], v[1:])[touch]
        for p, q, sv in zip(l0[touch], l1[touch], s):
            key = (int(min(p, q)), int(max(p, q)))
            if sv > saddles.get(key, -np.inf):
                saddles[key] = float(sv)
    for (p, q), sv in sorted(saddles.items(), key=lambda kv: -kv[1]):
        rp, rq = find(p), find(q)
        if rp == rq:
            continue
        if sv >= dip * min(peak_val[p - 1], peak_val[q - 1]):
            parent[rq] = rp
    roots = np.asarray([find(i) for i in range(n + 1)])
    merged = roots[basins]
    return [merged == k for k in np.unique(merged[region])]


def matched_filter_score(
    score: Volume,
    roi: LabelVolume | np.ndarray | None = None,
    *,
    sigma_mm: float = 1.5,
    renormalise: bool = True,
) -> Volume:
    """Gaussian matched filter of a score map over the ROI, in robust "sigmas".

    ``s = sum w z / sqrt(sum w^2)`` with ``w`` a Gaussian of ``sigma_mm`` restricted to the ROI
    (normalised convolution: for independent unit-variance ``z`` the result is again unit
    variance, at the edge of the ROI as well as inside it), then divided by its robust spread
    over the ROI (1.4826 x median absolute deviation) so that spatially correlated maps are
    put back on the same scale. Lesions of several moderately surprising voxels become strong
    findings; isolated noisy voxels do not.

    Parameters
    ----------
    score : a score map (z-map, or a subtraction scaled to "sigmas") on the current exam's grid.
    roi : where the map is defined (bone ROI); None: everywhere. Outside it the result is 0.
    sigma_mm : standard deviation of the Gaussian, mm (1.5 mm: one voxel of the network's
        working grid; chosen on a tuning set with other seeds, see docs/detector-zscore.md).
    renormalise : divide by the robust spread over the ROI (default). False: the plain
        ``sum w z / sqrt(sum w^2)``, unit variance only when ``z`` is white.

    Returns
    -------
    Volume
        The filtered score (float32, 0 outside the ROI), with metadata ``kind``, ``sigma_mm`` and
        ``robust_sd`` (the spread it was divided by; 1 when not renormalised).

    Raises
    ------
    DetectorInputError
        A non-positive ``sigma_mm`` or an ROI of another shape or grid.
    """
    if not (sigma_mm > 0 and math.isfinite(sigma_mm)):
        raise DetectorInputError(f"sigma_mm must be a positive number of millimetres, got {sigma_mm}.")
    arr = np.asarray(score.array, dtype=np.float32)
    inside = _roi_mask(roi, score)
    out = np.zeros(arr.shape, dtype=np.float32)
    robust_sd = 1.0
    box = mask_bounding_box(inside, margin_vox=(1, 1, 1))
    if box is not None:
        # Gaussian widths in voxels along (z, y, x); a 4-sigma margin keeps the crop exact.
        sig_vox = [sigma_mm / float(s) for s in reversed(score.spacing_mm)]
        pad = [int(math.ceil(4 * s)) + 1 for s in sig_vox]
        box = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, arr.shape))
        m = inside[box]
        z = np.where(m, arr[box], 0.0).astype(np.float32)
        # sum of squared weights: a squared Gaussian of width s is a Gaussian of width s / sqrt(2)
        # times 1 / (2 sqrt(pi) s) per axis (s in voxels). The two filters run in two threads
        # (scipy.ndimage releases the GIL): half the wall time on a 2-core machine.
        with ThreadPoolExecutor(max_workers=1) as pool:
            w2_done = pool.submit(ndi.gaussian_filter, m.astype(np.float32), [s / math.sqrt(2.0) for s in sig_vox], mode="constant", truncate=4.0)
            num = ndi.gaussian_filter(z, sig_vox, mode="constant", truncate=4.0)
            w2 = w2_done.result()
        w2 *= float(np.prod([1.0 / (2.0 * math.sqrt(math.pi) * s) for s in sig_vox]))
        filt = np.where(m, num / np.sqrt(np.maximum(w2, 1e-12)), 0.0).astype(np.float32)
        if renormalise and m.any():
            vals = filt[m]
            spread = float(1.4826 * np.median(np.abs(vals - np.median(vals))))
            if spread > 1e-6:
                robust_sd = spread
                filt /= np.float32(spread)
        out[box] = filt
    return score.like(out).with_array(out, kind="matched-filter score", sigma_mm=float(sigma_mm), robust_sd=float(robust_sd))
