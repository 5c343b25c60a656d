"""z formed from the native voxels (``ZMap.z_native``), the z the lesion candidates are scored on."""

from __future__ import annotations

import numpy as np
import pytest

from detector.zscore import compute_zmap

from .zscore_toy import toy_pair, untrained_model

torch = pytest.importorskip("torch")


def test_native_z_is_current_minus_estimate_over_sigma():
    pair = toy_pair(seed=41)
    zm = compute_zmap(pair.current, pair.prior, pair.roi, model=untrained_model(), prior_spacing_mm=(1.5, 1.5, 1.5))
    assert zm.method == "network" and zm.z_native is not None and zm.candidate_z is zm.z_native
    inside = (pair.roi.array != 0) & (zm.sigma_hu.array > 0)
    expected = (pair.current.array[inside] - zm.estimate_hu.array[inside]) / zm.sigma_hu.array[inside]
    np.testing.assert_allclose(zm.z_native.array[inside], expected, rtol=1e-5, atol=1e-5)
    assert (zm.z_native.array[pair.roi.array == 0] == 0).all()
    # on a 1.5 mm grid the native grid is the working grid: both z agree
    np.testing.assert_allclose(zm.z_native.array[inside], zm.z.array[inside], rtol=1e-3, atol=1e-3)


def test_native_z_differs_from_working_grid_z_on_another_grid_and_keeps_the_margin():
    pair = toy_pair(seed=42, spacing_mm=(1.2, 1.2, 2.0))
    prior = pair.prior.array.copy()
    prior[:6] = -1024.0  # the prior's field of view ends at slice 6
    roi = pair.roi.array.copy()
    roi[:6] = 0
    zm = compute_zmap(
        pair.current, pair.prior.with_array(prior), pair.roi.with_array(roi), model=untrained_model(), prior_spacing_mm=(1.5, 1.5, 2.0), force=True
    )
    inside = roi != 0
    a, b = zm.z.array[inside], zm.z_native.array[inside]
    assert not np.allclose(a, b, atol=1e-2)  # resampling to 1.5 mm and back smooths z
    assert np.corrcoef(a, b)[0, 1] > 0.5  # ... but it is the same map
    # within 3 mm of the missing prior (slice 6, 2 mm away; slice 7 is 4 mm away) both are 0
    assert (zm.z_native.array[6][inside[6]] == 0).all() and (zm.z.array[6][inside[6]] == 0).all()
    assert np.count_nonzero(zm.z_native.array[7][inside[7]]) > 0.9 * inside[7].sum()


def test_analytic_native_z_is_z():
    pair = toy_pair(seed=43)
    zm = compute_zmap(pair.current, pair.prior, pair.roi, model="analytic")
    assert zm.z_native is zm.z and zm.candidate_z is zm.z
