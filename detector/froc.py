"""Lesion-level scoring of a stand-alone detector: hits, FROC curve, sensitivity at FP rates, wAFROC.

Hit rule
--------
A candidate **hits** a truth lesion when its centre (centroid, LPS mm) lies inside the lesion's
extent grown by ``margin_mm`` — the platform's one hit rule, ``cases.HitRule("extent",
margin_mm=...)`` (see :mod:`cases.truth`), which the reader study's scoring also uses: inside or
within ``margin_mm`` of one of the lesion's voxels when the lesion has a label map, else within
``radius_mm + margin_mm`` of its centre. A lesion's rating is the
highest rating (peak ``|score|``) of the candidates that hit it; a candidate that hits two merged
lesions counts for both. A candidate that hits no lesion is a **non-lesion localisation** (false
positive). Extra candidates on an already-hit lesion are neither (multiple detections of one
lesion are counted once).

Curves and figures
------------------
* FROC: for every rating threshold ``t``, the lesion localisation fraction ``LLF(t)`` (lesions
  rated >= t / all lesions) against the non-lesion localisations per case ``NLF(t)`` (NL marks
  rated >= t / all cases, normal and abnormal).
* Sensitivity at ``f`` false positives per case: the highest ``LLF`` among thresholds with
  ``NLF <= f`` (0 when even the strictest threshold exceeds ``f``).
* wAFROC figure of merit (Chakraborty): computed by :func:`analysis.fom_matrix` from the same
  marks, with lesion weights equal within a case unless the case list gives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cases import HitRule, TruthLesion

from .candidates import CandidateSet

__all__ = ["TruthLesion", "CaseMarks", "match_candidates", "froc_curve", "sensitivity_at", "DetectionScore", "score_detector", "wafroc_scores"]


@dataclass(frozen=True)
class CaseMarks:
    """The scored marks of one case: ratings of non-lesion localisations and of each lesion."""

    case_id: str
    nl_ratings: tuple[float, ...]
    ll_ratings: dict[str, float | None]
    abnormal: bool


def match_candidates(case_id: str, candidates: CandidateSet | Iterable[Any], lesions: Sequence[TruthLesion], *, margin_mm: float = 3.0) -> CaseMarks:
    """Sort one case's candidates into lesion localisations and non-lesion localisations.

    Parameters
    ----------
    case_id : the case.
    candidates : its candidates (rating = ``peak_abs_score``, position = ``center_mm``).
    lesions : its truth lesions (empty for a normal case).
    margin_mm : how far outside a lesion's extent a centre may lie and still hit it.
    """
    rule = HitRule("extent", margin_mm=margin_mm)
    ll: dict[str, float | None] = {les.lesion_id: None for les in lesions}
    nl: list[float] = []
    for cand in candidates:
        rating = float(cand.peak_abs_score)
        hit = [les for les in lesions if rule.hits(les, cand.center_mm)]
        if not hit:
            nl.append(rating)
            continue
        for les in hit:
            prev = ll[les.lesion_id]
            if prev is None or rating > prev:
                ll[les.lesion_id] = rating
    return CaseMarks(case_id, tuple(sorted(nl, reverse=True)), ll, bool(lesions))


def froc_curve(marks: Sequence[CaseMarks], lesion_filter: Mapping[str, set[str]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical FROC operating points.

    Parameters
    ----------
    marks : one :class:`CaseMarks` per case (normal cases included: they count for NLF).
    lesion_filter : case_id -> lesion IDs to count (a subgroup); None: all lesions.

    Returns
    -------
    nlf, llf, thresholds : arrays of the same length, starting at the strictest operating point
        ``(0, 0)`` (threshold +inf) and adding one point per distinct rating, decreasing.
    """
    n_cases = len(marks)
    nl = np.asarray([r for m in marks for r in m.nl_ratings], dtype=float)
    ll = []
    n_lesions = 0
    for m in marks:
        for lid, r in m.ll_ratings.items():
            if lesion_filter is not None and lid not in lesion_filter.get(m.case_id, set()):
                continue
            n_lesions += 1
            if r is not None:
                ll.append(r)
    ll_arr = np.asarray(ll, dtype=float)
    thresholds = np.unique(np.concatenate([nl, ll_arr]))[::-1]
    nlf = [0.0]
    llf = [0.0]
    for t in thresholds:
        nlf.append(float(np.count_nonzero(nl >= t)) / max(n_cases, 1))
        llf.append(float(np.count_nonzero(ll_arr >= t)) / n_lesions if n_lesions else float("nan"))
    return np.asarray(nlf), np.asarray(llf), np.concatenate([[np.inf], thresholds])


