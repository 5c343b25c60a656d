"""LROC (localization ROC) data: one rating and one location per case.

In the LROC paradigm (Starr et al. 1975; Swensson 1996) the reader gives every case one rating
(confidence that it is abnormal) and marks the single most suspicious location.  On an abnormal
case (one lesion) the mark is a **correct localization** (CL) when it falls on the lesion and an
**incorrect localization** (IL) otherwise.  :class:`LrocData` stores, in RJafroc's layout
(``NL``, ``LL``, ``LL_IL``):

* ``fp[i, j, k1]`` -- rating of normal case ``k1`` (RJafroc ``NL[i, j, k1, 1]``);
* ``cl[i, j, k2]`` -- rating of abnormal case ``k2`` when the mark was a correct localization
  (RJafroc ``LL``), ``-inf`` otherwise;
* ``il[i, j, k2]`` -- rating when the mark was an incorrect localization (RJafroc ``LL_IL``),
  ``-inf`` otherwise.

``-inf`` means "no rating".  (RJafroc's own datasetCadLroc stores 0, not ``-inf``, in the slot
that was not used; such a 0 is an ordinary rating here, exactly as in RJafroc.)

Figures of merit (RJafroc 2.1.3 ``UtilFigureOfMerit`` names)
-----------------------------------------------------------
The empirical LROC curve plots PCL, the probability of correct localization, against FPF.  Its
operating points come from every distinct finite rating ``z`` of the normal cases and of the
correct localizations, taken as a cut-off: ``FPF(z) = #{normal ratings > z} / K1`` and
``PCL(z) = #{CL ratings > z} / K2``; ordered from the strictest cut-off (the point (0, 0)) to the
laxest (the lowest rating, which itself is not counted).  The curve therefore need not reach
FPF = 1; beyond its last point it is taken as flat.  (RJafroc's published PCL at FPF = 1 of
datasetCadLroc, 0.675 for CAD and 0.783 for the radiologists' mean, follow from exactly this.)

* ``PCL`` at ``FPF = x``: linear interpolation between the last point with ``FPF < x`` and the
  first point with ``FPF >= x`` (so on a vertical segment at exactly ``x`` the lowest PCL is
  taken, as RJafroc does).  Beyond the last point the curve is flat.
* ``ALROC`` at ``x``: the trapezoidal area under the LROC curve from ``FPF = 0`` to ``x``.
* ``Wilcoxon``: the empirical ROC AUC of the LROC data converted to ROC (:meth:`LrocData.to_roc`,
  RJafroc ``DfLroc2Roc``): an abnormal case's ROC rating is ``max(CL, IL)``.

These reproduce RJafroc's published values: PCL at FPF = 0.2 of the nine radiologists and CAD of
datasetCadLroc (Chakraborty, *RJafrocFrocBook*, chapter "Standalone CAD vs. radiologists",
appendix) and PCL/ALROC/Wilcoxon of RJafroc's toy file ``lroc.xlsx`` (tests in
``tests/analysis/test_lroc.py``).

The jackknife (:func:`lroc_jackknife_fom_matrix`) deletes one case at a time (normal cases
first, then abnormal cases), as RJafroc does for these FOMs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis._shape import StudyShape
from analysis.data import ObserverData, ObserverDataError, _id_str, _normalise_study_ids

__all__ = [
    "LROC_FOMS",
    "LrocData",
    "lroc_operating_points",
    "pcl_at",
    "alroc_at",
    "lroc_fom_matrix",
    "lroc_jackknife_fom_matrix",
    "lroc_to_roc",
    "lroc_significance_test",
]

LROC_FOMS: tuple[str, ...] = ("PCL", "ALROC", "Wilcoxon")
"""Figures of merit defined for LROC data (RJafroc's names)."""


def _ratings(a: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.array(a, dtype=float, copy=True)
    if arr.shape != shape:
        raise ObserverDataError(f"{what} must have shape {shape}; got {arr.shape}.")
    bad = np.isnan(arr) | (arr == np.inf)
    if bad.any():
        idx = tuple(int(x) for x in np.argwhere(bad)[0])
        raise ObserverDataError(
            f"{what} contains {int(bad.sum())} NaN or +inf ratings (first at index {idx}); use -inf for 'no rating' and finite numbers otherwise."
        )
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class LrocData(StudyShape):
    """An LROC observer study (fully crossed: every reader rates every case in every treatment).

    Parameters
    ----------
    treatments, readers : sequence of str
        Treatment (modality) and reader IDs.
    normal_cases, abnormal_cases : sequence of str
        Case IDs; at least one of each (PCL needs both).
    fp : array-like of shape (I, J, K1)
        Rating of each normal case (``-inf``: not rated).
    cl : array-like of shape (I, J, K2)
        Rating of each abnormal case whose mark was a correct localization, else ``-inf``.
    il : array-like of shape (I, J, K2)
        Rating of each abnormal case whose mark was an incorrect localization, else ``-inf``.
    name : str
        Study name for reports.
    """

    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    normal_cases: tuple[str, ...]
    abnormal_cases: tuple[str, ...]
    fp: np.ndarray
    cl: np.ndarray
    il: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _normalise_study_ids(self)
        if not self.treatments or not self.readers:
            raise ObserverDataError("An LROC study needs at least one treatment and one reader.")
        if not self.normal_cases or not self.abnormal_cases:
            raise ObserverDataError(
                f"An LROC study needs normal and abnormal cases; got {len(self.normal_cases)} "
                f"normal and {len(self.abnormal_cases)} abnormal. PCL and ALROC are defined "
                "only with both."
            )
        n_i, n_j = len(self.treatments), len(self.readers)
        k1, k2 = len(self.normal_cases), len(self.abnormal_cases)
        set_(self, "fp", _ratings(self.fp, (n_i, n_j, k1), "fp"))
        set_(self, "cl", _ratings(self.cl, (n_i, n_j, k2), "cl"))
        set_(self, "il", _ratings(self.il, (n_i, n_j, k2), "il"))

    # ------------------------------------------------------------------ sizes: StudyShape
    @property
    def paradigm(self) -> str:
        """Always ``"LROC"``."""
        return "LROC"

    def __repr__(self) -> str:
        return (
            f"LrocData(name={self.name!r}, treatments={list(self.treatments)}, "
            f"readers={list(self.readers)}, K1={self.n_normal}, K2={self.n_abnormal})"
        )

    def summary(self) -> str:
        """A short human-readable description."""
        n_cl = int(np.isfinite(self.cl).sum())
        n_il = int(np.isfinite(self.il).sum())
        return "\n".join(
            [
                f"LROC study {self.name!r} (fully crossed)",
                f"  treatments ({self.n_treatments}): {', '.join(self.treatments)}",
                f"  readers ({self.n_readers}): {', '.join(self.readers)}",
                f"  cases: {self.n_cases} ({self.n_normal} normal, {self.n_abnormal} abnormal)",
                f"  abnormal-case marks: {n_cl} correct, {n_il} incorrect localizations",
            ]
        )

    # ------------------------------------------------------------------ selection / conversion
    def select(self, *, treatments: Sequence[str] | None = None, readers: Sequence[str] | None = None) -> LrocData:
        """The study restricted to some treatments and/or readers (in the order given)."""
        ti = _indices(self.treatments, treatments, "treatment")
        ri = _indices(self.readers, readers, "reader")
        pick = np.ix_(ti, ri)
        return LrocData(
            treatments=tuple(self.treatments[i] for i in ti),
            readers=tuple(self.readers[j] for j in ri),
            normal_cases=self.normal_cases,
            abnormal_cases=self.abnormal_cases,
            fp=self.fp[pick],
            cl=self.cl[pick],
            il=self.il[pick],
            name=self.name,
        )

    def to_roc(self) -> ObserverData:
        """The highest-rating ROC dataset (RJafroc ``DfLroc2Roc``).

        A normal case keeps its rating; an abnormal case's ROC rating is ``max(CL, IL)``,
        i.e. the rating of the case whatever the location of the mark.
        """
        return ObserverData.from_roc(
            self.fp,
            np.maximum(self.cl, self.il),
            treatments=self.treatments,
            readers=self.readers,
            normal_cases=self.normal_cases,
            abnormal_cases=self.abnormal_cases,
            name=self.name,
        )

    @classmethod
    def from_records(
        cls,
        records: Any,
        *,
        normal_cases: Sequence[str],
        abnormal_cases: Sequence[str],
        treatments: Sequence[str] | None = None,
        readers: Sequence[str] | None = None,
        name: str = "",
    ) -> LrocData:
        """Build a study from one record per (treatment, reader, case).

        Parameters
        ----------
        records : DataFrame or iterable of mappings
            Columns ``treatment``, ``reader``, ``case_id``, ``rating`` and, for abnormal
            cases, ``correct`` (true when the mark localized the lesion).  A missing record
            means "not rated" (``-inf``).
        normal_cases, abnormal_cases : sequence of str
            The truth.
        treatments, readers : sequence of str, optional
            Order of the IDs (default: order of first appearance).
        name : str
            Study name.
        """
        import pandas as pd

        df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
        for col in ("treatment", "reader", "case_id", "rating"):
            if col not in df.columns:
                raise ObserverDataError(f"LROC records need a {col!r} column.")
        t_ids = [_id_str(t) for t in (treatments or dict.fromkeys(df["treatment"]))]
        r_ids = [_id_str(r) for r in (readers or dict.fromkeys(df["reader"]))]
        normal = [_id_str(c) for c in normal_cases]
        abnormal = [_id_str(c) for c in abnormal_cases]
        (ti, ri, ni, ai), (fp, cl, il) = lroc_layout(t_ids, r_ids, normal, abnormal)
        problems: list[str] = []
        for n, rec in enumerate(df.to_dict("records"), start=1):
            t, r, c = (_id_str(rec["treatment"]), _id_str(rec["reader"]), _id_str(rec["case_id"]))
            if t not in ti or r not in ri:
                problems.append(f"record {n}: unknown treatment {t!r} or reader {r!r}.")
                continue
            x = float(rec["rating"])
            if c in ni:
                fp[ti[t], ri[r], ni[c]] = x
            elif c in ai:
                correct = rec.get("correct")
                if correct is None or (isinstance(correct, float) and math.isnan(correct)):
                    problems.append(f"record {n}: abnormal case {c!r} needs 'correct' (was the lesion localized?).")
                    continue
                (cl if bool(correct) else il)[ti[t], ri[r], ai[c]] = x
            else:
                problems.append(f"record {n}: case {c!r} is not in the truth.")
        if problems:
            raise ObserverDataError("; ".join(problems[:20]))
        return cls(tuple(t_ids), tuple(r_ids), tuple(normal), tuple(abnormal), fp, cl, il, name)


def lroc_layout(
    treatments: Sequence[str],
    readers: Sequence[str],
    normal: Sequence[str],
    abnormal: Sequence[str],
) -> tuple[tuple[dict[str, int], ...], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Index of each treatment, reader, normal and abnormal case ID, and the empty ``fp``, ``cl``
    and ``il`` arrays (``-inf`` = not rated) that the LROC readers fill."""
    index = tuple({x: n for n, x in enumerate(ids)} for ids in (treatments, readers, normal, abnormal))
    shape = (len(treatments), len(readers))
    return index, (np.full(shape + (len(normal),), -np.inf), np.full(shape + (len(abnormal),), -np.inf), np.full(shape + (len(abnormal),), -np.inf))


def _indices(ids: tuple[str, ...], wanted: Sequence[str] | None, what: str) -> list[int]:
    if wanted is None:
        return list(range(len(ids)))
    out = []
    for w in wanted:
        w = _id_str(w)
        if w not in ids:
            raise ObserverDataError(f"unknown {what} {w!r}; the study has {list(ids)}.")
        out.append(ids.index(w))
    if not out:
        raise ObserverDataError(f"select at least one {what}.")
    return out


def lroc_to_roc(data: LrocData) -> ObserverData:
    """RJafroc ``DfLroc2Roc``: see :meth:`LrocData.to_roc`."""
    return data.to_roc()


# ----------------------------------------------------------------------------------------------
# operating points and figures of merit
# ----------------------------------------------------------------------------------------------


def lroc_operating_points(normal_ratings: np.ndarray, cl_ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical LROC operating points of one reader in one treatment.

    Parameters
    ----------
    normal_ratings : array of shape (K1,)
        Ratings of the normal cases (``-inf`` = not rated).
    cl_ratings : array of shape (K2,)
        Correct-localization ratings of the abnormal cases (``-inf`` = none).

    Returns
    -------
    fpf, pcl : ndarray
        Non-decreasing, from (0, 0) to the laxest cut-off (see the module docstring).
    """
    nl = np.asarray(normal_ratings, dtype=float)
    cl = np.asarray(cl_ratings, dtype=float)
    k1, k2 = nl.size, cl.size
    if k1 == 0 or k2 == 0:
        raise ObserverDataError("LROC operating points need at least one normal and one abnormal case.")
    nl_f = np.sort(nl[np.isfinite(nl)])
    cl_f = np.sort(cl[np.isfinite(cl)])
    cut = np.unique(np.concatenate([nl_f, cl_f]))[::-1]  # strictest first
    fpf = (nl_f.size - np.searchsorted(nl_f, cut, side="right")) / k1
    pcl = (cl_f.size - np.searchsorted(cl_f, cut, side="right")) / k2
    fpf = np.concatenate([[0.0], fpf])
    pcl = np.concatenate([[0.0], pcl])
    return fpf, pcl


def _check_fpf(fpf: float) -> float:
    x = float(fpf)
    if not (0.0 < x <= 1.0) or math.isnan(x):
        raise ObserverDataError(f"the false-positive fraction for PCL/ALROC must be in (0, 1]; got {fpf!r}.")
    return x


def pcl_at(fpf_points: np.ndarray, pcl_points: np.ndarray, fpf: float) -> float:
    """PCL interpolated at ``fpf`` on an operating-point curve (see the module docstring)."""
    x = _check_fpf(fpf)
    f = np.asarray(fpf_points, dtype=float)
    p = np.asarray(pcl_points, dtype=float)
    i = int(np.searchsorted(f, x, side="left"))  # first index with f >= x
    if i >= f.size:
        return float(p[-1])
    if i == 0:
        return float(p[0])
    f0, f1, p0, p1 = f[i - 1], f[i], p[i - 1], p[i]
    return float(p0 + (x - f0) * (p1 - p0) / (f1 - f0))


def alroc_at(fpf_points: np.ndarray, pcl_points: np.ndarray, fpf: float) -> float:
    """Trapezoidal area under the LROC curve from FPF = 0 to ``fpf``."""
    x = _check_fpf(fpf)
    f = np.asarray(fpf_points, dtype=float)
    p = np.asarray(pcl_points, dtype=float)
    keep = f < x
    ff = np.concatenate([f[keep], [x]])
    pp = np.concatenate([p[keep], [pcl_at(f, p, x)]])
    return float(np.sum(np.diff(ff) * (pp[1:] + pp[:-1]) / 2.0))


def _check_lroc_fom(fom: str) -> None:
    if fom not in LROC_FOMS:
        raise ObserverDataError(f"figure of merit {fom!r} is not defined for LROC data; choose one of {', '.join(LROC_FOMS)} (RJafroc's names).")


def _one(fp: np.ndarray, cl: np.ndarray, roc_ab: np.ndarray, fom: str, fpf: float) -> float:
    if fom == "Wilcoxon":
        a = fp[:, None]
        b = roc_ab[None, :]
        return float(np.mean((a < b) + 0.5 * (a == b)))
    f, p = lroc_operating_points(fp, cl)
    return pcl_at(f, p, fpf) if fom == "PCL" else alroc_at(f, p, fpf)


def lroc_fom_matrix(data: LrocData, fom: str = "PCL", fpf: float = 0.2) -> np.ndarray:
    """Figure of merit of every treatment (row) and reader (column).

    Parameters
    ----------
    data : LrocData
    fom : {"PCL", "ALROC", "Wilcoxon"}
    fpf : float, default 0.2
        Where PCL is read / up to where ALROC is integrated (RJafroc's ``FPFValue``).
    """
    _check_lroc_fom(fom)
    if fom != "Wilcoxon":
        _check_fpf(fpf)
    roc_ab = np.maximum(data.cl, data.il)
    out = np.empty((data.n_treatments, data.n_readers))
    for i in range(data.n_treatments):
        for j in range(data.n_readers):
            out[i, j] = _one(data.fp[i, j], data.cl[i, j], roc_ab[i, j], fom, fpf)
    return out


def lroc_jackknife_fom_matrix(data: LrocData, fom: str = "PCL", fpf: float = 0.2) -> np.ndarray:
    """Leave-one-case-out FOMs, shape (I, J, K): normal cases first, then abnormal cases."""
    _check_lroc_fom(fom)
    if fom != "Wilcoxon":
        _check_fpf(fpf)
    k1, k2 = data.n_normal, data.n_abnormal
    roc_ab = np.maximum(data.cl, data.il)
    out = np.full((data.n_treatments, data.n_readers, k1 + k2), np.nan)
    keep1 = np.ones(k1, dtype=bool)
    keep2 = np.ones(k2, dtype=bool)
    for i in range(data.n_treatments):
        for j in range(data.n_readers):
            fp, cl, ab = data.fp[i, j], data.cl[i, j], roc_ab[i, j]
            if fom == "Wilcoxon":
                a = fp[:, None]
                b = ab[None, :]
                pair = (a < b) + 0.5 * (a == b)
                total = pair.sum()
                with np.errstate(invalid="ignore", divide="ignore"):
                    if k1 > 1:
                        out[i, j, :k1] = (total - pair.sum(axis=1)) / ((k1 - 1) * k2)
                    if k2 > 1:
                        out[i, j, k1:] = (total - pair.sum(axis=0)) / (k1 * (k2 - 1))
                continue
            for k in range(k1):
                if k1 == 1:
                    break
                keep1[k] = False
                out[i, j, k] = _one(fp[keep1], cl, ab, fom, fpf)
                keep1[k] = True
            for k in range(k2):
                if k2 == 1:
                    break
                keep2[k] = False
                out[i, j, k1 + k] = _one(fp, cl[keep2], ab[keep2], fom, fpf)
                keep2[k] = True
    return out


def lroc_significance_test(
    data: LrocData,
    fom: str = "PCL",
    *,
    fpf: float = 0.2,
    analyses: str = "ALL",
    alpha: float = 0.05,
) -> Any:
    """Compare treatments on LROC data: Obuchowski-Rockette with jackknife covariances.

    RJafroc 2.1.3's ``St()`` fails on LROC datasets (its issue #91); the OR analysis needs only
    a FOM matrix and its case-sampling covariance, so it applies unchanged to PCL, ALROC and
    the Wilcoxon AUC of LROC data (Hillis 2007; the jackknife covariance scaled
    ``(K-1)/K sum(.)(.)`` as in RJafroc).  For ``fom="Wilcoxon"`` the result equals
    ``significance_test(data.to_roc(), "Wilcoxon", method="OR")``.

    Parameters
    ----------
    data : LrocData
        At least 2 treatments.
    fom : {"PCL", "ALROC", "Wilcoxon"}
    fpf : float, default 0.2
    analyses : {"ALL", "RRRC", "FRRC", "RRFC"}
    alpha : float, default 0.05

    Returns
    -------
    analysis.results.SignificanceResult
        ``method == "OR"``, ``fom`` labelled e.g. ``"PCL@0.2"``.
    """
    from analysis.stats.covariance import jackknife_covariance
    from analysis.stats.obuchowski_rockette import or_analysis

    if data.n_treatments < 2:
        raise ObserverDataError(
            f"comparing treatments needs at least 2; this LROC study has {data.n_treatments}. "
            "For the detector against radiologists use st_cad_vs_rad / tsct analyze cad-vs-rad."
        )
    theta = lroc_fom_matrix(data, fom, fpf)
    jk = lroc_jackknife_fom_matrix(data, fom, fpf)
    if not np.all(np.isfinite(jk)):
        raise ObserverDataError(
            "deleting one case leaves the FOM undefined (the study needs at least 2 normal and 2 abnormal cases for the jackknife)."
        )
    label = f"{fom}@{float(fpf):g}" if fom in ("PCL", "ALROC") else fom
    return or_analysis(
        theta,
        jackknife_covariance(jk),
        n_cases=data.n_cases,
        treatments=data.treatments,
        readers=data.readers,
        fom=label,
        covariance_method="jackknife",
        analyses=analyses,
        alpha=alpha,
    )
