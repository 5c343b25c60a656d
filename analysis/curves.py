"""Empirical operating characteristics (ROC, FROC, AFROC, wAFROC, AFROC1, wAFROC1) for plots.

Each curve is the set of operating points obtained by sweeping a rating threshold ``t`` from
above the highest rating down through every distinct finite rating: a mark "counts" at
threshold ``t`` when its rating is ``>= t``.  Definitions, for one treatment and reader, with
``FP_k`` the highest NL rating on case ``k`` (``-inf`` when unmarked):

========  ==============================================  ============================================
curve     x                                               y
========  ==============================================  ============================================
ROC       FPF = #{normal cases with rating >= t} / K1     TPF = #{abnormal cases with rating >= t} / K2
FROC      NLF = #{NL marks >= t, all cases} / K           LLF = #{LL marks >= t} / L
AFROC     FPF = #{normal cases with FP_k >= t} / K1       LLF = #{LL marks >= t} / L
wAFROC    FPF as AFROC                                    wLLF = sum of weights of lesions with LL >= t / K2
AFROC1    FPF over all K cases (FP_k >= t) / K            LLF as AFROC
wAFROC1   FPF as AFROC1                                   wLLF as wAFROC
========  ==============================================  ============================================

For FROC data the ROC curve is that of the highest-rating inferred ROC data
(:meth:`ObserverData.to_roc`).  Every curve starts at (0, 0).  All curves except FROC end with
the straight segment to (1, 1) that corresponds to the unmarked cases and lesions (threshold
``-inf``); with it, the trapezoidal area under each curve equals the FOM of the same name
(ROC -> Wilcoxon/HrAuc, AFROC, wAFROC, AFROC1, wAFROC1).  The FROC curve ends at its last
operating point (NLF_max, LLF_max) and its area is the experimental ``FROC`` FOM.

Averaging over readers (:func:`average_curve`):

* ``"vertical"`` (default for curves on [0, 1]): at every abscissa where any reader's curve
  has a vertex, the ordinates of the readers' piecewise-linear curves are averaged (where a
  curve rises vertically at that abscissa both its lower and upper ordinates are averaged).
  The area under the averaged curve therefore equals the mean of the readers' areas, i.e. the
  reader-averaged FOM.
* ``"threshold"`` (default for FROC, whose abscissa has no common range): at every threshold
  used by any reader, the mean of the readers' x and of their y.  Meaningful when the readers
  use a common rating scale; equivalent to pooling all readers' marks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.data import ObserverData, ObserverDataError

__all__ = [
    "CURVES",
    "CURVE_AXES",
    "empirical_curve",
    "empirical_curves",
    "average_curve",
    "curve_auc",
]

CURVES = ("ROC", "FROC", "AFROC", "wAFROC", "AFROC1", "wAFROC1")
"""Supported empirical curves."""

CURVE_AXES: dict[str, tuple[str, str]] = {
    "ROC": ("FPF", "TPF"),
    "FROC": ("NLF", "LLF"),
    "AFROC": ("FPF", "LLF"),
    "wAFROC": ("FPF", "wLLF"),
    "AFROC1": ("FPF", "LLF"),
    "wAFROC1": ("FPF", "wLLF"),
}
"""Axis labels (x, y) of each curve."""

_COLUMNS = ["curve", "treatment", "reader", "point", "threshold", "x", "y"]


def _check_kind(data: ObserverData, curve: str) -> None:
    if curve not in CURVES:
        raise ObserverDataError(f"Unknown curve {curve!r}; choose one of {', '.join(CURVES)}.")
    if data.paradigm == "ROC" and curve != "ROC":
        raise ObserverDataError(f"The {curve} curve needs FROC (mark-location) data; this study is ROC, so only the ROC curve is defined.")
    if data.n_normal == 0 and curve in ("ROC", "AFROC", "wAFROC"):
        raise ObserverDataError(f"The {curve} curve needs normal cases and this study has none; use AFROC1 or wAFROC1.")


def _points(
    neg: np.ndarray,
    neg_w: np.ndarray,
    neg_norm: float,
    pos: np.ndarray,
    pos_w: np.ndarray,
    pos_norm: float,
    extend: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Operating points (threshold, x, y) with x(t) = sum(neg_w[neg >= t]) / neg_norm, etc."""
    values = np.concatenate([neg, pos])
    thr = np.unique(values[np.isfinite(values)])[::-1]  # descending finite thresholds

    def frac(scores: np.ndarray, weights: np.ndarray, norm: float) -> np.ndarray:
        order = np.argsort(scores, kind="stable")
        s = scores[order]
        cw = np.concatenate([[0.0], np.cumsum(weights[order])])
        # sum of weights with score >= t  =  total - sum(score < t)
        return (cw[-1] - cw[np.searchsorted(s, thr, side="left")]) / norm

    x = frac(neg, neg_w, neg_norm) if neg.size else np.zeros(thr.size)
    y = frac(pos, pos_w, pos_norm)
    thresholds = np.concatenate([[np.inf], thr])
    xs = np.concatenate([[0.0], x])
    ys = np.concatenate([[0.0], y])
    if extend:
        thresholds = np.append(thresholds, -np.inf)
        xs = np.append(xs, 1.0)
        ys = np.append(ys, 1.0)
    return thresholds, xs, ys


