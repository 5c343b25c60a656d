"""The binormal ROC model fitted by maximum likelihood (Dorfman & Alf 1969; RJafroc ``FitBinormalRoc``).

The latent decision variable of a non-diseased case is ``N(0, 1)`` and that of a diseased case
``N(a/b, 1/b^2)``; with the ordered thresholds ``zeta_1 < ... < zeta_{R-1}`` on the
non-diseased scale,

    FPF(zeta) = 1 - Phi(zeta),     TPF(zeta) = Phi(a - b zeta),

so the ROC curve is ``TPF = Phi(a + b Phi^-1(FPF))`` and its area is

    AUC = Phi(a / sqrt(1 + b^2)).

The standard error of the AUC comes from the delta method with the (a, b) block of the inverse
observed-information matrix (Hessian of the negative log-likelihood in a, b and all the
thresholds).
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
    probit,
    start_thresholds,
)

__all__ = ["BinormalModel", "binormal_auc", "binormal_roc"]


def binormal_auc(a: float, b: float) -> float:
    """Area under the binormal ROC curve, ``Phi(a / sqrt(1 + b^2))`` (RJafroc ``UtilAucBinormal``)."""
    return float(phi_cdf(a / math.sqrt(1.0 + b * b)))


def binormal_roc(a: float, b: float, fpf: np.ndarray) -> np.ndarray:
    """TPF of the binormal ROC curve at the given FPF values."""
    fpf = np.asarray(fpf, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return phi_cdf(a + b * probit(fpf))


class BinormalModel(OrdinalModel):
    """Binormal model: parameters ``a`` (separation) and ``b`` (width ratio), thresholds ``zeta``."""

    name = "binormal"
    param_names = ("a", "b")
    # a and b are bounded only to keep the optimiser finite; an estimate on a bound is reported
    # as such (the maximum-likelihood estimate does not exist inside the bounds).
    bounds = ((-20.0, 20.0), (0.01, 100.0))

    def survival(self, z: np.ndarray, theta: np.ndarray):
        a, b = float(theta[0]), float(theta[1])
        z = np.asarray(z, dtype=float)
        sn = phi_cdf(-z)
        arg = a - b * z
        sa = phi_cdf(arg)
        dens_a = npdf(arg)
        dsn_t = np.zeros((z.size, 2))
        dsa_t = np.column_stack([dens_a, -z * dens_a])
        dsn_z = -npdf(z)
        dsa_z = -b * dens_a
        return sn, sa, dsn_t, dsa_t, dsn_z, dsa_z

    def auc(self, theta: np.ndarray) -> float:
        return binormal_auc(float(theta[0]), float(theta[1]))

    def auc_gradient(self, theta: np.ndarray) -> np.ndarray:
        a, b = float(theta[0]), float(theta[1])
        s = math.sqrt(1.0 + b * b)
        d = npdf(a / s)
        return np.array([d / s, -d * a * b / s**3])

    def initial_guesses(self, bins: RatingBins) -> list[np.ndarray]:
        fpf, tpf, zeta = start_thresholds(bins)
        zf, zt = probit(fpf), probit(tpf)
        starts = []
        if zf.size >= 2 and np.ptp(zf) > 1e-9:
            b, a = np.polyfit(zf, zt, 1)
            if 0.05 < b < 20 and abs(a) < 10:
                starts.append(np.concatenate([[a, b], zeta]))
        a0 = float(np.mean(zt - zf)) if zf.size else 1.0
        starts.append(np.concatenate([[float(np.clip(a0, -5, 5)), 1.0], zeta]))
        return starts

    def curve(self, theta: np.ndarray, n: int = 201) -> tuple[np.ndarray, np.ndarray]:
        a, b = float(theta[0]), float(theta[1])
        z = np.linspace(-7.0, 7.0, n)
        fpf, tpf = between_corners(phi_cdf(-z), phi_cdf(a - b * z))
        return fpf[::-1], tpf[::-1]
