"""Grid helpers shared by the detector's stages: body crop, block downsampling, grids.

All geometry is DICOM/ITK LPS in millimetres, as everywhere in the platform. Arrays are in
SimpleITK index order ``(z, y, x)``; sizes, spacings and origins are in ITK order ``(x, y, z)``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from cases import Grid as _CasesGrid
from cases import LabelVolume as LabelVolume  # re-exported for the detector's modules
from cases import Volume
from cases.bone import BODY_THRESHOLD_HU, block_factors  # one definition each
from cases.bone import label_like as label_like  # re-exported for the detector's modules
from cases.bone import mask_bounding_box as mask_bounding_box  # re-exported for the detector's modules

#: The detector's voxel grid is the platform's one grid type (:class:`cases.Grid`).
Grid = _CasesGrid


def block_mean(image: sitk.Image, target_mm: float) -> sitk.Image:
    """Downsample by averaging non-overlapping blocks (``BinShrink``) to about ``target_mm`` spacing.

    Block averaging is a cheap anti-aliasing filter: one pass over the full-resolution voxels,
    against two recursive Gaussian passes for smoothing-then-resampling. The output origin moves
    to the centre of the first block, which SimpleITK accounts for.
    """
    factors = block_factors(image.GetSpacing(), target_mm)
    if all(f == 1 for f in factors):
        return image
    return sitk.BinShrink(image, factors)


def body_bounding_box(volume: Volume, *, margin_mm: float) -> tuple[slice, slice, slice]:
    """Array slices ``(z, y, x)`` of the body's bounding box plus ``margin_mm``.

    The body is the largest connected component above ``BODY_THRESHOLD_HU``, found on a
    4-fold block-averaged copy so that the search costs a fraction of a second. When no body is
    found (an empty or all-air image) the whole grid is returned.
    """
    image = volume.to_sitk() if volume.array.dtype == np.float32 else sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    factors = [max(1, min(4, s // 16)) for s in image.GetSize()]
    small = sitk.BinShrink(image, factors)
    arr = sitk.GetArrayViewFromImage(small) > BODY_THRESHOLD_HU
    labels, n = ndi.label(arr)
    if n == 0:
        return (slice(0, volume.shape[0]), slice(0, volume.shape[1]), slice(0, volume.shape[2]))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    fz, fy, fx = factors[2], factors[1], factors[0]
    out = []
    for axis, (f, n_full) in enumerate(zip((fz, fy, fx), volume.shape)):
        proj = np.any(largest, axis=tuple(a for a in range(3) if a != axis))
        idx = np.nonzero(proj)[0]
        spacing = volume.spacing_mm[2 - axis]
        margin = int(np.ceil(margin_mm / spacing))
        lo = max(0, int(idx[0]) * f - margin)
        hi = min(n_full, (int(idx[-1]) + 1) * f + margin)
        out.append(slice(lo, hi))
    return tuple(out)  # type: ignore[return-value]


def crop(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The sub-volume ``volume.array[box]`` with its origin moved to the box's first voxel."""
    start_xyz = (box[2].start, box[1].start, box[0].start)
    origin = tuple(float(v) for v in volume.index_to_point_mm(start_xyz))
    return type(volume)(volume.array[box], volume.spacing_mm, origin, volume.direction, dict(volume.metadata))