def empirical_curve(data: ObserverData, curve: str, treatment: str, reader: str) -> pd.DataFrame:
    """Operating points of one reader in one treatment (see the module docstring).

    Returns
    -------
    DataFrame
        Columns ``curve, treatment, reader, point, threshold, x, y``; ``point`` numbers the
        points from (0, 0); ``threshold`` is ``+inf`` at (0, 0) and ``-inf`` at the final
        (1, 1) point.  ``frame.attrs`` holds ``x_label``/``y_label``.
    """
    _check_kind(data, curve)
    if treatment not in data.treatments:
        raise ObserverDataError(f"Unknown treatment {treatment!r}; the study has {list(data.treatments)}.")
    if reader not in data.readers:
        raise ObserverDataError(f"Unknown reader {reader!r}; the study has {list(data.readers)}.")
    i, j = data.treatments.index(treatment), data.readers.index(reader)
    k1, k = data.n_normal, data.n_cases
    nl, ll = data.nl[i, j], data.ll[i, j]
    fp = nl.max(axis=1)  # (K,)
    mask = data.lesion_mask
    if curve == "ROC":
        neg = fp[:k1]
        pos = np.maximum(ll.max(axis=1), fp[k1:])
        t, x, y = _points(neg, np.ones(k1), k1, pos, np.ones(pos.size), pos.size, True)
    elif curve == "FROC":
        fin = np.isfinite(nl)
        t, x, y = _points(nl[fin], np.ones(int(fin.sum())), k, ll[mask], np.ones(int(mask.sum())), data.n_lesions, False)
    else:
        weighted = curve.startswith("w")
        neg = fp if curve.endswith("1") else fp[:k1]
        w = data.lesion_weights[mask] if weighted else np.ones(int(mask.sum()))
        t, x, y = _points(neg, np.ones(neg.size), neg.size, ll[mask], w, data.n_abnormal if weighted else data.n_lesions, True)
    frame = pd.DataFrame(
        {
            "curve": curve,
            "treatment": treatment,
            "reader": reader,
            "point": np.arange(t.size),
            "threshold": t,
            "x": x,
            "y": y,
        }
    )
    frame.attrs["x_label"], frame.attrs["y_label"] = CURVE_AXES[curve]
    return frame


def empirical_curves(
    data: ObserverData,
    curve: str = "wAFROC",
    *,
    treatments: Sequence[str] | None = None,
    readers: Sequence[str] | None = None,
    average: str | None = "auto",
) -> pd.DataFrame:
    """Operating points of every (treatment, reader), plus the reader average per treatment.

    Parameters
    ----------
    data : ObserverData
    curve : {"ROC", "FROC", "AFROC", "wAFROC", "AFROC1", "wAFROC1"}
    treatments, readers : sequence of str, optional
        Restrict to these (default all).  The average is over the selected readers.
    average : {"auto", "vertical", "threshold", None}
        How to average over readers (see the module docstring); ``"auto"`` = ``"threshold"`` for
        FROC, ``"vertical"`` otherwise; None = no average rows.

    Returns
    -------
    DataFrame
        Tidy, one row per operating point: ``curve, treatment, reader, point, threshold, x, y,
        average``; average rows have ``reader`` = None and ``average`` = the method, reader rows
        have ``average`` = None.  ``attrs`` holds ``x_label``/``y_label``.
    """
    _check_kind(data, curve)
    treatments = list(treatments) if treatments is not None else list(data.treatments)
    readers = list(readers) if readers is not None else list(data.readers)
    frames = []
    for t in treatments:
        per_reader = [empirical_curve(data, curve, t, r) for r in readers]
        frames.extend(per_reader)
        if average is not None:
            method = ("threshold" if curve == "FROC" else "vertical") if average == "auto" else average
            frames.append(average_curve(per_reader, method=method))
    out = pd.concat(frames, ignore_index=True)
    if "average" not in out.columns:
        out["average"] = None
    out["average"] = out["average"].where(out["average"].notna(), None)
    out.attrs["x_label"], out.attrs["y_label"] = CURVE_AXES[curve]
    return out


