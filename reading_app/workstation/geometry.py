"""Where a pixel on the screen is in the patient: screen ↔ image ↔ voxel ↔ LPS millimetres.

Conventions (the same as the rest of the platform, see ``docs/architecture.md``):

* Patient coordinates are DICOM/ITK **LPS** millimetres; voxel indices are ITK order ``(x, y, z)``;
  arrays are ``(z, y, x)``.
* Before display, a volume is turned so that its index axes point to the patient's **L**\\ eft,
  **P**\\ osterior and **S**\\ uperior (:class:`DisplayGrid`): an axis permutation and flips of the
  array, never a resampling, so every displayed pixel is a stored voxel. Exams stored in another
  orientation (feet-first, flipped rows, sagittal acquisitions) are shown the radiological way.
* The three planes are shown in radiological convention: **axial** with anterior at the top and
  the patient's right on the left of the image; **coronal** with superior at the top and the
  patient's right on the left; **sagittal** with superior at the top and anterior on the left.
* **Slice numbers** ``s`` (0-based) run head → feet (axial), front → back (coronal) and
  right → left (sagittal): scrolling down moves down, back and to the patient's left.
* **Image coordinates** ``(u, v)`` are continuous and edge-based: the pixel in column ``c`` and
  row ``r`` covers ``[c, c+1) × [r, r+1)`` and its centre is ``(c + 0.5, r + 0.5)``.
* A pixel is ``du_mm × dv_mm`` (anisotropic in reformats: e.g. 0.75 mm wide and 2 mm high);
  :class:`ViewTransform` displays it with its true aspect ratio, scaled to fit the viewport, then
  zoomed about a centre point. The viewer's JavaScript places the image with the same formula,
  and sends clicks as screen positions, which are converted back here, so there is one source of
  truth for the geometry, tested in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .errors import ViewError

__all__ = ["PLANES", "DisplayGrid", "PlaneGeometry", "ViewTransform", "image_to_voxel", "voxel_to_image", "extract_slice"]

#: The planes the viewer shows, in the order of its plane buttons.
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")


def _check_plane(plane: str) -> str:
    if plane not in PLANES:
        raise ViewError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.")
    return plane


@dataclass(frozen=True)
class PlaneGeometry:
    """The size of one plane's images: ``n_slices`` images of ``n_u`` columns × ``n_v`` rows.

    ``du_mm`` and ``dv_mm`` are the width and height of one pixel; ``slice_spacing_mm`` the
    distance between neighbouring slices.
    """

    plane: str
    n_slices: int
    n_u: int
    n_v: int
    du_mm: float
    dv_mm: float
    slice_spacing_mm: float


def _plane_axes(plane: str) -> tuple[int, int, int]:
    """(slice axis, u axis, v axis) as ITK index axes 0=x, 1=y, 2=z."""
    return {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}[_check_plane(plane)]


def image_to_voxel(plane: str, size_xyz: Sequence[int], slice_index: float, u: float, v: float) -> np.ndarray:
    """Continuous voxel index ``(x, y, z)`` (voxel centres at whole numbers) of image point ``(u, v)`` on slice ``slice_index``.

    ``size_xyz`` is the size of the display-oriented grid (:class:`DisplayGrid`).
    """
    nz = int(size_xyz[2])
    if plane == "axial":
        return np.array([u - 0.5, v - 0.5, nz - 1 - slice_index], dtype=float)
    if plane == "coronal":
        return np.array([u - 0.5, slice_index, nz - 0.5 - v], dtype=float)
    if plane == "sagittal":
        return np.array([slice_index, u - 0.5, nz - 0.5 - v], dtype=float)
    _check_plane(plane)
    raise AssertionError  # pragma: no cover


def voxel_to_image(plane: str, size_xyz: Sequence[int], index_xyz: Sequence[float]) -> tuple[float, float, float]:
    """``(slice, u, v)`` of a continuous voxel index ``(x, y, z)`` (inverse of :func:`image_to_voxel`)."""
    x, y, z = (float(c) for c in index_xyz)
    nz = int(size_xyz[2])
    if plane == "axial":
        return nz - 1 - z, x + 0.5, y + 0.5
    if plane == "coronal":
        return y, x + 0.5, nz - 0.5 - z
    if plane == "sagittal":
        return x, y + 0.5, nz - 0.5 - z
    _check_plane(plane)
    raise AssertionError  # pragma: no cover


def extract_slice(array_zyx: np.ndarray, plane: str, slice_index: int) -> np.ndarray:
    """Slice ``slice_index`` of a display-oriented ``(z, y, x)`` array as a ``(rows, columns)`` image (a view, no copy).

    Raises :class:`ViewError` for an index outside ``0 .. n_slices - 1``.
    """
    nz, ny, nx = array_zyx.shape
    n = {"axial": nz, "coronal": ny, "sagittal": nx}[_check_plane(plane)]
    s = int(slice_index)
    if s != slice_index or not 0 <= s < n:
        raise ViewError(f"Slice {slice_index!r} is outside the {plane} images (0 to {n - 1}).")
    if plane == "axial":
        return array_zyx[nz - 1 - s]
    if plane == "coronal":
        return array_zyx[::-1, s, :]
    return array_zyx[::-1, :, s]


@dataclass(frozen=True)
class DisplayGrid:
    """A volume's geometry after turning its index axes to point L, P, S (see the module notes).

    Build it from a volume's header with :meth:`from_geometry` (no voxels needed) and turn arrays
    with :meth:`reorient`. ``perm[j]`` is the stored index axis that becomes display axis ``j`` and
    ``flip[j]`` whether it is reversed.
    """

    size_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    perm: tuple[int, int, int] = (0, 1, 2)
    flip: tuple[bool, bool, bool] = (False, False, False)

    @classmethod
    def from_geometry(
        cls,
        size_xyz: Sequence[int],
        spacing_mm: Sequence[float],
        origin_mm: Sequence[float],
        direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
    ) -> "DisplayGrid":
        """The display grid of a stored grid (ITK size, spacing, origin and row-major direction cosines)."""
        d = np.asarray(direction, dtype=float).reshape(3, 3)  # column i: stored index axis i in LPS
        size = [int(n) for n in size_xyz]
        spacing = [float(s) for s in spacing_mm]
        # Pair each patient axis (L, P, S) with the stored index axis closest to it, strongest first.
        perm = [-1, -1, -1]
        used: set[int] = set()
        for flat in np.argsort(-np.abs(d), axis=None, kind="stable"):
            j, i = divmod(int(flat), 3)
            if perm[j] == -1 and i not in used:
                perm[j] = i
                used.add(i)
        flip = [bool(d[j, perm[j]] < 0) for j in range(3)]
        first = [0.0, 0.0, 0.0]
        for j in range(3):
            if flip[j]:
                first[perm[j]] = size[perm[j]] - 1
        origin = np.asarray(origin_mm, dtype=float) + d @ (np.asarray(first) * np.asarray(spacing))
        new_d = np.column_stack([d[:, perm[j]] * (-1.0 if flip[j] else 1.0) for j in range(3)])
        return cls(
            size_xyz=(size[perm[0]], size[perm[1]], size[perm[2]]),
            spacing_mm=(spacing[perm[0]], spacing[perm[1]], spacing[perm[2]]),
            origin_mm=tuple(float(o) for o in origin),  # type: ignore[arg-type]
            direction=tuple(float(v) for v in new_d.ravel()),
            perm=(perm[0], perm[1], perm[2]),
            flip=(flip[0], flip[1], flip[2]),
        )

    @classmethod
    def from_grid(cls, grid) -> "DisplayGrid":  # noqa: ANN001 - cases.Grid
        """The display view of a stored :class:`cases.Grid`."""
        return cls.from_geometry(grid.size, grid.spacing_mm, grid.origin_mm, grid.direction)

    @classmethod
    def of(cls, volume) -> "DisplayGrid":  # noqa: ANN001 - cases.Volume
        """The display grid of a :class:`cases.Volume`."""
        return cls.from_grid(volume)

    @cached_property
    def grid(self):  # -> cases.Grid
        """The display-oriented grid as a :class:`cases.Grid` (for voxel <-> mm of display indices)."""
        from cases import Grid

        return Grid(self.size_xyz, self.spacing_mm, self.origin_mm, self.direction)

    @property
    def is_identity(self) -> bool:
        """Whether the stored array is already display-oriented (no copy needed)."""
        return self.perm == (0, 1, 2) and not any(self.flip)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return (self.size_xyz[2], self.size_xyz[1], self.size_xyz[0])

    def reorient(self, array_zyx: np.ndarray) -> np.ndarray:
        """A stored ``(z, y, x)`` array turned to display orientation (C-contiguous)."""
        if self.is_identity:
            return np.ascontiguousarray(array_zyx)
        xyz = np.asarray(array_zyx).transpose(2, 1, 0).transpose(self.perm)
        for j in range(3):
            if self.flip[j]:
                xyz = np.flip(xyz, axis=j)
        return np.ascontiguousarray(xyz.transpose(2, 1, 0))

    def index_to_point_mm(self, index_xyz: Sequence[float]) -> np.ndarray:
        """LPS point (mm) of a continuous display-grid index ``(x, y, z)`` (:meth:`cases.Grid.index_to_point_mm`)."""
        return self.grid.index_to_point_mm(index_xyz)

    def point_to_index(self, point_mm: Sequence[float]) -> np.ndarray:
        """Continuous display-grid index ``(x, y, z)`` of an LPS point (mm)."""
        return self.grid.point_to_index(point_mm)

    def plane(self, plane: str) -> PlaneGeometry:
        """The size of ``plane``'s images and of their pixels."""
        k, a, b = _plane_axes(plane)
        return PlaneGeometry(plane, self.size_xyz[k], self.size_xyz[a], self.size_xyz[b], self.spacing_mm[a], self.spacing_mm[b], self.spacing_mm[k])

    def slice_positions_mm(self, plane: str) -> np.ndarray:
        """Patient coordinate (mm) of each slice of ``plane`` along its normal (z for axial, y coronal, x sagittal), in slice order."""
        k, _, _ = _plane_axes(plane)
        n = self.size_xyz[k]
        index = np.tile((np.asarray(self.size_xyz, dtype=float) - 1.0) / 2.0, (n, 1))  # in-plane: the image centre
        s = np.arange(n, dtype=float)
        index[:, k] = (self.size_xyz[2] - 1 - s) if plane == "axial" else s
        return self.grid.index_to_point_mm(index)[:, k]

    def image_point_to_mm(self, plane: str, slice_index: float, u: float, v: float) -> np.ndarray:
        """LPS point (mm) of image point ``(u, v)`` on ``slice_index`` of ``plane``."""
        return self.index_to_point_mm(image_to_voxel(plane, self.size_xyz, slice_index, u, v))

    def mm_to_image(self, plane: str, point_mm: Sequence[float]) -> tuple[float, float, float]:
        """``(slice, u, v)`` of an LPS point (slice continuous: a point between slices has a fractional slice)."""
        return voxel_to_image(plane, self.size_xyz, self.point_to_index(point_mm))


