"""MRMC significance testing of an observer study: DBM and Obuchowski-Rockette (OR).

:func:`significance_test` is the entry point: it computes the figures of merit of an
:class:`~analysis.ObserverData` (:func:`analysis.fom_and_jackknife`), the case-sampling
covariance (jackknife for every FOM; DeLong or a stratified bootstrap for the AUC-type FOMs
Wilcoxon, HrAuc and wAFROC) and runs the random-reader/random-case (RRRC), fixed-reader
(FRRC) and fixed-case (RRFC) analyses.  With the jackknife the numbers equal RJafroc 2.1.3's
``St()`` (and, for ROC data, the Iowa OR-DBM MRMC 2.51 program).

Which analysis to report: RRRC generalises to new readers and new cases and is the primary
analysis of a reader study.  FRRC holds for the participating readers only; RRFC for the
cases used only.
"""

from __future__ import annotations

from typing import Callable, Iterable, Literal

import numpy as np

from analysis.results import Provenance, SignificanceResult
from analysis.stats._common import MRMCInputError, validate_alpha
from analysis.stats.anova import pseudovalues_from_jackknife
from analysis.stats.covariance import bootstrap_covariance, delong_covariance, jackknife_covariance
from analysis.stats.dbm import dbm_analysis
from analysis.stats.obuchowski_rockette import or_analysis

__all__ = [
    "significance_test",
    "auc_kernel_inputs",
    "BackendNotAvailableError",
    "METHODS",
    "COVARIANCE_METHODS",
    "U_STATISTIC_FOMS",
]

METHODS = ("DBM", "OR")
COVARIANCE_METHODS = ("jackknife", "delong", "bootstrap")
#: FOMs that are two-sample U-statistics over (normal case, abnormal case) pairs.
U_STATISTIC_FOMS = ("Wilcoxon", "HrAuc", "wAFROC")


class BackendNotAvailableError(RuntimeError):
    """The requested computation backend is not part of this build."""


