"""Analysis-of-variance building blocks of the DBM and Obuchowski-Rockette (OR) methods.

All functions work on plain arrays so that they can be checked against published numbers
independently of how the figures of merit were computed.

* :func:`trc_anova` — treatment x reader x case ANOVA of pseudovalues ``Y[i, j, k]`` (DBM,
  Dorfman, Berbaum & Metz 1992), with the per-treatment (reader x case) and per-reader
  (treatment x case) two-way ANOVAs that the single-treatment and single-reader confidence
  intervals use.
* :func:`tr_anova` — treatment x reader ANOVA of the figures of merit ``theta[i, j]`` (OR,
  Obuchowski & Rockette 1995), with the per-treatment reader mean square and the per-reader
  treatment mean square.
* :func:`pseudovalues_from_jackknife` — jackknife pseudovalues, centred as RJafroc does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "TRCAnova",
    "TRAnova",
    "trc_anova",
    "tr_anova",
    "pseudovalues_from_jackknife",
]


@dataclass(frozen=True)
class TRCAnova:
    """Mean squares of a fully crossed treatment x reader x case design, one value per cell.

    Attributes
    ----------
    ss, df, ms : dict of str to float
        Keys ``T, R, C, TR, TC, RC, TRC`` (``ss``/``df`` also ``Total``).
    ms_r_per_treatment, ms_c_per_treatment, ms_rc_per_treatment : ndarray of shape (I,)
        Reader, case and reader x case mean squares of each treatment's own J x K ANOVA.
    ms_t_per_reader, ms_c_per_reader, ms_tc_per_reader : ndarray of shape (J,)
        Treatment, case and treatment x case mean squares of each reader's own I x K ANOVA.
    """

    n_treatments: int
    n_readers: int
    n_cases: int
    ss: dict[str, float]
    df: dict[str, float]
    ms: dict[str, float]
    ms_r_per_treatment: np.ndarray
    ms_c_per_treatment: np.ndarray
    ms_rc_per_treatment: np.ndarray
    ms_t_per_reader: np.ndarray
    ms_c_per_reader: np.ndarray
    ms_tc_per_reader: np.ndarray


@dataclass(frozen=True)
class TRAnova:
    """Treatment x reader ANOVA of figures of merit (one value per cell).

    Attributes
    ----------
    ss, df, ms : dict of str to float
        Keys ``T, R, TR``.
    ms_r_per_treatment : ndarray of shape (I,)
        ``1/(J-1) sum_j (theta_ij - theta_i.)^2``: the reader mean square of each treatment.
    ms_t_per_reader : ndarray of shape (J,)
        ``1/(I-1) sum_i (theta_ij - theta_.j)^2``: the treatment mean square of each reader.
    """

    n_treatments: int
    n_readers: int
    ss: dict[str, float]
    df: dict[str, float]
    ms: dict[str, float]
    ms_r_per_treatment: np.ndarray
    ms_t_per_reader: np.ndarray


def _div(num: float | np.ndarray, den: float) -> float | np.ndarray:
    """Division that yields NaN (not an exception or warning) for a zero denominator (df = 0)."""
    if den == 0:
        return np.full_like(np.asarray(num, dtype=float), np.nan) if np.ndim(num) else float("nan")
    return num / den


def trc_anova(pseudovalues: np.ndarray) -> TRCAnova:
    """Three-way ANOVA of pseudovalues, all factors crossed, one observation per cell.

    Parameters
    ----------
    pseudovalues : array-like of shape (n_treatments, n_readers, n_cases)
        ``Y[i, j, k]``.

    Returns
    -------
    TRCAnova
        Sums of squares, degrees of freedom and mean squares.  Mean squares whose df is zero
        (a single reader or treatment) are NaN.

    Notes
    -----
    ``MS_T = JK/(I-1) sum_i (Y_i.. - Y...)^2``, ``MS_R = IK/(J-1) sum_j (Y_.j. - Y...)^2``,
    ``MS_C = IJ/(K-1) sum_k (Y_..k - Y...)^2``, the two-way interaction mean squares
    ``MS_TR``, ``MS_TC``, ``MS_RC`` with multipliers K, J, I, and the residual ``MS_TRC`` on
    ``(I-1)(J-1)(K-1)`` df (Dorfman, Berbaum & Metz 1992).
    """
    y = np.asarray(pseudovalues, dtype=float)
    if y.ndim != 3:
        raise ValueError(f"pseudovalues must have shape (I, J, K); got shape {y.shape}.")
    n_t, n_r, n_c = y.shape
    grand = y.mean()
    m_t = y.mean(axis=(1, 2))
    m_r = y.mean(axis=(0, 2))
    m_c = y.mean(axis=(0, 1))
    m_tr = y.mean(axis=2)
    m_tc = y.mean(axis=1)
    m_rc = y.mean(axis=0)

    e_t = m_t - grand
    e_r = m_r - grand
    e_c = m_c - grand
    e_tr = m_tr - m_t[:, None] - m_r[None, :] + grand
    e_tc = m_tc - m_t[:, None] - m_c[None, :] + grand
    e_rc = m_rc - m_r[:, None] - m_c[None, :] + grand
    resid = y - m_tr[:, :, None] - m_tc[:, None, :] - m_rc[None, :, :] + m_t[:, None, None] + m_r[None, :, None] + m_c[None, None, :] - grand
    ss = {
        "T": n_r * n_c * float(np.sum(e_t**2)),
        "R": n_t * n_c * float(np.sum(e_r**2)),
        "C": n_t * n_r * float(np.sum(e_c**2)),
        "TR": n_c * float(np.sum(e_tr**2)),
        "TC": n_r * float(np.sum(e_tc**2)),
        "RC": n_t * float(np.sum(e_rc**2)),
        "TRC": float(np.sum(resid**2)),
    }
    ss["Total"] = float(np.sum((y - grand) ** 2))
    df = {
        "T": n_t - 1,
        "R": n_r - 1,
        "C": n_c - 1,
        "TR": (n_t - 1) * (n_r - 1),
        "TC": (n_t - 1) * (n_c - 1),
        "RC": (n_r - 1) * (n_c - 1),
        "TRC": (n_t - 1) * (n_r - 1) * (n_c - 1),
        "Total": n_t * n_r * n_c - 1,
    }
    ms = {k: float(_div(ss[k], df[k])) for k in ("T", "R", "C", "TR", "TC", "RC", "TRC")}

    # Per-treatment two-way (reader x case) ANOVA of Y[i].
    dev_r = m_tr - m_t[:, None]  # (I, J)
    dev_c = m_tc - m_t[:, None]  # (I, K)
    res_i = y - m_tr[:, :, None] - m_tc[:, None, :] + m_t[:, None, None]
    ms_r_i = _div(n_c * np.sum(dev_r**2, axis=1), n_r - 1)
    ms_c_i = _div(n_r * np.sum(dev_c**2, axis=1), n_c - 1)
    ms_rc_i = _div(np.sum(res_i**2, axis=(1, 2)), (n_r - 1) * (n_c - 1))

    # Per-reader two-way (treatment x case) ANOVA of Y[:, j].
    dev_t = m_tr - m_r[None, :]  # (I, J)
    dev_cj = m_rc - m_r[:, None]  # (J, K)
    res_j = y - m_tr[:, :, None] - m_rc[None, :, :] + m_r[None, :, None]
    ms_t_j = _div(n_c * np.sum(dev_t**2, axis=0), n_t - 1)
    ms_c_j = _div(n_t * np.sum(dev_cj**2, axis=1), n_c - 1)
    ms_tc_j = _div(np.sum(res_j**2, axis=(0, 2)), (n_t - 1) * (n_c - 1))

    return TRCAnova(
        n_treatments=n_t,
        n_readers=n_r,
        n_cases=n_c,
        ss=ss,
        df={k: float(v) for k, v in df.items()},
        ms=ms,
        ms_r_per_treatment=np.asarray(ms_r_i, dtype=float),
        ms_c_per_treatment=np.asarray(ms_c_i, dtype=float),
        ms_rc_per_treatment=np.asarray(ms_rc_i, dtype=float),
        ms_t_per_reader=np.asarray(ms_t_j, dtype=float),
        ms_c_per_reader=np.asarray(ms_c_j, dtype=float),
        ms_tc_per_reader=np.asarray(ms_tc_j, dtype=float),
    )


def tr_anova(foms: np.ndarray) -> TRAnova:
    """Two-way treatment x reader ANOVA of the figure-of-merit matrix.

    Parameters
    ----------
    foms : array-like of shape (n_treatments, n_readers)

    Returns
    -------
    TRAnova
        ``MS_T = J/(I-1) sum_i (theta_i. - theta..)^2``, ``MS_R = I/(J-1) sum_j (theta_.j -
        theta..)^2``, ``MS_TR = 1/((I-1)(J-1)) sum_ij (theta_ij - theta_i. - theta_.j +
        theta..)^2`` and the per-treatment / per-reader mean squares.
    """
    theta = np.asarray(foms, dtype=float)
    if theta.ndim != 2:
        raise ValueError(f"foms must have shape (I, J); got shape {theta.shape}.")
    n_t, n_r = theta.shape
    grand = theta.mean()
    m_t = theta.mean(axis=1)
    m_r = theta.mean(axis=0)
    inter = theta - m_t[:, None] - m_r[None, :] + grand
    ss = {
        "T": n_r * float(np.sum((m_t - grand) ** 2)),
        "R": n_t * float(np.sum((m_r - grand) ** 2)),
        "TR": float(np.sum(inter**2)),
    }
    df = {"T": float(n_t - 1), "R": float(n_r - 1), "TR": float((n_t - 1) * (n_r - 1))}
    ms = {k: float(_div(ss[k], df[k])) for k in ss}
    ms_r_i = _div(np.sum((theta - m_t[:, None]) ** 2, axis=1), n_r - 1)
    ms_t_j = _div(np.sum((theta - m_r[None, :]) ** 2, axis=0), n_t - 1)
    return TRAnova(
        n_treatments=n_t,
        n_readers=n_r,
        ss=ss,
        df=df,
        ms=ms,
        ms_r_per_treatment=np.asarray(ms_r_i, dtype=float),
        ms_t_per_reader=np.asarray(ms_t_j, dtype=float),
    )


def pseudovalues_from_jackknife(foms: np.ndarray, jackknife_foms: np.ndarray) -> np.ndarray:
    """Jackknife pseudovalues ``PV_k = K theta - (K-1) theta_(k)``, centred per (i, j).

    Parameters
    ----------
    foms : array-like of shape (I, J)
        Figures of merit on all cases.
    jackknife_foms : array-like of shape (I, J, K)
        ``theta_(k)``: the FOM with case ``k`` deleted.

    Returns
    -------
    ndarray of shape (I, J, K)
        Pseudovalues shifted so that their mean over cases equals ``theta`` for every (i, j)
        (RJafroc's centring: it changes nothing for U-statistic FOMs such as AUCs and makes
        the DBM treatment means equal the FOM means for the others).
    """
    theta = np.asarray(foms, dtype=float)
    jk = np.asarray(jackknife_foms, dtype=float)
    if jk.ndim != 3 or jk.shape[:2] != theta.shape:
        raise ValueError(f"jackknife_foms must have shape (I, J, K) with (I, J) = {theta.shape}; got {jk.shape}.")
    n_c = jk.shape[2]
    pv = n_c * theta[:, :, None] - (n_c - 1) * jk
    pv += (theta - pv.mean(axis=2))[:, :, None]
    return pv