@dataclass(frozen=True)
class ViewTransform:
    """How one plane's image sits in a viewport of ``viewport_w_px × viewport_h_px`` CSS pixels.

    The image is shown with square millimetres (pixel aspect ``du_mm : dv_mm``), scaled to fit the
    viewport at ``zoom = 1`` and magnified ``zoom`` times about ``(center_u, center_v)`` (image
    coordinates; default: the image centre), which is drawn at the viewport's centre::

        screen_x = W / 2 + (u - center_u) · du_mm · fit · zoom
        screen_y = H / 2 + (v - center_v) · dv_mm · fit · zoom,   fit = min(W / (n_u du_mm), H / (n_v dv_mm))

    Screen positions are relative to the viewport's top-left corner.
    """

    viewport_w_px: float
    viewport_h_px: float
    n_u: int
    n_v: int
    du_mm: float
    dv_mm: float
    zoom: float = 1.0
    center_u: float | None = None
    center_v: float | None = None

    def __post_init__(self) -> None:
        if not (self.viewport_w_px > 0 and self.viewport_h_px > 0):
            raise ViewError(f"The viewport must have a positive size, got {self.viewport_w_px} x {self.viewport_h_px} px.")
        if not (self.zoom > 0 and np.isfinite(self.zoom)):
            raise ViewError(f"Zoom must be a positive number, got {self.zoom!r}.")

    @classmethod
    def for_plane(
        cls,
        geometry: PlaneGeometry,
        viewport_w_px: float,
        viewport_h_px: float,
        *,
        zoom: float = 1.0,
        center_u: float | None = None,
        center_v: float | None = None,
    ) -> "ViewTransform":
        return cls(viewport_w_px, viewport_h_px, geometry.n_u, geometry.n_v, geometry.du_mm, geometry.dv_mm, zoom, center_u, center_v)

    @property
    def fit_px_per_mm(self) -> float:
        return min(self.viewport_w_px / (self.n_u * self.du_mm), self.viewport_h_px / (self.n_v * self.dv_mm))

    @property
    def px_per_u(self) -> float:
        """Screen pixels per image column."""
        return self.du_mm * self.fit_px_per_mm * self.zoom

    @property
    def px_per_v(self) -> float:
        """Screen pixels per image row."""
        return self.dv_mm * self.fit_px_per_mm * self.zoom

    @property
    def _center(self) -> tuple[float, float]:
        cu = self.n_u / 2.0 if self.center_u is None else float(self.center_u)
        cv = self.n_v / 2.0 if self.center_v is None else float(self.center_v)
        return cu, cv

    def image_to_screen(self, u: float, v: float) -> tuple[float, float]:
        cu, cv = self._center
        return self.viewport_w_px / 2.0 + (u - cu) * self.px_per_u, self.viewport_h_px / 2.0 + (v - cv) * self.px_per_v

    def screen_to_image(self, x: float, y: float) -> tuple[float, float]:
        cu, cv = self._center
        return cu + (x - self.viewport_w_px / 2.0) / self.px_per_u, cv + (y - self.viewport_h_px / 2.0) / self.px_per_v

    def contains(self, u: float, v: float) -> bool:
        """Whether image point ``(u, v)`` lies on the image."""
        return 0.0 <= u < self.n_u and 0.0 <= v < self.n_v


def synced_prior_slices(current: "DisplayGrid", prior: "DisplayGrid", to_prior, plane: str) -> list[int]:  # noqa: ANN001 - callable or SimpleITK transform
    """The prior slice beside each slice of ``plane`` of the current exam, through the registration.

    The centre of each current slice (LPS mm) is mapped to the prior exam by ``to_prior`` (the
    detector's ``transform`` output: current-exam points -> prior-exam points; a SimpleITK
    transform or any callable of one point) and the prior slice nearest to the mapped point is
    taken (clamped to the prior's slices). Anatomy, not table position, decides the pairing.
    """
    plane = _check_plane(plane)
    g = current.plane(plane)
    mapper = to_prior.TransformPoint if hasattr(to_prior, "TransformPoint") else to_prior
    n_prior = prior.plane(plane).n_slices
    out = []
    for s in range(g.n_slices):
        centre = current.image_point_to_mm(plane, float(s), (g.n_u - 1) / 2.0, (g.n_v - 1) / 2.0)
        mapped = mapper(tuple(float(c) for c in centre))
        ps = prior.mm_to_image(plane, mapped)[0]
        out.append(int(min(max(round(float(ps)), 0), n_prior - 1)))
    return out
