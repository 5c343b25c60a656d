"""Analytic thoracolumbar CT phantom: the anatomy behind :mod:`cases.synth` (internal module).

The anatomy is described by smooth signed-distance functions (SDFs, millimetres, negative
inside) in LPS patient coordinates of the *prior* exam, and painted onto a voxel grid with
partial volume: a voxel's share of a structure is a linear ramp of the SDF over one voxel
(``alpha = clip(0.5 - d / ramp_mm, 0, 1)``), which is the fraction of a voxel cut by a plane at
distance ``d`` from its centre. The pieces, in painting order:

* body outline (ellipse with a flattened back), subcutaneous fat, muscular body wall;
* abdominal cavity with visceral fat / bowel texture and gas, liver, spleen, kidneys; lungs
  above a domed diaphragm; aorta (with optional calcified plaques) and inferior vena cava;
* psoas, erector spinae and quadratus lumborum muscles with fat planes;
* spinal canal (CSF, epidural fat, cord), intervertebral discs, costal cartilage;
* bone: vertebral bodies (bean-shaped, waisted, cupped endplates), pedicles, laminae,
  articular processes, spinous and transverse processes, ribs (head, neck, shaft along the
  chest wall, descending), sacrum with alae, iliac wings. All bone is one smooth union whose
  inner 1-2.5 mm is cortex (~900-1150 HU) and whose core is cancellous bone (150-300 HU) with an
  anisotropic trabecular texture. Every bone voxel knows its *part* (e.g. "L2 pedicle left")
  and hence its location class.

Nothing here draws random numbers except :func:`draw_phantom_parameters` (from a
``numpy.random.Generator``) and the texture fields in :func:`render_anatomy` (from a seed in
the parameters), so the same parameters always give the same voxels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Callable, Sequence

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk
from scipy.special import ndtri

from .grid import Grid as _VoxelGrid

AIR_HU = -1000.0
_BIG = np.float32(1.0e3)


class Tissue(IntEnum):
    """Tissue class of a voxel (the material covering most of it) in the truth tissue map."""

    AIR = 0
    LUNG = 1
    FAT = 2
    MUSCLE = 3
    ORGAN = 4
    BLOOD = 5
    CSF = 6
    DISC = 7
    CARTILAGE = 8
    CANCELLOUS_BONE = 9
    CORTICAL_BONE = 10
    BOWEL_GAS = 11
    CALCIFICATION = 12


class BoneClass(IntEnum):
    """Location class of a bone voxel; names match :class:`cases.caselist.LesionLocation`."""

    VERTEBRAL_BODY = 1
    PEDICLE = 2
    LAMINA_ARCH = 3
    SPINOUS_PROCESS = 4
    TRANSVERSE_PROCESS = 5
    RIB = 6
    PELVIS = 7
    OTHER = 8

    @property
    def location(self) -> str:
        return self.name.lower()


# ------------------------------------------------------------------------------------------
# Grid and painting
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid in LPS mm: array shape (z, y, x), spacing/origin (x, y, z).

    The phantom painter's view of a :class:`cases.Grid` (:attr:`grid`), with the per-axis
    coordinate arrays painting needs.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return (self.shape[2], self.shape[1], self.shape[0])

    def axis(self, i: int) -> np.ndarray:
        """Coordinates (mm) of the voxel centres along axis ``i`` (0 = x, 1 = y, 2 = z)."""
        n = self.size_xyz[i]
        return (self.origin_mm[i] + self.spacing_mm[i] * np.arange(n)).astype(np.float32)

    @property
    def upper_mm(self) -> np.ndarray:
        return np.asarray(self.origin_mm) + np.asarray(self.spacing_mm) * (np.asarray(self.size_xyz) - 1)

    def slices_for_box(self, lo_mm: Sequence[float], hi_mm: Sequence[float]) -> tuple[slice, slice, slice] | None:
        """Array slices (z, y, x) of the voxels whose centres lie in the box [lo, hi] (x, y, z order)."""
        out = []
        for i in range(3):
            a = math.floor((lo_mm[i] - self.origin_mm[i]) / self.spacing_mm[i])
            b = math.ceil((hi_mm[i] - self.origin_mm[i]) / self.spacing_mm[i]) + 1
            a, b = max(a, 0), min(b, self.size_xyz[i])
            if b <= a:
                return None
            out.append(slice(a, b))
        return (out[2], out[1], out[0])

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinate arrays Z (n,1,1), Y (1,n,1), X (1,1,n) of a sub-box."""
        z = self.axis(2)[sl[0]][:, None, None]
        y = self.axis(1)[sl[1]][None, :, None]
        x = self.axis(0)[sl[2]][None, None, :]
        return z, y, x

    @property
    def grid(self) -> "_VoxelGrid":
        """This painting grid as the platform's :class:`cases.Grid` (identity direction)."""
        return _VoxelGrid(self.size_xyz, self.spacing_mm, self.origin_mm)

    def to_sitk_reference(self) -> sitk.Image:
        image = sitk.Image(self.size_xyz, sitk.sitkUInt8)
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        return image


def ramp(d: np.ndarray, width_mm: float) -> np.ndarray:
    """Partial-volume occupancy of a voxel at signed distance ``d`` (negative inside)."""
    out = np.multiply(d, np.float32(-1.0 / width_mm), dtype=np.float32)
    out += np.float32(0.5)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (union with a fillet of size ``k`` mm)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(np.float32(k) - np.abs(a - b), 0.0, None) / np.float32(k)
    return np.minimum(a, b) - h * h * np.float32(k * 0.25)


