"""Fit ROC models to an observer study, per treatment and reader."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from analysis.fitting._core import (
    ChiSquare,
    OrdinalModel,
    RatingBins,
    _bin_probabilities,
    bin_ratings,
    chi_square_gof,
    fit_ordinal,
    nll_and_gradient,
    numerical_hessian,
    probe_bounds,
)
from analysis.fitting.binormal import BinormalModel
from analysis.fitting.cbm import CbmModel
from analysis.fitting.results import RocFit, RocFitSet
from analysis.fitting.rsm import RsmModel, rsm_to_intrinsic

if TYPE_CHECKING:
    from analysis.data import ObserverData

__all__ = ["MODELS", "fit_roc", "fit_roc_curve", "lesion_distribution", "make_model"]

MODELS = ("binormal", "cbm", "rsm")

_NOT_UNIQUE = (
    "the likelihood is flat along some direction (the observed information matrix is singular): the "
    "parameters are not uniquely determined by these ratings, and the AUC has no standard error"
)


def make_model(model: str, lesion_distribution: Mapping[int, float] | None = None) -> OrdinalModel:
    """The model object for ``"binormal"``, ``"cbm"`` or ``"rsm"``."""
    key = str(model).strip().lower()
    if key == "binormal":
        return BinormalModel()
    if key == "cbm":
        return CbmModel()
    if key == "rsm":
        return RsmModel(lesion_distribution)
    raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}.")


def _min_bins(model: OrdinalModel) -> int:
    # identifiable only when the free parameters (model + R-1 thresholds) do not exceed the
    # 2(R-1) independent cell probabilities: R >= n_params + 1
    return model.n_params + 1


def _information_positive_definite(model: OrdinalModel, bins: RatingBins, params: np.ndarray) -> bool:
    hess = numerical_hessian(lambda x: nll_and_gradient(model, x, bins)[1], params)
    try:
        eig = np.linalg.eigvalsh(hess)
    except np.linalg.LinAlgError:
        return False
    return bool(np.all(np.isfinite(eig)) and eig.min() > 1e-10 * max(1.0, eig.max()))


def _conditional_errors(model: OrdinalModel, bins: RatingBins, params: np.ndarray, fixed: Sequence[str]):
    """Covariance, parameter SEs and AUC SE with the parameters in ``fixed`` held at their values.

    Returns None when the information of the free parameters is not positive definite.
    """
    p = model.n_params
    free = np.array([i for i in range(params.size) if i >= p or model.param_names[i] not in fixed])

    def grad_free(x_free: np.ndarray) -> np.ndarray:
        full = params.copy()
        full[free] = x_free
        return nll_and_gradient(model, full, bins)[1][free]

    hess = numerical_hessian(grad_free, params[free])
    try:
        eig = np.linalg.eigvalsh(hess)
        if not np.all(np.isfinite(eig)) or eig.min() <= 1e-10 * max(1.0, eig.max()):
            return None
        cov_free = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return None
    cov_free = (cov_free + cov_free.T) / 2
    n = params.size
    cov = np.full((n, n), np.nan)
    cov[np.ix_(free, free)] = cov_free
    cov_model = np.where(np.isnan(cov[:p, :p]), 0.0, cov[:p, :p])
    g = model.auc_gradient(params[:p])
    var = float(g @ cov_model @ g)
    se_auc = math.sqrt(var) if var >= 0 else math.nan
    se = {k: (math.sqrt(cov[i, i]) if np.isfinite(cov[i, i]) and cov[i, i] >= 0 else math.nan) for i, k in enumerate(model.param_names)}
    return cov, se, se_auc


def _nan_fit(
    model: OrdinalModel, bins: RatingBins, status: str, reason: str, treatment, reader, notes: Sequence[str] = (), lesion_distribution=None
) -> RocFit:
    params = {k: math.nan for k in model.param_names}
    if model.name == "rsm":
        params.update({"lambda_i": math.nan, "nu_i": math.nan})
    names = tuple(model.param_names) + tuple(f"zeta{k + 1}" for k in range(max(bins.n_bins - 1, 0)))
    return RocFit(
        model=model.name,
        treatment=treatment,
        reader=reader,
        status=status,
        reason=reason,
        parameters=params,
        parameter_se={k: math.nan for k in model.param_names},
        zetas=tuple(math.nan for _ in range(max(bins.n_bins - 1, 0))),
        auc=math.nan,
        se_auc=math.nan,
        empirical_auc=bins.empirical_auc() if bins.k1 and bins.k2 else math.nan,
        nll_initial=math.nan,
        nll_final=math.nan,
        chisq=ChiSquare(math.nan, None, math.nan, (), "not computed: no fit"),
        cov=np.full((len(names), len(names)), np.nan),
        cov_names=names,
        bins=bins,
        notes=tuple(notes),
        lesion_distribution=lesion_distribution,
    )


def _single_threaded_blas():
    """Limit BLAS to one thread: the fits multiply tiny matrices, and BLAS threads spinning on a
    busy machine made each optimiser step ~300x slower (measured: 0.85 s vs 0.026 s per fit)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fit_roc_curve(
    fp_ratings: Sequence[float] | np.ndarray,
    tp_ratings: Sequence[float] | np.ndarray,
    model: str = "binormal",
    *,
    binning: str | int = "auto",
    lesion_distribution: Mapping[int, float] | None = None,
    treatment: str | None = None,
    reader: str | None = None,
) -> RocFit:
    """Fit one ROC model to one reader's ratings by maximum likelihood.

    Parameters
    ----------
    fp_ratings, tp_ratings : array-like of float
        Ratings of the non-diseased and diseased cases (higher = more suspicious; ``-inf`` =
        not marked, the lowest bin).
    model : {"binormal", "cbm", "rsm"}
    binning : "auto", "distinct", "runs" or int
        How ratings become bins, see :func:`analysis.fitting.bin_ratings`.
    lesion_distribution : mapping of int to float, optional
        RSM only: fraction of diseased cases with 1, 2, ... lesions (default: all one lesion).
    treatment, reader : str, optional
        Labels carried into the result.

    Returns
    -------
    RocFit
        Never raises for degenerate data: a fit that is not possible has ``status``
        ``"degenerate"`` or ``"not_estimable"``, NaN estimates and a ``reason``.
    """
    with _single_threaded_blas():
        return _fit_roc_curve(
            fp_ratings, tp_ratings, model, binning=binning, lesion_distribution=lesion_distribution, treatment=treatment, reader=reader
        )


