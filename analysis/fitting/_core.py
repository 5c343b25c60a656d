"""Shared machinery of the ROC curve fits: rating bins, the ordinal likelihood, its optimiser.

Every model fitted here (binormal, contaminated binormal, radiological search model) is an
*ordinal* model for binned ROC ratings.  A latent decision variable ``z`` is compared with
ordered thresholds ``-inf = zeta_0 < zeta_1 < ... < zeta_{R-1} < zeta_R = +inf`` and a case
falls in rating bin ``r`` (0-based, lowest first) when ``zeta_r < z <= zeta_{r+1}``.  A model is
therefore fully described by its two survival functions

    S_n(zeta) = P(rating of a non-diseased case > zeta)   (the FPF at threshold zeta)
    S_a(zeta) = P(rating of a diseased case > zeta)       (the TPF at threshold zeta)

and the bin probabilities are ``p_r = S(zeta_r) - S(zeta_{r+1})`` with ``S(-inf) = 1`` and
``S(+inf) = 0`` (for the RSM the lowest bin also holds the cases without any mark).  The
log-likelihood of the bin counts ``n_r`` (non-diseased) and ``a_r`` (diseased) is the
multinomial ``sum n_r log p^n_r + sum a_r log p^a_r`` (Dorfman & Alf 1969).

This module holds what the models share: turning ratings into bins, the negative
log-likelihood and its analytic gradient, the optimiser (``scipy.optimize.minimize``, L-BFGS-B
with analytic gradients and box bounds), the observed-information Hessian, and the chi-square
goodness of fit with pooled bins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from scipy.special import ndtr, ndtri

__all__ = [
    "MLFit",
    "OrdinalModel",
    "RatingBins",
    "bin_ratings",
    "chi_square_gof",
    "fit_ordinal",
    "numerical_hessian",
]

_TINY = 1e-300
_ZETA_LIMIT = 20.0  # thresholds live in [-20, 20] on the latent (unit-normal) scale


# ----------------------------------------------------------------------------------------------
# rating bins
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingBins:
    """The ratings of one treatment-reader pair as counts per ordered rating bin.

    Attributes
    ----------
    values : tuple of float
        The rating that each bin stands for (lowest first).  For collapsed or re-binned data
        it is the highest rating that falls in the bin.
    fp : ndarray of int, shape (R,)
        Number of non-diseased cases in each bin (false-positive counts).
    tp : ndarray of int, shape (R,)
        Number of diseased cases in each bin (true-positive counts).
    method : str
        How the bins were formed: ``"distinct"`` (one bin per distinct rating, as RJafroc's
        fits use them), ``"runs"`` (runs of adjacent ratings of one truth state collapsed,
        as LABROC does; the maximum-likelihood estimates of the curve parameters and AUC are
        unchanged by it) or ``"binned:N"`` (at most N bins chosen to maximise the empirical
        AUC, as RJafroc's ``DfBinDataset``).
    """

    values: tuple[float, ...]
    fp: np.ndarray
    tp: np.ndarray
    method: str = "distinct"

    @property
    def n_bins(self) -> int:
        """Number of bins ``R``."""
        return int(self.fp.shape[0])

    @property
    def k1(self) -> int:
        """Number of non-diseased cases."""
        return int(self.fp.sum())

    @property
    def k2(self) -> int:
        """Number of diseased cases."""
        return int(self.tp.sum())

    def operating_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Empirical ``(FPF, TPF)`` at the ``R - 1`` thresholds, lowest threshold first.

        The point at threshold ``k`` (1-based) counts the cases rated in bins ``k .. R-1``;
        so the first point is the most lenient one (largest FPF).
        """
        fpf = np.cumsum(self.fp[::-1])[::-1][1:] / max(self.k1, 1)
        tpf = np.cumsum(self.tp[::-1])[::-1][1:] / max(self.k2, 1)
        return fpf.astype(float), tpf.astype(float)

    def empirical_auc(self) -> float:
        """Trapezoidal area under the empirical operating points (the Wilcoxon statistic)."""
        x, y = between_corners(*self.operating_points())
        return float(np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2.0))

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "values": [float(v) if math.isfinite(v) else ("-Infinity" if v < 0 else "Infinity") for v in self.values],
            "fp_counts": [int(v) for v in self.fp],
            "tp_counts": [int(v) for v in self.tp],
        }


