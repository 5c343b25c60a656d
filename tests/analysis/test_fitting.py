"""ROC curve fitting (analysis.fitting): binormal (Dorfman-Alf), CBM and RSM maximum-likelihood fits."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from analysis.data import ObserverData
from analysis.fitting import (
    bin_ratings,
    binormal_auc,
    cbm_auc,
    fit_roc,
    fit_roc_curve,
    make_model,
    rsm_auc,
    rsm_from_intrinsic,
    rsm_to_intrinsic,
)
from analysis.fitting._core import (
    chi_square_gof,
    negative_log_likelihood,
    nll_and_gradient,
)
from analysis.io import read_observer_data

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc" / "datasets"

# Counts table of the worked example in Chakraborty's RJafroc book, chapter "Binormal model"
# (https://dpc10ster.github.io/RJafrocBook/binormal-model.html), bins 1 (lowest) .. 5.
BOOK_K1 = [30, 19, 8, 2, 1]
BOOK_K2 = [5, 6, 5, 12, 22]


def _from_counts(k1, k2):
    return np.repeat(np.arange(1, len(k1) + 1), k1), np.repeat(np.arange(1, len(k2) + 1), k2)


# ------------------------------------------------------------------------------------------------
# published values
# ------------------------------------------------------------------------------------------------


def test_binormal_matches_rjafroc_book_example():
    """RJafroc FitBinormalRoc output printed in the book: a = 1.32045261, b = 0.607492932,
    zetas = 0.00768054675 0.89627306763 1.51564784976 2.39672209865, AUC = 0.870452157,
    StdAUC = 0.0379042262 (and Eng's JROCFIT: a = 1.3204, b = 0.6075)."""
    fp, tp = _from_counts(BOOK_K1, BOOK_K2)
    fit = fit_roc_curve(fp, tp, "binormal")
    assert fit.status == "ok" and fit.reason == ""
    assert fit.parameters["a"] == pytest.approx(1.32045261, abs=2e-5)
    assert fit.parameters["b"] == pytest.approx(0.607492932, abs=2e-5)
    assert fit.zetas == pytest.approx([0.00768054675, 0.89627306763, 1.51564784976, 2.39672209865], abs=5e-5)
    assert fit.auc == pytest.approx(0.870452157, abs=2e-6)
    assert fit.se_auc == pytest.approx(0.0379042262, abs=2e-6)
    assert fit.nll_final <= fit.nll_initial
    # 5 bins, but bins 4-5 hold too few expected normals: pooled, chi-square not computable
    assert fit.chisq.df is None and math.isnan(fit.chisq.statistic) and "pooled" in fit.chisq.reason
    assert fit.cov.shape == (6, 6) and fit.cov_names[:2] == ("a", "b")


def test_binormal_three_bins_hand_worked():
    """3 bins: 2 operating points, 4 free parameters -> the fit passes through both points.

    Points (FPF, TPF) = (0.50, 0.84) and (0.16, 0.50): probits z(FPF) = 0, -z0 and z(TPF) = z0, 0
    with z0 = Phi^-1(0.84), so TPF = Phi(a + b z(FPF)) gives b = 1, a = z0, zetas = (0, z0) and
    AUC = Phi(z0 / sqrt 2); the likelihood is the saturated one, sum n log(n / K)."""
    fp, tp = _from_counts([50, 34, 16], [16, 34, 50])
    fit = fit_roc_curve(fp, tp, "binormal")
    z0 = norm.ppf(0.84)
    assert fit.status == "ok"
    assert fit.parameters["a"] == pytest.approx(z0, abs=1e-5)
    assert fit.parameters["b"] == pytest.approx(1.0, abs=1e-5)
    assert fit.zetas == pytest.approx([0.0, z0], abs=1e-5)
    assert fit.auc == pytest.approx(norm.cdf(z0 / math.sqrt(2)), abs=1e-6)
    saturated = -2 * sum(n * math.log(n / 100) for n in (50, 34, 16))
    assert fit.nll_final == pytest.approx(saturated, abs=1e-8)
    assert fit.chisq.df is None  # df = 3 - 3 = 0


# Printed by RJafroc's FitCbmRoc / FitRsmRoc in Chakraborty's RJafroc book, chapter "RSM, CBM and
# PROPROC fits" (section "RSM parameters" / "CBM parameters"): Van Dyke (dataset02) treatment 1 reader 2
# and Franken (dataset03) treatment 2 reader 3 (1-based, as in R).
BOOK_CBM = {
    ("dataset02.xlsx", "0", "1"): dict(mu=2.745791, alpha=0.7931264, zeta1=1.125028, auc=0.8758668, se=0.03964492, nll=85.88459),
    ("dataset03.xlsx", "TREAT2", "READER_3"): dict(mu=2.340719, alpha=0.7860465, zeta1=-1.144089, auc=0.8545476, se=0.03825439, nll=128.0437),
}
BOOK_RSM = {
    ("dataset02.xlsx", "0", "1"): dict(mu=2.201413, lam=0.2569453, nu=0.7524016, auc=0.8653694, se=0.04740562, nll=85.86244),
    ("dataset03.xlsx", "TREAT2", "READER_3"): dict(mu=2.641412, lam=2.137379, nu=0.784759, auc=0.8552573, se=0.03809136, nll=127.9418),
}


@pytest.mark.parametrize("key", list(BOOK_CBM))
def test_cbm_matches_rjafroc_book_fits(key):
    name, trt, rdr = key
    ref = BOOK_CBM[key]
    fit = fit_roc(read_observer_data(DATA / name), "cbm", treatments=[trt], readers=[rdr]).fits[0]
    assert fit.status == "ok"
    assert fit.parameters["mu"] == pytest.approx(ref["mu"], abs=1e-4)
    assert fit.parameters["alpha"] == pytest.approx(ref["alpha"], abs=1e-5)
    assert fit.zetas[0] == pytest.approx(ref["zeta1"], abs=1e-4)
    assert fit.auc == pytest.approx(ref["auc"], abs=2e-6)
    assert fit.se_auc == pytest.approx(ref["se"], abs=2e-6)
    assert fit.nll_final == pytest.approx(ref["nll"], abs=1e-4)


@pytest.mark.parametrize("key", list(BOOK_RSM))
def test_rsm_reaches_the_rjafroc_book_likelihood(key):
    """The RSM likelihood of these readers is nearly flat along a ridge: our optimum is at least as
    high as RJafroc's (lower NLL), and the AUC agrees to 1e-3; the parameters may sit elsewhere on the
    ridge (Van Dyke: mu 2.147 vs 2.201)."""
    name, trt, rdr = key
    ref = BOOK_RSM[key]
    fit = fit_roc(read_observer_data(DATA / name), "rsm", treatments=[trt], readers=[rdr]).fits[0]
    assert fit.status == "ok"
    assert fit.nll_final <= ref["nll"] + 1e-4
    assert fit.auc == pytest.approx(ref["auc"], abs=1e-3)
    assert fit.se_auc == pytest.approx(ref["se"], rel=0.1)
    assert fit.parameters["nu"] == pytest.approx(ref["nu"], abs=5e-3)
    assert fit.parameters["mu"] == pytest.approx(ref["mu"], abs=0.06)


# ------------------------------------------------------------------------------------------------
# AUC formulas and parameter conversions
# ------------------------------------------------------------------------------------------------


def test_auc_formulas_match_rjafroc_reference_values():
    """Expected values written in RJafroc's own test suite (testthat, "Utils testing"):
    UtilAucBinormal(2, 0.7) = 0.9493375; UtilAucCBM(2, 0.8) = 0.8370803;
    UtilAucsRSM(mu = 1, lambdaP = 1, nuP = 1, lesDistr = {1: 0.9, 2: 0.1})$aucROC = 0.8470065."""
    assert binormal_auc(2.0, 0.7) == pytest.approx(0.9493375, abs=1e-7)
    assert cbm_auc(2.0, 0.8) == pytest.approx(0.8370803, abs=1e-7)
    assert rsm_auc(1.0, 1.0, 1.0, {1: 0.9, 2: 0.1}) == pytest.approx(0.8470065, abs=1e-7)


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (1.0, 1.0), (2.0, 0.7), (1.2, 2.5)])
def test_binormal_auc_equals_area_under_its_curve(a, b):
    fpf = np.linspace(0, 1, 200001)
    tpf = norm.cdf(a + b * norm.ppf(np.clip(fpf, 1e-300, 1 - 1e-16)))
    tpf[0], tpf[-1] = 0.0, 1.0
    assert binormal_auc(a, b) == pytest.approx(np.trapezoid(tpf, fpf), abs=2e-5)
    assert binormal_auc(0.0, b) == pytest.approx(0.5)


