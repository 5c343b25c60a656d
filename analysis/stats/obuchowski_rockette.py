"""Obuchowski-Rockette (OR) analysis of a FOM matrix with a case-sampling covariance matrix.

With the treatment x reader ANOVA of the FOMs (``MS_T``, ``MS_R``, ``MS_TR``) and the averaged
covariances ``Var, Cov1, Cov2, Cov3`` (see :mod:`analysis.stats.covariance`), as in
Obuchowski & Rockette (1995) with the Hillis (2005, 2007) modifications, matching RJafroc
2.1.3 and OR-DBM MRMC 2.51:

* **RRRC**: ``MSden = MS_TR + max(J (Cov2 - Cov3), 0)``; ``F = MS_T / MSden`` on
  ``(I-1, ddf_H)``, ``ddf_H = MSden^2 / (MS_TR^2 / ((I-1)(J-1)))``; differences have ``SE =
  sqrt(2 MSden / J)`` (t on ``ddf_H``); single treatments ``SE = sqrt(MSden_i / J)`` with
  ``MSden_i = msR_i + max(J Cov2_i, 0)`` on ``MSden_i^2 / (msR_i^2 / (J-1))`` df.
* **FRRC**: ``MSden = Var - Cov1 + (J-1) max(Cov2 - Cov3, 0)``; ``chi2 = (I-1) MS_T / MSden``
  on ``I-1`` df; differences ``SE = sqrt(2 MSden / J)`` with z; single treatments ``SE =
  sqrt((Var_i + (J-1) max(Cov2_i, 0)) / J)`` with z (RJafroc reports ``K-1`` as their df);
  single readers ``SE = sqrt(2 (Var_j - Cov1_j))`` with z.
* **RRFC**: ``F = MS_T / MS_TR`` on ``(I-1, (I-1)(J-1))``; differences ``SE = sqrt(2 MS_TR /
  J)``; single treatments ``SE = sqrt(msR_i / J)`` on ``J-1`` df.

Reported variance components: ``VarTR = MS_TR - Var + Cov1 + max(Cov2 - Cov3, 0)`` and
``VarR = (MS_R - VarTR - Var + Cov2 - (I-1)(Cov1 - Cov3)) / I`` (RJafroc's definitions), with
the correlations ``rho_n = Cov_n / Var``.

References
----------
Obuchowski NA, Rockette HE. Hypothesis testing of diagnostic accuracy for multiple readers and
multiple tests: an ANOVA approach with dependent observations. Commun Stat Simul Comput
1995;24:285-308.
Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS. A comparison of the Dorfman-Berbaum-Metz and
Obuchowski-Rockette methods for receiver operating characteristic (ROC) data. Stat Med
2005;24:1579-1607.
Hillis SL. A comparison of denominator degrees of freedom methods for multiple observer ROC
analysis. Stat Med 2007;26:596-619.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from analysis.results import AnalysisResult, SignificanceResult, Table
from analysis.stats._common import (
    MRMCInputError,
    WarningLog,
    hillis_ddf,
    pairwise_comparisons,
    ratio,
    record_warnings,
    resolve_analyses,
    rrfc_result,
    significance_result,
    treatment_estimate,
    validate_alpha,
    validate_ids,
)
from analysis.stats._distributions import chi2_sf, f_sf, safe_sqrt
from analysis.stats.anova import TRAnova, tr_anova
from analysis.stats.covariance import ORCovariances, or_covariance_components

__all__ = ["or_analysis", "or_variance_components"]


def or_variance_components(anova: TRAnova, cov: ORCovariances) -> dict[str, float]:
    """OR variance components ``VarR, VarTR, Cov1, Cov2, Cov3, Var`` (RJafroc's definitions)."""
    n_t = anova.n_treatments
    ms = anova.ms
    cov23 = cov.cov2 - cov.cov3
    var_tr = ms["TR"] - cov.var + cov.cov1 + (max(cov23, 0.0) if not math.isnan(cov23) else 0.0)
    if anova.n_readers < 2:
        var_tr = math.nan
    var_r = (ms["R"] - var_tr - cov.var + cov.cov2 - (n_t - 1) * (cov.cov1 - cov.cov3)) / n_t
    return {
        "VarR": var_r,
        "VarTR": var_tr,
        "Cov1": cov.cov1,
        "Cov2": cov.cov2,
        "Cov3": cov.cov3,
        "Var": cov.var,
    }


def or_analysis(
    foms: np.ndarray,
    covariance: np.ndarray,
    *,
    n_cases: int,
    treatments: Sequence[str] | None = None,
    readers: Sequence[str] | None = None,
    fom: str = "FOM",
    covariance_method: str = "jackknife",
    analyses: str | Iterable[str] = "ALL",
    alpha: float = 0.05,
    n_bootstraps: int | None = None,
    random_state: int | None = None,
) -> SignificanceResult:
    """Obuchowski-Rockette significance test from a FOM matrix and its covariance matrix.

    Parameters
    ----------
    foms : array-like of shape (I, J)
        Figure of merit of each treatment (row) and reader (column).
    covariance : array-like of shape (I, J, I, J)
        Case-sampling covariance of the FOMs (:func:`jackknife_covariance`,
        :func:`delong_covariance` or :func:`bootstrap_covariance`).
    n_cases : int
        Number of cases K (used for the ``K - 1`` df RJafroc reports for fixed-reader
        single-treatment intervals).
    treatments, readers : sequence of str, optional
    fom : str
    covariance_method : {"jackknife", "delong", "bootstrap"}
        Label stored in the result.
    analyses : {"ALL", "RRRC", "FRRC", "RRFC"} or a list of them
    alpha : float, default 0.05
    n_bootstraps, random_state : int, optional
        Stored for provenance when the covariance came from the bootstrap.

    Returns
    -------
    SignificanceResult
        ``method == "OR"``.
    """
    alpha = validate_alpha(alpha, "or_analysis")
    theta = np.asarray(foms, dtype=float)
    c = np.asarray(covariance, dtype=float)
    if theta.ndim != 2:
        raise MRMCInputError(f"foms must have shape (I, J); got shape {theta.shape}.")
    if c.shape != theta.shape * 2:
        raise MRMCInputError(f"covariance must have shape {theta.shape * 2}; got {c.shape}.")
    if not (np.isfinite(theta).all() and np.isfinite(c).all()):
        raise MRMCInputError(
            "The figures of merit or their covariance contain NaN or infinite values; the figure of merit is undefined for some treatment/reader."
        )
    n_t, n_r = theta.shape
    n_c = int(n_cases)
    treatments = validate_ids(treatments, n_t, "treatment")
    readers = validate_ids(readers, n_r, "reader")
    log = WarningLog()
    wanted = resolve_analyses(analyses, n_t, n_r, n_c, log)

    an = tr_anova(theta)
    cv = or_covariance_components(c)
    vc = or_variance_components(an, cv)
    ms, df = an.ms, an.df
    means = theta.mean(axis=1)
    cov23 = cv.cov2 - cv.cov3
    cov23_pos = 0.0 if (n_r < 2 or math.isnan(cov23)) else max(cov23, 0.0)
    results: dict[str, AnalysisResult] = {}

    for name in wanted:
        notes = WarningLog()
        if name == "RRRC":
            ms_den = ms["TR"] + max(n_r * cov23, 0.0)
            ddf = hillis_ddf(ms_den, ms["TR"], df["TR"])
            if math.isinf(ddf):
                notes.add("RRRC: MS(TR) = 0 so ddf_H is infinite; the F and t tests use their chi-square/normal limits.")
            stat = ratio(ms["T"], ms_den)
            se = safe_sqrt(2.0 * ms_den / n_r)
            diffs = pairwise_comparisons(means, treatments, se, ddf, alpha)
            trt = []
            for i in range(n_t):
                cov2_i = float(cv.cov2_per_treatment[i])
                den_i = an.ms_r_per_treatment[i] + max(n_r * cov2_i, 0.0)
                df_i = hillis_ddf(den_i, an.ms_r_per_treatment[i], n_r - 1)
                if math.isinf(df_i):
                    notes.add(f"RRRC: treatment {treatments[i]} has msR = 0, so its interval uses infinite df.")
                trt.append(treatment_estimate(treatments[i], means[i], den_i / n_r, df_i, alpha, cov2=cov2_i))
            results[name] = AnalysisResult(
                analysis=name,
                method="OR",
                statistic_name="F",
                statistic=stat,
                df=df["T"],
                ddf=ddf,
                p_value=f_sf(stat, df["T"], ddf),
                ms_treatment=ms["T"],
                ms_error=ms_den,
                error_term="MS(TR) + J * max(Cov2 - Cov3, 0)",
                differences=diffs,
                treatment_cis=tuple(trt),
                alpha=alpha,
                warnings=notes.tuple(),
            )
        elif name == "FRRC":
            ms_den = cv.var - cv.cov1 + (n_r - 1) * cov23_pos
            if ms_den <= 0:
                notes.add(
                    "FRRC: the error term Var - Cov1 + (J-1) max(Cov2 - Cov3, 0) is not positive; "
                    "the chi-square statistic and standard errors are undefined."
                )
            stat = ratio((n_t - 1) * ms["T"], ms_den)
            se = safe_sqrt(2.0 * ms_den / n_r)
            diffs = pairwise_comparisons(means, treatments, se, None, alpha)
            trt = []
            for i in range(n_t):
                cov2_i = float(cv.cov2_per_treatment[i])
                extra = 0.0 if (n_r < 2 or math.isnan(cov2_i)) else (n_r - 1) * max(cov2_i, 0.0)
                trt.append(
                    treatment_estimate(
                        treatments[i],
                        means[i],
                        (cv.var_per_treatment[i] + extra) / n_r,
                        n_c - 1,
                        alpha,
                        normal_reference=True,
                    )
                )
            per_reader: list = []
            for j in range(n_r):
                d = cv.var_per_reader[j] - cv.cov1_per_reader[j]
                if d <= 0:
                    notes.add(f"FRRC: reader {readers[j]} has Var - Cov1 <= 0; its single-reader tests are undefined.")
                per_reader.extend(pairwise_comparisons(theta[:, j], treatments, safe_sqrt(2.0 * d), None, alpha, reader=readers[j]))
            results[name] = AnalysisResult(
                analysis=name,
                method="OR",
                statistic_name="chi2",
                statistic=stat,
                df=df["T"],
                ddf=None,
                p_value=chi2_sf(stat, df["T"]),
                ms_treatment=ms["T"],
                ms_error=ms_den,
                error_term="Var - Cov1 + (J-1) * max(Cov2 - Cov3, 0)",
                differences=diffs,
                treatment_cis=tuple(trt),
                reader_differences=tuple(per_reader),
                alpha=alpha,
                warnings=notes.tuple(),
            )
        else:  # RRFC
            results[name] = rrfc_result(
                "OR",
                ms_t=ms["T"],
                ms_tr=ms["TR"],
                df_t=df["T"],
                df_tr=df["TR"],
                means=means,
                treatments=treatments,
                ms_r_per_treatment=an.ms_r_per_treatment,
                n_readers=n_r,
                scale=n_r,
                alpha=alpha,
                notes=notes,
            )
        record_warnings(results[name], log)

    anova_table = Table(
        index=("T", "R", "TR"),
        columns={
            "SS": [an.ss[s] for s in ("T", "R", "TR")],
            "DF": [an.df[s] for s in ("T", "R", "TR")],
            "MS": [an.ms[s] for s in ("T", "R", "TR")],
        },
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = {k: (vc[k] / cv.var if cv.var != 0 else math.nan) for k in ("Cov1", "Cov2", "Cov3")}
    vc_table = Table(
        index=tuple(vc),
        columns={
            "estimate": list(vc.values()),
            "rho": [rho.get(k, math.nan) for k in vc],
        },
        index_name="component",
    )
    return significance_result(
        fom=fom,
        method="OR",
        covariance=covariance_method,
        treatments=treatments,
        readers=readers,
        n_cases=n_c,
        foms=theta,
        anova=anova_table,
        variance_components=vc_table,
        per_treatment={"msR": an.ms_r_per_treatment, "var": cv.var_per_treatment, "cov2": cv.cov2_per_treatment, "df_msR": np.full(n_t, n_r - 1.0)},
        per_reader={"msT": an.ms_t_per_reader, "var": cv.var_per_reader, "cov1": cv.cov1_per_reader, "df_msT": np.full(n_r, n_t - 1.0)},
        analyses=results,
        alpha=alpha,
        log=log,
        n_bootstraps=n_bootstraps,
        random_state=random_state,
    )
