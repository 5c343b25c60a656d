"""The z-score stage finds candidates on the matched-filter score of z (or on z when asked)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.candidates import find_candidates, matched_filter_score
from detector.zscore_outputs import ZScoreSettings, zscore_stage

from .zscore_toy import toy_pair


def test_stage_candidates_use_the_matched_filter_by_default():
    pair = toy_pair(seed=31)
    out = zscore_stage(pair.current, pair.prior, pair.roi, settings=ZScoreSettings(model="analytic"))
    p = out.candidates.parameters
    assert p["matched_filter_mm"] == 1.5 and p["matched_filter_robust_sd"] > 0
    assert "matched filter" in p["score"]
    # the same candidates as the matched-filter score thresholded by hand
    score = matched_filter_score(out.zmap.z, pair.roi.array != 0, sigma_mm=1.5)
    from detector.zscore_outputs import OPERATING_THRESHOLDS

    st = ZScoreSettings()
    assert p["threshold"] == OPERATING_THRESHOLDS["analytic"]  # the calibrated operating point of the method that ran
    ref = find_candidates(
        score, roi=pair.roi.array != 0, threshold=p["threshold"], low_threshold=st.low_threshold, min_volume_mm3=20.0, split_mm=st.split_mm
    )
    assert [c.peak_abs_score for c in out.candidates] == pytest.approx([c.peak_abs_score for c in ref])
    # both toy lesions (6 mm) are the two strongest candidates, with the right polarity
    top = sorted(out.candidates.candidates[:2], key=lambda c: c.polarity)
    assert [c.polarity for c in top] == ["blastic", "lytic"]
    assert top[0].mean_change_hu > 100 and top[1].mean_change_hu < -50


def test_stage_candidates_on_voxelwise_z_when_switched_off():
    pair = toy_pair(seed=31)
    out = zscore_stage(pair.current, pair.prior, pair.roi, settings=ZScoreSettings(model="analytic", matched_filter_mm=None))
    st = ZScoreSettings()
    ref = find_candidates(
        out.zmap.z,
        roi=pair.roi.array != 0,
        threshold=out.candidates.parameters["threshold"],
        low_threshold=st.low_threshold,
        min_volume_mm3=20.0,
        split_mm=st.split_mm,
    )
    assert out.candidates.parameters["score"] == "z" and out.candidates.parameters["matched_filter_mm"] is None
    assert [c.peak_abs_score for c in out.candidates] == pytest.approx([c.peak_abs_score for c in ref])


def test_overlay_colours_every_candidate_lytic_and_blastic():
    """The overlay shows the score the candidates are found on, from their threshold."""
    from detector.overlay import render_overlay
    from detector.zscore_outputs import overlay_map

    pair = toy_pair(seed=31)
    out = zscore_stage(pair.current, pair.prior, pair.roi, settings=ZScoreSettings(model="analytic"))
    shown, style = overlay_map(out)
    assert shown is out.score and style.threshold == out.candidates.parameters["threshold"]
    assert {c.polarity for c in out.candidates} == {"blastic", "lytic"}
    for c in out.candidates:
        k, j, i = np.round(pair.current.point_to_index(c.peak_mm)).astype(int)[::-1]
        rgb = render_overlay(pair.current.array[k], shown.array[k], threshold=style.threshold, z_max=style.z_max)
        grey = render_overlay(pair.current.array[k], np.zeros_like(shown.array[k]), threshold=style.threshold, z_max=style.z_max)
        assert not np.array_equal(rgb[j, i], grey[j, i]), f"candidate {c.candidate_id} ({c.polarity}) is not coloured"
