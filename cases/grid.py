"""The platform's one voxel-grid type: size, spacing, origin and direction, without voxels.

Every place that needs to know *where* voxels are — the detector's resampling, the reading app's
display orientation, the study database's grid columns, the output manifest, the hit rule — holds
a :class:`Grid` (or a view of one) instead of its own set of tuples. Conventions are those of
:mod:`cases.volume`: DICOM/ITK **LPS** millimetres, geometry tuples in ITK order ``(x, y, z)``,
direction cosines row-major (column ``i`` of the 3 x 3 matrix is index axis ``i`` in LPS).

Voxel ↔ millimetre conversion is done here and nowhere else: :meth:`Grid.index_to_point_mm`
and :meth:`Grid.point_to_index` apply the affine map that SimpleITK defines for the grid (taken
from SimpleITK's own ``TransformContinuousIndexToPhysicalPoint`` once per grid, then applied to
any number of points with NumPy).

:func:`read_grid` reads a grid from a file header (NIfTI, MHA/MHD, NRRD) or from the headers of
a DICOM series folder without decoding any pixel data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

__all__ = ["Grid", "GridReadError", "read_grid", "GRID_ATOL_MM"]

#: Two grids agree when their origins and spacings differ by at most this much (mm).
GRID_ATOL_MM = 1e-3
_DIRECTION_ATOL = 1e-4
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class GridReadError(ValueError):
    """A grid cannot be read from a file or folder header; the message names the path."""


@dataclass(frozen=True)
class Grid:
    """A voxel grid without voxels.

    Parameters
    ----------
    size : number of voxels along the index axes ``(x, y, z)``.
    spacing_mm : voxel spacing ``(x, y, z)``, mm.
    origin_mm : LPS position of the centre of voxel ``(0, 0, 0)``, mm.
    direction : 3 x 3 direction cosines, row-major, as SimpleITK gives them.
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "spacing_mm", tuple(float(v) for v in self.spacing_mm))
        object.__setattr__(self, "origin_mm", tuple(float(v) for v in self.origin_mm))
        object.__setattr__(self, "direction", tuple(float(v) for v in np.asarray(self.direction, dtype=float).ravel()))
        if len(self.size) != 3 or min(self.size) < 1:
            raise ValueError(f"A grid's size must be three positive voxel counts (x, y, z), got {self.size}.")
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            raise ValueError(f"A grid's spacing_mm must be three positive numbers (x, y, z), got {self.spacing_mm}.")
        if len(self.origin_mm) != 3:
            raise ValueError(f"A grid's origin_mm must be three numbers (x, y, z), got {self.origin_mm}.")
        if len(self.direction) != 9:
            raise ValueError(f"A grid's direction must hold 9 numbers (a 3 x 3 matrix), got {len(self.direction)}.")

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def of(cls, obj: Any) -> "Grid":
        """The grid of a :class:`cases.Volume`, a SimpleITK image or anything with the grid's fields.

        Accepts objects with ``size`` or ``size_xyz`` plus ``spacing_mm``, ``origin_mm`` and
        ``direction`` (``Volume``, ``LabelVolume``, the study database's grid views), and
        SimpleITK images (3-D, or 4-D with one time point).
        """
        if isinstance(obj, Grid):
            return obj
        if isinstance(obj, sitk.Image):
            dim = obj.GetDimension()
            if dim < 3:
                raise ValueError(f"A {dim}-D image has no 3-D grid.")
            direction = np.asarray(obj.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
            return cls(obj.GetSize()[:3], obj.GetSpacing()[:3], obj.GetOrigin()[:3], tuple(direction.ravel()))
        size = getattr(obj, "size_xyz", None)
        if size is None:
            size = getattr(obj, "size")
        return cls(size, obj.spacing_mm, obj.origin_mm, obj.direction)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Grid":
        """Inverse of :meth:`to_dict` (JSON manifests, the study lock)."""
        try:
            return cls(data["size"], data["spacing_mm"], data["origin_mm"], data.get("direction", _IDENTITY))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"A grid record needs size, spacing_mm, origin_mm and direction; got {dict(data)!r} ({exc}).") from None

    def to_dict(self) -> dict[str, list]:
        """JSON-ready ``{"size", "spacing_mm", "origin_mm", "direction"}``."""
        return {"size": list(self.size), "spacing_mm": list(self.spacing_mm), "origin_mm": list(self.origin_mm), "direction": list(self.direction)}

    # --- shape --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(n_z, n_y, n_x)`` of a volume on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.size, dtype=np.int64))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    @property
    def direction_matrix(self) -> np.ndarray:
        """3 x 3 direction cosines; column ``i`` is index axis ``i`` (x, y, z) in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    # --- voxel <-> mm (the one place) -------------------------------------------------------
    def reference_image(self, pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
        """A 1 x 1 x 1 SimpleITK image with this grid's spacing, origin and direction (no voxels of the grid allocated)."""
        image = sitk.Image([1, 1, 1], pixel_type)
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image

    def _affine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, o, A^-1)`` with ``point = o + A @ index``, as SimpleITK maps continuous indices to points."""
        cached = self._cache.get("affine")
        if cached is None:
            cached = _sitk_affine(self.spacing_mm, self.origin_mm, self.direction)
            self._cache["affine"] = cached
        return cached

    def index_to_point_mm(self, index_xyz: Sequence[float] | np.ndarray) -> np.ndarray:
        """LPS point(s), mm, of (fractional) voxel indices in ITK order ``(x, y, z)``: shape (3,) or (n, 3)."""
        matrix, origin, _ = self._affine()
        idx = np.asarray(index_xyz, dtype=float)
        return idx @ matrix.T + origin

    def point_to_index(self, point_mm: Sequence[float] | np.ndarray) -> np.ndarray:
        """Continuous voxel index ``(x, y, z)`` of LPS point(s), mm: shape (3,) or (n, 3)."""
        _, origin, inverse = self._affine()
        p = np.asarray(point_mm, dtype=float) - origin
        return p @ inverse.T

    def nearest_index(self, point_mm: Sequence[float]) -> tuple[int, int, int] | None:
        """The index ``(x, y, z)`` of the voxel containing an LPS point, or None outside the grid."""
        idx = np.floor(self.point_to_index(point_mm) + 0.5).astype(int)
        if np.any(idx < 0) or np.any(idx >= np.asarray(self.size)):
            return None
        return int(idx[0]), int(idx[1]), int(idx[2])

    def contains_point(self, point_mm: Sequence[float]) -> bool:
        """Whether an LPS point lies inside the grid (within half a voxel of the outer voxel centres)."""
        idx = self.point_to_index(point_mm)
        return bool(np.all(idx >= -0.5) and np.all(idx <= np.asarray(self.size) - 0.5))

    def mask_points_mm(self, mask_zyx: np.ndarray) -> np.ndarray:
        """LPS centres (n, 3), mm, of the non-zero voxels of a boolean array on this grid."""
        if tuple(mask_zyx.shape) != self.shape:
            raise ValueError(f"The mask's shape {tuple(mask_zyx.shape)} is not this grid's (z, y, x) shape {self.shape}.")
        return self.index_to_point_mm(np.argwhere(mask_zyx)[:, ::-1])

    # --- comparison ---------------------------------------------------------------------------
    def mismatch(self, other: Any, *, atol_mm: float = GRID_ATOL_MM) -> str | None:
        """What differs between this grid and ``other`` (any object :meth:`of` accepts), or None when they agree."""
        o = Grid.of(other)
        if self.size != o.size:
            return f"size {self.size} vs {o.size}"
        if not np.allclose(self.spacing_mm, o.spacing_mm, rtol=1e-5, atol=atol_mm):
            return f"spacing {_fmt(self.spacing_mm)} vs {_fmt(o.spacing_mm)} mm"
        if not np.allclose(self.origin_mm, o.origin_mm, rtol=1e-5, atol=atol_mm):
            return f"origin {_fmt(self.origin_mm)} vs {_fmt(o.origin_mm)} mm"
        if not np.allclose(self.direction, o.direction, atol=_DIRECTION_ATOL):
            return f"direction {_fmt(self.direction)} vs {_fmt(o.direction)}"
        return None

    def agrees(self, other: Any, *, atol_mm: float = GRID_ATOL_MM) -> bool:
        """Whether ``other`` is the same grid (size exactly; spacing, origin and direction within tolerance)."""
        return self.mismatch(other, atol_mm=atol_mm) is None

    def resampler(self, interpolator: int, default_value: float, output_pixel_type: int = sitk.sitkUnknown) -> sitk.ResampleImageFilter:
        """A SimpleITK resample filter that writes onto this grid (no reference image of its size is allocated)."""
        f = sitk.ResampleImageFilter()
        f.SetSize([int(s) for s in self.size])
        f.SetOutputSpacing(self.spacing_mm)
        f.SetOutputOrigin(self.origin_mm)
        f.SetOutputDirection(self.direction)
        f.SetInterpolator(interpolator)
        f.SetDefaultPixelValue(float(default_value))
        if output_pixel_type != sitk.sitkUnknown:
            f.SetOutputPixelType(output_pixel_type)
        return f

    def __str__(self) -> str:
        return f"{'x'.join(map(str, self.size))} voxels of {_fmt(self.spacing_mm)} mm at {_fmt(self.origin_mm)} mm"


@lru_cache(maxsize=4096)
def _sitk_affine(
    spacing_mm: tuple[float, ...], origin_mm: tuple[float, ...], direction: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SimpleITK's index -> point map of a grid geometry, as a matrix, an offset and the inverse matrix
    (once per distinct geometry: asking SimpleITK costs a few hundred microseconds)."""
    image = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    image.SetSpacing(spacing_mm)
    image.SetOrigin(origin_mm)
    image.SetDirection(direction)
    origin = np.asarray(image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, 0.0)), dtype=float)
    columns = [
        np.asarray(image.TransformContinuousIndexToPhysicalPoint(tuple(float(i == k) for i in range(3))), dtype=float) - origin for k in range(3)
    ]
    matrix = np.column_stack(columns)
    for array in (matrix, origin):
        array.setflags(write=False)
    inverse = np.linalg.inv(matrix)
    inverse.setflags(write=False)
    return matrix, origin, inverse


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")


