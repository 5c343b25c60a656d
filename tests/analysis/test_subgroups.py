"""Subgroup analyses: the definition of a lesion-class subgroup, checked on a hand-made study
with hand-computed figures of merit, and reader-group subgroups on a simulated study.

The tiny study (2 treatments A/B, 2 readers, normal cases N1, N2, abnormal cases C1-C3)::

    lesion   location        type     weight
    C1/L1    vertebral_body  lytic    0.7
    C1/L2    arch            blastic  0.3
    C2/L1    vertebral_body  blastic  1
    C3/L1    arch            lytic    1

    ratings     A,r1   A,r2   B,r1   B,r2
    NL on N1    2      2      2      -
    NL on N2    -      3.5    -      -
    NL on C1    1      1      1      1
    LL C1/L1    3      3      3      3
    LL C1/L2    5      5      5      5
    LL C2/L1    -      -      4      4
    LL C3/L1    1.5    1.5    1.5    1.5

wAFROC = (1 / (K1 K2)) sum over normal cases n, abnormal cases k and lesions l of
W[k,l] psi(FP_n, LL[k,l]), psi(x, y) = 1 (x < y), 1/2 (x = y), 0 (x > y), unmarked = -inf.

Vertebral-body subgroup: cases N1, N2, C1 (L1 only, weight 0.7 renormalised to 1), C2.
A,r1: FP = (2, -inf); LL = (3, -inf): psi = 1, 0, 1, 1/2 -> 2.5 / 4 = 0.625.
A,r2: FP = (2, 3.5): psi = 1, 0, 0, 0 -> 0.25.   B,r1 and B,r2: LL = (3, 4) -> 1.0.
(Without renormalisation A,r1 would be (0.7 + 0 + 0.7 + 0.5) / 4 = 0.475.)

Arch subgroup: cases N1, N2, C1 (L2 only), C3.  A,r1: LL = (5, 1.5): psi = 1, 0, 1, 1 -> 0.75;
A,r2: FP = (2, 3.5) -> 1, 0, 1, 0 -> 0.5; B,r1: 0.75; B,r2: FP = (-inf, -inf) -> 1.0.

wAFROC1 (the highest NL on *every* case is a false positive; divide by K K2) shows that marks on
lesions of another class are not false positives:
vertebral-body A,r1: FP = (N1 2, N2 -inf, C1 1, C2 -inf) vs LL 3 -> 4, vs -inf -> 0 + 1/2 + 0 +
1/2 -> 5 / 8 = 0.625 (had the mark 5 on C1/L2 counted as NL on C1: 4 / 8 = 0.5).
arch A,r1: FP = (2, -inf, 1, -inf) vs 5 -> 4, vs 1.5 -> 0 + 1 + 1 + 1 -> 7 / 8 = 0.875 (had the
mark 3 on C1/L1 counted as NL: 6 / 8 = 0.75).
Whole study, A,r1: (1 + 2.5) / (2 x 3) = 0.5833.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from analysis import MRMCWarning, ObserverData, fom_matrix, significance_test
from analysis.subgroups import (
    SubgroupError,
    SubgroupWarning,
    available_subgroups,
    subgroup_analysis,
)
from tests.analysis._study_factory import simulated_study


def tiny_study() -> ObserverData:
    truth = [
        {"case_id": "N1", "lesion_id": None},
        {"case_id": "N2", "lesion_id": None},
        {"case_id": "C1", "lesion_id": "L1", "weight": 0.7, "location": "vertebral_body", "lesion_type": "lytic"},
        {"case_id": "C1", "lesion_id": "L2", "weight": 0.3, "location": "arch", "lesion_type": "blastic"},
        {"case_id": "C2", "lesion_id": "L1", "weight": 1.0, "location": "vertebral_body", "lesion_type": "blastic"},
        {"case_id": "C3", "lesion_id": "L1", "weight": 1.0, "location": "arch", "lesion_type": "lytic"},
    ]
    nl_table = {  # (treatment, reader) -> {case: rating}
        ("A", "r1"): {"N1": 2, "C1": 1},
        ("A", "r2"): {"N1": 2, "N2": 3.5, "C1": 1},
        ("B", "r1"): {"N1": 2, "C1": 1},
        ("B", "r2"): {"C1": 1},
    }
    ll_common = {("C1", "L1"): 3, ("C1", "L2"): 5, ("C3", "L1"): 1.5}
    nl, ll = [], []
    for (t, r), marks in nl_table.items():
        nl += [{"treatment": t, "reader": r, "case_id": c, "rating": x} for c, x in marks.items()]
        lls = dict(ll_common)
        if t == "B":
            lls[("C2", "L1")] = 4
        ll += [{"treatment": t, "reader": r, "case_id": c, "lesion_id": les, "rating": x} for (c, les), x in lls.items()]
    return ObserverData.from_marks(
        truth, nl, ll, treatments=["A", "B"], readers=["r1", "r2"], reader_groups={"r1": "board-certified", "r2": "resident"}
    )


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRMCWarning)
        warnings.simplefilter("ignore", SubgroupWarning)
        return fn(*args, **kw)


def test_hand_computed_whole_study():
    assert fom_matrix(tiny_study(), "wAFROC")[0, 0] == pytest.approx(3.5 / 6, abs=1e-15)


def test_lesion_location_subgroups_equal_hand_computed_foms():
    res = _quiet(subgroup_analysis, tiny_study(), "wAFROC", by="lesion_location")
    assert res.labels == ("vertebral_body", "arch")  # order of first appearance
    vb, arch = res["vertebral_body"], res["arch"]
    assert (vb.n_normal, vb.n_abnormal, vb.n_lesions) == (2, 2, 2)  # N1, N2, C1, C2
    assert (arch.n_normal, arch.n_abnormal, arch.n_lesions) == (2, 2, 2)  # N1, N2, C1, C3
    np.testing.assert_allclose(vb.result.foms, [[0.625, 0.25], [1.0, 1.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(arch.result.foms, [[0.75, 0.5], [0.75, 1.0]], rtol=0, atol=1e-15)
    # the test itself runs on the subgroup: differences are of the subgroup's reader averages
    d = vb.result["RRRC"].differences[0]
    assert d.estimate == pytest.approx((0.625 + 0.25) / 2 - 1.0, abs=1e-15)


def test_marks_on_lesions_of_other_classes_are_not_false_positives():
    res = _quiet(subgroup_analysis, tiny_study(), "wAFROC1", by="lesion_location")
    assert res["vertebral_body"].result.foms[0, 0] == pytest.approx(5 / 8, abs=1e-15)
    assert res["arch"].result.foms[0, 0] == pytest.approx(7 / 8, abs=1e-15)


def test_lesion_type_subgroups_cases_and_fom():
    res = _quiet(subgroup_analysis, tiny_study(), "wAFROC", by="lesion_type")
    assert res.labels == ("lytic", "blastic")
    lytic = res["lytic"]  # C1/L1 (3) and C3/L1 (1.5): A,r1 -> psi 1, 0, 1, 1 -> 0.75
    assert (lytic.n_abnormal, lytic.n_lesions) == (2, 2)
    assert lytic.result.foms[0, 0] == pytest.approx(0.75, abs=1e-15)


def test_subgroup_equals_significance_test_on_the_selected_data():
    data = simulated_study()
    res = _quiet(subgroup_analysis, data, "wAFROC", by="lesion_type", method="DBM")
    for s in res:
        sub = data.select_lesions(lesion_type=s.label)
        direct = _quiet(significance_test, sub, "wAFROC", method="DBM")
        a, b = s.result.to_dict(), direct.to_dict()
        for key in ("created_utc",):
            a.pop(key), b.pop(key)
        assert a == b
        assert s.n_abnormal == sub.n_abnormal and s.n_lesions == sub.n_lesions


def test_reader_groups_and_single_reader_group_degrades_with_a_warning():
    data = simulated_study(readers={"R1": "board-certified", "R2": "board-certified", "R3": "resident"})
    with pytest.warns(SubgroupWarning, match="resident"):
        res = subgroup_analysis(data, "wAFROC", by="reader_group")
    bc, resident = res["board-certified"], res["resident"]
    assert bc.readers == ("R1", "R2") and bc.primary_analysis == "RRRC"
    np.testing.assert_array_equal(bc.result.foms, fom_matrix(data.select_readers(["R1", "R2"]), "wAFROC"))
    assert resident.readers == ("R3",)
    assert list(resident.result.analyses) == ["FRRC"] and resident.primary_analysis == "FRRC"
    assert any("Only 1 reader" in w for w in resident.warnings)
    frame = res.summary_frame()
    assert list(frame["analysis"]) == ["RRRC", "FRRC"]
    assert frame.loc[1, "difference"] == pytest.approx(resident.result["FRRC"].differences[0].estimate)


@pytest.mark.filterwarnings("ignore:Subgroup custom='other'")
def test_undefined_subgroup_is_reported_not_raised():
    """DeLong needs 2 abnormal cases: a lesion class on one case has no analysis, the others do."""
    data = tiny_study()
    with pytest.warns(SubgroupWarning, match="no analysis"):
        res = subgroup_analysis(data, "wAFROC", by=lambda case, les: "C2 only" if case == "C2" else "other", name="custom", covariance="delong")
    only = res["C2 only"]
    assert only.result is None and "2 abnormal" in only.error
    assert res["other"].result is not None
    frame = res.to_frame()
    assert frame.loc[frame["subgroup"] == "C2 only", "error"].iloc[0] == only.error
    json.dumps(res.to_dict(), allow_nan=False)


def test_callable_and_generic_attribute_partitions():
    data = tiny_study()
    by_fn = _quiet(subgroup_analysis, data, "wAFROC", by=lambda case, les: les.attributes.get("location"), name="where")
    by_attr = _quiet(subgroup_analysis, data, "wAFROC", by="lesion:location")
    assert by_fn.by == "where" and by_attr.by == "lesion:location"
    for a, b in zip(by_fn, by_attr):
        np.testing.assert_array_equal(a.result.foms, b.result.foms)


def test_lesions_without_a_class_are_counted_and_warned():
    data = tiny_study()
    with pytest.warns(SubgroupWarning, match="1 lesion"):
        res = _quiet_mrmc(subgroup_analysis, data, "wAFROC", by=lambda case, les: None if (case, les.id) == ("C3", "L1") else "kept")
    assert res.unassigned == 1 and res["kept"].n_abnormal == 2


def _quiet_mrmc(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRMCWarning)
        return fn(*args, **kw)


def test_requests_the_study_cannot_support_are_clear_errors():
    roc = ObserverData.from_roc(np.zeros((2, 2, 3)), np.ones((2, 2, 3)))
    with pytest.raises(SubgroupError, match="READERS sheet"):
        subgroup_analysis(roc, "Wilcoxon", by="reader_group")
    with pytest.raises(SubgroupError, match="'location'"):
        subgroup_analysis(roc, "Wilcoxon", by="lesion_location")
    with pytest.raises(SubgroupError, match="Unknown subgroup kind"):
        subgroup_analysis(roc, "Wilcoxon", by="hospital")
    assert available_subgroups(roc) == ()
    assert available_subgroups(tiny_study()) == ("reader_group", "lesion_location", "lesion_type")


def test_outputs_are_json_and_tidy():
    res = _quiet(subgroup_analysis, simulated_study(), "wAFROC", by="lesion_location")
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["by"] == "lesion_location" and "all normal cases" in doc["definition"]
    first = doc["subgroups"][0]
    assert first["result"]["analyses"]["RRRC"]["differences"][0]["treatments"] == ["CT", "CT+TS"]
    assert "input_sha256" not in first["result"]  # provenance lives at the top of results.json
    frame = res.to_frame()
    assert set(frame["subgroup"]) == set(res.labels)
    assert {"RRRC", "FRRC", "RRFC"} <= set(frame["analysis"])
    assert "Subgroups by lesion_location" in res.summary().as_text()
