"""The z-score stage of a case: z-map, sigma, candidates and the colour overlay series, written.

:func:`zscore_stage` runs after registration and subtraction (inside :func:`detector.run_pair`
when ``zscore=True``) and adds to the case folder:

``zmap.nii.gz``        z = (current - estimate) / sigma in the bone ROI, float32 (0 outside)
``sigma.nii.gz``       the estimated error sigma, HU, float32 (0 outside the ROI)
``candidates.json``    lesion candidates with their parameters (LPS mm of the current exam)
``candidates.csv``     the same, one row per candidate
``candidate_labels.nii.gz`` the candidates' voxels (int32, label = candidate_id), for the DICOM
                       Segmentation of ``tsct detect export-dicom`` (docs/dicom-objects.md)
``dicom/zscore_overlay/`` colour Secondary Capture series of the fused overlay (DICOM input only)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from cases import LabelVolume, Volume, write_nifti_gz

from ._geometry import mask_bounding_box
from .candidates import CandidateSet, find_candidates, matched_filter_score
from .outputs import ROLES
from .overlay import OverlayStyle, write_overlay_dicom
from .zscore import ZMap, compute_zmap, near_missing_prior

#: Default candidate thresholds on the matched-filter score (robust sigmas), per z method: the
#: operating point. Each method's score has its own scale, so each has its own threshold,
#: calibrated on the tuning sets of docs/detector-zscore.md ("Real CT, the operating point ..."):
#: the smallest threshold (steps of 0.5) with at most 2.5 false positives per case on every
#: tuning set where the method runs. Re-chosen on 6 Dec 2026 with the chain of that day and the
#: analytic model's resolution matching: the network on the phantom tuning pairs (seed 3000:
#: 2.4 at 5.0; it ran on none of the real-CT pairs, all out of its domain), the analytic model
#: on the real-CT (seed 100: 3.44 at 7.0, 2.22 at 7.5) and phantom tuning pairs (1.3 at 6.0).
#: Held-out sets were not used.
OPERATING_THRESHOLDS: dict[str, float] = {"network": 5.0, "analytic": 7.5}
#: The stricter of the two (used where one number is needed, e.g. before the method is known).
OPERATING_THRESHOLD = max(OPERATING_THRESHOLDS.values())


def operating_threshold_of(method: str, parameters: dict[str, Any]) -> float:
    """The default candidate threshold of a z-map: its bundle's own (``parameters["operating_threshold"]``,
    from the bundle's metadata, for networks whose operating point was chosen on the tuning sets
    with the rule above), else :data:`OPERATING_THRESHOLDS` of the method."""
    own = parameters.get("operating_threshold")
    return float(own) if own is not None else float(OPERATING_THRESHOLDS.get(method, OPERATING_THRESHOLD))


#: Hysteresis: a candidate grows over connected voxels down to this score.
OPERATING_LOW_THRESHOLD = 3.0

__all__ = [
    "OPERATING_THRESHOLD",
    "OPERATING_LOW_THRESHOLD",
    "operating_threshold_of",
    "overlay_map",
    "ZScoreSettings",
    "ZScoreOutputs",
    "zscore_stage",
    "write_zscore_files",
    "zscore_file_jobs",
    "ZSCORE_OUTPUT_FILES",
]

#: Output file names of the z-score stage inside a case folder (from :data:`detector.outputs.ROLES`).
ZSCORE_OUTPUT_FILES: dict[str, str] = {
    role: ROLES[role][0]
    for role in ("zmap", "sigma", "candidates_json", "candidates_csv", "dicom_zscore_overlay", "candidate_labels", "candidate_score")
}


@dataclass(frozen=True)
class ZScoreSettings:
    """Options of the z-score stage.

    Parameters
    ----------
    model : ``"default"`` (shipped weights), a weights path, a loaded model, or ``"analytic"``.
    force_model : use the network even outside its training domain.
    device : torch device (``"cpu"``, ``"cuda"``, ``"auto"``).
    recalibrate : per-pair widening of the network's sigma (see :func:`compute_zmap`).
    threshold, low_threshold, min_volume_mm3 : candidate rule (:func:`find_candidates`), applied
        to the matched-filter score when ``matched_filter_mm`` is set, else to z itself.
        ``threshold=None`` (default): the calibrated operating point of the z method that ran,
        :data:`OPERATING_THRESHOLDS` (network 5.0, analytic 7.5), or the network bundle's own
        ``operating_threshold`` when its metadata records one (:func:`operating_threshold_of`).
    matched_filter_mm : candidates are found and rated on the matched-filter score of the z-map
        (:func:`detector.candidates.matched_filter_score`, Gaussian of this sigma in mm, in robust
        sigmas), the rule ``tsct detect evaluate`` scores; None: on the voxel-wise z. The colour
        overlay shows the same score the candidates are found on, from the same threshold, so
        every candidate is coloured (``candidate_score.nii.gz``).
    split_mm : nearby peaks of one polarity become separate candidates (see
        :func:`detector.candidates.find_candidates`); None: connected regions are not split.
    style : overlay look for the DICOM series (its threshold is replaced by ``threshold`` and its
        ``z_max`` by 2.5 x ``threshold`` when the overlay shows the matched-filter score).
    """

    model: Any = "default"
    force_model: bool = False
    device: str = "cpu"
    recalibrate: bool = True
    threshold: float | None = None
    low_threshold: float | None = OPERATING_LOW_THRESHOLD
    min_volume_mm3: float = 20.0
    matched_filter_mm: float | None = 1.5
    split_mm: float | None = 3.0
    style: OverlayStyle = field(default_factory=OverlayStyle)


@dataclass(frozen=True, eq=False)
class ZScoreOutputs:
    """What the z-score stage made: the map, the candidates and the files written."""

    zmap: ZMap
    candidates: CandidateSet
    outputs: dict[str, Path] = field(default_factory=dict)
    #: the candidates' voxels (int32, label = candidate_id), for the DICOM Segmentation
    candidate_labels: np.ndarray | None = field(default=None, repr=False)
    score: Volume | None = None
    """The map the candidates were found on (matched-filter score), shown by the overlay."""

    def summary(self) -> str:
        return self.zmap.summary() + "\n" + self.candidates.summary()

    def qc_entry(self) -> dict[str, Any]:
        """JSON-ready figures for ``qc.json`` (method, model version, calibration, counts)."""
        zm = self.zmap
        roi = zm.bone_roi.array != 0
        sig = zm.sigma_hu.array[roi]
        return {
            "method": zm.method,
            "model_version": zm.model_version,
            "in_domain": None if zm.domain is None else zm.domain.in_domain,
            "domain_reasons": [] if zm.domain is None else list(zm.domain.reasons),
            "notes": list(zm.notes),
            "sigma_median_hu": float(np.median(sig)) if sig.size else None,
            "recalibration_factor": zm.parameters.get("recalibration_factor"),
            "frac_abs_z_gt3": zm.fraction_above(3.0),
            "n_candidates": len(self.candidates),
            "n_blastic": len(self.candidates.by_polarity("blastic")),
            "n_lytic": len(self.candidates.by_polarity("lytic")),
            "candidate_rule": self.candidates.parameters,
        }


def write_zscore_files(
    result: ZScoreOutputs,
    current: Volume,
    out_dir: str | Path,
    *,
    style: OverlayStyle | None = None,
    dicom_template: dict[str, Any] | None = None,
    series_number: int = 9099,
    nifti: bool = True,
) -> dict[str, Path]:
    """Write a z-score stage's files into a case folder (names in :data:`ZSCORE_OUTPUT_FILES`).

    ``nifti``: the z-map, sigma and candidate files. The colour overlay series is written only
    with ``dicom_template`` (the current exam's DICOM header), so that it joins the current
    exam's study.
    """
    out = Path(out_dir)
    zm = result.zmap
    outputs: dict[str, Path] = {}
    if nifti:
        for job in zscore_file_jobs(result, current, out):
            outputs.update(job())
    if dicom_template is not None:
        how = f"network v{zm.model_version}" if zm.method == "network" else "analytic error model"
        folder = out / ZSCORE_OUTPUT_FILES["dicom_zscore_overlay"]
        shown, style = overlay_map(result, style)
        write_overlay_dicom(
            current,
            shown,
            folder,
            template=dicom_template,
            style=style,
            series_number=series_number,
            series_description=f"TSCT z-score overlay ({'network' if zm.method == 'network' else 'analytic'})",
            derivation_description=f"TSCT z-score map ({how}) on the current CT; z = (current - estimate) / sigma from the registered prior. Research use only; not for diagnosis.",
        )
        outputs["dicom_zscore_overlay"] = folder
    return outputs


def zscore_file_jobs(result: ZScoreOutputs, current: Volume, out_dir: str | Path) -> list[Callable[[], dict[str, Path]]]:
    """The writers of a z-score stage's NIfTI and candidate files, one callable per image.

    Each returns ``{role: path}``; run in order, they are :func:`write_zscore_files` without the
    DICOM overlay. The pipeline runs them on its writer's two threads (each image is compressed
    on its own, and zlib releases the GIL).
    """
    out = Path(out_dir)
    zm, cands = result.zmap, result.candidates

    def candidates_files() -> dict[str, Path]:
        files = {
            "candidates_json": cands.write_json(out / ZSCORE_OUTPUT_FILES["candidates_json"]),
            "candidates_csv": cands.write_csv(out / ZSCORE_OUTPUT_FILES["candidates_csv"]),
        }
        if result.candidate_labels is not None:
            path = out / ZSCORE_OUTPUT_FILES["candidate_labels"]
            _write_labels(current.like(result.candidate_labels.astype(np.int32)), path)
            files["candidate_labels"] = path
        return files

    jobs: list[Callable[[], dict[str, Path]]] = [
        lambda: {"zmap": _write_float(zm.z, out / ZSCORE_OUTPUT_FILES["zmap"])},
        lambda: {"sigma": _write_float(zm.sigma_hu, out / ZSCORE_OUTPUT_FILES["sigma"])},
        candidates_files,
    ]
    if result.score is not None:
        score = result.score
        jobs.append(lambda: {"candidate_score": _write_float(score, out / ZSCORE_OUTPUT_FILES["candidate_score"])})
    return jobs


def _write_labels(volume: Volume, path: Path) -> Path:
    """The candidate label map (int32 NIfTI), read by ``tsct detect export-dicom`` for the Segmentation."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array, dtype=np.int32))
    image.SetSpacing(volume.spacing_mm)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(volume.direction)
    return write_nifti_gz(image, path, zlib_level=-1)


