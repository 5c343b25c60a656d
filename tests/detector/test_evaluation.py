"""The accuracy measures themselves: bulk point mapping, TRE and contrast against the truth."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from detector import DetectorInputError, measure_registration, temporal_subtraction
from detector.evaluation import transform_points


def test_bulk_point_mapping_equals_simpleitk(reg_pair):
    """Euler + displacement field (the synthetic truth), evaluated in bulk vs point by point,
    including points outside the field where ITK leaves them untransformed."""
    t = reg_pair.true_transform
    rng = np.random.default_rng(0)
    lo = np.asarray(reg_pair.current.origin_mm) - 30
    hi = lo + np.asarray(reg_pair.current.extent_mm) + 60
    pts = rng.uniform(lo, hi, size=(3000, 3))
    expected = np.array([t.TransformPoint(tuple(p)) for p in pts])
    np.testing.assert_allclose(transform_points(t, pts), expected, atol=1e-9)
    bspline = sitk.BSplineTransformInitializer(reg_pair.current.to_sitk(), [4, 4, 3], 3)
    bspline.SetParameters(tuple(rng.normal(0, 2, bspline.GetNumberOfParameters())))
    expected = np.array([bspline.TransformPoint(tuple(p)) for p in pts[:200]])
    np.testing.assert_allclose(transform_points(bspline, pts[:200]), expected, atol=1e-9)


def test_true_transform_scores_zero_error_and_full_contrast(reg_pair):
    truth = reg_pair.true_transform
    prior, current = reg_pair.prior, reg_pair.current
    warped = sitk.Resample(prior.to_sitk(), current.to_sitk(), truth, sitk.sitkLinear, float(prior.array.min()))
    from cases import Volume

    warped_vol = Volume.from_sitk(warped)
    sub = temporal_subtraction(current, warped_vol, kernel="none")
    m = measure_registration(truth, truth, current, prior=prior, subtraction=sub, bone=reg_pair.bone_label, lesion_labels=reg_pair.lesion_labels)
    assert m.tre_mean_mm == pytest.approx(0.0, abs=1e-9) and m.tre_max_mm == pytest.approx(0.0, abs=1e-9)
    assert m.tre_initial_mean_mm > 3.0
    assert np.isnan(m.tre_rigid_mean_mm)  # a bare transform has no rigid part to report
    for lesion in m.lesions:
        assert lesion["kept_plain_pct"] == pytest.approx(100.0, abs=1e-3)
    # Noise of two independent exams (15-30 HU each) is the floor of the artifact level.
    assert 10 < m.artifact_plain_hu < 45
    d = m.to_dict()
    assert d["tre_rigid_mean_mm"] is None and d["n_lesions"] == len(reg_pair.lesions)
    assert "TRE in bone" in m.summary()


def test_measure_needs_labels_on_the_current_grid(reg_pair):
    coarse = reg_pair.bone_label.resample_to(reg_pair.prior)
    with pytest.raises(DetectorInputError, match="not on the current exam's grid"):
        measure_registration(reg_pair.true_transform, reg_pair.true_transform, reg_pair.current, bone=coarse)
