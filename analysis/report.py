"""The study report: HTML (and PDF), with JSON and CSV files that let every figure be recomputed.

:func:`write_report` runs the significance test of a study (:func:`analysis.significance_test`),
its subgroup analyses (:func:`analysis.subgroup_analysis`) and its empirical curves
(:func:`analysis.empirical_curves`), and writes to ``<out_dir>/<study>/``:

``report.html``
    Self-contained (plots as inline SVG, no external files), printable.  In this order: title
    and provenance; study summary; FOM table (reader x treatment, reader average); the RRRC
    result in words and tables, then FRRC and RRFC; variance components; subgroups; plots
    (reader-averaged and per-reader curves, forest plot of treatment differences); a methods
    paragraph; references; how to reproduce; warnings.
``results.json``
    The significance-test JSON (``docs/analysis-json.md``) plus ``report`` (study summary,
    files) and ``subgroups``.
``foms.csv``, ``differences.csv``, ``curves.csv``
    Every number in the tables and every point in the plots, each row carrying the package
    version and the input's SHA-256.
``report.pdf``
    The same content for print, made with matplotlib's ``PdfPages`` (no system libraries).

``docs/analysis-report.md`` lists what each section shows and how to recompute it.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from analysis._text import format_number
from analysis.data import ObserverData
from analysis.results import ANALYSIS_DESCRIPTIONS, Provenance, SignificanceResult

__all__ = ["ReportPaths", "write_report", "REPORT_SCHEMA_ID", "study_slug"]

REPORT_SCHEMA_ID = "tsct.analysis.report/1"

#: Okabe-Ito colours (distinguishable with colour-vision deficiency), one per treatment.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_LINESTYLES = ("-", "--", "-.", ":")

_FOM_WORDS = {
    "ROI": (
        "the region-of-interest (ROI) figure of merit: the probability that a region containing a "
        "lesion is rated higher than a lesion-free region, over every pair of such regions on any "
        "cases (ties count one half)"
    ),
    "wAFROC": (
        "the area under the empirical weighted alternative free-response ROC (wAFROC) curve: the "
        "probability that a lesion, weighted so that every abnormal case counts equally, is rated "
        "higher than the highest-rated non-lesion mark on a normal case (unmarked lesions and "
        "unmarked normal cases rank below every mark; ties count one half)"
    ),
    "AFROC": (
        "the area under the empirical alternative free-response ROC (AFROC) curve: the probability "
        "that a lesion (all lesions pooled) is rated higher than the highest-rated non-lesion mark "
        "on a normal case"
    ),
    "wAFROC1": (
        "the area under the empirical wAFROC1 curve, which compares each lesion (weighted so that "
        "every abnormal case counts equally) with the highest-rated non-lesion mark on every case, "
        "normal or abnormal"
    ),
    "AFROC1": (
        "the area under the empirical AFROC1 curve, which compares each lesion with the "
        "highest-rated non-lesion mark on every case, normal or abnormal"
    ),
    "HrAuc": ("the area under the empirical ROC curve of the highest-rating inferred ROC data (each case rated by its highest-rated mark)"),
    "Wilcoxon": ("the area under the empirical (trapezoidal) ROC curve, which equals the Wilcoxon-Mann-Whitney statistic"),
    "HrSe": "the highest-rating sensitivity: the fraction of abnormal cases with any mark",
    "HrSp": "the highest-rating specificity: the fraction of normal cases without any mark",
    "MaxLLF": "the fraction of lesions marked (the ordinate of the end point of the FROC curve)",
    "MaxNLF": "the number of non-lesion marks per normal case (the abscissa of the FROC end point)",
    "MaxNLFAllCases": "the number of non-lesion marks per case, over all cases",
}

#: Reference list (numbered as cited in the methods paragraph).
REFERENCES = {
    "DBM": (
        "Dorfman DD, Berbaum KS, Metz CE. Receiver operating characteristic rating analysis: "
        "generalization to the population of readers and patients with the jackknife method. "
        "Invest Radiol. 1992;27(9):723-731."
    ),
    "OR": (
        "Obuchowski NA, Rockette HE. Hypothesis testing of diagnostic accuracy for multiple readers "
        "and multiple tests: an ANOVA approach with dependent observations. Commun Stat Simul "
        "Comput. 1995;24(2):285-308."
    ),
    "Hillis2007": (
        "Hillis SL. A comparison of denominator degrees of freedom methods for multiple observer ROC analysis. Stat Med. 2007;26(3):596-619."
    ),
    "Hillis2008": (
        "Hillis SL, Berbaum KS, Metz CE. Recent developments in the Dorfman-Berbaum-Metz "
        "procedure for multireader ROC study analysis. Acad Radiol. 2008;15(5):647-661."
    ),
    "Hillis2005": (
        "Hillis SL, Obuchowski NA, Schartz KM, Berbaum KS. A comparison of the Dorfman-Berbaum-"
        "Metz and Obuchowski-Rockette methods for receiver operating characteristic (ROC) data. "
        "Stat Med. 2005;24(10):1579-1607."
    ),
    "Chakraborty2004": (
        "Chakraborty DP, Berbaum KS. Observer studies involving detection and localization: "
        "modeling, analysis, and validation. Med Phys. 2004;31(8):2313-2330."
    ),
    "Obuchowski2000": (
        "Obuchowski NA, Lieber ML, Powell KA. Data analysis for detection and localization of "
        "multiple abnormalities with application to mammography. Acad Radiol. 2000;7(7):516-525."
    ),
    "Chakraborty2017": (
        "Chakraborty DP. Observer Performance Methods for Diagnostic Imaging: Foundations, "
        "Modeling, and Applications with R-Based Examples. Boca Raton, FL: CRC Press; 2017."
    ),
    "DeLong1988": (
        "DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated "
        "receiver operating characteristic curves: a nonparametric approach. Biometrics. "
        "1988;44(3):837-845."
    ),
}

_VARIANCE_WORDS = {
    "VarR": "reader variance (spread of the readers' FOMs beyond case sampling)",
    "VarTR": "treatment-by-reader interaction variance",
    "Cov1": "covariance of two FOMs of the same reader in different treatments (case sampling)",
    "Cov2": "covariance of two readers' FOMs in the same treatment (case sampling)",
    "Cov3": "covariance of different readers in different treatments (case sampling)",
    "Var": "case-sampling variance of one FOM",
    "VarC": "case variance (pseudovalue scale)",
    "VarTC": "treatment-by-case interaction variance",
    "VarRC": "reader-by-case interaction variance",
    "VarErr": "error (treatment-by-reader-by-case) variance",
}

#: FOMs for which a smaller value is better (false-positive counts).
_LOWER_IS_BETTER = ("MaxNLF", "MaxNLFAllCases")

_SUBGROUP_TITLES = {
    "reader_group": "reader group",
    "lesion_location": "lesion location",
    "lesion_type": "lesion type",
}


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` wrote each file.

    Attributes
    ----------
    directory : Path
        ``<out_dir>/<study>/``.
    html, json, foms_csv, differences_csv, curves_csv : Path
    pdf : Path or None
        None when the PDF was not requested.
    """

    directory: Path
    html: Path
    json: Path
    foms_csv: Path
    differences_csv: Path
    curves_csv: Path
    pdf: Path | None

    def files(self) -> tuple[Path, ...]:
        """Every file written, in the order of the attributes."""
        out = [self.html, self.json, self.foms_csv, self.differences_csv, self.curves_csv]
        if self.pdf is not None:
            out.append(self.pdf)
        return tuple(out)


