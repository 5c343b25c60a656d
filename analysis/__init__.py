"""Statistical analysis of observer studies: ROC/FROC data, figures of merit, significance tests.

Part 1 (data, file formats, figures of merit, jackknife, empirical curves) is exported below;
significance tests (DBM, Obuchowski-Rockette) and sample-size functions are added by their own
modules.
"""

from analysis.data import Lesion, ObserverData, ObserverDataError, Problem
from analysis.fom import (
    EXPERIMENTAL_FOMS,
    FOMS,
    FomError,
    check_fom,
    fom_and_jackknife,
    fom_case_ids,
    fom_frame,
    fom_case_set,
    fom_matrices,
    fom_matrix,
    jackknife_fom_matrix,
    pseudovalues,
    valid_foms,
)
from analysis.io import (
    TIDY_COLUMNS,
    UnsupportedDataError,
    read_imrmc,
    read_jafroc_excel,
    read_observer_data,
    read_tidy_csv,
    write_imrmc,
    write_jafroc_excel,
    write_observer_data,
    write_tidy_csv,
)
from analysis.curves import (
    CURVE_AXES,
    CURVES,
    average_curve,
    curve_auc,
    empirical_curve,
    empirical_curves,
)

__all__ = [
    "Lesion",
    "ObserverData",
    "ObserverDataError",
    "Problem",
    "UnsupportedDataError",
    "FOMS",
    "EXPERIMENTAL_FOMS",
    "FomError",
    "check_fom",
    "fom_and_jackknife",
    "fom_case_ids",
    "fom_frame",
    "fom_case_set",
    "fom_matrices",
    "fom_matrix",
    "jackknife_fom_matrix",
    "pseudovalues",
    "valid_foms",
    "TIDY_COLUMNS",
    "read_imrmc",
    "read_jafroc_excel",
    "read_observer_data",
    "read_tidy_csv",
    "write_imrmc",
    "write_jafroc_excel",
    "write_observer_data",
    "write_tidy_csv",
    "CURVES",
    "CURVE_AXES",
    "average_curve",
    "curve_auc",
    "empirical_curve",
    "empirical_curves",
]

# Part 2: significance tests (DBM, Obuchowski-Rockette), results objects, power and sample size.
from analysis.power import (
    PilotVarianceComponents,
    pilot_variance_components,
    power_from_dbm_components,
    power_from_or_components,
    power_table,
    sample_size,
    study_power,
)
from analysis.results import (
    AnalysisResult,
    Comparison,
    PowerResult,
    PowerTable,
    Provenance,
    SampleSizeResult,
    SignificanceResult,
    Table,
    TreatmentEstimate,
)
from analysis.significance import (
    COVARIANCE_METHODS,
    U_STATISTIC_FOMS,
    BackendNotAvailableError,
    significance_test,
)
from analysis.stats import MRMCInputError, MRMCWarning

__all__ += [
    "significance_test",
    "SignificanceResult",
    "AnalysisResult",
    "Comparison",
    "TreatmentEstimate",
    "Table",
    "Provenance",
    "MRMCInputError",
    "MRMCWarning",
    "BackendNotAvailableError",
    "COVARIANCE_METHODS",
    "U_STATISTIC_FOMS",
    "PilotVarianceComponents",
    "pilot_variance_components",
    "power_from_or_components",
    "power_from_dbm_components",
    "study_power",
    "sample_size",
    "power_table",
    "PowerResult",
    "SampleSizeResult",
    "PowerTable",
]

# Part 3: subgroup analyses, the study report, and the optional RJafroc (R, via rpy2) backend.
from analysis.report import ReportPaths, write_report
from analysis.rjafroc_backend import (
    CrosscheckReport,
    compare_results,
    rjafroc_available,
    significance_test_rjafroc,
)
from analysis.subgroups import (
    Subgroup,
    SubgroupError,
    SubgroupResult,
    SubgroupWarning,
    available_subgroups,
    subgroup_analysis,
)

__all__ += [
    "subgroup_analysis",
    "available_subgroups",
    "Subgroup",
    "SubgroupResult",
    "SubgroupError",
    "SubgroupWarning",
    "write_report",
    "ReportPaths",
    "rjafroc_available",
    "significance_test_rjafroc",
    "compare_results",
    "CrosscheckReport",
]

# Part 4: RJafroc's further methods -- LROC data, stand-alone CAD vs radiologists, split-plot
# designs (docs/analysis-methods.md).
from analysis.cad_vs_rad import (
    CadVsRadResult,
    add_cad_reader,
    cad_marks_from_case_marks,
    cad_vs_rad,
    read_cad_marks,
    st_cad_vs_rad,
)
from analysis.formats.lroc_excel import read_lroc_excel, write_lroc_excel
from analysis.lroc import (
    LROC_FOMS,
    LrocData,
    lroc_fom_matrix,
    lroc_jackknife_fom_matrix,
    lroc_significance_test,
)
from analysis.split_plot import SplitPlotData, SplitPlotResult, read_split_plot_excel, split_plot_or

__all__ += [
    "LrocData",
    "LROC_FOMS",
    "lroc_fom_matrix",
    "lroc_jackknife_fom_matrix",
    "lroc_significance_test",
    "read_lroc_excel",
    "write_lroc_excel",
    "CadVsRadResult",
    "cad_vs_rad",
    "st_cad_vs_rad",
    "add_cad_reader",
    "read_cad_marks",
    "cad_marks_from_case_marks",
    "SplitPlotData",
    "SplitPlotResult",
    "split_plot_or",
    "read_split_plot_excel",
]
