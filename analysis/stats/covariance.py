"""Case-sampling covariance of figures of merit for the Obuchowski-Rockette (OR) method.

The OR model needs the covariance matrix of the figures of merit ``theta[i, j]`` over repeated
samples of cases, summarised by ``Var``, ``Cov1`` (same reader, different treatments),
``Cov2`` (same treatment, different readers) and ``Cov3`` (different treatment and reader).
Three estimators are offered:

* :func:`jackknife_covariance` — from the leave-one-case-out FOMs ``theta_(k)``; works for
  every FOM.  Scaled as RJafroc and OR-DBM MRMC do: ``(K-1)/K sum_k (.)(.)``.
* :func:`delong_covariance` — DeLong, DeLong & Clarke-Pearson (1988) structural components,
  for FOMs that are two-sample U-statistics over (normal case, abnormal case) pairs: the
  empirical ROC AUC (Wilcoxon), the highest-rating inferred ROC AUC (HrAuc) and the weighted
  AFROC AUC (wAFROC), whose kernel for a normal case ``a`` and an abnormal case ``b`` is
  ``phi(a, b) = sum_l w_bl psi(FP_a, LL_bl)`` with ``psi(x, y) = 1 (x < y), 1/2 (x = y), 0``.
* :func:`bootstrap_covariance` — stratified bootstrap (normal and abnormal cases resampled
  separately, the same resample for all treatments and readers) of the same FOMs, vectorised
  and reproducible from a seed.

The kernel inputs are ``normal_scores[i, j, a]`` (the rating of normal case ``a``, or its
highest false-positive rating; ``-inf`` = unmarked), ``lesion_scores[i, j, b, l]`` (rating of
lesion ``l`` of abnormal case ``b``; ``-inf`` = not marked; for ROC data ``l`` has length 1)
and ``lesion_weights[b, l]`` (each abnormal case's weights sum to 1, padding slots 0).
Unmarked ratings (``-inf``) tie with each other and score 1/2, exactly as in the FOM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ORCovariances",
    "jackknife_covariance",
    "or_covariance_components",
    "delong_covariance",
    "bootstrap_covariance",
    "auc_structural_components",
]


@dataclass(frozen=True)
class ORCovariances:
    """Averaged OR (co)variances and their per-treatment / per-reader versions.

    Attributes
    ----------
    var : float
        Mean of ``Var(theta_ij)`` over (i, j).
    cov1, cov2, cov3 : float
        Mean covariance over pairs with (different treatment, same reader), (same treatment,
        different reader) and (different treatment, different reader).  NaN when no such pair
        exists (``cov2``/``cov3`` with one reader).
    var_per_treatment, cov2_per_treatment : ndarray of shape (I,)
        ``Var`` and ``Cov2`` computed within each treatment (single-treatment intervals).
    var_per_reader, cov1_per_reader : ndarray of shape (J,)
        ``Var`` and ``Cov1`` computed within each reader (single-reader comparisons).
    """

    var: float
    cov1: float
    cov2: float
    cov3: float
    var_per_treatment: np.ndarray
    cov2_per_treatment: np.ndarray
    var_per_reader: np.ndarray
    cov1_per_reader: np.ndarray


def _masked_mean(values: np.ndarray, mask: np.ndarray, axis=None) -> np.ndarray | float:
    count = mask.sum(axis=axis)
    total = np.where(mask, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    return float(out) if np.ndim(out) == 0 else out


def jackknife_covariance(jackknife_foms: np.ndarray) -> np.ndarray:
    """Jackknife covariance matrix of the FOMs.

    Parameters
    ----------
    jackknife_foms : array-like of shape (I, J, K)
        ``theta_(k)[i, j]``: FOM with case ``k`` removed.

    Returns
    -------
    ndarray of shape (I, J, I, J)
        ``C[i, j, i', j'] = (K-1)/K sum_k (theta_(k)ij - mean)(theta_(k)i'j' - mean)``, i.e.
        R's ``cov()`` times ``(K-1)^2/K``, the scaling RJafroc and OR-DBM MRMC use.
    """
    jk = np.asarray(jackknife_foms, dtype=float)
    if jk.ndim != 3:
        raise ValueError(f"jackknife_foms must have shape (I, J, K); got shape {jk.shape}.")
    n_t, n_r, n_c = jk.shape
    if n_c < 2:
        raise ValueError(f"The jackknife needs at least 2 cases; got {n_c}.")
    x = jk.reshape(n_t * n_r, n_c)
    x = x - x.mean(axis=1, keepdims=True)
    cov = (x @ x.T) * ((n_c - 1) / n_c)
    return cov.reshape(n_t, n_r, n_t, n_r)


def or_covariance_components(covariance: np.ndarray) -> ORCovariances:
    """Average a full FOM covariance matrix into the OR ``Var, Cov1, Cov2, Cov3``.

    Parameters
    ----------
    covariance : array-like of shape (I, J, I, J)

    Returns
    -------
    ORCovariances
    """
    c = np.asarray(covariance, dtype=float)
    if c.ndim != 4 or c.shape[:2] != c.shape[2:]:
        raise ValueError(f"covariance must have shape (I, J, I, J); got shape {c.shape}.")
    n_t, n_r = c.shape[:2]
    same_t = np.eye(n_t, dtype=bool)[:, None, :, None]
    same_r = np.eye(n_r, dtype=bool)[None, :, None, :]
    shape = c.shape
    diag = np.broadcast_to(same_t & same_r, shape)
    m1 = np.broadcast_to(~same_t & same_r, shape)
    m2 = np.broadcast_to(same_t & ~same_r, shape)
    m3 = np.broadcast_to(~same_t & ~same_r, shape)

    ii = np.arange(n_t)
    jj = np.arange(n_r)
    var_ij = c[ii[:, None], jj[None, :], ii[:, None], jj[None, :]]  # (I, J)
    # within treatment i: c[i, :, i, :]  (J x J)
    within_t = c[ii, :, ii, :]  # (I, J, J)
    off_r = ~np.eye(n_r, dtype=bool)
    cov2_i = _masked_mean(within_t, np.broadcast_to(off_r, within_t.shape), axis=(1, 2))
    # within reader j: c[:, j, :, j]  (I x I)
    within_r = c[:, jj, :, jj]  # (J, I, I)
    off_t = ~np.eye(n_t, dtype=bool)
    cov1_j = _masked_mean(within_r, np.broadcast_to(off_t, within_r.shape), axis=(1, 2))

    return ORCovariances(
        var=_masked_mean(c, diag),
        cov1=_masked_mean(c, m1),
        cov2=_masked_mean(c, m2),
        cov3=_masked_mean(c, m3),
        var_per_treatment=var_ij.mean(axis=1),
        cov2_per_treatment=np.atleast_1d(np.asarray(cov2_i, dtype=float)),
        var_per_reader=var_ij.mean(axis=0),
        cov1_per_reader=np.atleast_1d(np.asarray(cov1_j, dtype=float)),
    )


# --------------------------------------------------------------------------------------------
# U-statistic FOMs: DeLong and bootstrap
# --------------------------------------------------------------------------------------------


def _kernel_inputs(
    normal_scores: np.ndarray, lesion_scores: np.ndarray, lesion_weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fp = np.asarray(normal_scores, dtype=float)
    ll = np.asarray(lesion_scores, dtype=float)
    if fp.ndim != 3:
        raise ValueError(f"normal_scores must have shape (I, J, K1); got shape {fp.shape}.")
    if ll.ndim == 3:
        ll = ll[..., None]
    if ll.ndim != 4 or ll.shape[:2] != fp.shape[:2]:
        raise ValueError(
            f"lesion_scores must have shape (I, J, K2) or (I, J, K2, L) with the same (I, J) as normal_scores {fp.shape[:2]}; got shape {ll.shape}."
        )
    n_abn, n_les = ll.shape[2:]
    if lesion_weights is None:
        if n_les != 1:
            raise ValueError("lesion_weights are required when abnormal cases have several lesions.")
        w = np.ones((n_abn, 1))
    else:
        w = np.asarray(lesion_weights, dtype=float)
        if w.shape != (n_abn, n_les):
            raise ValueError(f"lesion_weights must have shape {(n_abn, n_les)}; got {w.shape}.")
        w = np.where(np.isfinite(w), w, 0.0)
    if fp.shape[2] < 2 or n_abn < 2:
        raise ValueError(f"DeLong/bootstrap covariance needs at least 2 normal and 2 abnormal cases; got {fp.shape[2]} normal and {n_abn} abnormal.")
    if np.isnan(fp).any() or np.isnan(ll).any():
        raise ValueError("Ratings contain NaN; use -inf for 'not marked'.")
    return fp, ll, w


def auc_structural_components(
    normal_scores: np.ndarray,
    lesion_scores: np.ndarray,
    lesion_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong structural components of a (weighted) two-sample U-statistic FOM.

    Parameters
    ----------
    normal_scores : array-like of shape (I, J, K1)
        Rating (ROC) or highest false-positive rating (FROC) of each normal case.
    lesion_scores : array-like of shape (I, J, K2) or (I, J, K2, L)
        Rating of each abnormal case (ROC) or of each of its lesions (FROC).
    lesion_weights : array-like of shape (K2, L), optional
        Lesion weights (each row sums to 1; padding 0).  Default: a single lesion of weight 1.

    Returns
    -------
    foms : ndarray of shape (I, J)
        ``theta = 1/(K1 K2) sum_a sum_b phi(a, b)``.
    v10 : ndarray of shape (I, J, K1)
        ``V10[a] = 1/K2 sum_b phi(a, b)`` for each normal case.
    v01 : ndarray of shape (I, J, K2)
        ``V01[b] = 1/K1 sum_a phi(a, b)`` for each abnormal case.
    """
    fp, ll, w = _kernel_inputs(normal_scores, lesion_scores, lesion_weights)
    n_t, n_r, n_nor = fp.shape
    n_abn, n_les = ll.shape[2:]
    w_flat = np.broadcast_to(w, (n_abn, n_les)).reshape(-1)
    v10 = np.empty((n_t, n_r, n_nor))
    v01 = np.empty((n_t, n_r, n_abn))
    for i in range(n_t):
        for j in range(n_r):
            fp_sorted = np.sort(fp[i, j])
            x = ll[i, j].reshape(-1)
            lo = np.searchsorted(fp_sorted, x, side="left")
            hi = np.searchsorted(fp_sorted, x, side="right")
            per_lesion = (lo + 0.5 * (hi - lo)) / n_nor  # P(FP < x) + 1/2 P(FP = x)
            v01[i, j] = (per_lesion * w_flat).reshape(n_abn, n_les).sum(axis=1)
            order = np.argsort(x, kind="stable")
            xs = x[order]
            cw = np.concatenate([[0.0], np.cumsum(w_flat[order])])
            total = cw[-1]
            lo_f = np.searchsorted(xs, fp[i, j], side="left")
            hi_f = np.searchsorted(xs, fp[i, j], side="right")
            above = total - cw[hi_f]
            ties = cw[hi_f] - cw[lo_f]
            v10[i, j] = (above + 0.5 * ties) / n_abn
    foms = v01.mean(axis=2)
    return foms, v10, v01


