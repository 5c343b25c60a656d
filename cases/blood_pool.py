"""Contrast-filled blood pools and enhancing organs: what a threshold bone mask must leave out.

Contrast blood (150-600 HU) and enhancing kidneys, spleen or bowel wall have the density of
cancellous bone, and in an arterial-phase CT denser than the 400 HU seed of the hysteresis
threshold, so a threshold mask takes in the heart, the aorta and the kidneys wherever they touch
bone. What tells them apart is **shape and surroundings**, not density:

* a **pool** is a thick region of medium density (``lo_hu`` <= HU < ``hi_hu``, 150-700 HU) that
  survives a morphological opening with a ball of ``radius_mm`` (5 mm): thin cortex, ribs and
  trabecular rims do not, nor do the gaps between a vessel and the vertebra beside it;
* bone marrow is **wrapped in cortex**: its surroundings are as dense as it is or denser; a blood
  pool or an organ is **wrapped in soft tissue or fat**, its surroundings are far less dense.

Each component of the opened mask is measured: its median HU ``m``, and the median ``r50`` and
90th percentile ``r90`` of the ring of voxels just outside it. It is a pool when its
surroundings are at least ``rim_drop_hu`` (100 HU) darker than it (``r50 < m - 100``) **and**
either it is large (``>= big_ml``, 120 mL: the heart, a long aorta, a kidney; the marrow of one
bone, after the opening and cut off from its neighbours by discs and joints, measured 2-50 mL)
or it is dense (``m >= 300`` HU, contrast blood; marrow is 100-300 HU) with no cortex-like
ring (``r90 < m + 150``). Components smaller than ``min_ball_volumes`` (2) times the opening's
ball (about 1 mL) are not judged: on 3 mm slices a pedicle or a facet joint, partial-volume
bone of about 300 HU in darker tissue, looks like a small dense pool. The pool is then grown back over the medium-density voxels the opening
had shaved off its border (its partial-volume rim).

A new blastic lesion inside marrow also looks like a dense region in a darker surrounding. The
pipeline therefore removes only pools found in **both** exams (:func:`pools_in_both`: a pool
component of one exam at least half inside a pool of the other; the lesion is marrow in the
prior), see :func:`detector.pipeline.run_pair`.

Everything runs on a copy block-averaged to about ``work_mm`` (2 mm) and is brought back to
the full grid by nearest neighbour; 0.1-1 s on the project's real CTs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .bone import block_factors, label_like
from .volume import LabelVolume, Volume

__all__ = ["PoolSettings", "ExamPools", "blood_pool_mask", "exam_pools", "pools_in_both"]


@dataclass(frozen=True)
class PoolSettings:
    """Parameters of :func:`blood_pool_mask` (see the module docstring for what each does)."""

    lo_hu: float = 150.0
    hi_hu: float = 700.0
    radius_mm: float = 5.0
    rim_drop_hu: float = 100.0
    big_ml: float = 120.0
    dense_hu: float = 300.0
    cortex_rise_hu: float = 150.0
    work_mm: float = 2.0
    min_ball_volumes: float = 2.0


def _ball(radius_vox: list[float]) -> np.ndarray:
    r = [max(1, int(np.floor(x + 1e-6))) for x in radius_vox]
    zz, yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    rz, ry, rx = (max(x, 1e-3) for x in radius_vox)
    return (zz / rz) ** 2 + (yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0 + 1e-9


def _pools_low(volume: Volume, s: PoolSettings) -> tuple[np.ndarray, sitk.Image, list[dict[str, float | bool]]]:
    """The pool mask on the block-averaged working grid, the working-grid image, the records."""
    image = volume.to_sitk()
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    factors = block_factors(volume.spacing_mm, s.work_mm)
    small = sitk.BinShrink(image, factors) if any(f > 1 for f in factors) else image
    del image
    a = sitk.GetArrayFromImage(small)
    sp_zyx = tuple(reversed(small.GetSpacing()))
    medium = (a >= s.lo_hu) & (a < s.hi_hu)
    se = _ball([s.radius_mm / x for x in sp_zyx])
    opened = ndi.binary_opening(medium, se)
    lab, n = ndi.label(opened)
    pools = np.zeros(a.shape, dtype=bool)
    records: list[dict[str, float | bool]] = []
    voxel_ml = float(np.prod(sp_zyx)) / 1000.0
    # A component barely larger than the opening's ball is too small to tell a vessel from a
    # pedicle or a facet (on 3 mm slices their partial-volume bone is ~300 HU in darker tissue).
    min_ml = s.min_ball_volumes * 4.0 / 3.0 * np.pi * s.radius_mm**3 / 1000.0
    ring_se = ndi.generate_binary_structure(3, 1)
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        box = tuple(slice(max(0, q.start - 3), q.stop + 3) for q in sl)
        m = lab[box] == i
        vals = a[box][m]
        ring = ndi.binary_dilation(m, ring_se, iterations=2) & ~m
        ring_vals = a[box][ring]
        med = float(np.median(vals))
        r50 = float(np.median(ring_vals)) if ring_vals.size else med
        r90 = float(np.percentile(ring_vals, 90)) if ring_vals.size else med
        vol = float(m.sum() * voxel_ml)
        darker_around = r50 < med - s.rim_drop_hu
        is_pool = darker_around and vol >= min_ml and (vol >= s.big_ml or (med >= s.dense_hu and r90 < med + s.cortex_rise_hu))
        records.append(
            {
                "volume_ml": round(vol, 2),
                "median_hu": round(med, 1),
                "ring_median_hu": round(r50, 1),
                "ring_p90_hu": round(r90, 1),
                "pool": bool(is_pool),
            }
        )
        if is_pool:
            pools[box] |= m
    if pools.any():
        # grow back over the border the opening shaved off (partial volume with the surroundings)
        pools = ndi.binary_dilation(pools, se) & (a >= s.lo_hu - 100.0) & (a < s.hi_hu) | pools
    return pools, small, records


def _to_full(low: np.ndarray, small: sitk.Image, volume: Volume) -> np.ndarray:
    """A working-grid mask brought back to ``volume``'s grid by nearest neighbour.

    ``small`` is ``sitk.BinShrink(volume, f)``: working voxel ``k`` covers full voxels
    ``f*k .. f*k+f-1`` along each axis, and the full voxels past the last whole block (when
    ``f`` does not divide the size) lie outside it. That is exactly what nearest-neighbour
    resampling onto the full grid gave (each full voxel's continuous index in the working grid
    is ``k + (r - (f-1)/2)/f``, never half-way between two), here by repeating each block, with
    no full-size image of the volume as the reference grid (2.4 of pools_in_both's 4.8 CPU s
    on a 512 x 512 x 300 exam went to that and the resampling).
    """
    full_zyx = tuple(reversed(volume.size))
    small_zyx = tuple(reversed(small.GetSize()))
    if small_zyx == full_zyx:
        return low.astype(np.uint8)
    # BinShrink's output spacing is f times the input's
    fx, fy, fz = (int(round(a / b)) for a, b in zip(small.GetSpacing(), volume.spacing_mm))
    out = np.zeros(full_zyx, dtype=np.uint8)
    blocks = low.astype(np.uint8).repeat(fz, 0).repeat(fy, 1).repeat(fx, 2)
    out[: blocks.shape[0], : blocks.shape[1], : blocks.shape[2]] = blocks
    return out


def blood_pool_mask(volume: Volume, settings: PoolSettings | None = None) -> LabelVolume:
    """Mask (1 = pool) of contrast-filled blood pools and enhancing organs of a CT volume.

    Parameters
    ----------
    volume : CT in HU.
    settings : thresholds and sizes; :class:`PoolSettings` defaults when None.

    Returns
    -------
    LabelVolume
        uint8 on ``volume``'s grid; metadata ``pools`` lists each component examined (volume mL,
        median HU, ring median and 90th percentile, verdict).
    """
    pools = exam_pools(volume, settings)
    mask = label_like(volume, _to_full(pools.low, pools.small, volume))
    mask.metadata["pools"] = pools.records
    return mask


@dataclass(frozen=True, eq=False)
class ExamPools:
    """One exam's pools on the block-averaged working grid (:func:`exam_pools`), kept for
    :func:`pools_in_both`.

    Attributes
    ----------
    low : the pool mask on the working grid (z, y, x).
    small : the working-grid image (``sitk.BinShrink`` of the exam).
    records : each component examined (as in :func:`blood_pool_mask`'s metadata).
    settings : the settings it was made with.
    grid : size, spacing, origin and direction of the exam it was made from.
    """

    low: np.ndarray = field(repr=False)
    small: sitk.Image = field(repr=False)
    records: list[dict[str, float | bool]]
    settings: PoolSettings
    grid: tuple

    def fits(self, volume: Volume, settings: PoolSettings) -> bool:
        """Whether these are the pools of an exam on ``volume``'s grid made with ``settings``."""
        return self.settings == settings and self.grid == _grid_key(volume)


def _grid_key(volume: Volume) -> tuple:
    return (tuple(volume.size), tuple(volume.spacing_mm), tuple(volume.origin_mm), tuple(volume.direction))


def exam_pools(volume: Volume, settings: PoolSettings | None = None) -> ExamPools:
    """The pools of one exam on the working grid, to hand to :func:`pools_in_both`.

    The detector pipeline finds the current exam's pools in a thread while the registration
    runs (they do not depend on the prior), and passes them to :func:`pools_in_both` as
    ``current_pools``.
    """
    s = settings or PoolSettings()
    low, small, records = _pools_low(volume, s)
    return ExamPools(low, small, records, s, _grid_key(volume))


def pools_in_both(
    current: Volume,
    warped_prior: Volume,
    settings: PoolSettings | None = None,
    *,
    min_overlap: float = 0.5,
    current_pools: ExamPools | None = None,
) -> tuple[LabelVolume, LabelVolume]:
    """Pools present in both exams of a registered pair, and the current exam's pools.

    A pool component of either exam counts as shared when at least ``min_overlap`` of it lies in
    a pool of the other exam (so the two exams' pool outlines need not agree voxel by voxel); a
    new blastic lesion in marrow, a pool in the current exam only, is not shared.
    ``current_pools``: the current exam's pools made earlier by :func:`exam_pools` (with the
    same settings); None: found here.

    Returns
    -------
    (shared, current_pools) : uint8 masks on the current grid.
    """
    if not current.same_space(warped_prior):
        raise ValueError("pools_in_both needs the prior warped onto the current exam's grid.")
    s = settings or PoolSettings()
    if current_pools is not None:
        if not current_pools.fits(current, s):
            raise ValueError("pools_in_both: current_pools were made from another exam or with other settings.")
        cur_low, small = current_pools.low, current_pools.small
        pri_low, _, _ = _pools_low(warped_prior, s)
    else:
        # the two exams in two threads (SimpleITK and scipy.ndimage release the GIL)
        with ThreadPoolExecutor(max_workers=1) as pool:
            prior_done = pool.submit(_pools_low, warped_prior, s)
            cur_low, small, _ = _pools_low(current, s)
            pri_low, _, _ = prior_done.result()
    shared = np.zeros_like(cur_low)
    for mine, other in ((cur_low, pri_low), (pri_low, cur_low)):
        lab, n = ndi.label(mine, np.ones((3, 3, 3), bool))
        if n == 0:
            continue
        size = np.bincount(lab.ravel(), minlength=n + 1)
        inside = np.bincount(lab.ravel(), weights=other.ravel().astype(np.float64), minlength=n + 1)
        keep = inside >= min_overlap * np.maximum(size, 1)
        keep[0] = False
        shared |= keep[lab]
    return label_like(current, _to_full(shared, small, current)), label_like(current, _to_full(cur_low, small, current))
