"""Registration of the prior CT (moving) onto the current CT (fixed): rigid, then deformable.

The transform returned maps a point of the **current** exam (LPS mm) to the corresponding point
of the **prior** exam, the ITK convention: resampling the prior through it gives the prior on the
current exam's grid (:meth:`RegistrationResult.warp`). It is a composite of a smooth
displacement ``u`` applied first and a rigid ``R``: ``T(x) = R(x + u(x))``.

Pipeline and why (measured on synthetic spine pairs; numbers in docs/detector.md):

1. **Crop** both exams to the body's bounding box plus a margin, so that air, table and the
   corners of the field of view cost nothing.
2. **Initial alignment**: the translation that superimposes the bone-weighted centroids of the
   two exams (weights ``clip(HU - 200, 0, 1000)``), which captures repositioning of tens of mm.
3. **Rigid**: Euler 3-D, Mattes mutual information, random sampling, regular-step gradient
   descent with optimizer scales from physical shift, three levels (8, 4, 2 mm) on copies
   block-averaged to 2 mm. The finest level is capped at 2 mm (a full-resolution pyramid spent
   most of its time smoothing). No bone mask here: a mask in the rigid stage destroyed the
   capture range in trials. The metric runs on one ITK work unit, the price of a result that
   does not change from run to run.
4. **Deformable** (``deformable=``):

   * ``"bspline"`` (default): a cubic B-spline free-form deformation on a 30 mm control grid,
     fitted by L-BFGS-B to the mean squared difference of HU clamped to -200…1500 at 50 000
     points drawn in the current exam's dilated bone, images at full resolution, with a light
     control-grid smoothness penalty (:mod:`detector._bspline`). Sampling only bone puts the
     whole effort where the subtraction is read: on clinical-size synthetic pairs the mean error
     in bone was 0.06-0.09 mm (95th percentile 0.16-0.34 mm) for about 10 s of CPU, against
     0.33 mm (0.71 mm) in 44 CPU-s for the Demons schedule below.
   * ``"demons"`` / ``"diffeomorphic_demons"``: dense fast symmetric-forces (or
     diffeomorphic) Demons on clamped HU at 3 then 1.5 mm, for deformations finer than a 30 mm
     spline can follow (at several times the cost).

The dense displacement ``u`` (for warping and the Jacobian) is evaluated on a 1.5 mm grid over
the current exam's body box; outside that box the transform is the rigid part alone.

Progress is reported through ``on_iteration(IterationInfo)``, never through globals.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import SimpleITK as sitk

from cases import LabelVolume, Volume

from ._bspline import BSplineLevel, fit_bspline
from ._errors import DetectorInputError
from ._geometry import Grid, block_mean, body_bounding_box, crop

__all__ = [
    "IterationInfo",
    "RegistrationConfig",
    "RegistrationResult",
    "StageReport",
    "register",
]

DeformableKind = Literal["bspline", "demons", "diffeomorphic_demons", "none"]
DEFORMABLE_KINDS = ("bspline", "demons", "diffeomorphic_demons", "none")

#: Value given to voxels that map outside the prior's field of view (far below any HU), and the
#: level under which an interpolated voxel counts as outside.
_OUTSIDE = -16384.0
_OUTSIDE_BELOW = -2048.0


@dataclass(frozen=True)
class IterationInfo:
    """One optimisation step, passed to the ``on_iteration`` callback.

    Attributes
    ----------
    stage : ``"rigid"`` or ``"deformable"``.
    level : resolution level, 0 = coarsest.
    n_levels : number of levels of this stage.
    iteration : iteration within the level, counting from 1.
    n_iterations_max : iteration budget of the level (the stage may stop earlier).
    metric : the stage's cost (rigid: negative mutual information; deformable: mean squared
        difference of clamped HU, HU², plus the smoothness penalty if any). Lower is better.
    """

    stage: str
    level: int
    n_levels: int
    iteration: int
    n_iterations_max: int
    metric: float


@dataclass(frozen=True)
class RegistrationConfig:
    """Parameters of :func:`register`; the defaults are the measured choice (docs/detector.md).

    Parameters
    ----------
    crop_to_body : register only inside the body's bounding box (plus ``crop_margin_mm``).
    crop_margin_mm : margin around the body box, mm.
    rigid_spacing_mm : voxel spacing of the finest rigid level (copies block-averaged to it), mm.
    rigid_shrink_factors : pyramid factors relative to ``rigid_spacing_mm`` (coarse to fine).
    rigid_smoothing_mm : Gaussian sigma per pyramid level, in mm (physical units).
    rigid_iterations : maximum optimizer iterations per rigid level.
    rigid_sampling_fraction : fraction of voxels sampled for mutual information.
    rigid_histogram_bins : joint histogram bins of Mattes mutual information.
    rigid_learning_rate_mm : initial optimizer step, in mm of the largest voxel shift.
    rigid_min_step_mm : the optimizer stops when its step falls below this, mm.
    deformable : ``"bspline"`` (default), ``"demons"``, ``"diffeomorphic_demons"`` (fold-free
        dense field) or ``"none"`` (rigid only).
    hu_window : HU range both images are clamped to for the deformable stage (soft tissue
        flattened, cortex saturated: bone drives the fit).
    bspline_image_spacing_mm : spacing the images are block-averaged to for the B-spline fit
        (at the exam's own resolution when it is coarser), mm. Full resolution matters: at 1.5 mm
        the blurred cortex and trabeculae gave a third more error in bone.
    bspline_sample_grid_mm : spacing of the grid the sample mask is built on, mm.
    bspline_control_spacing_mm : control-point spacing of each B-spline level, coarse to fine;
        each level must halve the previous one, mm.
    bspline_samples : points drawn in bone per level.
    bspline_iterations : L-BFGS-B iterations per level (at most).
    bspline_smoothness : weight of the control-grid Laplacian penalty (0 = none; the control
        spacing regularises).
    bspline_bone_threshold_hu : voxels of the current exam at least this dense seed the samples.
    bspline_bone_dilation_mm : the seed mask is grown by this much before sampling, mm, so edges
        and the marrow next to cortex are sampled too.
    demons_spacing_mm : grid spacing of each Demons level, coarse to fine, mm.
    demons_iterations : iterations of each Demons level.
    demons_field_sigma_vox : Gaussian smoothing of the Demons field per iteration, voxels.
    demons_max_step_vox : largest Demons update per iteration, voxels.
    field_spacing_mm : spacing of the dense displacement grid over the current exam's body box,
        used to warp images and compute the Jacobian, mm.
    seed : seed of all random sampling; the same inputs and seed give the same transform, bit
        for bit, whatever the thread count (rigid and B-spline stages; docs/detector.md).
    """

    crop_to_body: bool = True
    crop_margin_mm: float = 10.0
    rigid_spacing_mm: float = 2.0
    rigid_shrink_factors: tuple[int, ...] = (4, 2, 1)
    rigid_smoothing_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    rigid_iterations: int = 200
    rigid_sampling_fraction: float = 0.05
    rigid_histogram_bins: int = 50
    rigid_learning_rate_mm: float = 2.0
    rigid_min_step_mm: float = 0.002
    deformable: DeformableKind = "bspline"
    hu_window: tuple[float, float] = (-200.0, 1500.0)
    bspline_image_spacing_mm: float = 0.75
    bspline_sample_grid_mm: float = 1.5
    bspline_control_spacing_mm: tuple[float, ...] = (30.0,)
    bspline_samples: int = 50_000
    bspline_iterations: int = 100
    bspline_smoothness: float = 1.0
    bspline_bone_threshold_hu: float = 200.0
    bspline_bone_dilation_mm: float = 4.5
    demons_spacing_mm: tuple[float, ...] = (3.0, 1.5)
    demons_iterations: tuple[int, ...] = (60, 30)
    demons_field_sigma_vox: float = 1.5
    demons_max_step_vox: float = 0.5
    field_spacing_mm: float = 1.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rigid_shrink_factors", "demons_iterations"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("rigid_smoothing_mm", "demons_spacing_mm", "bspline_control_spacing_mm", "hu_window"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        problems = []
        if len(self.rigid_shrink_factors) != len(self.rigid_smoothing_mm) or not self.rigid_shrink_factors:
            problems.append("rigid_shrink_factors and rigid_smoothing_mm need one entry per level (same length, at least 1)")
        if any(f < 1 for f in self.rigid_shrink_factors):
            problems.append(f"rigid_shrink_factors must be integers >= 1, got {self.rigid_shrink_factors}")
        for name in (
            "rigid_spacing_mm",
            "bspline_image_spacing_mm",
            "bspline_sample_grid_mm",
            "field_spacing_mm",
            "demons_field_sigma_vox",
            "demons_max_step_vox",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.rigid_sampling_fraction <= 1:
            problems.append(f"rigid_sampling_fraction must be in (0, 1], got {self.rigid_sampling_fraction}")
        if self.rigid_iterations < 1 or self.bspline_iterations < 1:
            problems.append("rigid_iterations and bspline_iterations must be >= 1")
        if self.deformable not in DEFORMABLE_KINDS:
            problems.append(f"deformable must be one of {', '.join(repr(k) for k in DEFORMABLE_KINDS)}, got {self.deformable!r}")
        if self.hu_window[0] >= self.hu_window[1] or len(self.hu_window) != 2:
            problems.append(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        cs = self.bspline_control_spacing_mm
        if not cs or any(c <= 0 for c in cs) or any(abs(b * 2 - a) > 1e-6 * a for a, b in zip(cs, cs[1:])):
            problems.append(f"bspline_control_spacing_mm must be positive, coarse to fine, each level half the previous, got {cs}")
        if self.bspline_samples < 1000:
            problems.append(f"bspline_samples must be at least 1000, got {self.bspline_samples}")
        if self.bspline_smoothness < 0 or self.bspline_bone_dilation_mm < 0 or self.crop_margin_mm < 0:
            problems.append("bspline_smoothness, bspline_bone_dilation_mm and crop_margin_mm must be non-negative")
        if len(self.demons_spacing_mm) != len(self.demons_iterations) or not self.demons_spacing_mm:
            problems.append("demons_spacing_mm and demons_iterations need one entry per level (same length, at least 1)")
        if any(s <= 0 for s in self.demons_spacing_mm) or any(n < 0 for n in self.demons_iterations):
            problems.append("demons_spacing_mm must be positive and demons_iterations non-negative")
        if self.seed < 0:
            problems.append(f"seed must be a non-negative integer, got {self.seed}")
        if problems:
            raise DetectorInputError("Invalid RegistrationConfig: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict:
        """Plain-Python form (lists for tuples), for JSON provenance."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class StageReport:
    """What one registration stage did: iterations per level, final metric, why it stopped."""

    name: str
    elapsed_s: float
    n_iterations: tuple[int, ...]
    final_metric: float
    stop_condition: str


@dataclass(frozen=True, eq=False)
class RegistrationResult:
    """Outcome of :func:`register`: the transform and how each stage went.

    Attributes
    ----------
    transform : composite SimpleITK transform mapping current-exam (fixed) points to prior-exam
        (moving) points, LPS mm: ``T(x) = rigid(x + u(x))`` (exact: the B-spline itself, or the
        Demons field).
    rigid : the rigid part alone (``Euler3DTransform``).
    deformation : ``u`` as a transform (``BSplineTransform`` or ``DisplacementFieldTransform``),
        None for rigid-only registration.
    fixed_grid : the full grid of the fixed (current) exam, onto which :meth:`warp` resamples.
    field_grid : the grid of the dense displacement used for warping and the Jacobian (the
        current exam's body box at ``field_spacing_mm``), None for rigid only.
    body_box : array slices (z, y, x) of the current exam's body box, None without cropping.
    stages : one :class:`StageReport` per stage (``"rigid"``, then ``"deformable"``).
    config : the parameters used.
    """

    transform: sitk.Transform
    rigid: sitk.Euler3DTransform
    deformation: sitk.Transform | None
    fixed_grid: Grid
    field_grid: Grid | None
    body_box: tuple[slice, slice, slice] | None
    stages: tuple[StageReport, ...]
    config: RegistrationConfig
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def final_metric(self) -> float:
        """Final metric of the last stage (see :class:`IterationInfo` for units)."""
        return self.stages[-1].final_metric

    @property
    def stop_condition(self) -> str:
        """Why the last stage stopped."""
        return self.stages[-1].stop_condition

    @property
    def n_iterations(self) -> dict[str, tuple[int, ...]]:
        """Iterations per level, per stage name."""
        return {s.name: s.n_iterations for s in self.stages}

    @property
    def elapsed_s(self) -> dict[str, float]:
        """Wall time per stage name, and ``"total"``, in seconds."""
        out = {s.name: s.elapsed_s for s in self.stages}
        out["total"] = float(sum(s.elapsed_s for s in self.stages))
        return out

    def rigid_parameters(self) -> dict[str, list[float]]:
        """Rotation angles about x, y, z (degrees), translation (mm) and centre (mm) of the rigid part."""
        p = self.rigid.GetParameters()
        return {
            "rotation_deg": [math.degrees(a) for a in p[:3]],
            "translation_mm": [float(t) for t in p[3:6]],
            "center_mm": [float(c) for c in self.rigid.GetCenter()],
        }

    def displacement_field(self) -> sitk.Image | None:
        """``u`` sampled on :attr:`field_grid` (vector image of float64, mm), cached; None if rigid only."""
        if self.deformation is None or self.field_grid is None:
            return None
        if "field" not in self._cache:
            if isinstance(self.deformation, sitk.DisplacementFieldTransform):
                fld = self.field_grid.resampler(sitk.sitkLinear, 0.0).Execute(self.deformation.GetDisplacementField())
            else:
                fld = _bspline_on_grid(self.deformation, self.field_grid)  # type: ignore[arg-type]
            self._cache["field"] = fld
        return self._cache["field"]

    def _fast_transform(self) -> sitk.Transform:
        """The transform used for resampling the whole grid: rigid after the dense ``u`` (linear
        interpolation of a smooth field on a 1.5 mm grid, much faster than evaluating the
        B-spline per voxel). Outside the field grid it is the rigid part alone."""
        if "fast" not in self._cache:
            fld = self.displacement_field()
            parts: list[sitk.Transform] = [sitk.Euler3DTransform(self.rigid)]
            if fld is not None:
                parts.append(sitk.DisplacementFieldTransform(sitk.Image(fld)))
            self._cache["fast"] = sitk.CompositeTransform(parts)
        return self._cache["fast"]

    def _body_transform(self) -> sitk.Transform:
        """One displacement field holding the whole mapping ``T(x) - x`` on :attr:`field_grid`,
        valid inside the body box only (about 20 % faster to resample than the composite)."""
        if "body" not in self._cache:
            fld = self.displacement_field()
            grid = self.field_grid
            if fld is None or grid is None:
                self._cache["body"] = self._fast_transform()
            else:
                u = sitk.GetArrayViewFromImage(fld)  # (z, y, x, 3)
                d = np.asarray(grid.direction, dtype=float).reshape(3, 3)
                axes = [np.arange(n) * s for n, s in zip(grid.size, grid.spacing_mm)]
                x = (
                    np.asarray(grid.origin_mm)
                    + axes[0][None, None, :, None] * d[:, 0]
                    + axes[1][None, :, None, None] * d[:, 1]
                    + axes[2][:, None, None, None] * d[:, 2]
                )
                a = np.asarray(self.rigid.GetMatrix(), dtype=float).reshape(3, 3)
                c = np.asarray(self.rigid.GetCenter(), dtype=float)
                t = np.asarray(self.rigid.GetTranslation(), dtype=float)
                total = (x + u) @ a.T + (t + c - a @ c) - x
                image = sitk.GetImageFromArray(total, isVector=True)
                image.SetSpacing(grid.spacing_mm)
                image.SetOrigin(grid.origin_mm)
                image.SetDirection(grid.direction)
                self._cache["body"] = sitk.DisplacementFieldTransform(image)
        return self._cache["body"]

    def warp(
        self, volume: Volume, *, default_value: float | None = None, outside_body_value: float | None = None, image: sitk.Image | None = None
    ) -> Volume:
        """Resample a prior-exam volume onto the current exam's grid through the transform.

        Parameters
        ----------
        volume : a volume on the prior exam's grid (or any grid in the prior's space).
        default_value : value where the transform maps outside ``volume`` (default: its minimum,
            i.e. air for CT; 0 for label volumes).
        outside_body_value : when given, only the current exam's body box is resampled and the
            rest of the grid gets this value (about a third less work on a whole-body CT).
        image : ``volume.to_sitk()`` made beforehand (the pipeline makes it while the
            registration runs); None: made here.

        Intensity volumes use linear interpolation, label volumes nearest neighbour.
        """
        if isinstance(volume, LabelVolume):
            interpolator = sitk.sitkNearestNeighbor
            default = 0.0 if default_value is None else default_value
        else:
            interpolator = sitk.sitkLinear
            default = float(np.min(volume.array)) if default_value is None else default_value
        if image is None:
            image = volume.to_sitk()
        box = self.body_box if outside_body_value is not None else None
        target = _sub_grid(self.fixed_grid, box) if box is not None else self.fixed_grid
        resampler = target.resampler(interpolator, default)
        resampler.SetTransform(self._body_transform() if box is not None else self._fast_transform())
        out = sitk.GetArrayFromImage(resampler.Execute(image))
        del image
        if box is not None:
            full = np.full(self.fixed_grid.shape, outside_body_value, dtype=out.dtype)
            full[box] = out
            out = full
        g = self.fixed_grid
        return type(volume)(out, g.spacing_mm, g.origin_mm, g.direction, {**volume.metadata, "warped_by": "detector.register"})

    def jacobian_determinant(self) -> Volume | None:
        """Jacobian determinant of ``x -> x + u(x)`` on :attr:`field_grid`.

        1 means volume kept, < 1 compression, > 1 expansion, <= 0 folding (the mapping is not
        invertible there). None for rigid-only registration (the determinant is 1 everywhere).
        """
        fld = self.displacement_field()
        if fld is None or self.field_grid is None:
            return None
        jac = _jacobian_determinant(sitk.GetArrayViewFromImage(fld), self.field_grid)
        g = self.field_grid
        return Volume(jac, g.spacing_mm, g.origin_mm, g.direction)

    def save(self, path: str | Path) -> Path:
        """Write the composite transform with ``sitk.WriteTransform`` (``.h5`` recommended; a
        Demons field needs ``.h5``). 3D Slicer and ``sitk.ReadTransform`` load it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self.deformation, sitk.DisplacementFieldTransform) and path.suffix.lower() not in (".h5", ".hdf5"):
            raise DetectorInputError(f"{path}: a transform with a displacement field must be saved as .h5 (ITK HDF5).")
        sitk.WriteTransform(self.transform, str(path))
        return path

    def summary(self) -> str:
        """A few lines: rigid parameters, per-stage iterations, metrics and times."""
        rp = self.rigid_parameters()
        lines = [
            "rigid: rotation (deg) "
            + ", ".join(f"{a:+.2f}" for a in rp["rotation_deg"])
            + "; translation (mm) "
            + ", ".join(f"{t:+.1f}" for t in rp["translation_mm"])
        ]
        for s in self.stages:
            lines.append(
                f"{s.name}: {s.elapsed_s:.1f} s, iterations per level {list(s.n_iterations)}, "
                f"final metric {s.final_metric:.4g}, stopped: {s.stop_condition}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
def _sub_grid(grid: Grid, box: tuple[slice, slice, slice]) -> Grid:
    start = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
    origin = grid.index_to_point_mm(start[None, :])[0]
    size = (box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start)
    return Grid(size, grid.spacing_mm, tuple(float(o) for o in origin), grid.direction)  # type: ignore[arg-type]


def _jacobian_determinant(u: np.ndarray, grid: Grid) -> np.ndarray:
    """``det(I + du/dx)`` of a displacement array ``(z, y, x, 3)`` on ``grid`` (float32).

    Central differences inside, one-sided at the borders (ITK's filter pads with zeros there,
    which reports folding wherever bone touches the first or last slice). The 3 x 3 determinant
    is written out (cofactor expansion, float64) rather than taken by ``np.linalg.det``: the same
    values to float32 precision at a fraction of the cost (an LU factorisation per voxel took
    most of the QC time on a clinical exam).
    """
    d = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    spacing = np.asarray(grid.spacing_mm, dtype=float)
    m = (d / spacing).T  # d idx_k / d p_j = D_jk / s_k, as a (k, j) matrix
    out = np.empty(u.shape[:3], dtype=np.float32)
    step = 16
    for z0 in range(0, u.shape[0], step):
        lo, hi = max(0, z0 - 1), min(u.shape[0], z0 + step + 1)
        keep = slice(z0 - lo, z0 - lo + min(step, u.shape[0] - z0))
        block = np.asarray(u[lo:hi], dtype=np.float64)
        # du_i / d idx_k for k = x, y, z (array axes 2, 1, 0): grads[k][..., i]
        grads = [np.gradient(block, axis=a)[keep] if block.shape[a] > 1 else np.zeros_like(block[keep]) for a in (2, 1, 0)]
        # J_ij = delta_ij + sum_k du_i/didx_k * m_kj
        jac = [[sum(grads[k][..., i] * m[k, j] for k in range(3) if m[k, j] != 0.0) for j in range(3)] for i in range(3)]
        for i in range(3):
            jac[i][i] = jac[i][i] + 1.0
        (a, b, c), (e, f, g), (h, k, l) = jac  # noqa: E741
        out[z0 : z0 + keep.stop - keep.start] = a * (f * l - g * k) - b * (e * l - g * h) + c * (e * k - f * h)
    return out


def _covering_grid(grid: Grid, spacing_mm: float) -> Grid:
    """A coarser grid (about ``spacing_mm``) whose voxel centres span ``grid``'s first to last
    voxel centres, so that interpolating on it never falls outside (unlike ``BinShrink``, which
    drops a partial last block)."""
    factors = [max(1, int(np.floor(spacing_mm / s + 0.5))) for s in grid.spacing_mm]
    size = tuple(int(math.ceil((n - 1) / f)) + 1 for n, f in zip(grid.size, factors))
    spacing = tuple(s * f for s, f in zip(grid.spacing_mm, factors))
    return Grid(size, spacing, grid.origin_mm, grid.direction)  # type: ignore[arg-type]


def _bspline_on_grid(bspline: sitk.BSplineTransform, grid: Grid) -> sitk.Image:
    """Dense displacement of a B-spline on an axis-aligned grid, by separable evaluation.

    The grid must share the coefficient grid's direction (both come from the current exam).
    Tensor-product weights make this three small matrix products per component instead of a
    64-point sum per voxel.
    """
    from ._bspline import _bspline3, _grid_of_coefficients

    c_origin, c_spacing, c_dir, c_size = _grid_of_coefficients(bspline)
    g_dir = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    if not np.allclose(c_dir, g_dir, atol=1e-6):
        out = sitk.TransformToDisplacementField(bspline, sitk.sitkVectorFloat64, grid.size, grid.origin_mm, grid.spacing_mm, grid.direction)
        return out
    offset = ((np.asarray(grid.origin_mm) - c_origin) @ c_dir) / c_spacing
    mats = []
    for axis in range(3):
        ci = offset[axis] + np.arange(grid.size[axis]) * grid.spacing_mm[axis] / c_spacing[axis]
        start = np.floor(ci - 1.0).astype(int)
        w = np.zeros((grid.size[axis], c_size[axis]))
        valid = (start >= 0) & (start + 3 < c_size[axis])
        for k in range(4):
            cols = start + k
            vals = _bspline3(ci - cols)
            ok = valid & (cols >= 0) & (cols < c_size[axis])
            w[np.nonzero(ok)[0], cols[ok]] = vals[ok]
        mats.append(w)
    params = np.asarray(bspline.GetParameters(), dtype=float).reshape(3, c_size[2], c_size[1], c_size[0])
    comps = []
    for comp in range(3):
        a = np.einsum("xk,zyk->zyx", mats[0], params[comp])
        a = np.einsum("yk,zkx->zyx", mats[1], a)
        a = np.einsum("zk,kyx->zyx", mats[2], a)
        comps.append(a)
    field_arr = np.stack(comps, axis=-1)
    image = sitk.GetImageFromArray(field_arr, isVector=True)
    image.SetSpacing(grid.spacing_mm)
    image.SetOrigin(grid.origin_mm)
    image.SetDirection(grid.direction)
    return image


def _check_input(volume: Volume, name: str) -> None:
    if not isinstance(volume, Volume):
        raise DetectorInputError(f"The {name} image must be a cases.Volume (or an Exam's .volume), got {type(volume).__name__}.")
    if isinstance(volume, LabelVolume):
        raise DetectorInputError(f"The {name} image is a label volume; registration needs the CT intensities in HU.")
    if min(volume.shape) < 8:
        raise DetectorInputError(f"The {name} image has shape {volume.shape} (z, y, x); registration needs at least 8 voxels along every axis.")
    arr = volume.array
    if not np.issubdtype(arr.dtype, np.number):
        raise DetectorInputError(f"The {name} image has non-numeric dtype {arr.dtype}.")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise DetectorInputError(f"The {name} image holds NaN or infinite values; CT values must be finite HU.")
    if hi - lo < 50:
        raise DetectorInputError(f"The {name} image spans only {lo:.3g} to {hi:.3g}; it is not a CT in HU (empty or normalised?).")


def _float_image(volume: Volume) -> sitk.Image:
    arr = volume.array if volume.array.dtype == np.float32 else volume.array.astype(np.float32)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(volume.spacing_mm)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(volume.direction)
    return image


def _bone_centroid_mm(image: sitk.Image) -> np.ndarray:
    """Centroid (LPS mm) weighted by ``clip(HU - 200, 0, 1000)``; body centroid if no bone."""
    arr = sitk.GetArrayViewFromImage(image)
    weights = np.clip(arr - 200.0, 0.0, 1000.0)
    if float(weights.sum()) <= 0:
        weights = (arr > -500.0).astype(np.float32)
    if float(weights.sum()) <= 0:
        weights = np.ones_like(arr, dtype=np.float32)
    total = float(weights.sum())
    idx = []
    for axis in range(3):
        prof = weights.sum(axis=tuple(a for a in range(3) if a != axis))
        idx.append(float(np.dot(prof, np.arange(prof.size))) / total)
    iz, iy, ix = idx
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint((ix, iy, iz)))


def _rigid_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    config: RegistrationConfig,
    on_iteration: Callable[[IterationInfo], None] | None,
) -> tuple[sitk.Euler3DTransform, StageReport]:
    start = time.perf_counter()
    fixed_r = block_mean(fixed, config.rigid_spacing_mm)
    moving_r = block_mean(moving, config.rigid_spacing_mm)
    c_fixed = _bone_centroid_mm(fixed_r)
    c_moving = _bone_centroid_mm(moving_r)
    initial = sitk.Euler3DTransform()
    initial.SetCenter([float(c) for c in c_fixed])
    initial.SetTranslation([float(t) for t in (c_moving - c_fixed)])

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.rigid_histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # SimpleITK reads seed 0 as "use the wall clock"; shift by one to stay reproducible.
    method.SetMetricSamplingPercentage(config.rigid_sampling_fraction, config.seed + 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.rigid_learning_rate_mm,
        minStep=config.rigid_min_step_mm,
        numberOfIterations=config.rigid_iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.rigid_shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.rigid_smoothing_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    # One work unit: with two or more, ITK's Mattes metric gave a different sum from run to run
    # (last digits of the metric and parameters, fixed work-unit count included), which the
    # B-spline stage's L-BFGS-B amplified into visibly different fits. With one, the stage is
    # bit-reproducible for a seed whatever the thread count, for about 1.3 s more wall time on a
    # clinical pair and no more CPU time (docs/detector.md, "Reproducibility").
    method.SetNumberOfWorkUnits(1)

    n_levels = len(config.rigid_shrink_factors)
    state = {"level": -1, "iters": []}

    def _on_level() -> None:
        state["level"] += 1
        state["iters"].append(0)

    def _on_iter() -> None:
        state["iters"][-1] += 1
        if on_iteration is not None:
            on_iteration(
                IterationInfo("rigid", state["level"], n_levels, state["iters"][-1], config.rigid_iterations, float(method.GetMetricValue()))
            )

    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, _on_level)
    method.AddCommand(sitk.sitkIterationEvent, _on_iter)
    try:
        result = method.Execute(fixed_r, moving_r)
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise DetectorInputError(
            f"Rigid registration failed ({msg}). The exams probably do not overlap at all; check that "
            "the prior and current exams cover the same body region."
        ) from None
    # Execute returns a composite holding the optimised Euler transform; flatten it.
    inner = result.Downcast()
    while isinstance(inner, sitk.CompositeTransform):
        inner = inner.GetNthTransform(inner.GetNumberOfTransforms() - 1).Downcast()
    euler = sitk.Euler3DTransform()
    euler.SetFixedParameters(inner.GetFixedParameters())
    euler.SetParameters(inner.GetParameters())
    report = StageReport(
        name="rigid",
        elapsed_s=time.perf_counter() - start,
        n_iterations=tuple(state["iters"]),
        final_metric=float(method.GetMetricValue()),
        stop_condition=method.GetOptimizerStopConditionDescription(),
    )
    return euler, report


def _demons_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    rigid: sitk.Transform,
    config: RegistrationConfig,
    on_iteration: Callable[[IterationInfo], None] | None,
) -> tuple[sitk.Image, StageReport]:
    """Demons on clamped HU over a pyramid; returns the displacement field (float64 vectors)."""
    start = time.perf_counter()
    lo, hi = config.hu_window
    n_levels = len(config.demons_spacing_mm)
    # Finest level first: block-average the full-resolution images once, coarser levels from it.
    fixed_levels: list[sitk.Image] = []
    moving_levels: list[sitk.Image] = []
    prev_fixed, prev_moving = fixed, moving
    for spacing in reversed(config.demons_spacing_mm):
        prev_fixed = block_mean(prev_fixed, spacing)
        prev_moving = block_mean(prev_moving, spacing)
        fixed_levels.insert(0, prev_fixed)
        moving_levels.insert(0, prev_moving)

    field: sitk.Image | None = None
    iters: list[int] = []
    metric = float("nan")
    stop = ""
    for level, (f_img, m_img, n_iter) in enumerate(zip(fixed_levels, moving_levels, config.demons_iterations)):
        grid = Grid.of(f_img)
        # Moving image through the rigid transform onto this level's fixed grid. Where the prior
        # has no data (outside its field of view) the fixed image is copied in, so that Demons
        # sees no difference and exerts no force there instead of pulling bone towards a void.
        m_rigid = _resample(m_img, grid, rigid, _OUTSIDE)
        f_clamped = sitk.Clamp(f_img, sitk.sitkFloat32, lo, hi)
        m_arr = sitk.GetArrayFromImage(m_rigid)
        del m_rigid
        outside = m_arr < _OUTSIDE_BELOW
        np.clip(m_arr, lo, hi, out=m_arr)
        if outside.any():
            m_arr[outside] = sitk.GetArrayViewFromImage(f_clamped)[outside]
        m_clamped = sitk.GetImageFromArray(m_arr)
        m_clamped.CopyInformation(f_clamped)
        del m_arr, outside
        if config.deformable == "diffeomorphic_demons":
            demons = sitk.DiffeomorphicDemonsRegistrationFilter()
        else:
            demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(int(n_iter))
        demons.SetStandardDeviations(config.demons_field_sigma_vox)
        demons.SetSmoothDisplacementField(True)
        demons.SetSmoothUpdateField(False)
        demons.SetMaximumUpdateStepLength(config.demons_max_step_vox)
        demons.SetUseImageSpacing(True)
        counter = {"n": 0}

        def _on_iter(demons=demons, level=level, n_iter=n_iter, counter=counter) -> None:
            counter["n"] += 1
            if on_iteration is not None:
                on_iteration(IterationInfo("deformable", level, n_levels, counter["n"], int(n_iter), float(demons.GetMetric())))

        demons.AddCommand(sitk.sitkIterationEvent, _on_iter)
        if field is None:
            field = demons.Execute(f_clamped, m_clamped)
        else:
            upsampled = grid.resampler(sitk.sitkLinear, 0.0).Execute(field)
            field = demons.Execute(f_clamped, m_clamped, upsampled)
            del upsampled
        iters.append(int(demons.GetElapsedIterations()))
        metric = float(demons.GetMetric())
        stop = (
            f"maximum number of iterations ({n_iter}) reached at level {level}"
            if demons.GetElapsedIterations() >= n_iter
            else f"RMS change below {demons.GetMaximumRMSError():g} at level {level}"
        )
    assert field is not None
    field = sitk.Cast(field, sitk.sitkVectorFloat64)
    report = StageReport(
        name="deformable",
        elapsed_s=time.perf_counter() - start,
        n_iterations=tuple(iters),
        final_metric=metric,
        stop_condition=stop,
    )
    return field, report


def _resample(image: sitk.Image, grid: Grid, transform: sitk.Transform, default: float) -> sitk.Image:
    f = grid.resampler(sitk.sitkLinear, default)
    f.SetTransform(transform)
    return f.Execute(image)


def _bspline_inputs(fixed: sitk.Image, moving: sitk.Image, config: RegistrationConfig) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """The B-spline stage's images (block-averaged, clamped) and sample mask: they do not depend
    on the rigid stage, so :func:`register` makes them in a thread while it runs."""
    lo, hi = config.hu_window
    f = sitk.Clamp(block_mean(fixed, config.bspline_image_spacing_mm), sitk.sitkFloat32, lo, hi)
    m = sitk.Clamp(block_mean(moving, config.bspline_image_spacing_mm), sitk.sitkFloat32, lo, hi)
    # Where to sample: dense voxels of the current exam, grown by a margin, on a coarse grid
    # (cheap morphology); the samples' values come from the full-resolution images.
    coarse = block_mean(fixed, config.bspline_sample_grid_mm)
    seeds = sitk.BinaryThreshold(coarse, config.bspline_bone_threshold_hu, 1e9, 1, 0)
    radius = [int(round(config.bspline_bone_dilation_mm / s)) for s in coarse.GetSpacing()]
    mask_img = sitk.BinaryDilate(seeds, radius) if max(radius) > 0 else seeds
    return f, m, mask_img


def _bspline_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    rigid: sitk.Euler3DTransform,
    config: RegistrationConfig,
    on_iteration: Callable[[IterationInfo], None] | None,
    inputs: tuple[sitk.Image, sitk.Image, sitk.Image] | None = None,
) -> tuple[sitk.BSplineTransform, StageReport]:
    start = time.perf_counter()
    f, m, mask_img = inputs if inputs is not None else _bspline_inputs(fixed, moving, config)
    n_mask = int(sitk.GetArrayViewFromImage(mask_img).sum())
    if n_mask < 200:
        raise DetectorInputError(
            f"The current exam holds almost no bone (>= {config.bspline_bone_threshold_hu:.0f} HU): {n_mask} voxels at "
            f"{config.bspline_sample_grid_mm} mm. The deformable stage fits the bones; check that this is a CT of the trunk "
            "in HU, or use deformable='demons'."
        )
    levels = tuple(BSplineLevel(c, config.bspline_samples, config.bspline_iterations) for c in config.bspline_control_spacing_mm)
    n_levels = len(levels)

    def _cb(level: int, iteration: int, n_max: int, cost: float) -> None:
        if on_iteration is not None:
            on_iteration(IterationInfo("deformable", level, n_levels, iteration, n_max, cost))

    bspline, iterations, cost, message = fit_bspline(
        f, m, rigid, mask_img, levels, smoothness_weight=config.bspline_smoothness, seed=config.seed + 1, on_iteration=_cb
    )
    report = StageReport(
        name="deformable",
        elapsed_s=time.perf_counter() - start,
        n_iterations=tuple(iterations),
        final_metric=cost,
        stop_condition=message,
    )
    return bspline, report


def register(
    fixed: Volume,
    moving: Volume,
    *,
    config: RegistrationConfig | None = None,
    on_iteration: Callable[[IterationInfo], None] | None = None,
) -> RegistrationResult:
    """Register the prior exam (``moving``) onto the current exam (``fixed``).

    Parameters
    ----------
    fixed : the current CT in HU; the result lives on its grid.
    moving : the prior CT in HU, any grid, same patient and body region.
    config : parameters; ``RegistrationConfig()`` (the measured defaults) when None.
    on_iteration : called after every optimiser iteration with an :class:`IterationInfo`
        (progress bars, logging, a UI). Exceptions raised in it propagate.

    Returns
    -------
    RegistrationResult
        The composite transform (current point -> prior point), its rigid and deformable parts,
        and per-stage iterations, final metric, stop condition and time.

    Raises
    ------
    DetectorInputError
        A label volume or non-CT image, a tiny image, NaN values, no bone in the current exam
        (B-spline stage), or exams that cannot be registered because they do not overlap.

    Notes
    -----
    The same inputs and ``config.seed`` give the same transform bit for bit, in one process or
    several, whatever SimpleITK's thread count and whatever other threads run meanwhile (the
    rigid metric runs on one work unit; the B-spline cost sums a fixed number of sample chunks
    in a fixed order; the Demons stages were checked on a small pair at the default thread
    count only). See the module docstring for the stages and docs/detector.md for the
    measurements.

    Examples
    --------
    >>> result = register(current_exam.volume, prior_exam.volume)  # doctest: +SKIP
    >>> warped_prior = result.warp(prior_exam.volume)  # doctest: +SKIP
    """
    config = config or RegistrationConfig()
    _check_input(fixed, "fixed (current)")
    _check_input(moving, "moving (prior)")
    full_grid = Grid.of(fixed)
    box_f = body_bounding_box(fixed, margin_mm=config.crop_margin_mm) if config.crop_to_body else None
    box_m = body_bounding_box(moving, margin_mm=config.crop_margin_mm) if config.crop_to_body else None
    fixed_img = _float_image(crop(fixed, box_f) if box_f else fixed)
    moving_img = _float_image(crop(moving, box_m) if box_m else moving)

    # The rigid stage runs on one ITK work unit (reproducibility): the B-spline stage's inputs,
    # which do not depend on it, are made meanwhile in a thread (SimpleITK releases the GIL).
    bspline_inputs = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsct-bspline-inputs") as side:
        inputs_made = side.submit(_bspline_inputs, fixed_img, moving_img, config) if config.deformable == "bspline" else None
        rigid, rigid_report = _rigid_stage(fixed_img, moving_img, config, on_iteration)
        if inputs_made is not None:
            bspline_inputs = inputs_made.result()
    stages = [rigid_report]
    deformation: sitk.Transform | None = None
    field_grid: Grid | None = None
    if config.deformable == "bspline":
        deformation, report = _bspline_stage(fixed_img, moving_img, rigid, config, on_iteration, bspline_inputs)
        stages.append(report)
    elif config.deformable in ("demons", "diffeomorphic_demons") and any(n > 0 for n in config.demons_iterations):
        fld, report = _demons_stage(fixed_img, moving_img, rigid, config, on_iteration)
        deformation = sitk.DisplacementFieldTransform(fld)
        stages.append(report)
    if deformation is not None:
        field_grid = _covering_grid(_sub_grid(full_grid, box_f) if box_f else full_grid, config.field_spacing_mm)
    del fixed_img, moving_img
    parts: list[sitk.Transform] = [sitk.Euler3DTransform(rigid)]
    if deformation is not None:
        parts.append(deformation)
    return RegistrationResult(
        transform=sitk.CompositeTransform(parts),
        rigid=rigid,
        deformation=deformation,
        fixed_grid=full_grid,
        field_grid=field_grid,
        body_box=box_f,
        stages=tuple(stages),
        config=config,
    )