def test_cbm_auc_special_cases():
    # alpha = 1: an equal-variance binormal model with separation mu
    assert cbm_auc(1.7, 1.0) == pytest.approx(binormal_auc(1.7, 1.0), abs=1e-15)
    assert cbm_auc(3.0, 0.0) == pytest.approx(0.5)
    # RJafroc UtilAucCBM example: mu = 2, alpha = 0.8 -> 0.1 + 0.8 Phi(sqrt 2)
    assert cbm_auc(2.0, 0.8) == pytest.approx(0.1 + 0.8 * norm.cdf(2 / math.sqrt(2)), abs=1e-15)
    x, y = make_model("cbm").curve(np.array([2.0, 0.8]), 4001)
    assert np.trapezoid(y, x) == pytest.approx(cbm_auc(2.0, 0.8), abs=1e-4)


def test_rsm_auc_against_its_curve_and_limits():
    for mu, lam, nu, les in [(2.0, 1.0, 0.8, {1: 1.0}), (1.0, 3.0, 0.5, {1: 0.5, 2: 0.3, 3: 0.2})]:
        model = make_model("rsm", les)
        x, y = model.curve(np.array([mu, lam, nu]), 4001)
        assert rsm_auc(mu, lam, nu, les) == pytest.approx(np.trapezoid(y, x), abs=1e-4)
    # no latent NLs and every lesion found: AUC -> Phi(mu/sqrt2)... with lambda -> 0 the normal cases
    # are never marked, so every diseased case found beats them: AUC -> (1 + TPFmax)/2 = 1 at nu = 1
    assert rsm_auc(2.0, 1e-4, 1.0) == pytest.approx(1.0, abs=1e-3)