def _distinct_bins(fp: np.ndarray, tp: np.ndarray) -> RatingBins:
    values = np.unique(np.concatenate([fp, tp]))
    fpc = np.bincount(np.searchsorted(values, fp), minlength=values.size)
    tpc = np.bincount(np.searchsorted(values, tp), minlength=values.size)
    return RatingBins(tuple(float(v) for v in values), fpc.astype(int), tpc.astype(int), "distinct")


def _collapse_runs(bins: RatingBins) -> RatingBins:
    """Merge adjacent bins that hold cases of only one truth state (the same one).

    For any ordinal model with free thresholds, the profile likelihood of the curve
    parameters is unchanged by this (the threshold between two such bins only splits one
    class's probability mass and can always reproduce the observed split).
    """
    groups: list[list[int]] = []
    kind_prev = None
    for r in range(bins.n_bins):
        f, t = bins.fp[r] > 0, bins.tp[r] > 0
        kind = "n" if (f and not t) else "a" if (t and not f) else None
        if groups and kind is not None and kind == kind_prev:
            groups[-1].append(r)
        else:
            groups.append([r])
        kind_prev = kind
    fp = np.array([bins.fp[g].sum() for g in groups], dtype=int)
    tp = np.array([bins.tp[g].sum() for g in groups], dtype=int)
    values = tuple(bins.values[g[-1]] for g in groups)
    return RatingBins(values, fp, tp, "runs")


def _auc_optimal_bins(bins: RatingBins, n_bins: int) -> RatingBins:
    """At most ``n_bins`` bins whose cutoffs maximise the empirical (trapezoidal) AUC.

    The cutoffs are chosen among the distinct ratings by dynamic programming over the
    empirical operating points (RJafroc's ``DfBinDataset`` rule: the binning that gives the
    reader the largest empirical AUC).  Among equal areas the solution with more bins wins.
    """
    if bins.n_bins <= n_bins:
        return RatingBins(bins.values, bins.fp, bins.tp, f"binned:{n_bins}")
    # points ordered from (1, 1) through the thresholds 1 .. R-1 to (0, 0)
    x, y = between_corners(*bins.operating_points())
    m = x.size
    k_cut = n_bins - 1  # at most this many interior points (cutoffs) are kept

    def trap(i: np.ndarray | int, j: int) -> np.ndarray:
        return (x[i] - x[j]) * (y[i] + y[j]) / 2.0

    best = np.full((k_cut + 1, m), -np.inf)
    back = np.full((k_cut + 1, m), -1, dtype=int)
    best[0, 0] = 0.0
    for c in range(1, k_cut + 1):
        for j in range(1, m - 1):
            cand = best[c - 1, :j] + trap(np.arange(j), j)
            i = int(np.argmax(cand))
            if np.isfinite(cand[i]):
                best[c, j], back[c, j] = cand[i], i
    final_c, final_j, final_area = 0, 0, float(trap(0, m - 1))
    for c in range(1, k_cut + 1):
        tot = best[c, : m - 1] + trap(np.arange(m - 1), m - 1)
        j = int(np.argmax(tot))
        if np.isfinite(tot[j]) and tot[j] >= final_area - 1e-15:
            final_c, final_j, final_area = c, j, float(tot[j])
    kept: list[int] = []
    c, j = final_c, final_j
    while c > 0:
        kept.append(j)
        j = back[c, j]
        c -= 1
    kept.sort()  # operating-point index t (1 .. R-1) = the threshold between bins t-1 and t
    edges = [0] + kept + [bins.n_bins]
    fp = np.array([bins.fp[edges[i] : edges[i + 1]].sum() for i in range(len(edges) - 1)], dtype=int)
    tp = np.array([bins.tp[edges[i] : edges[i + 1]].sum() for i in range(len(edges) - 1)], dtype=int)
    values = tuple(bins.values[edges[i + 1] - 1] for i in range(len(edges) - 1))
    return RatingBins(values, fp, tp, f"binned:{n_bins}")


