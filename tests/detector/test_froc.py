"""FROC scoring of a stand-alone detector on a hand-made candidate set, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.candidates import Candidate, CandidateSet
from detector.froc import TruthLesion, froc_curve, match_candidates, score_detector, sensitivity_at, wafroc_scores


def _cands(*items: tuple[tuple[float, float, float], float]) -> CandidateSet:
    return CandidateSet(tuple(Candidate(i + 1, "lytic", c, c, 30.0, 10, r, -r) for i, (c, r) in enumerate(items)))


L1 = TruthLesion("C", "L1", (0.0, 0.0, 0.0), radius_mm=5.0, lesion_type="lytic", location="vertebral_body", diameter_mm=10.0)
L2 = TruthLesion("C", "L2", (50.0, 0.0, 0.0), radius_mm=5.0, lesion_type="blastic", location="pedicle", diameter_mm=10.0)
L3 = TruthLesion("C", "L3", (0.0, 0.0, 0.0), radius_mm=3.0, lesion_type="lytic", location="rib", diameter_mm=4.0)


def _marks():
    return [
        match_candidates("N1", _cands(((10.0, 0, 0), 5.0)), []),
        match_candidates("N2", _cands(((10.0, 0, 0), 3.5)), []),
        # L1 hit twice (8 and 7: counted once, at 8), L2 hit at 4, one false positive at 6
        match_candidates("A1", _cands(((1.0, 1.0, 0), 8.0), ((52.0, 0, 0), 4.0), ((100.0, 0, 0), 6.0), ((2.0, 0, 0), 7.0)), [L1, L2], margin_mm=3.0),
        # L3: centre 5 mm from its centre = 2 mm outside its extent, within the 3 mm margin
        match_candidates("A2", _cands(((5.0, 0, 0), 4.5), ((20.0, 0, 0), 3.2)), [L3], margin_mm=3.0),
    ]


def test_matching():
    marks = _marks()
    assert marks[2].ll_ratings == {"L1": 8.0, "L2": 4.0}
    assert marks[2].nl_ratings == (6.0,)
    assert marks[3].ll_ratings == {"L3": 4.5} and marks[3].nl_ratings == (3.2,)
    strict = match_candidates("A2", _cands(((5.0, 0, 0), 4.5)), [L3], margin_mm=1.0)
    assert strict.ll_ratings == {"L3": None} and strict.nl_ratings == (4.5,)


def test_froc_points_and_sensitivity_by_hand():
    nlf, llf, thr = froc_curve(_marks())
    # thresholds 8, 6, 5, 4.5, 4, 3.5, 3.2 over 4 cases and 3 lesions
    np.testing.assert_allclose(nlf, [0, 0, 0.25, 0.5, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(llf, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert thr[0] == math.inf and list(thr[1:]) == [8.0, 6.0, 5.0, 4.5, 4.0, 3.5, 3.2]
    assert sensitivity_at(nlf, llf, 0.1) == pytest.approx(1 / 3)
    assert sensitivity_at(nlf, llf, 0.25) == pytest.approx(1 / 3)
    assert sensitivity_at(nlf, llf, 0.5) == pytest.approx(1.0)
    assert sensitivity_at(np.array([0.5]), np.array([0.9]), 0.2) == 0.0


def test_wafroc_through_analysis_matches_hand_computation():
    marks = _marks()
    # normal cases' highest NL: 5.0 and 3.5; lesion weights 1/2, 1/2 (A1) and 1 (A2)
    # A1: L1=8 beats both (1 + 1), L2=4 beats only 3.5 (0 + 1) -> 0.5 * 2 + 0.5 * 1 = 1.5
    # A2: L3=4.5 beats only 3.5 -> 1; wAFROC = (1.5 + 1) / (2 normal x 2 abnormal) = 0.625
    foms = wafroc_scores({"m": marks})
    assert foms["m"] == pytest.approx(0.625)
    weighted = wafroc_scores({"m": marks}, {"A1": {"L1": 0.9, "L2": 0.1}, "A2": {"L3": 1.0}})
    assert weighted["m"] == pytest.approx((0.9 * 2 + 0.1 * 1 + 1.0) / 4)


def test_score_detector_subgroups():
    marks = _marks()
    s = score_detector("m", marks, {"N1": [], "N2": [], "A1": [L1, L2], "A2": [L3]}, wafroc=0.625)
    assert s.n_lesions == 3 and s.n_cases == 4 and s.n_normal_cases == 2
    assert s.sensitivity[0.5] == pytest.approx(1.0)
    assert s.subgroups["lesion_type"]["lytic"] == {"n_lesions": 2, "sensitivity": {"0.5": 1.0, "1": 1.0, "3": 1.0}}
    # at <= 0.25 FP per case only L1 (rating 8) is found: lytic sensitivity 1/2 there
    lytic = {"A1": {"L1"}, "A2": {"L3"}}
    g_nlf, g_llf, _ = froc_curve(marks, lytic)
    assert sensitivity_at(g_nlf, g_llf, 0.25) == pytest.approx(0.5)
    assert s.subgroups["size"][">= 5 mm (all)"]["n_lesions"] == 2
    assert s.subgroups["size"]["< 5 mm"]["n_lesions"] == 1
    d = s.to_dict()
    assert d["sensitivity_at_0.5_fp"] == pytest.approx(1.0) and d["wafroc"] == pytest.approx(0.625)
    assert "sensitivity 1.00 at 0.5 FP/case" in s.summary()


def test_lesion_extent_from_voxels():
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    les = TruthLesion("C", "V", (1.0, 0.0, 0.0), points_mm=pts)
    assert les.distance_mm((1.0, 0.0, 0.0)) == 0.0
    assert les.distance_mm((2.0, 3.0, 0.0)) == pytest.approx(3.0)
    assert match_candidates("C", _cands(((2.0, 3.0, 0.0), 5.0)), [les], margin_mm=3.0).ll_ratings == {"V": 5.0}


def test_operating_point_counts_by_hand():
    from detector.froc import operating_point

    marks = _marks()
    lesions = {"A1": [L1, L2], "A2": [L3]}
    op = operating_point(marks, lesions, 4.5)
    # false positives rated >= 4.5: N1 (5.0), A1 (6.0) -> 2 over 4 cases; N2's 3.5 and A2's 3.2 are below
    assert op["fp_per_case"] == pytest.approx(0.5)
    assert op["fp_per_normal_case"] == pytest.approx(0.5)
    assert op["max_fp_in_a_case"] == 1
    # lesions rated >= 4.5: L1 (8), L3 (4.5); L2 (4) is not
    assert op["sensitivity"] == pytest.approx(2 / 3)
    assert op["sensitivity_ge_5mm"] == pytest.approx(0.5) and op["n_lesions_ge_5mm"] == 2


def test_wafroc_confidence_interval_brackets_the_estimate():
    from detector.froc import wafroc_with_ci

    marks = _marks()
    ci = wafroc_with_ci({"a": marks, "b": marks})
    est, lo, hi = ci["a"]
    assert est == pytest.approx(wafroc_scores({"a": marks})["a"])
    assert 0.0 <= lo <= est <= hi <= 1.0 and hi > lo
    assert ci["b"] == pytest.approx(ci["a"])


def test_paired_wafroc_difference():
    from detector.froc import wafroc_difference_ci

    marks = _marks()
    assert wafroc_difference_ci({"a": marks, "b": marks}, "a", "b") == pytest.approx((0.0, 0.0, 0.0))
    # b loses its lesion hit in A2 (the mark moves out of the margin): a is better by the wAFROC difference
    worse = marks[:3] + [match_candidates("A2", _cands(((5.0, 0, 0), 4.5), ((20.0, 0, 0), 3.2)), [L3], margin_mm=1.0)]
    d, lo, hi = wafroc_difference_ci({"a": marks, "b": worse}, "a", "b")
    w = wafroc_scores({"a": marks, "b": worse})
    assert d == pytest.approx(w["a"] - w["b"]) and d > 0
    assert lo <= d <= hi