def test_rsm_intrinsic_conversions():
    # RJafroc UtilIntrinsic2RSM example: mu = 2, lambda_i = 20, nu_i = 1.1512925 -> lambda' = 10, nu' = 0.9
    lam, nu = rsm_from_intrinsic(2.0, 20.0, 1.1512925)
    assert lam == pytest.approx(10.0) and nu == pytest.approx(0.9, abs=1e-7)
    assert rsm_to_intrinsic(2.0, lam, nu) == pytest.approx((20.0, 1.1512925))


@pytest.mark.parametrize("name,theta", [("binormal", [1.3, 0.7]), ("cbm", [2.2, 0.6]), ("rsm", [1.8, 1.4, 0.7])])
def test_analytic_gradient_matches_finite_differences(name, theta):
    model = make_model(name, {1: 0.6, 2: 0.4} if name == "rsm" else None)
    bins = bin_ratings(*_from_counts(BOOK_K1, BOOK_K2))
    x = np.concatenate([theta, [-0.3, 0.6, 1.4, 2.1]])
    _, g = nll_and_gradient(model, x, bins)
    num = np.empty_like(x)
    for i in range(x.size):
        h = 1e-6
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = (negative_log_likelihood(model, xp, bins) - negative_log_likelihood(model, xm, bins)) / (2 * h)
    assert g == pytest.approx(num, rel=1e-5, abs=1e-5)


# ------------------------------------------------------------------------------------------------
# recovery of known parameters from simulated data
# ------------------------------------------------------------------------------------------------

CUTS = np.array([-0.3, 0.5, 1.2, 2.0])


def _bin(z):
    return np.digitize(z, CUTS) + 1


def test_binormal_recovers_simulated_parameters_within_se():
    rng = np.random.default_rng(20261205)
    a, b = 1.4, 0.75
    zn = rng.normal(size=400)
    za = rng.normal(a / b, 1 / b, size=350)
    fit = fit_roc_curve(_bin(zn), _bin(za), "binormal")
    assert fit.status == "ok"
    for name, true in (("a", a), ("b", b)):
        assert abs(fit.parameters[name] - true) < 3 * fit.parameter_se[name]
    assert abs(fit.auc - binormal_auc(a, b)) < 3 * fit.se_auc
    # the likelihood at the optimum is at least that at the true parameters
    model = make_model("binormal")
    truth = np.concatenate([[a, b], CUTS])
    assert fit.nll_final <= negative_log_likelihood(model, truth, fit.bins) + 1e-9
    assert fit.chisq.df == 2 and 0.0 <= fit.chisq.p_value <= 1.0


