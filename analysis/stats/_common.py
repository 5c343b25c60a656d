"""Shared validation and building blocks of the DBM and OR analyses."""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Sequence

import numpy as np

from analysis.results import AnalysisResult, Comparison, SignificanceResult, Table, TreatmentEstimate, iter_analyses
from analysis.stats._distributions import f_sf, safe_sqrt, t_quantile, t_two_sided_p

__all__ = [
    "MRMCInputError",
    "MRMCWarning",
    "validate_alpha",
    "validate_ids",
    "resolve_analyses",
    "pairwise_comparisons",
    "treatment_estimate",
    "WarningLog",
    "rrfc_result",
    "record_warnings",
    "level_tables",
    "significance_result",
]


class MRMCInputError(ValueError):
    """Invalid input to an MRMC significance test or power analysis (says what to fix)."""


class MRMCWarning(UserWarning):
    """A statistic is undefined or degenerate for this dataset (RJafroc's behaviour is kept)."""


class WarningLog:
    """Collects degenerate-data notes for a result and re-emits them as :class:`MRMCWarning`."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)
            warnings.warn(message, MRMCWarning, stacklevel=4)

    def tuple(self) -> tuple[str, ...]:
        return tuple(self.messages)


def validate_alpha(alpha: float, where: str) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value < 1.0:
        raise MRMCInputError(f"The 'alpha' parameter of {where} must be a float in (0, 1). Got {alpha!r} instead.")
    return value


def validate_ids(ids: Sequence[str] | None, n: int, kind: str) -> tuple[str, ...]:
    if ids is None:
        return tuple(str(i + 1) for i in range(n))
    ids = tuple(str(i) for i in ids)
    if len(ids) != n:
        raise MRMCInputError(f"Got {len(ids)} {kind} IDs for {n} {kind}s.")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise MRMCInputError(f"Duplicate {kind} IDs: {dup}.")
    return ids


def resolve_analyses(analyses: str | Iterable[str], n_treatments: int, n_readers: int, n_cases: int, log: WarningLog) -> tuple[str, ...]:
    """Check the design supports the requested analyses.

    With ``"ALL"`` analyses that the design cannot support are dropped with a warning (a
    single reader supports only FRRC); an explicitly requested unsupported analysis is an error.
    """
    try:
        wanted = iter_analyses(analyses)
    except ValueError as exc:
        raise MRMCInputError(str(exc)) from None
    if n_treatments < 2:
        raise MRMCInputError(
            f"A significance test of treatments needs at least 2 treatments; the data has "
            f"{n_treatments}. For a single treatment use the per-treatment confidence interval "
            "of a dataset with a second treatment, or compare readers with another method."
        )
    if n_cases < 2:
        raise MRMCInputError(f"The analysis needs at least 2 cases in the resampled case set; got {n_cases}.")
    explicit_all = isinstance(analyses, str) and analyses.strip().upper() == "ALL"
    if n_readers < 2:
        dropped = [a for a in wanted if a in ("RRRC", "RRFC")]
        if dropped and not explicit_all:
            raise MRMCInputError(
                f"{' and '.join(dropped)} treat readers as random and need at least 2 readers; "
                "the data has 1 reader. Only the fixed-reader analysis (FRRC) is defined: choose "
                "--analysis FRRC (or ALL), or add readers."
            )
        if dropped:
            log.add(
                "Only 1 reader: the random-reader analyses (RRRC, RRFC) are undefined and were skipped; the fixed-reader analysis (FRRC) is reported."
            )
        wanted = tuple(a for a in wanted if a not in ("RRRC", "RRFC"))
    return wanted


def pairwise_comparisons(
    means: np.ndarray,
    treatments: Sequence[str],
    se: float,
    df: float | None,
    alpha: float,
    reader: str | None = None,
) -> tuple[Comparison, ...]:
    """All differences ``means[i] - means[i']`` for ``i < i'`` with a common SE and df.

    ``df=None`` means a normal (z) reference distribution.
    """
    out = []
    q = t_quantile(1.0 - alpha / 2.0, df)
    n = len(treatments)
    for a in range(n):
        for b in range(a + 1, n):
            est = float(means[a] - means[b])
            with np.errstate(divide="ignore", invalid="ignore"):
                stat = est / se if se != 0 else (math.copysign(math.inf, est) if est != 0 else math.nan)
            out.append(
                Comparison(
                    treatments=(treatments[a], treatments[b]),
                    estimate=est,
                    se=float(se),
                    df=None if df is None else float(df),
                    statistic=float(stat),
                    p_value=t_two_sided_p(stat, df),
                    ci_lower=est - q * se,
                    ci_upper=est + q * se,
                    alpha=alpha,
                    reader=reader,
                )
            )
    return tuple(out)


def treatment_estimate(
    treatment: str,
    estimate: float,
    variance: float,
    df: float | None,
    alpha: float,
    *,
    normal_reference: bool = False,
    cov2: float | None = None,
) -> TreatmentEstimate:
    se = safe_sqrt(variance)
    q = t_quantile(1.0 - alpha / 2.0, None if normal_reference else df)
    return TreatmentEstimate(
        treatment=treatment,
        estimate=float(estimate),
        se=se,
        df=None if df is None else float(df),
        ci_lower=float(estimate) - q * se,
        ci_upper=float(estimate) + q * se,
        alpha=alpha,
        normal_reference=normal_reference,
        cov2=cov2,
    )


def hillis_ddf(ms_den: float, ms_tr: float, df_tr: float) -> float:
    """Hillis (2007) ``ddf_H = MSden^2 / (MS_TR^2 / df_TR)``, with R's division semantics
    (``x/0 = inf`` for ``x > 0``, ``0/0 = NaN``)."""
    if df_tr <= 0:
        return math.nan
    num = ms_den * ms_den
    den = ms_tr * ms_tr / df_tr
    if den == 0:
        return math.inf if num > 0 else math.nan
    return num / den


def ratio(num: float, den: float) -> float:
    """``num / den`` with R semantics for a zero denominator."""
    if den == 0:
        if num == 0 or math.isnan(num):
            return math.nan
        return math.copysign(math.inf, num)
    return num / den


def rrfc_result(
    method: str,
    *,
    ms_t: float,
    ms_tr: float,
    df_t: float,
    df_tr: float,
    means: np.ndarray,
    treatments: Sequence[str],
    ms_r_per_treatment: np.ndarray,
    n_readers: int,
    scale: float,
    alpha: float,
    notes: WarningLog,
) -> AnalysisResult:
    """The random-reader fixed-case (RRFC) test, which DBM and OR share.

    ``F = MS(T) / MS(TR)`` on ``(df_t, df_tr)``; a difference has ``SE = sqrt(2 MS(TR) / scale)``
    and a single treatment ``SE² = msR_i / scale`` on ``n_readers - 1`` df. ``scale`` is the
    number of readers for OR (FOM scale) and readers × cases for DBM (pseudovalue scale).
    """
    stat = ratio(ms_t, ms_tr)
    se = safe_sqrt(2.0 * ms_tr / scale)
    diffs = pairwise_comparisons(means, treatments, se, df_tr, alpha)
    trt = tuple(treatment_estimate(treatments[i], means[i], ms_r_per_treatment[i] / scale, n_readers - 1, alpha) for i in range(len(treatments)))
    if ms_tr == 0:
        notes.add("RRFC: MS(TR) = 0; the F statistic is undefined or infinite.")
    return AnalysisResult(
        analysis="RRFC",
        method=method,
        statistic_name="F",
        statistic=stat,
        df=df_t,
        ddf=df_tr,
        p_value=f_sf(stat, df_t, df_tr),
        ms_treatment=ms_t,
        ms_error=ms_tr,
        error_term="MS(TR)",
        differences=diffs,
        treatment_cis=trt,
        alpha=alpha,
        warnings=notes.tuple(),
    )


def record_warnings(result: AnalysisResult, log: WarningLog) -> None:
    """Copy an analysis' notes into the study-level log once each (without warning again)."""
    for message in result.warnings:
        if message not in log.messages:
            log.messages.append(message)


def level_tables(
    treatments: Sequence[str],
    readers: Sequence[str],
    per_treatment: dict[str, Sequence[float]],
    per_reader: dict[str, Sequence[float]],
) -> tuple[Table, Table]:
    """The single-treatment and single-reader tables (RJafroc's ``IndividualTrt`` and
    ``IndividualRdr``): ``per_treatment``/``per_reader`` columns indexed by the IDs."""
    return (
        Table(index=tuple(treatments), columns=per_treatment, index_name="treatment"),
        Table(index=tuple(readers), columns=per_reader, index_name="reader"),
    )


def significance_result(
    *,
    fom: str,
    method: str,
    covariance: str,
    treatments: tuple[str, ...],
    readers: tuple[str, ...],
    n_cases: int,
    foms: np.ndarray,
    anova: Table,
    variance_components: Table,
    per_treatment: dict[str, Sequence[float]],
    per_reader: dict[str, Sequence[float]],
    analyses: dict[str, AnalysisResult],
    alpha: float,
    log: WarningLog,
    **extra: object,
) -> SignificanceResult:
    """The :class:`SignificanceResult` of a DBM or OR analysis.

    ``per_treatment`` and ``per_reader`` are the columns of the single-treatment and
    single-reader tables (RJafroc's ``MsR``/``MsT`` tables), indexed by ``treatments`` and
    ``readers``; ``extra`` passes method-specific fields (``n_bootstraps``, ``random_state``).
    """
    trt_table, rdr_table = level_tables(treatments, readers, per_treatment, per_reader)
    return SignificanceResult(
        fom=fom,
        method=method,
        covariance=covariance,
        treatments=treatments,
        readers=readers,
        n_cases=n_cases,
        foms=foms,
        anova=anova,
        variance_components=variance_components,
        treatment_anova=trt_table,
        reader_anova=rdr_table,
        analyses=analyses,
        alpha=alpha,
        warnings=log.tuple(),
        **extra,
    )