def delong_covariance(
    normal_scores: np.ndarray,
    lesion_scores: np.ndarray,
    lesion_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """DeLong covariance matrix of ROC-type AUC figures of merit.

    Parameters
    ----------
    normal_scores, lesion_scores, lesion_weights
        See :func:`auc_structural_components`.

    Returns
    -------
    foms : ndarray of shape (I, J)
    covariance : ndarray of shape (I, J, I, J)
        ``S10/K1 + S01/K2`` with ``S10 = 1/(K1-1) sum_a (V10_a - theta)(V10'_a - theta')`` and
        ``S01`` likewise over abnormal cases (DeLong, DeLong & Clarke-Pearson 1988, eq. 2-4).

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach. Biometrics
    1988;44:837-845.
    """
    foms, v10, v01 = auc_structural_components(normal_scores, lesion_scores, lesion_weights)
    n_t, n_r, n_nor = v10.shape
    n_abn = v01.shape[2]
    a = (v10 - foms[..., None]).reshape(n_t * n_r, n_nor)
    b = (v01 - foms[..., None]).reshape(n_t * n_r, n_abn)
    s10 = (a @ a.T) / (n_nor - 1)
    s01 = (b @ b.T) / (n_abn - 1)
    cov = s10 / n_nor + s01 / n_abn
    return foms, cov.reshape(n_t, n_r, n_t, n_r)


def bootstrap_covariance(
    normal_scores: np.ndarray,
    lesion_scores: np.ndarray,
    lesion_weights: np.ndarray | None = None,
    *,
    n_bootstraps: int = 2000,
    random_state: int | np.random.Generator | None = None,
    chunk_size: int = 256,
    progress=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified bootstrap covariance of ROC-type AUC figures of merit.

    Normal and abnormal cases are resampled separately with replacement (so every resample
    keeps K1 normal and K2 abnormal cases) and the same resample is applied to every
    treatment and reader, which preserves the correlations the OR model needs.  Resamples
    are represented by multinomial case counts, and each FOM is evaluated from the sorted
    normal-case ratings with count-weighted cumulative sums, so no resampled dataset is built.

    Parameters
    ----------
    normal_scores, lesion_scores, lesion_weights
        See :func:`auc_structural_components`.
    n_bootstraps : int, default 2000
        Number of bootstrap resamples B (>= 2).
    random_state : int, numpy Generator or None
        Seed for reproducibility (``numpy.random.default_rng(random_state)``).
    chunk_size : int, default 256
        Resamples processed at once (bounds memory to about ``chunk_size * K2 * L * 8`` bytes).
    progress : callable, optional
        Called as ``progress(n_done, n_total)`` after each chunk.

    Returns
    -------
    foms : ndarray of shape (I, J)
        FOMs on the original cases.
    covariance : ndarray of shape (I, J, I, J)
        Sample covariance of the B bootstrap FOMs (denominator B - 1).
    boot_foms : ndarray of shape (B, I, J)
        The bootstrap FOMs themselves.
    """
    if int(n_bootstraps) < 2:
        raise ValueError(f"n_bootstraps must be an integer >= 2. Got {n_bootstraps!r} instead.")
    n_bootstraps = int(n_bootstraps)
    fp, ll, w = _kernel_inputs(normal_scores, lesion_scores, lesion_weights)
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    n_t, n_r, n_nor = fp.shape
    n_abn, n_les = ll.shape[2:]
    # Draw all resamples first (one stream, independent of chunking) -> reproducible.
    n_counts = rng.multinomial(n_nor, np.full(n_nor, 1.0 / n_nor), size=n_bootstraps).astype(float)
    m_counts = rng.multinomial(n_abn, np.full(n_abn, 1.0 / n_abn), size=n_bootstraps).astype(float)

    w_flat = w.reshape(-1)
    real = w_flat > 0  # padding slots carry no weight
    lesion_case = np.repeat(np.arange(n_abn), n_les)[real]
    w_real = w_flat[real]
    boot = np.empty((n_bootstraps, n_t, n_r))
    foms = np.empty((n_t, n_r))
    # Per (i, j): sort order of the normal ratings and the positions of the lesion ratings in it.
    prep = []
    for i in range(n_t):
        for j in range(n_r):
            order = np.argsort(fp[i, j], kind="stable")
            fp_sorted = fp[i, j][order]
            x = ll[i, j].reshape(-1)[real]
            lo = np.searchsorted(fp_sorted, x, side="left")
            hi = np.searchsorted(fp_sorted, x, side="right")
            foms[i, j] = float(np.sum((lo + 0.5 * (hi - lo)) * w_real)) / (n_nor * n_abn)
            prep.append((i, j, order, lo, hi))
    for start in range(0, n_bootstraps, chunk_size):
        stop = min(start + chunk_size, n_bootstraps)
        nc = n_counts[start:stop]
        # abnormal-case multiplicity times lesion weight, for every real lesion: (b, n_lesions)
        lesion_mult = m_counts[start:stop][:, lesion_case] * w_real
        cum = np.zeros((stop - start, n_nor + 1))
        for i, j, order, lo, hi in prep:
            # cum[b, n] = number of resampled normal cases among the n lowest-rated ones
            np.cumsum(nc[:, order], axis=1, out=cum[:, 1:])
            c_lo = cum[:, lo]
            below_plus_half_ties = 0.5 * (c_lo + cum[:, hi])
            boot[start:stop, i, j] = np.einsum("be,be->b", below_plus_half_ties, lesion_mult) / (n_nor * n_abn)
        if progress is not None:
            progress(stop, n_bootstraps)
    flat = boot.reshape(n_bootstraps, n_t * n_r)
    flat_c = flat - flat.mean(axis=0, keepdims=True)
    cov = (flat_c.T @ flat_c) / (n_bootstraps - 1)
    return foms, cov.reshape(n_t, n_r, n_t, n_r), boot