def test_cbm_recovers_simulated_parameters_within_se():
    rng = np.random.default_rng(7)
    mu, alpha = 2.5, 0.7
    zn = rng.normal(size=500)
    visible = rng.random(500) < alpha
    za = rng.normal(size=500) + mu * visible
    fit = fit_roc_curve(_bin(zn), _bin(za), "cbm")
    assert fit.status == "ok"
    assert abs(fit.parameters["mu"] - mu) < 3 * fit.parameter_se["mu"]
    assert abs(fit.parameters["alpha"] - alpha) < 3 * fit.parameter_se["alpha"]
    assert abs(fit.auc - cbm_auc(mu, alpha)) < 3 * fit.se_auc
    truth = np.concatenate([[mu, alpha], CUTS])
    assert fit.nll_final <= negative_log_likelihood(make_model("cbm"), truth, fit.bins) + 1e-9


def _simulate_rsm_roc(rng, mu, lam, nu, lesions, k1, cuts):
    """Highest-rating ROC data from the RSM: Poisson(lam) NLs ~ N(0,1), Binomial(L, nu) LLs ~ N(mu,1)."""

    def case_max(n_les):
        n_nl = rng.poisson(lam)
        marks = list(rng.normal(size=n_nl))
        if n_les:
            marks += list(rng.normal(mu, 1.0, size=rng.binomial(n_les, nu)))
        return max(marks) if marks else -np.inf

    fp = np.array([case_max(0) for _ in range(k1)])
    tp = np.array([case_max(n) for n in lesions])
    return np.digitize(fp, cuts) + 1, np.digitize(tp, cuts) + 1


def test_rsm_recovers_simulated_auc_within_se():
    rng = np.random.default_rng(11)
    mu, lam, nu = 2.0, 1.0, 0.75
    lesions = rng.choice([1, 2], size=400, p=[0.7, 0.3])
    fp, tp = _simulate_rsm_roc(rng, mu, lam, nu, lesions, 400, np.array([-0.5, 0.5, 1.2, 2.0, 2.7]))
    les = {1: float(np.mean(lesions == 1)), 2: float(np.mean(lesions == 2))}
    fit = fit_roc_curve(fp, tp, "rsm", lesion_distribution=les)
    assert fit.ok
    true_auc = rsm_auc(mu, lam, nu, les)
    se = fit.se_auc if math.isfinite(fit.se_auc) else 0.02
    assert abs(fit.auc - true_auc) < 3 * se
    truth = np.concatenate([[mu, lam, nu], [-0.5, 0.5, 1.2, 2.0, 2.7]])
    assert fit.nll_final <= negative_log_likelihood(make_model("rsm", les), truth, fit.bins) + 1e-9
    assert fit.parameters["lambda_i"] == pytest.approx(fit.parameters["lambda"] * fit.parameters["mu"])


# ------------------------------------------------------------------------------------------------
# binning
# ------------------------------------------------------------------------------------------------


def test_truth_state_runs_give_the_same_estimates_as_distinct_ratings():
    rng = np.random.default_rng(3)
    fp = np.round(rng.normal(size=40), 2)
    tp = np.round(rng.normal(1.5, 1.2, size=30), 2)
    distinct = fit_roc_curve(fp, tp, "binormal", binning="distinct")
    runs = fit_roc_curve(fp, tp, "binormal", binning="runs")
    assert runs.bins.n_bins < distinct.bins.n_bins
    assert runs.parameters["a"] == pytest.approx(distinct.parameters["a"], abs=1e-4)
    assert runs.parameters["b"] == pytest.approx(distinct.parameters["b"], abs=1e-4)
    assert runs.auc == pytest.approx(distinct.auc, abs=1e-5)
    assert runs.empirical_auc == pytest.approx(distinct.empirical_auc, abs=1e-12)


