"""``tsct analyze fit FILE``: parametric ROC curve fits (binormal, CBM, RSM) per treatment and reader.

Registered on the ``tsct analyze`` Typer app by :mod:`analysis.cli`.  Heavy imports (scipy,
pandas, the readers) happen inside the command so that ``tsct --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

_MODEL_HELP = (
    "binormal (Dorfman-Alf maximum likelihood; default), cbm (contaminated binormal model, fits "
    "degenerate data) or rsm (radiological search model fitted to the highest-rating ROC data)."
)
_BINNING_HELP = (
    "How ratings become bins: auto (default: every distinct rating, or truth-state runs when there "
    "are more than 30), distinct, runs, or a number N (at most N bins maximising the empirical AUC)."
)


def _parse_binning(value: str):
    v = value.strip().lower()
    if v in ("auto", "distinct", "runs"):
        return v
    try:
        n = int(v)
    except ValueError:
        raise typer.BadParameter(f"--binning must be auto, distinct, runs or a number of bins, not {value!r}.")
    if n < 2:
        raise typer.BadParameter(f"--binning needs at least 2 bins, not {n}.")
    return n


def _parse_lesions(text: str) -> dict[int, float]:
    """``"1:0.7,2:0.3"`` -> ``{1: 0.7, 2: 0.3}``; the fractions must sum to 1."""
    out: dict[int, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            k, v = part.split(":")
            n, f = int(k), float(v)
        except ValueError:
            raise ValueError(f"--lesion-distribution {text!r}: write it as 'lesions:fraction,...', e.g. '1:0.7,2:0.3'.")
        if n < 1 or not 0.0 <= f <= 1.0:
            raise ValueError(f"--lesion-distribution {text!r}: lesion counts must be >= 1 and fractions in [0, 1].")
        out[n] = out.get(n, 0.0) + f
    if not out or abs(sum(out.values()) - 1.0) > 1e-6:
        raise ValueError(f"--lesion-distribution {text!r}: the fractions must sum to 1 (they sum to {sum(out.values()):.6g}).")
    return out


def fit_command(
    file: Path = typer.Argument(..., help="Study file: JAFROC Excel (.xlsx), iMRMC (.imrmc) or tidy CSV (.csv)."),
    model: str = typer.Option("binormal", "--model", "-m", help=_MODEL_HELP),
    treatment: Optional[List[str]] = typer.Option(None, "--treatment", "-t", help="Fit only this treatment (repeat for several)."),
    reader: Optional[List[str]] = typer.Option(None, "--reader", "-r", help="Fit only this reader (repeat for several)."),
    binning: str = typer.Option("auto", "--binning", help=_BINNING_HELP),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Write every fit (parameters, thresholds, AUC, SE, chi-square, covariance) as JSON."
    ),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write one row per treatment and reader as CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the fitted curves beside the empirical points (.png, .svg or .pdf)."),
    lesions: Optional[str] = typer.Option(
        None,
        "--lesion-distribution",
        help="RSM only: fraction of diseased cases with 1, 2, ... lesions, e.g. '1:0.7,2:0.3' (default: from the file's lesions).",
    ),
) -> None:
    """Fit a parametric ROC curve to every treatment and reader (RJafroc's FitBinormalRoc, FitCbmRoc, FitRsmRoc).

    Prints the parameters, the fitted AUC with its standard error, the empirical AUC and the
    chi-square goodness of fit.  FROC data are fitted on their highest-rating inferred ROC
    ratings.  Data that a model cannot fit (degenerate, too few rating bins) get a status and a
    reason instead of numbers; the exit code is still 0.
    """
    from rich.markup import escape
    from rich.table import Table as RichTable

    from analysis.cli import _fail, _load, console
    from analysis.fitting.api import MODELS, fit_roc
    from analysis.results import Provenance

    key = model.strip().lower()
    if key not in MODELS:
        _fail(f"--model must be one of {', '.join(MODELS)}, not {model!r}.")
    try:
        bins = _parse_binning(binning)
    except typer.BadParameter as exc:
        _fail(str(exc))
    les = None
    if lesions is not None:
        if key != "rsm":
            _fail("--lesion-distribution applies to --model rsm only.")
        try:
            les = _parse_lesions(lesions)
        except ValueError as exc:
            _fail(str(exc))
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        _fail(f"--plot {plot}: give a .png, .svg or .pdf file name.")
    data = _load(file)
    prov = Provenance.from_file(file)
    try:
        fits = fit_roc(
            data, key, treatments=treatment or None, readers=reader or None, binning=bins, lesion_distribution_override=les, provenance=prov.to_dict()
        )
    except ValueError as exc:
        _fail(str(exc))

    def num(x, d=4) -> str:
        return "NaN" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"

    from rich import box

    suffix = " (highest-rating inferred ROC data)" if data.paradigm != "ROC" else ""
    table = RichTable(title=f"{key} ROC fits — {file.name}{suffix}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ["Treatment", "Reader", "AUC", "SE", "Empirical AUC", "Chi2 (df)", "p", "Status"]:
        table.add_column(col, justify="left" if col in ("Treatment", "Reader", "Status") else "right")
    for f in fits:
        chi = f.chisq
        status = f.status if f.status == "ok" else f"[yellow]{f.status}[/]"
        table.add_row(
            escape(str(f.treatment)),
            escape(str(f.reader)),
            num(f.auc),
            num(f.se_auc),
            num(f.empirical_auc),
            f"{chi.statistic:.2f} ({chi.df})" if chi.df else "-",
            num(chi.p_value, 3) if chi.df else "-",
            status,
        )
    console.print(table)
    first = fits.fits[0] if fits.fits else None
    pnames = list(first.parameters) if first else []
    params = RichTable(title="Model parameters (standard errors in brackets)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ["Treatment", "Reader", *pnames]:
        params.add_column(col, justify="left" if col in ("Treatment", "Reader") else "right")
    for f in fits:
        cells = []
        for k in pnames:
            se = f.parameter_se.get(k)
            cells.append(num(f.parameters[k], 3) + (f" ({num(se, 3)})" if se is not None and math.isfinite(se) else ""))
        params.add_row(escape(str(f.treatment)), escape(str(f.reader)), *cells)
    console.print(params)
    notes: dict[str, list[str]] = {}
    for f in fits:
        where = f"treatment {f.treatment}, reader {f.reader}"
        if f.reason:
            console.print(f"[yellow]{escape(where[0].upper() + where[1:])}:[/] {f.status}: {escape(f.reason)}", highlight=False)
        for note in f.notes:
            notes.setdefault(note, []).append(where)
    for note, wheres in notes.items():  # one line per distinct note
        scope = "every fit" if len(wheres) == len(fits) else "; ".join(wheres)
        console.print(f"Note ({escape(scope)}): {escape(note)}", highlight=False)
    if any(f.chisq.df is None for f in fits if f.ok):
        console.print("Chi-square '-': fewer pooled bins (expected counts >= 5) than the test needs.", highlight=False)
    try:
        if json_out is not None:
            fits.to_json(json_out)
            console.print(f"Wrote {json_out}")
        if csv_out is not None:
            from analysis.fitting.results import write_csv_atomic

            write_csv_atomic(fits.to_frame(), csv_out)
            console.print(f"Wrote {csv_out}")
        if plot is not None:
            from analysis.fitting.plot import plot_fits, save_figure

            save_figure(plot_fits(fits, reader_groups=data.reader_groups), plot)
            console.print(f"Wrote {plot}")
    except OSError as exc:
        _fail(f"Cannot write the output: {exc}")


def register(app: typer.Typer) -> None:
    """Add the ``fit`` command to the ``tsct analyze`` app."""
    app.command("fit")(fit_command)