def bin_ratings(
    fp_ratings: Sequence[float] | np.ndarray,
    tp_ratings: Sequence[float] | np.ndarray,
    binning: str | int = "auto",
    *,
    max_distinct: int = 30,
) -> RatingBins:
    """Turn the ratings of non-diseased and diseased cases into ordered bin counts.

    Parameters
    ----------
    fp_ratings, tp_ratings : array-like of float
        One rating per non-diseased / diseased case; higher = more confident of disease.
        ``-inf`` (no mark) is allowed and is a bin of its own below every finite rating.
    binning : "auto", "distinct", "runs" or int
        ``"distinct"``: one bin per distinct rating (RJafroc's behaviour for its fits).
        ``"runs"``: collapse runs of adjacent bins holding one truth state (LABROC); the ML
        estimates of the curve parameters and the AUC do not change.  An int ``N >= 2``: at most
        ``N`` bins with cutoffs that maximise the empirical AUC (RJafroc's ``DfBinDataset``).
        ``"auto"`` (default): ``"distinct"`` when there are at most ``max_distinct`` distinct
        ratings, else ``"runs"``.
    """
    fp = np.asarray(fp_ratings, dtype=float).reshape(-1)
    tp = np.asarray(tp_ratings, dtype=float).reshape(-1)
    if np.isnan(fp).any() or np.isnan(tp).any() or (fp == np.inf).any() or (tp == np.inf).any():
        raise ValueError("ratings must be finite numbers or -inf (no mark); NaN and +inf are not allowed.")
    bins = _distinct_bins(fp, tp)
    if isinstance(binning, (int, np.integer)) and not isinstance(binning, bool):
        if binning < 2:
            raise ValueError(f"binning must be at least 2 bins, got {binning}.")
        return _auc_optimal_bins(bins, int(binning))
    if binning == "distinct":
        return bins
    if binning == "runs":
        return _collapse_runs(bins)
    if binning == "auto":
        return bins if bins.n_bins <= max_distinct else _collapse_runs(bins)
    raise ValueError(f"binning must be 'auto', 'distinct', 'runs' or a number of bins, not {binning!r}.")


# ----------------------------------------------------------------------------------------------
# models and the likelihood
# ----------------------------------------------------------------------------------------------


class OrdinalModel:
    """A model for binned ROC ratings: its parameters and survival functions.

    Subclasses set ``name``, ``param_names`` and ``bounds`` (natural-scale box bounds of the
    non-threshold parameters) and implement :meth:`survival`, :meth:`auc`, :meth:`auc_gradient`,
    :meth:`initial_guesses` and :meth:`curve`.
    """

    name: str = ""
    param_names: tuple[str, ...] = ()
    bounds: tuple[tuple[float, float], ...] = ()

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def survival(self, z: np.ndarray, theta: np.ndarray):
        """``(S_n, S_a, dS_n/dtheta, dS_a/dtheta, dS_n/dz, dS_a/dz)`` at finite thresholds ``z``.

        ``dS/dtheta`` have shape ``(len(z), n_params)``.
        """
        raise NotImplementedError

    def auc(self, theta: np.ndarray) -> float:
        raise NotImplementedError

    def auc_gradient(self, theta: np.ndarray) -> np.ndarray:
        """Gradient of the AUC with respect to the model parameters (default: central differences)."""
        theta = np.asarray(theta, dtype=float)
        g = np.zeros(theta.size)
        for i in range(theta.size):
            h = 1e-5 * max(1.0, abs(theta[i]))
            lo, hi = self.bounds[i]
            up, dn = min(theta[i] + h, hi), max(theta[i] - h, lo)
            tp_, tm_ = theta.copy(), theta.copy()
            tp_[i], tm_[i] = up, dn
            g[i] = (self.auc(tp_) - self.auc(tm_)) / (up - dn)
        return g

    def initial_guesses(self, bins: RatingBins) -> list[np.ndarray]:
        """Candidate starting values of the full parameter vector (model parameters, thresholds)."""
        raise NotImplementedError

    def curve(self, theta: np.ndarray, n: int = 201) -> tuple[np.ndarray, np.ndarray]:
        """Fitted ROC curve ``(FPF, TPF)`` from (0, 0) to (1, 1)."""
        raise NotImplementedError


def _bin_probabilities(model: OrdinalModel, full: np.ndarray, with_grad: bool = True):
    p = model.n_params
    theta, zeta = full[:p], full[p:]
    sn, sa, dsn_t, dsa_t, dsn_z, dsa_z = model.survival(zeta, theta)
    ones = np.ones(1)
    zeros = np.zeros(1)
    cn = np.concatenate([ones, sn, zeros])
    ca = np.concatenate([ones, sa, zeros])
    pn = cn[:-1] - cn[1:]
    pa = ca[:-1] - ca[1:]
    if not with_grad:
        return pn, pa
    zt = np.zeros((1, p))
    dcn_t = np.concatenate([zt, dsn_t, zt])
    dca_t = np.concatenate([zt, dsa_t, zt])
    dpn_t = dcn_t[:-1] - dcn_t[1:]
    dpa_t = dca_t[:-1] - dca_t[1:]
    return pn, pa, dpn_t, dpa_t, dsn_z, dsa_z