class Canvas:
    """The arrays being painted in the anatomy frame."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.hu = np.full(grid.shape, AIR_HU, dtype=np.float32)
        self.tissue = np.zeros(grid.shape, dtype=np.uint8)
        self.bone_sdf = np.full(grid.shape, _BIG, dtype=np.float32)
        self.part = np.zeros(grid.shape, dtype=np.uint8)
        self.ramp_mm = float(np.mean(grid.spacing_mm))

    def paint(self, sl, d: np.ndarray, value: float | np.ndarray, tissue: Tissue, *, where: np.ndarray | float | None = None) -> None:
        """Paint material ``value`` (HU) where the SDF ``d`` is negative, with partial volume."""
        alpha = ramp(d, self.ramp_mm)
        if where is not None:
            alpha *= where
        h = self.hu[sl]
        delta = np.subtract(np.float32(value) if np.isscalar(value) else value, h, dtype=np.float32)
        delta *= alpha
        h += delta
        del delta
        np.copyto(self.tissue[sl], np.uint8(tissue), where=alpha >= 0.5)

    def add_bone(self, sl, d: np.ndarray, part_id: int, k: float = 1.0) -> None:
        cur = self.bone_sdf[sl]
        closer = d < cur
        self.part[sl][closer] = part_id
        cur[...] = smooth_min(cur, d, k)


# ------------------------------------------------------------------------------------------
# Signed distance functions
# ------------------------------------------------------------------------------------------
def ellipse_sdf(px: np.ndarray, py: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """First-order signed distance (mm) to the ellipse (px/a)^2 + (py/b)^2 = 1."""
    ia, ib = np.float32(1.0) / np.asarray(a, dtype=np.float32), np.float32(1.0) / np.asarray(b, dtype=np.float32)
    xa, yb = px * ia, py * ib
    f = np.sqrt(xa * xa + yb * yb)
    g = np.sqrt((xa * ia) ** 2 + (yb * ib) ** 2)
    np.maximum(g, np.float32(1e-6), out=g)
    return (f - 1.0) * f / g


def ellipsoid_sdf(px, py, pz, a, b, c) -> np.ndarray:
    """First-order signed distance (mm) to an axis-aligned ellipsoid with semi-axes a, b, c."""
    ia, ib, ic = (np.float32(1.0 / v) for v in (a, b, c))
    xa, yb, zc = px * ia, py * ib, pz * ic
    f = np.sqrt(xa * xa + yb * yb + zc * zc)
    g = np.sqrt((xa * ia) ** 2 + (yb * ib) ** 2 + (zc * ic) ** 2)
    np.maximum(g, np.float32(1e-6), out=g)
    return (f - 1.0) * f / g


def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


@dataclass
class Capsule:
    """Tapered capsule with an elliptic cross-section between points ``a`` and ``b`` (global mm).

    ``r1`` is the radius along ``normal`` (made orthogonal to the axis), ``r2`` along the
    binormal; each is (radius at a, radius at b).
    """

    a: np.ndarray
    b: np.ndarray
    r1: tuple[float, float]
    r2: tuple[float, float]
    normal: np.ndarray

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(max(self.r1), max(self.r2)) + 1.0
        lo = np.minimum(self.a, self.b) - r
        hi = np.maximum(self.a, self.b) + r
        return lo, hi

    def sdf(self, z, y, x) -> np.ndarray:
        t = self.b - self.a
        length = float(np.linalg.norm(t))
        th = t / length
        n = self.normal - np.dot(self.normal, th) * th
        if np.linalg.norm(n) < 1e-6:
            n = np.cross(th, [0.0, 0.0, 1.0] if abs(th[2]) < 0.9 else [1.0, 0.0, 0.0])
        nh = _unit(n)
        bh = np.cross(th, nh)
        px, py, pz = x - np.float32(self.a[0]), y - np.float32(self.a[1]), z - np.float32(self.a[2])

        def dot(v):
            return px * np.float32(v[0]) + py * np.float32(v[1]) + pz * np.float32(v[2])

        s = dot(th)
        h = np.clip(s, 0.0, length)
        qt = s - h
        qn = dot(nh)
        qb = dot(bh)
        f = h * np.float32(1.0 / length)
        r1 = np.float32(self.r1[0]) + f * np.float32(self.r1[1] - self.r1[0])
        r2 = np.float32(self.r2[0]) + f * np.float32(self.r2[1] - self.r2[0])
        rt = np.minimum(r1, r2)
        an, ab, at = qn / r1, qb / r2, qt / rt
        ff = np.sqrt(an * an + ab * ab + at * at)
        g = np.sqrt((an / r1) ** 2 + (ab / r2) ** 2 + (at / rt) ** 2)
        np.maximum(g, np.float32(1e-6), out=g)
        return (ff - 1.0) * ff / g


@dataclass
class Frame:
    """A local vertebral frame: origin ``center`` and rotation ``R`` (columns u=LR, v=AP, w=SI)."""

    center: np.ndarray
    R: np.ndarray

    def to_global(self, local: Sequence[float]) -> np.ndarray:
        return self.center + self.R @ np.asarray(local, dtype=float)

    def vec(self, local: Sequence[float]) -> np.ndarray:
        return self.R @ np.asarray(local, dtype=float)

    def local_coords(self, z, y, x):
        dx, dy, dz = x - np.float32(self.center[0]), y - np.float32(self.center[1]), z - np.float32(self.center[2])
        R = self.R.astype(np.float32)
        u = dx * R[0, 0] + dy * R[1, 0] + dz * R[2, 0]
        v = dx * R[0, 1] + dy * R[1, 1] + dz * R[2, 1]
        w = dx * R[0, 2] + dy * R[1, 2] + dz * R[2, 2]
        return u, v, w

    def bbox(self, half: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        corners = np.array([[sx * half[0], sy * half[1], sz * half[2]] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        g = self.center[None, :] + corners @ self.R.T
        return g.min(axis=0), g.max(axis=0)


@dataclass
class BodyShape:
    """A vertebral (or sacral) body in a local frame: waisted bean-shaped cylinder."""

    frame: Frame
    a: float  # LR semi-axis
    b: float  # AP semi-axis
    h: float  # height
    waist: float = 0.06
    concavity: float = 2.0
    cup: float = 1.0
    rounding: float = 2.0
    bulge: float = 0.0  # discs: bulge beyond the bodies (mm)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return self.frame.bbox((self.a + self.bulge + 2, self.b + self.bulge + 2, self.h / 2 + 2))

    def sdf(self, z, y, x) -> np.ndarray:
        u, v, w = self.frame.local_coords(z, y, x)
        hw = np.float32(self.h / 2)
        ww = np.clip(w / hw, -1.0, 1.0)
        s = 1.0 - np.float32(self.waist) * (1.0 - ww * ww)
        a_s = np.float32(self.a + self.bulge) * s
        b_s = np.float32(self.b + self.bulge) * s
        de = ellipse_sdf(u, v, a_s, b_s)
        rc = np.float32(max(self.a, 12.0))
        dc = rc - np.sqrt(u * u + (v - (b_s + rc - np.float32(self.concavity))) ** 2)
        dxy = np.maximum(de, dc)
        rho2 = np.minimum((u / a_s) ** 2 + (v / b_s) ** 2, 1.0)
        dz = np.abs(w) - (hw - np.float32(self.cup) * (1.0 - rho2))
        r = np.float32(self.rounding)
        q1, q2 = dxy + r, dz + r
        return np.sqrt(np.maximum(q1, 0) ** 2 + np.maximum(q2, 0) ** 2) + np.minimum(np.maximum(q1, q2), 0) - r


@dataclass
class IliumShape:
    """An iliac bone: a slab along a polyline in axial planes (extruded in z) below its crest.

    ``points`` run from behind the sacroiliac joint (posterior superior iliac spine) along the
    joint and then anterolaterally along the wing to the anterior superior iliac spine; each
    point has a slab thickness and a crest height. All in-plane work is 2-D and broadcast in z.
    """

    points: list[tuple[float, float]]
    thickness: list[float]
    crest_z: list[float]
    z_bottom: float

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(self.points)
        r = max(self.thickness) / 2 + 10
        lo = np.array([pts[:, 0].min() - r, pts[:, 1].min() - r, self.z_bottom - 3])
        hi = np.array([pts[:, 0].max() + r, pts[:, 1].max() + r, max(self.crest_z) + 3])
        return lo, hi

    def sdf(self, z, y, x) -> np.ndarray:
        best = dist = thick = crest = None
        for i in range(len(self.points) - 1):
            ax, ay = self.points[i]
            bx, by = self.points[i + 1]
            ex, ey = bx - ax, by - ay
            l2 = ex * ex + ey * ey
            px, py = x - np.float32(ax), y - np.float32(ay)
            h = np.clip((px * np.float32(ex) + py * np.float32(ey)) / np.float32(l2), 0.0, 1.0)
            dd = np.sqrt((px - h * np.float32(ex)) ** 2 + (py - h * np.float32(ey)) ** 2)
            tt = np.float32(self.thickness[i]) + h * np.float32(self.thickness[i + 1] - self.thickness[i])
            cc = np.float32(self.crest_z[i]) + h * np.float32(self.crest_z[i + 1] - self.crest_z[i])
            ds = dd - tt * 0.5
            if best is None:
                best, dist, thick, crest = ds, dd, tt, cc
            else:
                closer = ds < best
                best = np.where(closer, ds, best)
                dist = np.where(closer, dd, dist)
                thick = np.where(closer, tt, thick)
                crest = np.where(closer, cc, crest)
        # a rounded rim along the crest and a thicker body towards the acetabulum
        rim = np.float32(3.0) * np.clip(1.0 - (crest - z) / 12.0, 0.0, 1.0)
        low = np.clip((np.float32(max(self.crest_z)) - 75.0 - z) / 50.0, 0.0, 1.0) * np.float32(9.0)
        d = dist - (thick + rim + low) * 0.5
        q1, q2 = d + 3.0, (z - crest) + 3.0
        d = np.sqrt(np.maximum(q1, 0) ** 2 + np.maximum(q2, 0) ** 2) + np.minimum(np.maximum(q1, q2), 0) - 3.0
        return np.maximum(d, np.float32(self.z_bottom) - z)


# ------------------------------------------------------------------------------------------
# Vertebral levels
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelSpec:
    """Typical adult dimensions (mm) of one vertebra (body height, disc below, body width and
    depth, canal width and depth, pedicle width and height, lamina thickness and height, spinous
    length/height/width/drop, transverse length/backward offset/radius)."""

    name: str
    body_h: float
    disc_h: float
    body_w: float
    body_d: float
    canal_w: float
    canal_d: float
    ped_w: float
    ped_h: float
    lam_t: float
    lam_h: float
    sp_len: float
    sp_h: float
    sp_w: float
    sp_drop: float
    tp_len: float
    tp_back: float
    tp_r: float
    rib: bool


# Approximate adult dimensions compiled from standard anatomy texts (order of magnitude only).
LEVELS: tuple[LevelSpec, ...] = tuple(
    LevelSpec(*row)  # type: ignore[arg-type]
    for row in (
        ("T4", 17.0, 4.0, 26, 22, 15, 14, 5.0, 11, 5.0, 14, 38, 9, 6.0, 28, 22, 14, 5.0, True),
        ("T5", 18.0, 4.0, 27, 23, 15, 14, 5.0, 11, 5.0, 14, 40, 9, 6.0, 30, 22, 14, 5.0, True),
        ("T6", 19.0, 4.5, 28, 25, 15, 14, 5.5, 12, 5.0, 15, 40, 9, 6.0, 30, 22, 13, 5.0, True),
        ("T7", 19.5, 4.5, 29, 26, 15, 14, 5.5, 12, 5.0, 15, 40, 9, 6.0, 30, 21, 13, 5.0, True),
        ("T8", 20.0, 5.0, 30, 27, 15, 14, 6.0, 12, 5.0, 15, 38, 10, 6.0, 28, 21, 12, 5.0, True),
        ("T9", 21.0, 5.0, 32, 28, 16, 14, 6.0, 13, 5.5, 16, 36, 10, 6.0, 25, 20, 11, 5.0, True),
        ("T10", 22.0, 5.5, 34, 29, 16, 15, 6.5, 13, 5.5, 16, 34, 11, 6.0, 20, 18, 10, 5.0, True),
        ("T11", 23.0, 6.5, 37, 30, 17, 15, 7.0, 14, 6.0, 17, 32, 13, 6.5, 12, 12, 8, 4.5, True),
        ("T12", 24.0, 7.5, 40, 31, 19, 16, 8.0, 14, 6.0, 18, 32, 16, 7.0, 6, 10, 5, 4.0, True),
        ("L1", 25.0, 8.5, 42, 32, 21, 16, 8.5, 15, 6.0, 18, 32, 18, 7.0, 4, 20, 3, 3.5, False),
        ("L2", 26.0, 9.5, 44, 33, 22, 16, 9.0, 15, 6.5, 19, 32, 19, 7.5, 3, 24, 2, 3.5, False),
        ("L3", 27.0, 10.0, 46, 34, 23, 16, 10.0, 15, 6.5, 19, 32, 20, 8.0, 2, 28, 1, 3.5, False),
        ("L4", 27.0, 10.5, 48, 35, 23, 16, 12.0, 15, 7.0, 19, 30, 19, 8.0, 2, 24, 0, 4.0, False),
        ("L5", 26.0, 11.0, 50, 34, 24, 16, 15.0, 15, 7.0, 18, 26, 17, 8.0, 2, 20, 0, 6.0, False),
    )
)
LEVEL_NAMES = tuple(level.name for level in LEVELS)
# rib descent (mm from head to anterior end) and how far round the chest it reaches (radians)
_RIB_DROP = {"T4": 55, "T5": 60, "T6": 65, "T7": 70, "T8": 72, "T9": 72, "T10": 70, "T11": 45, "T12": 25}
_RIB_END = {"T4": 2.85, "T5": 2.85, "T6": 2.8, "T7": 2.75, "T8": 2.6, "T9": 2.45, "T10": 2.3, "T11": 1.75, "T12": 1.15}
_RIB_CARTILAGE = {"T4": 2.45, "T5": 2.4, "T6": 2.3, "T7": 2.2, "T8": 2.1, "T9": 2.0, "T10": 1.95, "T11": 9, "T12": 9}


# ------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------
@dataclass
class PhantomParameters:
    """Everything random about one patient's anatomy (JSON-serialisable)."""

    offset_mm: tuple[float, float, float]
    size_scale: float
    disc_scale: float
    lordosis_mm: float
    kyphosis_mm: float
    scoliosis_mm: float
    scoliosis_phase: float
    sacral_slope_deg: float
    habitus: float  # 0 slim .. 1 obese
    width_scale: float
    depth_scale: float
    subcutaneous_fat_mm: float
    visceral_fat_fraction: float
    cancellous_hu: float
    cortex_hu: float
    fat_hu: float
    muscle_hu: float
    blood_hu: float
    liver_hu: float
    aortic_plaques: list[dict[str, Any]]
    bone_islands: list[dict[str, Any]] = field(default_factory=list)
    texture_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PhantomParameters":
        data = dict(data)
        data["offset_mm"] = tuple(data["offset_mm"])
        return cls(**data)


