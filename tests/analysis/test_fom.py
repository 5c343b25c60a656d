"""Figures of merit and jackknife: RJafroc reference values, slow reference code, edge cases.

Reference values: RJafroc 2.1.3 (R 4.2.2), ``UtilFigureOfMerit(datasetNN, FOM = fom)`` and
``UtilPseudoValues(datasetNN, FOM = fom)`` for the datasets shipped with RJafroc, stored in
``tests/data/rjafroc/expected/`` (see ``tests/data/rjafroc/README-upstream.md``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import (
    EXPERIMENTAL_FOMS,
    FOMS,
    FomError,
    Lesion,
    ObserverData,
    ObserverDataError,
    fom_and_jackknife,
    fom_case_ids,
    fom_case_set,
    fom_matrix,
    jackknife_fom_matrix,
    pseudovalues,
    read_jafroc_excel,
    valid_foms,
)
from tests.analysis._slow_reference import as_lists, slow_fom, slow_jackknife
from tests.analysis.rjafroc_reference import (
    REFERENCE_DATASETS,
    assert_close,
    dataset_path,
    expected_foms,
    expected_pseudovalues,
)

NEG_INF = -np.inf


@pytest.fixture(scope="module")
def reference_data() -> dict[str, ObserverData]:
    return {name: read_jafroc_excel(dataset_path(name)) for name in REFERENCE_DATASETS}


def _fom_cases():
    for name in REFERENCE_DATASETS:
        for fom in expected_foms(name):
            yield name, fom


def _pv_cases():
    for name in REFERENCE_DATASETS:
        for fom in expected_pseudovalues(name):
            yield name, fom


# ----------------------------------------------------------------------------------------------
# agreement with RJafroc
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fom", list(_fom_cases()))
def test_fom_matches_rjafroc(reference_data, name, fom):
    data = reference_data[name]
    expected = expected_foms(name)[fom]
    if fom == "Wilcoxon_of_DfFroc2Roc":
        actual = fom_matrix(data.to_roc(), "Wilcoxon")
    else:
        actual = fom_matrix(data, fom)
    assert_close(actual, expected, rtol=1e-9, atol=1e-12, what=f"{name} {fom}")


@pytest.mark.parametrize("name,fom", list(_pv_cases()))
def test_jackknife_and_pseudovalues_match_rjafroc(reference_data, name, fom):
    data = reference_data[name]
    ref = expected_pseudovalues(name)[fom]
    jk = jackknife_fom_matrix(data, fom)
    pv = pseudovalues(data, fom)
    assert jk.shape == ref["jkFomValues"].shape
    assert_close(jk, ref["jkFomValues"], what=f"{name} {fom} jackknife FOMs")
    assert_close(pv, ref["jkPseudoValues"], what=f"{name} {fom} pseudovalues")
    assert len(fom_case_ids(data, fom)) == jk.shape[2]


def test_reference_datasets_cover_every_fom():
    # ROI has no RJafroc reference numbers here: tests/analysis/test_roi.py checks it against
    # hand-worked values and a brute-force count on datasetROI, and the test below on random data
    covered = {fom for name in REFERENCE_DATASETS for fom in expected_pseudovalues(name)}
    assert covered == set(FOMS) - {"ROI"}


# ----------------------------------------------------------------------------------------------
# fast versus slow, obvious implementation on small random studies with ties and unmarked cases
# ----------------------------------------------------------------------------------------------


def random_study(seed: int, *, k1: int | None = None, paradigm: str = "FROC") -> ObserverData:
    """A small random FROC study: ratings from {1, 2, 3} (many ties), many unmarked slots."""
    rng = np.random.default_rng(seed)
    n_i, n_j = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    k1 = int(rng.integers(0, 5)) if k1 is None else k1
    k2 = int(rng.integers(1, 5))
    if paradigm == "ROC":
        fp = rng.integers(1, 4, size=(n_i, n_j, k1)).astype(float)
        tp = rng.integers(1, 4, size=(n_i, n_j, k2)).astype(float)
        fp[rng.random(fp.shape) < 0.15] = NEG_INF
        tp[rng.random(tp.shape) < 0.15] = NEG_INF
        return ObserverData.from_roc(fp, tp)
    per_case = rng.integers(1, 4, size=k2)
    lesions = []
    for n in per_case:
        w = rng.random(n) + 0.1
        lesions.append(tuple(Lesion(str(l + 1), float(x)) for l, x in enumerate(w / w.sum())))
    max_nl = 3
    nl = rng.integers(1, 4, size=(n_i, n_j, k1 + k2, max_nl)).astype(float)
    nl[rng.random(nl.shape) < 0.6] = NEG_INF
    ll = rng.integers(1, 4, size=(n_i, n_j, k2, int(per_case.max()))).astype(float)
    ll[rng.random(ll.shape) < 0.35] = NEG_INF
    ll[:, :, np.arange(ll.shape[3])[None, :] >= per_case[:, None]] = NEG_INF
    return ObserverData(
        treatments=tuple(f"t{i}" for i in range(n_i)),
        readers=tuple(f"r{j}" for j in range(n_j)),
        normal_cases=tuple(f"n{k}" for k in range(k1)),
        abnormal_cases=tuple(f"a{k}" for k in range(k2)),
        lesions=tuple(lesions),
        nl=nl,
        ll=ll,
    )


@pytest.mark.parametrize("seed", range(40))
def test_fast_foms_equal_slow_pairwise_definitions(seed):
    data = random_study(seed)
    foms = list(valid_foms(data)) + ["FROC"] * (data.n_normal > 0)
    for fom in foms:
        theta, jk = fom_and_jackknife(data, fom)
        np.testing.assert_array_equal(theta, fom_matrix(data, fom))
        for i in range(data.n_treatments):
            for j in range(data.n_readers):
                nl, ll, w, k1 = as_lists(data, i, j)
                want = slow_fom(fom, nl, ll, w, k1)
                assert math.isclose(theta[i, j], want, rel_tol=1e-12, abs_tol=1e-14), (fom, i, j)
                want_jk = slow_jackknife(fom, nl, ll, w, k1, fom_case_set(fom))
                np.testing.assert_allclose(jk[i, j], want_jk, rtol=1e-12, atol=1e-14, err_msg=f"{fom} jackknife seed {seed}")


@pytest.mark.parametrize("seed", range(20))
def test_fast_roi_fom_equals_slow_pairwise_definition(seed):
    # the random FROC study read as ROI data: NL marks = lesion-free regions (varying in number
    # per case), LL = lesion regions, -inf = unrated lesion region; ties are frequent
    data = random_study(seed)._replace(paradigm="ROI")
    if not np.isfinite(data.nl).any(axis=(2, 3)).all():
        with pytest.raises(FomError, match="rated lesion-free region"):
            fom_matrix(data, "ROI")
        return
    theta, jk = fom_and_jackknife(data, "ROI")
    for i in range(data.n_treatments):
        for j in range(data.n_readers):
            nl, ll, w, k1 = as_lists(data, i, j)
            assert math.isclose(theta[i, j], slow_fom("ROI", nl, ll, w, k1), rel_tol=1e-12, abs_tol=1e-14)
            np.testing.assert_allclose(jk[i, j], slow_jackknife("ROI", nl, ll, w, k1, "all"), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(10))
def test_fast_wilcoxon_equals_slow_on_roc_data_with_minus_inf(seed):
    data = random_study(seed, paradigm="ROC", k1=3)
    theta, jk = fom_and_jackknife(data, "Wilcoxon")
    for i in range(data.n_treatments):
        for j in range(data.n_readers):
            nl, ll, w, k1 = as_lists(data, i, j)
            assert math.isclose(theta[i, j], slow_fom("Wilcoxon", nl, ll, w, k1), rel_tol=1e-12)
            np.testing.assert_allclose(jk[i, j], slow_jackknife("Wilcoxon", nl, ll, w, k1, "all"), rtol=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_hrauc_equals_wilcoxon_of_highest_rating_roc(seed):
    data = random_study(seed, k1=3)
    np.testing.assert_allclose(fom_matrix(data, "HrAuc"), fom_matrix(data.to_roc(), "Wilcoxon"), rtol=0, atol=1e-15)


@pytest.mark.parametrize("fom", FOMS[1:])
def test_pseudovalues_are_centred_on_the_fom(fom):
    data = random_study(7, k1=4)
    if fom not in valid_foms(data):
        pytest.skip("not valid for this study")
    pv = pseudovalues(data, fom)
    np.testing.assert_allclose(pv.mean(axis=2), fom_matrix(data, fom), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# hand-computed edge cases
# ----------------------------------------------------------------------------------------------


def tiny(nl_normal, nl_abnormal, ll, weights=None) -> ObserverData:
    """One treatment, one reader; nl_* are lists of mark lists, ll a list of lesion lists."""
    k1, k2 = len(nl_normal), len(ll)
    max_nl = max([len(m) for m in nl_normal + nl_abnormal] + [1])
    nl = np.full((1, 1, k1 + k2, max_nl), NEG_INF)
    for k, marks in enumerate(nl_normal + nl_abnormal):
        nl[0, 0, k, : len(marks)] = marks
    max_ll = max(len(c) for c in ll)
    arr = np.full((1, 1, k2, max_ll), NEG_INF)
    for k, c in enumerate(ll):
        arr[0, 0, k, : len(c)] = c
    weights = weights or [[1 / len(c)] * len(c) for c in ll]
    lesions = tuple(tuple(Lesion(str(l + 1), w) for l, w in enumerate(ws)) for ws in weights)
    return ObserverData(("T",), ("R",), tuple(f"n{k}" for k in range(k1)), tuple(f"a{k}" for k in range(k2)), lesions, nl, arr)


def test_minus_inf_ties_score_one_half():
    # one normal case without marks, one abnormal case with an unmarked lesion:
    # psi(-inf, -inf) = 0.5 for every AUC-type FOM
    d = tiny([[]], [[]], [[NEG_INF]])
    for fom in ("HrAuc", "AFROC", "wAFROC", "AFROC1", "wAFROC1"):
        assert fom_matrix(d, fom)[0, 0] == 0.5, fom
    assert fom_matrix(d, "HrSe")[0, 0] == 0.0
    assert fom_matrix(d, "HrSp")[0, 0] == 1.0
    assert fom_matrix(d, "MaxLLF")[0, 0] == 0.0
    assert fom_matrix(d, "MaxNLF")[0, 0] == 0.0


def test_marked_lesion_beats_unmarked_normal_and_ties_count_half():
    # normals: FP = -inf, 2 ; lesions: 2 (case a0), -inf and 3 (case a1, weights .25/.75)
    d = tiny([[], [2.0]], [[], []], [[2.0], [NEG_INF, 3.0]], weights=[[1.0], [0.25, 0.75]])
    # AFROC pairs (normal, lesion): (-inf: 1, .5, 1) + (2: .5, 0, 1) = 4 of 6
    assert fom_matrix(d, "AFROC")[0, 0] == pytest.approx(4 / 6)
    # wAFROC: normal -inf: 1*1 + .25*.5 + .75*1 = 1.875; normal 2: .5 + 0 + .75 = 1.25
    assert fom_matrix(d, "wAFROC")[0, 0] == pytest.approx((1.875 + 1.25) / 4)
    # AFROC1 adds the abnormal cases (both unmarked by NL, FP = -inf) as negatives
    assert fom_matrix(d, "AFROC1")[0, 0] == pytest.approx((2.5 + 1.5 + 2.5 + 2.5) / 12)
    # HrAuc: fp = (-inf, 2), tp = (2, 3): (1 + 1) + (.5 + 1) = 3.5 of 4
    assert fom_matrix(d, "HrAuc")[0, 0] == pytest.approx(3.5 / 4)
    # jackknife of AFROC deleting abnormal case a1 leaves lesion 2 only: (1 + .5) / 2
    assert jackknife_fom_matrix(d, "AFROC")[0, 0, 3] == pytest.approx(0.75)


def test_no_marks_at_all():
    d = tiny([[], []], [[], []], [[NEG_INF], [NEG_INF, NEG_INF]])
    expected = {
        "HrAuc": 0.5,
        "AFROC": 0.5,
        "wAFROC": 0.5,
        "AFROC1": 0.5,
        "wAFROC1": 0.5,
        "HrSe": 0,
        "HrSp": 1,
        "MaxLLF": 0,
        "MaxNLF": 0,
        "MaxNLFAllCases": 0,
    }
    for fom, value in expected.items():
        assert fom_matrix(d, fom)[0, 0] == value, fom
        assert np.all(jackknife_fom_matrix(d, fom) == value), fom
    # pseudovalues of a constant FOM are constant
    np.testing.assert_allclose(pseudovalues(d, "wAFROC"), 0.5)


def test_no_normal_cases_allows_only_afroc1_and_wafroc1():
    d = tiny([], [[1.0], []], [[2.0, NEG_INF], [3.0]])
    assert set(valid_foms(d)) == {"AFROC1", "wAFROC1"}
    # wAFROC1 with K1 = 0: negatives are the abnormal cases' highest NL (1, -inf)
    # case a0 (lesions 2, -inf; w .5/.5), case a1 (lesion 3)
    # FP=1: .5*1 + .5*0 + 1 = 1.5; FP=-inf: .5*1 + .5*.5 + 1 = 1.75
    assert fom_matrix(d, "wAFROC1")[0, 0] == pytest.approx((1.5 + 1.75) / 4)
    for fom in ("wAFROC", "AFROC", "HrAuc", "MaxLLF", "HrSe"):
        with pytest.raises(FomError, match="no normal|none"):
            fom_matrix(d, fom)


def test_single_reader_single_treatment_matches_slow():
    d = random_study(3, k1=3).select_readers([random_study(3, k1=3).readers[0]])
    assert d.n_readers == 1
    for fom in valid_foms(d):
        nl, ll, w, k1 = as_lists(d, 0, 0)
        assert fom_matrix(d, fom)[0, 0] == pytest.approx(slow_fom(fom, nl, ll, w, k1))


def test_jackknife_deleting_the_only_normal_case_is_nan():
    d = tiny([[1.0]], [[]], [[2.0]])
    jk = jackknife_fom_matrix(d, "wAFROC")
    assert np.isnan(jk[0, 0, 0]) and np.isnan(jk[0, 0, 1])


# ----------------------------------------------------------------------------------------------
# validity rules and case sets
# ----------------------------------------------------------------------------------------------


def test_wilcoxon_on_froc_data_is_rejected_with_a_remedy():
    d = random_study(1, k1=3)
    with pytest.raises(FomError) as err:
        fom_matrix(d, "Wilcoxon")
    assert "HrAuc" in str(err.value) and "to_roc()" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_froc_foms_on_roc_data_are_rejected():
    d = random_study(1, paradigm="ROC", k1=3)
    assert valid_foms(d) == ("Wilcoxon",)
    for fom in FOMS[1:]:
        with pytest.raises(FomError, match="Wilcoxon"):
            fom_matrix(d, fom)


def test_unknown_fom_lists_the_supported_names():
    with pytest.raises(ObserverDataError, match="wAFROC"):
        fom_matrix(random_study(1, k1=3), "wafroc")


def test_case_sets():
    assert fom_case_set("MaxNLF") == fom_case_set("HrSp") == "normal"
    assert fom_case_set("MaxLLF") == fom_case_set("HrSe") == "abnormal"
    for fom in ("Wilcoxon", "HrAuc", "AFROC", "wAFROC", "AFROC1", "wAFROC1", "MaxNLFAllCases"):
        assert fom_case_set(fom) == "all"
    d = random_study(2, k1=3)
    assert fom_case_ids(d, "HrSp") == d.normal_cases
    assert fom_case_ids(d, "HrSe") == d.abnormal_cases
    assert fom_case_ids(d, "wAFROC") == d.normal_cases + d.abnormal_cases
    assert jackknife_fom_matrix(d, "HrSp").shape[2] == d.n_normal
    assert jackknife_fom_matrix(d, "MaxLLF").shape[2] == d.n_abnormal


def test_froc_fom_is_experimental_but_matches_rjafroc(reference_data):
    assert "FROC" in EXPERIMENTAL_FOMS and "FROC" not in FOMS
    d = reference_data["dataset04"]
    assert_close(fom_matrix(d, "FROC"), expected_foms("dataset04")["FROC"])


def test_dataset04_shapes(reference_data):
    d = reference_data["dataset04"]
    assert fom_matrix(d, "wAFROC").shape == (5, 4)
    assert pseudovalues(d, "wAFROC").shape == (5, 4, 200)


def test_fom_frame_is_tidy_with_reader_averages(reference_data):
    from analysis import fom_frame

    d = reference_data["dataset02"]
    frame = fom_frame(d)
    assert list(frame.columns) == ["fom", "treatment", "reader", "value"]
    assert len(frame) == d.n_treatments * (d.n_readers + 1)
    avg = frame[frame.reader.isna()].set_index("treatment")["value"]
    np.testing.assert_allclose(avg.to_numpy(), fom_matrix(d, "Wilcoxon").mean(axis=1))


def test_docstring_examples_run():
    import doctest

    import analysis.fom

    result = doctest.testmod(analysis.fom)
    assert result.attempted >= 2 and result.failed == 0