def study_slug(name: str) -> str:
    """A folder name for a study: letters, digits, ``.``, ``_`` and ``-`` (others -> ``-``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")
    return slug or "study"


# ------------------------------------------------------------------------------------------
# number formatting for the report
# ------------------------------------------------------------------------------------------


def _f(x: Any, digits: int = 4) -> str:
    return format_number(x, digits, sci_digits=max(digits - 2, 1), none="–", infinities=("∞", "−∞"), minus="−")


def _p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "NaN"
    p = float(p)
    if p < 1e-4:
        return f"{p:.1e}".replace("-", "−")
    return f"{p:.4f}"


def _p_words(p: float) -> str:
    if math.isnan(p):
        return "no p-value"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def _df(x: Any) -> str:
    if x is None:
        return "z"
    x = float(x)
    if math.isinf(x):
        return "∞"
    return f"{x:.2f}"


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.titlesize": 9.5,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 100,
        }
    )
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:]
    # natural size (width/height in pt), shrunk to the column width by CSS when wider
    return svg.replace("<svg", '<svg class="figure" role="img"', 1)


def _curve_kinds(data: ObserverData, fom: str) -> list[str]:
    """Curves to plot: the FOM's own curve first, then wAFROC (FROC data) and ROC."""
    if data.paradigm in ("ROC", "ROI"):
        return ["ROC"]  # ROI: the case-level ROC of each case's highest-rated region
    own = {"Wilcoxon": "ROC", "HrAuc": "ROC", "AFROC": "AFROC", "wAFROC": "wAFROC", "AFROC1": "AFROC1", "wAFROC1": "wAFROC1"}.get(fom)
    kinds: list[str] = []
    for k in (own, "wAFROC" if data.n_normal else "wAFROC1", "ROC" if data.n_normal else None):
        if k is not None and k not in kinds:
            kinds.append(k)
    return kinds