def sensitivity_at(nlf: np.ndarray, llf: np.ndarray, fp_per_case: float) -> float:
    """Highest lesion sensitivity among FROC points with at most ``fp_per_case`` NL per case."""
    ok = nlf <= fp_per_case + 1e-12
    if not ok.any():
        return 0.0
    vals = llf[ok]
    return float(np.nanmax(vals)) if np.isfinite(vals).any() else float("nan")


@dataclass(frozen=True)
class DetectionScore:
    """Stand-alone detection performance of one method on one case set.

    Attributes
    ----------
    method : method name.
    n_cases, n_normal_cases, n_lesions : counts.
    sensitivity : fp_per_case -> sensitivity (e.g. {0.5: ..., 1.0: ..., 3.0: ...}).
    wafroc : wAFROC figure of merit (via :mod:`analysis`); NaN without normal cases.
    calibration_frac_abs_gt3 : fraction of unchanged bone voxels with ``|score| > 3`` (0.0027 for a
        calibrated Gaussian z); NaN when not measured.
    froc : ``{"nlf": [...], "llf": [...], "thresholds": [...]}``.
    subgroups : ``{"lesion_type": {...}, "location": {...}, "size": {...}}``; each entry
        ``{"n_lesions": n, "sensitivity": {fp: sens}}``.
    max_nlf : NL marks per case at the most lenient threshold (how far the curve reaches).
    """

    method: str
    n_cases: int
    n_normal_cases: int
    n_lesions: int
    sensitivity: dict[float, float]
    wafroc: float
    calibration_frac_abs_gt3: float
    froc: dict[str, list[float]]
    subgroups: dict[str, dict[str, dict[str, Any]]]
    max_nlf: float
    wafroc_ci: tuple[float, float] | None = None
    operating_point: dict[str, Any] | None = None
    operating_curve: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None if not (isinstance(v, float) and v == math.inf) else "inf"
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        out = {
            "method": self.method,
            "n_cases": self.n_cases,
            "n_normal_cases": self.n_normal_cases,
            "n_lesions": self.n_lesions,
            "wafroc": self.wafroc,
            "calibration_frac_abs_gt3": self.calibration_frac_abs_gt3,
            "max_nl_per_case": self.max_nlf,
            "froc": self.froc,
            "subgroups": self.subgroups,
            "wafroc_ci95": None if self.wafroc_ci is None else list(self.wafroc_ci),
            "operating_point": self.operating_point,
            "operating_curve": list(self.operating_curve),
        }
        for fp, s in self.sensitivity.items():
            out[f"sensitivity_at_{fp:g}_fp"] = s
        return clean(out)

    def summary(self) -> str:
        sens = ", ".join(f"{s:.2f} at {fp:g} FP/case" for fp, s in self.sensitivity.items())
        cal = f"; |score| > 3 in {100 * self.calibration_frac_abs_gt3:.2f} % of normal bone" if math.isfinite(self.calibration_frac_abs_gt3) else ""
        return f"{self.method}: sensitivity {sens}; wAFROC {self.wafroc:.3f}{cal} ({self.n_lesions} lesions, {self.n_cases} cases)"


def wafroc_scores(marks_by_method: Mapping[str, Sequence[CaseMarks]], weights: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, float]:
    """wAFROC figure of merit of each method, through :func:`analysis.fom_matrix`.

    Parameters
    ----------
    marks_by_method : method -> marks of every case (same cases and lesions for all methods).
    weights : case_id -> lesion_id -> weight (None: equal within a case).

    Returns
    -------
    method -> wAFROC (NaN when the case set has no normal or no abnormal case).
    """
    from analysis import fom_matrix

    methods = list(marks_by_method)
    if not methods:
        return {}
    first = marks_by_method[methods[0]]
    if not any(m.abnormal for m in first) or all(m.abnormal for m in first):
        return {m: float("nan") for m in methods}
    data = _observer_data(marks_by_method, weights)
    foms = fom_matrix(data, "wAFROC")
    return {method: float(foms[i, 0]) for i, method in enumerate(methods)}


