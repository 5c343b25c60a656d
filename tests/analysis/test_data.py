"""ObserverData: validation, constructors, subsets, lesion-class subgroups, to_roc."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import Lesion, ObserverData, ObserverDataError, fom_matrix, pseudovalues

NEG_INF = -np.inf


def small_froc() -> ObserverData:
    """2 treatments, 3 readers (groups), 2 normal + 3 abnormal cases with typed lesions.

    Case A has a lytic (weight .6) and a sclerotic lesion (.4), case B one sclerotic lesion,
    case C one lytic lesion.
    """
    truth = pd.DataFrame(
        [
            {"case_id": "N1", "lesion_id": None},
            {"case_id": "N2", "lesion_id": None},
            {"case_id": "A", "lesion_id": "L1", "weight": 0.6, "lesion_type": "lytic", "location": "spine"},
            {"case_id": "A", "lesion_id": "L2", "weight": 0.4, "lesion_type": "sclerotic", "location": "pelvis"},
            {"case_id": "B", "lesion_id": "x", "weight": 1.0, "lesion_type": "sclerotic", "location": "spine"},
            {"case_id": "C", "lesion_id": "7", "weight": 1.0, "lesion_type": "lytic", "location": "rib"},
        ]
    )
    rng = np.random.default_rng(0)
    nl, ll = [], []
    for t in ("CT", "CT+TS"):
        for r in ("R1", "R2", "R10"):
            for case in ("N1", "N2", "A", "B", "C"):
                for _ in range(int(rng.integers(0, 3))):
                    nl.append({"treatment": t, "reader": r, "case_id": case, "rating": float(rng.integers(1, 6))})
            for case, lesion in (("A", "L1"), ("A", "L2"), ("B", "x"), ("C", "7")):
                if rng.random() < 0.7:
                    ll.append({"treatment": t, "reader": r, "case_id": case, "lesion_id": lesion, "rating": float(rng.integers(1, 6))})
    return ObserverData.from_marks(
        truth,
        pd.DataFrame(nl),
        pd.DataFrame(ll),
        treatments=["CT", "CT+TS"],
        readers=["R1", "R2", "R10"],
        reader_groups={"R1": "resident", "R2": "resident", "R10": "radiologist"},
        name="toy",
    )


# ----------------------------------------------------------------------------------------------
# construction and validation
# ----------------------------------------------------------------------------------------------


def test_layout_sizes_and_ids():
    d = small_froc()
    assert d.treatments == ("CT", "CT+TS")
    assert d.readers == ("R1", "R2", "R10")  # order as given, not string-sorted
    assert d.normal_cases == ("N1", "N2") and d.abnormal_cases == ("A", "B", "C")
    assert (d.n_treatments, d.n_readers, d.n_normal, d.n_abnormal, d.n_cases, d.n_lesions) == (2, 3, 2, 3, 5, 4)
    assert d.nl.shape[:3] == (2, 3, 5) and d.ll.shape == (2, 3, 3, 2)
    assert d.lesion_ids == (("L1", "L2"), ("x",), ("7",))
    np.testing.assert_allclose(d.lesion_weights, [[0.6, 0.4], [1, 0], [1, 0]])
    assert d.lesion_mask.tolist() == [[True, True], [True, False], [True, False]]
    assert d.lesions[0][0].attributes == {"lesion_type": "lytic", "location": "spine"}
    assert d.lesion_attribute_names() == ("lesion_type", "location")
    assert np.all(d.ll[:, :, 1:, 1] == NEG_INF)  # padding
    assert "2 normal, 3 abnormal" in d.summary()


def test_arrays_are_read_only():
    d = small_froc()
    with pytest.raises(ValueError):
        d.nl[0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError):
        d.ll[0, 0, 0, 0] = 1.0


def _kwargs(**changes):
    kw = dict(
        treatments=("T",),
        readers=("R",),
        normal_cases=("n",),
        abnormal_cases=("a",),
        lesions=((Lesion("1", 1.0),),),
        nl=np.full((1, 1, 2, 1), NEG_INF),
        ll=np.array([[[[2.0]]]]),
    )
    kw.update(changes)
    return kw


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"nl": np.full((1, 1, 3, 1), NEG_INF)}, "nl must have shape"),
        ({"ll": np.full((1, 2, 1, 1), NEG_INF)}, "ll must have shape"),
        ({"nl": np.array([[[[np.nan], [1.0]]]])}, "NaN"),
        ({"ll": np.array([[[[np.inf]]]])}, r"\+inf"),
        ({"ll": np.array([[[[1.0, 2.0]]]])}, "padding"),
        ({"lesions": ((Lesion("1", 0.5),),)}, "sum to 0.5"),
        ({"lesions": ((Lesion("1", 0.5), Lesion("1", 0.5)),), "ll": np.full((1, 1, 1, 2), NEG_INF)}, "duplicated lesion"),
        ({"normal_cases": ("a",)}, "Case IDs must be unique"),
        ({"readers": ("R", "R")}, "Reader IDs must be unique"),
        ({"abnormal_cases": (), "lesions": (), "ll": np.zeros((1, 1, 0, 1)), "nl": np.full((1, 1, 1, 1), NEG_INF)}, "no abnormal cases"),
        ({"paradigm": "LROC"}, "LrocData"),
        ({"reader_groups": {"X": "g"}}, "not in the study"),
        ({"paradigm": "ROC", "nl": np.array([[[[1.0], [2.0]]]])}, "abnormal case's rating"),
    ],
)
def test_invalid_construction_raises(changes, match):
    with pytest.raises(ObserverDataError, match=match):
        ObserverData(**_kwargs(**changes))


def test_weights_are_renormalised_within_tolerance():
    d = ObserverData(**_kwargs(lesions=((Lesion("1", 0.33), Lesion("2", 0.33), Lesion("3", 0.33)),), ll=np.full((1, 1, 1, 3), NEG_INF)))
    np.testing.assert_allclose(d.lesion_weights, [[1 / 3, 1 / 3, 1 / 3]], rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# from_marks / from_roc / to_frames
# ----------------------------------------------------------------------------------------------


def test_from_marks_collects_every_problem_with_record_numbers():
    truth = [
        {"case_id": "n1", "lesion_id": None},
        {"case_id": "a1", "lesion_id": "1", "weight": 0.5},
        {"case_id": "a1", "lesion_id": "2", "weight": 0.5},
    ]
    nl = [
        {"treatment": "T", "reader": "R", "case_id": "n1", "rating": 3},
        {"treatment": "T", "reader": "R", "case_id": "zz", "rating": 3},  # unknown case
        {"treatment": "T", "reader": "R", "case_id": "n1", "rating": "high"},  # not numeric
    ]
    ll = [
        {"treatment": "T", "reader": "R", "case_id": "a1", "lesion_id": "1", "rating": 4},
        {"treatment": "T", "reader": "R", "case_id": "a1", "lesion_id": "1", "rating": 5},  # dup
        {"treatment": "T", "reader": "R", "case_id": "a1", "lesion_id": "9", "rating": 5},  # ?
        {"treatment": "T", "reader": "R", "case_id": "n1", "lesion_id": "1", "rating": 5},  # normal
    ]
    with pytest.raises(ObserverDataError) as err:
        ObserverData.from_marks(truth, nl, ll)
    problems = err.value.problems
    by_row = {(p.sheet, p.row): p for p in problems}
    assert len(problems) == 5
    assert "not in the truth table" in by_row[("nl_marks", 2)].message
    assert by_row[("nl_marks", 3)].column == "rating"
    assert "marked twice" in by_row[("ll_marks", 2)].message
    assert "not in the truth table" in by_row[("ll_marks", 3)].message
    assert "normal case" in by_row[("ll_marks", 4)].message
    assert "5 problems" in str(err.value)


def test_from_marks_weights_and_equal_weights():
    truth = [{"case_id": "a", "lesion_id": "1"}, {"case_id": "a", "lesion_id": "2"}, {"case_id": "b", "lesion_id": "1", "weight": 1}]
    d = ObserverData.from_marks(truth, [], [], treatments=["T"], readers=["R"])
    np.testing.assert_allclose(d.lesion_weights, [[0.5, 0.5], [1.0, 0.0]])
    assert d.n_normal == 0 and d.max_nl == 1
    with pytest.raises(ObserverDataError, match="sum to 0.7"):
        ObserverData.from_marks(
            [{"case_id": "a", "lesion_id": "1", "weight": 0.3}, {"case_id": "a", "lesion_id": "2", "weight": 0.4}],
            [],
            [],
            treatments=["T"],
            readers=["R"],
        )


def test_from_roc_and_its_validation():
    fp = np.array([[[1, 2, 3], [2, 2, 2]]], dtype=float)  # (I=1, J=2, K1=3)
    tp = np.array([[[3, 4], [2, NEG_INF]]], dtype=float)
    d = ObserverData.from_roc(fp, tp, readers=["a", "b"])
    assert d.paradigm == "ROC" and d.readers == ("a", "b") and d.n_cases == 5
    assert d.normal_cases == ("N1", "N2", "N3") and d.abnormal_cases == ("A1", "A2")
    # reader a: 5.5 of 6 pairs (one tie 3-3); reader b: three ties 2-2, -inf below all
    np.testing.assert_allclose(fom_matrix(d, "Wilcoxon"), [[5.5 / 6, 1.5 / 6]])
    with pytest.raises(ObserverDataError, match="same treatments and readers"):
        ObserverData.from_roc(fp, tp[:, :1])


def test_roc_from_marks_requires_a_rating_for_every_case():
    truth = [{"case_id": "n", "lesion_id": None}, {"case_id": "a", "lesion_id": "1"}]
    with pytest.raises(ObserverDataError, match="has no rating from reader"):
        ObserverData.from_marks(truth, [], [{"treatment": "T", "reader": "R", "case_id": "a", "rating": 1}], paradigm="ROC")


def test_to_frames_round_trip():
    d = small_froc()
    truth, nl, ll = d.to_frames()
    back = ObserverData.from_marks(truth, nl, ll, treatments=d.treatments, readers=d.readers, reader_groups=d.reader_groups, name=d.name)
    assert back.equals(d)


def test_equals_ignores_nl_slot_order():
    d = small_froc()
    flipped = d._replace(nl=d.nl[..., ::-1])
    assert flipped.equals(d)
    other = d._replace(ll=np.where(np.isfinite(d.ll), d.ll + 1, d.ll))
    assert not other.equals(d)


# ----------------------------------------------------------------------------------------------
# subsets
# ----------------------------------------------------------------------------------------------


def test_select_readers_and_treatments_keep_values_and_order():
    d = small_froc()
    s = d.select_readers(["R10", "R1"])
    assert s.readers == ("R10", "R1")
    np.testing.assert_array_equal(s.nl, d.nl[:, [2, 0]])
    np.testing.assert_array_equal(fom_matrix(s, "wAFROC"), fom_matrix(d, "wAFROC")[:, [2, 0]])
    assert s.reader_groups == {"R10": "radiologist", "R1": "resident"}
    g = d.select_readers("resident")  # a reader group name
    assert g.readers == ("R1", "R2")
    t = d.select_treatments(["CT+TS"])
    np.testing.assert_array_equal(fom_matrix(t, "wAFROC"), fom_matrix(d, "wAFROC")[[1]])
    with pytest.raises(ObserverDataError, match="Unknown reader"):
        d.select_readers(["R3"])
    with pytest.raises(ObserverDataError, match="Unknown treatment"):
        d.select_treatments(["MRI"])


def test_select_lesions_definition():
    d = small_froc()
    s = d.select_lesions(lesion_type="lytic")
    # all normal cases; abnormal cases with >= 1 lytic lesion (A, C); B (sclerotic only) dropped
    assert s.normal_cases == ("N1", "N2")
    assert s.abnormal_cases == ("A", "C")
    # other-class lesions dropped, weights renormalised within each case
    assert s.lesion_ids == (("L1",), ("7",))
    np.testing.assert_allclose(s.lesion_weights, [[1.0], [1.0]])
    # LL ratings of kept lesions unchanged, the mark on A's sclerotic lesion is discarded
    np.testing.assert_array_equal(s.ll[:, :, 0, 0], d.ll[:, :, 0, 0])
    np.testing.assert_array_equal(s.ll[:, :, 1, 0], d.ll[:, :, 2, 0])
    # NL marks of kept cases unchanged (not augmented by discarded LL marks)
    np.testing.assert_array_equal(s.nl, d.nl[:, :, [0, 1, 2, 4]])

    # the same subgroup built by hand from the tidy records gives the same FOMs
    truth, nl, ll = d.to_frames()
    truth = truth[(truth.lesion_id.isna()) | (truth.lesion_type == "lytic")].copy()
    truth.loc[truth.lesion_id.notna(), "weight"] = None
    nl = nl[nl.case_id != "B"]
    ll = ll[ll.lesion_id.isin(["L1", "7"])]
    manual = ObserverData.from_marks(truth, nl, ll, treatments=d.treatments, readers=d.readers)
    for fom in ("wAFROC", "AFROC", "HrAuc", "wAFROC1", "MaxLLF", "HrSe"):
        np.testing.assert_allclose(fom_matrix(s, fom), fom_matrix(manual, fom), err_msg=fom)
        np.testing.assert_allclose(pseudovalues(s, fom), pseudovalues(manual, fom), err_msg=fom)


def test_select_lesions_predicate_mask_and_filters_agree():
    d = small_froc()
    by_kw = d.select_lesions(location=["spine", "rib"])
    by_pred = d.select_lesions(lambda case, les: les.attributes["location"] in ("spine", "rib"))
    mask = np.array([[True, False], [True, False], [True, False]])
    by_mask = d.select_lesions(mask)
    for s in (by_pred, by_mask):
        assert s.equals(by_kw)
    assert by_kw.abnormal_cases == ("A", "B", "C") and by_kw.lesion_ids == (("L1",), ("x",), ("7",))
    # keyword filters combine with AND
    both = d.select_lesions(lesion_type="sclerotic", location="spine")
    assert both.abnormal_cases == ("B",)


def test_select_lesions_errors():
    d = small_froc()
    with pytest.raises(ObserverDataError, match="No lesion matches"):
        d.select_lesions(lesion_type="mixed")
    with pytest.raises(ObserverDataError, match="Unknown lesion attribute"):
        d.select_lesions(size_mm="10")
    with pytest.raises(ObserverDataError, match="shape"):
        d.select_lesions(np.ones((2, 2), dtype=bool))


# ----------------------------------------------------------------------------------------------
# to_roc
# ----------------------------------------------------------------------------------------------


def test_to_roc_highest_rating_and_floor_for_unmarked_cases():
    nl = np.full((1, 1, 3, 2), NEG_INF)
    nl[0, 0, 0] = [2.0, 4.0]  # normal case 1: highest NL 4
    nl[0, 0, 2] = [5.0, NEG_INF]  # abnormal case: NL 5 beats its LL 3
    ll = np.array([[[[3.0]]]])
    d = ObserverData(("T",), ("R",), ("n1", "n2"), ("a",), ((Lesion("1", 1.0),),), nl, ll)
    roc = d.to_roc()
    assert roc.paradigm == "ROC" and roc.case_ids == d.case_ids and roc.readers == ("R",)
    # n2 has no mark: -inf becomes min(finite) - 1 = 4 - 1 = 3 (min over normals' 4 and 5)
    np.testing.assert_array_equal(roc.nl[0, 0, :2, 0], [4.0, 3.0])
    np.testing.assert_array_equal(roc.ll[0, 0, :, 0], [5.0])
    assert fom_matrix(roc, "Wilcoxon")[0, 0] == fom_matrix(d, "HrAuc")[0, 0] == 1.0
    assert roc.to_roc() is roc
