"""The radiological search model (RSM) fitted to ROC data (Chakraborty 2006; RJafroc ``FitRsmRoc``).

In the RSM a reader's search finds, on every case, a Poisson number (mean ``lambda'``) of
latent non-lesion localisations with decision variables ``N(0, 1)``, and on a diseased case with
``L`` lesions a binomial number (``L`` trials, success probability ``nu'``) of latent lesion
localisations with decision variables ``N(mu, 1)``.  A latent site is marked when its decision
variable exceeds the lowest threshold; the ROC rating of a case is its highest decision variable
(the highest-rating inferred ROC rating), and a case with no site above the lowest threshold
falls in the lowest bin.  Hence, with ``f_L`` the fraction of diseased cases with ``L`` lesions,

    FPF(zeta) = 1 - exp(-lambda' Phi(-zeta)),
    TPF(zeta) = 1 - exp(-lambda' Phi(-zeta)) sum_L f_L (1 - nu' Phi(mu - zeta))^L.

The curve ends at ``(FPF_max, TPF_max) = (1 - exp(-lambda'), 1 - exp(-lambda') sum_L f_L (1 - nu')^L)``
(zeta -> -inf) and is completed by the straight line to (1, 1); its area is the integral of
TPF dFPF up to the end point plus the area under that line (Chakraborty 2006, "ROC curves
predicted by a model of visual search").

``lambda'`` and ``nu'`` are the *physical* parameters that RJafroc's ``FitRsmRoc`` reports as
``lambda`` and ``nu``.  The *intrinsic* parameters, independent of ``mu``, are
``lambda_i = mu lambda'`` and ``nu_i = -ln(1 - nu') / mu`` (RJafroc ``UtilRSM2Intrinsic``;
inversely ``lambda' = lambda_i / mu``, ``nu' = 1 - exp(-mu nu_i)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from analysis.fitting._core import (
    OrdinalModel,
    RatingBins,
    clipped_points,
    increasing,
    npdf,
    phi_cdf,
    probit,
)

__all__ = ["RsmModel", "rsm_auc", "rsm_from_intrinsic", "rsm_to_intrinsic"]

RSM_MU_BOUNDS = (0.01, 10.0)
RSM_LAMBDA_BOUNDS = (1e-4, 50.0)
RSM_NU_BOUNDS = (1e-4, 1.0)


def rsm_to_intrinsic(mu: float, lambda_p: float, nu_p: float) -> tuple[float, float]:
    """Physical ``(lambda', nu')`` -> intrinsic ``(lambda_i, nu_i)`` (RJafroc ``UtilRSM2Intrinsic``)."""
    lam_i = lambda_p * mu
    nu_i = -math.log1p(-nu_p) / mu if nu_p < 1.0 else math.inf
    return lam_i, nu_i


def rsm_from_intrinsic(mu: float, lambda_i: float, nu_i: float) -> tuple[float, float]:
    """Intrinsic ``(lambda_i, nu_i)`` -> physical ``(lambda', nu')`` (RJafroc ``UtilIntrinsic2RSM``)."""
    return lambda_i / mu, -math.expm1(-mu * nu_i)


def _lesion_arrays(lesion_distribution: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
    items = sorted((int(k), float(v)) for k, v in dict(lesion_distribution).items() if float(v) > 0)
    if not items or any(k < 1 for k, _ in items):
        raise ValueError(f"lesion_distribution must map lesion counts >= 1 to fractions; got {dict(lesion_distribution)!r}.")
    ls = np.array([k for k, _ in items], dtype=float)
    fs = np.array([v for _, v in items], dtype=float)
    if abs(fs.sum() - 1.0) > 1e-6:
        raise ValueError(f"the lesion distribution fractions must sum to 1, they sum to {fs.sum():.6g}.")
    return ls, fs / fs.sum()


class RsmModel(OrdinalModel):
    """RSM for ROC data: parameters ``mu``, ``lambda`` (lambda'), ``nu`` (nu'), thresholds ``zeta``.

    Parameters
    ----------
    lesion_distribution : mapping of int to float, default {1: 1.0}
        Fraction of diseased cases with 1, 2, ... lesions (RJafroc's ``lesDistr``).
    """

    name = "rsm"
    param_names = ("mu", "lambda", "nu")
    bounds = (RSM_MU_BOUNDS, RSM_LAMBDA_BOUNDS, RSM_NU_BOUNDS)

    def __init__(self, lesion_distribution: Mapping[int, float] | None = None):
        self.lesion_distribution = {int(k): float(v) for k, v in (lesion_distribution or {1: 1.0}).items()}
        self._ls, self._fs = _lesion_arrays(self.lesion_distribution)

    def _g(self, mu: float, nu: float, z: np.ndarray):
        """``G = sum f_L (1 - nu Phi(mu - z))^L`` and ``dG/d(nu Phi(mu - z))``."""
        q = 1.0 - nu * phi_cdf(mu - z)
        q = np.clip(q, 0.0, 1.0)
        powers = q[:, None] ** self._ls[None, :]
        g = powers @ self._fs
        # d/dx (1 - x)^L = -L (1 - x)^(L - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dpow = np.where(self._ls[None, :] >= 1, self._ls[None, :] * q[:, None] ** (self._ls[None, :] - 1), 0.0)
        dg_dx = -(dpow @ self._fs)
        return g, dg_dx

    def survival(self, z: np.ndarray, theta: np.ndarray):
        mu, lam, nu = float(theta[0]), float(theta[1]), float(theta[2])
        z = np.asarray(z, dtype=float)
        tail = phi_cdf(-z)
        e = np.exp(-lam * tail)
        g, dg_dx = self._g(mu, nu, z)
        sn = 1.0 - e
        sa = 1.0 - e * g
        d_vis = npdf(mu - z)
        vis = phi_cdf(mu - z)
        de_dlam = -tail * e
        de_dz = lam * npdf(z) * e
        dg_dmu = dg_dx * nu * d_vis
        dg_dnu = dg_dx * vis
        dg_dz = dg_dx * (-nu * d_vis)
        dsn_t = np.column_stack([np.zeros_like(z), -de_dlam, np.zeros_like(z)])
        dsa_t = np.column_stack([-e * dg_dmu, -de_dlam * g, -e * dg_dnu])
        dsn_z = -de_dz
        dsa_z = -(de_dz * g + e * dg_dz)
        return sn, sa, dsn_t, dsa_t, dsn_z, dsa_z

    def end_point(self, theta: np.ndarray) -> tuple[float, float]:
        """``(FPF_max, TPF_max)``: the end point of the continuous part of the RSM ROC curve."""
        _, lam, nu = float(theta[0]), float(theta[1]), float(theta[2])
        e = math.exp(-lam)
        g = float(np.sum(self._fs * (1.0 - nu) ** self._ls))
        return 1.0 - e, 1.0 - e * g

    def auc(self, theta: np.ndarray) -> float:
        mu, lam, nu = float(theta[0]), float(theta[1]), float(theta[2])
        # integral of TPF dFPF over the continuous part (zeta from +inf down to -inf), composite
        # Simpson on a fine grid (the integrand is smooth and negligible outside the range)
        lo, hi = min(-9.0, mu - 9.0), max(9.0, mu + 9.0)
        n = 6001
        z = np.linspace(lo, hi, n)
        e = np.exp(-lam * phi_cdf(-z))
        g, _ = self._g(mu, nu, z)
        f = (1.0 - e * g) * lam * npdf(z) * e
        h = (hi - lo) / (n - 1)
        part = h / 3.0 * (f[0] + f[-1] + 4.0 * f[1:-1:2].sum() + 2.0 * f[2:-1:2].sum())
        fpf_max, tpf_max = self.end_point(theta)
        return float(part + (1.0 - fpf_max) * (1.0 + tpf_max) / 2.0)

    def initial_guesses(self, bins: RatingBins) -> list[np.ndarray]:
        from analysis.fitting._core import negative_log_likelihood

        fpf, _ = clipped_points(bins)
        base = max(-math.log1p(-float(fpf[0])), 0.05) if fpf.size else 0.5
        grid = []
        for c in (1.05, 1.5, 2.5, 5.0):
            lam = min(base * c, RSM_LAMBDA_BOUNDS[1] * 0.9)
            x = np.clip(-np.log1p(-fpf) / lam, 1e-9, 1 - 1e-9)
            zeta = increasing(-probit(x))
            for mu in (0.5, 1.0, 2.0, 3.0, 4.0):
                for nu in (0.3, 0.6, 0.9, 0.99):
                    grid.append(np.concatenate([[mu, lam, nu], zeta]))
        scored = sorted(grid, key=lambda s: negative_log_likelihood(self, s, bins))
        return scored[:3]

    def curve(self, theta: np.ndarray, n: int = 201) -> tuple[np.ndarray, np.ndarray]:
        mu = float(theta[0])
        z = np.unique(np.concatenate([np.linspace(-8.0, 8.0, n), np.linspace(mu - 8.0, mu + 8.0, n)]))[::-1]
        sn, sa, *_ = self.survival(z, theta)
        fpf_max, tpf_max = self.end_point(theta)
        fpf = np.concatenate([[0.0], sn, [fpf_max, 1.0]])
        tpf = np.concatenate([[0.0], sa, [tpf_max, 1.0]])
        return fpf, tpf


def rsm_auc(mu: float, lambda_p: float, nu_p: float, lesion_distribution: Mapping[int, float] | None = None) -> float:
    """Area under the RSM-predicted ROC curve (physical parameters; RJafroc ``UtilAnalyticalAucsRSM``)."""
    return RsmModel(lesion_distribution).auc(np.array([mu, lambda_p, nu_p], dtype=float))