def _fit_roc_curve(fp_ratings, tp_ratings, model, *, binning, lesion_distribution, treatment, reader) -> RocFit:
    mdl = make_model(model, lesion_distribution)
    les = dict(mdl.lesion_distribution) if isinstance(mdl, RsmModel) else None
    bins = bin_ratings(fp_ratings, tp_ratings, binning)
    notes: list[str] = []
    if bins.method == "runs":
        notes.append(
            "ratings collapsed into truth-state runs (LABROC); the estimates of the curve and the "
            "AUC are those of the distinct ratings, the thresholds and NLL refer to the runs"
        )
    if bins.k1 == 0 or bins.k2 == 0:
        what = "non-diseased" if bins.k1 == 0 else "diseased"
        return _nan_fit(mdl, bins, "not_estimable", f"no {what} cases: an ROC curve needs both truth states", treatment, reader, notes, les)
    need = _min_bins(mdl)
    if bins.n_bins < need:
        return _nan_fit(
            mdl,
            bins,
            "not_estimable",
            f"{bins.n_bins} rating bin(s); the {mdl.name} model has {mdl.n_params} parameters besides the "
            f"thresholds and needs at least {need} distinct ratings",
            treatment,
            reader,
            notes,
            les,
        )
    fpf, tpf = bins.operating_points()
    interior = (fpf > 0) & (tpf < 1)
    if not interior.any() and mdl.name == "binormal":
        return _nan_fit(
            mdl,
            bins,
            "degenerate",
            "every operating point lies on the FPF = 0 or TPF = 1 edge, so the binormal maximum-likelihood "
            "estimate does not exist (a or b runs to infinity); the CBM fits such data",
            treatment,
            reader,
            notes,
            les,
        )
    try:
        ml = fit_ordinal(mdl, bins)
    except (FloatingPointError, ValueError, np.linalg.LinAlgError) as exc:
        return _nan_fit(mdl, bins, "failed", f"the optimiser failed: {exc}", treatment, reader, notes, les)

    p = mdl.n_params
    if not ml.at_bound and ml.converged and not _information_positive_definite(mdl, bins, ml.params):
        # a flat direction: the likelihood may keep rising towards a bound (degenerate-like data)
        on_bound = probe_bounds(mdl, bins, ml)
        if on_bound is not None:
            ml = on_bound
    theta = ml.params[:p]
    zetas = tuple(float(z) for z in ml.params[p:])
    auc = mdl.auc(theta)
    names = tuple(mdl.param_names) + tuple(f"zeta{k + 1}" for k in range(len(zetas)))
    status, reason = "ok", ""
    if not interior.any():
        status = "boundary" if ml.at_bound else "ok"
        notes.append("every empirical operating point lies on an edge of the ROC square (degenerate data)")
    if ml.at_bound:
        status = "boundary"
        bounds = dict(zip(mdl.param_names, mdl.bounds))
        reason = (
            "; ".join(f"{n} = {theta[mdl.param_names.index(n)]:.4g} is on its bound {bounds[n]}" for n in ml.at_bound)
            + ": the AUC is the limit of the likelihood maximum"
        )
    if not ml.converged:
        status, reason = "failed", f"the optimiser did not converge ({ml.message})"

    cov = np.full((len(names), len(names)), np.nan)
    se_auc = math.nan
    se = {k: math.nan for k in mdl.param_names}
    if status == "ok":
        try:
            hess = numerical_hessian(lambda x: nll_and_gradient(mdl, x, bins)[1], ml.params)
            eig = np.linalg.eigvalsh(hess)
            if not np.all(np.isfinite(eig)) or eig.min() <= 1e-10 * max(1.0, eig.max()):
                status, reason = "not_unique", _NOT_UNIQUE
            else:
                cov = np.linalg.inv(hess)
                cov = (cov + cov.T) / 2
                g = mdl.auc_gradient(theta)
                var = float(g @ cov[:p, :p] @ g)
                se_auc = math.sqrt(var) if var >= 0 else math.nan
                se = {k: math.sqrt(cov[i, i]) if cov[i, i] >= 0 else math.nan for i, k in enumerate(mdl.param_names)}
        except np.linalg.LinAlgError:
            status, reason = "not_unique", _NOT_UNIQUE

    if status == "boundary" and ml.converged and interior.any():
        cond = _conditional_errors(mdl, bins, ml.params, ml.at_bound)
        if cond is not None:
            cov, se, se_auc = cond
            notes.append(
                "standard errors are conditional on "
                + ", ".join(ml.at_bound)
                + " fixed at its bound (the usual Wald theory does not hold on a bound)"
            )

    pn, pa = _bin_probabilities(mdl, ml.params, with_grad=False)
    chisq = chi_square_gof(bins, pn, pa, p)
    params = {k: float(v) for k, v in zip(mdl.param_names, theta)}
    if isinstance(mdl, RsmModel):
        lam_i, nu_i = rsm_to_intrinsic(params["mu"], params["lambda"], params["nu"])
        params.update({"lambda_i": lam_i, "nu_i": nu_i})
    if status in ("failed",):
        auc = math.nan
    return RocFit(
        model=mdl.name,
        treatment=treatment,
        reader=reader,
        status=status,
        reason=reason,
        parameters=params,
        parameter_se=se,
        zetas=zetas,
        auc=float(auc),
        se_auc=float(se_auc),
        empirical_auc=bins.empirical_auc(),
        nll_initial=ml.nll_initial,
        nll_final=ml.nll_final,
        chisq=chisq,
        cov=cov,
        cov_names=names,
        bins=bins,
        notes=tuple(notes),
        lesion_distribution=les,
        converged=ml.converged,
        n_iterations=ml.n_iterations,
        _model=mdl,
        _theta=np.array(theta),
    )