def overlay_map(result: ZScoreOutputs, style: OverlayStyle | None = None) -> tuple[Volume, OverlayStyle]:
    """The map the colour overlay shows and the style to show it with.

    When the candidates were found on a score other than z (the matched filter, the default),
    the overlay shows that score from the candidates' own threshold, so that every candidate at
    the operating point is coloured, lytic (decrease colour) as well as blastic; otherwise z with
    ``style`` unchanged.
    """
    style = style or OverlayStyle()
    if result.score is None:
        return result.zmap.z, style
    t = float(result.candidates.parameters.get("threshold", style.threshold))
    return result.score, replace(style, threshold=t, z_max=2.5 * t)


def _write_float(volume: Volume, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array, dtype=np.float32))
    image.SetSpacing(volume.spacing_mm)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(volume.direction)
    return write_nifti_gz(image, path)


def zscore_stage(
    current: Volume,
    warped_prior: Volume,
    bone_roi: LabelVolume,
    out_dir: str | Path | None = None,
    *,
    settings: ZScoreSettings | None = None,
    prior_spacing_mm: Sequence[float] | None = None,
    dicom_template: dict[str, Any] | None = None,
    series_number: int = 9099,
    case_id: str | None = None,
) -> ZScoreOutputs:
    """z-map, candidates and (with ``out_dir``) their files for one registered pair.

    Parameters
    ----------
    current, warped_prior, bone_roi : the registered pair on the current grid.
    out_dir : the case folder; None: nothing written.
    settings : model, candidate rule and overlay style.
    prior_spacing_mm : the prior exam's own spacing, for the network.
    dicom_template : header of the current exam (``Exam.header``); when given, the overlay is
        also written as a colour DICOM series in the current exam's study.
    series_number : DICOM series number of the overlay series.
    case_id : written into the candidates.
    """
    settings = settings or ZScoreSettings()
    zm = compute_zmap(
        current,
        warped_prior,
        bone_roi,
        model=settings.model,
        prior_spacing_mm=prior_spacing_mm,
        force=settings.force_model,
        device=settings.device,
        recalibrate=settings.recalibrate,
    )
    roi = bone_roi.array != 0
    # current - prior in the ROI (0 outside), computed on the ROI's bounding box only: no full-volume temporaries
    change_hu = np.zeros(current.shape, dtype=np.float32)
    box = mask_bounding_box(roi)
    if box is not None:
        np.subtract(current.array[box], warped_prior.array[box], out=change_hu[box], where=roi[box], dtype=np.float32)
    change = current.like(change_hu)
    # where the prior had no data nearby the z-map holds no value (compute_zmap): not part of the map
    near = zm.near_missing_prior
    if near is None:
        margin = float(zm.parameters.get("prior_fov_margin_mm", 0.0))
        near = near_missing_prior(current.array, warped_prior.array, roi, current.spacing_mm, margin)
    cand_roi = roi & ~near
    score, score_name = zm.z, "z"
    threshold = settings.threshold if settings.threshold is not None else operating_threshold_of(zm.method, zm.parameters)
    low = None if settings.low_threshold is None else min(float(settings.low_threshold), float(threshold))
    if settings.matched_filter_mm:
        score = matched_filter_score(zm.candidate_z, cand_roi, sigma_mm=settings.matched_filter_mm)
        score_name = f"z, matched filter {settings.matched_filter_mm:g} mm"
    cands = find_candidates(
        score,
        roi=cand_roi,
        threshold=threshold,
        low_threshold=low,
        min_volume_mm3=settings.min_volume_mm3,
        change_hu=change,
        score_name=score_name,
        case_id=case_id,
        split_mm=settings.split_mm,
    )
    extra: dict[str, Any] = {"z_method": zm.method, "model_version": zm.model_version, "matched_filter_mm": settings.matched_filter_mm}
    if settings.matched_filter_mm:
        extra["matched_filter_robust_sd"] = score.metadata.get("robust_sd")
    cands = CandidateSet(cands.candidates, {**cands.parameters, **extra}, case_id)
    from .dicom_objects import candidate_label_array

    labels, _ = candidate_label_array(score, cand_roi, cands, rescore=False)  # the very score and ROI: exact regions
    result = ZScoreOutputs(zmap=zm, candidates=cands, candidate_labels=labels, score=score if settings.matched_filter_mm else None)
    if out_dir is None:
        return result
    outputs = write_zscore_files(result, current, out_dir, style=settings.style, dicom_template=dicom_template, series_number=series_number)
    return ZScoreOutputs(zmap=zm, candidates=cands, outputs=outputs, candidate_labels=labels, score=result.score)