def auc_kernel_inputs(data, fom: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Case-level ratings of an AUC-type FOM for the DeLong / bootstrap covariance.

    Parameters
    ----------
    data : ObserverData
    fom : {"Wilcoxon", "HrAuc", "wAFROC"}

    Returns
    -------
    normal_scores : ndarray of shape (I, J, K1)
        Wilcoxon: the rating of each normal case; HrAuc / wAFROC: its highest NL rating.
    lesion_scores : ndarray of shape (I, J, K2, L)
        Wilcoxon: the rating of each abnormal case (L = 1); HrAuc: the highest rating on the
        abnormal case, lesion or not (L = 1); wAFROC: each lesion's LL rating.
    lesion_weights : ndarray of shape (K2, L)
        Ones (Wilcoxon, HrAuc) or the lesion weights (wAFROC).
    """
    k1 = data.n_normal
    if k1 < 2 or data.n_abnormal < 2:
        raise MRMCInputError(
            f"The {fom} DeLong/bootstrap covariance needs at least 2 normal and 2 abnormal cases; "
            f"the data has {k1} normal and {data.n_abnormal} abnormal. Use covariance='jackknife'."
        )
    nl = np.asarray(data.nl, dtype=float)
    ll = np.asarray(data.ll, dtype=float)
    if fom == "Wilcoxon":
        return nl[:, :, :k1, 0], ll[:, :, :, :1], np.ones((data.n_abnormal, 1))
    if fom == "HrAuc":
        fp = nl[:, :, :k1, :].max(axis=3)
        tp = np.maximum(ll.max(axis=3), nl[:, :, k1:, :].max(axis=3))
        return fp, tp[..., None], np.ones((data.n_abnormal, 1))
    if fom == "wAFROC":
        return nl[:, :, :k1, :].max(axis=3), ll, np.asarray(data.lesion_weights, dtype=float)
    raise MRMCInputError(
        f"covariance='delong' and 'bootstrap' are defined for FOMs that are two-sample "
        f"U-statistics over (normal, abnormal) case pairs: {', '.join(U_STATISTIC_FOMS)}. "
        f"{fom} is not one of them: use covariance='jackknife'."
    )


def significance_test(
    data,
    fom: str = "wAFROC",
    *,
    method: Literal["OR", "DBM"] = "OR",
    analyses: str | Iterable[str] = "ALL",
    covariance: Literal["jackknife", "delong", "bootstrap"] = "jackknife",
    alpha: float = 0.05,
    n_bootstraps: int = 2000,
    random_state: int | None = None,
    backend: Literal["python", "rjafroc"] = "python",
    provenance: Provenance | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SignificanceResult:
    """Test whether the treatments' reader-averaged figures of merit differ (MRMC analysis).

    Parameters
    ----------
    data : ObserverData
        Fully crossed study: every reader reads every case in every treatment.  At least 2
        treatments; at least 2 readers for the random-reader analyses.
    fom : str, default "wAFROC"
        Figure of merit, RJafroc's name (``analysis.FOMS``).
    method : {"OR", "DBM"}, default "OR"
        Obuchowski-Rockette on the FOM matrix with a covariance matrix, or Dorfman-Berbaum-Metz
        on jackknife pseudovalues.  With the jackknife both give identical RRRC and RRFC
        results; FRRC differs (OR uses chi-square/z, DBM F/t tests).
    analyses : {"ALL", "RRRC", "FRRC", "RRFC"} or a list, default "ALL"
        With a single reader "ALL" reports FRRC only.
    covariance : {"jackknife", "delong", "bootstrap"}, default "jackknife"
        OR only.  DeLong and the stratified bootstrap are available for Wilcoxon, HrAuc and
        wAFROC (two-sample U-statistics).
    alpha : float, default 0.05
        Test level; confidence intervals are ``1 - alpha``.
    n_bootstraps : int, default 2000
        Bootstrap resamples (``covariance="bootstrap"``).
    random_state : int, optional
        Seed of the bootstrap (results are reproducible for a given seed).
    backend : {"python", "rjafroc"}, default "python"
        ``"rjafroc"`` runs RJafroc's ``St()`` in R through rpy2 (optional: ``pip install
        '.[rjafroc]'``, R >= 4 and ``install.packages("RJafroc")``; jackknife covariance only)
        and returns the same result type (:mod:`analysis.rjafroc_backend`).
    provenance : Provenance, optional
        Input file and hash to record in the result (see :meth:`Provenance.from_file`).
    progress : callable, optional
        ``progress(done, total)`` during the bootstrap.

    Returns
    -------
    SignificanceResult

    Raises
    ------
    MRMCInputError
        Unsupported design (fewer than 2 treatments, a random-reader analysis with one reader),
        invalid option, or a covariance method the FOM does not support.
    analysis.FomError
        The FOM is unknown or undefined for the data.
    BackendNotAvailableError
        ``backend="rjafroc"`` but rpy2, R or RJafroc is missing (the message says how to
        install them).

    Examples
    --------
    >>> from analysis import ObserverData
    >>> rng = np.random.default_rng(0)
    >>> normal = rng.normal(0.0, 1.0, size=(2, 3, 30))
    >>> abnormal = rng.normal(1.0, 1.0, size=(2, 3, 25)) + np.array([0.0, 0.5])[:, None, None]
    >>> d = ObserverData.from_roc(normal, abnormal)
    >>> res = significance_test(d, "Wilcoxon", method="OR")
    >>> sorted(res.analyses)
    ['FRRC', 'RRFC', 'RRRC']
    """
    from analysis.fom import check_fom, fom_and_jackknife

    if backend != "python":
        if backend == "rjafroc":
            from analysis.rjafroc_backend import significance_test_rjafroc

            return significance_test_rjafroc(
                data,
                fom,
                method,
                analyses,
                alpha=alpha,
                covariance=covariance,
                provenance=provenance,
            )
        raise MRMCInputError(f"backend must be 'python' or 'rjafroc'. Got {backend!r} instead.")
    alpha = validate_alpha(alpha, "significance_test")
    method_u = str(method).upper()
    if method_u not in METHODS:
        raise MRMCInputError(f"method must be 'OR' or 'DBM'. Got {method!r} instead.")
    cov_l = str(covariance).lower()
    if cov_l not in COVARIANCE_METHODS:
        raise MRMCInputError(f"covariance must be one of {', '.join(COVARIANCE_METHODS)}. Got {covariance!r} instead.")
    if method_u == "DBM" and cov_l != "jackknife":
        raise MRMCInputError("The DBM method analyses jackknife pseudovalues; covariance='delong' or 'bootstrap' needs method='OR'.")
    check_fom(data, fom)
    common = dict(treatments=data.treatments, readers=data.readers, fom=fom, analyses=analyses, alpha=alpha)

    if cov_l == "jackknife":
        theta, jk = fom_and_jackknife(data, fom)
        if method_u == "DBM":
            result = dbm_analysis(theta, pseudovalues_from_jackknife(theta, jk), **common)
        else:
            result = or_analysis(theta, jackknife_covariance(jk), n_cases=jk.shape[2], **common)
    else:
        normal, lesions, weights = auc_kernel_inputs(data, fom)
        if cov_l == "delong":
            theta, cov = delong_covariance(normal, lesions, weights)
            extra = {}
        else:
            theta, cov, _ = bootstrap_covariance(
                normal,
                lesions,
                weights,
                n_bootstraps=n_bootstraps,
                random_state=random_state,
                progress=progress,
            )
            extra = {"n_bootstraps": int(n_bootstraps), "random_state": random_state}
        reference = np.asarray(_fom_matrix(data, fom))
        if not np.allclose(theta, reference, rtol=1e-10, atol=1e-12):  # pragma: no cover - guard
            raise RuntimeError(
                f"Internal inconsistency: the {fom} kernel FOMs differ from fom_matrix by "
                f"{np.max(np.abs(theta - reference)):.3g}. Please report this."
            )
        result = or_analysis(
            reference,
            cov,
            n_cases=data.n_normal + data.n_abnormal,
            covariance_method=cov_l,
            **common,
            **extra,
        )
    from analysis.degenerate import guard_degenerate

    result = guard_degenerate(result)  # no p-value from rounding noise (docs/analysis-degenerate.md)
    if provenance is not None:
        result = result.with_provenance(provenance)
    return result


def _fom_matrix(data, fom: str) -> np.ndarray:
    from analysis.fom import fom_matrix

    return fom_matrix(data, fom)