def draw_phantom_parameters(rng: np.random.Generator) -> PhantomParameters:
    """Draw one patient's anatomy (bone islands are added separately, see :func:`cases.synth`)."""
    habitus = float(rng.beta(2.0, 2.5))
    contrast = bool(rng.random() < 0.5)
    plaques = []
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(2, 7))):
            plaques.append(
                {
                    "z_fraction": float(rng.uniform(0.0, 1.0)),
                    "angle_deg": float(rng.uniform(60, 300)),
                    "radius_mm": float(rng.uniform(1.2, 2.4)),
                    "hu": float(rng.uniform(700, 1100)),
                }
            )
    return PhantomParameters(
        offset_mm=(float(rng.uniform(-8, 8)), float(rng.uniform(15, 45)), float(rng.uniform(-700, -400))),
        size_scale=float(rng.uniform(0.93, 1.07)),
        disc_scale=float(rng.uniform(0.85, 1.1)),
        lordosis_mm=float(rng.uniform(10, 20)),
        kyphosis_mm=float(rng.uniform(15, 30)),
        scoliosis_mm=float(rng.uniform(0, 4)),
        scoliosis_phase=float(rng.uniform(0, 2 * math.pi)),
        sacral_slope_deg=float(rng.uniform(32, 45)),
        habitus=habitus,
        width_scale=float(rng.uniform(0.93, 1.05)),
        depth_scale=float(rng.uniform(0.92, 1.06)),
        subcutaneous_fat_mm=float(6 + 28 * habitus),
        visceral_fat_fraction=float(np.clip(0.15 + 0.5 * habitus + rng.normal(0, 0.05), 0.1, 0.7)),
        cancellous_hu=float(rng.uniform(165, 255)),
        cortex_hu=float(rng.uniform(950, 1150)),
        fat_hu=float(rng.uniform(-108, -92)),
        muscle_hu=float(rng.uniform(40, 52)),
        blood_hu=float(rng.uniform(150, 190) if contrast else rng.uniform(35, 45)),
        liver_hu=float(rng.uniform(52, 65) + (30 if contrast else 0)),
        aortic_plaques=plaques,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


# ------------------------------------------------------------------------------------------
# Anatomy: geometry derived from parameters
# ------------------------------------------------------------------------------------------
@dataclass
class Part:
    """One bone part: its id in the part map, location class and name."""

    part_id: int
    location: BoneClass
    name: str
    level: str
    cortex_mm: float
    cortex_hu: float
    marrow_hu: float
    shapes: list[Any] = field(default_factory=list)

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [s.bbox() for s in self.shapes]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


@dataclass
class Vertebra:
    spec: LevelSpec
    frame: Frame
    a: float
    b: float
    h: float
    disc_below: float
    z_top: float
    z_bottom: float


class Anatomy:
    """Geometry of one phantom patient (vertebrae, ribs, pelvis, soft-tissue profiles)."""

    def __init__(self, params: PhantomParameters):
        self.p = params
        ox, oy, oz = params.offset_mm
        self.offset = np.array([ox, oy, oz], dtype=float)
        self._build_spine()
        self._build_parts()

    # --- spine curve ----------------------------------------------------------------------
    def _curve_xy(self, zc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spine centreline (x, y) offsets (mm) at column heights ``zc`` above the S1 endplate."""
        p = self.p
        zl = 185.0 * p.size_scale  # lumbar length (S1 to T12/L1), approximate
        zk = 270.0 * p.size_scale
        zc = np.asarray(zc, dtype=float)
        y = np.where(
            zc <= zl,
            -p.lordosis_mm * np.sin(np.pi * np.clip(zc, -0.3 * zl, zl) / zl),
            p.kyphosis_mm * np.sin(np.pi * np.clip((zc - zl) / zk, 0.0, 1.0)),
        )
        x = p.scoliosis_mm * np.sin(2 * np.pi * zc / 420.0 + p.scoliosis_phase) - p.scoliosis_mm * math.sin(p.scoliosis_phase)
        return x, y

    def _build_spine(self) -> None:
        p = self.p
        zs = np.arange(-20.0, 700.0, 0.25)
        x, y = self._curve_xy(zs)
        ds = np.sqrt(np.diff(x) ** 2 + np.diff(y) ** 2 + np.diff(zs) ** 2)
        arc = np.concatenate([[0.0], np.cumsum(ds)])
        arc -= np.interp(0.0, zs, arc)
        self._zs, self._arc = zs, arc

        def at(s: float) -> tuple[np.ndarray, np.ndarray]:
            z = float(np.interp(s, arc, zs))
            xx, yy = self._curve_xy(np.array([z - 0.5, z, z + 0.5]))
            pos = np.array([xx[1], yy[1], z])
            tangent = _unit([xx[2] - xx[0], yy[2] - yy[0], 1.0])
            return pos, tangent

        vertebrae: list[Vertebra] = []
        s = 0.0
        for spec in reversed(LEVELS):  # L5 upwards
            disc = spec.disc_h * p.disc_scale
            h = spec.body_h * p.size_scale
            s += disc
            center, tangent = at(s + h / 2)
            u = _unit(np.array([1.0, 0, 0]) - tangent[0] * tangent)
            v = np.cross(tangent, u)
            frame = Frame(center + self.offset, np.column_stack([u, v, tangent]))
            vertebrae.append(
                Vertebra(
                    spec,
                    frame,
                    spec.body_w / 2 * p.size_scale,
                    spec.body_d / 2 * p.size_scale,
                    h,
                    disc,
                    z_top=float(center[2] + h / 2 + self.offset[2]),
                    z_bottom=float(center[2] - h / 2 + self.offset[2]),
                )
            )
            s += h
        self.vertebrae = list(reversed(vertebrae))  # T4 first
        self.by_name = {v.spec.name: v for v in self.vertebrae}
        # sacrum frame at the S1 upper endplate centre
        sigma = math.radians(p.sacral_slope_deg)
        pos0, _ = at(0.0)
        w = np.array([0.0, -math.sin(sigma), math.cos(sigma)])
        u = np.array([1.0, 0.0, 0.0])
        v = np.cross(w, u)
        self.sacrum_origin = pos0 + self.offset
        self.sacrum_R = np.column_stack([u, v, w])

    def spine_xy(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spine centreline (x, y) in LPS mm at global heights ``z`` (vertebral body centres)."""
        zc = np.asarray(z, dtype=float) - self.offset[2]
        x, y = self._curve_xy(zc)
        # below S1 the sacrum runs backwards along its slope
        sigma = math.radians(self.p.sacral_slope_deg)
        y = np.where(zc < 0, y - zc * math.tan(sigma) * 0.9, y)
        return x + self.offset[0], y + self.offset[1]

    def level_profile(self, z: np.ndarray, attr: str) -> np.ndarray:
        """A level dimension (e.g. ``'body_w'``) interpolated along global heights ``z``."""
        zs = np.array([v.frame.center[2] for v in self.vertebrae])[::-1]
        vals = np.array([getattr(v.spec, attr) for v in self.vertebrae])[::-1]
        if attr.startswith("body_"):
            vals = vals * self.p.size_scale
        return np.interp(np.asarray(z, dtype=float), zs, vals)

    def z_of(self, name: str, where: str = "center") -> float:
        """Global z (mm) of a level's body centre, top or bottom; 'S1' is the sacral endplate."""
        if name == "S1":
            return float(self.sacrum_origin[2])
        v = self.by_name[name]
        return {"center": float(v.frame.center[2]), "top": v.z_top, "bottom": v.z_bottom}[where]

    # --- parts ----------------------------------------------------------------------------
    def _new_part(self, location: BoneClass, name: str, level: str, cortex_mm: float, marrow_delta: float = 0.0) -> Part:
        part = Part(len(self.parts) + 1, location, name, level, cortex_mm, self.p.cortex_hu, self.p.cancellous_hu + marrow_delta)
        self.parts.append(part)
        return part

    def _build_parts(self) -> None:
        p = self.p
        self.parts: list[Part] = []
        self.discs: list[BodyShape] = []
        self.cartilage: list[Capsule] = []
        rng = np.random.default_rng(p.texture_seed + 7)
        for i, vert in enumerate(self.vertebrae):
            self._vertebra_parts(vert, float(np.clip(rng.normal(0, 10), -20, 20)))
            if i + 1 < len(self.vertebrae):
                below = self.vertebrae[i + 1]
                self.discs.append(self._disc_between(vert, below))
        last = self.vertebrae[-1]
        self._pelvis_parts(last)
        for vert in self.vertebrae:
            if vert.spec.rib:
                for side in (-1, 1):
                    self._rib(vert, side)

    def _vertebra_parts(self, vert: Vertebra, marrow_delta: float) -> None:
        s = vert.spec
        f = vert.frame
        k = self.p.size_scale
        a, b, h = vert.a, vert.b, vert.h
        name = s.name
        body = self._new_part(BoneClass.VERTEBRAL_BODY, f"{name} vertebral body", name, 1.2, marrow_delta)
        body.shapes.append(BodyShape(f, a, b, h))
        cw, cd = s.canal_w / 2 * k, s.canal_d * k
        pw, ph = s.ped_w / 2 * k, s.ped_h / 2 * k
        w_p = h / 2 - ph - 0.5
        w_l = w_p - 3.0
        xp = cw + pw - 0.5
        vp = b + 0.6 * cd
        lam_r = s.lam_t / 2 * k * 1.25
        canal_c = np.array([0.0, b + cd / 2 - 1.0])
        for side, label in ((-1, "right"), (1, "left")):
            # pedicle: posterolateral body wall to the articular pillar
            ped = self._new_part(BoneClass.PEDICLE, f"{name} pedicle {label}", name, 1.6, marrow_delta + 10)
            ped.shapes.append(
                Capsule(f.to_global([side * (cw + pw - 1.5), b - 5.0, w_p]), f.to_global([side * xp, vp, w_p]), (pw, pw), (ph, ph), f.vec([1, 0, 0]))
            )
            # lamina: arc from the pillar to the midline, thickness radial to the canal
            lam = self._new_part(BoneClass.LAMINA_ARCH, f"{name} lamina {label}", name, 1.8, marrow_delta + 20)
            ang0 = math.atan2(vp - canal_c[1], xp)
            pts = []
            for t in np.linspace(0, 1, 4):
                ang = ang0 + (math.pi / 2 - ang0) * t
                rx, ry = xp, cd / 2 + lam_r + 0.5
                pts.append([side * rx * math.cos(ang), canal_c[1] + ry * math.sin(ang), w_p + (w_l - w_p) * t])
            for q0, q1 in zip(pts[:-1], pts[1:]):
                mid = (np.array(q0) + np.array(q1)) / 2
                radial = [mid[0], mid[1] - canal_c[1], 0.0]
                lam.shapes.append(Capsule(f.to_global(q0), f.to_global(q1), (lam_r, lam_r), (s.lam_h / 2 * k, s.lam_h / 2 * k), f.vec(radial)))
            # articular processes (superior up to the disc level, inferior down to the next)
            sup_top = h / 2 + 6.0
            lam.shapes.append(
                Capsule(
                    f.to_global([side * (xp + 3.0), vp - 1.0, w_p]),
                    f.to_global([side * (xp + 4.8), vp - 0.5, sup_top]),
                    (3.0, 2.6),
                    (4.8, 4.0),
                    f.vec([1, 0, 0]),
                )
            )
            lam.shapes.append(
                Capsule(
                    f.to_global([side * (xp - 1.0), vp + 3.0, w_l]),
                    f.to_global([side * (xp - 3.8), vp + 4.5, -h / 2 - 4.5]),
                    (2.8, 2.4),
                    (4.4, 3.6),
                    f.vec([1, 0, 0]),
                )
            )
            # transverse process
            tp = self._new_part(BoneClass.TRANSVERSE_PROCESS, f"{name} transverse process {label}", name, 1.5, marrow_delta + 15)
            tip = [side * (xp + s.tp_len * k), vp + s.tp_back * k, w_p]
            club = 1.3 if s.rib else 1.0
            tp.shapes.append(
                Capsule(
                    f.to_global([side * (xp - 1), vp, w_p]),
                    f.to_global(tip),
                    (s.tp_r * 1.15, s.tp_r * 0.9 * club),
                    (s.tp_r * 1.5, s.tp_r * 1.5 * club),
                    f.vec([0, 1, 0]),
                )
            )
        # spinous process: from the laminar junction backwards (and down in the thorax)
        sp = self._new_part(BoneClass.SPINOUS_PROCESS, f"{name} spinous process", name, 1.6, marrow_delta + 20)
        base_v = canal_c[1] + cd / 2 + lam_r
        sp.shapes.append(
            Capsule(
                f.to_global([0, base_v - 1.0, w_l]),
                f.to_global([0, base_v + s.sp_len * k, w_l - s.sp_drop * k]),
                (s.sp_w / 2 * k, s.sp_w / 2 * k * 1.1),
                (s.sp_h / 2 * k * 0.8, s.sp_h / 2 * k),
                f.vec([1, 0, 0]),
            )
        )

    def _disc_between(self, upper: Vertebra, lower: Vertebra) -> BodyShape:
        c = (upper.frame.to_global([0, 0, -upper.h / 2]) + lower.frame.to_global([0, 0, lower.h / 2])) / 2
        w = _unit(upper.frame.R[:, 2] + lower.frame.R[:, 2])
        u = _unit(np.array([1.0, 0, 0]) - w[0] * w)
        v = np.cross(w, u)
        gap = float(np.linalg.norm(upper.frame.to_global([0, 0, -upper.h / 2]) - lower.frame.to_global([0, 0, lower.h / 2])))
        return BodyShape(
            Frame(c, np.column_stack([u, v, w])),
            (upper.a + lower.a) / 2,
            (upper.b + lower.b) / 2,
            gap + 4.0,
            waist=-0.02,
            concavity=2.0,
            cup=-1.0,
            rounding=2.0,
            bulge=0.8,
        )

    def _pelvis_parts(self, l5: Vertebra) -> None:
        p = self.p
        k = p.size_scale
        O = self.sacrum_origin
        R0 = self.sacrum_R
        # L5/S1 disc
        top_l5 = l5.frame.to_global([0, 0, -l5.h / 2])
        gap = float(np.linalg.norm(top_l5 - O))
        c = (top_l5 + O) / 2
        w = _unit(l5.frame.R[:, 2] + R0[:, 2])
        u = _unit(np.array([1.0, 0, 0]) - w[0] * w)
        self.discs.append(
            BodyShape(
                Frame(c, np.column_stack([u, np.cross(w, u), w])),
                24 * k,
                17 * k,
                gap + 4.0,
                waist=-0.02,
                concavity=2.0,
                cup=-1.0,
                rounding=2.0,
                bulge=0.8,
            )
        )
        sacrum = self._new_part(BoneClass.PELVIS, "sacrum", "S", 1.5, -10)
        dims = [(28, 24, 16), (24, 19, 11), (20, 15, 8), (15, 11, 6), (12, 8, 5)]
        pos = O.copy()
        tilt = 0.0
        frames = []
        for i, (hh, ww, dd) in enumerate(dims):
            ang = tilt
            Rk = _rot_x(-ang) @ R0
            wk = Rk[:, 2]
            center = pos - wk * (hh * k / 2)
            fk = Frame(center, Rk)
            frames.append((fk, hh * k, ww * k, dd * k))
            sacrum.shapes.append(BodyShape(fk, ww * k, dd * k, hh * k, waist=0.02, concavity=1.0, cup=0.3, rounding=2.0))
            pos = center - wk * (hh * k / 2 + 1.5)
            tilt += math.radians(14)
        # alae and the dorsal wall (fused laminae) of S1-S3
        f1, h1, w1, d1 = frames[0]
        f2, h2, w2, d2 = frames[1]
        self.si_x = 46.0 * k
        for side in (-1, 1):
            sacrum.shapes.append(
                Capsule(
                    f1.to_global([side * (w1 - 6), 2.0, 2.0]),
                    f1.to_global([side * (self.si_x - 10 * k), 8.0, -4.0]),
                    (13 * k, 11 * k),
                    (12 * k, 10 * k),
                    f1.vec([0, 1, 0]),
                )
            )
            sacrum.shapes.append(
                Capsule(
                    f2.to_global([side * (w2 - 4), 4.0, 0.0]),
                    f2.to_global([side * (self.si_x - 9 * k), 10.0, -4.0]),
                    (11 * k, 9 * k),
                    (10 * k, 8 * k),
                    f2.vec([0, 1, 0]),
                )
            )
            sacrum.shapes.append(
                Capsule(
                    f1.to_global([side * 12 * k, d1 + 14 * k, 4.0]),
                    frames[2][0].to_global([side * 6 * k, frames[2][3] + 9 * k, 0.0]),
                    (3.5, 3.0),
                    (7.0, 5.0),
                    f1.vec([0, 1, 0]),
                )
            )
            # S1 superior articular processes
            sacrum.shapes.append(
                Capsule(
                    f1.to_global([side * 17 * k, d1 + 8, 6.0]),
                    f1.to_global([side * 19 * k, d1 + 9, h1 / 2 + 9]),
                    (2.8, 2.4),
                    (4.0, 3.2),
                    f1.vec([1, 0, 0]),
                )
            )
        sacrum.shapes.append(
            Capsule(
                f1.to_global([0, d1 + 17 * k, 4.0]), frames[3][0].to_global([0, frames[3][3] + 9 * k, 0.0]), (4.0, 3.0), (6.0, 4.0), f1.vec([1, 0, 0])
            )
        )
        self.sacral_frames = frames
        # ilia: behind and along the sacroiliac joint (2.5 mm from the ala), then the wing
        l4 = self.by_name["L4"]
        crest = float(l4.frame.center[2] - 2.0)
        si_y = float(O[1] + 18 * k)
        xo = float(O[0])
        ws = p.width_scale
        layout = [  # (x beyond the joint, y from the joint, thickness, crest offset)
            (14, 30, 14, -22),
            (15, 8, 24, -12),
            (13, -14, 17, -4),
            (40 * ws, -30, 5, 4),
            (60 * ws, -52, 4, 3),
            (74 * ws, -80, 9, -16),
        ]
        # the pelvic cavity ends at the inner (anteromedial) face of each iliac wing
        self.ilium_line = {
            side: ((xo + side * (self.si_x + 13 * k), si_y - 14 * k), (xo + side * (self.si_x + 74 * ws * k), si_y - 80 * k)) for side in (-1, 1)
        }
        self.iliac_crest_z = crest
        for side, label in ((-1, "right"), (1, "left")):
            il = self._new_part(BoneClass.PELVIS, f"ilium {label}", "P", 2.0, -20)
            il.shapes.append(
                IliumShape(
                    points=[(xo + side * (self.si_x + dx * k), si_y + dy * k) for dx, dy, _, _ in layout],
                    thickness=[t * k for _, _, t, _ in layout],
                    crest_z=[crest + c for _, _, _, c in layout],
                    z_bottom=float(O[2] - 170),
                )
            )

    def _rib(self, vert: Vertebra, side: int) -> None:
        s = vert.spec
        f = vert.frame
        k = self.p.size_scale
        label = "left" if side > 0 else "right"
        rib = self._new_part(BoneClass.RIB, f"rib {s.name[1:]} {label}", s.name, 1.1, -20)
        cw, cd = s.canal_w / 2 * k, s.canal_d * k
        xp = cw + s.ped_w / 2 * k - 0.5
        vp = vert.b + 0.6 * cd
        w_p = vert.h / 2 - s.ped_h / 2 * k - 0.5
        head = f.to_global([side * (vert.a + 3.0), vert.b * 0.55, vert.h / 2 - 2.0])
        tub = f.to_global([side * (xp + s.tp_len * k - 1), vp + s.tp_back * k - s.tp_r * 0.8 - 5.0, w_p - 2.0])
        # chest wall ellipse at this height
        zr = float(head[2])
        A, yc, B = self.ribcage_ellipse(zr)
        xs = float(self.spine_xy(np.array([zr]))[0][0])
        th_s = math.asin(min(0.95, (abs(tub[0] - xs) + 14) / A))
        # place the ellipse so that the rib angle lies 8 mm behind the tubercle
        yc = float(tub[1] + 8 - B * math.cos(th_s))
        th_e = _RIB_END[s.name]
        drop = _RIB_DROP[s.name] * k
        th_cart = _RIB_CARTILAGE[s.name]
        thetas = np.arange(th_s, th_e + 1e-6, 0.09)
        pts = [head, (head + tub) / 2 + np.array([0, 0, 0.0]), tub]
        zs = []
        for i, th in enumerate(thetas):
            frac = (th - th_s) / max(th_e - th_s, 1e-3)
            z = tub[2] - 3 - drop * frac**1.2
            pts.append(np.array([xs + side * A * math.sin(th), yc + B * math.cos(th), z]))
            zs.append(th)
        pts_arr = np.array(pts)
        nseg = len(pts_arr) - 1
        for i in range(nseg):
            q0, q1 = pts_arr[i], pts_arr[i + 1]
            if i < 2:
                normal = np.cross(q1 - q0, [0, 0, 1.0])
                r1, r2 = (4.0, 3.5), (5.0, 5.5)
            else:
                th = thetas[i - 2]
                normal = np.array([side * math.sin(th) / A, math.cos(th) / B, 0.0])
                taper = (th - th_s) / max(th_e - th_s, 1e-3)
                r1 = (3.2 - 0.8 * taper, 3.2 - 0.8 * taper)
                r2 = (6.5 - 0.5 * taper, 6.5 - 0.5 * taper)
            if i >= 2 and thetas[i - 2] >= th_cart:
                self.cartilage.append(Capsule(q0, q1, r1, r2, normal))
            else:
                rib.shapes.append(Capsule(q0, q1, r1, r2, normal))

    # --- soft-tissue profiles -------------------------------------------------------------
    def _knots(self) -> tuple[np.ndarray, ...]:
        z_t8 = self.z_of("T8")
        z_t12 = self.z_of("T12")
        z_l3 = self.z_of("L3")
        z_s1 = self.z_of("S1")
        return np.array([z_s1 - 150, z_s1 - 40, z_s1 + 20, z_l3, z_t12, z_t8, z_t8 + 200])

    def body_profile(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Body outline along global heights ``z``: half width, posterior and anterior depth."""
        p = self.p
        knots = self._knots()
        fat = 1.0 + 0.6 * p.habitus
        half_w = np.interp(z, knots, [165, 175, 168, 158, 155, 150, 145]) * p.width_scale * (0.92 + 0.12 * p.habitus)
        post = np.interp(z, knots, [95, 92, 92, 90, 82, 78, 76]) * p.depth_scale + (fat - 1) * 25
        ant = np.interp(z, knots, [115, 120, 135, 140, 145, 140, 135]) * p.depth_scale * (0.85 + 0.3 * p.habitus)
        return {"half_width": half_w, "posterior": post, "anterior": ant}

    def body_box(self, z_lo: float, z_hi: float, margin_mm: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """LPS bounding box (lo, hi) of the body outline between two heights; air outside it."""
        z = np.linspace(z_lo, z_hi, 64)
        prof = self.body_profile(z)
        _, ys = self.spine_xy(z)
        x0 = float(self.offset[0])
        hw = float(prof["half_width"].max())
        y_front = float((ys - 0.04 * prof["posterior"] - 1.04 * prof["anterior"]).min())
        y_back = float((ys + prof["posterior"]).max())
        return (np.array([x0 - hw - margin_mm, y_front - margin_mm, z_lo]), np.array([x0 + hw + margin_mm, y_back + margin_mm, z_hi]))

    def ribcage_ellipse(self, z: float) -> tuple[float, float, float]:
        prof = self.body_profile(np.array([z]))
        wall = 14.0 + 0.5 * self.p.subcutaneous_fat_mm
        A = float(prof["half_width"][0]) - wall
        ys = float(self.spine_xy(np.array([z]))[1][0])
        front = ys - float(prof["anterior"][0]) + wall
        back = ys + 35.0
        return A, (front + back) / 2, (back - front) / 2

    def diaphragm_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm surface (mm) over (x, y): two domes, deep posterior recesses."""
        z_top_r = self.z_of("T9", "top") + 5.0
        z_top_l = z_top_r - 15.0
        xs, ys = float(self.offset[0]), float(self.spine_xy(np.array([z_top_r]))[1][0])
        yd = ys - 75.0
        zr = z_top_r - 70.0 * (((x - (xs - 70)) / 110.0) ** 2 + ((y - yd) / 120.0) ** 2)
        zl = z_top_l - 70.0 * (((x - (xs + 70)) / 110.0) ** 2 + ((y - yd) / 120.0) ** 2)
        return np.maximum(zr, zl)

    # --- landmarks ------------------------------------------------------------------------
    def landmarks(self) -> dict[str, list[float]]:
        """Vertebral body centres (LPS mm) by level name, plus the S1 endplate centre."""
        out = {v.spec.name: [float(c) for c in v.frame.center] for v in self.vertebrae}
        out["S1"] = [float(c) for c in self.sacrum_origin]
        return out

    def part_table(self) -> list[dict[str, Any]]:
        return [{"part_id": q.part_id, "location": q.location.location, "name": q.name, "level": q.level} for q in self.parts]


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=float)


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------
@dataclass
class RenderedAnatomy:
    """The painted anatomy frame: HU (noise-free, before the scanner blur) and truth maps."""

    grid: Grid
    hu: np.ndarray
    tissue: np.ndarray
    bone_sdf: np.ndarray
    part: np.ndarray
    bone_class: np.ndarray
    part_location: np.ndarray  # part id -> BoneClass value
    anatomy: Anatomy


def _smooth_noise(shape: tuple[int, ...], sigma_vox: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian random field: uniform white noise smoothed by a Gaussian."""
    white = rng.random(shape, dtype=np.float32)
    white -= np.float32(0.5)
    field = ndi.gaussian_filter(white, sigma_vox, mode="reflect", truncate=3.0)
    # variance of uniform(-0.5, 0.5) is 1/12; the filter scales it by sum of squared weights
    gain = 1.0 / 12.0
    for s in sigma_vox:
        if s > 0:
            r = int(3.0 * s + 0.5)
            k = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
            k /= k.sum()
            gain *= float(np.sum(k * k))
    field *= np.float32(1.0 / math.sqrt(gain))
    return field


class CoarseField:
    """A smooth unit-variance random field on a coarse grid over a box (LPS mm), evaluated on
    any sub-box of a fine grid by separable linear interpolation (so slabs agree exactly)."""

    def __init__(self, lo_mm: Sequence[float], hi_mm: Sequence[float], sigma_mm: float, coarse_mm: float, rng: np.random.Generator):
        lo = np.asarray(lo_mm, dtype=float) - 2 * coarse_mm
        n = np.ceil((np.asarray(hi_mm, dtype=float) + 2 * coarse_mm - lo) / coarse_mm).astype(int) + 1
        self.values = _smooth_noise((int(n[2]), int(n[1]), int(n[0])), [sigma_mm / coarse_mm] * 3, rng)
        self.origin = lo
        self.step = float(coarse_mm)

    def sample(self, grid: Grid, sl: tuple[slice, slice, slice]) -> np.ndarray:
        z, y, x = grid.coords(sl)
        out = self.values
        # crop to the coarse cells needed, then interpolate z, y, x (the output grows last)
        for axis, coords, o in ((0, z.ravel(), 2), (1, y.ravel(), 1), (2, x.ravel(), 0)):
            t = (coords.astype(np.float64) - self.origin[o]) / self.step
            n = out.shape[axis]
            i0 = np.clip(np.floor(t).astype(int), 0, n - 2)
            f = np.clip(t - i0, 0.0, 1.0).astype(np.float32)
            lo, hi = int(i0.min()), int(i0.max()) + 2
            out = out[(slice(None),) * axis + (slice(lo, hi),)]
            i0 = i0 - lo
            shape = [1, 1, 1]
            shape[axis] = -1
            a = np.take(out, i0, axis=axis)
            b = np.take(out, i0 + 1, axis=axis)
            b -= a
            b *= f.reshape(shape)
            b += a
            out = b
        return out


class TextureBlock:
    """A seeded periodic block of a unit-variance random field, sampled by tiling.

    Filtering fresh noise over a whole clinical volume costs seconds; a 96-voxel periodic block
    costs milliseconds and its period (70-100 mm) is not visible in trabecular bone or lung.
    """

    def __init__(self, rng: np.random.Generator, sigma_vox: Sequence[float], n: int = 96):
        white = rng.random((n, n, n), dtype=np.float32) - np.float32(0.5)
        field = ndi.gaussian_filter(white, sigma_vox, mode="wrap", truncate=3.0)
        field -= field.mean()
        field /= field.std()
        self.field = field
        self.phase = rng.integers(0, n, size=3)
        self.n = n

    def sample(self, sl: tuple[slice, slice, slice], shape: tuple[int, ...]) -> np.ndarray:
        idx = [(np.arange(s.start or 0, (s.start or 0) + k) + ph) % self.n for s, k, ph in zip(sl, shape, self.phase)]
        return self.field[np.ix_(*idx)]


def _zprof(values: np.ndarray, sl) -> np.ndarray:
    """A per-slice profile (length n_z) sliced to a box and shaped (n, 1, 1) for broadcasting."""
    return np.asarray(values, dtype=np.float32)[sl[0]][:, None, None]


def _intersect(box: tuple[slice, slice, slice] | None, slab: slice) -> tuple[slice, slice, slice] | None:
    if box is None:
        return None
    a, b = max(box[0].start, slab.start), min(box[0].stop, slab.stop)
    if b <= a:
        return None
    return (slice(a, b), box[1], box[2])


@dataclass
class _Tube:
    """A structure whose axial section is an ellipse varying with z (muscles, vessels, canal).

    ``cx, cy, rx, ry`` are per-slice profiles; ``valid`` marks the slices where it exists;
    ``layers`` are ``(grow_mm, hu, tissue)`` painted in order (a positive grow paints a shell
    around the ellipse first, e.g. a fat plane).
    """

    cx: np.ndarray
    cy: np.ndarray
    rx: np.ndarray
    ry: np.ndarray
    valid: np.ndarray
    layers: list[tuple[float, float, Tissue]]
    box: tuple[slice, slice, slice] | None = None

    def prepare(self, grid: Grid, z_all: np.ndarray) -> "_Tube":
        self.rx = np.broadcast_to(np.asarray(self.rx, dtype=float), z_all.shape)
        self.ry = np.broadcast_to(np.asarray(self.ry, dtype=float), z_all.shape)
        self.valid = np.asarray(self.valid, dtype=bool) & (self.rx > 0.5) & (self.ry > 0.5)
        if not np.any(self.valid):
            return self
        k = np.nonzero(self.valid)[0]
        grow = max(g for g, _, _ in self.layers) + 2
        v = self.valid
        self.box = grid.slices_for_box(
            (float(np.min(self.cx[v] - self.rx[v])) - grow, float(np.min(self.cy[v] - self.ry[v])) - grow, float(z_all[k.min()])),
            (float(np.max(self.cx[v] + self.rx[v])) + grow, float(np.max(self.cy[v] + self.ry[v])) + grow, float(z_all[k.max()])),
        )
        return self

    def paint(self, cv: Canvas, sl: tuple[slice, slice, slice]) -> None:
        z, y, x = cv.grid.coords(sl)
        d = ellipse_sdf(x - _zprof(self.cx, sl), y - _zprof(self.cy, sl), np.maximum(_zprof(self.rx, sl), 0.5), np.maximum(_zprof(self.ry, sl), 0.5))
        w = _zprof(self.valid.astype(np.float32), sl)
        for g, hu, tissue in self.layers:
            cv.paint(sl, d - np.float32(g) if g else d, hu, tissue, where=w)


def render_anatomy(anatomy: Anatomy, grid: Grid, *, progress: Callable[[float], None] | None = None) -> RenderedAnatomy:
    """Paint the phantom on ``grid`` (anatomy frame = prior-exam LPS coordinates).

    Soft tissue is painted slab by slab (a few million voxels at a time, so the arrays stay in
    the processor cache); every structure only inside its own bounding box. ``progress`` is
    called with the fraction done.
    """
    p = anatomy.p
    cv = Canvas(grid)
    rng = np.random.default_rng(p.texture_seed)
    note = progress or (lambda _f: None)
    z_all = grid.axis(2).astype(float)
    x0 = float(anatomy.offset[0])

    prof = anatomy.body_profile(z_all)
    xs_z, ys_z = anatomy.spine_xy(z_all)
    b_z = anatomy.level_profile(z_all, "body_d") / 2
    a_z = anatomy.level_profile(z_all, "body_w") / 2
    canal_w = anatomy.level_profile(z_all, "canal_w") / 2
    canal_d = anatomy.level_profile(z_all, "canal_d")
    z_s1 = anatomy.z_of("S1")
    z_t12 = anatomy.z_of("T12")
    z_dome = anatomy.z_of("T9", "top")
    z_bif = anatomy.z_of("L4")
    sacral = np.clip((z_s1 - z_all) / 60.0, 0.0, 1.0)
    wall_z = np.interp(z_all, anatomy._knots(), [45, 38, 18, 14, 12, 12, 12])
    ones = np.ones_like(z_all)

    # random fields (drawn in a fixed order: the same parameters give the same voxels)
    cav_lo = (x0 - float(prof["half_width"].max()), float((ys_z - prof["anterior"]).min()), float(z_all.min()))
    cav_hi = (x0 + float(prof["half_width"].max()), float(ys_z.max()) + 32.0, float(z_all.max()))
    loops_field = CoarseField(cav_lo, cav_hi, 6.0, 3.0, rng)
    gas_field = CoarseField(cav_lo, cav_hi, 12.0, 4.0, rng)
    lung_tex = TextureBlock(rng, (1.2 / grid.spacing_mm[2], 1.5 / grid.spacing_mm[1], 1.5 / grid.spacing_mm[0]))
    sig_mm = (1.2, 0.55, 0.55)  # trabeculae: vertical streaks
    bone_tex = TextureBlock(rng, tuple(s_mm / sp for s_mm, sp in zip(sig_mm, grid.spacing_mm[::-1])))
    fat_width = np.float32(ndtri(1.0 - p.visceral_fat_fraction / 2.0))

    # organs (ellipsoids) and tubes
    A_in = float(np.median(prof["half_width"])) - 25
    y_sp = float(anatomy.spine_xy(np.array([z_dome]))[1][0])
    organs: list[tuple[tuple[float, float, float], tuple[float, float, float], float, Tissue, bool]] = [
        ((x0 - 0.42 * A_in, y_sp - 35, z_dome - 55), (0.62 * A_in, 95.0, 95.0), p.liver_hu, Tissue.ORGAN, True),
        ((x0 + 0.62 * A_in, y_sp + 5, z_dome - 55), (28.0, 50.0, 55.0), p.liver_hu - 10, Tissue.ORGAN, True),
    ]
    z_kid = anatomy.z_of("L1", "bottom")
    kidney_hu = 33.0 + max(p.blood_hu - 40.0, 0.0) * 0.8
    for side in (-1, 1):
        kx, ky = x0 + side * 62, float(anatomy.spine_xy(np.array([z_kid]))[1][0]) + 18
        kz = z_kid + (8 if side > 0 else -8)
        organs += [
            ((kx, ky, kz), (33.0, 31.0, 62.0), p.fat_hu, Tissue.FAT, False),
            ((kx, ky, kz), (27.0, 24.0, 55.0), kidney_hu, Tissue.ORGAN, False),
            ((kx - side * 15.0, ky, kz), (9.0, 11.0, 26.0), p.fat_hu + 20, Tissue.FAT, False),
        ]
    z_ao_lo, z_ao_hi = max(z_bif + 5, float(z_all.min())), min(z_t12, float(z_all.max()))
    for plq in p.aortic_plaques:
        zp = z_ao_lo + plq["z_fraction"] * max(z_ao_hi - z_ao_lo, 0.0)
        xsp, ysp = anatomy.spine_xy(np.array([zp]))
        bp = float(anatomy.level_profile(np.array([zp]), "body_d")[0]) / 2
        ang = math.radians(plq["angle_deg"])
        rr = plq["radius_mm"]
        organs.append(
            (
                (float(xsp[0]) + 14 + 11 * math.sin(ang), float(ysp[0]) - bp - 14 + 11 * math.cos(ang), zp),
                (rr, rr, 2 * rr),
                plq["hu"],
                Tissue.CALCIFICATION,
                False,
            )
        )
    organ_boxes = [grid.slices_for_box(np.subtract(c, ax) - 1, np.add(c, ax) + 1) for c, ax, _, _, _ in organs]

    tubes: list[_Tube] = []
    ao_y = ys_z - b_z - 14.0
    tubes.append(_Tube(xs_z + 14.0, ao_y, 11.0, 11.0, z_all >= z_bif, [(0.0, p.blood_hu, Tissue.BLOOD)]))
    spread = np.clip((z_bif - z_all) / 60.0, 0.0, 1.5) * 45.0
    toward = 14.0 * (1 - np.clip((z_bif - z_all) / 20.0, 0, 1))
    for side in (-1, 1):
        tubes.append(_Tube(xs_z + toward + side * spread, ao_y - spread * 0.3, 6.5, 6.5, z_all < z_bif + 2, [(0.0, p.blood_hu, Tissue.BLOOD)]))
    tubes.append(_Tube(xs_z - 22.0, ys_z - b_z - 12.0, 12.0, 9.0, (z_all < z_dome - 20) & (z_all > z_bif - 10), [(0.0, p.blood_hu, Tissue.BLOOD)]))
    lumbar = np.clip((z_t12 - z_all) / 80.0, 0.0, 1.0)
    rx, ry = 21.0 + 9.0 * lumbar, 17.0 + 7.0 * lumbar
    ers_cy = ys_z + b_z + canal_d + ry * 0.85
    ps_r = np.clip((z_t12 - z_all) / (z_t12 - z_s1 + 1e-3), 0.0, 1.2) * 20.0
    pelvic = np.clip((z_s1 + 20.0 - z_all) / 50.0, 0.0, 1.0)
    ql = np.clip((z_t12 - z_all) / 30.0, 0.0, 1.0) * np.clip((z_all - z_s1 - 10.0) / 30.0, 0.0, 1.0)
    for side in (-1, 1):
        tubes.append(_Tube(xs_z + side * (5.0 + rx), ers_cy, rx, ry, ones > 0, [(1.2, -30.0, Tissue.MUSCLE), (0.0, p.muscle_hu + 3, Tissue.MUSCLE)]))
        tubes.append(
            _Tube(
                xs_z + side * (a_z + ps_r * 0.85 + pelvic * 35.0),
                ys_z - 2.0 - pelvic * 40.0,
                ps_r,
                ps_r * 0.9,
                ps_r > 2.0,
                [(1.5, p.fat_hu, Tissue.FAT), (0.0, p.muscle_hu, Tissue.MUSCLE)],
            )
        )
        tubes.append(
            _Tube(xs_z + side * (a_z + 45.0), ys_z + 14.0, 16.0, 11.0, ql > 0.2, [(1.5, p.fat_hu, Tissue.FAT), (0.0, p.muscle_hu, Tissue.MUSCLE)])
        )
    cw = canal_w * (1 - 0.5 * sacral)
    cd = canal_d * (1 - 0.5 * sacral) / 2
    ccy = ys_z + b_z + cd - 1.0 + sacral * 6.0
    tubes.append(_Tube(xs_z, ccy, cw, cd, ones > 0, [(0.0, p.fat_hu + 10, Tissue.FAT)]))
    tubes.append(_Tube(xs_z, ccy - 1.0, cw - 1.5, cd - 1.5, ones > 0, [(0.0, 8.0, Tissue.CSF)]))
    tubes.append(_Tube(xs_z, ccy - 1.5, 4.5, 3.8, z_all > anatomy.z_of("L1", "bottom"), [(0.0, 35.0, Tissue.MUSCLE)]))
    tubes = [t.prepare(grid, z_all) for t in tubes]

    nz, ny, nx = grid.shape
    step = max(1, int(2_500_000 // (ny * nx)))
    for z0 in range(0, nz, step):
        slab = slice(z0, min(nz, z0 + step))
        _paint_slab(
            cv, anatomy, slab, prof, xs_z, ys_z, wall_z, z_dome, z_s1, organs, organ_boxes, tubes, loops_field, gas_field, lung_tex, fat_width
        )
        note(0.7 * slab.stop / nz)

    # --- discs and costal cartilage (small boxes) ----------------------------------------------
    for disc in anatomy.discs:
        sl = grid.slices_for_box(*disc.bbox())
        if sl is None:
            continue
        z, y, x = grid.coords(sl)
        cv.paint(sl, disc.sdf(z, y, x), 95.0, Tissue.DISC)
        nucleus = BodyShape(disc.frame, disc.a * 0.5, disc.b * 0.45, disc.h * 0.55, waist=-0.1, concavity=0.0, cup=0.0, rounding=2.0)
        cv.paint(sl, nucleus.sdf(z, y, x), 75.0, Tissue.DISC)
    for cap in anatomy.cartilage:
        sl = grid.slices_for_box(*cap.bbox())
        if sl is None:
            continue
        z, y, x = grid.coords(sl)
        cv.paint(sl, cap.sdf(z, y, x), 130.0, Tissue.CARTILAGE)
    note(0.75)

    # --- bone: one smooth union of all parts, then cortex / cancellous split --------------------
    for part in anatomy.parts:
        for shape in part.shapes:
            sl = grid.slices_for_box(*shape.bbox())
            if sl is None:
                continue
            z, y, x = grid.coords(sl)
            cv.add_bone(sl, shape.sdf(z, y, x), part.part_id, k=1.5)
    note(0.85)
    part_location = np.zeros(256, dtype=np.uint8)
    cortex_mm = np.ones(256, dtype=np.float32)
    cortex_hu = np.zeros(256, dtype=np.float32)
    marrow_hu = np.zeros(256, dtype=np.float32)
    for part in anatomy.parts:
        part_location[part.part_id] = int(part.location)
        cortex_mm[part.part_id] = part.cortex_mm
        cortex_hu[part.part_id] = part.cortex_hu
        marrow_hu[part.part_id] = part.marrow_hu
    bone_class = np.zeros(grid.shape, dtype=np.uint8)
    amp = np.float32(55.0 * min(1.0, (0.8 / float(np.mean(grid.spacing_mm))) ** 1.5))
    ramp_mm = np.float32(cv.ramp_mm)
    for z0 in range(0, nz, step):
        slab = slice(z0, min(nz, z0 + step))
        near = cv.bone_sdf[slab] < ramp_mm
        if not np.any(near):
            continue
        iy = np.nonzero(np.any(near, axis=(0, 2)))[0]
        ix = np.nonzero(np.any(near, axis=(0, 1)))[0]
        bb = (slab, slice(int(iy.min()), int(iy.max()) + 1), slice(int(ix.min()), int(ix.max()) + 1))
        d = cv.bone_sdf[bb]
        part = cv.part[bb]
        a_out = ramp(d, cv.ramp_mm)
        a_in = ramp(d + cortex_mm[part], cv.ramp_mm)
        tex = bone_tex.sample(bb, d.shape)
        tex *= amp
        tex += marrow_hu[part]
        tex *= a_in
        bone_hu = cortex_hu[part]
        bone_hu *= a_out - a_in
        bone_hu += tex
        h = cv.hu[bb]
        h *= 1.0 - a_out
        h += bone_hu
        t = cv.tissue[bb]
        np.copyto(t, np.uint8(Tissue.CORTICAL_BONE), where=(a_out >= 0.5) & (a_in < 0.5))
        np.copyto(t, np.uint8(Tissue.CANCELLOUS_BONE), where=a_in >= 0.5)
        bone_class[bb] = np.where(d < 0, part_location[part], 0)
    # benign sclerotic bone islands (enostoses): dense, well-defined, inside cancellous bone
    for island in p.bone_islands:
        c = np.asarray(island["center_mm"], dtype=float)
        ax = island.get("semi_axes_mm") or [island["radius_mm"]] * 3
        sl = grid.slices_for_box(c - max(ax) - 2, c + max(ax) + 2)
        if sl is None:
            continue
        z, y, x = grid.coords(sl)
        alpha = ramp(ellipsoid_sdf(x - c[0], y - c[1], z - c[2], *ax), cv.ramp_mm) * (cv.bone_sdf[sl] < -0.5)
        h = cv.hu[sl]
        h += alpha * (np.float32(island["hu"]) - h)
        np.copyto(cv.tissue[sl], np.uint8(Tissue.CORTICAL_BONE), where=alpha >= 0.5)
    note(1.0)
    return RenderedAnatomy(grid, cv.hu, cv.tissue, cv.bone_sdf, cv.part, bone_class, part_location, anatomy)


def _paint_slab(
    cv: Canvas,
    anatomy: Anatomy,
    slab: slice,
    prof,
    xs_z,
    ys_z,
    wall_z,
    z_dome,
    z_s1,
    organs,
    organ_boxes,
    tubes: list[_Tube],
    loops_field: CoarseField,
    gas_field: CoarseField,
    lung_tex: TextureBlock,
    fat_width,
) -> None:
    """Paint all soft tissue of the axial slab ``slab`` (body, cavity contents, lungs, organs, tubes)."""
    p = anatomy.p
    grid = cv.grid
    full = (slab, slice(None), slice(None))
    Z, Y, X = grid.coords(full)
    x0 = np.float32(anatomy.offset[0])
    hw = _zprof(prof["half_width"], full)
    post = _zprof(prof["posterior"], full)
    ant = _zprof(prof["anterior"], full)
    ysz = _zprof(ys_z, full)
    # body outline: an ellipse cut by a flat back (the patient lies supine), rounded corners
    d_ell = ellipse_sdf(X - x0, Y - (ysz + (post - ant) * 0.5), hw, (post + ant) * 0.54)
    r = np.float32(25.0)
    q1 = d_ell + r
    q2 = Y - (ysz + post) + r
    d = np.sqrt(np.maximum(q1, 0) ** 2 + np.maximum(q2, 0) ** 2) + np.minimum(np.maximum(q1, q2), 0) - r
    del d_ell, q1, q2
    cv.paint(full, d, p.fat_hu, Tissue.FAT)
    # subcutaneous fat: thinner over the back, thicker on the belly; then the muscular wall
    d += np.float32(p.subcutaneous_fat_mm) * (0.55 + 0.45 * np.clip((ysz - Y) / 80.0 + 0.5, 0.0, 1.6))
    cv.paint(full, d, p.muscle_hu, Tissue.MUSCLE)
    d += _zprof(wall_z, full)
    diaph = anatomy.diaphragm_z(X, Y).astype(np.float32)  # (1, ny, nx)
    thorax = Z > diaph
    # the cavity stops at the spine (the back muscles fill the rest), curving back in the flanks
    xsl = _zprof(xs_z, full)
    lim = ysz + np.where(thorax, np.float32(45.0), np.float32(12.0) + np.float32(30.0) * np.minimum(((X - xsl) / 90.0) ** 2, 1.0))
    d_cav = np.maximum(d, Y - lim)
    del d, lim
    # in the pelvis, the iliac wings bound the cavity (gluteal muscles lie outside them)
    below_crest = Z < np.float32(anatomy.iliac_crest_z - 6.0)
    if np.any(below_crest):
        for side, ((ax_, ay_), (bx_, by_)) in anatomy.ilium_line.items():
            ex, ey = bx_ - ax_, by_ - ay_
            ln = math.hypot(ex, ey)
            nxv, nyv = ey / ln, -ex / ln
            if nxv * side < 0:
                nxv, nyv = -nxv, -nyv
            d_lat = (X - np.float32(ax_)) * np.float32(nxv) + (Y - np.float32(ay_)) * np.float32(nyv) + np.float32(4.0)
            d_cav = np.where(below_crest, np.maximum(d_cav, d_lat), d_cav)
    z_lo = float(Z.min())
    # abdomen: bowel loops along the zero set of a smooth field, mesenteric fat, gas
    if z_lo < z_dome + 10 and not np.all(thorax):
        abd = (~thorax).astype(np.float32)
        cv.paint(full, d_cav, 35.0, Tissue.ORGAN, where=abd)
        region = (d_cav < 1.0) * abd
        del abd
        cav = grid.slices_for_box(
            loops_field.origin + 2 * loops_field.step, loops_field.origin + loops_field.step * (np.asarray(loops_field.values.shape[::-1]) - 3)
        )
        sub = _intersect(cav, slab)
        if sub is not None:
            rsub = region[:, sub[1], sub[2]]
            loops = loops_field.sample(grid, sub)
            np.abs(loops, out=loops)
            alpha = np.clip((loops - fat_width) / 0.2 + 0.5, 0.0, 1.0)
            alpha *= rsub
            h = cv.hu[sub]
            h += alpha * (np.float32(p.fat_hu) - h)
            np.copyto(cv.tissue[sub], np.uint8(Tissue.FAT), where=alpha >= 0.5)
            alpha = np.clip((np.float32(0.45) * fat_width - loops) / 0.15, 0.0, 1.0)
            alpha *= np.clip((gas_field.sample(grid, sub) - 0.6) / 0.3, 0.0, 1.0)
            alpha *= rsub
            zz, yy, _ = grid.coords(sub)
            alpha *= np.clip((_zprof(ys_z, sub) - yy - 35.0) / 25.0, 0.0, 1.0)
            alpha *= np.clip((zz - (z_s1 - 90.0)) / 30.0, 0.0, 1.0)
            h += alpha * (np.float32(-950.0) - h)
            np.copyto(cv.tissue[sub], np.uint8(Tissue.BOWEL_GAS), where=alpha >= 0.5)
            del loops, alpha, rsub
        del region
    # organs below the diaphragm, kidneys with their fat, calcified aortic plaques
    for (c, ax, hu, tissue, in_cavity), box in zip(organs, organ_boxes):
        sub = _intersect(box, slab)
        if sub is None:
            continue
        z, y, x = grid.coords(sub)
        d = ellipsoid_sdf(x - c[0], y - c[1], z - c[2], *ax)
        if in_cavity:
            rel = (slice(sub[0].start - slab.start, sub[0].stop - slab.start), sub[1], sub[2])
            d = np.maximum(d, d_cav[rel])
            d = np.maximum(d, (z - diaph[:, sub[1], sub[2]]) + 4.0)
        cv.paint(sub, d, hu, tissue)
    # lungs above the diaphragm, outside the mediastinum
    if np.any(thorax):
        med = np.float32(22.0) + np.clip((ysz - Y - 20.0) / 60.0, 0.0, 1.0) * np.float32(45.0)
        d = np.maximum(d_cav + 4.0, med - np.abs(X - xsl))
        del med
        d = np.maximum(d, diaph - Z + 2.0)
        tex = lung_tex.sample(full, d.shape)
        tex *= np.float32(30.0)
        tex -= np.float32(860.0)
        cv.paint(full, d, tex, Tissue.LUNG)
        del tex, d
    del d_cav, thorax
    for tube in tubes:
        sub = _intersect(tube.box, slab)
        if sub is not None:
            tube.paint(cv, sub)
