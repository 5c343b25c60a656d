"""Statistical analysis of observer studies: ROC/FROC data, figures of merit, significance tests.

Everything below is importable from ``analysis`` directly (``from analysis import
significance_test``); each name is loaded from its module on first use (PEP 562), so that
``import analysis`` (and ``tsct analyze --help``) does not load NumPy, pandas, SciPy or
Matplotlib.  To export a new name, add it to :data:`_EXPORTS` under its module.

* data, file formats, figures of merit, jackknife, empirical curves: :mod:`analysis.data`,
  :mod:`analysis.io`, :mod:`analysis.fom`, :mod:`analysis.curves`;
* significance tests (DBM, Obuchowski-Rockette), results, power and sample size:
  :mod:`analysis.significance`, :mod:`analysis.results`, :mod:`analysis.power`;
* subgroups, the study report and the optional RJafroc (R, via rpy2) backend:
  :mod:`analysis.subgroups`, :mod:`analysis.report`, :mod:`analysis.rjafroc_backend`;
* degenerate data (no p-value from rounding noise): :mod:`analysis.degenerate`;
* RJafroc's further methods -- LROC data, stand-alone CAD vs radiologists, split-plot designs:
  :mod:`analysis.lroc`, :mod:`analysis.cad_vs_rad`, :mod:`analysis.split_plot` (ROC curve fits: :mod:`analysis.fitting`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: module -> the public names it exports through ``analysis``
_EXPORTS: dict[str, tuple[str, ...]] = {
    "analysis.data": ("Lesion", "ObserverData", "ObserverDataError", "Problem"),
    "analysis.fom": (
        "EXPERIMENTAL_FOMS",
        "FOMS",
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
    ),
    "analysis.io": (
        "TIDY_COLUMNS",
        "UnsupportedDataError",
        "read_imrmc",
        "read_jafroc_excel",
        "read_observer_data",
        "read_tidy_csv",
        "write_imrmc",
        "write_jafroc_excel",
        "write_observer_data",
        "write_tidy_csv",
    ),
    "analysis.curves": (
        "CURVES",
        "CURVE_AXES",
        "average_curve",
        "curve_auc",
        "empirical_curve",
        "empirical_curves",
    ),
    "analysis.significance": (
        "significance_test",
        "BackendNotAvailableError",
        "COVARIANCE_METHODS",
        "U_STATISTIC_FOMS",
    ),
    "analysis.results": (
        "SignificanceResult",
        "AnalysisResult",
        "Comparison",
        "TreatmentEstimate",
        "Table",
        "Provenance",
        "PowerResult",
        "SampleSizeResult",
        "PowerTable",
    ),
    "analysis.stats": ("MRMCInputError", "MRMCWarning"),
    "analysis.power": (
        "PilotVarianceComponents",
        "pilot_variance_components",
        "power_from_or_components",
        "power_from_dbm_components",
        "study_power",
        "sample_size",
        "power_table",
        "planned_effect_size",
        "POWER_METHODS",
    ),
    "analysis.subgroups": (
        "subgroup_analysis",
        "available_subgroups",
        "Subgroup",
        "SubgroupResult",
        "SubgroupError",
        "SubgroupWarning",
    ),
    "analysis.report": ("write_report", "ReportPaths"),
    "analysis.rjafroc_backend": (
        "rjafroc_available",
        "significance_test_rjafroc",
        "compare_results",
        "CrosscheckReport",
    ),
    "analysis.degenerate": ("guard_degenerate", "identical_treatments"),
    "analysis.cad_vs_rad": (
        "CadVsRadResult",
        "add_cad_reader",
        "cad_marks_from_case_marks",
        "cad_vs_rad",
        "read_cad_marks",
        "st_cad_vs_rad",
    ),
    "analysis.formats.lroc_excel": ("read_lroc_excel", "write_lroc_excel"),
    "analysis.lroc": (
        "LROC_FOMS",
        "LrocData",
        "lroc_fom_matrix",
        "lroc_jackknife_fom_matrix",
        "lroc_significance_test",
    ),
    "analysis.split_plot": ("SplitPlotData", "SplitPlotResult", "read_split_plot_excel", "split_plot_or"),
}

_MODULE_OF: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str) -> Any:
    """Load ``analysis.<name>`` from its module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see ordinary imports
    from analysis.cad_vs_rad import (
        CadVsRadResult,
        add_cad_reader,
        cad_marks_from_case_marks,
        cad_vs_rad,
        read_cad_marks,
        st_cad_vs_rad,
    )
    from analysis.curves import CURVE_AXES, CURVES, average_curve, curve_auc, empirical_curve, empirical_curves
    from analysis.data import Lesion, ObserverData, ObserverDataError, Problem
    from analysis.degenerate import guard_degenerate, identical_treatments
    from analysis.fom import (
        EXPERIMENTAL_FOMS,
        FOMS,
        FomError,
        check_fom,
        fom_and_jackknife,
        fom_case_ids,
        fom_case_set,
        fom_frame,
        fom_matrices,
        fom_matrix,
        jackknife_fom_matrix,
        pseudovalues,
        valid_foms,
    )
    from analysis.formats.lroc_excel import read_lroc_excel, write_lroc_excel
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
    from analysis.lroc import LROC_FOMS, LrocData, lroc_fom_matrix, lroc_jackknife_fom_matrix, lroc_significance_test
    from analysis.power import (
        POWER_METHODS,
        PilotVarianceComponents,
        pilot_variance_components,
        planned_effect_size,
        power_from_dbm_components,
        power_from_or_components,
        power_table,
        sample_size,
        study_power,
    )
    from analysis.report import ReportPaths, write_report
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
    from analysis.rjafroc_backend import CrosscheckReport, compare_results, rjafroc_available, significance_test_rjafroc
    from analysis.significance import COVARIANCE_METHODS, U_STATISTIC_FOMS, BackendNotAvailableError, significance_test
    from analysis.split_plot import SplitPlotData, SplitPlotResult, read_split_plot_excel, split_plot_or
    from analysis.stats import MRMCInputError, MRMCWarning
    from analysis.subgroups import (
        Subgroup,
        SubgroupError,
        SubgroupResult,
        SubgroupWarning,
        available_subgroups,
        subgroup_analysis,
    )
