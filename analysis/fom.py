"""Figures of merit (FOMs) of ROC, FROC and ROI observer studies and their case-deletion jackknife.

Every FOM is computed for each (treatment, reader) pair from an :class:`ObserverData`.  The
definitions follow RJafroc 2.1.3 exactly (Chakraborty 2017, *Observer Performance Methods for
Diagnostic Imaging*, CRC Press), so the numbers agree with RJafroc to rounding; see
``docs/analysis-data.md`` for each formula.

The kernel of all AUC-type FOMs is the comparison

    psi(x, y) = 1 if x < y, 0.5 if x == y, 0 otherwise,

applied to the raw ratings *including* ``-inf`` (no mark): an unmarked lesion against an
unmarked normal case scores 0.5, a marked lesion against an unmarked normal case scores 1.

Implementation
--------------
The AUC-type FOMs are sums of psi over (negative, positive) pairs.  Instead of forming the
pair matrix, :func:`_pair_sums` computes for every negative its row sum and for every positive
its column sum with one sort and two binary searches over all (treatment, reader) blocks at once
(ratings are replaced by global dense ranks and offset by the block index, so the blocks never
mix).  The jackknife then follows by subtraction: deleting a case removes its row (its highest
NL rating as a negative) and its columns (its lesions as positives), adding back the
self-pairs counted twice.  Cost: O(N log N) for N ratings, memory O(N).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from analysis.data import ObserverData, ObserverDataError

if TYPE_CHECKING:  # pandas only for fom_frame: computing FOMs never loads it
    import pandas as pd

__all__ = [
    "FOMS",
    "fom_and_jackknife",
    "fom_frame",
    "fom_matrices",
    "EXPERIMENTAL_FOMS",
    "FomError",
    "fom_matrix",
    "jackknife_fom_matrix",
    "pseudovalues",
    "fom_case_set",
    "fom_case_ids",
    "valid_foms",
    "check_fom",
]

FOMS: tuple[str, ...] = (
    "Wilcoxon",
    "HrAuc",
    "HrSe",
    "HrSp",
    "AFROC",
    "wAFROC",
    "AFROC1",
    "wAFROC1",
    "MaxLLF",
    "MaxNLF",
    "MaxNLFAllCases",
    "ROI",
)
"""FOMs supported for analysis (names exactly as RJafroc's ``FOM`` argument)."""

EXPERIMENTAL_FOMS: tuple[str, ...] = ("FROC",)
"""FOMs that :func:`fom_matrix` computes but that RJafroc's significance tests refuse
(the area under the empirical FROC up to its end point)."""

_FROC_FOMS = frozenset(FOMS) - {"Wilcoxon", "ROI"} | frozenset(EXPERIMENTAL_FOMS)
_K1_ZERO_FOMS = frozenset({"AFROC1", "wAFROC1"})
_NORMAL_ONLY = frozenset({"MaxNLF", "HrSp"})
_ABNORMAL_ONLY = frozenset({"MaxLLF", "HrSe"})


class FomError(ObserverDataError):
    """A figure of merit that is unknown or not defined for the given data."""


# ----------------------------------------------------------------------------------------------
# validity and case sets
# ----------------------------------------------------------------------------------------------


def fom_case_set(fom: str) -> Literal["all", "normal", "abnormal"]:
    """Which cases a FOM depends on, and hence which cases its jackknife deletes.

    Returns ``"normal"`` for MaxNLF and HrSp (they use the normal cases only), ``"abnormal"``
    for MaxLLF and HrSe (abnormal cases only) and ``"all"`` for every other FOM, as RJafroc
    does since its issue #90.  The number of cases in this set is the ``K`` of the jackknife
    and of every standard-error formula of DBM/OR analysis.
    """
    _check_name(fom)
    if fom in _NORMAL_ONLY:
        return "normal"
    if fom in _ABNORMAL_ONLY:
        return "abnormal"
    return "all"


def fom_case_ids(data: ObserverData, fom: str) -> tuple[str, ...]:
    """Case IDs along the last axis of :func:`jackknife_fom_matrix` / :func:`pseudovalues`."""
    case_set = fom_case_set(fom)
    if case_set == "normal":
        return data.normal_cases
    if case_set == "abnormal":
        return data.abnormal_cases
    return data.case_ids


def _check_name(fom: str) -> None:
    if fom not in FOMS and fom not in EXPERIMENTAL_FOMS:
        raise FomError(f"Unknown figure of merit {fom!r}; choose one of {', '.join(FOMS)} (or the experimental {', '.join(EXPERIMENTAL_FOMS)}).")


def check_fom(data: ObserverData, fom: str) -> None:
    """Raise :class:`FomError` unless ``fom`` is defined for ``data`` (RJafroc's rules).

    ROC data: Wilcoxon only.  FROC data: every FOM except Wilcoxon and ROI.  ROI data: ROI
    only (RJafroc's ``UtilFigureOfMerit`` and ``St`` take ``FOM = "ROI"`` for ROI data and
    refuse it for any other).  No normal cases (K1 = 0): AFROC1 and wAFROC1 only (ROI needs
    none: the normal regions of abnormal cases are negatives too).
    """
    _check_name(fom)
    if data.paradigm == "ROI" or fom == "ROI":
        if data.paradigm != "ROI":
            own = "'Wilcoxon' (the ROC AUC)" if data.paradigm == "ROC" else "'wAFROC' or another FROC figure of merit"
            raise FomError(
                f"ROI is the region-of-interest figure of merit (Obuchowski) and needs ROI data, but this study is {data.paradigm}; use {own}."
            )
        if fom != "ROI":
            raise FomError(
                f"{fom} is not defined for ROI (region-of-interest) data; the figure of merit of ROI data is 'ROI' "
                "(Obuchowski's: the probability that a lesion region is rated above a lesion-free region)."
            )
        if not np.isfinite(data.nl).any(axis=(2, 3)).all():
            raise FomError("ROI needs at least one rated lesion-free region per treatment and reader; a reader has none.")
        return
    if data.paradigm == "ROC" and fom != "Wilcoxon":
        raise FomError(
            f"{fom} needs FROC (mark-location) data, but this study is ROC; the ROC figure of merit is 'Wilcoxon' (the empirical ROC AUC)."
        )
    if data.paradigm == "FROC" and fom == "Wilcoxon":
        raise FomError(
            "Wilcoxon is the ROC AUC and needs ROC data, but this study is FROC. Use 'HrAuc' "
            "(the AUC of the highest-rating inferred ROC, identical to Wilcoxon on "
            "data.to_roc()), or convert the data with data.to_roc() first."
        )
    if data.n_normal == 0 and fom not in _K1_ZERO_FOMS:
        raise FomError(
            f"{fom} needs normal (lesion-free) cases, but this study has none; only AFROC1 and "
            "wAFROC1 are defined without normal cases (wAFROC1 is recommended)."
        )


def valid_foms(data: ObserverData) -> tuple[str, ...]:
    """The FOMs of :data:`FOMS` that are defined for ``data``."""
    out = []
    for f in FOMS:
        try:
            check_fom(data, f)
        except FomError:
            continue
        out.append(f)
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# the pairwise kernel
# ----------------------------------------------------------------------------------------------


def _pair_sums(x: np.ndarray, y: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column sums of the weighted psi matrix, for B independent blocks at once.

    Parameters
    ----------
    x : ndarray of shape (B, n)
        Ratings of the negatives (e.g. highest NL rating of each normal case).
    y : ndarray of shape (B, m)
        Ratings of the positives (e.g. each lesion's LL rating).
    v : ndarray of shape (B, n) or (n,)
        Weight of each negative (0 removes it, e.g. padding).
    w : ndarray of shape (B, m) or (m,)
        Weight of each positive (lesion weight, 0 for padding).

    Returns
    -------
    row : ndarray of shape (B, n)
        ``row[b, a] = v[b, a] * sum_c w[b, c] * psi(x[b, a], y[b, c])``.
    col : ndarray of shape (B, m)
        ``col[b, c] = w[b, c] * sum_a v[b, a] * psi(x[b, a], y[b, c])``.
    """
    n_blocks, n = x.shape
    m = y.shape[1]
    v = np.broadcast_to(v, x.shape).astype(float, copy=False)
    w = np.broadcast_to(w, y.shape).astype(float, copy=False)
    if n == 0 or m == 0:
        return np.zeros(x.shape), np.zeros(y.shape)
    # Global dense ranks keep the order (and ties, -inf included) within every block; offset
    # by the block index so that blocks occupy disjoint key ranges.
    _, inv = np.unique(np.concatenate([x.ravel(), y.ravel()]), return_inverse=True)
    stride = np.int64(inv.max() + 1)
    block = np.arange(n_blocks, dtype=np.int64)[:, None] * stride
    kx = (inv[: x.size].reshape(x.shape) + block).ravel()
    ky = (inv[x.size :].reshape(y.shape) + block).ravel()

    # column sums: weighted count of negatives below (and tied with) each positive
    ox = np.argsort(kx, kind="stable")
    cvx = np.concatenate([[0.0], np.cumsum(v.ravel()[ox])])
    skx = kx[ox]
    lo = np.searchsorted(skx, ky, side="left")
    hi = np.searchsorted(skx, ky, side="right")
    start_x = cvx[np.arange(n_blocks) * n]  # cumulative weight before each block (sorted order)
    col = w * (0.5 * (cvx[lo] + cvx[hi]).reshape(n_blocks, m) - start_x[:, None])

    # row sums: weighted count of positives above (and tied with) each negative
    oy = np.argsort(ky, kind="stable")
    cwy = np.concatenate([[0.0], np.cumsum(w.ravel()[oy])])
    sky = ky[oy]
    lo = np.searchsorted(sky, kx, side="left")
    hi = np.searchsorted(sky, kx, side="right")
    end_y = cwy[(np.arange(n_blocks) + 1) * m]  # cumulative weight at the end of each block
    row = v * (end_y[:, None] - 0.5 * (cwy[lo] + cwy[hi]).reshape(n_blocks, n))
    return row, col


# ----------------------------------------------------------------------------------------------
# per-FOM computation (value and, optionally, case-deleted values)
# ----------------------------------------------------------------------------------------------


def _div(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
    """num / den with NaN where den == 0 (a FOM with no cases left is undefined)."""
    num = np.asarray(num, dtype=float)
    den = np.broadcast_to(np.asarray(den, dtype=float), np.broadcast_shapes(np.shape(num), np.shape(den)))
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _compute(data: ObserverData, fom: str, jackknife: bool) -> tuple[np.ndarray, np.ndarray | None]:
    check_fom(data, fom)
    n_i, n_j = data.n_treatments, data.n_readers
    k1, k2, k = data.n_normal, data.n_abnormal, data.n_cases
    b = n_i * n_j
    nl = data.nl.reshape(b, k, data.max_nl)
    ll = data.ll.reshape(b, k2, data.max_ll)
    mask = data.lesion_mask  # (K2, max_ll)
    n_per_case = data.lesions_per_case.astype(float)  # (K2,)
    n_les = float(n_per_case.sum())
    fp = nl.max(axis=2)  # (B, K): highest NL rating per case, -inf if unmarked

    def out(theta: np.ndarray, jk: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        theta = theta.reshape(n_i, n_j)
        return theta, (None if jk is None else jk.reshape(n_i, n_j, -1))

    # ---- counting FOMs
    if fom == "HrSe":
        marked = (np.isfinite(ll).any(axis=2) | np.isfinite(fp[:, k1:])).astype(float)
        s = marked.sum(axis=1)
        theta = s / k2
        return out(theta, _div(s[:, None] - marked, k2 - 1) if jackknife else None)
    if fom == "HrSp":
        marked = np.isfinite(fp[:, :k1]).astype(float)
        s = marked.sum(axis=1)
        theta = 1.0 - s / k1
        return out(theta, 1.0 - _div(s[:, None] - marked, k1 - 1) if jackknife else None)
    if fom == "MaxLLF":
        cnt = np.isfinite(ll).sum(axis=2).astype(float)  # (B, K2)
        s = cnt.sum(axis=1)
        theta = s / n_les
        return out(theta, _div(s[:, None] - cnt, n_les - n_per_case[None, :]) if jackknife else None)
    if fom in ("MaxNLF", "MaxNLFAllCases"):
        cnt = np.isfinite(nl).sum(axis=2).astype(float)  # (B, K)
        if fom == "MaxNLF":
            cnt, kk = cnt[:, :k1], k1
        else:
            kk = k
        s = cnt.sum(axis=1)
        theta = s / kk
        return out(theta, _div(s[:, None] - cnt, kk - 1) if jackknife else None)

    # ---- AUC-type FOMs: sums of psi over (negative, positive) pairs
    if fom in ("Wilcoxon", "HrAuc"):
        # negatives: normal cases' highest NL; positives: abnormal cases' highest mark.
        x = fp[:, :k1]
        y = np.maximum(ll.max(axis=2), fp[:, k1:])  # (B, K2)
        row, col = _pair_sums(x, y, np.ones(k1), np.ones(k2))
        s = row.sum(axis=1)
        theta = s / (k1 * k2)
        if not jackknife:
            return out(theta, None)
        jk = np.concatenate([_div(s[:, None] - row, (k1 - 1) * k2), _div(s[:, None] - col, k1 * (k2 - 1))], axis=1)
        return out(theta, jk)

    if fom in ("AFROC", "wAFROC", "AFROC1", "wAFROC1"):
        weighted = fom.startswith("w")
        all_cases = fom.endswith("1")
        w = data.lesion_weights if weighted else mask.astype(float)  # (K2, max_ll)
        y = ll.reshape(b, -1)
        x = fp if all_cases else fp[:, :k1]
        row, col = _pair_sums(x, y, np.ones(x.shape[1]), w.ravel())
        colcase = col.reshape(b, k2, -1).sum(axis=2)  # (B, K2)
        s = row.sum(axis=1)
        n_neg = k if all_cases else k1
        # positives' normaliser: number of lesions (AFROC*) or of abnormal cases (wAFROC*)
        n_pos = float(k2) if weighted else n_les
        pos_per_case = np.ones(k2) if weighted else n_per_case
        theta = _div(s, n_neg * n_pos)
        if not jackknife:
            return out(theta, None)
        if all_cases:
            # self-pairs: a diseased case's own highest NL against its own lesions
            self_pairs = (
                w[None] * _psi(fp[:, k1:, None], ll)  # (B, K2, max_ll)
            ).sum(axis=2)
            jk_norm = _div(s[:, None] - row[:, :k1], (n_neg - 1) * n_pos)
            jk_abn = _div(
                s[:, None] - row[:, k1:] - colcase + self_pairs,
                (n_neg - 1) * (n_pos - pos_per_case[None, :]),
            )
        else:
            jk_norm = _div(s[:, None] - row, (n_neg - 1) * n_pos)
            jk_abn = _div(s[:, None] - colcase, n_neg * (n_pos - pos_per_case[None, :]))
        return out(theta, np.concatenate([jk_norm, jk_abn], axis=1))

    if fom in ("FROC", "ROI"):
        # Pairs of every finite NL mark (any case) with every lesion (weight 1; -inf if unmarked),
        # across and within cases.  FROC: divided by K x (number of lesions) (the area under the
        # empirical FROC).  ROI (Obuchowski, Lieber & Powell 2000): the NL marks are the rated
        # lesion-free regions and the divisor is (number of them) x (number of lesion regions).
        v = np.isfinite(nl).astype(float)  # (B, K, max_nl)
        row, col = _pair_sums(nl.reshape(b, -1), ll.reshape(b, -1), v.reshape(b, -1), mask.astype(float).ravel())
        rowcase = row.reshape(b, k, -1).sum(axis=2)  # (B, K)
        colcase = col.reshape(b, k2, -1).sum(axis=2)  # (B, K2)
        s = rowcase.sum(axis=1)
        neg_case = v.sum(axis=2) if fom == "ROI" else np.ones((b, k))  # (B, K): negatives counted per case
        n_neg = neg_case.sum(axis=1)  # (B,)
        theta = _div(s, n_neg * n_les)
        if not jackknife:
            return out(theta, None)
        fin = np.isfinite(nl[:, k1:, :, None])  # (B, K2, max_nl, 1)
        self_pairs = np.where(fin & mask[None, :, None, :], _psi(nl[:, k1:, :, None], ll[:, :, None, :]), 0.0).sum(axis=(2, 3))
        jk_norm = _div(s[:, None] - rowcase[:, :k1], (n_neg[:, None] - neg_case[:, :k1]) * n_les)
        jk_abn = _div(
            s[:, None] - rowcase[:, k1:] - colcase + self_pairs,
            (n_neg[:, None] - neg_case[:, k1:]) * (n_les - n_per_case[None, :]),
        )
        return out(theta, np.concatenate([jk_norm, jk_abn], axis=1))

    raise FomError(f"Figure of merit {fom!r} is not implemented.")  # pragma: no cover


def _psi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Element-wise psi(x, y): 1 if x < y, 0.5 if x == y, else 0 (broadcasting)."""
    return (x < y) + 0.5 * (x == y)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def fom_matrix(data: ObserverData, fom: str = "wAFROC") -> np.ndarray:
    """Figure of merit of every (treatment, reader) pair.

    Parameters
    ----------
    data : ObserverData
        The study.
    fom : str, default "wAFROC"
        One of :data:`FOMS` (names as in RJafroc) or :data:`EXPERIMENTAL_FOMS`.

    Returns
    -------
    ndarray of shape (I, J)
        ``out[i, j]`` is the FOM of reader ``data.readers[j]`` in treatment
        ``data.treatments[i]``.

    Raises
    ------
    FomError
        If the FOM is unknown or not defined for the data (see :func:`check_fom`).

    Examples
    --------
    >>> d = ObserverData.from_roc([[[1, 2, 3]]], [[[2, 4]]])
    >>> float(fom_matrix(d, "Wilcoxon")[0, 0])  # 4 pairs ranked correctly, 1 tie, of 6
    0.75
    """
    return _compute(data, fom, jackknife=False)[0]


def jackknife_fom_matrix(data: ObserverData, fom: str = "wAFROC") -> np.ndarray:
    """FOM with each case deleted in turn (the case-deletion jackknife).

    Parameters
    ----------
    data : ObserverData
    fom : str, default "wAFROC"

    Returns
    -------
    ndarray of shape (I, J, K_used)
        ``out[i, j, k]`` is the FOM of (treatment ``i``, reader ``j``) computed without case
        ``k`` of the FOM's case set (:func:`fom_case_set`): the normal cases for MaxNLF/HrSp,
        the abnormal cases for MaxLLF/HrSe, otherwise all cases (normal first).  The case IDs
        are :func:`fom_case_ids`.  Deleting an abnormal case removes its NL marks and its
        lesions.  NaN where deleting the case leaves the FOM undefined (e.g. the only normal
        case).
    """
    return _compute(data, fom, jackknife=True)[1]  # type: ignore[return-value]


def pseudovalues(data: ObserverData, fom: str = "wAFROC") -> np.ndarray:
    """Centred jackknife pseudovalues, as RJafroc's ``UtilPseudoValues``.

    ``PV[i, j, k] = K * theta[i, j] - (K - 1) * theta_(k)[i, j]`` with ``K`` the size of the
    FOM's case set, then centred per (i, j) so that ``PV[i, j, :].mean() == theta[i, j]``
    (``PV += theta - mean(PV)``).  Centring changes nothing for the U-statistic FOMs
    (AUC-type) and matters for HrSe, MaxLLF and the other counting FOMs.

    Returns
    -------
    ndarray of shape (I, J, K_used)
        Case axis as :func:`jackknife_fom_matrix`.
    """
    theta, jk = _compute(data, fom, jackknife=True)
    assert jk is not None
    kk = jk.shape[2]
    pv = kk * theta[:, :, None] - (kk - 1) * jk
    pv += theta[:, :, None] - pv.mean(axis=2, keepdims=True)
    return pv


def fom_and_jackknife(data: ObserverData, fom: str = "wAFROC") -> tuple[np.ndarray, np.ndarray]:
    """Both :func:`fom_matrix` and :func:`jackknife_fom_matrix` in one pass."""
    theta, jk = _compute(data, fom, jackknife=True)
    assert jk is not None
    return theta, jk


def fom_matrices(data: ObserverData, foms: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """FOM matrices for several FOMs (default: every FOM valid for the data)."""
    return {f: fom_matrix(data, f) for f in (foms if foms is not None else valid_foms(data))}


def fom_frame(data: ObserverData, foms: Sequence[str] | None = None) -> pd.DataFrame:
    """FOMs as a tidy table: one row per (fom, treatment, reader), plus reader averages.

    Parameters
    ----------
    data : ObserverData
    foms : sequence of str, optional
        Default: every FOM valid for the data (:func:`valid_foms`).

    Returns
    -------
    DataFrame
        Columns ``fom, treatment, reader, value``; the reader average of each treatment has
        ``reader`` = None.
    """
    import pandas as pd

    rows = []
    for name, matrix in fom_matrices(data, foms).items():
        for i, t in enumerate(data.treatments):
            for j, r in enumerate(data.readers):
                rows.append((name, t, r, float(matrix[i, j])))
            rows.append((name, t, None, float(matrix[i].mean())))
    return pd.DataFrame(rows, columns=["fom", "treatment", "reader", "value"])
