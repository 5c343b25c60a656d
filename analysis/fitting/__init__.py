"""ROC curve fitting: binormal (Dorfman-Alf), contaminated binormal (CBM) and radiological search model (RSM).

Maximum-likelihood fits of parametric ROC models to the binned ratings of each treatment and
reader, following the definitions of RJafroc's ``FitBinormalRoc``, ``FitCbmRoc`` and
``FitRsmRoc`` (written from the papers and RJafroc's documentation; see
``docs/analysis-fitting.md``)::

    from analysis.fitting import fit_roc
    fits = fit_roc(data, "binormal")        # one RocFit per treatment x reader
    print(fits.summary())
    fits.to_frame(); fits.to_json("fits.json")

Degenerate data never raise: such a fit has ``status`` ``"degenerate"`` or ``"not_estimable"``,
NaN estimates and a ``reason``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Exports are loaded on first use (PEP 562), so that ``tsct analyze --help``, which registers the
# ``fit`` command from analysis.fitting.cli, does not import scipy.optimize.
_EXPORTS = {
    "RatingBins": "analysis.fitting._core",
    "bin_ratings": "analysis.fitting._core",
    "MODELS": "analysis.fitting.api",
    "fit_roc": "analysis.fitting.api",
    "fit_roc_curve": "analysis.fitting.api",
    "lesion_distribution": "analysis.fitting.api",
    "make_model": "analysis.fitting.api",
    "binormal_auc": "analysis.fitting.binormal",
    "binormal_roc": "analysis.fitting.binormal",
    "cbm_auc": "analysis.fitting.cbm",
    "FIT_SCHEMA_ID": "analysis.fitting.results",
    "STATUSES": "analysis.fitting.results",
    "RocFit": "analysis.fitting.results",
    "RocFitSet": "analysis.fitting.results",
    "rsm_auc": "analysis.fitting.rsm",
    "rsm_from_intrinsic": "analysis.fitting.rsm",
    "rsm_to_intrinsic": "analysis.fitting.rsm",
}

__all__ = [
    "FIT_SCHEMA_ID",
    "MODELS",
    "STATUSES",
    "RatingBins",
    "RocFit",
    "RocFitSet",
    "bin_ratings",
    "binormal_auc",
    "binormal_roc",
    "cbm_auc",
    "fit_roc",
    "fit_roc_curve",
    "lesion_distribution",
    "make_model",
    "rsm_auc",
    "rsm_from_intrinsic",
    "rsm_to_intrinsic",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis.fitting' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
