"""Array-level MRMC statistics: DBM and Obuchowski-Rockette analyses, their ANOVAs and the
case-sampling covariance estimators (jackknife, DeLong, stratified bootstrap).

These functions take plain arrays (FOM matrix, jackknife FOMs or pseudovalues, covariance
matrices) so they can be validated against published outputs independently of how the
figures of merit were computed.  Most users call :func:`analysis.significance_test` instead.
"""

from analysis.stats._common import MRMCInputError, MRMCWarning
from analysis.stats.anova import TRAnova, TRCAnova, pseudovalues_from_jackknife, tr_anova, trc_anova
from analysis.stats.covariance import (
    ORCovariances,
    auc_structural_components,
    bootstrap_covariance,
    delong_covariance,
    jackknife_covariance,
    or_covariance_components,
)
from analysis.stats.dbm import dbm_analysis, dbm_variance_components
from analysis.stats.obuchowski_rockette import or_analysis, or_variance_components

__all__ = [
    "MRMCInputError",
    "MRMCWarning",
    "TRAnova",
    "TRCAnova",
    "ORCovariances",
    "pseudovalues_from_jackknife",
    "tr_anova",
    "trc_anova",
    "jackknife_covariance",
    "or_covariance_components",
    "auc_structural_components",
    "delong_covariance",
    "bootstrap_covariance",
    "dbm_analysis",
    "dbm_variance_components",
    "or_analysis",
    "or_variance_components",
]
