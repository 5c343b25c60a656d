"""Temporal subtraction: current minus warped prior, plain and voxel-matched, inside bone.

Plain subtraction ``current - warped_prior`` keeps every change, and every misregistration: a
0.3 mm error at a 1000 HU/mm cortical edge leaves a 300 HU artifact. **Voxel matching** (Itai et
al. 2010) compares each current voxel with the *range* of warped-prior values in a small
neighbourhood instead of the single value at the same place: the current value is clipped into
``[min_K(prior), max_K(prior)]`` and only the part outside that range is kept,

    vm = current - clip(current, min_K(warped_prior), max_K(warped_prior)),

which is zero wherever a slightly shifted prior could explain the current value. Itai et al.
match against the closest of the neighbourhood's voxel *values*; the range form used here also
admits the values in between (a prior sampled at an intermediate position), as the issue
specifies, and costs two separable min/max filters. With
``symmetric=True`` the prior is also matched against the current's neighbourhood range and the
smaller change of the same sign is kept (Tanaka et al. 2020).

The neighbourhood ``K`` is a box of ``(2 r_x + 1) x (2 r_y + 1) x (2 r_z + 1)`` voxels. A large
box also matches away real lesions, because the trabecular texture spreads the prior's range
over ±60 HU. Measured on 8 small and 2 clinical-size synthetic pairs (docs/detector.md): plain
subtraction kept 99-101 % of the lytic change; 3x3x1 kept 62-67 % while cutting the artifact
level in bone about four-fold; 3x3x3 kept 43-55 %; symmetric matching kept 26-33 % or less.
The ``"adaptive"`` kernel follows Tanaka et al. 2020: in-plane 3x3, and along z only as far as
half the prior's slice spacing reaches beyond the current's (thick prior slices), never for
thick current slices (see :func:`adaptive_kernel_radius`).

Everything outside the bone ROI is set to 0: the subtraction is read in bone only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from ._errors import DetectorInputError
from ._geometry import mask_bounding_box

__all__ = ["SubtractionImages", "temporal_subtraction", "adaptive_kernel_radius"]

KernelSpec = Union[str, int, Sequence[int]]


@dataclass(frozen=True, eq=False)
class SubtractionImages:
    """The temporal subtraction images of one prior/current pair, on the current exam's grid.

    Attributes
    ----------
    plain : current − warped prior, HU (float32), 0 outside the bone ROI.
    voxel_matched : voxel-matched subtraction, HU (float32), 0 outside the bone ROI.
    bone_roi : the region where both are computed (None: the whole grid).
    kernel_radius_vox : voxel-matching half-widths ``(r_x, r_y, r_z)`` in voxels.
    symmetric : whether the symmetric (two-sided) matching was used.
    """

    plain: Volume
    voxel_matched: Volume
    bone_roi: LabelVolume | None
    kernel_radius_vox: tuple[int, int, int]
    symmetric: bool

    @property
    def kernel_size_vox(self) -> tuple[int, int, int]:
        """Kernel size ``(x, y, z)`` in voxels, e.g. ``(3, 3, 1)``."""
        return tuple(2 * r + 1 for r in self.kernel_radius_vox)  # type: ignore[return-value]

    def summary(self) -> str:
        """One line per image: mean |value| and 1st/99th percentile inside the ROI."""
        roi = self.bone_roi.array != 0 if self.bone_roi is not None else np.ones(self.plain.shape, bool)
        lines = []
        for name, vol in (("plain", self.plain), ("voxel-matched", self.voxel_matched)):
            v = vol.array[roi]
            if v.size:
                lines.append(f"{name}: mean |Δ| {np.abs(v).mean():.1f} HU, p1 {np.percentile(v, 1):.0f} HU, p99 {np.percentile(v, 99):.0f} HU")
        k = "x".join(map(str, self.kernel_size_vox))
        lines.append(f"voxel-matching kernel {k} voxels (x, y, z){', symmetric' if self.symmetric else ''}")
        return "\n".join(lines)


def adaptive_kernel_radius(current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float] | None = None) -> tuple[int, int, int]:
    """Voxel-matching half-widths ``(r_x, r_y, r_z)`` from the two exams' voxel spacings.

    The search reaches half the coarser exam's spacing along each axis, rounded to whole voxels
    of the current grid: ``r = round(max(s_prior, s_current) / (2 s_current))``, with halves
    rounded down (so equal spacings give 0, a prior twice as coarse gives 1) and at least 1
    in-plane (x, y). Thick current slices therefore never search along z unless the prior's
    slices are thicker still.
    """
    cur = np.asarray(current_spacing_mm, dtype=float)
    pri = cur if prior_spacing_mm is None else np.asarray(prior_spacing_mm, dtype=float)
    if cur.shape != (3,) or pri.shape != (3,) or np.any(cur <= 0) or np.any(pri <= 0):
        raise DetectorInputError(f"Spacings must be three positive numbers (x, y, z) in mm, got {tuple(cur)} and {tuple(pri)}.")
    ratio = np.maximum(pri, cur) / (2.0 * cur)
    r = np.ceil(ratio - 0.5 - 1e-9).astype(int)
    r = np.maximum(r, 0)
    r[:2] = np.maximum(r[:2], 1)
    return tuple(int(v) for v in r)  # type: ignore[return-value]


def _kernel_radius(kernel: KernelSpec, current: Volume, prior_spacing_mm: Sequence[float] | None) -> tuple[int, int, int]:
    if isinstance(kernel, str):
        if kernel == "adaptive":
            return adaptive_kernel_radius(current.spacing_mm, prior_spacing_mm)
        if kernel == "none":
            return (0, 0, 0)
        raise DetectorInputError(f"kernel must be 'adaptive', 'none', an integer radius or (r_x, r_y, r_z) in voxels; got {kernel!r}.")
    if isinstance(kernel, (int, np.integer)):
        radius = (int(kernel),) * 3
    else:
        radius = tuple(int(k) for k in kernel)
    if len(radius) != 3 or min(radius) < 0:
        raise DetectorInputError(f"kernel radius must be three non-negative integers (r_x, r_y, r_z) in voxels, got {kernel!r}.")
    return radius  # type: ignore[return-value]


def _voxel_match(current: np.ndarray, prior: np.ndarray, size_zyx: tuple[int, int, int], symmetric: bool) -> np.ndarray:
    if size_zyx == (1, 1, 1):
        return current - prior
    lo = ndi.minimum_filter(prior, size=size_zyx, mode="nearest")
    hi = ndi.maximum_filter(prior, size=size_zyx, mode="nearest")
    forward = current - np.clip(current, lo, hi)
    del lo, hi
    if not symmetric:
        return forward
    lo = ndi.minimum_filter(current, size=size_zyx, mode="nearest")
    hi = ndi.maximum_filter(current, size=size_zyx, mode="nearest")
    backward = np.clip(prior, lo, hi) - prior
    del lo, hi
    same_sign = np.sign(forward) == np.sign(backward)
    return np.where(same_sign, np.where(np.abs(forward) < np.abs(backward), forward, backward), 0.0).astype(np.float32)


def temporal_subtraction(
    current: Volume,
    warped_prior: Volume,
    *,
    bone_roi: LabelVolume | None = None,
    kernel: KernelSpec = "adaptive",
    prior_spacing_mm: Sequence[float] | None = None,
    symmetric: bool = False,
) -> SubtractionImages:
    """Plain and voxel-matched temporal subtraction of two registered exams.

    Parameters
    ----------
    current : the current CT in HU.
    warped_prior : the prior CT warped onto ``current``'s grid (``RegistrationResult.warp``).
    bone_roi : where to compute (1 = inside); both images are 0 outside. None: everywhere.
    kernel : voxel-matching neighbourhood: ``"adaptive"`` (default, from the voxel spacings, see
        :func:`adaptive_kernel_radius`), ``"none"`` (voxel-matched = plain), an integer radius, or
        ``(r_x, r_y, r_z)`` half-widths in voxels (``(1, 1, 0)`` is a 3x3x1 kernel).
    prior_spacing_mm : the prior exam's original spacing (x, y, z), for the adaptive kernel;
        None means the same as the current's.
    symmetric : also match the prior against the current's neighbourhood (Tanaka et al. 2020).

    Returns
    -------
    SubtractionImages

    Raises
    ------
    DetectorInputError
        The two volumes (or the ROI) are not on the same grid, or the kernel is malformed.
    """
    for name, vol in (("current", current), ("warped_prior", warped_prior)):
        if not isinstance(vol, Volume) or isinstance(vol, LabelVolume):
            raise DetectorInputError(f"{name} must be a CT volume in HU (cases.Volume).")
    if not current.same_space(warped_prior):
        raise DetectorInputError(
            "The warped prior is not on the current exam's grid; warp it first with "
            "RegistrationResult.warp(prior) (sizes "
            f"{current.size} and {warped_prior.size})."
        )
    if bone_roi is not None and not current.same_space(bone_roi):
        raise DetectorInputError("The bone ROI is not on the current exam's grid; resample it with bone_roi.resample_to(current).")
    radius = _kernel_radius(kernel, current, prior_spacing_mm)
    size_zyx = (2 * radius[2] + 1, 2 * radius[1] + 1, 2 * radius[0] + 1)
    plain = np.zeros(current.shape, dtype=np.float32)
    matched = np.zeros(current.shape, dtype=np.float32)
    if bone_roi is None:
        box: tuple[slice, ...] | None = (slice(None),) * 3
        roi = None
    else:
        roi = bone_roi.array != 0
        box = mask_bounding_box(roi, margin_vox=(radius[2], radius[1], radius[0]))
    if box is not None:
        cur = current.array[box].astype(np.float32, copy=False)
        pri = warped_prior.array[box].astype(np.float32, copy=False)
        d_plain = cur - pri
        d_vm = _voxel_match(cur, pri, size_zyx, symmetric)
        if roi is not None:
            inside = roi[box]
            d_plain[~inside] = 0.0
            d_vm[~inside] = 0.0
        plain[box] = d_plain
        matched[box] = d_vm
    meta = {"kind": "temporal subtraction", "units": "HU"}
    return SubtractionImages(
        plain=current.like(plain).with_array(plain, **meta),
        voxel_matched=current.like(matched).with_array(matched, **meta, voxel_matching_radius_xyz=list(radius)),
        bone_roi=bone_roi,
        kernel_radius_vox=radius,
        symmetric=symmetric,
    )
