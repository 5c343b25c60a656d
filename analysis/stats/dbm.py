"""Dorfman-Berbaum-Metz (DBM) analysis of jackknife pseudovalues, with Hillis' improvements.

The pseudovalues ``Y[i, j, k]`` are analysed as a treatment x reader x case ANOVA (Dorfman,
Berbaum & Metz 1992).  The error terms, denominator degrees of freedom and confidence
intervals are those of Hillis (2007, 2008) as implemented by RJafroc 2.1.3 and OR-DBM MRMC 2.51:

* **RRRC**: ``MSden = MS_TR + max(MS_TC - MS_TRC, 0)``, ``F = MS_T / MSden`` on
  ``(I-1, ddf_H)`` with ``ddf_H = MSden^2 / (MS_TR^2 / ((I-1)(J-1)))``; treatment differences
  have ``SE = sqrt(2 MSden / (J K))`` and a t reference on ``ddf_H``; each treatment's
  reader-averaged FOM has ``SE = sqrt(MSden_i / (J K))`` with ``MSden_i = msR_i + max(msC_i -
  msRC_i, 0)`` on ``MSden_i^2 / (msR_i^2 / (J-1))`` df.
* **FRRC**: ``MSden = MS_TC`` on ``(I-1)(K-1)`` df; single treatments use ``msC_i`` (K-1 df),
  single readers ``SE = sqrt(2 msTC_j / K)`` (K-1 df).
* **RRFC**: ``MSden = MS_TR`` on ``(I-1)(J-1)`` df; single treatments use ``msR_i`` (J-1 df).

Variance components are the ANOVA estimates without truncation (they can be negative):
``VarR = (MS_R - MS_TR - MS_RC + MS_TRC)/(I K)``, ``VarC = (MS_C - MS_TC - MS_RC +
MS_TRC)/(I J)``, ``VarTR = (MS_TR - MS_TRC)/K``, ``VarTC = (MS_TC - MS_TRC)/J``, ``VarRC =
(MS_RC - MS_TRC)/I``, ``VarErr = MS_TRC``.

References
----------
Dorfman DD, Berbaum KS, Metz CE. Receiver operating characteristic rating analysis:
generalization to the population of readers and patients with the jackknife method. Invest
Radiol 1992;27:723-731.
Hillis SL. A comparison of denominator degrees of freedom methods for multiple observer ROC
analysis. Stat Med 2007;26:596-619.
Hillis SL, Berbaum KS, Metz CE. Recent developments in the Dorfman-Berbaum-Metz procedure for
multireader ROC study analysis. Acad Radiol 2008;15:647-661.
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
from analysis.stats._distributions import f_sf, safe_sqrt
from analysis.stats.anova import TRCAnova, trc_anova

__all__ = ["dbm_analysis", "dbm_variance_components"]


def dbm_variance_components(anova: TRCAnova) -> dict[str, float]:
    """DBM variance components (pseudovalue scale) from the T x R x C mean squares."""
    ms = anova.ms
    n_t, n_r, n_c = anova.n_treatments, anova.n_readers, anova.n_cases
    return {
        "VarR": (ms["R"] - ms["TR"] - ms["RC"] + ms["TRC"]) / (n_t * n_c),
        "VarC": (ms["C"] - ms["TC"] - ms["RC"] + ms["TRC"]) / (n_t * n_r),
        "VarTR": (ms["TR"] - ms["TRC"]) / n_c,
        "VarTC": (ms["TC"] - ms["TRC"]) / n_r,
        "VarRC": (ms["RC"] - ms["TRC"]) / n_t,
        "VarErr": ms["TRC"],
    }


def dbm_analysis(
    foms: np.ndarray,
    pseudovalues: np.ndarray,
    *,
    treatments: Sequence[str] | None = None,
    readers: Sequence[str] | None = None,
    fom: str = "FOM",
    analyses: str | Iterable[str] = "ALL",
    alpha: float = 0.05,
) -> SignificanceResult:
    """DBM significance test from a FOM matrix and its jackknife pseudovalues.

    Parameters
    ----------
    foms : array-like of shape (I, J)
        Figure of merit of each treatment (row) and reader (column).
    pseudovalues : array-like of shape (I, J, K)
        Jackknife pseudovalues (see :func:`analysis.stats.pseudovalues_from_jackknife`),
        ``K`` = number of cases in the FOM's resampled case set.
    treatments, readers : sequence of str, optional
        IDs for the rows/columns (default ``"1"..``).
    fom : str
        Name of the figure of merit (stored in the result).
    analyses : {"ALL", "RRRC", "FRRC", "RRFC"} or a list of them
    alpha : float, default 0.05
        Significance level; confidence intervals are ``1 - alpha``.

    Returns
    -------
    SignificanceResult
        ``method == "DBM"``; see :mod:`analysis.stats.dbm` for the formulas.

    Raises
    ------
    MRMCInputError
        Fewer than 2 treatments or cases, shape mismatch, NaN input, or a random-reader
        analysis requested with a single reader.
    """
    alpha = validate_alpha(alpha, "dbm_analysis")
    theta = np.asarray(foms, dtype=float)
    y = np.asarray(pseudovalues, dtype=float)
    if theta.ndim != 2:
        raise MRMCInputError(f"foms must have shape (I, J); got shape {theta.shape}.")
    if y.ndim != 3 or y.shape[:2] != theta.shape:
        raise MRMCInputError(f"pseudovalues must have shape (I, J, K) with (I, J) = {theta.shape}; got {y.shape}.")
    if not (np.isfinite(theta).all() and np.isfinite(y).all()):
        raise MRMCInputError(
            "The figures of merit or pseudovalues contain NaN or infinite values; the figure of "
            "merit is undefined for some treatment/reader (check that every reader rated every case)."
        )
    n_t, n_r, n_c = y.shape
    treatments = validate_ids(treatments, n_t, "treatment")
    readers = validate_ids(readers, n_r, "reader")
    log = WarningLog()
    wanted = resolve_analyses(analyses, n_t, n_r, n_c, log)

    an = trc_anova(y)
    ms, df = an.ms, an.df
    vc = dbm_variance_components(an)
    means = theta.mean(axis=1)
    results: dict[str, AnalysisResult] = {}

    for name in wanted:
        notes = WarningLog()
        if name == "RRRC":
            ms_den = ms["TR"] + max(ms["TC"] - ms["TRC"], 0.0)
            ddf = hillis_ddf(ms_den, ms["TR"], df["TR"])
            if math.isinf(ddf):
                notes.add("RRRC: MS(TR) = 0 so ddf_H is infinite; the F and t tests use their chi-square/normal limits.")
            stat = ratio(ms["T"], ms_den)
            se = safe_sqrt(2.0 * ms_den / (n_r * n_c))
            diffs = pairwise_comparisons(means, treatments, se, ddf, alpha)
            trt = []
            for i in range(n_t):
                den_i = an.ms_r_per_treatment[i] + max(an.ms_c_per_treatment[i] - an.ms_rc_per_treatment[i], 0.0)
                df_i = hillis_ddf(den_i, an.ms_r_per_treatment[i], n_r - 1)
                if math.isinf(df_i):
                    notes.add(f"RRRC: treatment {treatments[i]} has msR = 0, so its interval uses infinite df.")
                trt.append(treatment_estimate(treatments[i], means[i], den_i / (n_r * n_c), df_i, alpha))
            results[name] = AnalysisResult(
                analysis=name,
                method="DBM",
                statistic_name="F",
                statistic=stat,
                df=df["T"],
                ddf=ddf,
                p_value=f_sf(stat, df["T"], ddf),
                ms_treatment=ms["T"],
                ms_error=ms_den,
                error_term="MS(TR) + max(MS(TC) - MS(TRC), 0)",
                differences=diffs,
                treatment_cis=tuple(trt),
                alpha=alpha,
                warnings=notes.tuple(),
            )
        elif name == "FRRC":
            ms_den = ms["TC"]
            ddf = df["TC"]
            stat = ratio(ms["T"], ms_den)
            se = safe_sqrt(2.0 * ms_den / (n_r * n_c))
            diffs = pairwise_comparisons(means, treatments, se, ddf, alpha)
            trt = tuple(treatment_estimate(treatments[i], means[i], an.ms_c_per_treatment[i] / (n_r * n_c), n_c - 1, alpha) for i in range(n_t))
            per_reader: list = []
            for j in range(n_r):
                se_j = safe_sqrt(2.0 * an.ms_tc_per_reader[j] / n_c)
                per_reader.extend(pairwise_comparisons(theta[:, j], treatments, se_j, n_c - 1, alpha, reader=readers[j]))
            if ms_den == 0:
                notes.add("FRRC: MS(TC) = 0; the F statistic is undefined or infinite.")
            results[name] = AnalysisResult(
                analysis=name,
                method="DBM",
                statistic_name="F",
                statistic=stat,
                df=df["T"],
                ddf=ddf,
                p_value=f_sf(stat, df["T"], ddf),
                ms_treatment=ms["T"],
                ms_error=ms_den,
                error_term="MS(TC)",
                differences=diffs,
                treatment_cis=trt,
                reader_differences=tuple(per_reader),
                alpha=alpha,
                warnings=notes.tuple(),
            )
        else:  # RRFC
            results[name] = rrfc_result(
                "DBM",
                ms_t=ms["T"],
                ms_tr=ms["TR"],
                df_t=df["T"],
                df_tr=df["TR"],
                means=means,
                treatments=treatments,
                ms_r_per_treatment=an.ms_r_per_treatment,
                n_readers=n_r,
                scale=n_r * n_c,
                alpha=alpha,
                notes=notes,
            )
        record_warnings(results[name], log)

    sources = ("T", "R", "C", "TR", "TC", "RC", "TRC", "Total")
    anova_table = Table(
        index=sources,
        columns={
            "SS": [an.ss[s] for s in sources],
            "DF": [an.df[s] for s in sources],
            "MS": [an.ms.get(s, math.nan) for s in sources],
        },
    )
    vc_table = Table(index=tuple(vc), columns={"estimate": list(vc.values())}, index_name="component")
    return significance_result(
        fom=fom,
        method="DBM",
        covariance="jackknife",
        treatments=treatments,
        readers=readers,
        n_cases=n_c,
        foms=theta,
        anova=anova_table,
        variance_components=vc_table,
        per_treatment={
            "msR": an.ms_r_per_treatment,
            "msC": an.ms_c_per_treatment,
            "msRC": an.ms_rc_per_treatment,
            "df_msR": np.full(n_t, n_r - 1.0),
            "df_msC": np.full(n_t, n_c - 1.0),
            "df_msRC": np.full(n_t, (n_r - 1.0) * (n_c - 1.0)),
        },
        per_reader={
            "msT": an.ms_t_per_reader,
            "msC": an.ms_c_per_reader,
            "msTC": an.ms_tc_per_reader,
            "df_msT": np.full(n_r, n_t - 1.0),
            "df_msC": np.full(n_r, n_c - 1.0),
            "df_msTC": np.full(n_r, (n_t - 1.0) * (n_c - 1.0)),
        },
        analyses=results,
        alpha=alpha,
        log=log,
    )
