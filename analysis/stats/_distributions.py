"""Tail probabilities and quantiles that accept infinite or undefined degrees of freedom.

The Hillis denominator degrees of freedom ``ddf_H = MSden^2 / (MS_TR^2 / ((I-1)(J-1)))``
becomes infinite when ``MS_TR == 0`` and undefined (NaN) when the error term is zero as well.
R's ``pf``/``pt``/``qt`` then fall back to their chi-square / normal limits, and RJafroc's
output follows from that; SciPy returns NaN for an infinite denominator df of the F
distribution.  These helpers reproduce the limits so that degenerate studies give the same
numbers as RJafroc instead of NaN.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
import types
from typing import Any

import numpy as np

__all__ = [
    "f_sf",
    "chi2_sf",
    "t_two_sided_p",
    "t_quantile",
    "noncentral_f_power",
]


_SPECIAL = "scipy.special"
_DEFER_LOCK = threading.RLock()
_UFUNCS: types.ModuleType | None = None  # scipy.special._ufuncs once imported by _special()


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` has not run yet: it runs on the first look-up of a name.

    Its submodules import without it (the import system needs only the parent's ``__path__``),
    so ``scipy.special._ufuncs`` loads alone; ``from scipy.special import gammaln``,
    ``scipy.special.ndtr`` or ``import scipy.stats`` then run the real ``__init__`` into this
    very module object, which from then on is an ordinary module.  Other threads wait on the
    lock while it runs, as they would on the import lock.
    """

    def __getattr__(self, name: str) -> Any:
        with _DEFER_LOCK:
            if self.__dict__.get("_tsct_deferred") == "pending":
                self.__dict__["_tsct_deferred"] = "running"
                try:
                    self.__spec__.loader.exec_module(self)
                except BaseException:
                    if sys.modules.get(self.__name__) is self:  # as a failed import: not left half-made
                        del sys.modules[self.__name__]
                    raise
                finally:
                    self.__dict__.pop("_tsct_deferred", None)
                    self.__class__ = types.ModuleType
        # the module's own look-up (its dict, then a module-level ``__getattr__``), never this method again
        return types.ModuleType.__getattribute__(self, name)


def _special() -> Any:
    """SciPy's compiled special-function ufuncs (``fdtrc``, ``stdtr``, ``stdtrit``, ...).

    ``import scipy.special`` costs about 0.25 s of CPU at start-up (SciPy 1.17 on the reference
    machine), nearly all of it in its array-API layer, which copies NumPy's whole namespace and
    so imports ``numpy.f2py``, ``numpy.testing`` and ``numpy.typing``; a p value needs none of
    that.  So the package is placed, not run (:class:`_DeferredPackage`), and its compiled
    ``_ufuncs`` module is imported alone: the same ufunc objects that ``scipy.special`` exports,
    so every number is bit-for-bit the same.  If SciPy is already imported, or this SciPy lays
    its modules out differently, the ordinary ``scipy.special`` is used.  (Should another thread
    import ``scipy.special`` in the very moment the package is placed, one of the two module
    objects ends up in ``sys.modules``; both work, the other's ``__init__`` merely runs twice.)
    """
    global _UFUNCS
    if _UFUNCS is not None:
        return _UFUNCS
    module = sys.modules.get(_SPECIAL)
    if module is not None and not isinstance(module, _DeferredPackage):
        return importlib.import_module(_SPECIAL)  # waits, as an import does, while another thread runs its __init__
    try:
        with _DEFER_LOCK:
            if _SPECIAL not in sys.modules:
                from importlib.util import find_spec, module_from_spec

                spec = find_spec(_SPECIAL)  # imports the small ``scipy`` package only
                if spec is None or spec.loader is None or spec.submodule_search_locations is None:
                    raise ImportError(_SPECIAL)
                module = module_from_spec(spec)
                module.__class__ = _DeferredPackage
                module.__dict__["_tsct_deferred"] = "pending"
                sys.modules[_SPECIAL] = module
                setattr(sys.modules["scipy"], "special", module)  # as the import system binds a submodule
        ufuncs = importlib.import_module(_SPECIAL + "._ufuncs")
        for name in ("fdtrc", "fdtri", "chdtrc", "chdtri", "chndtr", "ncfdtr", "ndtr", "ndtri", "stdtr", "stdtrit"):
            getattr(ufuncs, name)
        _UFUNCS = ufuncs
        return ufuncs
    except (ImportError, AttributeError):
        from scipy import special

        return special


