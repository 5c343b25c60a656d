"""Accuracy of the registration and subtraction against a known deformation (synthetic pairs).

:func:`measure_registration` compares an estimated transform with the true one over the bone
of the current exam, and the subtraction with the true change:

* **TRE in bone** (target registration error): for bone voxels ``x`` of the current exam,
  ``|T_est(x) - T_true(x)|`` in mm (both transforms map current-exam points to prior-exam
  points); mean, 95th percentile and maximum. The same for the identity (the initial error
  before registration) and for the rigid part alone.
* **Artifact level**: mean |subtraction| in bone at least ``lesion_margin_mm`` away from every
  lesion, HU: what misregistration and noise leave where nothing changed.
* **Lesion contrast kept**: for each lesion, the mean subtraction inside its label divided by the
  true change (current minus the prior warped with the *true* transform), in percent.

Transforms are evaluated at many points at once: Euler/affine parts with NumPy, displacement
fields by trilinear interpolation (as ITK does, zero displacement outside the field), anything
else point by point through SimpleITK.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from ._errors import DetectorInputError
from ._geometry import Grid, mask_bounding_box
from .registration import RegistrationResult
from .subtraction import SubtractionImages

__all__ = ["RegistrationMeasurement", "measure_registration", "transform_points", "CHECK_JSON_KEYS"]

#: Keys of one case's entry in the check-registration JSON (mirrored in docs/detector.md).
CHECK_JSON_KEYS: dict[str, str] = {
    "case_id": "case identifier",
    "n_tre_points": "number of bone voxels where TRE was measured",
    "n_tre_points_outside_prior": "bone voxels left out because their true counterpart lies outside the prior exam's field of view",
    "tre_initial_mean_mm": "mean TRE before registration (identity transform), mm",
    "tre_rigid_mean_mm": "mean TRE of the rigid stage alone, mm",
    "tre_mean_mm": "mean TRE in bone after registration, mm",
    "tre_p95_mm": "95th percentile of TRE in bone, mm",
    "tre_max_mm": "maximum TRE in bone, mm",
    "artifact_plain_hu": "mean |plain subtraction| in bone away from lesions, HU",
    "artifact_vm_hu": "mean |voxel-matched subtraction| in bone away from lesions, HU",
    "n_lesions": "number of truth lesions measured",
    "lesion_contrast_kept_plain_pct": "mean over lesions of 100 x measured / true mean change (plain subtraction)",
    "lesion_contrast_kept_vm_pct": "the same for the voxel-matched subtraction",
    "lesions": "per lesion: label value, type, true and measured mean change (HU), kept (%)",
    "run_time_s": "wall time of registration + subtraction + QC (+ outputs when written), s",
    "qc_status": "the pipeline's QC verdict for the case",
}


@dataclass(frozen=True)
class RegistrationMeasurement:
    """Registration and subtraction accuracy of one pair against its known deformation."""

    case_id: str | None
    n_tre_points: int
    n_tre_points_outside_prior: int
    tre_initial_mean_mm: float
    tre_rigid_mean_mm: float
    tre_mean_mm: float
    tre_p95_mm: float
    tre_max_mm: float
    artifact_plain_hu: float
    artifact_vm_hu: float
    n_lesions: int
    lesion_contrast_kept_plain_pct: float
    lesion_contrast_kept_vm_pct: float
    lesions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    run_time_s: float | None = None
    qc_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (keys in :data:`CHECK_JSON_KEYS`); NaN becomes None."""
        out = asdict(self)
        out["lesions"] = [dict(lesion) for lesion in self.lesions]
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def summary(self) -> str:
        """One line with the headline figures."""
        who = f"{self.case_id}: " if self.case_id else ""

        def f(v: float | None, spec: str, unit: str = "") -> str:
            # never "nan": a figure that does not exist (no lesion, no TRE point) says so
            return "n/a" if v is None or not math.isfinite(float(v)) else format(float(v), spec) + unit

        contrast = (
            f"lesion contrast kept plain {f(self.lesion_contrast_kept_plain_pct, '.0f', '%')}, VM {f(self.lesion_contrast_kept_vm_pct, '.0f', '%')} ({self.n_lesions} lesions)"
            if self.n_lesions
            else "no lesions"
        )
        return (
            f"{who}TRE in bone mean {f(self.tre_mean_mm, '.2f')} / p95 {f(self.tre_p95_mm, '.2f')} / max {f(self.tre_max_mm, '.2f')} mm "
            f"(initial {f(self.tre_initial_mean_mm, '.1f')}, rigid {f(self.tre_rigid_mean_mm, '.2f')}); artifact plain "
            f"{f(self.artifact_plain_hu, '.1f', ' HU')}, VM {f(self.artifact_vm_hu, '.1f', ' HU')}; {contrast}"
        )