def wafroc_with_ci(
    marks_by_method: Mapping[str, Sequence[CaseMarks]], weights: Mapping[str, Mapping[str, float]] | None = None, alpha: float = 0.05
) -> dict[str, tuple[float, float, float]]:
    """wAFROC of each method with a ``1 - alpha`` confidence interval (case-deletion jackknife).

    The standard error is the jackknife's, ``sqrt((K - 1) / K * sum_k (theta_(k) - mean)^2)``
    over the K cases (:func:`analysis.fom.jackknife_fom_matrix`), and the interval
    ``theta -/+ z_{1 - alpha/2} se``, clipped to [0, 1]. Cases are the only random factor here
    (one stand-alone "reader").

    Returns
    -------
    method -> (wAFROC, lower, upper); NaNs when the FOM is undefined.
    """
    from statistics import NormalDist

    from analysis.fom import fom_and_jackknife

    methods = list(marks_by_method)
    point = wafroc_scores(marks_by_method, weights)
    if not methods or any(not math.isfinite(v) for v in point.values()):
        return {m: (point.get(m, float("nan")), float("nan"), float("nan")) for m in methods}
    data = _observer_data(marks_by_method, weights)
    theta, jk = fom_and_jackknife(data, "wAFROC")
    zq = NormalDist().inv_cdf(1 - alpha / 2)
    out = {}
    for i, m in enumerate(methods):
        v = jk[i, 0]
        v = v[np.isfinite(v)]
        k = v.size
        se = math.sqrt((k - 1) / k * float(np.sum((v - v.mean()) ** 2))) if k > 1 else float("nan")
        t = float(theta[i, 0])
        out[m] = (t, max(0.0, t - zq * se), min(1.0, t + zq * se))
    return out


def wafroc_difference_ci(
    marks_by_method: Mapping[str, Sequence[CaseMarks]], a: str, b: str, weights: Mapping[str, Mapping[str, float]] | None = None, alpha: float = 0.05
) -> tuple[float, float, float]:
    """wAFROC of method ``a`` minus method ``b`` on the same cases, with a ``1 - alpha`` interval (paired case-deletion jackknife).

    The jackknife runs on the difference, so what the two methods share case by case cancels;
    an interval that excludes 0 says one method is better on cases like these (cases the only
    random factor). Returns (difference, lower, upper); NaNs when undefined.
    """
    from statistics import NormalDist

    from analysis.fom import fom_and_jackknife

    pair = {a: marks_by_method[a], b: marks_by_method[b]}
    if any(not math.isfinite(v) for v in wafroc_scores(pair, weights).values()):
        return (float("nan"),) * 3
    theta, jk = fom_and_jackknife(_observer_data(pair, weights), "wAFROC")
    d = jk[0, 0] - jk[1, 0]
    d = d[np.isfinite(d)]
    k = d.size
    se = math.sqrt((k - 1) / k * float(np.sum((d - d.mean()) ** 2))) if k > 1 else float("nan")
    diff = float(theta[0, 0] - theta[1, 0])
    zq = NormalDist().inv_cdf(1 - alpha / 2)
    return diff, diff - zq * se, diff + zq * se


def _observer_data(marks_by_method: Mapping[str, Sequence[CaseMarks]], weights: Mapping[str, Mapping[str, float]] | None):  # type: ignore[no-untyped-def]
    """The stand-alone detector as one-reader FROC data (one treatment per method), for the FOMs above."""
    import pandas as pd

    from analysis import ObserverData

    methods = list(marks_by_method)
    first = marks_by_method[methods[0]]
    truth = []
    for m in first:
        if m.abnormal:
            for lid in m.ll_ratings:
                row: dict[str, Any] = {"case_id": m.case_id, "lesion_id": lid}
                if weights is not None and m.case_id in weights and lid in weights[m.case_id]:
                    row["weight"] = float(weights[m.case_id][lid])
                truth.append(row)
        else:
            truth.append({"case_id": m.case_id, "lesion_id": None})
    nl_rows, ll_rows = [], []
    for method in methods:
        for m in marks_by_method[method]:
            for r in m.nl_ratings:
                nl_rows.append({"treatment": method, "reader": "detector", "case_id": m.case_id, "rating": float(r)})
            for lid, r in m.ll_ratings.items():
                if r is not None:
                    ll_rows.append({"treatment": method, "reader": "detector", "case_id": m.case_id, "lesion_id": lid, "rating": float(r)})
    return ObserverData.from_marks(
        pd.DataFrame(truth),
        pd.DataFrame(nl_rows, columns=["treatment", "reader", "case_id", "rating"]),
        pd.DataFrame(ll_rows, columns=["treatment", "reader", "case_id", "lesion_id", "rating"]),
        paradigm="FROC",
        treatments=methods,
        readers=["detector"],
        name="stand-alone detector",
    )