def _is_nan(x: float) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def f_sf(statistic: float, dfn: float, dfd: float) -> float:
    """Upper tail ``P(F >= statistic)`` of an F(dfn, dfd) distribution.

    ``dfd = inf`` uses the limit ``dfn * F ~ chi2(dfn)``.  NaN in, NaN out.
    """
    special = _special()

    statistic, dfn, dfd = float(statistic), float(dfn), float(dfd)
    if math.isnan(statistic) or math.isnan(dfn) or math.isnan(dfd) or dfn <= 0 or dfd <= 0:
        return math.nan
    if math.isinf(statistic):
        return 0.0 if statistic > 0 else 1.0
    if statistic <= 0:  # as R's 1 - pf(x) (and scipy.stats): the whole distribution lies above
        return 1.0
    if math.isinf(dfd):
        return float(special.chdtrc(dfn, dfn * statistic))
    return float(special.fdtrc(dfn, dfd, statistic))


def chi2_sf(statistic: float, df: float) -> float:
    """Upper tail ``P(X >= statistic)`` of a chi-square distribution with ``df`` degrees of freedom."""
    special = _special()

    statistic, df = float(statistic), float(df)
    if math.isnan(statistic) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(statistic):
        return 0.0 if statistic > 0 else 1.0
    if statistic <= 0:  # as R's 1 - pchisq(x) (and scipy.stats)
        return 1.0
    return float(special.chdtrc(df, statistic))


def t_two_sided_p(statistic: float, df: float | None) -> float:
    """Two-sided p value ``2 P(T >= |t|)``; ``df=None`` or ``inf`` means the standard normal."""
    special = _special()

    statistic = float(statistic)
    if math.isnan(statistic):
        return math.nan
    if df is None or math.isinf(float(df)):
        return float(2.0 * special.ndtr(-abs(statistic)))
    df = float(df)
    if math.isnan(df) or df <= 0:
        return math.nan
    return float(2.0 * special.stdtr(df, -abs(statistic)))


def t_quantile(probability: float, df: float | None) -> float:
    """Quantile of Student's t (``df=None`` or ``inf``: standard normal)."""
    special = _special()

    if df is None or math.isinf(float(df)):
        return float(special.ndtri(probability))
    df = float(df)
    if math.isnan(df) or df <= 0:
        return math.nan
    return float(special.stdtrit(df, probability))


def noncentral_f_power(ncp: float, dfn: float, dfd: float, alpha: float) -> float:
    """Power ``P(F' > F_{1-alpha; dfn, dfd})`` of an F test under non-centrality ``ncp``.

    ``dfd = inf`` gives the chi-square test's power, ``P(chi2'(dfn, ncp) > chi2_{1-alpha; dfn})``.
    """
    special = _special()

    ncp, dfn, dfd = float(ncp), float(dfn), float(dfd)
    if any(math.isnan(v) for v in (ncp, dfn, dfd)) or dfn <= 0 or dfd <= 0 or ncp < 0:
        return math.nan
    if math.isinf(ncp):
        return 1.0
    if math.isinf(dfd):
        critical = special.chdtri(dfn, alpha)
        if ncp == 0:
            return float(special.chdtrc(dfn, critical))
        return float(1.0 - special.chndtr(critical, dfn, ncp))
    critical = special.fdtri(dfn, dfd, 1.0 - alpha)
    if ncp == 0:
        return float(special.fdtrc(dfn, dfd, critical))
    return float(1.0 - special.ncfdtr(dfn, dfd, ncp, critical))


def safe_sqrt(x: float) -> float:
    """``sqrt(x)`` that returns NaN (no RuntimeWarning) for negative or NaN input."""
    x = float(x)
    if np.isnan(x) or x < 0:
        return math.nan
    return math.sqrt(x)