def negative_log_likelihood(model: OrdinalModel, full: np.ndarray, bins: RatingBins) -> float:
    """Negative multinomial log-likelihood of the bin counts (constants dropped)."""
    pn, pa = _bin_probabilities(model, np.asarray(full, dtype=float), with_grad=False)
    return _nll_from_probs(pn, pa, bins)


def _nll_from_probs(pn: np.ndarray, pa: np.ndarray, bins: RatingBins) -> float:
    # probabilities are floored (not rejected) so that the optimiser's line search always sees a
    # finite, steep wall where a bin's probability underflows
    mn, ma = bins.fp > 0, bins.tp > 0
    ln = np.log(np.maximum(pn[mn], _TINY))
    la = np.log(np.maximum(pa[ma], _TINY))
    return float(-(bins.fp[mn] * ln).sum() - (bins.tp[ma] * la).sum())


def nll_and_gradient(model: OrdinalModel, full: np.ndarray, bins: RatingBins) -> tuple[float, np.ndarray]:
    """Negative log-likelihood and its gradient in the natural parameters (model, thresholds)."""
    full = np.asarray(full, dtype=float)
    pn, pa, dpn_t, dpa_t, dsn_z, dsa_z = _bin_probabilities(model, full)
    nll = _nll_from_probs(pn, pa, bins)
    wn = np.where(bins.fp > 0, bins.fp / np.maximum(pn, _TINY), 0.0)
    wa = np.where(bins.tp > 0, bins.tp / np.maximum(pa, _TINY), 0.0)
    g_theta = -(wn @ dpn_t) - (wa @ dpa_t)
    # threshold k (0-based in zeta) is z index k+1: p_k = S(z_k) - S(z_{k+1}) -> dp_k = -S'(zeta_k);
    # p_{k+1} = S(z_{k+1}) - ... -> dp_{k+1} = +S'(zeta_k)
    g_zeta = -(wn[:-1] * (-dsn_z) + wn[1:] * dsn_z) - (wa[:-1] * (-dsa_z) + wa[1:] * dsa_z)
    return nll, np.concatenate([g_theta, g_zeta])


# ----------------------------------------------------------------------------------------------
# optimisation in an unconstrained threshold parametrisation
# ----------------------------------------------------------------------------------------------


def _to_internal(full: np.ndarray, p: int) -> np.ndarray:
    theta, zeta = full[:p], full[p:]
    if zeta.size == 0:
        return theta.copy()
    gaps = np.diff(zeta)
    return np.concatenate([theta, zeta[:1], np.log(np.maximum(gaps, 1e-12))])


def _to_natural(u: np.ndarray, p: int) -> np.ndarray:
    theta = u[:p]
    if u.size == p:
        return theta.copy()
    zeta = u[p] + np.concatenate([[0.0], np.cumsum(np.exp(u[p + 1 :]))])
    return np.concatenate([theta, zeta])


def _grad_internal(g_nat: np.ndarray, u: np.ndarray, p: int) -> np.ndarray:
    g_theta, g_zeta = g_nat[:p], g_nat[p:]
    if g_zeta.size == 0:
        return g_theta.copy()
    tail = np.cumsum(g_zeta[::-1])[::-1]  # tail[j] = sum_{i >= j} g_zeta[i]
    return np.concatenate([g_theta, [tail[0]], tail[1:] * np.exp(u[p + 1 :])])


@dataclass(frozen=True)
class MLFit:
    """Raw result of :func:`fit_ordinal`."""

    params: np.ndarray  # natural parameters at the optimum: model parameters, then thresholds
    initial: np.ndarray  # the starting values used for the reported optimum
    nll_initial: float
    nll_final: float
    converged: bool
    message: str
    n_iterations: int
    at_bound: tuple[str, ...]  # names of model parameters on a bound


