"""Resolution matching of the analytic model: a softer or sharper second scan is not read as change.

The toy pair's current exam is re-made with another "kernel" (an in-plane Gaussian blur, or an
unsharp mask) of the same anatomy; the fitted match must remove most of the resulting residual in
bone, not make a pair of equal resolution worse, keep the lesions' change, and so lower the
analytic model's false alarms in normal bone.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from detector.zscore import compute_zmap
from detector.zscore_analytic import match_resolution

from .zscore_toy import toy_pair


def _rsd(v: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _rekernel(pair, how: str, seed: int = 11):  # type: ignore[no-untyped-def]
    """The pair with its current exam re-made: noise-free anatomy (the prior minus nothing) filtered, new noise."""
    cur = pair.current.array.astype(np.float64)
    if how == "soft":
        out = ndi.gaussian_filter(cur, (0.0, 1.0, 1.0), mode="nearest")
    else:  # sharper: an unsharp mask in-plane
        out = cur + 0.8 * (cur - ndi.gaussian_filter(cur, (0.0, 1.0, 1.0), mode="nearest"))
    out += np.random.default_rng(seed).normal(0.0, 5.0, out.shape)
    return pair.current.with_array(np.rint(out).astype(np.float32))


@pytest.mark.parametrize("how", ["soft", "sharp"])
def test_a_kernel_change_is_fitted_and_removed(how):
    pair = toy_pair(seed=21, noise_hu=5.0)
    current = _rekernel(pair, how)
    roi = pair.roi.array != 0
    normal = roi & (pair.lesions.array == 0)
    cur, pri = current.array, pair.prior.array
    matched, info = match_resolution(cur, pri, roi)
    before = _rsd((cur - pri)[normal])
    after = _rsd((cur - matched)[normal])
    assert after < 0.6 * before, (before, after)
    assert info["residual_rsd_hu"][1] < info["residual_rsd_hu"][0]
    assert len(info["coefficients"]) == 1 + 2 * len(info["scales_vox"])
    np.testing.assert_array_equal(matched[~roi], pri[~roi])  # only the ROI is matched
    # the lesions' change survives the match (they are not a blur of the prior)
    for label in (1, 2):
        les = (pair.lesions.array == label) & roi
        core = ndi.binary_erosion(les, iterations=1)
        change_raw = float(np.mean((cur - pri)[core]))
        change_matched = float(np.mean((cur - matched)[core]))
        assert change_matched == pytest.approx(change_raw, rel=0.2)


def test_a_pair_of_equal_resolution_is_not_made_worse():
    pair = toy_pair(seed=22, noise_hu=10.0)
    roi = pair.roi.array != 0
    normal = roi & (pair.lesions.array == 0)
    cur, pri = pair.current.array, pair.prior.array
    matched, info = match_resolution(cur, pri, roi)
    # no kernel to match: at most a light blur of the prior's own noise, which can only help
    assert _rsd((cur - matched)[normal]) <= _rsd((cur - pri)[normal])
    assert float(np.abs(matched - pri)[normal].mean()) < 10.0  # below the noise of one exam


def test_analytic_zmap_uses_the_matched_prior_and_has_fewer_false_alarms():
    pair = toy_pair(seed=23, noise_hu=5.0)
    current = _rekernel(pair, "sharp")
    normal = (pair.roi.array != 0) & (pair.lesions.array == 0)
    prior_before = pair.prior.array.copy()
    plain = compute_zmap(current, pair.prior, pair.roi, model="analytic", resolution_match=False)
    matched = compute_zmap(current, pair.prior, pair.roi, model="analytic")
    np.testing.assert_array_equal(pair.prior.array, prior_before)  # the warped prior itself is never written into
    assert plain.parameters["resolution_match"] is None
    rinfo = matched.parameters["resolution_match"]
    assert rinfo["coefficients"] is not None and rinfo["n_fit_voxels"] > 0
    # the estimate is the matched prior inside the ROI, and z = (current - estimate) / sigma
    assert not np.array_equal(matched.estimate_hu.array, pair.prior.array)
    sel = (pair.roi.array != 0) & (matched.sigma_hu.array > 0)
    np.testing.assert_allclose(
        matched.z.array[sel], (current.array[sel] - matched.estimate_hu.array[sel]) / matched.sigma_hu.array[sel], rtol=1e-4, atol=1e-4
    )
    assert matched.fraction_above(3.0, normal) < plain.fraction_above(3.0, normal)
    # the lesions keep their polarity
    lyt, bla = pair.lesions.array == 1, pair.lesions.array == 2
    assert np.median(matched.z.array[lyt]) < -3.0 and np.median(matched.z.array[bla]) > 3.0


def test_an_empty_roi_returns_the_prior():
    pair = toy_pair(seed=24)
    empty = np.zeros(pair.prior.shape, bool)
    matched, info = match_resolution(pair.current.array, pair.prior.array, empty)
    np.testing.assert_array_equal(matched, pair.prior.array)
    assert info["coefficients"] is None
