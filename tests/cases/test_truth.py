"""cases.TruthLesion and the one hit rule (cases.HitRule) shared by the detector's FROC and the readers' scoring."""

from __future__ import annotations

import numpy as np
import pytest

from cases import HitRule, LabelVolume, TruthLesion


def _map() -> LabelVolume:
    array = np.zeros((5, 10, 10), dtype=np.uint16)
    array[2, 4:6, 4:6] = 3  # four voxels of lesion 3
    return LabelVolume(array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))


def test_sphere_extent_with_and_without_margin():
    les = TruthLesion("C", "L1", (0.0, 0.0, 0.0), radius_mm=5.0)
    assert les.contains((5.0, 0.0, 0.0)) and not les.contains((5.1, 0.0, 0.0))
    assert les.contains((7.9, 0.0, 0.0), margin_mm=3.0) and not les.contains((8.1, 0.0, 0.0), margin_mm=3.0)
    assert les.distance_mm((8.0, 0.0, 0.0)) == pytest.approx(3.0)


def test_label_map_extent_voxel_containing_the_point_or_within_the_margin():
    les = TruthLesion("C", "L1", (4.5, 4.5, 4.0), label_value=3, label_map=_map())
    assert les.contains((4.0, 4.0, 4.0)) and les.contains((5.4, 5.4, 4.6))  # inside lesion voxels
    assert not les.contains((5.9, 4.0, 4.0))  # in the next voxel, which is not the lesion's
    assert les.contains((5.9, 4.0, 4.0), margin_mm=1.0) and not les.contains((6.6, 4.0, 4.0), margin_mm=1.0)
    assert not les.contains((40.0, 0.0, 0.0), margin_mm=3.0)  # outside the map's grid
    other = TruthLesion("C", "L2", (0.0, 0.0, 0.0), label_value=9, label_map=_map())  # no voxel of value 9
    assert not other.contains((0.0, 0.0, 0.0))
    with_sphere = TruthLesion("C", "L2", (0.0, 0.0, 0.0), radius_mm=2.0, label_value=9, label_map=_map())
    assert with_sphere.contains((1.0, 0.0, 0.0))  # falls back on its sphere


def test_hit_rule_kinds_and_errors():
    les = TruthLesion("C", "L1", (0.0, 0.0, 0.0), radius_mm=2.0)
    assert HitRule("radius", radius_mm=10.0).hits(les, (9.0, 0.0, 0.0))
    assert not HitRule("extent").hits(les, (9.0, 0.0, 0.0))
    assert HitRule("extent", margin_mm=7.0).hits(les, (9.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="positive acceptance radius"):
        HitRule("radius")
    with pytest.raises(ValueError, match="neither a label map nor a radius"):
        HitRule().hits(TruthLesion("C", "L9", (0.0, 0.0, 0.0)), (0.0, 0.0, 0.0))


def test_detector_and_reader_scoring_use_the_same_rule():
    """A candidate and a reader's mark at the same place hit the same lesion (margin 0 on both sides)."""
    from detector.froc import match_candidates
    from reader_study import AcceptanceRule, MarkToScore, score_marks

    les = TruthLesion("C", "L1", (4.5, 4.5, 4.0), label_value=3, label_map=_map())

    class Cand:
        def __init__(self, point):
            self.center_mm, self.peak_abs_score = point, 5.0

    for point, expected in (((5.4, 5.4, 4.6), True), ((6.6, 4.0, 4.0), False)):
        detector_hit = match_candidates("C", [Cand(point)], [les], margin_mm=0.0).ll_ratings["L1"] is not None
        reader = score_marks([MarkToScore(1, "t", "r", "C", point, 3)], [les], AcceptanceRule("extent")).scores[0].outcome == "LL"
        assert detector_hit == reader == expected
