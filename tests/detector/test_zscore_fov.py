"""Bone next to tissue the prior did not image (outside its field of view) gets no z."""

from __future__ import annotations

import numpy as np
import pytest

from detector.zscore import compute_zmap, prior_missing_mask

from .zscore_toy import toy_pair, untrained_model

torch = pytest.importorskip("torch")

EDGE = 10  # the prior's field of view starts at this slice (z index)


def _pair_with_short_prior():
    """The toy pair with a prior that ends at slice EDGE, as the pipeline writes it: warped
    prior -1024 HU outside its field of view, those voxels out of the bone ROI."""
    pair = toy_pair(seed=21, lesions=False)
    prior = pair.prior.array.copy()
    prior[:EDGE] = -1024.0
    roi = pair.roi.array.copy()
    roi[:EDGE] = 0
    return pair, pair.prior.with_array(prior), pair.roi.with_array(roi)


def test_prior_missing_mask_marks_tissue_the_prior_did_not_image():
    pair, prior, _ = _pair_with_short_prior()
    miss = prior_missing_mask(pair.current.array, prior.array)
    assert miss[:EDGE, 20, 20].all()  # bone and soft tissue of the current, air in the prior
    assert not miss[EDGE:].any()
    assert not miss[:, :, 0].any()  # air in both exams is not "missing"


@pytest.mark.parametrize("model", ["analytic", "network"])
def test_z_is_zero_within_the_margin_of_the_prior_edge(model):
    pair, prior, roi = _pair_with_short_prior()
    spec = untrained_model() if model == "network" else "analytic"
    zm = compute_zmap(pair.current, prior, roi, model=spec, prior_spacing_mm=(1.5, 1.5, 1.5))
    inside = roi.array != 0
    z = zm.z.array
    # 3 mm at 1.5 mm slices: the two slices next to the edge are left out, the next ones are not
    assert (z[EDGE : EDGE + 2][inside[EDGE : EDGE + 2]] == 0).all()
    assert np.count_nonzero(z[EDGE + 2 : EDGE + 4][inside[EDGE + 2 : EDGE + 4]]) > 0.9 * inside[EDGE + 2 : EDGE + 4].sum()
    n_expected = int(inside[EDGE : EDGE + 2].sum())
    assert zm.parameters["n_voxels_near_missing_prior"] == n_expected
    assert any("field of view" in n for n in zm.notes)
    # switched off: every ROI voxel has its z again
    off = compute_zmap(pair.current, prior, roi, model=spec, prior_spacing_mm=(1.5, 1.5, 1.5), prior_fov_margin_mm=0.0)
    assert np.count_nonzero(off.z.array[EDGE : EDGE + 2][inside[EDGE : EDGE + 2]]) > 0.9 * n_expected
    assert off.parameters["n_voxels_near_missing_prior"] == 0


def test_explicit_missing_mask_is_checked():
    pair, prior, roi = _pair_with_short_prior()
    from detector._errors import DetectorInputError

    with pytest.raises(DetectorInputError, match="prior_missing"):
        compute_zmap(pair.current, prior, roi, model="analytic", prior_missing=np.zeros((3, 3, 3), bool))


@pytest.mark.parametrize("margin_mm", [1.0, 3.0, 4.5])
def test_near_missing_equals_a_euclidean_distance_transform(margin_mm):
    from scipy import ndimage as ndi

    from detector.zscore import _near_missing

    rng = np.random.default_rng(7)
    missing = ndi.binary_opening(rng.random((30, 34, 38)) > 0.7)  # blobs of "no prior data"
    roi = rng.random(missing.shape) > 0.4
    roi &= ~missing
    spacing_xyz = (0.8, 1.1, 2.0)
    dist = ndi.distance_transform_edt(~missing, sampling=tuple(reversed(spacing_xyz)))
    expected = (dist <= margin_mm) & roi
    got = _near_missing(missing, roi, spacing_xyz, margin_mm)
    assert expected.any() and np.array_equal(got, expected)
