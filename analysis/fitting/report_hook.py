"""The study report's fitted-curve figure: parametric ROC fits beside the empirical operating points.

Called by :func:`analysis.report.write_report`; returns the figure (for HTML and PDF) and the
fits as a JSON section (``results.json["roc_fits"]``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["fitted_curve_section"]


def fitted_curve_section(data, model: str = "binormal") -> tuple[list[tuple[str, str, Any]], dict[str, Any] | None, list[str]]:
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
    from analysis.fitting.results import MODEL_NAMES
    from analysis.report import _mpl, _treatment_style

    fits = fit_roc(data, model)
    # where the binormal estimate does not exist (degenerate data), draw the CBM fit instead
    fallback = {}
    if model == "binormal":
        for f in fits:
            if f.status == "degenerate":
                cbm = fit_roc(data, "cbm", treatments=[f.treatment], readers=[f.reader]).fits[0]
                if cbm.ok:
                    fallback[(f.treatment, f.reader)] = cbm
    plt = _mpl()
    readers = list(data.readers)
    ncols = min(4, len(readers))
    nrows = int(math.ceil(len(readers) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows + 0.4), squeeze=False,
                             sharex=True, sharey=True)
    for n, r in enumerate(readers):
        ax = axes[n // ncols][n % ncols]
        for i, t in enumerate(data.treatments):
            f = fits.get(t, r)
            style = _treatment_style(i)
            ex, ey = f.operating_points()
            ax.plot(np.concatenate([[0.0], ex[::-1], [1.0]]), np.concatenate([[0.0], ey[::-1], [1.0]]),
                    lw=0.6, alpha=0.6, color=style["color"], linestyle=":")
            ax.plot(ex, ey, "o", ms=3.2, color=style["color"])
            x, y = f.curve()
            label = f"{t}: " + (f"AUC {f.auc:.3f}" if f.ok else f.status)
            alt = fallback.get((t, r))
            if alt is not None:
                x, y = alt.curve()
                label = f"{t}: CBM AUC {alt.auc:.3f}"
                style = dict(style, linestyle="--")
            if x.size:
                ax.plot(x, y, lw=1.3, label=label, **style)
            else:
                ax.plot([], [], lw=1.3, label=label, **style)
        ax.plot([0, 1], [0, 1], color="#cccccc", lw=0.7, ls=":", zorder=0)
        group = data.reader_groups.get(r)
        ax.set_title(f"Reader {r}" + (f" ({group})" if group else ""), fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        ax.legend(loc="lower right", frameon=False, fontsize=6.5, handlelength=1.6)
    for n in range(len(readers), nrows * ncols):
        axes[n // ncols][n % ncols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("FPF")
    for row in axes:
        row[0].set_ylabel("TPF")
    fig.tight_layout()
    source = " of the highest-rating inferred ROC data" if data.paradigm == "FROC" else ""
    caption = (
        f"Fitted ROC curves ({MODEL_NAMES.get(model, model)}; lines) beside the "
        f"empirical operating points{source} (markers, joined by dotted lines), one panel per reader. "
        "The legend gives each treatment's fitted AUC"
        + ("; a dashed line is the contaminated binormal (CBM) fit where the binormal estimate does not "
           "exist (degenerate data)" if fallback else "")
        + ". Parameters, standard errors, thresholds and goodness of fit: results.json, key roc_fits "
        "(docs/analysis-fitting.md)."
    )
    notes = [f"ROC fit ({model}), treatment {f.treatment}, reader {f.reader}: {f.status}: {f.reason}"
             for f in fits if f.status != "ok" and f.reason]
    doc = fits.to_dict()
    if fallback:
        doc["cbm_where_degenerate"] = [f.to_dict() for f in fallback.values()]
    return [("fig-roc-fits", caption, fig)], doc, notes
