"""Volumes that always carry their geometry.

Every image that moves between the platform's packages is a :class:`Volume` (intensities, in HU
for CT) or a :class:`LabelVolume` (integer masks and label maps). Both hold a NumPy array in
SimpleITK's index order ``(z, y, x)`` together with the physical geometry needed to place each
voxel in the patient: spacing, origin and direction cosines, all in DICOM/ITK **LPS** patient
coordinates and millimetres. Geometry tuples (``spacing_mm``, ``origin_mm``) are in ITK order
``(x, y, z)``; only the array is ``(z, y, x)``.

Convert to and from SimpleITK with :meth:`Volume.to_sitk` and :meth:`Volume.from_sitk`; map
voxel indices to points with :meth:`Volume.index_to_point_mm`, which delegates to SimpleITK.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from .grid import Grid

__all__ = ["Volume", "LabelVolume", "GeometryMismatchError"]


class GeometryMismatchError(ValueError):
    """Two volumes that must share a voxel grid do not."""


def _orientation_code(direction: np.ndarray) -> str:
    """Three-letter LPS orientation code of each array axis (x, y, z), e.g. ``'LPS'``."""
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    code = ""
    for axis in range(3):
        column = direction[:, axis]
        dominant = int(np.argmax(np.abs(column)))
        code += letters[dominant][0 if column[dominant] > 0 else 1]
    return code


@dataclass(eq=False)
class Volume:
    """A 3-D image with its geometry (intensities; HU for CT).

    Parameters
    ----------
    array : ndarray of shape (n_z, n_y, n_x)
        Voxel values in SimpleITK index order. CT volumes are float32 HU.
    spacing_mm : (x, y, z) voxel spacing in mm.
    origin_mm : (x, y, z) centre of the first voxel in LPS patient coordinates, mm.
    direction : 3x3 direction cosines (columns are the x, y, z index axes in LPS), row-major
        flattened to 9 numbers as SimpleITK does.
    metadata : free-form provenance (DICOM header fields, generator parameters).
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(
                f"A volume must be 3-D (z, y, x), but this array is {self.array.ndim}-D with shape "
                f"{self.array.shape}. For a single slice, add a slice axis: array[None]."
            )
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)  # type: ignore[assignment]
        self.origin_mm = tuple(float(o) for o in self.origin_mm)  # type: ignore[assignment]
        self.direction = tuple(float(d) for d in np.asarray(self.direction).ravel())
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be three positive numbers (x, y, z), got {self.spacing_mm}")
        if len(self.origin_mm) != 3:
            raise ValueError(f"origin_mm must be three numbers (x, y, z), got {self.origin_mm}")
        if len(self.direction) != 9:
            raise ValueError(f"direction must hold 9 numbers (a 3x3 matrix), got {len(self.direction)}")

    # --- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(n_z, n_y, n_x)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def size(self) -> tuple[int, int, int]:
        """Grid size in ITK order ``(n_x, n_y, n_z)``."""
        return tuple(reversed(self.array.shape))  # type: ignore[return-value]

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction cosine matrix; column ``i`` is index axis ``i`` (x, y, z) in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def orientation(self) -> str:
        """Orientation code of the index axes in LPS terms, e.g. ``'LPS'`` for a standard axial CT."""
        return _orientation_code(self.direction_matrix)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        return float(np.prod(self.spacing_mm))

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Physical extent of the grid along x, y, z in mm (size × spacing)."""
        return tuple(n * s for n, s in zip(self.size, self.spacing_mm))  # type: ignore[return-value]

    @property
    def grid(self) -> Grid:
        """The volume's voxel grid (:class:`cases.Grid`), where every voxel <-> mm conversion lives."""
        return Grid(self.size, self.spacing_mm, self.origin_mm, self.direction)

    def index_to_point_mm(self, index_xyz: Sequence[float]) -> np.ndarray:
        """LPS point (mm) of a (possibly fractional) voxel index given in ITK order ``(x, y, z)`` (:meth:`Grid.index_to_point_mm`)."""
        return self.grid.index_to_point_mm(index_xyz)

    def point_to_index(self, point_mm: Sequence[float]) -> np.ndarray:
        """Continuous voxel index ``(x, y, z)`` of an LPS point in mm (inverse of :meth:`index_to_point_mm`)."""
        return self.grid.point_to_index(point_mm)

    def contains_point(self, point_mm: Sequence[float]) -> bool:
        """Whether an LPS point lies inside the grid (within half a voxel of the outer voxel centres)."""
        return self.grid.contains_point(point_mm)

    def same_space(self, other: "Volume", *, rtol: float = 1e-5, atol_mm: float = 1e-3) -> bool:
        """Whether ``other`` lies on the same voxel grid (size, spacing, origin, direction)."""
        return (
            self.size == other.size
            and np.allclose(self.spacing_mm, other.spacing_mm, rtol=rtol, atol=atol_mm)
            and np.allclose(self.origin_mm, other.origin_mm, rtol=rtol, atol=atol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )

    def check_same_space(self, other: "Volume", *, names: tuple[str, str] = ("first", "second")) -> None:
        """Raise :class:`GeometryMismatchError` naming what differs when grids do not match."""
        if self.same_space(other):
            return
        diffs = []
        for attr in ("size", "spacing_mm", "origin_mm", "direction"):
            a, b = getattr(self, attr), getattr(other, attr)
            if not np.allclose(a, b, atol=1e-3):
                diffs.append(f"{attr}: {names[0]}={_fmt(a)} {names[1]}={_fmt(b)}")
        raise GeometryMismatchError(
            f"The {names[0]} and {names[1]} volumes are not on the same voxel grid ("
            + "; ".join(diffs)
            + "). Resample one onto the other first, e.g. second.resample_to(first)."
        )

    # --- conversion -----------------------------------------------------------------------
    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image with the same voxels and geometry (the array is copied)."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, *, metadata: dict[str, Any] | None = None) -> "Volume":
        """Wrap a 3-D SimpleITK image (the voxels are copied into a NumPy array)."""
        if image.GetDimension() != 3:
            raise ValueError(f"Expected a 3-D image, got a {image.GetDimension()}-D one of size {image.GetSize()}.")
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing_mm=image.GetSpacing(),
            origin_mm=image.GetOrigin(),
            direction=image.GetDirection(),
            metadata=dict(metadata or {}),
        )

    def with_array(self, array: np.ndarray, **metadata: Any) -> "Volume":
        """A new volume of the same type and geometry holding ``array`` (same shape)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"with_array needs shape {self.array.shape}, got {array.shape}")
        return replace(self, array=array, metadata={**self.metadata, **metadata})

    def like(self, array: np.ndarray, cls: type["Volume"] | None = None) -> "Volume":
        """A volume of type ``cls`` (default: same type) on this grid, with empty metadata."""
        return (cls or type(self))(array, self.spacing_mm, self.origin_mm, self.direction)

    def resample_to(self, reference: "Volume", *, default_value: float | None = None) -> "Volume":
        """This volume resampled onto ``reference``'s grid (linear; nearest for label volumes)."""
        interpolator = sitk.sitkNearestNeighbor if isinstance(self, LabelVolume) else sitk.sitkLinear
        if default_value is None:
            default_value = 0.0 if isinstance(self, LabelVolume) else float(np.min(self.array))
        out = sitk.Resample(self.to_sitk(), reference.to_sitk(), sitk.Transform(), interpolator, default_value)
        return type(self).from_sitk(out, metadata=self.metadata)

    def __repr__(self) -> str:
        kind = type(self).__name__
        mib = self.array.nbytes / 2**20
        return (
            f"{kind}(shape(z,y,x): {self.shape}; spacing(x,y,z): "
            f"({', '.join(f'{s:.2f}' for s in self.spacing_mm)}) mm; orientation: {self.orientation}; "
            f"dtype: {self.array.dtype}; memory: {mib:.1f} MiB)"
        )


class LabelVolume(Volume):
    """An integer mask or label map on a voxel grid; resampled with nearest neighbour."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.issubdtype(self.array.dtype, np.integer) or self.array.dtype == bool):
            raise ValueError(
                f"A label volume holds integers or booleans, got dtype {self.array.dtype}. Round and cast it first, e.g. array.astype(np.uint8)."
            )
        if self.array.dtype == bool:
            self.array = self.array.astype(np.uint8)

    def mask(self, label: int | None = None) -> np.ndarray:
        """Boolean array of voxels with ``label`` (any non-zero label when ``None``)."""
        return self.array != 0 if label is None else self.array == label


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return str(value)
