"""The matched-filter score: unit variance on white noise, a weak extended lesion becomes strong,
an isolated hot voxel does not, and ``tsct detect evaluate`` rates candidates by it."""

from __future__ import annotations

import numpy as np
import pytest

from cases import Volume
from detector._errors import DetectorInputError
from detector.candidates import find_candidates, matched_filter_score

SPACING = (1.5, 1.5, 2.0)  # x, y, z mm


def _noise(seed: int = 0, shape=(40, 48, 48)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_white_noise_keeps_unit_variance_inside_and_at_the_edge_of_the_roi():
    z = Volume(_noise(1), SPACING)
    roi = np.zeros(z.shape, bool)
    roi[5:35, 6:42, 6:42] = True
    s = matched_filter_score(z, roi, sigma_mm=1.5, renormalise=False)
    inner = np.zeros_like(roi)
    inner[10:30, 12:36, 12:36] = True
    edge = roi & ~inner
    # sum w z / sqrt(sum w^2) has unit variance for white z (normalised convolution at the edge)
    assert s.array[inner].std() == pytest.approx(1.0, abs=0.06)
    assert s.array[edge].std() == pytest.approx(1.0, abs=0.06)
    assert (s.array[~roi] == 0).all()
    assert s.metadata["robust_sd"] == 1.0 and s.metadata["sigma_mm"] == 1.5
    # renormalised: robust sd over the ROI is exactly 1
    r = matched_filter_score(z, roi, sigma_mm=1.5)
    v = r.array[roi]
    assert 1.4826 * np.median(np.abs(v - np.median(v))) == pytest.approx(1.0, abs=1e-3)


def test_correlated_noise_is_put_back_on_the_sigma_scale():
    corr = Volume(np.asarray(__import__("scipy.ndimage", fromlist=["gaussian_filter"]).gaussian_filter(_noise(2), 1.0)) * 4.0, SPACING)
    s = matched_filter_score(corr, None, sigma_mm=1.5)
    assert s.metadata["robust_sd"] > 2.0  # correlated, larger map: the raw filter is far from unit variance
    v = s.array
    assert 1.4826 * np.median(np.abs(v - np.median(v))) == pytest.approx(1.0, abs=1e-3)


def test_weak_extended_lesion_becomes_strong_and_a_single_hot_voxel_does_not():
    arr = _noise(3)
    zz, yy, xx = np.indices(arr.shape)
    blob = ((zz - 20) * 2.0) ** 2 + ((yy - 24) * 1.5) ** 2 + ((xx - 16) * 1.5) ** 2 <= 4.0**2  # 4 mm radius, ~30 voxels
    arr[blob] -= 3.0  # each voxel only about -3: a "lytic lesion in thin bone"
    arr[20, 24, 36] = -9.0  # one isolated very negative voxel
    z = Volume(arr, SPACING)
    s = matched_filter_score(z, None, sigma_mm=1.5).array
    assert s[blob].min() < -7.0  # the lesion becomes a clear finding
    assert abs(s[20, 24, 36]) < 0.8 * 9.0  # the isolated voxel is damped ...
    assert s[blob].min() < s[20, 24, 36] - 1.0  # ... and now ranks below the lesion
    cands = find_candidates(Volume(s, SPACING), threshold=4.0, low_threshold=None, min_volume_mm3=20.0)
    top = cands.candidates[0]
    assert top.polarity == "lytic"
    assert top.center_mm == pytest.approx((16 * 1.5, 24 * 1.5, 20 * 2.0), abs=1.5)
    # on the voxel-wise map, the isolated voxel outranks the lesion
    raw = find_candidates(z, threshold=3.0, low_threshold=None, min_volume_mm3=1.0)
    assert raw.candidates[0].peak_abs_score == pytest.approx(9.0, abs=0.01)


def test_bad_input_is_refused_with_a_message():
    z = Volume(_noise(4, (8, 8, 8)), SPACING)
    with pytest.raises(DetectorInputError, match="sigma_mm"):
        matched_filter_score(z, None, sigma_mm=0.0)
    with pytest.raises(DetectorInputError, match="shape"):
        matched_filter_score(z, np.ones((4, 4, 4), bool))


def test_evaluation_rates_candidates_by_the_matched_filter(tmp_path):
    from detector.detection_eval import EvaluationSettings, evaluate_detectors

    from .zscore_toy import write_toy_study

    caselist, work = write_toy_study(tmp_path, abnormal=(False, True))
    both = {}
    for mf in (1.5, None):
        ev = evaluate_detectors(caselist, work, methods=("plain", "analytic"), settings=EvaluationSettings(matched_filter_mm=mf), progress=False)
        both[mf] = ev
        an = ev.scores["analytic"]
        assert an.n_lesions == 2 and an.sensitivity[1.0] == pytest.approx(1.0)
    # calibration is measured on the voxel-wise map whatever the candidate rule
    assert both[1.5].scores["analytic"].calibration_frac_abs_gt3 == pytest.approx(both[None].scores["analytic"].calibration_frac_abs_gt3)
    # the ratings differ: the matched filter sums the lesion's voxels
    r_mf = max(both[1.5].scores["analytic"].froc["thresholds"][1:])
    r_raw = max(both[None].scores["analytic"].froc["thresholds"][1:])
    assert r_mf != pytest.approx(r_raw)
    assert "matched filter" in both[1.5].to_markdown() and "matched filter" not in both[None].to_markdown()