def lesion_distribution(data: ObserverData) -> dict[int, float]:
    """Fraction of abnormal cases with 1, 2, ... lesions (RJafroc's ``lesDistr``) of a study."""
    counts = Counter(int(n) for n in data.lesions_per_case)
    total = sum(counts.values())
    return {k: v / total for k, v in sorted(counts.items())}


def fit_roc(
    data: ObserverData,
    model: str = "binormal",
    *,
    treatments: Sequence[str] | None = None,
    readers: Sequence[str] | None = None,
    binning: str | int = "auto",
    lesion_distribution_override: Mapping[int, float] | None = None,
    provenance: Mapping | None = None,
) -> RocFitSet:
    """Fit an ROC model to every treatment and reader of a study.

    Parameters
    ----------
    data : analysis.ObserverData
        ROC or FROC study.  FROC data are fitted on their highest-rating inferred ROC ratings
        (RJafroc's ``DfFroc2Roc``): the rating of a case is its highest mark; unmarked cases
        form the lowest bin.
    model : {"binormal", "cbm", "rsm"}
    treatments, readers : sequence of str, optional
        Subset to fit (default: all), IDs as in the input.
    binning : "auto", "distinct", "runs" or int
        See :func:`analysis.fitting.bin_ratings`.
    lesion_distribution_override : mapping, optional
        RSM: the lesion distribution; default from the study's lesions per abnormal case.
    provenance : mapping, optional
        Extra keys (input file, SHA-256, version) for the JSON document.
    """
    key = str(model).strip().lower()
    make_model(key)  # validates the name
    les = None
    if key == "rsm":
        les = dict(lesion_distribution_override) if lesion_distribution_override else lesion_distribution(data)
    roc = data.to_roc()
    t_ids = list(data.treatments) if treatments is None else [str(t) for t in treatments]
    r_ids = list(data.readers) if readers is None else [str(r) for r in readers]
    for t in t_ids:
        if t not in data.treatments:
            raise ValueError(f"treatment {t!r} is not in the study; it has {list(data.treatments)}.")
    for r in r_ids:
        if r not in data.readers:
            raise ValueError(f"reader {r!r} is not in the study; it has {list(data.readers)}.")
    fits = []
    with _single_threaded_blas():
        fits = _fit_all(roc, key, t_ids, r_ids, binning, les)
    return RocFitSet(
        model=key,
        fits=tuple(fits),
        treatments=tuple(t_ids),
        readers=tuple(r_ids),
        source_paradigm=data.paradigm,
        binning=str(binning),
        provenance=dict(provenance or {}),
    )


def _fit_all(
    roc: ObserverData, key: str, t_ids: Sequence[str], r_ids: Sequence[str], binning: str | int, les: Mapping[int, float] | None
) -> list[RocFit]:
    k1 = roc.n_normal
    fits = []
    for t in t_ids:
        i = roc.treatments.index(t)
        for r in r_ids:
            j = roc.readers.index(r)
            fp = roc.nl[i, j, :k1, 0]
            tp = roc.ll[i, j, :, 0]
            fits.append(_fit_roc_curve(fp, tp, key, binning=binning, lesion_distribution=les, treatment=t, reader=r))
    return fits