def fit_ordinal(model: OrdinalModel, bins: RatingBins, starts: Sequence[np.ndarray] | None = None) -> MLFit:
    """Maximum-likelihood fit of ``model`` to ``bins`` (L-BFGS-B, analytic gradient).

    Each starting value is optimised; the fit with the smallest negative log-likelihood is
    returned.  ``NLLIni`` is the negative log-likelihood at that fit's starting values.
    """
    p = model.n_params
    starts = list(starts if starts is not None else model.initial_guesses(bins))
    r1 = bins.n_bins - 1
    bounds = list(model.bounds) + [(-_ZETA_LIMIT, _ZETA_LIMIT)] + [(math.log(1e-8), math.log(2 * _ZETA_LIMIT))] * max(r1 - 1, 0)

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        nat = _to_natural(u, p)
        val, g = nll_and_gradient(model, nat, bins)
        if not math.isfinite(val):
            return 1e300, np.zeros_like(u)
        return val, _grad_internal(g, u, p)

    best: tuple | None = None
    for start in starts:
        start = np.asarray(start, dtype=float)
        u0 = _to_internal(start, p)
        u0 = np.clip(u0, [b[0] for b in bounds], [b[1] for b in bounds])
        nll0 = negative_log_likelihood(model, _to_natural(u0, p), bins)
        if not math.isfinite(nll0):
            continue
        res = optimize.minimize(
            fun,
            u0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 3000, "maxfun": 10000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20},
        )
        nat = _to_natural(res.x, p)
        val = negative_log_likelihood(model, nat, bins)
        if best is None or val < best[0] - 1e-12:
            best = (val, nat, _to_natural(u0, p), nll0, res)
    if best is None:
        raise FloatingPointError("no starting value gives a finite likelihood")
    val, nat, init, nll0, res = best
    at_bound = []
    for name, x, (lo, hi) in zip(model.param_names, nat[:p], model.bounds):
        span = hi - lo
        if x <= lo + 1e-6 * span or x >= hi - 1e-6 * span:
            at_bound.append(name)
    g = nll_and_gradient(model, nat, bins)[1]
    converged = bool(res.success) or float(np.max(np.abs(_grad_internal(g, res.x, p)))) < 1e-4
    return MLFit(
        params=nat,
        initial=init,
        nll_initial=float(nll0),
        nll_final=float(val),
        converged=converged,
        message=str(res.message),
        n_iterations=int(res.nit),
        at_bound=tuple(at_bound),
    )


def numerical_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Hessian by central differences of an analytic gradient (symmetrised)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    h = np.empty((n, n))
    for i in range(n):
        step = 1e-5 * max(1.0, abs(x[i]))
        xp, xm = x.copy(), x.copy()
        xp[i] += step
        xm[i] -= step
        h[:, i] = (grad(xp) - grad(xm)) / (2 * step)
    return (h + h.T) / 2.0


# ----------------------------------------------------------------------------------------------
# goodness of fit
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChiSquare:
    """Pearson chi-square goodness of fit over pooled bins (RJafroc's ``ChisqrFitStats``)."""

    statistic: float
    df: int | None
    p_value: float
    pooled_bins: tuple[tuple[int, ...], ...]
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "chisq": None if math.isnan(self.statistic) else float(self.statistic),
            "df": self.df,
            "p_value": None if math.isnan(self.p_value) else float(self.p_value),
            "pooled_bins": [list(g) for g in self.pooled_bins],
            "reason": self.reason,
        }


def chi_square_gof(bins: RatingBins, pn: np.ndarray, pa: np.ndarray, n_model_params: int, min_expected: float = 5.0) -> ChiSquare:
    """Chi-square goodness of fit, pooling adjacent bins until every expected count is >= 5.

    Bins are pooled from the lowest upwards: a pooled bin is closed once both its expected
    non-diseased count ``K1 p_n`` and its expected diseased count ``K2 p_a`` reach
    ``min_expected``; a remainder at the top that does not reach it joins the last pooled bin.
    With ``G`` pooled bins the statistic sums ``(O - E)^2 / E`` over both truth states and has
    ``G - 1 - n_model_params`` degrees of freedom (``G - 3`` for the two-parameter binormal and
    CBM fits, ``G - 4`` for the RSM), as in RJafroc.
    """
    en, ea = bins.k1 * pn, bins.k2 * pa
    groups: list[list[int]] = []
    cur: list[int] = []
    sn = sa = 0.0
    for r in range(bins.n_bins):
        cur.append(r)
        sn += en[r]
        sa += ea[r]
        if sn >= min_expected and sa >= min_expected:
            groups.append(cur)
            cur, sn, sa = [], 0.0, 0.0
    if cur:
        if groups:
            groups[-1].extend(cur)
        else:
            groups.append(cur)
    pooled = tuple(tuple(g) for g in groups)
    n_groups = len(groups)
    df = n_groups - 1 - n_model_params
    if df < 1:
        need = n_model_params + 2
        return ChiSquare(
            math.nan,
            None,
            math.nan,
            pooled,
            f"not computable: {n_groups} pooled bin(s) with expected counts >= {min_expected:g} in both "
            f"truth states; at least {need} are needed for one degree of freedom",
        )
    on = np.array([bins.fp[g].sum() for g in groups], dtype=float)
    oa = np.array([bins.tp[g].sum() for g in groups], dtype=float)
    egn = np.array([en[g].sum() for g in groups])
    ega = np.array([ea[g].sum() for g in groups])
    if np.any(egn < min_expected) or np.any(ega < min_expected):
        return ChiSquare(
            math.nan,
            None,
            math.nan,
            pooled,
            f"not computable: the pooled bins cannot all reach expected counts >= {min_expected:g}",
        )
    chi = float(((on - egn) ** 2 / egn).sum() + ((oa - ega) ** 2 / ega).sum())
    return ChiSquare(chi, int(df), float(stats.chi2.sf(chi, df)), pooled)


