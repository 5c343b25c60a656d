"""Honest answers on degenerate data: no p-value from floating-point noise.

Two situations make an MRMC test meaningless although the arithmetic still produces numbers:

* **No difference at all.**  When the treatments were read identically (the same marks in
  each, or no marks at all so that every FOM is 0.5), both the treatment differences and
  their standard errors are zero in exact arithmetic; what the computer holds are rounding
  residues of about 1e-16.  The F statistic is then a ratio of two such residues (RJafroc and
  the unguarded engine give e.g. F(4, 12) = 6.95, p = 0.0039 on dataset04 with all treatments
  given the same marks).  A zero difference with a real standard error is an ordinary result
  (t = 0, p = 1) and is kept.
* **No variability.**  When the error term of a test (its denominator: MS(TR), Var - Cov1, ...)
  is zero within rounding while the difference is not, the statistic is infinite and p = 0
  for want of any variability to judge the difference by.

:func:`guard_degenerate` replaces such p-values, statistics, standard errors and confidence
limits by NaN and attaches the reason in words to the analysis' warnings, which the console,
the JSON and the report show.  The estimates themselves are kept (a difference within rounding
of zero is reported as exactly 0).

Tolerances (FOMs are on a 0..1 scale for every FOM except the MaxLLF/MaxNLF family; the
tolerances scale with the largest absolute FOM when it exceeds 1):

``FOM_TOLERANCE = 1e-10``
    Two FOMs closer than this are equal.  Rounding in a FOM is below 1e-13 for any realistic
    study, while a real difference between two empirical FOMs is at least 1/(K1*K2*lesions),
    above 1e-10 up to 100,000 cases.
``SE_TOLERANCE = 1e-8``
    A standard error (FOM units) below this is zero: the square root of rounding residues in a
    mean square is about 1e-8 at most; a real standard error, even with 100,000 cases, is
    above 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable

import numpy as np

from analysis.results import AnalysisResult, Comparison, SignificanceResult

__all__ = ["FOM_TOLERANCE", "SE_TOLERANCE", "guard_degenerate", "identical_treatments"]

FOM_TOLERANCE = 1e-10
SE_TOLERANCE = 1e-8

NO_DIFFERENCE = (
    "every reader's figure of merit is the same in all treatments (differences within "
    "floating-point rounding, |difference| <= {tol:.0e}), so there is no difference to test: "
    "the test statistic (F or chi-square) would be a ratio of rounding residues, so no p-value is given"
)
NO_VARIANCE = (
    "the error term of the test is zero within rounding (standard error of a difference "
    "<= {tol:.0e}): the data show no reader or case variability to judge the difference by, "
    "so no p-value is given"
)


def _scale(foms: np.ndarray) -> float:
    finite = np.abs(foms[np.isfinite(foms)])
    return max(1.0, float(finite.max())) if finite.size else 1.0


def identical_treatments(foms: np.ndarray, tol: float | None = None) -> bool:
    """True when every reader's FOM agrees across all treatments within ``tol`` (rounding)."""
    foms = np.asarray(foms, dtype=float)
    tol = FOM_TOLERANCE * _scale(foms) if tol is None else tol
    return bool(np.all(np.abs(foms - foms[:1]) <= tol))


def _blank_comparison(c: Comparison, estimate: float | None = None) -> Comparison:
    return replace(
        c,
        estimate=c.estimate if estimate is None else estimate,
        se=math.nan,
        statistic=math.nan,
        p_value=math.nan,
        ci_lower=math.nan,
        ci_upper=math.nan,
    )


def _zero_se(c: Comparison, tol_se: float) -> bool:
    """A standard error that is zero within rounding, or undefined (a negative error term)."""
    return math.isnan(c.se) or c.se <= tol_se


def _guard_comparisons(comparisons: Iterable[Comparison], tol_fom: float, tol_se: float) -> tuple[tuple[Comparison, ...], bool, bool]:
    """Blank the tests whose standard error is zero within rounding.

    A zero difference with a real standard error is a legitimate test (t = 0, p = 1) and is
    kept; a zero standard error leaves either 0/0 (no difference either) or a difference
    divided by rounding residue.
    """
    out = []
    zero_diff = zero_var = False
    for c in comparisons:
        if _zero_se(c, tol_se) and abs(c.estimate) <= tol_fom:
            out.append(_blank_comparison(c, 0.0))
            zero_diff = True
        elif _zero_se(c, tol_se):
            out.append(_blank_comparison(c))
            zero_var = True
        else:
            out.append(c)
    return tuple(out), zero_diff, zero_var


def _guard_analysis(res: AnalysisResult, identical: bool, tol_fom: float, tol_se: float) -> AnalysisResult:
    diffs, zd, zv = _guard_comparisons(res.differences, tol_fom, tol_se)
    per_reader, zd_r, zv_r = _guard_comparisons(res.reader_differences, tol_fom, tol_se)
    if not (zd or zv or zd_r or zv_r):
        return res
    notes = list(res.warnings)
    changes: dict = {"differences": diffs, "reader_differences": per_reader}
    all_zero_se = bool(res.differences) and all(_zero_se(c, tol_se) for c in res.differences)
    if all_zero_se and (identical or all(abs(c.estimate) <= tol_fom for c in res.differences)):
        notes.append(f"{res.analysis}: " + NO_DIFFERENCE.format(tol=tol_fom) + ".")
        changes.update(statistic=math.nan, p_value=math.nan)
    elif all_zero_se:
        notes.append(f"{res.analysis}: " + NO_VARIANCE.format(tol=tol_se) + ".")
        changes.update(statistic=math.nan, p_value=math.nan)
    elif zd or zv:
        notes.append(f"{res.analysis}: some treatment differences have a zero standard error (within rounding); their pairwise tests are not given.")
    if zd_r or zv_r:
        notes.append(
            f"{res.analysis}: for some readers the treatments' difference has a zero "
            "standard error (within rounding); those single-reader tests are not given."
        )
    changes["warnings"] = tuple(dict.fromkeys(notes))
    return replace(res, **changes)


def guard_degenerate(result: SignificanceResult) -> SignificanceResult:
    """``result`` with every p-value that comes from rounding noise replaced by NaN and a reason.

    See the module docstring for the two situations and the tolerances.  Results on ordinary
    data are returned unchanged (the same object).
    """
    foms = np.asarray(result.foms, dtype=float)
    scale = _scale(foms)
    tol_fom, tol_se = FOM_TOLERANCE * scale, SE_TOLERANCE * scale
    identical = identical_treatments(foms, tol_fom)
    analyses = {}
    changed = False
    for name, res in result.analyses.items():
        new = _guard_analysis(res, identical, tol_fom, tol_se)
        changed = changed or new is not res
        analyses[name] = new
    if not changed:
        return result
    notes = list(result.warnings)
    for res in analyses.values():
        for w in res.warnings:
            if w not in notes:
                notes.append(w)
    return replace(result, analyses=analyses, warnings=tuple(notes))
