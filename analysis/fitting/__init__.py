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

from analysis.fitting._core import RatingBins, bin_ratings
from analysis.fitting.api import MODELS, fit_roc, fit_roc_curve, lesion_distribution, make_model
from analysis.fitting.binormal import binormal_auc, binormal_roc
from analysis.fitting.cbm import cbm_auc
from analysis.fitting.results import FIT_SCHEMA_ID, STATUSES, RocFit, RocFitSet
from analysis.fitting.rsm import rsm_auc, rsm_from_intrinsic, rsm_to_intrinsic

__all__ = [
    "MODELS",
    "FIT_SCHEMA_ID",
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