# ----------------------------------------------------------------------------------------------
# helpers shared by the models
# ----------------------------------------------------------------------------------------------


def probit(p: np.ndarray | float) -> np.ndarray:
    """Inverse standard normal CDF."""
    return ndtri(p)


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def npdf(x: np.ndarray | float) -> np.ndarray:
    """Standard normal density (without scipy.stats' per-call overhead)."""
    x = np.asarray(x, dtype=float)
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def phi_cdf(x: np.ndarray | float) -> np.ndarray:
    """Standard normal CDF."""
    return ndtr(x)


def clipped_points(bins: RatingBins) -> tuple[np.ndarray, np.ndarray]:
    """Empirical operating points clipped away from 0 and 1 (by half a case) for probits."""
    fpf, tpf = bins.operating_points()
    e1, e2 = 0.5 / max(bins.k1, 1), 0.5 / max(bins.k2, 1)
    return np.clip(fpf, e1, 1 - e1), np.clip(tpf, e2, 1 - e2)


def start_thresholds(bins: RatingBins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped empirical operating points and the thresholds they imply for the normal cases
    (``zeta = -probit(FPF)``, made increasing): every model's starting thresholds."""
    fpf, tpf = clipped_points(bins)
    return fpf, tpf, increasing(-probit(fpf))


def between_corners(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(x, y)`` with the corners (1, 1) before and (0, 0) after."""
    return np.concatenate([[1.0], x, [0.0]]), np.concatenate([[1.0], y, [0.0]])


def increasing(z: np.ndarray, min_gap: float = 1e-3) -> np.ndarray:
    """Force a threshold vector to be strictly increasing and inside the threshold limits."""
    z = np.clip(np.asarray(z, dtype=float), -_ZETA_LIMIT + 1, _ZETA_LIMIT - 1)
    out = z.copy()
    for i in range(1, out.size):
        out[i] = max(out[i], out[i - 1] + min_gap)
    return out


def probe_bounds(model: OrdinalModel, bins: RatingBins, ml: MLFit, tol: float = 1e-6) -> MLFit | None:
    """Look for a supremum of the likelihood on a parameter bound, along a flat direction.

    When the observed information is singular at the optimiser's stopping point (the
    likelihood keeps rising, ever more slowly, towards a bound, e.g. ``mu -> infinity`` for the
    CBM on degenerate data), the optimiser may stop short of the bound.  Each bound of each model
    parameter is tried as a starting value; a fit that ends on a bound with a likelihood at least
    as high (within ``tol``) is returned, else None.
    """
    best: MLFit | None = None
    for i, (lo, hi) in enumerate(model.bounds):
        for value in (lo, hi):
            start = ml.params.copy()
            start[i] = value
            try:
                cand = fit_ordinal(model, bins, starts=[start])
            except FloatingPointError:
                continue
            if not cand.at_bound or cand.nll_final > ml.nll_final + tol * max(1.0, abs(ml.nll_final)):
                continue
            if best is None or cand.nll_final < best.nll_final:
                best = cand
    if best is None:
        return None
    return MLFit(
        params=best.params,
        initial=ml.initial,
        nll_initial=ml.nll_initial,
        nll_final=best.nll_final,
        converged=best.converged,
        message=best.message,
        n_iterations=ml.n_iterations + best.n_iterations,
        at_bound=best.at_bound,
    )
