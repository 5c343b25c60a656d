"""Registration quality control: figures a user can trust, and a clear verdict.

After registration the pipeline measures how well the warped prior matches the current exam
*in bone* (where the subtraction is read) and how plausible the deformation is, and turns the
figures into a status:

* ``"ok"``: nothing suspicious;
* ``"warning"``: usable but check (partial overlap of the exams, some folding, prior dated
  after current);
* ``"failed"``: do not read this subtraction: the exams look like different patients or body
  regions, or the registration did not converge (high residual, low bone overlap).

Every figure and threshold is written to ``qc.json`` next to the outputs; the keys are listed in
:data:`QC_JSON_KEYS` and documented in docs/detector.md. The thresholds were set on synthetic
pairs (same patient after registration vs an unrelated patient), see docs/detector.md.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk

from cases import LabelVolume, Volume

from ._geometry import Grid

__all__ = ["QCThresholds", "QCReport", "assess_registration", "QC_JSON_KEYS", "QC_SCHEMA_VERSION"]

QC_SCHEMA_VERSION = "1.0"

#: HU above which a voxel counts as bone for the bone-overlap (Dice) figure.
DICE_THRESHOLD_HU = 200.0

#: qc.json top-level keys and their meaning (mirrored in docs/detector.md).
QC_JSON_KEYS: dict[str, str] = {
    "schema_version": "version of this JSON layout",
    "status": "'ok', 'warning' or 'failed'",
    "messages": "human-readable reasons for a warning or failure (empty when ok)",
    "metrics": "the figures below, one number each",
    "thresholds": "the limits the metrics were checked against",
    "registration": "rigid parameters, per-stage iterations, final metric, stop condition, time, config",
    "inputs": "prior/current source, grid size and spacing, PatientID/StudyDate where known",
    "case_id": "the case identifier (batch mode) or null",
    "zscore": "z-score stage: method (network/analytic), model version, in_domain and why not, notes, sigma_median_hu, frac_abs_z_gt3, candidate counts and rule; null when it did not run",
}

#: Metric keys inside ``metrics`` and their meaning.
QC_METRIC_KEYS: dict[str, str] = {
    "bone_mean_abs_diff_hu": "mean |current - warped prior| over the bone ROI, HU (residual misregistration + noise + real change)",
    "bone_median_abs_diff_hu": "median of the same, HU (robust to lesions)",
    "bone_ncc": "Pearson correlation of current and warped prior over the bone ROI (1 = identical)",
    "bone_dice": f"Dice overlap of voxels >= {DICE_THRESHOLD_HU:.0f} HU in current and warped prior within the ROI",
    "fov_overlap_fraction": "fraction of the bone ROI where the warped prior is defined (inside the prior's field of view)",
    "jacobian_min": "smallest Jacobian determinant of the deformation in the bone ROI (<= 0: folding)",
    "jacobian_p01": "1st percentile of the Jacobian determinant in the bone ROI",
    "jacobian_p99": "99th percentile of the Jacobian determinant in the bone ROI",
    "jacobian_max": "largest Jacobian determinant in the bone ROI",
    "folding_fraction": "fraction of bone-ROI voxels of the deformation grid with Jacobian determinant <= 0",
    "rigid_rotation_deg": "magnitude of the rigid rotation, degrees",
    "rigid_translation_mm": "length of the rigid translation, mm",
    "bone_roi_volume_ml": "volume of the bone ROI, ml",
    "bone_roi_pool_ml": "volume of the bone ROI inside contrast-filled blood pools / enhancing organs of the current exam, ml",
}


@dataclass(frozen=True)
class QCThresholds:
    """Limits for the QC verdict, set on synthetic pairs (see docs/detector.md).

    A registration **fails** when any hard limit is crossed, or when two or more of the
    "suspicious" signs appear together (each alone gives a warning). Set on 8 same-patient and
    8 different-patient small synthetic pairs registered with the default B-spline: same patient
    gave mean |Δ| 22-49 HU, median |Δ| 18-34 HU, NCC >= 0.963, Dice >= 0.87, Jacobian 1st-99th
    percentile within 0.944-1.044 and no folding; different patients gave median |Δ| >= 41 HU and
    NCC <= 0.944, with Jacobian percentiles beyond 0.94-1.11 (6 of 8 far beyond the hard limits).
    A real local change (a vertebral compression fracture) can be one suspicious sign on its own.

    Parameters
    ----------
    max_bone_mean_abs_diff_hu : hard limit on the mean |current - warped prior| in bone, HU.
    min_bone_ncc : hard limit on the correlation in bone.
    min_bone_dice : hard limit on the overlap of voxels >= 200 HU.
    max_folding_fraction : hard limit on the fraction of bone with Jacobian determinant <= 0.
    jacobian_range : hard limits on the 1st and 99th percentiles of the Jacobian in bone.
    min_fov_overlap_fraction : hard limit on the fraction of the bone ROI the prior covers.
    warn_bone_ncc : suspicious below this correlation.
    warn_bone_median_abs_diff_hu : suspicious above this median |Δ| in bone, HU.
    warn_jacobian_range : suspicious when the Jacobian percentiles leave this range (a
        repositioned patient keeps bone volume; a wrong patient needs local growth/shrinkage).
    warn_folding_fraction : suspicious above this fraction of folding.
    warn_fov_overlap_fraction : warning (only) below this overlap.
    warn_bone_roi_pool_ml : warning when more of the bone ROI than this (mL) looks like
        contrast-filled blood or an enhancing organ in the current exam
        (:func:`cases.blood_pool.blood_pool_mask`; the pipeline keeps such voxels when the prior
        shows no pool there).
    warn_bone_roi_min_ml : warning when the bone ROI is smaller than this (mL).
    """

    max_bone_mean_abs_diff_hu: float = 100.0
    min_bone_ncc: float = 0.80
    min_bone_dice: float = 0.75
    max_folding_fraction: float = 0.01
    jacobian_range: tuple[float, float] = (0.7, 1.4)
    min_fov_overlap_fraction: float = 0.5
    warn_bone_ncc: float = 0.95
    warn_bone_median_abs_diff_hu: float = 38.0
    warn_jacobian_range: tuple[float, float] = (0.9, 1.1)
    warn_folding_fraction: float = 0.001
    warn_fov_overlap_fraction: float = 0.9
    warn_bone_roi_pool_ml: float = 30.0
    warn_bone_roi_min_ml: float = 20.0


@dataclass(frozen=True)
class QCReport:
    """The QC verdict and the figures behind it (what ``qc.json`` holds)."""

    status: str
    messages: tuple[str, ...]
    metrics: dict[str, float]
    thresholds: QCThresholds
    registration: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    case_id: str | None = None
    zscore: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dictionary (keys in :data:`QC_JSON_KEYS`)."""
        return {
            "schema_version": QC_SCHEMA_VERSION,
            "case_id": self.case_id,
            "status": self.status,
            "messages": list(self.messages),
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "thresholds": asdict(self.thresholds),
            "registration": _jsonable(self.registration),
            "inputs": _jsonable(self.inputs),
            "zscore": _jsonable(self.zscore) if self.zscore else None,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write ``qc.json`` (atomically: a temporary file renamed, so a half-written file never
        marks a case as finished)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    def summary(self) -> str:
        """Status, messages and the key figures, a few lines."""
        m = self.metrics
        head = f"QC {self.status.upper()}"
        figures = (
            f"bone mean |Δ| {m.get('bone_mean_abs_diff_hu', float('nan')):.1f} HU, "
            f"NCC {m.get('bone_ncc', float('nan')):.3f}, Dice {m.get('bone_dice', float('nan')):.3f}, "
            f"overlap {m.get('fov_overlap_fraction', float('nan')):.0%}, "
            f"folding {m.get('folding_fraction', float('nan')):.2%}"
        )
        return "\n".join([head + ": " + figures, *("  - " + msg for msg in self.messages)])


def _json_number(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, float, np.integer)):
        return _json_number(obj)
    return obj