def test_auc_maximising_binning_is_optimal_by_brute_force():
    rng = np.random.default_rng(5)
    fp = rng.integers(0, 12, size=25).astype(float)
    tp = rng.integers(3, 15, size=20).astype(float)
    full = bin_ratings(fp, tp, "distinct")
    binned = bin_ratings(fp, tp, 4)
    assert binned.n_bins <= 4 and binned.k1 == 25 and binned.k2 == 20
    fpf, tpf = full.operating_points()
    best = 0.0
    for k in range(4):
        for keep in itertools.combinations(range(fpf.size), k):
            x = np.concatenate([[1.0], fpf[list(keep)], [0.0]])
            y = np.concatenate([[1.0], tpf[list(keep)], [0.0]])
            best = max(best, float(np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2)))
    assert binned.empirical_auc() == pytest.approx(best, abs=1e-12)


def test_chi_square_pools_bins_to_expected_five():
    bins = bin_ratings(*_from_counts([20, 20, 20, 3, 1], [3, 10, 20, 20, 20]))
    pn = np.array([20, 20, 20, 3, 1]) / 64
    pa = np.array([3, 10, 20, 20, 20]) / 73
    chi = chi_square_gof(bins, pn, pa, 2)
    # bin 0 has 3 expected diseased -> pooled with bin 1; bins 3-4 (4 expected normals) join bin 2
    assert chi.pooled_bins == ((0, 1), (2, 3, 4))
    assert chi.df is None  # 2 pooled bins - 3 < 1
    bins = bin_ratings(*_from_counts([30, 25, 20, 10, 8], [6, 10, 20, 25, 30]))
    pn, pa = np.full(5, 93 / 5) / 93, np.full(5, 91 / 5) / 91
    chi = chi_square_gof(bins, pn, pa, 2)
    expected = sum((o - 93 / 5) ** 2 / (93 / 5) for o in [30, 25, 20, 10, 8]) + sum((o - 91 / 5) ** 2 / (91 / 5) for o in [6, 10, 20, 25, 30])
    assert chi.df == 2 and chi.statistic == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# degenerate data: a status and a reason, never an exception
# ------------------------------------------------------------------------------------------------


def test_rjafroc_dataset_degenerate_is_not_estimable_for_every_model():
    data = read_observer_data(DATA / "datasetDegenerate.xlsx")
    for model in ("binormal", "cbm", "rsm"):
        fits = fit_roc(data, model)
        (fit,) = fits.fits
        assert fit.status == "not_estimable"
        assert "needs at least" in fit.reason
        assert math.isnan(fit.auc) and math.isnan(fit.se_auc)
        assert fit.empirical_auc == pytest.approx(0.75)
        doc = json.loads(fits.to_json())
        assert doc["fits"][0]["auc"] is None and doc["fits"][0]["status"] == "not_estimable"
        assert "not_estimable" in str(fits.summary())


def test_points_on_the_edges_binormal_degenerate_cbm_fits():
    # operating points (0.2, 1), (0, 0.7), (0, 0.4): all on the edges of the ROC square
    fp = np.repeat([1, 2], [20, 5])
    tp = np.repeat([2, 3, 4], [9, 9, 12])
    bino = fit_roc_curve(fp, tp, "binormal")
    assert bino.status == "degenerate" and "does not exist" in bino.reason and math.isnan(bino.auc)
    cbm = fit_roc_curve(fp, tp, "cbm")
    assert cbm.ok and cbm.status in ("boundary", "not_unique") and cbm.reason
    assert math.isnan(cbm.se_auc)
    assert cbm.auc == pytest.approx(cbm_auc(cbm.parameters["mu"], cbm.parameters["alpha"]))
    assert cbm.auc >= cbm.empirical_auc - 0.01  # the CBM's proper curve lies on or above the points
    # all normal cases in the lowest bin: the CBM cannot tell alpha from the shape -> not unique
    flat = fit_roc_curve(np.ones(30), np.repeat([1, 2, 3, 4], [6, 8, 8, 8]), "cbm")
    assert flat.status in ("not_unique", "boundary") and flat.reason and math.isnan(flat.se_auc)