def average_curve(curves: Sequence[pd.DataFrame], *, method: str = "vertical") -> pd.DataFrame:
    """Average several readers' curves of one treatment (see the module docstring).

    Parameters
    ----------
    curves : sequence of DataFrame
        Outputs of :func:`empirical_curve` (same curve kind and treatment).
    method : {"vertical", "threshold"}

    Returns
    -------
    DataFrame
        Same columns as :func:`empirical_curve` plus ``average``; ``reader`` is None.
        ``threshold`` is NaN for vertical averaging (no single threshold applies).
    """
    if not curves:
        raise ObserverDataError("average_curve needs at least one curve.")
    kind = curves[0]["curve"].iloc[0]
    treatment = curves[0]["treatment"].iloc[0]
    if method == "vertical":
        if kind == "FROC":
            raise ObserverDataError(
                "Vertical averaging needs a common abscissa range; FROC curves end at different NLF values. Use method='threshold' for FROC curves."
            )
        grid = np.unique(np.concatenate([c["x"].to_numpy() for c in curves]))
        lows, highs = [], []
        for c in curves:
            x, y = c["x"].to_numpy(), c["y"].to_numpy()
            # np.interp picks one side at repeated x; take the min/max of all y at a vertex
            lo = np.interp(grid, x, y)
            hi = lo.copy()
            for n, g in enumerate(grid):
                at = y[x == g]
                if at.size:
                    lo[n], hi[n] = at.min(), at.max()
            lows.append(lo)
            highs.append(hi)
        lo, hi = np.mean(lows, axis=0), np.mean(highs, axis=0)
        xs, ys = [], []
        for g, a, b in zip(grid, lo, hi):
            xs.append(g)
            ys.append(a)
            if b != a:
                xs.append(g)
                ys.append(b)
        thresholds = np.full(len(xs), np.nan)
        xs_a, ys_a = np.array(xs), np.array(ys)
    elif method == "threshold":
        thr = np.unique(np.concatenate([c["threshold"].to_numpy() for c in curves]))[::-1]
        xs_l, ys_l = [], []
        for c in curves:
            t, x, y = (c[col].to_numpy() for col in ("threshold", "x", "y"))
            # value of a step function at threshold s: the point with the smallest t >= s
            order = np.argsort(t)
            idx = np.searchsorted(t[order], thr, side="left")
            idx = np.minimum(idx, t.size - 1)
            xs_l.append(x[order][idx])
            ys_l.append(y[order][idx])
        thresholds, xs_a, ys_a = thr, np.mean(xs_l, axis=0), np.mean(ys_l, axis=0)
    else:
        raise ObserverDataError(f"method must be 'vertical' or 'threshold', got {method!r}.")
    frame = pd.DataFrame(
        {
            "curve": kind,
            "treatment": treatment,
            "reader": None,
            "point": np.arange(xs_a.size),
            "threshold": thresholds,
            "x": xs_a,
            "y": ys_a,
            "average": method,
        }
    )
    frame.attrs["x_label"], frame.attrs["y_label"] = CURVE_AXES[kind]
    return frame


def curve_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Trapezoidal area under each curve in a frame from :func:`empirical_curves`.

    Returns
    -------
    DataFrame
        Columns ``curve, treatment, reader, average, auc`` (one row per curve).  For the
        reader curves the area equals the FOM of the same name (see the module docstring).
    """
    rows = []
    frame = curves.copy()
    if "average" not in frame.columns:
        frame["average"] = None
    keys = ["curve", "treatment", "reader", "average"]
    for key, group in frame.groupby([frame[k].astype(object).where(frame[k].notna(), "") for k in keys], sort=False):
        g = group.sort_values("point")
        x, y = g["x"].to_numpy(), g["y"].to_numpy()
        auc = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
        rows.append(
            {
                "curve": key[0],
                "treatment": key[1],
                "reader": key[2] or None,
                "average": key[3] or None,
                "auc": auc,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, "auc"])
