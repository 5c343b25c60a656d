"""Empirical ROC/FROC/AFROC/wAFROC curves: hand-computed points, areas equal the FOMs."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import (
    CURVES,
    Lesion,
    ObserverData,
    ObserverDataError,
    average_curve,
    curve_auc,
    empirical_curve,
    empirical_curves,
    fom_matrix,
    read_jafroc_excel,
)
from tests.analysis.rjafroc_reference import dataset_path

NEG_INF = -np.inf
FOM_OF_CURVE = {"AFROC": "AFROC", "wAFROC": "wAFROC", "AFROC1": "AFROC1", "wAFROC1": "wAFROC1", "FROC": "FROC", "ROC": "HrAuc"}


@pytest.fixture(scope="module")
def d04() -> ObserverData:
    return read_jafroc_excel(dataset_path("dataset04"))


@pytest.fixture(scope="module")
def d02() -> ObserverData:
    return read_jafroc_excel(dataset_path("dataset02"))


def toy() -> ObserverData:
    """One reader: normals with NL (3) and none; abnormal cases a (lesions 4, -inf; w .25/.75)
    with an NL mark 1 and b (lesion 2)."""
    nl = np.full((1, 1, 4, 1), NEG_INF)
    nl[0, 0, 0, 0] = 3.0
    nl[0, 0, 2, 0] = 1.0
    ll = np.array([[[[4.0, NEG_INF], [2.0, NEG_INF]]]])
    return ObserverData(("T",), ("R",), ("n1", "n2"), ("a", "b"), ((Lesion("1", 0.25), Lesion("2", 0.75)), (Lesion("1", 1.0),)), nl, ll)


def test_hand_computed_operating_points():
    d = toy()
    afroc = empirical_curve(d, "AFROC", "T", "R")
    # thresholds: +inf, the normals' highest NL (3) and the LL ratings (4, 2), -inf;
    # FPF over 2 normals, LLF over 3 lesions (the NL mark on case a is not used by AFROC)
    np.testing.assert_array_equal(afroc["threshold"], [np.inf, 4, 3, 2, -np.inf])
    np.testing.assert_allclose(afroc["x"], [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(afroc["y"], [0, 1 / 3, 1 / 3, 2 / 3, 1])
    wafroc = empirical_curve(d, "wAFROC", "T", "R")
    np.testing.assert_allclose(wafroc["y"], [0, 0.125, 0.125, 0.625, 1])
    froc = empirical_curve(d, "FROC", "T", "R")
    # NL marks 3 and 1 over K = 4 cases; no extension to (1, 1)
    np.testing.assert_allclose(froc["x"], [0, 0, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(froc["y"], [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    afroc1 = empirical_curve(d, "AFROC1", "T", "R")
    np.testing.assert_allclose(afroc1["x"], [0, 0, 0.25, 0.25, 0.5, 1])
    roc = empirical_curve(d, "ROC", "T", "R")
    # highest rating: normals (3, -inf), abnormals (max(4, 1) = 4, 2)
    np.testing.assert_allclose(roc["x"], [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc["y"], [0, 0.5, 0.5, 1, 1])
    assert afroc.attrs["x_label"] == "FPF" and wafroc.attrs["y_label"] == "wLLF"


@pytest.mark.parametrize("curve", CURVES)
def test_reader_curve_areas_equal_the_foms(d04, curve):
    frame = empirical_curves(d04, curve, average=None)
    auc = curve_auc(frame)
    fom = fom_matrix(d04, FOM_OF_CURVE[curve])
    for i, t in enumerate(d04.treatments):
        for j, r in enumerate(d04.readers):
            area = auc[(auc.treatment == t) & (auc.reader == r)]["auc"].item()
            assert area == pytest.approx(fom[i, j], rel=1e-12, abs=1e-14), (curve, t, r)


@pytest.mark.parametrize("curve", [c for c in CURVES if c != "FROC"])
def test_vertical_average_area_equals_mean_fom(d04, curve):
    auc = curve_auc(empirical_curves(d04, curve))
    averaged = auc[auc.average == "vertical"].set_index("treatment")["auc"]
    mean_fom = fom_matrix(d04, FOM_OF_CURVE[curve]).mean(axis=1)
    np.testing.assert_allclose(averaged.loc[list(d04.treatments)], mean_fom, rtol=1e-12)


def test_roc_curve_of_roc_data_gives_wilcoxon(d02):
    auc = curve_auc(empirical_curves(d02, "ROC"))
    reader_rows = auc[auc.average.isna()]
    w = fom_matrix(d02, "Wilcoxon")
    for i, t in enumerate(d02.treatments):
        got = [reader_rows[(reader_rows.treatment == t) & (reader_rows.reader == r)].auc.item() for r in d02.readers]
        np.testing.assert_allclose(got, w[i], rtol=1e-12)
    with pytest.raises(ObserverDataError, match="needs FROC"):
        empirical_curves(d02, "wAFROC")


def test_threshold_average_pools_the_readers(d04):
    frame = empirical_curves(d04, "FROC", treatments=["1"])
    avg = frame[frame.average == "threshold"]
    # pooled FROC: all readers' marks counted together, normalised by J*K and J*L
    t = d04.treatments.index("1")
    nl, ll = d04.nl[t], d04.ll[t][:, d04.lesion_mask]
    for threshold, x, y in avg[["threshold", "x", "y"]].itertuples(index=False):
        assert x == pytest.approx((nl >= threshold).sum() / (d04.n_readers * d04.n_cases))
        assert y == pytest.approx((ll >= threshold).sum() / (d04.n_readers * d04.n_lesions))
    with pytest.raises(ObserverDataError, match="threshold"):
        average_curve([empirical_curve(d04, "FROC", "1", r) for r in d04.readers])


def test_tidy_frame_layout(d04):
    frame = empirical_curves(d04, "wAFROC", readers=["1", "3"])
    assert list(frame.columns) == ["curve", "treatment", "reader", "point", "threshold", "x", "y", "average"]
    assert set(frame.reader.dropna()) == {"1", "3"}
    assert frame.groupby(["treatment", "reader"], dropna=False).ngroups == 5 * 3
    start = frame[frame.point == 0]
    assert (start.x == 0).all() and (start.y == 0).all()
    assert ((frame.x >= 0) & (frame.x <= 1) & (frame.y >= 0) & (frame.y <= 1)).all()


def test_no_normal_cases_only_afroc1_curves():
    nl = np.full((1, 1, 1, 1), NEG_INF)
    d = ObserverData(("T",), ("R",), (), ("a",), ((Lesion("1", 1.0),),), nl, np.array([[[[1.0]]]]))
    assert curve_auc(empirical_curves(d, "wAFROC1", average=None)).auc.item() == pytest.approx(fom_matrix(d, "wAFROC1")[0, 0])
    with pytest.raises(ObserverDataError, match="AFROC1"):
        empirical_curves(d, "wAFROC")
