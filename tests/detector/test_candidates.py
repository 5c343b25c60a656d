"""Lesion candidates from a hand-made z-map: centre, volume, polarity, hysteresis, files."""

from __future__ import annotations

import numpy as np
import pytest

from cases import LabelVolume, Volume
from detector._errors import DetectorInputError
from detector.candidates import CANDIDATE_COLUMNS, CandidateSet, find_candidates

SPACING = (1.0, 2.0, 3.0)  # x, y, z mm: anisotropic on purpose
ORIGIN = (-10.0, 20.0, 100.0)


def _zmap() -> Volume:
    z = np.zeros((20, 20, 20), np.float32)
    z[4:7, 5:8, 10:13] = 6.0  # blastic cube, 27 voxels; centre index (z, y, x) = (5, 6, 11)
    z[5, 6, 11] = 9.0  # its peak
    z[12:14, 12:14, 2:6] = -5.0  # lytic box, 16 voxels; centre (12.5, 12.5, 3.5)
    z[17, 17, 17] = 8.0  # a single hot voxel: below the minimum volume
    return Volume(z, SPACING, ORIGIN)


def test_centre_volume_polarity_and_peak():
    cs = find_candidates(_zmap(), threshold=4.0, low_threshold=None, min_volume_mm3=20.0)
    assert len(cs) == 2
    first, second = cs.candidates
    assert (first.candidate_id, first.polarity) == (1, "blastic")
    assert first.n_voxels == 27 and first.volume_mm3 == pytest.approx(27 * 6.0)
    # centroid index (x, y, z) = (11, 6, 5) -> origin + index * spacing (identity direction)
    assert first.center_mm == pytest.approx((-10.0 + 11 * 1.0, 20.0 + 6 * 2.0, 100.0 + 5 * 3.0))
    assert first.peak_mm == pytest.approx(first.center_mm)
    assert first.peak_abs_score == pytest.approx(9.0)
    assert first.mean_score == pytest.approx((26 * 6.0 + 9.0) / 27)
    assert second.polarity == "lytic" and second.n_voxels == 16
    assert second.center_mm == pytest.approx((-10.0 + 3.5, 20.0 + 12.5 * 2.0, 100.0 + 12.5 * 3.0))
    assert second.peak_abs_score == pytest.approx(5.0) and second.mean_score == pytest.approx(-5.0)


def test_minimum_volume_and_threshold():
    z = _zmap()
    assert len(find_candidates(z, threshold=4.0, low_threshold=None, min_volume_mm3=1.0)) == 3  # the single voxel too
    assert len(find_candidates(z, threshold=5.5, low_threshold=None, min_volume_mm3=20.0)) == 1  # lytic peak 5 < 5.5
    assert len(find_candidates(z, threshold=4.0, low_threshold=None, min_volume_mm3=100.0)) == 1  # lytic 96 mm3


def test_hysteresis_grows_regions_from_strong_seeds_only():
    arr = np.zeros((15, 15, 15), np.float32)
    arr[5:10, 5:10, 5:10] = 3.5  # a halo above the low threshold
    arr[7, 7, 7] = 6.0  # the seed
    arr[0:2, 0:2, 0:3] = 3.5  # a region without a seed
    vol = Volume(arr, (1.0, 1.0, 1.0))
    cs = find_candidates(vol, threshold=5.0, low_threshold=3.0, min_volume_mm3=1.0)
    assert len(cs) == 1 and cs.candidates[0].n_voxels == 125
    without = find_candidates(vol, threshold=5.0, low_threshold=None, min_volume_mm3=1.0)
    assert without.candidates[0].n_voxels == 1


def test_roi_and_change_map():
    z = _zmap()
    roi = np.zeros(z.shape, np.uint8)
    roi[10:16, 10:16, 0:8] = 1  # only the lytic box
    change = z.with_array(np.where(z.array < 0, -180.0, 0.0).astype(np.float32))
    cs = find_candidates(z, roi=LabelVolume(roi, SPACING, ORIGIN), change_hu=change)
    assert [c.polarity for c in cs] == ["lytic"]
    assert cs.candidates[0].mean_change_hu == pytest.approx(-180.0)


def test_files_round_trip(tmp_path):
    cs = find_candidates(_zmap(), case_id="C1")
    back = CandidateSet.read_json(cs.write_json(tmp_path / "candidates.json"))
    assert back == cs
    csv_path = cs.write_csv(tmp_path / "candidates.csv")
    header = csv_path.read_text().splitlines()[0].split(",")
    assert tuple(header) == CANDIDATE_COLUMNS
    frame = cs.to_frame()
    assert list(frame["polarity"]) == ["blastic", "lytic"]
    assert "2 candidate(s)" in cs.summary()


def test_bad_thresholds_raise():
    z = _zmap()
    with pytest.raises(DetectorInputError, match="low_threshold"):
        find_candidates(z, threshold=3.0, low_threshold=4.0)
    with pytest.raises(DetectorInputError, match="positive"):
        find_candidates(z, threshold=0.0)
    with pytest.raises(DetectorInputError, match="not a candidates file"):
        CandidateSet.read_json(__file__)


def test_nearby_lesions_of_one_polarity_are_split():
    """Two blastic blobs 9 mm apart on the matched-filter score: one candidate each, not one merged."""
    from detector.candidates import matched_filter_score

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 60, 60)).astype(np.float32)
    zz, yy, xx = np.mgrid[:40, :60, :60]
    for cx, r, a in ((22, 3.0, 6.0), (34, 2.0, 5.0)):  # centres 12 voxels = 9 mm apart
        z += a * np.exp(-((zz - 20) ** 2 + (yy - 30) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    score = matched_filter_score(Volume(z, (0.75, 0.75, 0.75)), None, sigma_mm=1.5)
    merged = find_candidates(score, threshold=4.0, low_threshold=3.0)
    split = find_candidates(score, threshold=4.0, low_threshold=3.0, split_mm=3.0)
    near = lambda c, x: abs(c.peak_mm[0] - x * 0.75) <= 1.5  # noqa: E731
    assert sum(1 for c in merged if near(c, 22) or near(c, 34)) == 1
    assert any(near(c, 22) for c in split) and any(near(c, 34) for c in split)
    assert split.parameters["split_mm"] == 3.0
    # one blob with a noisy top stays one candidate
    one = np.zeros((30, 40, 40), np.float32)
    zz, yy, xx = np.mgrid[:30, :40, :40]
    one += 8.0 * np.exp(-((zz - 15) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) / (2 * 4.0**2))
    one += rng.normal(0, 0.2, one.shape).astype(np.float32)
    single = find_candidates(Volume(one, (0.75, 0.75, 0.75)), threshold=4.0, low_threshold=3.0, split_mm=1.0)
    assert len(single) == 1
