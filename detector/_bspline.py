"""Cubic B-spline free-form deformation fitted on sampled bone points (the default deformable stage).

Why not a dense method? Accuracy only matters in bone, which is a few percent of a trunk CT.
Dense Demons spends its time on every voxel of the body; the SimpleITK B-spline registration
spends it on dense parameter Jacobians. Here the metric is evaluated at ``n_samples`` points drawn
inside the (dilated) bone of the current exam, and the B-spline is a sparse matrix from control
points to those samples, so one metric-and-gradient evaluation costs a few sparse products and
interpolations of the moving image at the samples.

Model, with ``x`` a point of the current (fixed) exam and ``R`` the rigid transform found before:

    T(x) = R(x + u(x)),   u(x) = sum_k c_k B((x - p_k) / h)

``B`` is the tensor-product cubic B-spline on ITK's control grid (``sitk.BSplineTransform``
conventions, so the result *is* a SimpleITK B-spline transform). The cost is

    E(c) = mean_i (M(T(x_i)) - F(x_i))^2 + lambda * sum_k |c_k - mean of its 6 neighbours|^2

on HU clamped to a bone-friendly window (mean squares: same modality, same scanner units).
L-BFGS-B minimises it, coarse control grid first, then a grid twice as fine initialised by
exact B-spline subdivision.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy import optimize, sparse

__all__ = ["BSplineLevel", "fit_bspline", "bspline_weights_matrix", "refine_coefficients"]


#: Number of sample chunks of the cost's evaluation (at most this many threads).
_N_CHUNKS = 4


@dataclass(frozen=True)
class BSplineLevel:
    """One level of the fit: control spacing (mm), samples and iteration budget."""

    control_spacing_mm: float
    n_samples: int
    max_iterations: int


def _bspline3(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline kernel."""
    a = np.abs(t)
    out = np.zeros_like(a)
    m1 = a < 1
    m2 = (a >= 1) & (a < 2)
    out[m1] = (4.0 - 6.0 * a[m1] ** 2 + 3.0 * a[m1] ** 3) / 6.0
    out[m2] = (2.0 - a[m2]) ** 3 / 6.0
    return out


def _grid_of_coefficients(bspline: sitk.BSplineTransform) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int]]:
    coef = bspline.GetCoefficientImages()[0]
    origin = np.asarray(coef.GetOrigin(), dtype=float)
    spacing = np.asarray(coef.GetSpacing(), dtype=float)
    direction = np.asarray(coef.GetDirection(), dtype=float).reshape(3, 3)
    return origin, spacing, direction, tuple(int(s) for s in coef.GetSize())  # type: ignore[return-value]


def bspline_weights_matrix(bspline: sitk.BSplineTransform, points_mm: np.ndarray) -> sparse.csr_matrix:
    """Sparse ``(n_points, n_control)`` matrix ``W`` with ``u(points) = W @ coefficients``.

    Column order is ITK's parameter order within one component (x index fastest). Points whose
    4x4x4 support leaves the control grid get an empty row (ITK leaves them untransformed too).
    """
    origin, spacing, direction, size = _grid_of_coefficients(bspline)
    cidx = ((points_mm - origin) @ direction) / spacing  # continuous index (x, y, z)
    start = np.floor(cidx - 1.0).astype(np.int64)  # ITK: floor(index + 0.5 - order / 2)
    n = points_mm.shape[0]
    w_axes = []
    for axis in range(3):
        offs = cidx[:, axis : axis + 1] - (start[:, axis : axis + 1] + np.arange(4))
        w_axes.append(_bspline3(offs))  # (n, 4)
    valid = np.all((start >= 0) & (start + 3 < np.asarray(size)), axis=1)
    kx, ky, kz = np.meshgrid(np.arange(4), np.arange(4), np.arange(4), indexing="ij")
    kx, ky, kz = kx.ravel(), ky.ravel(), kz.ravel()
    weights = w_axes[0][:, kx] * w_axes[1][:, ky] * w_axes[2][:, kz]  # (n, 64)
    cols = (start[:, 0:1] + kx) + size[0] * ((start[:, 1:2] + ky) + size[1] * (start[:, 2:3] + kz))
    weights[~valid] = 0.0
    cols[~valid] = 0
    rows = np.repeat(np.arange(n), 64)
    n_ctrl = size[0] * size[1] * size[2]
    return sparse.csr_matrix((weights.ravel(), (rows, cols.ravel())), shape=(n, n_ctrl))