def test_unmarked_cases_are_the_lowest_bin_and_json_stays_strict():
    fp = np.array([-np.inf] * 12 + [1.0] * 6 + [2.0] * 2)
    tp = np.array([-np.inf] * 3 + [1.0] * 5 + [2.0] * 6 + [3.0] * 6)
    fit = fit_roc_curve(fp, tp, "binormal")
    assert fit.bins.values[0] == -np.inf and list(fit.bins.fp) == [12, 6, 2, 0]
    doc = fit.to_dict()
    assert doc["bins"]["values"][0] == "-Infinity"
    json.dumps(doc, allow_nan=False)


def test_cbm_on_its_alpha_bound_gives_conditional_standard_errors():
    """TONY (dataset01) treatment DM reader 2: the CBM puts alpha on its bound 1 (equal-variance
    binormal); the SEs are then conditional on alpha = 1, and the note says so."""
    data = read_observer_data(DATA / "dataset01.xlsx")
    fit = fit_roc(data, "cbm", treatments=["DM"], readers=["2"]).fits[0]
    assert fit.status == "boundary" and "alpha = 1" in fit.reason
    assert fit.parameters["alpha"] == pytest.approx(1.0)
    assert math.isnan(fit.parameter_se["alpha"]) and 0 < fit.parameter_se["mu"] < 1
    assert 0 < fit.se_auc < 0.1 and any("conditional on alpha" in n for n in fit.notes)
    # with alpha = 1 the CBM is the equal-variance binormal: same likelihood as binormal with b = 1
    assert fit.auc == pytest.approx(binormal_auc(fit.parameters["mu"], 1.0), abs=1e-12)


def test_one_truth_state_missing_and_single_rating():
    fit = fit_roc_curve([], [1, 2, 3], "binormal")
    assert fit.status == "not_estimable" and "non-diseased" in fit.reason
    fit = fit_roc_curve([2, 2, 2], [2, 2], "cbm")
    assert fit.status == "not_estimable" and fit.bins.n_bins == 1


def test_binned_rjafroc_dataset_all_models():
    """datasetBinned124 (RJafroc: CORCBM simulation, K1 = K2 = 5000, 5 bins, muX = 1.5, alphaX = 0.4,
    muY = 3, alphaY = 0.7): the CBM recovers the generating values of both readers."""
    data = read_observer_data(DATA / "datasetBinned124.xlsx")
    cbm = fit_roc(data, "cbm")
    true = {"1": (1.5, 0.4), "2": (3.0, 0.7)}
    for fit in cbm:
        mu, alpha = true[fit.reader]
        assert fit.status == "ok"
        assert abs(fit.parameters["mu"] - mu) < 4 * fit.parameter_se["mu"]
        assert abs(fit.parameters["alpha"] - alpha) < 4 * fit.parameter_se["alpha"]
        assert fit.chisq.df == 2
    for model in ("binormal", "rsm"):
        for fit in fit_roc(data, model):
            assert fit.ok and abs(fit.auc - fit.empirical_auc) < 0.02


# ------------------------------------------------------------------------------------------------
# study-level API, results, FROC data, CLI, report
# ------------------------------------------------------------------------------------------------