def operating_point(
    marks: Sequence[CaseMarks], lesions: Mapping[str, Sequence[TruthLesion]], threshold: float | Mapping[str, float], *, min_diameter_mm: float = 5.0
) -> dict[str, Any]:
    """False positives per case and sensitivity of the candidates rated at least ``threshold``.

    ``threshold`` is one number, or one per case (case_id -> threshold: e.g. the network's
    operating point where it ran and the analytic model's where it fell back).

    Returns ``{"threshold", "fp_per_case", "fp_per_normal_case", "max_fp_in_a_case",
    "sensitivity", "sensitivity_ge_<d>mm", "n_lesions_ge_<d>mm"}``.
    """
    n = max(1, len(marks))

    def thr(case_id: str) -> float:
        return float(threshold[case_id]) if isinstance(threshold, Mapping) else float(threshold)

    fps = [sum(1 for r in m.nl_ratings if r >= thr(m.case_id)) for m in marks]
    normal = [f for f, m in zip(fps, marks) if not m.abnormal]
    hits, total, big_hits, big_total = 0, 0, 0, 0
    for m in marks:
        sizes = {les.lesion_id: les.diameter_mm for les in lesions.get(m.case_id, [])}
        for lid, r in m.ll_ratings.items():
            total += 1
            hit = r is not None and r >= thr(m.case_id)
            hits += hit
            d = sizes.get(lid)
            if d is not None and d >= min_diameter_mm:
                big_total += 1
                big_hits += hit
    key = f"{min_diameter_mm:g}mm"
    return {
        "threshold": sorted(set(float(v) for v in threshold.values())) if isinstance(threshold, Mapping) else float(threshold),
        "fp_per_case": sum(fps) / n,
        "fp_per_normal_case": (sum(normal) / len(normal)) if normal else None,
        "max_fp_in_a_case": max(fps) if fps else 0,
        "sensitivity": hits / total if total else None,
        f"sensitivity_ge_{key}": big_hits / big_total if big_total else None,
        f"n_lesions_ge_{key}": big_total,
    }


def score_detector(
    method: str,
    marks: Sequence[CaseMarks],
    lesions: Mapping[str, Sequence[TruthLesion]],
    *,
    fp_rates: Sequence[float] = (0.5, 1.0, 3.0),
    wafroc: float = float("nan"),
    calibration_frac_abs_gt3: float = float("nan"),
    size_edges_mm: Sequence[float] = (5.0, 10.0),
) -> DetectionScore:
    """FROC curve, sensitivities at FP rates and subgroup sensitivities of one method.

    Parameters
    ----------
    method : its name.
    marks : one :class:`CaseMarks` per case.
    lesions : case_id -> truth lesions (for the subgroups: type, location, size).
    fp_rates : false positives per case at which sensitivity is reported.
    wafroc, calibration_frac_abs_gt3 : computed elsewhere (:func:`wafroc_scores`), stored here.
    size_edges_mm : equivalent-diameter bin edges of the size subgroups, mm.
    """
    nlf, llf, thr = froc_curve(marks)
    sens = {float(f): sensitivity_at(nlf, llf, f) for f in fp_rates}
    groups: dict[str, dict[str, set[str]]] = {"lesion_type": {}, "location": {}, "size": {}}
    edges = list(size_edges_mm)

    def size_label(d: float | None) -> str:
        if d is None:
            return "unknown"
        lo = 0.0
        for e in edges:
            if d < e:
                return f"{lo:g}-{e:g} mm" if lo > 0 else f"< {e:g} mm"
            lo = e
        return f">= {edges[-1]:g} mm"

    for cid, lst in lesions.items():
        for les in lst:
            for key, value in (
                ("lesion_type", les.lesion_type or "unknown"),
                ("location", les.location or "unknown"),
                ("size", size_label(les.diameter_mm)),
            ):
                groups[key].setdefault(value, {}).setdefault(cid, set()).add(les.lesion_id)  # type: ignore[arg-type]
    # cumulative "diameter >= 5 mm" group (the target population)
    if edges:
        big = {}
        for cid, lst in lesions.items():
            ids = {les.lesion_id for les in lst if les.diameter_mm is not None and les.diameter_mm >= edges[0]}
            if ids:
                big[cid] = ids
        groups["size"][f">= {edges[0]:g} mm (all)"] = big  # type: ignore[assignment]
    subgroups: dict[str, dict[str, dict[str, Any]]] = {}
    for key, values in groups.items():
        subgroups[key] = {}
        for value, filt in sorted(values.items()):
            n = sum(len(v) for v in filt.values())
            g_nlf, g_llf, _ = froc_curve(marks, filt)  # type: ignore[arg-type]
            subgroups[key][value] = {"n_lesions": n, "sensitivity": {f"{f:g}": sensitivity_at(g_nlf, g_llf, f) for f in fp_rates}}
    n_normal = sum(1 for m in marks if not m.abnormal)
    n_lesions = sum(len(m.ll_ratings) for m in marks)
    return DetectionScore(
        method=method,
        n_cases=len(marks),
        n_normal_cases=n_normal,
        n_lesions=n_lesions,
        sensitivity=sens,
        wafroc=float(wafroc),
        calibration_frac_abs_gt3=float(calibration_frac_abs_gt3),
        froc={"nlf": nlf.tolist(), "llf": llf.tolist(), "thresholds": [float(t) for t in thr]},
        subgroups=subgroups,
        max_nlf=float(nlf[-1]) if nlf.size else 0.0,
    )