# ---------------------------------------------------------------------------------------------
def _matrix_transform(t: sitk.Transform) -> tuple[np.ndarray, np.ndarray] | None:
    """(A, b) with y = A x + b for matrix-offset transforms (Euler, similarity, affine, ...)."""
    try:
        a = np.asarray(t.GetMatrix(), dtype=float).reshape(3, 3)
        c = np.asarray(t.GetCenter(), dtype=float)
        tr = np.asarray(t.GetTranslation(), dtype=float)
    except (AttributeError, RuntimeError):
        return None
    return a, tr + c - a @ c


def _displacement_at(field_image: sitk.Image, points: np.ndarray) -> np.ndarray:
    grid = Grid.of(field_image)
    d = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    idx = ((points - np.asarray(grid.origin_mm)) @ d) / np.asarray(grid.spacing_mm)  # (n, 3) x, y, z
    arr = sitk.GetArrayViewFromImage(field_image)  # (z, y, x, 3)
    coords = idx[:, ::-1].T  # z, y, x
    out = np.zeros_like(points)
    size = np.asarray(grid.size, dtype=float)
    # ITK: inside when within half a voxel of the outer voxel centres, border values beyond them.
    inside = np.all((idx >= -0.5) & (idx < size - 0.5), axis=1)
    for comp in range(3):
        out[inside, comp] = ndi.map_coordinates(arr[..., comp], coords[:, inside], order=1, mode="nearest", prefilter=False)
    return out


def transform_points(transform: sitk.Transform, points_mm: np.ndarray) -> np.ndarray:
    """Map an ``(n, 3)`` array of LPS points (mm) through a SimpleITK transform.

    Composite, Euler/similarity/affine and displacement-field transforms are evaluated in bulk;
    other kinds (B-spline, ...) point by point.
    """
    pts = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    t = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(t, sitk.CompositeTransform):
        # The last transform added is applied first.
        for i in reversed(range(t.GetNumberOfTransforms())):
            pts = transform_points(t.GetNthTransform(i), pts)
        return pts
    if isinstance(t, sitk.DisplacementFieldTransform):
        return pts + _displacement_at(t.GetDisplacementField(), pts)
    if t.GetName() == "IdentityTransform":
        return pts.copy()
    if t.GetName() == "TranslationTransform":
        return pts + np.asarray(t.GetParameters(), dtype=float)
    mat = _matrix_transform(t)
    if mat is not None:
        a, b = mat
        return pts @ a.T + b
    return np.asarray([t.TransformPoint(tuple(p)) for p in pts], dtype=float)


def _bone_points(current: Volume, bone: LabelVolume, max_points: int | None, seed: int) -> np.ndarray:
    idx = np.argwhere(bone.array != 0)  # (n, 3) z, y, x
    if max_points is not None and len(idx) > max_points:
        rng = np.random.default_rng(seed)
        idx = idx[np.sort(rng.choice(len(idx), size=max_points, replace=False))]
    return Grid.of(current).index_to_point_mm(idx[:, ::-1])


