"""``tsct analyze`` commands for RJafroc's further methods (registered on :data:`analysis.cli.app`).

* ``tsct analyze cad-vs-rad FILE`` -- the detector alone against the radiologists (RJafroc
  ``StCadVsRad``, 1T-RRRC and 1T-RRFC) on ROC, FROC or LROC data.  The detector is either a
  reader of FILE (``--cad-reader``) or given as its own marks file (``--cad-marks``).
* ``tsct analyze lroc FILE`` -- PCL, ALROC and Wilcoxon figures of merit of an LROC file, and
  ``--to-roc`` to write its ROC conversion (RJafroc ``DfLroc2Roc``).
* ``tsct analyze split-plot FILE`` -- Obuchowski-Rockette analysis of a split-plot-C study.

Heavy modules are imported inside the commands, so registering them costs nothing at start-up.
See ``docs/analysis-methods.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from analysis.cli import _fail, _load, _num, _p, _write_json, app, console


def _write_json_atomic(doc: dict[str, Any], path: Path) -> None:
    _write_json(Path(path), doc)  # strict JSON, atomic; an OS error is one line


def _read_any(path: Path):
    """ObserverData, or LrocData for an LROC workbook."""
    from analysis.formats._common import UnsupportedDataError
    from analysis.io import EXCEL_SUFFIXES, read_observer_data

    try:
        return read_observer_data(path)
    except UnsupportedDataError:
        # only LROC workbooks are read a second time, by the LROC reader
        from analysis.formats.lroc_excel import is_lroc_workbook, read_lroc_excel

        if path.suffix.lower() in EXCEL_SUFFIXES and is_lroc_workbook(path):
            return read_lroc_excel(path)
        raise


def _load_any(path: Path):
    """ObserverData, or LrocData for an LROC workbook; one-line error and exit 2 otherwise."""
    return _load(path, _read_any)


@app.command("cad-vs-rad")
def cad_vs_rad_command(
    file: Path = typer.Argument(..., help="The radiologists' study (JAFROC .xlsx incl. LROC, .imrmc or .csv)."),
    cad_reader: Optional[str] = typer.Option(
        None,
        "--cad-reader",
        help="Reader ID of the detector in FILE (default: the first reader, RJafroc's convention); "
        "with --cad-marks, the ID given to the detector (default CAD).",
    ),
    cad_marks: Optional[Path] = typer.Option(
        None,
        "--cad-marks",
        help="CSV of the detector's marks on the same cases: case_id, rating, lesion_id (empty "
        "when the mark hit no lesion). See docs/analysis-methods.md.",
    ),
    fom: Optional[str] = typer.Option(
        None,
        "--fom",
        "-f",
        help="ROC: Wilcoxon (default). FROC: wAFROC (default) or another FROC FOM. LROC: PCL (default), ALROC or Wilcoxon.",
    ),
    method: str = typer.Option("both", "--method", "-m", help="1T-RRRC (random readers and cases), 1T-RRFC (cases fixed) or both."),
    fpf: float = typer.Option(0.2, "--fpf", help="False-positive fraction for PCL / ALROC (RJafroc's FPFValue)."),
    treatment: Optional[str] = typer.Option(None, "--treatment", "-t", help="The treatment to analyse (needed when FILE has several)."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level; confidence intervals are 1 - alpha."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON (RJafroc's names)."),
) -> None:
    """The detector alone vs the radiologists on the same cases (RJafroc StCadVsRad).

    Tests whether the radiologists' mean figure of merit differs from the detector's: 1T-RRRC
    (generalises to other readers and cases; the primary result) and 1T-RRFC (these cases only).
    """
    from analysis.cad_vs_rad import (
        CAD_METHODS,
        add_cad_reader,
        read_cad_marks,
        st_cad_vs_rad,
    )

    methods = list(CAD_METHODS) if method.lower() == "both" else [method.upper()]
    if any(m not in CAD_METHODS for m in methods):
        _fail(f"--method must be 1T-RRRC, 1T-RRFC or both, not {method!r}.")
    data = _load_any(file)
    try:
        if cad_marks is not None:
            if not cad_marks.exists():
                _fail(f"File not found: {cad_marks}")
            rid = cad_reader or "CAD"
            data = add_cad_reader(data, read_cad_marks(str(cad_marks)), reader_id=rid)
            cad_reader = rid
        results = [st_cad_vs_rad(data, fom, cad_reader=cad_reader, method=m, fpf=fpf, alpha=alpha, treatment=treatment) for m in methods]
    except ValueError as exc:
        _fail(str(exc))
    if cad_reader is None:
        console.print(f"[dim]Detector = reader {results[0].cad_reader!r} (the first reader; choose another with --cad-reader).[/]")
    for r in results:
        console.print(r.summary(), highlight=False)
        console.print()
    if json_out is not None:
        doc = {"input": str(file), "backend": "python", "cadMarks": str(cad_marks) if cad_marks else None, "results": [r.to_dict() for r in results]}
        _write_json_atomic(doc, json_out)
        console.print(f"Wrote {json_out}")


@app.command("lroc")
def lroc_command(
    file: Path = typer.Argument(..., help="LROC study: JAFROC .xlsx with Paradigm LROC."),
    fom: str = typer.Option("all", "--fom", "-f", help="PCL, ALROC, Wilcoxon or all."),
    fpf: float = typer.Option(0.2, "--fpf", help="False-positive fraction for PCL / ALROC (RJafroc's FPFValue)."),
    to_roc: Optional[Path] = typer.Option(
        None, "--to-roc", help="Also write the ROC conversion (RJafroc DfLroc2Roc) to this .xlsx/.csv/.imrmc file."
    ),
    st: bool = typer.Option(False, "--st", help="Also compare the treatments: Obuchowski-Rockette (jackknife) on --fom (PCL if 'all')."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of --st."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures of merit (and the --st result) as JSON."),
) -> None:
    """Figures of merit of LROC data: PCL and ALROC at an FPF, and the ROC AUC (Wilcoxon)."""
    from rich.table import Table as RichTable

    from analysis.lroc import LROC_FOMS, LrocData, lroc_fom_matrix

    data = _load_any(file)
    if not isinstance(data, LrocData):
        _fail(f"{file.name}: not an LROC file (the TRUTH sheet's Paradigm must be LROC).")
    foms = list(LROC_FOMS) if fom.lower() == "all" else [fom]
    try:
        values = {f: lroc_fom_matrix(data, f, fpf) for f in foms}
    except ValueError as exc:
        _fail(str(exc))
    console.print(data.summary(), highlight=False)
    doc: dict[str, Any] = {"input": str(file), "backend": "python", "FPFValue": fpf, "foms": {}}
    for f, m in values.items():
        label = f"{f} at FPF {fpf:g}" if f in ("PCL", "ALROC") else "Wilcoxon (ROC AUC)"
        table = RichTable(title=label, title_justify="left")
        table.add_column("Treatment", style="bold")
        for r in data.readers:
            table.add_column(f"Reader {r}", justify="right")
        table.add_column("Average", justify="right", style="bold")
        for i, t in enumerate(data.treatments):
            table.add_row(t, *[_num(v) for v in m[i]], _num(m[i].mean()))
        console.print(table)
        doc["foms"][f] = {t: dict(zip(data.readers, map(float, m[i]))) for i, t in enumerate(data.treatments)}
    if to_roc is not None:
        from analysis.io import write_observer_data

        try:
            write_observer_data(data.to_roc(), to_roc)
        except (ValueError, OSError) as exc:
            _fail(f"{to_roc}: {exc}")
        console.print(f"Wrote the ROC conversion to {to_roc}")
    if st:
        import warnings

        from analysis.cli import _print_result
        from analysis.lroc import lroc_significance_test

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # notes are printed from the result
                result = lroc_significance_test(data, foms[0] if len(foms) == 1 else "PCL", fpf=fpf, alpha=alpha)
        except ValueError as exc:
            _fail(str(exc))
        console.print()
        _print_result(result)
        doc["st"] = json.loads(result.to_json())
    if json_out is not None:
        _write_json_atomic(doc, json_out)
        console.print(f"Wrote {json_out}")


@app.command("split-plot")
def split_plot_command(
    file: Path = typer.Argument(..., help="Split-plot JAFROC .xlsx (Paradigm ROC/FROC, then SPLIT-PLOT-C)."),
    fom: Optional[str] = typer.Option(None, "--fom", "-f", help="Wilcoxon (ROC, default), wAFROC (FROC, default) or another FOM."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level; confidence intervals are 1 - alpha."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON."),
) -> None:
    """Obuchowski-Rockette analysis of a split-plot study (each reader group reads its own cases)."""
    from analysis.split_plot import read_split_plot_excel, split_plot_or

    if not file.exists():
        _fail(f"File not found: {file}")
    try:
        data = read_split_plot_excel(file)
        result = split_plot_or(data, fom, alpha=alpha)
    except (ValueError, OSError) as exc:
        _fail(f"{file.name}: {exc}")
    console.print(data.summary(), highlight=False)
    console.print(result.summary(), highlight=False)
    level = f"{100 * (1 - alpha):g}%"
    for e in result.analyses["RRRC"]["treatment_cis"]:
        console.print(
            f"  RRRC treatment {e['treatment']}: {_num(e['estimate'])} (SE {_num(e['se'])}, df "
            f"{_num(e['df'], 2)}), {level} CI ({_num(e['ci_lower'])}, {_num(e['ci_upper'])})",
            highlight=False,
        )
    for name in ("RRRC", "FRRC", "RRFC"):
        for c in result.analyses[name]["comparisons"]:
            df = "z" if c["df"] is None else _num(c["df"], 2)
            console.print(
                f"  {name} {c['treatments'][0]} - {c['treatments'][1]}: {_num(c['estimate'])} "
                f"(SE {_num(c['se'])}, df {df}, p {_p(c['p'])}), {level} CI "
                f"({_num(c['ci_lower'])}, {_num(c['ci_upper'])})",
                highlight=False,
            )
    if json_out is not None:
        doc = result.to_dict()
        doc["input"] = str(file)
        _write_json_atomic(doc, json_out)
        console.print(f"Wrote {json_out}")