def _jacobian_in_roi(jacobian: Volume | None, bone_roi: LabelVolume) -> dict[str, float]:
    nan = float("nan")
    if jacobian is None:
        return {"jacobian_min": 1.0, "jacobian_p01": 1.0, "jacobian_p99": 1.0, "jacobian_max": 1.0, "folding_fraction": 0.0}
    grid = Grid.of(jacobian)
    roi_img = bone_roi.to_sitk()
    # the resampled image is kept in a name while its view is read: a view of a temporary reads
    # freed memory (other threads reuse it at once, which put folding from outside the ROI in these figures)
    small = grid.resampler(sitk.sitkNearestNeighbor, 0).Execute(roi_img)
    roi_small = sitk.GetArrayViewFromImage(small) > 0
    values = jacobian.array[roi_small]
    if values.size == 0:
        return {"jacobian_min": nan, "jacobian_p01": nan, "jacobian_p99": nan, "jacobian_max": nan, "folding_fraction": nan}
    return {
        "jacobian_min": float(values.min()),
        "jacobian_p01": float(np.percentile(values, 1)),
        "jacobian_p99": float(np.percentile(values, 99)),
        "jacobian_max": float(values.max()),
        "folding_fraction": float(np.mean(values <= 0)),
    }


def assess_registration(
    current: Volume,
    warped_prior: Volume,
    bone_roi: LabelVolume,
    *,
    outside_fov: np.ndarray | None = None,
    jacobian: Volume | None = None,
    rigid_parameters: Mapping[str, Any] | None = None,
    header_problems: tuple[str, ...] = (),
    header_warnings: tuple[str, ...] = (),
    registration: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    thresholds: QCThresholds | None = None,
    case_id: str | None = None,
    blood_pool: np.ndarray | None = None,
) -> QCReport:
    """Measure registration quality in bone and decide ok / warning / failed.

    Parameters
    ----------
    current, warped_prior : the current exam and the prior warped onto its grid, HU.
    bone_roi : where the subtraction is read (1 = inside).
    outside_fov : boolean array on the current grid, True where the warped prior fell outside the
        prior's field of view (None: assume it is defined everywhere).
    jacobian : Jacobian determinant of the deformation on its grid (None: rigid only).
    rigid_parameters : ``RegistrationResult.rigid_parameters()``.
    header_problems : failures found in the DICOM headers (e.g. different PatientID).
    header_warnings : warnings from the headers (e.g. prior dated after current).
    registration, inputs : provenance copied into the report.
    thresholds : limits of the verdict; ``QCThresholds()`` when None.
    case_id : written into the report.
    blood_pool : boolean array on the current grid, True in contrast-filled blood pools and
        enhancing organs of the current exam that the prior does not share (the pipeline passes
        these: they stay in the ROI); the volume of the ROI inside them is reported
        (``bone_roi_pool_ml``) and warned about.
    """
    thresholds = thresholds or QCThresholds()
    roi = bone_roi.array != 0
    defined = roi if outside_fov is None else roi & ~outside_fov
    n_roi = int(roi.sum())
    metrics: dict[str, float] = {"bone_roi_volume_ml": n_roi * current.voxel_volume_mm3 / 1000.0}
    messages: list[str] = []
    failed = False
    warn = False
    if blood_pool is not None:
        pool_ml = float(np.count_nonzero(roi & blood_pool)) * current.voxel_volume_mm3 / 1000.0
        metrics["bone_roi_pool_ml"] = pool_ml
        if pool_ml > thresholds.warn_bone_roi_pool_ml:
            warn = True
            messages.append(
                f"{pool_ml:.0f} mL of the bone ROI ({metrics['bone_roi_volume_ml']:.0f} mL) looks like contrast-filled blood or an enhancing organ in the current "
                "exam (kept because the prior shows none there: a contrast phase that differs between the exams, or a large new dense lesion). Check bone_roi.nii.gz."
            )
    if 0 < n_roi and metrics["bone_roi_volume_ml"] < thresholds.warn_bone_roi_min_ml:
        warn = True
        messages.append(
            f"The bone ROI is only {metrics['bone_roi_volume_ml']:.1f} mL: little bone was found (a CT of soft tissue, or a narrow field of view?)."
        )
    if n_roi == 0:
        metrics.update(
            bone_mean_abs_diff_hu=float("nan"),
            bone_median_abs_diff_hu=float("nan"),
            bone_ncc=float("nan"),
            bone_dice=float("nan"),
            fov_overlap_fraction=float("nan"),
        )
        messages.append("No bone found in the current exam: the subtraction has nothing to show. Is this a CT of the trunk in HU?")
        failed = True
    else:
        metrics["fov_overlap_fraction"] = float(defined.sum()) / n_roi
        cur = current.array[defined].astype(np.float64)
        pri = warped_prior.array[defined].astype(np.float64)
        if cur.size >= 10:
            diff = np.abs(cur - pri)
            metrics["bone_mean_abs_diff_hu"] = float(diff.mean())
            metrics["bone_median_abs_diff_hu"] = float(np.median(diff))
            sc, sp = cur.std(), pri.std()
            metrics["bone_ncc"] = float(np.mean((cur - cur.mean()) * (pri - pri.mean())) / (sc * sp)) if sc > 0 and sp > 0 else 0.0
            a, b = cur >= DICE_THRESHOLD_HU, pri >= DICE_THRESHOLD_HU
            denom = int(a.sum()) + int(b.sum())
            metrics["bone_dice"] = 2.0 * int((a & b).sum()) / denom if denom else float("nan")
        else:
            metrics.update(bone_mean_abs_diff_hu=float("nan"), bone_median_abs_diff_hu=float("nan"), bone_ncc=float("nan"), bone_dice=float("nan"))
    # Deformation statistics only where the prior has data: beyond its field of view the
    # transform is extrapolated and never used for the subtraction.
    metrics.update(_jacobian_in_roi(jacobian, bone_roi if outside_fov is None else bone_roi.with_array(defined.astype(np.uint8))))
    if rigid_parameters:
        rot = np.asarray(rigid_parameters.get("rotation_deg", [0, 0, 0]), dtype=float)
        metrics["rigid_rotation_deg"] = float(np.linalg.norm(rot))
        metrics["rigid_translation_mm"] = float(np.linalg.norm(np.asarray(rigid_parameters.get("translation_mm", [0, 0, 0]), dtype=float)))

    t = thresholds
    for problem in header_problems:
        messages.append(problem)
        failed = True
    overlap = metrics.get("fov_overlap_fraction", float("nan"))
    if n_roi and overlap < t.min_fov_overlap_fraction:
        failed = True
        messages.append(
            f"Only {overlap:.0%} of the current exam's bone lies inside the prior exam's field of view "
            f"(limit {t.min_fov_overlap_fraction:.0%}): the exams do not cover the same body region."
        )
    elif n_roi and overlap < t.warn_fov_overlap_fraction:
        warn = True
        messages.append(f"{1 - overlap:.0%} of the current exam's bone lies outside the prior exam; there is no subtraction there.")

    def finite(key: str) -> float | None:
        value = metrics.get(key, float("nan"))
        return value if value is not None and math.isfinite(value) else None

    residual, median = finite("bone_mean_abs_diff_hu"), finite("bone_median_abs_diff_hu")
    ncc, dice = finite("bone_ncc"), finite("bone_dice")
    folding, j01, j99 = finite("folding_fraction"), finite("jacobian_p01"), finite("jacobian_p99")
    if residual is not None and residual > t.max_bone_mean_abs_diff_hu:
        failed = True
        messages.append(
            f"Mean |current - warped prior| in bone is {residual:.0f} HU (limit {t.max_bone_mean_abs_diff_hu:.0f} HU): "
            "registration failed or the exams are of different patients."
        )
    if ncc is not None and ncc < t.min_bone_ncc:
        failed = True
        messages.append(f"Correlation of the exams in bone is {ncc:.2f} (limit {t.min_bone_ncc:.2f}): the bones do not line up.")
    if dice is not None and dice < t.min_bone_dice:
        failed = True
        messages.append(f"Bone overlap (Dice) after registration is {dice:.2f} (limit {t.min_bone_dice:.2f}): the bones do not line up.")
    if folding is not None and folding > t.max_folding_fraction:
        failed = True
        messages.append(f"The deformation folds in {folding:.1%} of the bone (limit {t.max_folding_fraction:.1%}): registration failed.")
    if j01 is not None and j99 is not None and (j01 < t.jacobian_range[0] or j99 > t.jacobian_range[1]):
        failed = True
        messages.append(
            f"The deformation changes bone volume locally by {j01 - 1:+.0%} to {j99 - 1:+.0%} "
            f"(1st-99th percentile of the Jacobian {j01:.2f} to {j99:.2f}, limits {t.jacobian_range[0]}-{t.jacobian_range[1]}): "
            "more than repositioning does; different patients or a failed registration."
        )
    signs: list[str] = []
    if ncc is not None and t.min_bone_ncc <= ncc < t.warn_bone_ncc:
        signs.append(f"correlation in bone {ncc:.3f} (< {t.warn_bone_ncc})")
    if median is not None and median > t.warn_bone_median_abs_diff_hu:
        signs.append(f"median |Δ| in bone {median:.0f} HU (> {t.warn_bone_median_abs_diff_hu:.0f} HU)")
    if (
        j01 is not None
        and j99 is not None
        and (j01 < t.warn_jacobian_range[0] or j99 > t.warn_jacobian_range[1])
        and not (j01 < t.jacobian_range[0] or j99 > t.jacobian_range[1])
    ):
        signs.append(f"Jacobian 1st-99th percentile {j01:.2f}-{j99:.2f} (outside {t.warn_jacobian_range[0]}-{t.warn_jacobian_range[1]})")
    if folding is not None and t.warn_folding_fraction < folding <= t.max_folding_fraction:
        signs.append(f"folding in {folding:.2%} of the bone (> {t.warn_folding_fraction:.1%})")
    if len(signs) >= 2:
        failed = True
        messages.append(
            "Several signs of a wrong pairing or failed registration: "
            + "; ".join(signs)
            + ". Check that both exams are of the same patient and body region."
        )
    elif signs:
        warn = True
        messages.append("Check the registration: " + signs[0] + ".")
    for message in header_warnings:
        warn = True
        messages.append(message)
    status = "failed" if failed else ("warning" if warn else "ok")
    return QCReport(
        status=status,
        messages=tuple(messages),
        metrics=metrics,
        thresholds=t,
        registration=dict(registration or {}),
        inputs=dict(inputs or {}),
        case_id=case_id,
    )


def header_checks(
    prior_header: Mapping[str, Any] | None, current_header: Mapping[str, Any] | None, prior_source: Any = None, current_source: Any = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Failures and warnings from the two exams' DICOM headers (via ``cases.check_same_patient``)."""
    from cases import Exam, ExamReadError, check_same_patient

    if not prior_header or not current_header:
        return (), ()
    prior = Exam(volume=None, source=Path(str(prior_source or "prior")), format="dicom", header=dict(prior_header))  # type: ignore[arg-type]
    current = Exam(volume=None, source=Path(str(current_source or "current")), format="dicom", header=dict(current_header))  # type: ignore[arg-type]
    problems: list[str] = []
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check_same_patient(prior, current)
        except ExamReadError as exc:
            problems.append(str(exc))
    notes.extend(str(w.message) for w in caught)
    return tuple(problems), tuple(notes)