def read_grid(path: str | Path, *, series_uid: str | None = None) -> Grid:
    """The voxel grid of an exam or image, from headers only (no pixel data is decoded).

    Parameters
    ----------
    path : a NIfTI/MHA/MHD/NRRD file, a DICOM series folder, or one DICOM file of a series.
    series_uid : the series to use when a DICOM folder holds several.

    Raises
    ------
    GridReadError
        The path does not exist, is not an image, is 2-D, or its DICOM folder holds no series
        (or several and none chosen); the message names the path.
    """
    path = Path(path)
    if not path.exists():
        raise GridReadError(f"{path}: not found; give an image file (.nii, .nii.gz, .mha, .nrrd) or a DICOM series folder.")
    if path.is_file() and path.name.lower().endswith(_IMAGE_SUFFIXES):
        return _file_grid(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and series_uid is None:
        try:
            import pydicom

            series_uid = str(pydicom.dcmread(str(path), stop_before_pixels=True).get("SeriesInstanceUID", "")) or None
        except Exception:  # noqa: BLE001 - pydicom raises many unrelated types for non-DICOM files
            raise GridReadError(f"{path}: neither a DICOM file nor an image file ({', '.join(_IMAGE_SUFFIXES)}).") from None
    return _dicom_grid(folder, series_uid)


def _file_grid(path: Path) -> Grid:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise GridReadError(f"{path}: its header cannot be read ({last}); the file may be truncated or not an image.") from None
    dim = reader.GetDimension()
    size = reader.GetSize()
    if dim < 3 or (dim == 4 and size[3] != 1) or dim > 4:
        raise GridReadError(f"{path}: a {dim}-D image of size {size}, not a 3-D volume.")
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    return Grid(size[:3], reader.GetSpacing()[:3], reader.GetOrigin()[:3], tuple(direction.ravel()))


def _dicom_grid(folder: Path, series_uid: str | None) -> Grid:
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not ids:
        raise GridReadError(f"{folder}: no DICOM series found; point to the folder that holds the exam's .dcm files.")
    if series_uid is None:
        if len(ids) > 1:
            raise GridReadError(f"{folder} holds {len(ids)} DICOM series ({', '.join(ids)}); choose one by SeriesInstanceUID.")
        series_uid = ids[0]
    elif series_uid not in ids:
        raise GridReadError(f"{folder}: no series with SeriesInstanceUID {series_uid}; series present: {', '.join(ids)}.")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)  # ordered along the slice normal
    if len(files) < 2:
        raise GridReadError(f"{folder}: series {series_uid} has a single slice, a 2-D image; a CT exam is a 3-D series.")
    first, last = (_slice_info(f) for f in (files[0], files[-1]))
    origin = np.asarray(first.GetOrigin()[:3], dtype=float)
    direction = np.asarray(first.GetDirection(), dtype=float).reshape(first.GetDimension(), first.GetDimension())[:3, :3]
    step = float(np.dot(np.asarray(last.GetOrigin()[:3], dtype=float) - origin, direction[:, 2])) / (len(files) - 1)
    if step < 0:  # slices run against the normal: flip the third axis, as SimpleITK's series reader does
        direction[:, 2] *= -1.0
        step = -step
    size = (int(first.GetSize()[0]), int(first.GetSize()[1]), len(files))
    return Grid(size, (first.GetSpacing()[0], first.GetSpacing()[1], step), tuple(origin), tuple(direction.ravel()))


def _slice_info(file: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise GridReadError(f"{file}: not a readable DICOM slice; remove it from the folder or replace it with an intact copy.") from None
    return reader
