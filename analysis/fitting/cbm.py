"""The contaminated binormal model (CBM; Dorfman & Berbaum 2000; RJafroc ``FitCbmRoc``).

Non-diseased cases have latent decision variables ``N(0, 1)``.  On a fraction ``alpha`` of the
diseased cases the disease is visible and their decision variable is ``N(mu, 1)``; on the rest
it is invisible and they are sampled like non-diseased cases, ``N(0, 1)``.  Hence

    FPF(zeta) = 1 - Phi(zeta),
    TPF(zeta) = alpha (1 - Phi(zeta - mu)) + (1 - alpha)(1 - Phi(zeta)),

a proper ROC curve (never crossing the chance line) that also fits "degenerate" data whose
operating points all lie on the edges of the ROC square.  Its area is

    AUC = (1 - alpha) / 2 + alpha Phi(mu / sqrt(2))     (RJafroc ``UtilAucCBM``).

``mu`` is constrained to ``[0, 10]`` and ``alpha`` to ``[0, 1]`` (RJafroc constrains both, too);
an estimate on a bound is reported with status ``"boundary"``.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.fitting._core import (
    OrdinalModel,
    RatingBins,
    between_corners,
    npdf,
    phi_cdf,
    start_thresholds,
)

__all__ = ["CbmModel", "cbm_auc"]

CBM_MU_MAX = 10.0


def cbm_auc(mu: float, alpha: float) -> float:
    """Area under the CBM ROC curve, ``(1 - alpha)/2 + alpha Phi(mu/sqrt(2))``."""
    return float((1.0 - alpha) * 0.5 + alpha * phi_cdf(mu / math.sqrt(2.0)))


class CbmModel(OrdinalModel):
    """Contaminated binormal model: parameters ``mu`` and ``alpha``, thresholds ``zeta``."""

    name = "cbm"
    param_names = ("mu", "alpha")
    bounds = ((0.0, CBM_MU_MAX), (0.0, 1.0))

    def survival(self, z: np.ndarray, theta: np.ndarray):
        mu, alpha = float(theta[0]), float(theta[1])
        z = np.asarray(z, dtype=float)
        sn = phi_cdf(-z)
        vis = phi_cdf(mu - z)
        sa = alpha * vis + (1.0 - alpha) * sn
        d_vis = npdf(mu - z)
        d_n = npdf(z)
        dsn_t = np.zeros((z.size, 2))
        dsa_t = np.column_stack([alpha * d_vis, vis - sn])
        dsn_z = -d_n
        dsa_z = -alpha * d_vis - (1.0 - alpha) * d_n
        return sn, sa, dsn_t, dsa_t, dsn_z, dsa_z

    def auc(self, theta: np.ndarray) -> float:
        return cbm_auc(float(theta[0]), float(theta[1]))

    def auc_gradient(self, theta: np.ndarray) -> np.ndarray:
        mu, alpha = float(theta[0]), float(theta[1])
        r2 = math.sqrt(2.0)
        return np.array([alpha * npdf(mu / r2) / r2, float(phi_cdf(mu / r2)) - 0.5])

    def initial_guesses(self, bins: RatingBins) -> list[np.ndarray]:
        from analysis.fitting._core import negative_log_likelihood

        *_, zeta = start_thresholds(bins)
        grid = [np.concatenate([[mu, alpha], zeta]) for mu in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0) for alpha in (0.2, 0.4, 0.6, 0.8, 0.95, 1.0)]
        scored = sorted(grid, key=lambda s: negative_log_likelihood(self, s, bins))
        return scored[:2]

    def curve(self, theta: np.ndarray, n: int = 201) -> tuple[np.ndarray, np.ndarray]:
        mu, alpha = float(theta[0]), float(theta[1])
        z = np.unique(np.concatenate([np.linspace(-7.0, 7.0, n), np.linspace(mu - 7.0, mu + 7.0, n)]))
        fpf, tpf = between_corners(phi_cdf(-z), alpha * phi_cdf(mu - z) + (1 - alpha) * phi_cdf(-z))
        return fpf[::-1], tpf[::-1]
