"""The v2 input contract: spacings finer than the working grid, re-acquired training variants."""

from __future__ import annotations

import numpy as np
import pytest

from detector._training_common import split_by_case
from detector.train import TrainingPair, augment_training_pairs
from detector.zscore_domain import check_domain_ranges, effective_spacing_mm
from detector.zscore_model import condition_vector

from .zscore_toy import toy_pair


def _ranges(floor: float | None) -> dict:
    dom = {"spacing_min_mm": [1.5, 1.5, 1.5], "spacing_max_mm": [3.0, 3.0, 5.0], "spacing_tolerance": 0.1}
    if floor:
        dom["spacing_floor_mm"] = floor
    return dom


def test_fine_clinical_spacing_is_seen_as_the_working_spacing():
    hu = np.zeros((4, 4, 4), np.float32)
    roi = np.ones_like(hu, dtype=bool)
    fine = (0.7, 0.7, 0.625)
    with_floor = check_domain_ranges(_ranges(1.5), spacings=(("spacing", "the current exam", fine),), bone_hu=hu, roi=roi, noises=())
    assert with_floor.in_domain
    without = check_domain_ranges(_ranges(None), spacings=(("spacing", "the current exam", fine),), bone_hu=hu, roi=roi, noises=())
    assert not without.in_domain and "along x is 0.70 mm" in without.reasons[0]
    too_thick = check_domain_ranges(_ranges(1.5), spacings=(("spacing", "the current exam", (0.7, 0.7, 7.0)),), bone_hu=hu, roi=roi, noises=())
    assert not too_thick.in_domain and "along z is 7.00 mm" in too_thick.reasons[0]
    assert effective_spacing_mm((0.5, 0.5, 2.0), 1.5) == [1.5, 1.5, 2.0]
    assert effective_spacing_mm((0.5, 0.5, 2.0), None) == [0.5, 0.5, 2.0]


def test_condition_vector_with_a_spacing_floor():
    c = condition_vector(15.0, 10.0, (0.7, 0.7, 1.0), (0.8, 0.8, 3.0), spacing_floor_mm=1.5)
    assert c[2:].tolist() == pytest.approx([1.0, 1.0, 1.0, 2.0])
    v1 = condition_vector(15.0, 10.0, (0.7, 0.7, 1.0), (0.8, 0.8, 3.0))
    assert v1[2] == pytest.approx(0.7 / 1.5)


def _pair(case_id: str, seed: int) -> TrainingPair:
    p = toy_pair(seed=seed, lesions=False)
    roi = p.roi.array != 0
    return TrainingPair(
        case_id, p.current.array, p.prior.array, roi, 12.0, 8.0, (1.5, 1.5, 1.5), (1.5, 1.5, 2.0), {"bone_hu_p50": 230.0, "bone_hu_p95": 900.0}
    )


def test_augmented_variants_are_thicker_or_noisier_and_stay_with_their_source():
    pairs = [_pair("A", 20), _pair("B", 21)]
    out = augment_training_pairs(pairs, 2, seed=3)
    assert [p.case_id for p in out] == ["A", "B", "A~1", "A~2", "B~1", "B~2"]
    for v in out[2:]:
        src = pairs[0] if v.base_case_id == "A" else pairs[1]
        changed_z = v.spacing_mm[2] > src.spacing_mm[2] or v.prior_spacing_mm[2] > src.prior_spacing_mm[2]
        assert changed_z and max(v.spacing_mm[2], v.prior_spacing_mm[2]) <= 5.0
        assert np.isfinite(v.noise_current_hu) and np.isfinite(v.noise_prior_hu)
        assert v.roi is src.roi
    for v in out[2:]:  # each variant re-acquires at least one exam
        src = pairs[0] if v.base_case_id == "A" else pairs[1]
        assert not (np.array_equal(v.current_hu, src.current_hu) and np.array_equal(v.prior_hu, src.prior_hu))
    train, val = split_by_case(out, lambda p: p.base_case_id, 1, seed=0)
    assert {p.base_case_id for p in val}.isdisjoint({p.base_case_id for p in train})
    assert len(val) == 3 and len(train) == 3
    assert [p.case_id for p in augment_training_pairs(pairs, 2, seed=3)] == [p.case_id for p in out]
    assert np.array_equal(augment_training_pairs(pairs, 2, seed=3)[3].current_hu, out[3].current_hu)
