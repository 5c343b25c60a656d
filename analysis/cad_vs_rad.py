"""Stand-alone CAD (the detector) against radiologists: RJafroc's ``StCadVsRad``.

The detector is treated as one more "reader" of the same cases in a single treatment, and each
radiologist's figure of merit is compared with the detector's through the difference

    psi_j = theta_j - theta_CAD        (j = 1..J radiologists; RAD - CAD, as RJafroc)

(Chakraborty, *Observer Performance Methods for Diagnostic Imaging*, CRC Press 2017, chapter
"Standalone CAD vs. radiologists"; RJafrocFrocBook chapter of the same name).  The null
hypothesis is that the radiologists' mean FOM equals the detector's: ``E[mean psi] = 0``.

``1T-RRFC`` (random readers, fixed cases; the analysis of Hupse et al. 2013)
    A one-sample t test of the ``psi_j``: ``varR`` = sample variance of ``psi_j`` (= of the
    radiologists' FOMs), ``SE = sqrt(varR / J)``, ``t = mean(psi) / SE`` on ``J - 1`` df.

``1T-RRRC`` (random readers and cases; Hillis 2007, section 5.3, single-treatment OR model)
    ``psi_j = Delta + R_j + eps_j`` with ``Var(eps_j) = Var`` (``varError``) and
    ``Cov(eps_j, eps_j') = Cov2`` (``cov2``), both from the jackknife of ``psi`` (deleting one
    case at a time from CAD and radiologists alike, scaled ``(K-1)/K sum(.)(.)``).
    ``MSden = varR + J max(Cov2, 0)``, ``SE = sqrt(MSden / J)``, ``t = mean(psi) / SE`` on
    Hillis' ``df = MSden^2 / (varR^2 / (J - 1))``.

Both report the CI of the mean difference and of the radiologists' mean FOM (RJafroc's interval:
``avgRadFom`` plus/minus the half-width of the difference's CI, the detector's FOM being the
fixed reference of the single-treatment model), and ``FStat = t^2`` on (1, df).  Result names follow RJafroc (``fomCAD, fomRAD, avgRadFom, avgDiffFom,
ciAvgDiffFom, ciAvgRadFom, varR, varError, cov2, tstat, df, pval``).

Checked against the values Chakraborty publishes for datasetCadLroc (PCL at FPF = 0.05, 0.2, 1)
and dataset09 (Wilcoxon) in the RJafrocFrocBook chapter (``tests/analysis/test_cad_vs_rad.py``).

Degenerate data get NaN with the reason in ``notes`` (never a p value from rounding noise):
a zero denominator (radiologists and detector identical on every jackknife sample), fewer than
two radiologists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # pandas is imported where the marks are read, not at import time
    import pandas as pd

from analysis.data import ObserverData, ObserverDataError, _id_str
from analysis.lroc import (
    LROC_FOMS,
    LrocData,
    lroc_fom_matrix,
    lroc_jackknife_fom_matrix,
)

__all__ = [
    "CAD_METHODS",
    "CadVsRadResult",
    "cad_vs_rad",
    "st_cad_vs_rad",
    "add_cad_reader",
    "cad_marks_from_case_marks",
    "read_cad_marks",
]

CAD_METHODS = ("1T-RRRC", "1T-RRFC")
"""Analyses offered (RJafroc's ``method`` names).  RJafroc's ``2T-RRRC`` gives the same F,
df and p as ``1T-RRRC`` with meaningless intermediate quantities and is not offered."""

# Below this relative size a denominator is treated as zero (floating-point noise).
_NOISE = 1e-12

StudyData = Union[ObserverData, LrocData]


@dataclass(frozen=True)
class CadVsRadResult:
    """Result of a stand-alone CAD vs. radiologists analysis (RJafroc's names in ``to_dict``).

    Attributes
    ----------
    method : {"1T-RRRC", "1T-RRFC"}
    fom : str
        Figure of merit; ``fpf`` is where PCL/ALROC were evaluated (LROC only, else None).
    treatment : str
        The single treatment analysed.
    cad_reader : str
        ID of the detector's "reader".
    readers : tuple of str
        The radiologists, in the order of ``fom_rad``.
    fom_cad : float
        ``fomCAD``.
    fom_rad : ndarray of shape (J,)
        ``fomRAD``.
    avg_rad_fom, avg_diff_fom : float
        ``avgRadFom`` and ``avgDiffFom`` (= RAD - CAD).
    ci_avg_diff_fom, ci_avg_rad_fom : (float, float)
        ``(1 - alpha)`` confidence intervals.
    var_r, var_error, cov2 : float
        ``varR``, ``varError``, ``cov2`` (the last two NaN for 1T-RRFC).
    se : float
        Standard error of ``avg_diff_fom``.
    tstat, df, pval : float
        t statistic, its degrees of freedom, two-sided p value.
    alpha : float
    n_cases : int
        Cases in the jackknife (the FOM's case set).
    notes : tuple of str
        Why a number is NaN, and other remarks.
    """

    method: str
    fom: str
    fpf: float | None
    treatment: str
    cad_reader: str
    readers: tuple[str, ...]
    fom_cad: float
    fom_rad: np.ndarray
    avg_rad_fom: float
    avg_diff_fom: float
    ci_avg_diff_fom: tuple[float, float]
    ci_avg_rad_fom: tuple[float, float]
    var_r: float
    var_error: float
    cov2: float
    se: float
    tstat: float
    df: float
    pval: float
    alpha: float
    n_cases: int
    notes: tuple[str, ...] = field(default=())

    @property
    def fstat(self) -> float:
        """``FStat = tstat^2`` on (1, df)."""
        return self.tstat**2

    @property
    def significant(self) -> bool | None:
        """True/False at ``alpha``; None when the p value is undefined."""
        return None if math.isnan(self.pval) else bool(self.pval < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary with RJafroc's names (NaN -> None)."""

        def f(x: Any) -> Any:
            if isinstance(x, (tuple, list, np.ndarray)):
                return [f(v) for v in x]
            if isinstance(x, (float, np.floating)):
                return float(x) if math.isfinite(float(x)) else None
            return x

        return {
            "analysis": "StCadVsRad",
            "backend": "python",
            "method": self.method,
            "FOM": self.fom,
            "FPFValue": self.fpf,
            "alpha": self.alpha,
            "treatment": self.treatment,
            "cadReader": self.cad_reader,
            "readers": list(self.readers),
            "fomCAD": f(self.fom_cad),
            "fomRAD": f(self.fom_rad),
            "avgRadFom": f(self.avg_rad_fom),
            "avgDiffFom": f(self.avg_diff_fom),
            "ciAvgDiffFom": f(self.ci_avg_diff_fom),
            "ciAvgRadFom": f(self.ci_avg_rad_fom),
            "varR": f(self.var_r),
            "varError": f(self.var_error),
            "cov2": f(self.cov2),
            "stdErr": f(self.se),
            "tstat": f(self.tstat),
            "FStat": f(self.fstat),
            "ndf": 1,
            "df": f(self.df),
            "pval": f(self.pval),
            "nCases": self.n_cases,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """Plain-language summary for a report."""
        level = f"{100 * (1 - self.alpha):g}%"
        lo, hi = self.ci_avg_diff_fom
        fpf = f" at FPF {self.fpf:g}" if self.fpf is not None else ""
        lines = [
            f"Stand-alone detector ({self.cad_reader}) vs {len(self.readers)} radiologists, "
            f"{self.fom}{fpf}, {self.method} (treatment {self.treatment}, {self.n_cases} cases)",
            f"  detector FOM {self.fom_cad:.4f}; radiologists' mean {self.avg_rad_fom:.4f} "
            f"(range {np.min(self.fom_rad):.4f}-{np.max(self.fom_rad):.4f})",
            f"  radiologists - detector: {self.avg_diff_fom:+.4f}, {level} CI ({lo:+.4f}, {hi:+.4f})",
        ]
        if math.isnan(self.pval):
            lines.append("  no test: " + "; ".join(self.notes))
        else:
            p = f"{self.pval:.2e}" if self.pval < 1e-4 else f"{self.pval:.4f}"
            verdict = (
                ("the radiologists are better than the detector" if self.avg_diff_fom > 0 else "the detector is better than the radiologists")
                if self.significant
                else "no significant difference"
            )
            lines.append(f"  t = {self.tstat:.3f} on {self.df:.2f} df, p = {p}: {verdict} at alpha = {self.alpha:g}")
            lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# statistics from FOMs and jackknife FOMs
# ----------------------------------------------------------------------------------------------


def _jk_cov(jk: np.ndarray) -> np.ndarray:
    """(K-1)/K sum_k (x - mean)(y - mean) over the last axis; jk has shape (J, K)."""
    k = jk.shape[1]
    x = jk - jk.mean(axis=1, keepdims=True)
    return (x @ x.T) * ((k - 1) / k)


def _var_cov2(cov: np.ndarray) -> tuple[float, float]:
    j = cov.shape[0]
    var = float(np.mean(np.diag(cov)))
    cov2 = float((cov.sum() - np.trace(cov)) / (j * (j - 1))) if j > 1 else math.nan
    return var, cov2


def _t_parts(
    mean: float, ms_den: float, var_r: float, n_r: int, rrrc: bool, alpha: float, scale: float, notes: list[str]
) -> tuple[float, float, float, float, tuple[float, float]]:
    """(se, t, df, p, ci) of a mean from the single-treatment (OR) denominator."""
    from analysis.stats._distributions import t_quantile, t_two_sided_p

    if rrrc:
        df = math.inf if var_r <= _NOISE * scale**2 else ms_den**2 / (var_r**2 / (n_r - 1))
    else:
        df = float(n_r - 1)
    if not (ms_den > _NOISE * scale**2):
        notes.append(
            "the variance of the mean difference is zero (within floating-point noise): "
            + (
                "the radiologist-minus-detector differences vary neither between readers nor over case samples"
                if rrrc
                else "every radiologist differs from the detector by the same amount"
            )
            + ", so no test is possible"
        )
        return 0.0, math.nan, df, math.nan, (mean, mean)
    se = math.sqrt(ms_den / n_r)
    t = mean / se
    q = t_quantile(1 - alpha / 2, df)
    return se, t, df, t_two_sided_p(t, df), (mean - q * se, mean + q * se)


def cad_vs_rad(
    fom_cad: float,
    fom_rad: Sequence[float],
    jk_cad: Sequence[float] | None = None,
    jk_rad: np.ndarray | None = None,
    *,
    method: str = "1T-RRRC",
    alpha: float = 0.05,
    fom: str = "FOM",
    fpf: float | None = None,
    treatment: str = "1",
    cad_reader: str = "CAD",
    readers: Sequence[str] | None = None,
    n_cases: int | None = None,
) -> CadVsRadResult:
    """1T-RRRC / 1T-RRFC analysis from the FOMs (and, for 1T-RRRC, the jackknife FOMs).

    Parameters
    ----------
    fom_cad : float
        The detector's FOM.
    fom_rad : sequence of float, length J >= 2
        The radiologists' FOMs.
    jk_cad : sequence of float, length K, optional
        The detector's FOM with case k deleted (needed for 1T-RRRC).
    jk_rad : array of shape (J, K), optional
        The radiologists' FOMs with case k deleted (same cases, same order).
    method : {"1T-RRRC", "1T-RRFC"}
    alpha : float
        Significance level; CIs are ``1 - alpha``.
    fom, fpf, treatment, cad_reader, readers, n_cases
        Labels stored in the result.

    Returns
    -------
    CadVsRadResult
    """
    if method not in CAD_METHODS:
        raise ObserverDataError(f"method must be one of {CAD_METHODS}; got {method!r}.")
    if not (0 < float(alpha) < 1):
        raise ObserverDataError(f"alpha must be in (0, 1); got {alpha!r}.")
    rad = np.asarray(fom_rad, dtype=float).ravel()
    n_r = rad.size
    if n_r < 2:
        raise ObserverDataError(f"comparing the detector with radiologists needs at least 2 radiologists besides the detector; got {n_r}.")
    cad = float(fom_cad)
    if not (np.all(np.isfinite(rad)) and math.isfinite(cad)):
        raise ObserverDataError("a figure of merit is NaN; check that the data define the FOM.")
    readers = tuple(readers) if readers is not None else tuple(str(j + 1) for j in range(n_r))
    psi = rad - cad
    avg_diff = float(psi.mean())
    avg_rad = float(rad.mean())
    var_r = float(np.var(psi, ddof=1))
    scale = max(1.0, float(np.max(np.abs(rad))), abs(cad))
    notes: list[str] = []
    rrrc = method == "1T-RRRC"
    if rrrc:
        if jk_cad is None or jk_rad is None:
            raise ObserverDataError("1T-RRRC needs the jackknife FOMs of the detector and radiologists.")
        jc = np.asarray(jk_cad, dtype=float).ravel()
        jr = np.asarray(jk_rad, dtype=float)
        if jr.shape != (n_r, jc.size):
            raise ObserverDataError(f"jk_rad must have shape (J, K) = ({n_r}, {jc.size}); got {jr.shape}.")
        if jc.size < 2:
            raise ObserverDataError("the jackknife needs at least 2 cases.")
        if not (np.all(np.isfinite(jc)) and np.all(np.isfinite(jr))):
            raise ObserverDataError(
                "a jackknife FOM is NaN (deleting one case leaves the FOM undefined, e.g. the "
                "only normal or abnormal case); 1T-RRRC needs at least 2 cases of each kind."
            )
        n_cases = n_cases if n_cases is not None else jc.size
        var_error, cov2 = _var_cov2(_jk_cov(jr - jc[None, :]))
        ms_den = var_r + n_r * max(cov2, 0.0)
    else:
        var_error = cov2 = math.nan
        ms_den = var_r
    se, t, df, p, ci = _t_parts(avg_diff, ms_den, var_r, n_r, rrrc, alpha, scale, notes)
    # RJafroc's interval for the radiologists' mean uses the same SE and df as the difference
    # (the detector's FOM is a constant in the 1T model): avgRadFom -/+ (half-width of the CI).
    half = (ci[1] - ci[0]) / 2.0
    ci_rad = (avg_rad - half, avg_rad + half)
    if rrrc and cov2 < 0:
        notes.append(f"cov2 = {cov2:.3g} < 0 was truncated at 0 in the denominator (Hillis)")
    return CadVsRadResult(
        method=method,
        fom=fom,
        fpf=fpf,
        treatment=str(treatment),
        cad_reader=str(cad_reader),
        readers=readers,
        fom_cad=cad,
        fom_rad=rad,
        avg_rad_fom=avg_rad,
        avg_diff_fom=avg_diff,
        ci_avg_diff_fom=ci,
        ci_avg_rad_fom=ci_rad,
        var_r=var_r,
        var_error=var_error,
        cov2=cov2,
        se=se,
        tstat=t,
        df=df,
        pval=p,
        alpha=float(alpha),
        n_cases=int(n_cases or 0),
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------------------------
# from a study
# ----------------------------------------------------------------------------------------------


def _default_fom(data: StudyData) -> str:
    if isinstance(data, LrocData):
        return "PCL"
    return "Wilcoxon" if data.paradigm == "ROC" else "wAFROC"


def st_cad_vs_rad(
    data: StudyData,
    fom: str | None = None,
    *,
    cad_reader: str | None = None,
    method: str = "1T-RRRC",
    fpf: float = 0.2,
    alpha: float = 0.05,
    treatment: str | None = None,
) -> CadVsRadResult:
    """Stand-alone detector vs. radiologists on one study (RJafroc ``StCadVsRad``).

    Parameters
    ----------
    data : ObserverData or LrocData
        ROC, FROC or LROC study in which the detector is one of the readers.
    fom : str, optional
        ROC: ``Wilcoxon`` (default).  FROC: any FOM of :data:`analysis.FOMS` valid for the data
        (default ``wAFROC``).  LROC: ``PCL`` (default), ``ALROC`` or ``Wilcoxon``.
    cad_reader : str, optional
        Reader ID of the detector.  Default: the first reader, RJafroc's convention.
    method : {"1T-RRRC", "1T-RRFC"}
    fpf : float, default 0.2
        RJafroc's ``FPFValue`` for PCL and ALROC.
    alpha : float, default 0.05
    treatment : str, optional
        The treatment to analyse; required when the study has more than one.

    Returns
    -------
    CadVsRadResult
    """
    fom = fom or _default_fom(data)
    if treatment is None:
        if data.n_treatments != 1:
            raise ObserverDataError(
                f"the study has {data.n_treatments} treatments {list(data.treatments)}; the "
                "detector is compared with the radiologists within one treatment: choose it "
                "(treatment=... / --treatment)."
            )
        treatment = data.treatments[0]
    treatment = str(treatment)
    if treatment not in data.treatments:
        raise ObserverDataError(f"unknown treatment {treatment!r}; the study has {list(data.treatments)}.")
    cad_reader = str(cad_reader) if cad_reader is not None else data.readers[0]
    if cad_reader not in data.readers:
        raise ObserverDataError(f"the detector's reader ID {cad_reader!r} is not in the study; readers are {list(data.readers)}.")
    rads = tuple(r for r in data.readers if r != cad_reader)
    order = (cad_reader,) + rads
    if isinstance(data, LrocData):
        sub = data.select(treatments=[treatment], readers=order)
        theta = lroc_fom_matrix(sub, fom, fpf)[0]
        jk = lroc_jackknife_fom_matrix(sub, fom, fpf)[0] if method == "1T-RRRC" else None
        fpf_out: float | None = float(fpf) if fom in ("PCL", "ALROC") else None
        n_used = sub.n_cases
    else:
        from analysis.fom import check_fom, fom_and_jackknife, fom_case_ids, fom_matrix

        if fom in LROC_FOMS and fom != "Wilcoxon":
            raise ObserverDataError(f"{fom} is defined for LROC data only; this study is {data.paradigm}.")
        sub = data.select_treatments([treatment]).select_readers(list(order))
        check_fom(sub, fom)
        if method == "1T-RRRC":
            th, jk3 = fom_and_jackknife(sub, fom)
            theta, jk = th[0], jk3[0]
        else:
            theta, jk = fom_matrix(sub, fom)[0], None
        fpf_out = None
        n_used = len(fom_case_ids(sub, fom))
    return cad_vs_rad(
        theta[0],
        theta[1:],
        None if jk is None else jk[0],
        None if jk is None else jk[1:],
        method=method,
        alpha=alpha,
        fom=fom,
        fpf=fpf_out,
        treatment=treatment,
        cad_reader=cad_reader,
        readers=rads,
        n_cases=n_used,
    )


# ----------------------------------------------------------------------------------------------
# the detector's marks as a reader
# ----------------------------------------------------------------------------------------------


def cad_marks_from_case_marks(case_marks: Sequence[Any]) -> pd.DataFrame:
    """Detector marks (``detector.froc.CaseMarks``) as the CAD marks table.

    Returns a DataFrame with columns ``case_id, lesion_id, rating``: one row per
    non-lesion localisation (``lesion_id`` empty) and per hit lesion (its highest rating).
    """
    import pandas as pd

    rows = []
    for m in case_marks:
        for r in m.nl_ratings:
            rows.append({"case_id": str(m.case_id), "lesion_id": None, "rating": float(r)})
        for lid, r in m.ll_ratings.items():
            if r is not None:
                rows.append({"case_id": str(m.case_id), "lesion_id": str(lid), "rating": float(r)})
    return pd.DataFrame(rows, columns=["case_id", "lesion_id", "rating"])


def read_cad_marks(path: str) -> pd.DataFrame:
    """Read the detector's marks from a CSV file (see ``docs/analysis-methods.md``).

    Columns (case-insensitive): ``case_id``, ``rating`` and optional ``lesion_id`` (empty for a
    mark that hit no lesion).  Any other columns are ignored (so ``tsct detect`` candidate
    tables with a matched ``lesion_id`` column can be given directly).
    """
    import pandas as pd

    from analysis.data import Problem

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ObserverDataError(Problem(f"cannot be read as CSV ({exc}).", file=str(path))) from exc
    cols = {c.strip().lower().replace(" ", "_"): c for c in df.columns}
    missing = [c for c in ("case_id", "rating") if c not in cols]
    if missing:
        raise ObserverDataError(
            Problem(
                f"the CAD marks file needs columns case_id and rating (and lesion_id for a hit); "
                f"missing {missing}; the header has {list(df.columns)}.",
                file=str(path),
                row=1,
            )
        )
    out = pd.DataFrame(
        {
            "case_id": df[cols["case_id"]].str.strip(),
            "lesion_id": df[cols["lesion_id"]].str.strip() if "lesion_id" in cols else "",
            "rating": df[cols["rating"]].str.strip(),
        }
    )
    problems = []
    ratings = []
    for n, (c, r) in enumerate(zip(out["case_id"], out["rating"]), start=2):
        try:
            x = float(r)
            if math.isnan(x) or x == math.inf:
                raise ValueError
        except ValueError:
            problems.append(Problem(f"rating {r!r} is not a number.", file=str(path), row=n, column=cols["rating"]))
            x = math.nan
        if not c:
            problems.append(Problem("the case_id is empty.", file=str(path), row=n, column=cols["case_id"]))
        ratings.append(x)
    if problems:
        raise ObserverDataError(problems)
    out["rating"] = ratings
    out["lesion_id"] = ["" if v.lower() in ("", "nan", "none", "0") else v for v in out["lesion_id"]]
    return out


def _normalise_marks(marks: pd.DataFrame) -> pd.DataFrame:
    """case_id as str, lesion_id as str ("" = no lesion; None/NaN/empty in), rating as float."""
    import pandas as pd

    for col in ("case_id", "rating"):
        if col not in marks.columns:
            raise ObserverDataError(f"the detector marks need a {col!r} column.")
    lids = marks["lesion_id"] if "lesion_id" in marks.columns else [None] * len(marks)

    def lesion(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
            return ""
        return _id_str(v)

    return pd.DataFrame(
        {
            "case_id": [_id_str(c) for c in marks["case_id"]],
            "lesion_id": [lesion(v) for v in lids],
            "rating": marks["rating"].astype(float).to_numpy(),
        }
    )


def add_cad_reader(
    data: StudyData,
    marks: pd.DataFrame,
    *,
    reader_id: str = "CAD",
) -> StudyData:
    """The study with the detector added as the first reader, in every treatment.

    Parameters
    ----------
    data : ObserverData or LrocData
        The radiologists' study.
    marks : DataFrame
        ``case_id, lesion_id, rating`` (:func:`read_cad_marks`,
        :func:`cad_marks_from_case_marks`).  How the marks become ratings:

        * **FROC**: each row is a mark; ``lesion_id`` empty = non-lesion localisation, else a
          lesion localisation (the highest rating per lesion is kept).
        * **ROC**: a case's rating is the highest rating of its marks (``-inf``, below every
          rating, when the detector marked nothing on the case).
        * **LROC**: a case's rating is its highest-rated mark; on an abnormal case it is a
          correct localization when that mark hit the lesion (``lesion_id`` set).

    reader_id : str, default "CAD"
        The detector's reader ID (must not clash with a radiologist's).

    Returns
    -------
    ObserverData or LrocData
        Same type as ``data``, readers ``(reader_id, *data.readers)``.
    """

    from analysis.data import Problem

    reader_id = str(reader_id)
    marks = _normalise_marks(marks)
    if reader_id in data.readers:
        raise ObserverDataError(f"reader ID {reader_id!r} of the detector is already a reader of the study; choose another (--cad-reader).")
    cases = set(data.case_ids)
    unknown = sorted(set(marks["case_id"]) - cases)
    if unknown:
        raise ObserverDataError(
            Problem(
                f"the detector marks name {len(unknown)} case(s) that are not in the study, e.g. {unknown[:5]}; give marks on the study's cases only."
            )
        )
    n_i = data.n_treatments
    if isinstance(data, LrocData):
        k1 = data.n_normal
        fp = np.full(k1, -np.inf)
        cl = np.full(data.n_abnormal, -np.inf)
        il = np.full(data.n_abnormal, -np.inf)
        ni = {c: i for i, c in enumerate(data.normal_cases)}
        ai = {c: i for i, c in enumerate(data.abnormal_cases)}
        on_normal = [c for c, lid in zip(marks["case_id"], marks["lesion_id"]) if lid and c in ni]
        if on_normal:
            raise ObserverDataError(
                Problem(
                    f"{len(on_normal)} detector mark(s) give a lesion_id on a normal case, e.g. case "
                    f"{on_normal[0]!r}; a normal case has no lesion: leave lesion_id empty."
                )
            )
        bad = [(c, lid) for c, lid in zip(marks["case_id"], marks["lesion_id"]) if lid and c in ai and lid != "1"]
        if bad:
            raise ObserverDataError(Problem(f"LROC cases have one lesion, ID 1; detector mark on case {bad[0][0]!r} names lesion {bad[0][1]!r}."))
        best = marks.sort_values("rating", ascending=False, kind="stable").drop_duplicates("case_id")
        for c, lid, r in zip(best["case_id"], best["lesion_id"], best["rating"]):
            if c in ni:
                fp[ni[c]] = r
            elif lid:
                cl[ai[c]] = r
            else:
                il[ai[c]] = r

        def stack(own: np.ndarray, x: np.ndarray) -> np.ndarray:
            return np.concatenate([np.broadcast_to(x, (n_i, 1, x.size)), own], axis=1)

        return LrocData(
            data.treatments,
            (reader_id,) + data.readers,
            data.normal_cases,
            data.abnormal_cases,
            stack(data.fp, fp),
            stack(data.cl, cl),
            stack(data.il, il),
            data.name,
        )

    if data.paradigm == "ROC":
        k1 = data.n_normal
        case_max = marks.groupby("case_id")["rating"].max().to_dict()
        nl_new = np.full((data.n_cases, 1), -np.inf)
        ll_new = np.full((data.n_abnormal, 1), -np.inf)
        for k, c in enumerate(data.case_ids):
            if c in case_max:
                if k < k1:
                    nl_new[k, 0] = case_max[c]
                else:
                    ll_new[k - k1, 0] = case_max[c]
        max_nl = data.max_nl
    else:
        lesion_index = {(c, les.id): (k2, l) for k2, (c, case) in enumerate(zip(data.abnormal_cases, data.lesions)) for l, les in enumerate(case)}
        bad = [(c, lid) for c, lid in zip(marks["case_id"], marks["lesion_id"]) if lid and (c, lid) not in lesion_index]
        if bad:
            raise ObserverDataError(
                Problem(
                    f"{len(bad)} detector mark(s) name a lesion that the case does not have, e.g. "
                    f"case {bad[0][0]!r} lesion {bad[0][1]!r}; leave lesion_id empty for a mark "
                    "that hit no lesion."
                )
            )
        case_index = {c: k for k, c in enumerate(data.case_ids)}
        ll_new = np.full((data.n_abnormal, data.max_ll), -np.inf)
        nl_lists: dict[int, list[float]] = {}
        for c, lid, r in zip(marks["case_id"], marks["lesion_id"], marks["rating"]):
            if not lid:
                nl_lists.setdefault(case_index[c], []).append(float(r))
            else:
                k2, l = lesion_index[(c, str(lid))]
                ll_new[k2, l] = max(ll_new[k2, l], float(r))
        max_nl = max([data.max_nl] + [len(v) for v in nl_lists.values()])
        nl_new = np.full((data.n_cases, max_nl), -np.inf)
        for k, v in nl_lists.items():
            nl_new[k, : len(v)] = sorted(v, reverse=True)
    nl_old = np.full((n_i, data.n_readers, data.n_cases, max_nl), -np.inf)
    nl_old[..., : data.max_nl] = data.nl
    nl = np.concatenate([np.broadcast_to(nl_new, (n_i, 1) + nl_new.shape), nl_old], axis=1)
    ll = np.concatenate([np.broadcast_to(ll_new, (n_i, 1) + ll_new.shape), data.ll], axis=1)
    groups = dict(data.reader_groups)
    if groups:
        groups[reader_id] = "detector"
    return ObserverData(
        treatments=data.treatments,
        readers=(reader_id,) + data.readers,
        normal_cases=data.normal_cases,
        abnormal_cases=data.abnormal_cases,
        lesions=data.lesions,
        nl=nl,
        ll=ll,
        paradigm=data.paradigm,
        reader_groups=groups,
        name=data.name,
    )
