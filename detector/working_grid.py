"""The networks' working grid: an isotropic grid over the bone ROI of one exam.

The z-score networks run on a fixed isotropic grid (1.5 mm by default, recorded in each bundle's
metadata): the exam, the warped prior and the ROI are resampled onto it (with Gaussian
anti-aliasing when the exam is finer) and the outputs are interpolated back onto the exam's grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from cases import Grid, Volume

from ._geometry import mask_bounding_box

__all__ = ["WORKING_SPACING_MM", "WorkingGrid", "make_working_grid", "to_working_grid", "from_working_grid"]

#: Default working-grid spacing of the networks, mm (isotropic).
WORKING_SPACING_MM = 1.5


@dataclass(frozen=True)
class WorkingGrid:
    """The network's grid over one pair: an ROI bounding box resampled to the working spacing.

    Attributes
    ----------
    box : array slices (z, y, x) of the native crop the working grid covers.
    origin_mm : LPS position of the crop's first voxel (also the working grid's origin), mm.
    direction : direction cosines of both grids (the current exam's).
    reference : SimpleITK image (empty, uint8) defining the working grid.
    """

    box: tuple[slice, slice, slice]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    reference: sitk.Image

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.reference.GetSize()
        return (s[2], s[1], s[0])

    @property
    def grid(self) -> Grid:
        """The working grid as the platform's :class:`cases.Grid`."""
        return Grid.of(self.reference)


def make_working_grid(current: Volume, roi: np.ndarray, spacing_mm: float, margin_mm: float) -> WorkingGrid | None:
    """The working grid covering ``roi`` plus ``margin_mm``, in the current exam's orientation.

    None when the ROI is empty. The grid starts at the first voxel of the native crop, so when the
    native spacing equals the working spacing the two grids coincide.
    """
    margin_vox = tuple(int(math.ceil(margin_mm / s)) for s in reversed(current.spacing_mm))
    box = mask_bounding_box(roi, margin_vox=margin_vox)  # type: ignore[arg-type]
    if box is None:
        return None
    start_xyz = (box[2].start, box[1].start, box[0].start)
    origin = current.index_to_point_mm(start_xyz)
    n_native = (box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start)
    extent = [(n - 1) * s for n, s in zip(n_native, current.spacing_mm)]
    size = [int(math.floor(e / spacing_mm + 1e-6)) + 1 for e in extent]
    ref = sitk.Image([max(1, s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing((spacing_mm,) * 3)
    ref.SetOrigin(tuple(float(o) for o in origin))
    ref.SetDirection(current.direction)
    return WorkingGrid(box=box, origin_mm=tuple(float(o) for o in origin), direction=tuple(current.direction), reference=ref)  # type: ignore[arg-type]


def _native_crop_image(array: np.ndarray, grid: WorkingGrid, spacing_mm: Sequence[float]) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array[grid.box], dtype=np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing_mm))
    img.SetOrigin(grid.origin_mm)
    img.SetDirection(grid.direction)
    return img


def to_working_grid(array: np.ndarray, grid: WorkingGrid, spacing_mm: Sequence[float], *, label: bool = False) -> np.ndarray:
    """Resample a native-grid array onto the working grid (linear; nearest for labels).

    Intensities are smoothed with a Gaussian of variance ``(w^2 - s^2) / 12`` along each axis
    finer than the working spacing ``w`` first (a box average of width ``w`` has that variance),
    so that downsampling does not alias noise.
    """
    img = _native_crop_image(array, grid, spacing_mm)
    w = grid.reference.GetSpacing()[0]
    if not label:
        var = [max(0.0, (w * w - s * s) / 12.0) for s in spacing_mm]
        if max(var) > 1e-6:
            img = sitk.DiscreteGaussian(img, variance=var, maximumKernelWidth=64, useImageSpacing=True)
        interp = sitk.sitkLinear
    else:
        interp = sitk.sitkNearestNeighbor
    out = sitk.Resample(img, grid.reference, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def from_working_grid(array: np.ndarray, grid: WorkingGrid, spacing_mm: Sequence[float], fill: float) -> np.ndarray:
    """Resample a working-grid array back onto the native crop (linear), values for ``grid.box``."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.CopyInformation(grid.reference)
    n = (grid.box[2].stop - grid.box[2].start, grid.box[1].stop - grid.box[1].start, grid.box[0].stop - grid.box[0].start)
    ref = sitk.Image([int(v) for v in n], sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(s) for s in spacing_mm))
    ref.SetOrigin(grid.origin_mm)
    ref.SetDirection(grid.direction)
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, float(fill), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)