def _true_change_in_box(current: Volume, prior: Volume, true_transform: sitk.Transform, box: tuple[slice, slice, slice]) -> np.ndarray:
    """current - prior warped with the true transform, on the sub-grid ``box`` of the current grid."""
    start = (box[2].start, box[1].start, box[0].start)
    origin = current.index_to_point_mm(start)
    sub = Grid(
        size=(box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start),
        spacing_mm=current.spacing_mm,
        origin_mm=tuple(float(o) for o in origin),  # type: ignore[arg-type]
        direction=current.direction,
    )
    resampler = sub.resampler(sitk.sitkLinear, float(np.min(prior.array)))
    resampler.SetTransform(true_transform)
    warped = sitk.GetArrayFromImage(resampler.Execute(prior.to_sitk()))
    return current.array[box].astype(np.float32) - warped


def measure_registration(
    estimated: RegistrationResult | sitk.Transform,
    true_transform: sitk.Transform,
    current: Volume,
    *,
    prior: Volume | None = None,
    subtraction: SubtractionImages | None = None,
    bone: LabelVolume | None = None,
    lesion_labels: LabelVolume | None = None,
    lesion_values: Sequence[int] | None = None,
    lesion_types: Sequence[str] | None = None,
    lesion_margin_mm: float = 3.0,
    max_points: int | None = None,
    seed: int = 0,
    case_id: str | None = None,
    run_time_s: float | None = None,
    qc_status: str | None = None,
) -> RegistrationMeasurement:
    """TRE in bone against a known transform, artifact level and lesion contrast kept.

    Parameters
    ----------
    estimated : the registration result (or its transform); maps current points to prior points.
    true_transform : the known transform, same convention (synthetic pairs record it).
    current : the current exam (fixed image), HU.
    prior : the prior exam; needed for the lesion contrast (true change).
    subtraction : the pipeline's subtraction images; needed for the artifact level and contrast.
        The artifact level uses ``current - warped prior`` recomputed from ``subtraction.plain``
        inside its ROI, so bone outside the ROI is not counted.
    bone : the truth bone mask of the current exam (e.g. the synthetic ``bone_label``); when
        None, :func:`~detector.bone.bone_mask` of the current exam (threshold-based).
    lesion_labels : label map of the lesions on the current grid (0 = background).
    lesion_values : which label values are lesions (default: every non-zero value present).
    lesion_types : type of each lesion (``"lytic"``/``"blastic"``/...), reported as given.
    lesion_margin_mm : bone closer than this to a lesion is left out of the artifact level.
    max_points : measure TRE on at most this many bone voxels (random, seeded); None: all.
    seed : seed of that subsample.
    case_id, run_time_s, qc_status : copied into the result.

    Raises
    ------
    DetectorInputError
        Label volumes not on the current grid, or no bone voxel at all.
    """
    est = estimated.transform if isinstance(estimated, RegistrationResult) else estimated
    rigid = estimated.rigid if isinstance(estimated, RegistrationResult) else None
    if bone is None:
        from .bone import bone_mask

        bone = bone_mask(current)
    for name, lab in (("bone", bone), ("lesion_labels", lesion_labels)):
        if lab is not None and not lab.same_space(current):
            raise DetectorInputError(f"The {name} label volume is not on the current exam's grid; resample it with .resample_to(current).")
    bone_bin = LabelVolume((bone.array != 0).astype(np.uint8), current.spacing_mm, current.origin_mm, current.direction)
    if not bone_bin.array.any():
        raise DetectorInputError("The bone mask of the current exam is empty; TRE in bone cannot be measured.")

    points = _bone_points(current, bone_bin, max_points, seed)
    truth = transform_points(true_transform, points)
    if prior is not None:
        # Only where the prior has data: elsewhere no registration can know the answer.
        pgrid = Grid.of(prior)
        d = np.asarray(pgrid.direction, dtype=float).reshape(3, 3)
        pidx = ((truth - np.asarray(pgrid.origin_mm)) @ d) / np.asarray(pgrid.spacing_mm)
        inside = np.all((pidx >= 0) & (pidx <= np.asarray(pgrid.size) - 1), axis=1)
        n_outside = int((~inside).sum())
        if not inside.any():
            raise DetectorInputError("No bone voxel of the current exam corresponds to a point inside the prior exam under the true transform.")
        points, truth = points[inside], truth[inside]
    else:
        n_outside = 0
    err = np.linalg.norm(transform_points(est, points) - truth, axis=1)
    err_init = np.linalg.norm(points - truth, axis=1)
    err_rigid = np.linalg.norm(transform_points(rigid, points) - truth, axis=1) if rigid is not None else np.full(1, np.nan)
    del truth

    nan = float("nan")
    artifact_plain = artifact_vm = nan
    lesions: list[dict[str, Any]] = []
    if subtraction is not None:
        region = bone_bin.array != 0
        if subtraction.bone_roi is not None:
            region &= subtraction.bone_roi.array != 0
        if lesion_labels is not None and lesion_labels.array.any():
            from .bone import dilate_mask

            near = dilate_mask(
                LabelVolume((lesion_labels.array != 0).astype(np.uint8), current.spacing_mm, current.origin_mm, current.direction), lesion_margin_mm
            )
            region &= near.array == 0
        if prior is not None and region.any():
            # Leave out bone whose true counterpart lies outside the prior (no data to subtract).
            idx = np.argwhere(region)
            mapped = transform_points(true_transform, Grid.of(current).index_to_point_mm(idx[:, ::-1]))
            pgrid = Grid.of(prior)
            d = np.asarray(pgrid.direction, dtype=float).reshape(3, 3)
            pidx = ((mapped - np.asarray(pgrid.origin_mm)) @ d) / np.asarray(pgrid.spacing_mm)
            outside = ~np.all((pidx >= 0) & (pidx <= np.asarray(pgrid.size) - 1), axis=1)
            region[tuple(idx[outside].T)] = False
            del idx, mapped, pidx
        if region.any():
            artifact_plain = float(np.abs(subtraction.plain.array[region]).mean())
            artifact_vm = float(np.abs(subtraction.voxel_matched.array[region]).mean())
        if lesion_labels is not None and prior is not None:
            values = list(lesion_values) if lesion_values is not None else [int(v) for v in np.unique(lesion_labels.array) if v != 0]
            for i, value in enumerate(values):
                inside = lesion_labels.array == value
                box = mask_bounding_box(inside)
                if box is None:
                    continue
                true_change = _true_change_in_box(current, prior, true_transform, box)
                sel = inside[box]
                true_mean = float(true_change[sel].mean())
                plain_mean = float(subtraction.plain.array[box][sel].mean())
                vm_mean = float(subtraction.voxel_matched.array[box][sel].mean())
                lesions.append(
                    {
                        "label_value": int(value),
                        "lesion_type": (lesion_types[i] if lesion_types is not None and i < len(lesion_types) else None),
                        "n_voxels": int(sel.sum()),
                        "true_change_hu": true_mean,
                        "plain_change_hu": plain_mean,
                        "vm_change_hu": vm_mean,
                        "kept_plain_pct": 100.0 * plain_mean / true_mean if abs(true_mean) > 1e-6 else nan,
                        "kept_vm_pct": 100.0 * vm_mean / true_mean if abs(true_mean) > 1e-6 else nan,
                    }
                )
    kept_plain = [les["kept_plain_pct"] for les in lesions if math.isfinite(les["kept_plain_pct"])]
    kept_vm = [les["kept_vm_pct"] for les in lesions if math.isfinite(les["kept_vm_pct"])]
    return RegistrationMeasurement(
        case_id=case_id,
        n_tre_points=int(err.size),
        n_tre_points_outside_prior=n_outside,
        tre_initial_mean_mm=float(err_init.mean()),
        tre_rigid_mean_mm=float(np.mean(err_rigid)),
        tre_mean_mm=float(err.mean()),
        tre_p95_mm=float(np.percentile(err, 95)),
        tre_max_mm=float(err.max()),
        artifact_plain_hu=artifact_plain,
        artifact_vm_hu=artifact_vm,
        n_lesions=len(lesions),
        lesion_contrast_kept_plain_pct=float(np.mean(kept_plain)) if kept_plain else nan,
        lesion_contrast_kept_vm_pct=float(np.mean(kept_vm)) if kept_vm else nan,
        lesions=tuple(lesions),
        run_time_s=run_time_s,
        qc_status=qc_status,
    )