def _subdivision_matrix(n_coarse: int, n_fine: int) -> np.ndarray:
    """1-D matrix mapping coarse cubic B-spline coefficients to those of a grid twice as fine.

    Coarse control point ``k`` sits at ``o_c + k h``; fine point ``j`` at ``o_c + (j + 1) h / 2``
    (ITK places one control spacing before the domain, so halving the spacing shifts the first
    point by ``h / 2``). Fine point at an even half-step ``2k`` coincides with coarse point ``k``
    and gets ``(c_{k-1} + 6 c_k + c_{k+1}) / 8``; odd half-steps get ``(c_k + c_{k+1}) / 2``.
    """
    s = np.zeros((n_fine, n_coarse))
    for j in range(n_fine):
        t = j + 1  # position in half coarse spacings from coarse point 0
        if t % 2 == 0:
            k = t // 2
            for kk, w in ((k - 1, 1 / 8), (k, 6 / 8), (k + 1, 1 / 8)):
                if 0 <= kk < n_coarse:
                    s[j, kk] += w
        else:
            k = (t - 1) // 2
            for kk, w in ((k, 0.5), (k + 1, 0.5)):
                if 0 <= kk < n_coarse:
                    s[j, kk] += w
    return s


def refine_coefficients(coarse: sitk.BSplineTransform, fine: sitk.BSplineTransform) -> np.ndarray:
    """Parameters of ``fine`` (same domain, mesh twice as fine) representing ``coarse`` exactly
    (up to the outermost fine control points, which lie beyond the coarse support)."""
    _, _, _, cs = _grid_of_coefficients(coarse)
    _, _, _, fs = _grid_of_coefficients(fine)
    mats = [_subdivision_matrix(c, f) for c, f in zip(cs, fs)]
    cp = np.asarray(coarse.GetParameters(), dtype=float).reshape(3, cs[2], cs[1], cs[0])
    out = []
    for comp in range(3):
        a = cp[comp]
        a = np.einsum("fk,zyk->zyf", mats[0], a)
        a = np.einsum("fk,zkx->zfx", mats[1], a)
        a = np.einsum("fk,kyx->fyx", mats[2], a)
        out.append(a.ravel())
    return np.concatenate(out)


