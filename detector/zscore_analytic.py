"""What the z-map assumes where no network is used, and where the prior has no data.

The **analytic error model** (:func:`analytic_sigma`) is the hand-made version of what the
z-score network learns:

    sigma_a(x)^2 = s_local(x)^2 + (delta_mm * |grad prior(x)|)^2,

``s_local``: a robust local scale (1.4826 x median absolute deviation) of the plain subtraction
in bone, in blocks of about ``block_mm``; ``|grad prior|``: the gradient magnitude of the warped
prior (HU/mm); ``delta_mm``: the residual misregistration it allows for (0.5 mm by default, about
the measured bone TRE of the registration).

**Resolution matching** (:func:`match_resolution`): before the analytic model forms
``current - estimate``, the warped prior is brought to the current exam's resolution (slice
profile and reconstruction kernel) by a per-pair fit; without it a softer or sharper second scan
shows dense bone 100-450 HU darker or brighter than the prior, which the candidates took for
lytic or blastic change.

**Where the prior has no data** (:func:`prior_missing_mask`, :func:`near_missing_prior`): ROI
voxels next to tissue outside the prior's field of view, where every estimate that looks at a
neighbourhood sees a wall of air.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from ._geometry import mask_bounding_box

__all__ = ["analytic_sigma", "match_resolution", "RESOLUTION_SCALES_VOX", "prior_missing_mask", "near_missing_prior", "PRIOR_MISSING_HU", "TISSUE_HU"]

#: HU the detector pipeline gives warped-prior voxels outside the prior's field of view.
PRIOR_MISSING_HU = -1024.0
#: A current-exam voxel above this HU where the warped prior holds exactly ``PRIOR_MISSING_HU``
#: is tissue the prior did not image (outside its field of view), not air.
TISSUE_HU = -500.0


def analytic_sigma(
    current: Volume,
    warped_prior: Volume,
    bone_roi: LabelVolume,
    *,
    delta_mm: float = 0.5,
    block_mm: float = 15.0,
    floor_hu: float = 10.0,
) -> np.ndarray:
    """The analytic error model: local noise of the subtraction plus edge strength, HU.

    ``sigma_a^2 = s_local^2 + (delta_mm * |grad prior|)^2`` inside the ROI (0 outside).

    Parameters
    ----------
    current, warped_prior : the registered pair on the current grid, HU.
    bone_roi : where to compute.
    delta_mm : residual misregistration allowed for, mm: an edge of gradient ``g`` HU/mm moved by
        ``delta_mm`` changes a voxel by ``delta_mm * g``.
    block_mm : edge of the blocks in which the robust local scale of ``current - prior`` is
        measured (1.4826 x MAD of the ROI voxels of the block); blocks with fewer than 50 ROI
        voxels take the global value; the block map is smoothed over 3x3x3 blocks and
        interpolated to the voxels.
    floor_hu : lower bound of ``sigma_a``.
    """
    roi = bone_roi.array != 0
    out = np.zeros(current.shape, dtype=np.float32)
    box = mask_bounding_box(roi, margin_vox=(1, 1, 1))
    if box is None:
        return out
    cur = current.array[box].astype(np.float32)
    pri = warped_prior.array[box].astype(np.float32)
    r = roi[box]
    ts = cur - pri
    vals = ts[r]
    med = float(np.median(vals))
    global_scale = max(float(1.4826 * np.median(np.abs(vals - med))), floor_hu)
    sz, sy, sx = current.spacing_mm[2], current.spacing_mm[1], current.spacing_mm[0]

    def edge_strength() -> np.ndarray:
        smooth = ndi.gaussian_filter(pri, sigma=(0.5, 0.5, 0.5), mode="nearest")
        gz, gy, gx = np.gradient(smooth, sz, sy, sx)
        return np.sqrt(gz * gz + gy * gy + gx * gx)[r]

    # in a second thread while the block statistics are gathered (SciPy and NumPy release the GIL)
    edge_pool = ThreadPoolExecutor(max_workers=1)
    edge = edge_pool.submit(edge_strength)
    bz, by, bx = (max(2, int(round(block_mm / s))) for s in (sz, sy, sx))
    nbz, nby, nbx = (int(math.ceil(n / b)) for n, b in zip(ts.shape, (bz, by, bx)))
    blocks = np.full((nbz, nby, nbx), np.nan, dtype=np.float32)
    for i in range(nbz):
        for j in range(nby):
            for k in range(nbx):
                sl = (slice(i * bz, (i + 1) * bz), slice(j * by, (j + 1) * by), slice(k * bx, (k + 1) * bx))
                m = r[sl]
                if m.sum() >= 50:
                    v = ts[sl][m]
                    blocks[i, j, k] = 1.4826 * np.median(np.abs(v - np.median(v)))
    blocks = np.where(np.isfinite(blocks), blocks, global_scale)
    blocks = ndi.uniform_filter(blocks, size=3, mode="nearest")
    # block centres sit at (i + 0.5) * b - 0.5 voxels
    coords = np.nonzero(r)
    pts = np.stack([(c + 0.5) / b - 0.5 for c, b in zip(coords, (bz, by, bx))])
    s_local = ndi.map_coordinates(blocks, pts, order=1, mode="nearest")
    grad = edge.result()
    edge_pool.shutdown()
    sig = np.sqrt(s_local.astype(np.float64) ** 2 + (delta_mm * grad.astype(np.float64)) ** 2)
    sig = np.maximum(sig, floor_hu).astype(np.float32)
    sub = np.zeros(ts.shape, dtype=np.float32)
    sub[r] = sig
    out[box] = sub
    return out


#: Gaussian widths (voxels of the current grid) of the resolution-matching basis (:func:`match_resolution`).
RESOLUTION_SCALES_VOX: tuple[float, ...] = (0.7, 1.5)
#: At most this many ROI voxels (an even stride through them) enter the resolution fit.
_RESOLUTION_FIT_VOXELS = 400_000


def match_resolution(
    current: np.ndarray,
    warped_prior: np.ndarray,
    roi: np.ndarray,
    *,
    scales_vox: Sequence[float] = RESOLUTION_SCALES_VOX,
    iterations: int = 3,
    trim: float = 3.0,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The warped prior brought to the current exam's resolution, fitted on the pair itself.

    A second scan with thicker slices or another reconstruction kernel shows the same bone
    blurred or sharpened: dense cortex and trabecular plates 100-450 HU darker or brighter than
    the prior, everywhere in the skeleton and with one sign per pair. Measured on the real-CT
    tuning pairs (seed 100; docs/detector-zscore.md), these were most of the analytic model's
    false positives above its operating point. Neither the slice profile nor the kernel is in a
    NIfTI header, so the difference is *fitted*: to first order a change of resolution adds a
    multiple of ``G_s * prior - prior`` (a Gaussian blur minus the image; a negative multiple
    sharpens), separately in-plane and along z. The estimate is

        prior + c0 + sum_k a_k (G_xy(s_k) * prior - prior) + b_k (G_z(s_k) * prior - prior),

    with ``s_k`` in ``scales_vox`` (voxels of the current grid) and the coefficients from a least
    squares fit of ``current - prior`` over ``roi``, repeated ``iterations`` times without the
    voxels beyond ``trim`` robust sigmas of the previous fit's residual (lesions, which are not a
    function of the prior's blur, drop out; an even stride through at most 400,000 ROI voxels
    enters the fit). Fitting can only lower the residual over the ROI, so a pair of matching
    resolution gets coefficients near 0.

    Parameters
    ----------
    current, warped_prior : the registered pair on the current grid, HU (z, y, x).
    roi : where the fit is made and the estimate is returned (bone ROI without the voxels near
        the prior's missing field of view).
    scales_vox, iterations, trim : the basis and the robust fit (see above).
    region : where the estimate is returned (None: ``roi``). The z-score network's input
        (:func:`detector.zscore_model.network_prior_input`) asks for the whole bounding box of
        the ROI grown by the blur's reach, so that its receptive field sees one image, not a
        matched ROI inside an unmatched surround.

    Returns
    -------
    (estimate, info) : the matched prior (float32; the warped prior outside ``region``) and
    ``{"coefficients": [c0, a_1, b_1, ...], "scales_vox": [...], "residual_rsd_hu": [before, after]
    (robust SD of current - prior and of current - estimate over the voxels the fit read),
    "n_fit_voxels": n (those kept by the last trimming)}``.
    """
    pri_full = np.asarray(warped_prior, dtype=np.float32)
    out = pri_full.copy()
    info: dict[str, Any] = {"scales_vox": [float(s) for s in scales_vox], "coefficients": None, "residual_rsd_hu": None, "n_fit_voxels": 0}
    reach = int(math.ceil(4.0 * max(scales_vox, default=0.0))) + 1
    box = mask_bounding_box(roi if region is None else (roi | region), margin_vox=(reach, reach, reach))
    if box is None or not scales_vox or int(roi.sum()) < 100:
        return out, info
    cur = np.asarray(current[box], dtype=np.float32)
    pri = pri_full[box]
    r = roi[box]
    # where the estimate is formed: the fit's ROI, or the caller's region
    a = r if region is None else np.asarray(region[box], dtype=bool)
    # tissue the prior did not image reads -1024 HU in the warped prior: let the blur see the current there
    missing = prior_missing_mask(cur, pri)
    pri = np.where(missing, cur, pri).astype(np.float32)

    def blur_diff(s: float, axis: str) -> tuple[np.ndarray, np.ndarray | None]:
        sig = (0.0, s, s) if axis == "xy" else (s, 0.0, 0.0)
        d = ndi.gaussian_filter(pri, sig, mode="nearest") - pri
        return d[r], (d[a] if region is not None else None)

    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(blur_diff, float(s), ax) for s in scales_vox for ax in ("xy", "z")]
        both = [j.result() for j in jobs]
    feats = [f for f, _ in both]
    apply_feats = feats if region is None else [g for _, g in both]
    # the fit reads an even stride through the ROI voxels; the estimate is formed at every one
    n = int(r.sum())
    stride = max(1, int(math.ceil(n / _RESOLUTION_FIT_VOXELS)))
    ys = (cur - pri)[r][::stride].astype(np.float64)
    Xs = np.column_stack([np.ones(ys.size)] + [f[::stride].astype(np.float64) for f in feats])

    def rsd(v: np.ndarray) -> float:
        return float(1.4826 * np.median(np.abs(v - np.median(v))))

    keep = np.ones(ys.size, dtype=bool)
    coef = np.zeros(Xs.shape[1])
    for _ in range(max(1, iterations)):
        coef, *_ = np.linalg.lstsq(Xs[keep], ys[keep], rcond=None)
        res = ys - Xs @ coef
        keep = np.abs(res - np.median(res)) <= trim * max(rsd(res), 1e-6)
    est = pri[a] + np.float32(coef[0])
    for c, f in zip(coef[1:], apply_feats):
        est += np.float32(c) * f
    sub = out[box]  # a view: written in place
    sub[a] = est
    if region is not None:  # outside the ROI, the prior's missing field of view stays as the warped prior has it
        np.copyto(sub, pri_full[box], where=missing & a)
    info.update(
        coefficients=[float(v) for v in coef],
        residual_rsd_hu=[rsd(ys), rsd(ys - Xs @ coef)],
        n_fit_voxels=int(keep.sum()),
    )
    return out, info


