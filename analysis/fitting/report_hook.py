"""The study report's fitted-curve figure: parametric ROC fits beside the empirical operating points.

Called by :func:`analysis.report.write_report`; returns the figure (for HTML and PDF) and the
fits as a JSON section (``results.json["roc_fits"]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.data import ObserverData

__all__ = ["fitted_curve_section"]


def fitted_curve_section(data: ObserverData, model: str = "binormal") -> tuple[list[tuple[str, str, Any]], dict[str, Any] | None, list[str]]:
    """Fit ``model`` to every treatment and reader and draw the curves beside the empirical points.

    Returns
    -------
    figures : list of (id, caption, matplotlib figure)
        Empty when the study has no normal cases (no ROC curve exists).
    json_section : dict or None
        :meth:`RocFitSet.to_dict` of the fits.
    notes : list of str
        One line per fit that is not ``"ok"`` (status and reason), for the report's warnings.
    """
    if data.n_normal == 0:
        return [], None, ["No fitted ROC curves: the study has no normal cases."]
    from analysis.fitting.api import fit_roc
    from analysis.fitting.plot import plot_fits
    from analysis.fitting.results import MODEL_NAMES
    from analysis.report import _mpl

    fits = fit_roc(data, model)
    # where the binormal estimate does not exist (degenerate data), draw the CBM fit instead
    fallback = {}
    if model == "binormal":
        for f in fits:
            if f.status == "degenerate":
                cbm = fit_roc(data, "cbm", treatments=[f.treatment], readers=[f.reader]).fits[0]
                if cbm.ok:
                    fallback[(f.treatment, f.reader)] = cbm
    _mpl()  # the report's matplotlib style
    fig = plot_fits(fits, reader_groups=data.reader_groups, replacements=fallback)
    source = " of the highest-rating inferred ROC data" if data.paradigm != "ROC" else ""
    caption = (
        f"Fitted ROC curves ({MODEL_NAMES.get(model, model)}; lines) beside the "
        f"empirical operating points{source} (markers, joined by dotted lines), one panel per reader. "
        "The legend gives each treatment's fitted AUC"
        + ("; a dashed line is the contaminated binormal (CBM) fit where the binormal estimate does not exist (degenerate data)" if fallback else "")
        + ". Parameters, standard errors, thresholds and goodness of fit: results.json, key roc_fits "
        "(docs/analysis-fitting.md)."
    )
    notes = [f"ROC fit ({model}), treatment {f.treatment}, reader {f.reader}: {f.status}: {f.reason}" for f in fits if f.status != "ok" and f.reason]
    doc = fits.to_dict()
    if fallback:
        doc["cbm_where_degenerate"] = [f.to_dict() for f in fallback.values()]
    return [("fig-roc-fits", caption, fig)], doc, notes
