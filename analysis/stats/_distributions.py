"""Tail probabilities and quantiles that accept infinite or undefined degrees of freedom.

The Hillis denominator degrees of freedom ``ddf_H = MSden^2 / (MS_TR^2 / ((I-1)(J-1)))``
becomes infinite when ``MS_TR == 0`` and undefined (NaN) when the error term is zero as well.
R's ``pf``/``pt``/``qt`` then fall back to their chi-square / normal limits, and RJafroc's
output follows from that; SciPy returns NaN for an infinite denominator df of the F
distribution.  These helpers reproduce the limits so that degenerate studies give the same
numbers as RJafroc instead of NaN.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "f_sf",
    "chi2_sf",
    "t_two_sided_p",
    "t_quantile",
    "noncentral_f_power",
]


def _is_nan(x: float) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def f_sf(statistic: float, dfn: float, dfd: float) -> float:
    """Upper tail ``P(F >= statistic)`` of an F(dfn, dfd) distribution.

    ``dfd = inf`` uses the limit ``dfn * F ~ chi2(dfn)``.  NaN in, NaN out.
    """
    from scipy import special  # scipy.special only (scipy.stats costs ~1 s of start-up)

    statistic, dfn, dfd = float(statistic), float(dfn), float(dfd)
    if math.isnan(statistic) or math.isnan(dfn) or math.isnan(dfd) or dfn <= 0 or dfd <= 0:
        return math.nan
    if math.isinf(statistic):
        return 0.0 if statistic > 0 else 1.0
    if statistic <= 0:  # as R's 1 - pf(x) (and scipy.stats): the whole distribution lies above
        return 1.0
    if math.isinf(dfd):
        return float(special.chdtrc(dfn, dfn * statistic))
    return float(special.fdtrc(dfn, dfd, statistic))


def chi2_sf(statistic: float, df: float) -> float:
    """Upper tail ``P(X >= statistic)`` of a chi-square distribution with ``df`` degrees of freedom."""
    from scipy import special  # scipy.special only (scipy.stats costs ~1 s of start-up)

    statistic, df = float(statistic), float(df)
    if math.isnan(statistic) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(statistic):
        return 0.0 if statistic > 0 else 1.0
    if statistic <= 0:  # as R's 1 - pchisq(x) (and scipy.stats)
        return 1.0
    return float(special.chdtrc(df, statistic))


def t_two_sided_p(statistic: float, df: float | None) -> float:
    """Two-sided p value ``2 P(T >= |t|)``; ``df=None`` or ``inf`` means the standard normal."""
    from scipy import special  # scipy.special only (scipy.stats costs ~1 s of start-up)

    statistic = float(statistic)
    if math.isnan(statistic):
        return math.nan
    if df is None or math.isinf(float(df)):
        return float(2.0 * special.ndtr(-abs(statistic)))
    df = float(df)
    if math.isnan(df) or df <= 0:
        return math.nan
    return float(2.0 * special.stdtr(df, -abs(statistic)))


def t_quantile(probability: float, df: float | None) -> float:
    """Quantile of Student's t (``df=None`` or ``inf``: standard normal)."""
    from scipy import special  # scipy.special only (scipy.stats costs ~1 s of start-up)

    if df is None or math.isinf(float(df)):
        return float(special.ndtri(probability))
    df = float(df)
    if math.isnan(df) or df <= 0:
        return math.nan
    return float(special.stdtrit(df, probability))


def noncentral_f_power(ncp: float, dfn: float, dfd: float, alpha: float) -> float:
    """Power ``P(F' > F_{1-alpha; dfn, dfd})`` of an F test under non-centrality ``ncp``.

    ``dfd = inf`` gives the chi-square test's power, ``P(chi2'(dfn, ncp) > chi2_{1-alpha; dfn})``.
    """
    from scipy import special  # scipy.special only (scipy.stats costs ~1 s of start-up)

    ncp, dfn, dfd = float(ncp), float(dfn), float(dfd)
    if any(math.isnan(v) for v in (ncp, dfn, dfd)) or dfn <= 0 or dfd <= 0 or ncp < 0:
        return math.nan
    if math.isinf(ncp):
        return 1.0
    if math.isinf(dfd):
        critical = special.chdtri(dfn, alpha)
        if ncp == 0:
            return float(special.chdtrc(dfn, critical))
        return float(1.0 - special.chndtr(critical, dfn, ncp))
    critical = special.fdtri(dfn, dfd, 1.0 - alpha)
    if ncp == 0:
        return float(special.fdtrc(dfn, dfd, critical))
    return float(1.0 - special.ncfdtr(dfn, dfd, ncp, critical))


def safe_sqrt(x: float) -> float:
    """``sqrt(x)`` that returns NaN (no RuntimeWarning) for negative or NaN input."""
    x = float(x)
    if np.isnan(x) or x < 0:
        return math.nan
    return math.sqrt(x)