class _Moving:
    """Moving image with trilinear sampling of values and gradients at physical points.

    Value and the three gradient components are stored interleaved, so one trilinear gather of
    8 corners fetches all four (about three times faster than four ``map_coordinates`` calls).
    """

    def __init__(self, image: sitk.Image, box: tuple[slice, slice, slice] | None = None):
        full = sitk.GetArrayViewFromImage(image)
        array = np.asarray(full[box] if box is not None else full, dtype=np.float32)
        start = (0, 0, 0) if box is None else (box[2].start, box[1].start, box[0].start)
        self.origin = np.asarray(image.TransformIndexToPhysicalPoint([int(i) for i in start]), dtype=float)
        self.spacing = np.asarray(image.GetSpacing(), dtype=float)
        self.direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
        nz, ny, nx = array.shape
        # Value and central-difference gradient (per mm along the x, y, z index axes),
        # written straight into one interleaved array: no full-size temporaries.
        data = np.empty((nz, ny, nx, 4), dtype=np.float32)
        data[..., 0] = array
        for channel, axis in ((1, 2), (2, 1), (3, 0)):
            out = data[..., channel]
            h = float(self.spacing[2 - axis])
            n = array.shape[axis]
            if n < 2:
                out[...] = 0.0
                continue
            sl = lambda a, b: tuple(slice(a, b) if k == axis else slice(None) for k in range(3))  # noqa: E731
            np.subtract(array[sl(2, None)], array[sl(None, -2)], out=out[sl(1, -1)])
            out[sl(1, -1)] /= 2.0 * h
            np.subtract(array[sl(1, 2)], array[sl(0, 1)], out=out[sl(0, 1)])
            np.subtract(array[sl(n - 1, n)], array[sl(n - 2, n - 1)], out=out[sl(n - 1, n)])
            out[sl(0, 1)] /= h
            out[sl(n - 1, n)] /= h
        del array
        self.data = data.reshape(-1, 4)
        self.strides = np.array([1, nx, nx * ny], dtype=np.int64)  # x, y, z
        self.upper = np.array([nx, ny, nz], dtype=float) - 1.0
        corners = []
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    corners.append((dx, dy, dz, dx + dy * nx + dz * nx * ny))
        self.corners = corners

    def sample(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values (n,), physical gradients (n, 3) and an inside flag (n,) at LPS points."""
        cidx = ((points_mm - self.origin) @ self.direction) / self.spacing  # (n, 3) x, y, z
        inside = np.all((cidx >= 0) & (cidx <= self.upper), axis=1)
        c = np.clip(cidx, 0.0, np.maximum(self.upper - 1e-6, 0.0))
        i0 = c.astype(np.int64)  # floor, as c >= 0
        frac = (c - i0).astype(np.float32)
        base = i0 @ self.strides
        fx, fy, fz = frac[:, 0], frac[:, 1], frac[:, 2]
        gx, gy, gz = 1.0 - fx, 1.0 - fy, 1.0 - fz
        wyz = (gy * gz, fy * gz, gy * fz, fy * fz)
        out = np.zeros((points_mm.shape[0], 4), dtype=np.float32)
        for dx, dy, dz, off in self.corners:
            w = wyz[dy + 2 * dz] * (fx if dx else gx)
            out += w[:, None] * np.take(self.data, base + off, axis=0)
        grad = out[:, 1:].astype(np.float64) @ self.direction.T  # index-axis derivatives (per mm) to LPS
        return out[:, 0].astype(np.float64), grad, inside


def _neighbour_sum(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum over the 6 face neighbours of each control point (inside the grid) and their count.
    ``c`` has shape (3, nz, ny, nx)."""
    total = np.zeros_like(c)
    count = np.zeros(c.shape[1:], dtype=float)
    for axis in (1, 2, 3):
        n = c.shape[axis]
        if n < 2:
            continue
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        total[tuple(lo)] += c[tuple(hi)]
        total[tuple(hi)] += c[tuple(lo)]
        count[tuple(lo[1:])] += 1
        count[tuple(hi[1:])] += 1
    return total, count


def _smoothness(coef: np.ndarray, size: tuple[int, int, int]) -> tuple[float, np.ndarray]:
    """Penalty ``sum_k |c_k - mean of its face neighbours|^2`` (a discrete Laplacian of the
    control grid, a membrane-like smoothness term) and its exact gradient ``2 L^T L c``."""
    c = coef.reshape(3, size[2], size[1], size[0])
    total, count = _neighbour_sum(c)
    count = np.maximum(count, 1.0)
    lap = c - total / count
    value = float(np.sum(lap**2))
    # L = I - N with (N c)_k = sum_{j in nb(k)} c_j / count_k, so N^T v = neighbour sum of v / count.
    back, _ = _neighbour_sum(lap / count)
    grad = 2.0 * (lap - back)
    return value, grad.ravel()


def fit_bspline(
    fixed: sitk.Image,
    moving: sitk.Image,
    rigid: sitk.Transform,
    sample_mask: sitk.Image,
    levels: tuple[BSplineLevel, ...],
    *,
    smoothness_weight: float,
    seed: int,
    moving_margin_mm: float = 15.0,
    on_iteration: Callable[[int, int, int, float], None] | None = None,
) -> tuple[sitk.BSplineTransform, list[int], float, str]:
    """Fit ``u`` so that ``moving(rigid(x + u(x)))`` matches ``fixed(x)`` at bone samples.

    Parameters
    ----------
    fixed, moving : float32 images (HU already clamped), any grids; physical space LPS mm.
    rigid : maps fixed points to moving points (applied after ``u``).
    sample_mask : uint8 image (any grid, e.g. a coarse copy of ``fixed``); samples are drawn
        uniformly inside its non-zero voxels, and their fixed values interpolated from ``fixed``.
    levels : control spacings (coarse to fine, each half the previous), sample counts, iterations.
    smoothness_weight : ``lambda`` of the Laplacian penalty, in HU² per mm².
    seed : seed of the sample draw.
    moving_margin_mm : only the part of ``moving`` within this margin of the rigidly mapped
        samples is kept in memory (with its gradient).
    on_iteration : called as ``on_iteration(level, iteration, max_iterations, cost)``.

    Returns
    -------
    (bspline, iterations per level, final cost, stop message)
    """
    rng = np.random.default_rng(seed)
    mask_arr = sitk.GetArrayViewFromImage(sample_mask)
    candidates = np.flatnonzero(np.asarray(mask_arr).ravel())
    if candidates.size < 100:
        raise ValueError(f"only {candidates.size} bone voxels to sample; the B-spline stage needs bone in the current exam")
    m_origin = np.asarray(sample_mask.GetOrigin(), dtype=float)
    m_spacing = np.asarray(sample_mask.GetSpacing(), dtype=float)
    m_dir = np.asarray(sample_mask.GetDirection(), dtype=float).reshape(3, 3)
    f_origin = np.asarray(fixed.GetOrigin(), dtype=float)
    f_spacing = np.asarray(fixed.GetSpacing(), dtype=float)
    f_dir = np.asarray(fixed.GetDirection(), dtype=float).reshape(3, 3)
    fixed_arr = sitk.GetArrayViewFromImage(fixed)
    a_rigid = np.asarray(rigid.GetMatrix(), dtype=float).reshape(3, 3)
    center = np.asarray(rigid.GetCenter(), dtype=float)
    translation = np.asarray(rigid.GetTranslation(), dtype=float)
    offset = translation + center - a_rigid @ center

    # Keep only the part of the moving image the samples can reach.
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    mask_zyx = np.argwhere(np.asarray(mask_arr) != 0)
    lo_idx, hi_idx = mask_zyx.min(axis=0)[::-1] - 0.5, mask_zyx.max(axis=0)[::-1] + 0.5
    box_pts = m_origin + ((lo_idx + corners * (hi_idx - lo_idx)) * m_spacing) @ m_dir.T
    mapped = box_pts @ a_rigid.T + offset
    mv_origin = np.asarray(moving.GetOrigin(), dtype=float)
    mv_spacing = np.asarray(moving.GetSpacing(), dtype=float)
    mv_dir = np.asarray(moving.GetDirection(), dtype=float).reshape(3, 3)
    mv_idx = ((mapped - mv_origin) @ mv_dir) / mv_spacing
    margin = moving_margin_mm / mv_spacing
    mv_size = np.asarray(moving.GetSize())
    lo = np.clip(np.floor(mv_idx.min(axis=0) - margin), 0, mv_size - 1).astype(int)
    hi = np.clip(np.ceil(mv_idx.max(axis=0) + margin) + 1, 1, mv_size).astype(int)
    if np.any(hi - lo < 2):
        raise ValueError("the bone of the current exam maps outside the prior exam after the rigid stage")
    mov = _Moving(moving, (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])))

    size_xyz = np.asarray(fixed.GetSize())
    extent = size_xyz * f_spacing
    n_threads = max(1, min(_N_CHUNKS, sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()))
    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    previous: sitk.BSplineTransform | None = None
    iterations: list[int] = []
    cost = float("nan")
    message = ""
    try:
        for level_index, level in enumerate(levels):
            mesh = [max(1, int(math.ceil(e / level.control_spacing_mm))) for e in extent]
            if previous is not None:
                prev_mesh = previous.GetTransformDomainMeshSize()
                mesh = [2 * m for m in prev_mesh]
            bspline = sitk.BSplineTransformInitializer(fixed, mesh, 3)
            if previous is not None:
                bspline.SetParameters(tuple(refine_coefficients(previous, bspline)))
            _, _, _, csize = _grid_of_coefficients(bspline)
            n_ctrl = csize[0] * csize[1] * csize[2]

            n = min(level.n_samples, 8 * candidates.size)
            flat = np.sort(rng.choice(candidates, size=n, replace=n > candidates.size))
            zyx = np.stack(np.unravel_index(flat, mask_arr.shape), axis=1)
            # Uniform within each mask voxel, so samples do not sit on a lattice.
            idx_xyz = zyx[:, ::-1].astype(float) + rng.uniform(-0.5, 0.5, size=(n, 3))
            points = m_origin + (idx_xyz * m_spacing) @ m_dir.T
            f_idx = ((points - f_origin) @ f_dir) / f_spacing
            f_vals = ndi.map_coordinates(np.asarray(fixed_arr, dtype=np.float32), f_idx[:, ::-1].T, order=1, mode="nearest", prefilter=False)
            weights = bspline_weights_matrix(bspline, points)
            base = points @ a_rigid.T + offset  # R(x)
            # Contiguous chunks of (spatially sorted) samples, evaluated in parallel threads: NumPy's
            # gathers and SciPy's sparse products release the GIL. Always _N_CHUNKS chunks, summed
            # in chunk order, so that the sums (and the fit, bit for bit) do not depend on the
            # thread count, which other code may change (SimpleITK's global default).
            bounds = np.linspace(0, n, _N_CHUNKS + 1).astype(int)
            chunks = []
            for lo_i, hi_i in zip(bounds[:-1], bounds[1:]):
                w = weights[lo_i:hi_i]
                chunks.append((w, w.T, base[lo_i:hi_i], f_vals[lo_i:hi_i]))
            del weights
            state = {"it": 0, "cost": float("nan")}

            def partial(chunk: tuple, comps: np.ndarray) -> tuple[float, int, np.ndarray]:
                w, w_t, base_c, f_c = chunk
                u = np.stack([w @ comps[k] for k in range(3)], axis=1)  # (n_c, 3)
                values, grad, inside = mov.sample(base_c + u @ a_rigid.T)
                r = np.where(inside, values - f_c, 0.0)
                g_u = r[:, None] * (grad @ a_rigid)  # d(r^2)/du / 2, (n_c, 3)
                return float(np.dot(r, r)), int(inside.sum()), np.asarray(w_t @ g_u)

            def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
                comps = params.reshape(3, n_ctrl)
                if pool is not None:
                    parts = list(pool.map(lambda c: partial(c, comps), chunks))
                else:
                    parts = [partial(c, comps) for c in chunks]
                m = max(sum(p[1] for p in parts), 1)
                data = sum(p[0] for p in parts) / m
                g = ((2.0 / m) * sum(p[2] for p in parts)).T.ravel()  # (3 * n_ctrl,)
                if smoothness_weight > 0:
                    s_val, s_grad = _smoothness(params, csize)
                    data += smoothness_weight * s_val
                    g = g + smoothness_weight * s_grad
                state["cost"] = data
                return data, g

            def callback(_xk: np.ndarray) -> None:
                state["it"] += 1
                if on_iteration is not None:
                    on_iteration(level_index, state["it"], level.max_iterations, state["cost"])

            result = optimize.minimize(
                objective,
                np.asarray(bspline.GetParameters(), dtype=float),
                jac=True,
                method="L-BFGS-B",
                callback=callback,
                options={"maxiter": level.max_iterations, "maxcor": 10, "ftol": 1e-7, "gtol": 1e-6},
            )
            bspline.SetParameters(tuple(float(v) for v in result.x))
            iterations.append(int(result.nit))
            cost = float(result.fun)
            message = f"L-BFGS-B at level {level_index} ({level.control_spacing_mm:g} mm grid): {result.message if isinstance(result.message, str) else result.message.decode()}"
            previous = bspline
            chunks = []  # the level's samples are freed (the objective that reads them is done)
    finally:
        if pool is not None:
            pool.shutdown()
    assert previous is not None
    return previous, iterations, cost, message
