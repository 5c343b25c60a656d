"""Scoring marks against truth (pure functions): LL/NL by the acceptance rule and the documented edge rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cases import LabelVolume
from reader_study import AcceptanceRule, MarkToScore, ScoringError, TruthLesion, roc_ratings, score_marks

# Two lesions 20 mm apart on case A; case N is normal.
L1 = TruthLesion("A", "L1", (0.0, 0.0, 0.0), radius_mm=5.0, weight=0.5)
L2 = TruthLesion("A", "L2", (20.0, 0.0, 0.0), radius_mm=5.0, weight=0.5)
RADIUS_15 = AcceptanceRule("radius", 15.0)


def mark(mark_id, point, rating, case="A", reader="R1", treatment="T"):
    return MarkToScore(mark_id, treatment, reader, case, tuple(float(v) for v in point), float(rating))


def outcomes(result):
    return {s.mark.mark_id: (s.outcome, s.lesion_id, round(s.distance_mm, 6)) for s in result.scores}


def test_mark_between_two_lesions_goes_to_the_nearest_centre():
    # Within 15 mm of both centres; 8 mm from L2, 12 mm from L1.
    result = score_marks([mark(1, (12, 0, 0), 3)], [L1, L2], RADIUS_15)
    assert outcomes(result) == {1: ("LL", "L2", 8.0)}
    # Exactly midway: the lesion listed first wins.
    result = score_marks([mark(2, (10, 0, 0), 3)], [L1, L2], RADIUS_15)
    assert outcomes(result) == {2: ("LL", "L1", 10.0)}


def test_a_mark_on_a_normal_case_is_a_non_lesion_localisation():
    result = score_marks([mark(1, (0, 0, 0), 4, case="N")], [L1, L2], RADIUS_15)
    (score,) = result.scores
    assert score.outcome == "NL" and score.lesion_id is None and math.isnan(score.distance_mm)
    assert result.nl_frame().to_dict("records") == [{"treatment": "T", "reader": "R1", "case_id": "N", "rating": 4.0}]
    assert result.ll_frame().empty


def test_marks_on_the_boundary_count_and_just_outside_do_not():
    rule = AcceptanceRule("radius", 10.0)
    result = score_marks(
        [mark(1, (0, 10, 0), 2), mark(2, (0, 0, -10.000001 - 1e-5), 3, reader="R2"), mark(3, (6, 8, 0), 5, reader="R3")],
        [L1],
        rule,
    )
    got = outcomes(result)
    assert got[1] == ("LL", "L1", 10.0)  # exactly 10 mm: inside
    assert got[2][0] == "NL"  # 10.00002 mm: outside
    assert got[3] == ("LL", "L1", 10.0)  # (6, 8, 0) is 10 mm away


def test_several_marks_on_one_lesion_highest_rating_is_the_ll_and_the_rest_are_dropped():
    marks = [mark(1, (1, 0, 0), 2), mark(2, (0, 1, 0), 5), mark(3, (0, 0, 1), 3), mark(4, (40, 0, 0), 1)]
    result = score_marks(marks, [L1, L2], AcceptanceRule("radius", 5.0))
    got = outcomes(result)
    assert got[2] == ("LL", "L1", 1.0)
    assert got[1][0] == "dropped" and got[3][0] == "dropped"
    assert got[4][0] == "NL"  # 20 mm from L2
    assert result.counts() == {"LL": 1, "NL": 1, "dropped": 2}
    assert result.ll_frame()["rating"].tolist() == [5.0]
    assert result.nl_frame()["rating"].tolist() == [1.0]
    # Ties in rating: the mark saved first (lower id) is the LL.
    tie = score_marks([mark(9, (1, 0, 0), 4), mark(8, (0, 1, 0), 4)], [L1], AcceptanceRule("radius", 5.0))
    assert outcomes(tie)[8][0] == "LL" and outcomes(tie)[9][0] == "dropped"


def test_marks_are_scored_per_reader_and_treatment():
    marks = [mark(1, (0, 0, 0), 3, reader="R1"), mark(2, (0, 0, 0), 4, reader="R2"), mark(3, (0, 0, 0), 2, reader="R1", treatment="U")]
    result = score_marks(marks, [L1, L2], RADIUS_15)
    assert {s.outcome for s in result.scores} == {"LL"}


def test_unmarked_lesions_are_minus_infinity():
    result = score_marks([mark(1, (0, 0, 0), 4)], [L1, L2], RADIUS_15)
    table = result.lesion_ratings(["T"], ["R1", "R2"]).set_index(["reader", "lesion_id"])["rating"]
    assert table[("R1", "L1")] == 4.0
    assert table[("R1", "L2")] == -math.inf
    assert table[("R2", "L1")] == -math.inf and table[("R2", "L2")] == -math.inf


def test_extent_rule_uses_the_label_map_and_spheres():
    # 10 x 10 x 10 grid, 1 mm voxels at origin (0,0,0): lesion L1 = value 1 in a 3x3x3 block at index 4..6.
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[4:7, 4:7, 4:7] = 1
    labels[0:2, 0:2, 0:2] = 2
    volume = LabelVolume(labels, (1.0, 1.0, 1.0))
    les1 = TruthLesion("A", "L1", (5.0, 5.0, 5.0), label_value=1)
    les2 = TruthLesion("A", "L2", (0.5, 0.5, 0.5), label_value=2)
    sphere = TruthLesion("B", "S1", (0.0, 0.0, 0.0), radius_mm=2.0)
    rule = AcceptanceRule("extent")
    maps = {("A", "L1"): volume, ("A", "L2"): volume}
    marks = [
        mark(1, (6.4, 4.0, 5.0), 3),  # nearest voxel (6, 4, 5): inside L1's block
        mark(2, (6.6, 5.0, 5.0), 4, reader="R2"),  # nearest voxel (7, 5, 5): outside (boundary voxel is 6)
        mark(3, (1.0, 1.0, 1.0), 2, reader="R3"),  # voxel (1, 1, 1): L2
        mark(4, (0.0, 2.0, 0.0), 5, case="B"),  # 2 mm from the sphere's centre: on its boundary
        mark(5, (0.0, 2.1, 0.0), 5, case="B", reader="R2"),  # outside the sphere
        mark(6, (50.0, 50.0, 50.0), 1, reader="R4"),  # outside the label map's grid
    ]
    result = score_marks(marks, [les1, les2, sphere], rule, label_maps=maps)
    got = {k: v[:2] for k, v in outcomes(result).items()}
    assert got == {1: ("LL", "L1"), 2: ("NL", None), 3: ("LL", "L2"), 4: ("LL", "S1"), 5: ("NL", None), 6: ("NL", None)}


def test_extent_rule_without_an_extent_is_an_error():
    with pytest.raises(ScoringError, match="neither a label map nor a radius"):
        score_marks([mark(1, (0, 0, 0), 3)], [TruthLesion("A", "L1", (0, 0, 0))], AcceptanceRule("extent"))


def test_roc_ratings_are_the_highest_mark_and_unmarked_cases_are_lowest():
    marks = [mark(1, (0, 0, 0), 2), mark(2, (20, 0, 0), 5), mark(3, (0, 0, 0), 3, case="N")]
    reads = [("T", "R1", "A"), ("T", "R1", "N"), ("T", "R1", "M")]
    roc = roc_ratings(marks, reads).set_index("case_id")["rating"]
    assert roc["A"] == 5.0 and roc["N"] == 3.0 and roc["M"] == -math.inf
    assert roc_ratings(marks, reads, unmarked=0.0).set_index("case_id")["rating"]["M"] == 0.0
    with pytest.raises(ScoringError, match="not in reads"):
        roc_ratings(marks, reads[:1])


def test_bad_rules_are_refused():
    with pytest.raises(ScoringError, match="positive acceptance radius"):
        AcceptanceRule("radius", 0.0)
    with pytest.raises(ScoringError, match="Unknown acceptance rule"):
        AcceptanceRule("overlap")  # type: ignore[arg-type]
    with pytest.raises(ScoringError, match="twice"):
        score_marks([], [L1, L1], RADIUS_15)


def test_summary_names_the_counts_and_the_rule():
    result = score_marks([mark(1, (0, 0, 0), 4), mark(2, (0, 0, 1), 3), mark(3, (50, 0, 0), 1)], [L1, L2], RADIUS_15)
    text = result.summary()
    assert "3 marks: 1 lesion localisations, 1 non-lesion localisations, 1 dropped" in text
    assert "within 15 mm" in text