def prior_missing_mask(current_hu: np.ndarray, warped_prior_hu: np.ndarray) -> np.ndarray:
    """Voxels the prior did not image: the warped prior is air (-1024 HU) where the current holds tissue.

    The detector pipeline (:func:`detector.run_pair`) sets warped-prior voxels outside the prior's
    field of view to exactly -1024 HU and removes them from the bone ROI. Bone ROI voxels *next*
    to that region keep their own (valid) prior values, but every estimate that looks at a
    neighbourhood — the resampling onto the network's working grid, the network's receptive
    field, a gradient — sees a wall of air where the current shows bone. Measured on a tuning set
    (seed 3000), the largest false positives of the network's z-map sat there (peak z 10-18 at
    1.6-2 mm from the edge of the prior's field of view, in 4 of 20 pairs).
    """
    return (warped_prior_hu <= PRIOR_MISSING_HU + 0.5) & (current_hu > TISSUE_HU)


def _near_missing(missing: np.ndarray, roi: np.ndarray, spacing_mm: Sequence[float], margin_mm: float) -> np.ndarray:
    """ROI voxels within ``margin_mm`` of a missing-prior voxel (Euclidean distance between voxel centres, mm).

    Exact, and cheap on clinical grids: a separable box dilation of the missing voxels (per-axis
    half-width ``floor(margin / spacing)``) finds the few ROI voxels that can qualify, and only
    those are checked against every offset of the ellipsoid of radius ``margin_mm`` (a Euclidean
    distance transform of the whole ROI box took 5.5 s on a 512 x 512 x 300 exam; this about 1 s).
    """
    near = np.zeros(roi.shape, dtype=bool)
    if margin_mm <= 0 or not missing.any():
        return near
    sp_zyx = [float(s) for s in reversed(spacing_mm)]
    half = [int(math.floor(margin_mm / s + 1e-9)) for s in sp_zyx]
    box = mask_bounding_box(roi, margin_vox=tuple(h + 1 for h in half))  # type: ignore[arg-type]
    if box is None:
        return near
    miss = missing[box]
    if not miss.any():
        return near
    grown = ndi.maximum_filter(miss, size=[2 * h + 1 for h in half], mode="constant", cval=False)
    idx = np.argwhere(grown & roi[box])
    if idx.size == 0:
        return near
    hit = np.zeros(len(idx), dtype=bool)
    shape = np.asarray(miss.shape)
    for dz in range(-half[0], half[0] + 1):
        for dy in range(-half[1], half[1] + 1):
            for dx in range(-half[2], half[2] + 1):
                if (dz * sp_zyx[0]) ** 2 + (dy * sp_zyx[1]) ** 2 + (dx * sp_zyx[2]) ** 2 > margin_mm**2 + 1e-9:
                    continue
                todo = ~hit
                p = idx[todo] + (dz, dy, dx)
                ok = np.all((p >= 0) & (p < shape), axis=1)
                sub = np.zeros(len(p), dtype=bool)
                sub[ok] = miss[p[ok, 0], p[ok, 1], p[ok, 2]]
                hit[np.nonzero(todo)[0][sub]] = True
    sel = idx[hit]
    near_box = np.zeros(miss.shape, dtype=bool)
    near_box[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    near[box] = near_box
    return near


def near_missing_prior(
    current_hu: np.ndarray,
    warped_prior_hu: np.ndarray,
    roi: np.ndarray,
    spacing_mm: Sequence[float],
    margin_mm: float,
    prior_missing: np.ndarray | None = None,
) -> np.ndarray:
    """ROI voxels within ``margin_mm`` of tissue the prior did not image (:func:`prior_missing_mask`).

    The missing-prior mask is only evaluated on the ROI's bounding box grown by the margin (on a
    clinical exam that box is a third of the volume); ``prior_missing`` overrides it.
    """
    near = np.zeros(roi.shape, dtype=bool)
    if margin_mm <= 0:
        return near
    half = tuple(int(math.floor(margin_mm / float(s) + 1e-9)) + 1 for s in reversed(spacing_mm))
    box = mask_bounding_box(roi, margin_vox=half)  # type: ignore[arg-type]
    if box is None:
        return near
    miss = prior_missing[box] if prior_missing is not None else prior_missing_mask(current_hu[box], warped_prior_hu[box])
    near[box] = _near_missing(miss, roi[box], spacing_mm, margin_mm)
    return near