def test_fit_roc_on_a_study_and_its_outputs(tmp_path):
    data = read_observer_data(DATA / "dataset02.xlsx")
    fits = fit_roc(data, "binormal", treatments=["0"], readers=["0", "1"])
    assert len(fits) == 2 and fits.get("0", "1").reader == "1"
    frame = fits.to_frame()
    assert list(frame["reader"]) == ["0", "1"] and {"a", "b", "auc", "se_auc", "chisq_p"} <= set(frame.columns)
    path = tmp_path / "fits.json"
    fits.to_json(path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "tsct.analysis.rocfit/1" and doc["fits"][0]["model"] == "binormal"
    assert doc["fits"][0]["auc"] == pytest.approx(fits.fits[0].auc)
    curves = fits.curves_frame()
    assert set(curves["kind"]) == {"fitted", "empirical"}
    text = fits.summary().as_text()
    assert text.splitlines()[0].startswith("ROC curve fits: binormal")
    assert "<table" in fits.summary().as_html()
    assert f"{fits.fits[0].auc:.4f}" in text and f"{fits.fits[1].se_auc:.4f}" in text
    with pytest.raises(ValueError, match="treatment 'X' is not in the study"):
        fit_roc(data, "binormal", treatments=["X"])
    with pytest.raises(ValueError, match="model must be one of"):
        fit_roc(data, "probit")


def test_froc_data_use_highest_rating_roc_and_lesion_distribution():
    nl = np.full((1, 1, 6, 2), -np.inf)
    ll = np.full((1, 1, 3, 2), -np.inf)
    nl[0, 0, 0, 0], nl[0, 0, 1, :] = 1.0, [1.0, 2.0]
    nl[0, 0, 4, 0] = 3.0
    ll[0, 0, 0, 0], ll[0, 0, 1, :] = 4.0, [2.0, 3.0]
    from analysis.data import Lesion

    data = ObserverData(
        treatments=("A",),
        readers=("R",),
        normal_cases=("n1", "n2", "n3"),
        abnormal_cases=("a1", "a2", "a3"),
        lesions=((Lesion("1", 1.0),), (Lesion("1", 0.5), Lesion("2", 0.5)), (Lesion("1", 1.0),)),
        nl=nl,
        ll=ll,
        paradigm="FROC",
    )
    fits = fit_roc(data, "rsm")
    (fit,) = fits.fits
    assert fits.source_paradigm == "FROC"
    assert fit.lesion_distribution == {1: pytest.approx(2 / 3), 2: pytest.approx(1 / 3)}
    # highest-rating ROC: normals 1, 2, unmarked; abnormals 4, 3 (its LL 3 and NL 3), unmarked;
    # unmarked cases tie with each other: (3 + 3 + 0.5) / 9
    assert fit.bins.k1 == 3 and fit.bins.k2 == 3
    assert fit.empirical_auc == pytest.approx(6.5 / 9)


def test_cli_fit_writes_json_and_rejects_bad_options(tmp_path):
    from analysis.cli import app

    runner = CliRunner()
    out = tmp_path / "fit.json"
    csv = tmp_path / "fit.csv"
    res = runner.invoke(
        app, ["fit", str(DATA / "dataset02.xlsx"), "--model", "cbm", "-t", "1", "--json", str(out), "--csv", str(csv)], env={"COLUMNS": "160"}
    )
    assert res.exit_code == 0, res.output
    assert "cbm ROC fits" in res.output and "boundary" in res.output
    doc = json.loads(out.read_text())
    assert doc["model"] == "cbm" and len(doc["fits"]) == 5 and doc["input_file"] == "dataset02.xlsx"
    assert csv.read_text().splitlines()[0].startswith("model,treatment,reader,status")
    res = runner.invoke(app, ["fit", str(DATA / "dataset02.xlsx"), "--model", "logistic"])
    assert res.exit_code == 2 and "--model must be one of" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["fit", str(DATA / "dataset02.xlsx"), "--binning", "one"])
    assert res.exit_code == 2 and "--binning" in res.output
    png = tmp_path / "fits.png"
    res = runner.invoke(
        app,
        [
            "fit",
            str(DATA / "dataset03.xlsx"),
            "-m",
            "rsm",
            "-t",
            "TREAT1",
            "-r",
            "READER_1",
            "--lesion-distribution",
            "1:0.5,2:0.5",
            "--plot",
            str(png),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(out.read_text())["fits"][0]["lesion_distribution"] == {"1": 0.5, "2": 0.5}
    res = runner.invoke(app, ["fit", str(DATA / "dataset03.xlsx"), "--lesion-distribution", "1:1"])
    assert res.exit_code == 2 and "rsm only" in res.output


def test_report_has_fitted_curves(tmp_path):
    from analysis.report import write_report

    data = read_observer_data(DATA / "dataset02.xlsx").select_readers(["0", "3"])
    paths = write_report(data, tmp_path, study_name="fits", fom="Wilcoxon", subgroups=None, pdf=False)
    doc = json.loads(paths.json.read_text())
    fits = doc["roc_fits"]["fits"]
    assert len(fits) == 4 and {f["status"] for f in fits} == {"ok", "degenerate"}
    (cbm,) = doc["roc_fits"]["cbm_where_degenerate"]  # treatment 1, reader 3: all points on the edges
    assert cbm["model"] == "cbm" and cbm["reader"] == "3" and cbm["auc"] is not None
    html = paths.html.read_text()
    assert "fig-roc-fits" in html and "Fitted ROC curves" in html
    assert "degenerate" in html  # the reason is listed among the report's notes