def _treatment_style(i: int) -> dict[str, Any]:
    return {"color": _COLOURS[i % len(_COLOURS)], "linestyle": _LINESTYLES[(i // len(_COLOURS)) % len(_LINESTYLES)]}


def _figure_average_curves(curves: dict[str, pd.DataFrame], data: ObserverData):
    from analysis.curves import CURVE_AXES, curve_auc

    plt = _mpl()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.5), squeeze=False)
    for ax, (kind, frame) in zip(axes[0], curves.items()):
        avg = frame[frame["average"].notna()]
        aucs = curve_auc(avg)
        for i, t in enumerate(data.treatments):
            pts = avg[avg["treatment"] == t].sort_values("point")
            auc = float(aucs.loc[aucs["treatment"] == t, "auc"].iloc[0])
            ax.plot(pts["x"], pts["y"], lw=1.6, label=f"{t} (area {auc:.3f})", **_treatment_style(i))
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls=":", zorder=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        xl, yl = CURVE_AXES[kind]
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        title = f"{kind}" + (" (highest-rating inferred)" if kind == "ROC" and data.paradigm != "ROC" else "")
        ax.set_title(f"{title}, reader-averaged")
        ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def _figure_reader_curves(kind: str, frame: pd.DataFrame, data: ObserverData):
    from analysis.curves import CURVE_AXES

    plt = _mpl()
    readers = list(data.readers)
    ncols = min(4, len(readers))
    nrows = int(math.ceil(len(readers) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.45 * ncols, 2.45 * nrows + 0.35), squeeze=False, sharex=True, sharey=True)
    per_reader = frame[frame["average"].isna()]
    for n, r in enumerate(readers):
        ax = axes[n // ncols][n % ncols]
        for i, t in enumerate(data.treatments):
            pts = per_reader[(per_reader["reader"] == r) & (per_reader["treatment"] == t)].sort_values("point")
            ax.plot(pts["x"], pts["y"], lw=1.2, label=t, **_treatment_style(i))
        ax.plot([0, 1], [0, 1], color="#cccccc", lw=0.7, ls=":", zorder=0)
        group = data.reader_groups.get(r)
        ax.set_title(f"Reader {r}" + (f" ({group})" if group else ""), fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    for n in range(len(readers), nrows * ncols):
        axes[n // ncols][n % ncols].set_visible(False)
    xl, yl = CURVE_AXES[kind]
    for ax in axes[-1]:
        ax.set_xlabel(xl)
    for row in axes:
        row[0].set_ylabel(yl)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(
        handles,
        [f"treatment {x}" if re.fullmatch(r"[0-9]+", x) else x for x in labels],
        loc="upper center",
        ncol=min(len(labels), 6),
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return fig


@dataclass(frozen=True)
class _ForestRow:
    label: str
    estimate: float
    lower: float
    upper: float
    kind: Literal["overall", "reader", "subgroup"]
    analysis: str


def _forest_pairs(result: SignificanceResult) -> list[tuple[str, str]]:
    t = result.treatments
    if len(t) <= 3:
        return [(t[a], t[b]) for a in range(len(t)) for b in range(a + 1, len(t))]
    return [(t[0], t[b]) for b in range(1, len(t))]


def _forest_rows(result: SignificanceResult, subgroups: Sequence[Any], pair: tuple[str, str]) -> list[_ForestRow]:
    rows: list[_ForestRow] = []
    primary = "RRRC" if "RRRC" in result.analyses else next(iter(result.analyses))
    c = result.analyses[primary].difference(*pair)
    rows.append(_ForestRow(f"All readers ({primary})", c.estimate, c.ci_lower, c.ci_upper, "overall", primary))
    if "FRRC" in result.analyses:
        for r in result.readers:
            c = result.analyses["FRRC"].difference(*pair, reader=r)
            rows.append(_ForestRow(f"Reader {r}", c.estimate, c.ci_lower, c.ci_upper, "reader", "FRRC"))
    for sg in subgroups:
        for s in sg.subgroups:
            if s.result is None:
                continue
            a = s.primary_analysis
            c = s.result.analyses[a].difference(*pair)
            title = _SUBGROUP_TITLES.get(s.by, s.by)
            rows.append(_ForestRow(f"{title}: {s.label} ({a})", c.estimate, c.ci_lower, c.ci_upper, "subgroup", a))
    return rows


def _figure_forest(result: SignificanceResult, subgroups: Sequence[Any]):
    from matplotlib.ticker import MaxNLocator

    plt = _mpl()
    pairs = _forest_pairs(result)
    all_rows = [_forest_rows(result, subgroups, p) for p in pairs]
    n_rows = len(all_rows[0])
    ncols = min(len(pairs), 2)
    nrows = int(math.ceil(len(pairs) / ncols))
    height = 0.26 * n_rows + 1.2
    fig, axes = plt.subplots(nrows, ncols, figsize=((6.4 if ncols == 1 else 4.9) * ncols, height * nrows), squeeze=False)
    marker = {"overall": ("D", 6.5), "reader": ("o", 4.5), "subgroup": ("s", 4.5)}
    for n, (pair, rows) in enumerate(zip(pairs, all_rows)):
        ax = axes[n // ncols][n % ncols]
        y = np.arange(len(rows))[::-1]
        for yi, row in zip(y, rows):
            m, size = marker[row.kind]
            colour = "#111111" if row.kind == "overall" else ("#555555" if row.kind == "reader" else "#0072B2")
            lo, hi = row.lower, row.upper
            if math.isfinite(lo) and math.isfinite(hi):
                ax.plot([lo, hi], [yi, yi], color=colour, lw=1.6 if row.kind == "overall" else 1.1)
            ax.plot([row.estimate], [yi], marker=m, ms=size, color=colour, ls="none")
        ax.axvline(0.0, color="#999999", lw=0.8, ls="--", zorder=0)
        ax.set_yticks(y)
        ax.set_yticklabels([r.label for r in rows], fontsize=7.5)
        for lab, row in zip(ax.get_yticklabels(), rows):
            if row.kind == "overall":
                lab.set_fontweight("bold")
        ax.set_xlabel(f"{result.fom} difference {pair[0]} − {pair[1]} (95% CI)")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        lo_x, hi_x = ax.get_xlim()
        span = max(abs(lo_x), abs(hi_x))
        ax.set_xlim(-span, span)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, symmetric=True))
        ax.text(0.98, 1.005, f"favours {pair[0]} →", transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5, color="#444444")
        ax.text(0.02, 1.005, f"← favours {pair[1]}", transform=ax.transAxes, ha="left", va="bottom", fontsize=7.5, color="#444444")
    for n in range(len(pairs), nrows * ncols):
        axes[n // ncols][n % ncols].set_visible(False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------
# tables and text
# ------------------------------------------------------------------------------------------


def _study_summary(data: ObserverData) -> dict[str, Any]:
    attrs = data.lesion_attribute_names()
    per_case = pd.Series(data.lesions_per_case).value_counts().sort_index()
    lesion_rows = [
        {"case_id": c, "lesion_id": les.id, **{a: les.attributes.get(a) for a in attrs}}
        for c, case in zip(data.abnormal_cases, data.lesions)
        for les in case
    ]
    frame = pd.DataFrame(lesion_rows)
    by_attr: dict[str, dict[str, int]] = {}
    for a in attrs:
        counts = frame[a].fillna("(not recorded)").value_counts(sort=False)
        by_attr[a] = {str(k): int(v) for k, v in counts.items()}
    crosstab = None
    if "location" in attrs and "lesion_type" in attrs:
        ct = pd.crosstab(frame["location"].fillna("(not recorded)"), frame["lesion_type"].fillna("(not recorded)"))
        crosstab = {
            "rows": [str(x) for x in ct.index],
            "columns": [str(x) for x in ct.columns],
            "values": ct.to_numpy().astype(int).tolist(),
        }
    marks = []
    for i, t in enumerate(data.treatments):
        nl = np.isfinite(data.nl[i])
        ll = np.isfinite(data.ll[i])
        if data.paradigm == "ROC":
            marks.append({"treatment": t, "nl_marks": None, "ll_marks": None})
        else:
            marks.append({"treatment": t, "nl_marks": int(nl.sum()), "ll_marks": int(ll.sum())})
    return {
        "name": data.name,
        "paradigm": data.paradigm,
        "treatments": list(data.treatments),
        "readers": [{"reader": r, "group": data.reader_groups.get(r)} for r in data.readers],
        "reader_groups": sorted(set(data.reader_groups.values())),
        "n_normal": data.n_normal,
        "n_abnormal": data.n_abnormal,
        "n_cases": data.n_cases,
        "n_lesions": data.n_lesions,
        "lesions_per_case": {str(int(k)): int(v) for k, v in per_case.items()},
        "lesions_by_attribute": by_attr,
        "lesions_location_by_type": crosstab,
        "marks": marks,
    }


def _fom_table(result: SignificanceResult, data: ObserverData) -> dict[str, Any]:
    rows = []
    for j, r in enumerate(result.readers):
        rows.append({"reader": r, "group": data.reader_groups.get(r) or "", "values": [_f(v) for v in result.foms[:, j]]})
    return {
        "treatments": list(result.treatments),
        "rows": rows,
        "average": [_f(v) for v in result.treatment_means],
        "has_groups": bool(data.reader_groups),
    }


def _comparison_rows(comparisons) -> list[dict[str, str]]:
    return [
        {
            "reader": c.reader or "",
            "comparison": f"{c.treatments[0]} − {c.treatments[1]}",
            "estimate": _f(c.estimate),
            "se": _f(c.se),
            "df": _df(c.df),
            "stat_name": c.statistic_name,
            "statistic": _f(c.statistic, 3),
            "p": _p(c.p_value),
            "ci": f"{_f(c.ci_lower)} to {_f(c.ci_upper)}",
            "significant": (not math.isnan(c.p_value)) and c.p_value < c.alpha,
        }
        for c in comparisons
    ]


def _headline(result: SignificanceResult, analysis: str) -> list[str]:
    """Sentences such as "CT+TS improved the wAFROC FOM over CT by 0.053 (95% CI 0.012 to
    0.094, p = 0.013, RRRC)"; the change is (second − first) of the input order."""
    res = result.analyses[analysis]
    level = f"{100 * (1 - result.alpha):g}%"
    t = result.treatments
    pairs = [(t[a], t[b]) for a in range(len(t)) for b in range(a + 1, len(t))]
    if len(t) > 3:
        pairs = [(t[0], t[b]) for b in range(1, len(t))]
    higher_is_better = result.fom not in _LOWER_IS_BETTER
    up, down = ("improved", "lowered") if higher_is_better else ("increased", "decreased")

    def n3(x: float) -> str:
        return f"{x:.3f}".replace("-", "−")

    out = []
    for a_id, b_id in pairs:
        c = res.difference(a_id, b_id)
        a, b = _treatment_name(a_id), _treatment_name(b_id)
        change = -c.estimate
        lo, hi = -c.ci_upper, -c.ci_lower
        sig = (not math.isnan(c.p_value)) and c.p_value < result.alpha
        verdict = "statistically significant" if sig else "not statistically significant"
        if math.isnan(c.p_value):  # degenerate data (analysis/degenerate.py): say why, not a verdict
            verdict = "not tested: the data are degenerate (see Notes), so no p-value is given"
        if change > 0:
            verb = f"{up} the {result.fom} figure of merit over {a} by {n3(change)}"
            ci = f"{level} CI {n3(lo)} to {n3(hi)}"
        elif change < 0:
            verb = f"{down} the {result.fom} figure of merit relative to {a} by {n3(-change)}"
            ci = f"change {n3(change)}, {level} CI {n3(lo)} to {n3(hi)}"
        else:
            verb = f"gave the same {result.fom} figure of merit as {a}"
            ci = f"{level} CI {n3(lo)} to {n3(hi)}"
        if b.startswith("treatment "):
            b = "T" + b[1:]
        if math.isnan(c.p_value):
            out.append(f"{b} {verb} ({_p_words(c.p_value)}, {analysis}); the difference is {verdict}.")
        else:
            out.append(f"{b} {verb} ({ci}, {_p_words(c.p_value)}, {analysis}); the difference is {verdict} at α = {result.alpha:g}.")
    return out


def _treatment_name(t: str) -> str:
    """A treatment ID as a noun: bare numbers become "treatment 2"."""
    return f"treatment {t}" if re.fullmatch(r"[0-9]+", t) else t


def _test_line(res) -> str:
    if res.statistic_name == "chi2":
        return f"χ²({_f(res.df, 0)}) = {_f(res.statistic, 3)}, p = {_p(res.p_value)}"
    return f"F({_f(res.df, 0)}, {_df(res.ddf)}) = {_f(res.statistic, 3)}, p = {_p(res.p_value)}"


def _analysis_block(result: SignificanceResult, name: str) -> dict[str, Any]:
    res = result.analyses[name]
    level = f"{100 * (1 - result.alpha):g}%"
    return {
        "name": name,
        "description": ANALYSIS_DESCRIPTIONS[name],
        "test": _test_line(res),
        "ms_treatment": _f(res.ms_treatment, 6),
        "ms_error": _f(res.ms_error, 6),
        "error_term": res.error_term,
        "level": level,
        "differences": _comparison_rows(res.differences),
        "treatments": [
            {
                "treatment": t.treatment,
                "estimate": _f(t.estimate),
                "se": _f(t.se),
                "df": "z" if t.normal_reference else _df(t.df),
                "ci": f"{_f(t.ci_lower)} to {_f(t.ci_upper)}",
            }
            for t in res.treatment_cis
        ],
        "reader_differences": _comparison_rows(res.reader_differences),
        "warnings": list(res.warnings),
        "headline": _headline(result, name),
    }


def _variance_rows(result: SignificanceResult) -> list[dict[str, str]]:
    vc = result.variance_components
    has_rho = "rho" in vc.columns
    return [
        {
            "component": k,
            "estimate": _f(vc.value(k, "estimate"), 6),
            "rho": _f(vc.value(k, "rho"), 4) if has_rho and not math.isnan(vc.value(k, "rho")) else "",
            "meaning": _VARIANCE_WORDS.get(k, ""),
        }
        for k in vc.index
    ]


def _subgroup_tables(subgroups: Sequence[Any], result: SignificanceResult) -> list[dict[str, Any]]:
    tables = []
    for sg in subgroups:
        rows = []
        for s in sg.subgroups:
            base = {
                "label": s.label,
                "readers": s.n_readers,
                "n_normal": s.n_normal,
                "n_abnormal": s.n_abnormal,
                "n_lesions": s.n_lesions,
            }
            if s.result is None:
                rows.append({**base, "analysis": "–", "means": ["–"] * result.n_treatments, "comparisons": [], "note": s.error or ""})
                continue
            a = s.primary_analysis
            comps = []
            for c in s.result.analyses[a].differences:
                comps.append(
                    {
                        "comparison": f"{c.treatments[0]} − {c.treatments[1]}",
                        "estimate": _f(c.estimate),
                        "ci": f"{_f(c.ci_lower)} to {_f(c.ci_upper)}",
                        "p": _p(c.p_value),
                    }
                )
            rows.append(
                {**base, "analysis": a, "means": [_f(v) for v in s.result.treatment_means], "comparisons": comps, "note": " ".join(s.warnings)}
            )
        tables.append(
            {
                "by": sg.by,
                "title": _SUBGROUP_TITLES.get(sg.by, sg.by),
                "rows": rows,
                "definition": sg.to_dict()["definition"],
                "warnings": list(sg.warnings),
            }
        )
    return tables


def _methods(result: SignificanceResult, data: ObserverData, subgroups: Sequence[Any], backend_note: str, version: str) -> tuple[str, list[str]]:
    """The methods paragraph and the ordered reference keys it cites."""
    refs: list[str] = []

    def cite(*keys: str) -> str:
        nums = []
        for k in keys:
            if k not in refs:
                refs.append(k)
            nums.append(refs.index(k) + 1)
        return "[" + ", ".join(str(n) for n in nums) + "]"

    fom = result.fom
    words = _FOM_WORDS.get(fom, f"the {fom} figure of merit")
    fom_cites = {"FROC": ("Chakraborty2004", "Chakraborty2017"), "ROI": ("Obuchowski2000", "Chakraborty2017")}.get(
        data.paradigm, ("Chakraborty2017",)
    )
    parts = []
    paradigm = {
        "FROC": "free-response (FROC) marks with ratings",
        "ROI": "a rating of every region of interest (ROI) of each case",
    }.get(data.paradigm, "receiver operating characteristic (ROC) ratings")
    parts.append(
        f"{data.n_readers} readers interpreted {data.n_cases} cases ({data.n_normal} without and "
        f"{data.n_abnormal} with lesions; {data.n_lesions} lesions in total) under each of "
        f"{data.n_treatments} reading conditions ({', '.join(data.treatments)}) in a fully crossed "
        f"design, reporting {paradigm}."
    )
    parts.append(f"Each reader's performance in each condition was summarised by {words} ({fom} in RJafroc's terminology) {cite(*fom_cites)}.")
    alpha_txt = f"Tests are two-sided at α = {result.alpha:g} with {100 * (1 - result.alpha):g}% confidence intervals."
    if result.method == "OR":
        or_cite = cite("OR")  # numbered before the covariance estimator's reference
        if result.covariance == "delong":
            cov = f"the DeLong method {cite('DeLong1988')}"
        elif result.covariance == "bootstrap":
            cov = f"a bootstrap stratified by normal and abnormal cases ({result.n_bootstraps} resamples, seed {result.random_state})"
        else:
            cov = "the case-deletion jackknife"
        parts.append(
            "Reader-averaged figures of merit were compared between conditions with the "
            f"Obuchowski-Rockette method {or_cite}, with the case-sampling variances and "
            f"covariances of the figures of merit estimated by {cov}, and Hillis's error term and "
            f"denominator degrees of freedom {cite('Hillis2007', 'Hillis2008')}."
        )
        if result.covariance == "jackknife":
            parts.append(
                "With jackknife covariances this analysis is equivalent to the Dorfman-Berbaum-"
                f"Metz (DBM) analysis of jackknife pseudovalues {cite('DBM', 'Hillis2005')}."
            )
    else:
        parts.append(
            "Reader-averaged figures of merit were compared between conditions with the "
            f"Dorfman-Berbaum-Metz (DBM) method {cite('DBM')}: an analysis of variance of the "
            "jackknife pseudovalues of the figure of merit, with Hillis's error term and "
            f"denominator degrees of freedom {cite('Hillis2007', 'Hillis2008')}; it is equivalent "
            f"to the Obuchowski-Rockette method with jackknife covariances {cite('OR', 'Hillis2005')}."
        )
    parts.append(
        "The primary analysis treats both readers and cases as random samples (random-reader "
        "random-case, RRRC), so that its conclusions generalise to the populations of readers and "
        "cases; analyses with fixed readers (FRRC) and with fixed cases (RRFC) are secondary. " + alpha_txt
    )
    if subgroups:
        kinds = ", ".join(_SUBGROUP_TITLES.get(s.by, s.by) for s in subgroups)
        parts.append(
            f"Exploratory subgroup analyses ({kinds}) repeated the same analysis within each "
            "subgroup without adjustment for multiplicity. A reader-group subgroup comprised the "
            "readers of one group and all cases. A lesion-class subgroup comprised all normal "
            "cases and the abnormal cases with at least one lesion of the class; lesions of other "
            "classes, and the marks on them, were excluded, and lesion weights were renormalised "
            "within each case. With a single reader in a subgroup only the fixed-reader analysis "
            "is defined."
        )
    parts.append(backend_note.format(version=version, cite_book=cite("Chakraborty2017")))
    return " ".join(parts), refs


# ------------------------------------------------------------------------------------------
# CSV / JSON outputs
# ------------------------------------------------------------------------------------------


def _foms_frame(result: SignificanceResult, data: ObserverData, prov: Provenance) -> pd.DataFrame:
    rows = []
    for i, t in enumerate(result.treatments):
        for j, r in enumerate(result.readers):
            rows.append(
                {
                    "fom": result.fom,
                    "treatment": t,
                    "reader": r,
                    "reader_group": data.reader_groups.get(r),
                    "kind": "reader",
                    "value": float(result.foms[i, j]),
                }
            )
        rows.append(
            {
                "fom": result.fom,
                "treatment": t,
                "reader": None,
                "reader_group": None,
                "kind": "reader_average",
                "value": float(result.treatment_means[i]),
            }
        )
    frame = pd.DataFrame(rows)
    frame["input_sha256"] = prov.input_sha256
    frame["package_version"] = prov.package_version
    return frame


def _differences_frame(result: SignificanceResult, subgroups: Sequence[Any], prov: Provenance) -> pd.DataFrame:
    overall = result.to_frame()
    overall.insert(0, "subgroup", None)
    overall.insert(0, "subgroup_by", None)
    overall.insert(0, "scope", "overall")
    frames = [overall]
    for sg in subgroups:
        f = sg.to_frame()
        if f.empty:
            continue
        f = f.rename(columns={"by": "subgroup_by"})
        f = f.drop(columns=["n_readers", "n_normal", "n_abnormal", "n_lesions"])
        f.insert(0, "scope", "subgroup")
        frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    out["fom"] = result.fom
    out["method"] = result.method
    out["input_sha256"] = prov.input_sha256
    out["package_version"] = prov.package_version
    return out


# ------------------------------------------------------------------------------------------
# PDF
# ------------------------------------------------------------------------------------------


def _text_pages(pdf, title: str, lines: Sequence[str], *, per_page: int = 78) -> None:
    plt = _mpl()
    for start in range(0, max(len(lines), 1), per_page):
        fig = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
        fig.text(0.06, 0.965, title + (" (continued)" if start else ""), fontsize=12, fontweight="bold", va="top")
        fig.text(0.06, 0.935, "\n".join(lines[start : start + per_page]), family="monospace", fontsize=6.9, va="top", linespacing=1.18)
        pdf.savefig(fig)
        plt.close(fig)


def _wrap(text: str, width: int = 118) -> list[str]:
    import textwrap

    out: list[str] = []
    for para in text.split("\n"):
        out.extend(textwrap.wrap(para, width) or [""])
    return out


def _write_pdf(path: Path, context: dict[str, Any], result: SignificanceResult, subgroups: Sequence[Any], figures: list[tuple[str, Any]]) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _mpl()
    prov = context["provenance"]
    lines = [
        f"Input file: {prov['input_file'] or '(in-memory data)'}",
        f"SHA-256:    {prov['input_sha256'] or '-'}",
        f"tsct:       {prov['package_version']}    computed by: {context['engine']}",
        f"Created:    {prov['created_utc']}",
        "",
        "Main result",
        "-----------",
    ]
    for name in ("RRRC", "FRRC"):
        if name in context["analysis_blocks"]:
            lines += _wrap(" ".join(context["analysis_blocks"][name]["headline"]))
            break
    lines += ["", "Study", "-----"]
    s = context["study"]
    lines += _wrap(
        f"{s['paradigm']} data; treatments: {', '.join(s['treatments'])}; readers: "
        + ", ".join(r["reader"] + (f" ({r['group']})" if r["group"] else "") for r in s["readers"])
        + f"; cases: {s['n_cases']} ({s['n_normal']} normal, {s['n_abnormal']} abnormal); lesions: {s['n_lesions']}."
    )
    lines += [""] + result.summary().as_text().splitlines()
    for table in context["subgroup_tables"]:
        head = f"Subgroups by {table['title']}"
        lines += ["", head, "-" * len(head)] + _wrap(table["definition"])
        for r in table["rows"]:
            base = f"{r['label']}: {r['readers']} readers, {r['n_normal']} normal and {r['n_abnormal']} abnormal cases, {r['n_lesions']} lesions"
            if not r["comparisons"]:
                lines += _wrap(f"  {base}; no analysis: {r['note']}", 116)
                continue
            means = ", ".join(f"{t} {m}" for t, m in zip(context["study"]["treatments"], r["means"]))
            comps = "; ".join(f"{c['comparison']} {c['estimate']} (95% CI {c['ci']}), p = {c['p']}" for c in r["comparisons"])
            lines += _wrap(f"  {base}; FOM {means}; {r['analysis']}: {comps}" + (f" [{r['note']}]" if r["note"] else ""), 116)
    for kind, why in context["subgroups_unavailable"].items():
        lines += [""] + _wrap(f"Subgroups by {kind} unavailable: {why}")
    if context.get("cad"):
        head = "The detector alone vs the radiologists"
        lines += ["", head, "-" * len(head)] + _wrap(context["cad"]["sentence"])
        lines += _wrap("  " + "; ".join(f"{k}: {v}" for k, v in context["cad"]["rows"]), 116)
    lines += ["", "Methods", "-------"] + _wrap(context["methods"]) + ["", "References", "----------"]
    for n, ref in enumerate(context["references"], start=1):
        lines += _wrap(f"[{n}] {ref}")
    lines += ["", "Files", "-----"] + _wrap(
        "Every number and plotted point is in results.json, foms.csv, differences.csv and curves.csv beside this file."
    )
    lines += _wrap("Command: " + context["command"])
    with PdfPages(path, metadata={"Title": context["title"], "Creator": f"tsct {prov['package_version']}"}) as pdf:
        _text_pages(pdf, context["title"], [x.replace("\u2212", "-") for x in lines])
        for n, (caption, fig) in enumerate(figures, start=1):
            _figure_page(pdf, fig, f"Figure {n}. {caption}")
    for _, fig in figures:
        plt.close(fig)


def _figure_page(pdf, fig, caption: str) -> None:
    """Put a figure on an A4 page (rasterised at 200 dpi) with its caption below."""
    import textwrap

    plt = _mpl()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=200, bbox_inches="tight")
    buf.seek(0)
    image = plt.imread(buf)
    page = plt.figure(figsize=(8.27, 11.69))
    h_px, w_px = image.shape[:2]
    width = 0.88
    height = min(width * (h_px / w_px) * (8.27 / 11.69), 0.80)
    width = height / ((h_px / w_px) * (8.27 / 11.69))
    ax = page.add_axes((0.5 - width / 2, 0.93 - height, width, height))
    ax.imshow(image, interpolation="lanczos")
    ax.set_axis_off()
    page.text(0.06, 0.91 - height, "\n".join(textwrap.wrap(caption, 110)), fontsize=8.5, va="top")
    pdf.savefig(page)
    plt.close(page)


# ------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------


def write_report(
    data: ObserverData,
    out_dir: str | Path = "reports",
    *,
    study_name: str | None = None,
    fom: str = "wAFROC",
    method: Literal["OR", "DBM"] = "OR",
    covariance: Literal["jackknife", "delong", "bootstrap"] = "jackknife",
    alpha: float = 0.05,
    subgroups: str | Iterable[str] | None = "auto",
    input_path: str | Path | None = None,
    backend: Literal["python", "rjafroc"] = "python",
    n_bootstraps: int = 2000,
    random_state: int | None = None,
    pdf: bool = True,
    progress: Callable[[str], None] | None = None,
    detector_outputs: dict[str, Any] | None = None,
    cad_marks: pd.DataFrame | None = None,
    cad_treatment: str | None = None,
    cad_marks_source: str | None = None,
) -> ReportPaths:
    """Analyse a study and write its report to ``<out_dir>/<study>/``.

    Parameters
    ----------
    data : ObserverData
        The study.
    out_dir : str or Path, default "reports"
        Parent folder; the report goes to ``out_dir / study_slug(study_name)``.
    study_name : str, optional
        Title of the report and name of its folder (default: ``data.name``, else the input
        file's stem, else ``"study"``).
    fom : str, default "wAFROC"
        Figure of merit (``analysis.FOMS``).
    method : {"OR", "DBM"}, default "OR"
    covariance : {"jackknife", "delong", "bootstrap"}, default "jackknife"
    alpha : float, default 0.05
    subgroups : "auto", None or iterable of str
        ``"auto"``: every kind the data supports (:func:`analysis.subgroups.available_subgroups`);
        None or ``[]``: none; otherwise kinds such as ``["reader_group", "lesion_type"]`` (a
        kind the data cannot support is listed in the report as unavailable, with the reason,
        and a warning is issued).
    input_path : str or Path, optional
        The input file: its name and SHA-256 are recorded in every output.
    detector_outputs : mapping, optional
        The detector outputs the readers saw (``detector.outputs.outputs_record``), recorded in
        the provenance of ``results.json``.
    backend : {"python", "rjafroc"}, default "python"
        Engine of the main analysis (subgroups always use the Python engine).
    n_bootstraps, random_state
        Bootstrap covariance only.
    pdf : bool, default True
        Also write ``report.pdf``.
    progress : callable, optional
        ``progress(step)`` with a short description of each step.
    cad_marks : DataFrame, optional
        The detector's marks (``case_id, lesion_id, rating``;
        :func:`analysis.cad_vs_rad.read_cad_marks`, e.g. ``marks_<method>.csv`` of ``tsct detect
        evaluate``): adds the section "The detector alone vs the radiologists" (1T-RRRC,
        :mod:`analysis.report_cad`) and ``cad_vs_rad`` in ``results.json``.
    cad_treatment : str, optional
        The treatment of that comparison (default: the unaided one,
        :func:`analysis.report_cad.choose_unaided_treatment`).
    cad_marks_source : str, optional
        The marks file's name, recorded in the section.

    Returns
    -------
    ReportPaths

    Raises
    ------
    analysis.MRMCInputError, analysis.FomError
        The main analysis is not possible for the data (e.g. a single treatment).
    """
    import json

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from analysis.curves import empirical_curves
    from analysis.significance import significance_test
    from analysis.stats._common import MRMCWarning
    from analysis.subgroups import SubgroupError, available_subgroups, subgroup_analysis

    def step(msg: str) -> None:
        if progress is not None:
            progress(msg)

    from tsct_files import check_output_dir, csv_safe_frame, pause_point, staged_dir

    name = study_name or data.name or (Path(input_path).stem if input_path else "") or "study"
    directory = Path(out_dir) / study_slug(name)
    check_output_dir(directory, option="--out")
    if subgroups not in ("auto", None):
        from analysis.subgroups import _lesion_attribute

        for kind in [subgroups] if isinstance(subgroups, str) else list(subgroups):
            if isinstance(kind, str):
                _lesion_attribute(kind)  # an unknown kind is refused before any work (SubgroupError)
    prov = Provenance.from_file(input_path) if input_path is not None else Provenance()
    if detector_outputs is not None:
        prov = replace(prov, detector_outputs=dict(detector_outputs))
    step("significance test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MRMCWarning)
        result = significance_test(
            data,
            fom,
            method=method,
            analyses="ALL",
            covariance=covariance,
            alpha=alpha,
            n_bootstraps=n_bootstraps,
            random_state=random_state,
            backend=backend,
            provenance=prov,
        )
    for w in caught:
        if not issubclass(w.category, MRMCWarning):  # pragma: no cover - pass unrelated warnings on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    if subgroups == "auto":
        kinds = list(available_subgroups(data))
    elif subgroups is None:
        kinds = []
    else:
        kinds = [subgroups] if isinstance(subgroups, str) else list(subgroups)
    sub_results = []
    unavailable: dict[str, str] = {}
    for kind in kinds:
        step(f"subgroups by {kind}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # their notes are kept in the results and shown
                sub_results.append(
                    subgroup_analysis(
                        data,
                        fom,
                        by=kind,
                        method=method,
                        covariance=covariance,
                        alpha=alpha,
                        n_bootstraps=n_bootstraps,
                        random_state=random_state,
                    )
                )
        except SubgroupError as exc:
            unavailable[kind] = str(exc)
            warnings.warn(f"Subgroups by {kind} are not in the report: {exc}", UserWarning, stacklevel=2)

    cad = None
    if cad_marks is not None:
        from analysis.report_cad import cad_section

        step("detector alone vs radiologists")
        cad = cad_section(data, cad_marks, fom, alpha=alpha, treatment=cad_treatment, source=cad_marks_source)

    step("curves")
    curve_frames: dict[str, pd.DataFrame] = {}
    for kind in _curve_kinds(data, fom):
        curve_frames[kind] = empirical_curves(data, kind)
    curves_all = pd.concat(curve_frames.values(), ignore_index=True)

    step("figures")
    plt = _mpl()
    figures: list[tuple[str, str, Any]] = []  # (id, caption, fig)
    fig = _figure_average_curves(curve_frames, data)
    figures.append(
        (
            "fig-average",
            "Reader-averaged empirical curves per treatment (vertical averaging of the readers' "
            "curves; the area under each averaged curve equals the reader-averaged figure of merit "
            "of the same name). Points: curves.csv, rows with a non-empty 'average'.",
            fig,
        )
    )
    for kind, frame in curve_frames.items():
        figures.append(
            (
                f"fig-readers-{kind}",
                f"{kind} curve of each reader, one line per treatment. Points: curves.csv, rows with curve = {kind} and the reader's ID.",
                _figure_reader_curves(kind, frame, data),
            )
        )
    # parametric ROC fits (binormal ML) beside the empirical points: analysis/fitting/report_hook.py
    from analysis.fitting.report_hook import fitted_curve_section

    step("ROC curve fits")
    fit_figures, fit_json, fit_notes = fitted_curve_section(data)
    figures.extend(fit_figures)
    figures.append(
        (
            "fig-forest",
            "Treatment differences with 95% confidence intervals: all readers (primary analysis), "
            "each reader (fixed-reader analysis of that reader) and each subgroup (its primary "
            "analysis). Numbers: differences.csv.",
            _figure_forest(result, sub_results),
        )
    )
    svgs = [{"id": fid, "caption": cap, "svg": _svg(f)} for fid, cap, f in figures]

    step("tables")
    engine = "tsct Python engine"
    backend_note = (
        "Computations used tsct {version} (Python); its DBM and Obuchowski-Rockette results equal "
        "those of RJafroc 2.1.3 {cite_book} to a relative 1e-9 on RJafroc's published example "
        "datasets (the package's test suite checks this)."
    )
    if backend == "rjafroc":
        from analysis.rjafroc_backend import rjafroc_available

        engine = "RJafroc (R) through rpy2: " + rjafroc_available()[1]
        backend_note = (
            "The significance tests were computed by RJafroc {cite_book} (R) through "
            "tsct {version}; subgroup analyses by tsct's Python engine, which "
            "reproduces RJafroc's numbers."
        )
    methods, ref_keys = _methods(result, data, sub_results, backend_note, prov.package_version)
    study = _study_summary(data)
    analysis_blocks = {name_: _analysis_block(result, name_) for name_ in result.analyses}
    all_warnings = (
        list(result.warnings)
        + [w for sg in sub_results for w in sg.warnings]
        + [f"Subgroups by {k} unavailable: {v}" for k, v in unavailable.items()]
    )
    all_warnings += fit_notes
    created = prov.created_utc
    title = f"Observer study report: {name}"
    context = {
        "title": title,
        "study_name": name,
        "provenance": prov.to_dict(),
        "engine": engine,
        "created_display": created.replace("T", " ").replace("+00:00", " UTC"),
        "fom": result.fom,
        "method": result.method,
        "covariance": result.covariance,
        "alpha": result.alpha,
        "study": study,
        "fom_table": _fom_table(result, data),
        "analysis_blocks": analysis_blocks,
        "primary": "RRRC" if "RRRC" in result.analyses else next(iter(result.analyses)),
        "variance_rows": _variance_rows(result),
        "variance_scale": "pseudovalue scale" if result.method == "DBM" else "FOM scale",
        "subgroup_tables": _subgroup_tables(sub_results, result),
        "subgroups_unavailable": unavailable,
        "subgroups_requested": kinds,
        "figures": svgs,
        "methods": methods,
        "references": [REFERENCES[k] for k in ref_keys],
        "warnings": all_warnings,
        "files": ["report.html", "results.json", "foms.csv", "differences.csv", "curves.csv"] + (["report.pdf"] if pdf else []),
        "command": _command(input_path, name, fom, method, covariance, alpha, kinds, subgroups, out_dir, n_bootstraps, random_state, backend),
        "n_treatments": result.n_treatments,
        "cad": cad,
    }

    step("writing files")
    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(**context)
    paths = ReportPaths(
        directory=directory,
        html=directory / "report.html",
        json=directory / "results.json",
        foms_csv=directory / "foms.csv",
        differences_csv=directory / "differences.csv",
        curves_csv=directory / "curves.csv",
        pdf=(directory / "report.pdf") if pdf else None,
    )
    doc = result.to_dict()
    doc["report"] = {
        "schema": REPORT_SCHEMA_ID,
        "study_name": name,
        "engine": engine,
        "study": study,
        "subgroups_unavailable": unavailable,
        "files": context["files"],
        "command": context["command"],
    }
    doc["subgroups"] = {sg.by: sg.to_dict() for sg in sub_results}
    if fit_json is not None:
        doc["roc_fits"] = fit_json
    if cad is not None:
        doc["cad_vs_rad"] = cad["json"]
    doc_text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    # Every file is written into a hidden staging folder beside the report's folder and moved in
    # when all are complete: a failed or killed run never leaves a truncated PDF beside a
    # complete HTML (the next run removes a killed run's staging folder).
    try:
        with staged_dir(directory) as stage:
            (stage / "report.html").write_text(html, encoding="utf-8")
            (stage / "results.json").write_text(doc_text, encoding="utf-8")
            # reader and treatment IDs come from the input file: text a spreadsheet would run as a formula is quoted
            csv_safe_frame(_foms_frame(result, data, prov)).to_csv(stage / "foms.csv", index=False)
            csv_safe_frame(_differences_frame(result, sub_results, prov)).to_csv(stage / "differences.csv", index=False)
            curves_out = curves_all.copy()
            curves_out["input_sha256"] = prov.input_sha256
            curves_out["package_version"] = prov.package_version
            csv_safe_frame(curves_out).to_csv(stage / "curves.csv", index=False)
            pause_point("report-before-pdf")
            if pdf:
                step("PDF")
                _write_pdf(stage / "report.pdf", context, result, sub_results, [(cap, f) for _, cap, f in figures])
    finally:
        for _, _, f in figures:
            plt.close(f)
    if not pdf and (directory / "report.pdf").is_file():
        (directory / "report.pdf").unlink()  # a PDF of an earlier run must not sit beside this report
    return paths


def _command(input_path, name, fom, method, covariance, alpha, kinds, subgroups, out_dir, n_bootstraps, random_state, backend) -> str:
    parts = ["tsct analyze report", str(input_path) if input_path else "STUDY_FILE", f"--study '{name}'", f"--fom {fom}", f"--method {method}"]
    if covariance != "jackknife":
        parts.append(f"--covariance {covariance}")
        if covariance == "bootstrap":
            parts.append(f"--bootstraps {n_bootstraps}")
            if random_state is not None:
                parts.append(f"--seed {random_state}")
    if alpha != 0.05:
        parts.append(f"--alpha {alpha:g}")
    if subgroups != "auto":
        parts.append(f"--subgroups '{','.join(kinds)}'" if kinds else "--subgroups none")
    if backend != "python":
        parts.append(f"--backend {backend}")
    parts.append(f"--out {out_dir}")
    return " ".join(parts)
