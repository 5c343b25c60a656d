"""``tsct analyze``: figures of merit, DBM / Obuchowski-Rockette significance tests, sample size.

Commands (statisticians and study coordinators):

* ``tsct analyze fom FILE`` — the figure of merit of every treatment and reader.
* ``tsct analyze st FILE`` — is one treatment better than another?  DBM or OR analysis with
  random readers and cases (RRRC, the primary result), fixed readers (FRRC) and fixed cases
  (RRFC); optional JSON output (``docs/analysis-json.md``).
* ``tsct analyze power FILE`` — how many readers and cases a full study needs, using this file
  as the pilot.
* ``tsct analyze report FILE`` — the study report (HTML, PDF, JSON, CSV) in ``reports/<study>/``.
* ``tsct analyze crosscheck FILE`` — our numbers beside RJafroc's (R, through rpy2), PASS/FAIL.
* ``tsct analyze fit FILE`` — binormal / CBM / RSM ROC curve fits per treatment and reader
  (``analysis.fitting``; docs/analysis-fitting.md).

Input files: JAFROC Excel (``.xlsx``), iMRMC (``.imrmc``) or the tidy CSV (``.csv``) described
in ``docs/analysis-data.md``.  Problems with the input print one red line and exit with code 2.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.markup import render as _render_markup
from rich.text import Text

from analysis._text import format_number

app = typer.Typer(
    help=(
        "Analyse observer studies: figures of merit (wAFROC, AUC, ...), DBM and "
        "Obuchowski-Rockette significance tests, and sample size for a planned study."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# soft_wrap: tables and sentences are not cut at 80 columns when piped.  emoji=False: a study,
# treatment or file name such as ":x:" prints as written, and Rich's emoji table (about 10 ms
# of start-up) is not loaded.
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, emoji=False)

_FILE_HELP = "Study file: JAFROC Excel (.xlsx), iMRMC (.imrmc) or tidy CSV (.csv)."
_FOM_HELP = (
    "Figure of merit, as in RJafroc: wAFROC (default; FROC data), AFROC, wAFROC1, AFROC1, HrAuc, "
    "HrSe, HrSp, MaxLLF, MaxNLF, MaxNLFAllCases, Wilcoxon (ROC AUC; ROC data) or ROI (Obuchowski; ROI data)."
)


class RichTable:
    """A plain, aligned text table with the add_column/add_row interface of ``rich.table.Table``.

    Rich's table layout costs about 0.3 s of CPU for the tables of one ``st`` run (more than the
    analysis itself); these tables are simple columns of numbers, so they are laid out here
    with string padding (markup in cells, e.g. ``[green]ok[/]``, keeps its colour).
    """

    def __init__(self, title: str = "", title_justify: str = "left", **_rich_options: object) -> None:
        # other rich.table.Table options (box, show_header, ...) are accepted and ignored
        self.title = title
        self.columns: list[tuple[str, str]] = []
        self.rows: list[list[Text]] = []

    def add_column(self, header: str = "", justify: str = "left", style: str | None = None, **_rich_options: object) -> None:
        self.columns.append((header, justify))

    def add_row(self, *cells: object) -> None:
        self.rows.append([_render_markup(str(c), emoji=False) if "[" in str(c) else Text(str(c)) for c in cells])

    def __rich__(self) -> Text:
        widths = [len(h) for h, _ in self.columns]
        for row in self.rows:
            for n, cell in enumerate(row):
                widths[n] = max(widths[n], cell.cell_len)

        def line(cells: list[Text]) -> Text:
            out = Text()
            for n, cell in enumerate(cells):
                pad = " " * (widths[n] - cell.cell_len)
                out.append("  " if n else "")
                if self.columns[n][1] == "right":
                    out.append(pad)
                    out.append_text(cell)
                else:
                    out.append_text(cell)
                    out.append(pad)
            return out

        lines = [Text(self.title, style="italic")] if self.title else []
        lines.append(line([Text(h, style="bold") for h, _ in self.columns]))
        lines.append(Text("  ".join("-" * w for w in widths)))
        lines.extend(line(row) for row in self.rows)
        return Text("\n").join(lines)


#: Python argument names in messages shared with the Python API -> this command's option names.
_OPTION_OF = {
    "method": "--method",
    "analyses": "--analysis",
    "analysis": "--analysis",
    "covariance": "--covariance",
    "fom": "--fom",
    "alpha": "--alpha",
    "n_bootstraps": "--bootstraps",
    "random_state": "--seed",
    "backend": "--backend",
    "target_power": "--target-power",
    "effect_size": "--effect-size",
}
#: ``name=value`` for those names; compiled on the first error message (``re`` keeps it), not at start-up
_ARG_PATTERN = r"\b(" + "|".join(sorted(_OPTION_OF, key=len, reverse=True)) + r")\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|([\w.+-]+))"


def _user_words(text: str) -> str:
    """Say ``--method OR`` where a message shared with the Python API says ``method='OR'``."""
    return re.sub(_ARG_PATTERN, lambda m: f"{_OPTION_OF[m.group(1)]} {next(g for g in m.groups()[1:] if g is not None)}", text)


def _one_line(message: str) -> str:
    return _user_words(" ".join(part.strip() for part in str(message).splitlines() if part.strip()))


def _fail(message: str, code: int = 2, *, near: Optional[Path] = None, limit: int = 600) -> None:
    """Print one red line and exit. A message longer than ``limit`` characters is not cut: the
    line gives its start and the number of problems, and the full list goes to a file beside
    ``near`` (the input file) or into the temporary folder."""
    from rich.markup import escape

    text = _one_line(message)
    if len(text) > limit:
        from tsct_files import problems_file

        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        if len(lines) <= 1:
            lines = [p.strip() for p in re.split(r"(?<=[.;])\s+", text) if p.strip()]
        path = problems_file(lines, near=near, stem="tsct-analyze-problems")
        cut = text[:limit].rsplit(" ", 1)[0]
        text = f"{cut} … ({len(lines)} lines in all; the full list is in {path})"
    err_console.print(f"[bold red]Error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _out_file(path: Optional[Path], option: str) -> None:
    """Refuse a bad output file path before any work (a folder, under a file, not writable)."""
    if path is None:
        return
    from tsct_files import OutputPathError, check_output_file

    try:
        check_output_file(path, option=option)
    except OutputPathError as exc:
        _fail(str(exc))


def _write_json_file(path: Path, text: str) -> None:
    """Write a JSON output atomically; an OS error is one line, and nothing is left behind."""
    from tsct_files import atomic_write_text

    try:
        atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        _fail(f"Cannot write {path}: {exc.strerror or exc}; nothing was written.")


def _load(path: Path, read: Callable[[Path], Any] | None = None) -> Any:
    """Read a study file with ``read`` (default :func:`analysis.io.read_observer_data`); input
    problems become a one-line error and exit code 2."""
    if read is None:
        from analysis.io import read_observer_data as read

    if not path.exists():
        _fail(f"File not found: {path}")
    if path.is_dir():
        _fail(f"{path} is a folder; give a study file (.xlsx, .imrmc or .csv).")
    try:
        return read(path)
    except (ValueError, OSError, KeyError) as exc:
        _fail(f"{path.name}: {exc}", near=path)


def _write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` as strict JSON, atomically (a temporary name, then a rename)."""
    import json

    _write_json_file(path, json.dumps(doc, indent=2, allow_nan=False, default=str))


def _num(x, digits: int = 4) -> str:
    return format_number(x, digits)


def _p(x) -> str:
    if x is None or math.isnan(float(x)):
        return "NaN"
    return f"{x:.2e}" if x < 1e-4 else f"{x:.4f}"


def _fom_table(result_or_foms, treatments, readers, title: str) -> RichTable:
    import numpy as np

    foms = np.asarray(result_or_foms)
    table = RichTable(title=title, title_justify="left")
    table.add_column("Treatment", style="bold")
    for r in readers:
        table.add_column(f"Reader {r}", justify="right")
    table.add_column("Average", justify="right", style="bold")
    for i, t in enumerate(treatments):
        table.add_row(t, *[_num(v) for v in foms[i]], _num(foms[i].mean()))
    return table


def _comparison_table(title: str, comparisons, level: str) -> RichTable:
    per_reader = any(c.reader is not None for c in comparisons)
    table = RichTable(title=title, title_justify="left")
    cols = (["Reader"] if per_reader else []) + ["Comparison", "Difference", "SE", "df", "t/z", "p", f"{level} CI lower", "upper"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("Reader", "Comparison") else "right")
    for c in comparisons:
        table.add_row(
            *([c.reader] if per_reader else []),
            f"{c.treatments[0]} - {c.treatments[1]}",
            _num(c.estimate),
            _num(c.se),
            _num(c.df, 2) if c.df is not None else "z",
            _num(c.statistic, 3),
            _p(c.p_value),
            _num(c.ci_lower),
            _num(c.ci_upper),
        )
    return table


def _print_result(result) -> None:
    level = f"{100 * (1 - result.alpha):g}%"
    console.print(
        f"[bold]{result.method} analysis of {result.fom}[/] — {result.n_treatments} treatments, "
        f"{result.n_readers} readers, {result.n_cases} cases; covariance: {result.covariance}"
    )
    console.print(_fom_table(result.foms, result.treatments, result.readers, "Figures of merit"))
    for name in ("RRRC", "FRRC", "RRFC"):
        if name not in result.analyses:
            continue
        res = result.analyses[name]
        from analysis.results import ANALYSIS_DESCRIPTIONS

        test = res.test_text(_num)
        verdict = (
            ("[green]significant[/]" if res.p_value < result.alpha else "not significant")
            if not math.isnan(res.p_value)
            else "[yellow]no p-value: degenerate data, see the note below[/]"
        )
        console.print()
        console.print(f"[bold cyan]{name}[/] ({ANALYSIS_DESCRIPTIONS[name]})")
        console.print(f"  Equal-FOM test: {test}, p = {_p(res.p_value)} ({verdict} at alpha = {result.alpha:g})")
        console.print(_comparison_table(f"{name}: treatment differences", res.differences, level))
        trt = RichTable(title=f"{name}: reader-averaged FOM per treatment", title_justify="left")
        for col in ("Treatment", "FOM", "SE", "df", f"{level} CI lower", "upper"):
            trt.add_column(col, justify="right" if col != "Treatment" else "left")
        for t in res.treatment_cis:
            trt.add_row(
                t.treatment,
                _num(t.estimate),
                _num(t.se),
                "z" if t.normal_reference else (_num(t.df, 2) if t.df is not None else "-"),
                _num(t.ci_lower),
                _num(t.ci_upper),
            )
        console.print(trt)
        if res.reader_differences:
            console.print(_comparison_table(f"{name}: treatment differences for each reader", res.reader_differences, level))
        for w in res.warnings:
            console.print(f"  [yellow]Warning:[/] {w}")
    other = [w for w in result.warnings if all(w not in a.warnings for a in result.analyses.values())]
    for w in other:
        console.print(f"[yellow]Warning:[/] {w}")


@app.command("fom")
def fom_command(
    file: Path = typer.Argument(..., help=_FILE_HELP),
    fom: List[str] = typer.Option(["wAFROC"], "--fom", "-f", help=_FOM_HELP + " Repeat for several."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the FOMs to this JSON file."),
) -> None:
    """Print the figure of merit of every treatment and reader (and the reader average)."""

    from analysis.fom import fom_matrix
    from analysis.results import Provenance

    _out_file(json_out, "--json")
    data = _load(file)
    doc = {"foms": {}}
    for name in fom:
        try:
            foms = fom_matrix(data, name)
        except ValueError as exc:
            _fail(str(exc))
        console.print(_fom_table(foms, data.treatments, data.readers, f"{name} — {file.name}"))
        doc["foms"][name] = {t: {r: float(foms[i, j]) for j, r in enumerate(data.readers)} for i, t in enumerate(data.treatments)}
    if json_out is not None:
        doc.update(Provenance.from_file(file).to_dict())
        doc["backend"] = "python"
        _write_json(json_out, doc)
        console.print(f"Wrote {json_out}")


@app.command("st")
def st_command(
    file: Path = typer.Argument(..., help=_FILE_HELP),
    fom: str = typer.Option("wAFROC", "--fom", "-f", help=_FOM_HELP),
    method: str = typer.Option(
        "OR",
        "--method",
        "-m",
        help="OR (Obuchowski-Rockette, default), DBM (Dorfman-Berbaum-Metz) or BOTH (DBM then OR, one file read; "
        '--json then holds {"DBM": ..., "OR": ...}). Both give the same RRRC result with the jackknife.',
    ),
    analysis: str = typer.Option(
        "ALL",
        "--analysis",
        "-a",
        help="RRRC (random readers and cases: the primary result), FRRC (these readers only), RRFC (these cases only) or ALL.",
    ),
    covariance: str = typer.Option(
        "jackknife",
        "--covariance",
        "-c",
        help="How case-sampling variability is estimated (OR only): jackknife (any FOM), delong or bootstrap (Wilcoxon, HrAuc, wAFROC).",
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level; confidence intervals are 1 - alpha."),
    n_bootstraps: int = typer.Option(2000, "--bootstraps", help="Bootstrap resamples (with --covariance bootstrap)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of the bootstrap (same seed, same result)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result as JSON (docs/analysis-json.md)."),
    backend: str = typer.Option(
        "python",
        "--backend",
        help="python (default) or rjafroc: the same analysis computed by R's RJafroc through rpy2 (needs R, RJafroc and pip install '.[rjafroc]'; jackknife only).",
    ),
) -> None:
    """Test whether treatments differ (e.g. reading with vs without the subtraction overlay).

    Prints the FOM table, then the RRRC result (generalises to new readers and cases), then
    FRRC and RRFC.  With --json the complete result, including ANOVA tables and variance
    components, is written for reports.
    """
    from analysis.results import Provenance
    from analysis.significance import BackendNotAvailableError, significance_test

    if backend.lower() not in ("python", "rjafroc"):
        _fail(f"--backend must be python or rjafroc, not {backend!r}.")
    _out_file(json_out, "--json")
    data = _load(file)
    progress = None
    if covariance.lower() == "bootstrap":
        from rich.progress import Progress

        bar = Progress(console=err_console, transient=True)
        task = bar.add_task("Bootstrap", total=n_bootstraps)
        bar.start()

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done)

    methods = ["DBM", "OR"] if method.strip().upper() == "BOTH" else [method]
    provenance = Provenance.from_file(file)  # one file, hashed once for both methods
    results = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate-data notes are printed from the result
            for one in methods:
                results.append(
                    significance_test(
                        data,
                        fom,
                        method=one,
                        analyses=analysis,
                        covariance=covariance,
                        alpha=alpha,
                        n_bootstraps=n_bootstraps,
                        random_state=seed,
                        backend=backend.lower(),
                        provenance=provenance,
                        progress=progress,
                    )
                )
    except BackendNotAvailableError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    finally:
        if progress is not None:
            bar.stop()
    for n, result in enumerate(results):
        if n:
            console.print()
        _print_result(result)
    if json_out is not None:
        if len(results) == 1:
            _write_json(json_out, results[0].to_dict())
        else:
            _write_json(json_out, {r.method: r.to_dict() for r in results})
        console.print(f"\nWrote {json_out}")


@app.command("power")
def power_command(
    file: Path = typer.Argument(..., help="Pilot study file (" + _FILE_HELP + ")"),
    fom: str = typer.Option("wAFROC", "--fom", "-f", help=_FOM_HELP),
    method: str = typer.Option(
        "DBM",
        "--method",
        "-m",
        help="DBM (default; RJafroc's default: DBM variance components converted to OR, Hillis et al. 2011), "
        "DBM-HB2004 (Hillis-Berbaum 2004) or OR (Obuchowski-Rockette components, Hillis et al. 2011).",
    ),
    treatments: Optional[str] = typer.Option(
        None,
        "--treatments",
        "-t",
        help="The two treatments to compare, 'A,B' (required when the pilot has more than two).",
    ),
    effect_size: Optional[float] = typer.Option(
        None,
        "--effect-size",
        "-d",
        help="FOM difference the planned study should detect, between 0 and 1 (default: the pilot's observed difference of the two treatments).",
    ),
    readers: List[int] = typer.Option(
        [],
        "--readers",
        "-j",
        help="Number(s) of readers in the planned study; repeat for several (default 3 to 10).",
    ),
    cases: Optional[int] = typer.Option(
        None,
        "--cases",
        "-k",
        help="Number of cases: print the power for it instead of the cases needed.",
    ),
    target_power: float = typer.Option(0.8, "--target-power", help="Power the planned study should reach."),
    analysis: str = typer.Option("RRRC", "--analysis", "-a", help="RRRC (default), FRRC, RRFC or ALL."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the planned study."),
    max_cases: int = typer.Option(
        2000,
        "--max-cases",
        help="Search limit for the number of cases (RJafroc's: 2000; where it is not enough RJafroc reports 2001, here '> 2000').",
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the table as JSON."),
) -> None:
    """How many cases (for a given number of readers) a full study needs, from this pilot study."""

    from analysis.power import (
        pilot_variance_components,
        planned_effect_size,
        power_method,
        power_table,
        study_power,
    )
    from analysis.results import Provenance, iter_analyses

    if not 0.0 < target_power < 1.0:
        _fail(f"--target-power must be a number between 0 and 1 (exclusive). Got {target_power!r}.")
    if not 0.0 < alpha < 1.0:
        _fail(f"--alpha must be a number between 0 and 1 (exclusive). Got {alpha!r}.")
    if any(j < 2 for j in readers):
        _fail(f"--readers must be at least 2 (the random-reader analyses need 2 readers). Got {list(readers)}.")
    if cases is not None and cases < 2:
        _fail(f"--cases must be at least 2. Got {cases}.")
    if max_cases < 2:
        _fail(f"--max-cases must be at least 2. Got {max_cases}.")
    _out_file(json_out, "--json")
    data = _load(file)
    chosen = None
    if treatments is not None:
        chosen = [t.strip() for t in treatments.split(",") if t.strip()]
        if len(chosen) != 2:
            _fail(
                f"--treatments takes two treatment IDs separated by a comma, e.g. --treatments {','.join(data.treatments[:2])}; got {treatments!r}."
            )
    try:
        route = power_method(method)
        analyses = iter_analyses(analysis)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pilot = pilot_variance_components(data, fom, method=route, treatments=chosen)
        readers_list = list(readers) or list(range(3, 11))
        prov = Provenance.from_file(file)
        d = planned_effect_size(pilot, effect_size)
        pair = chosen or list(data.treatments)
        console.print(
            f"Pilot: {file.name} (treatments {pair[0]} vs {pair[1]}, {data.n_readers} readers, "
            f"{pilot.n_cases_pilot} cases), {fom}; effect size {d:.4f}, alpha {alpha:g}"
        )
        console.print(f"Method: {route}: {pilot.description}", highlight=False)
        if cases is not None:
            rows = [study_power(pilot, n_readers=j, n_cases=cases, effect_size=d, analysis=a, alpha=alpha) for a in analyses for j in readers_list]
            table = RichTable(title=f"Power with {cases} cases", title_justify="left")
            for col in ("Analysis", "Readers", "Cases", "Power", "ddf"):
                table.add_column(col, justify="right")
            for r in rows:
                table.add_row(r.analysis, str(r.n_readers), str(r.n_cases), _num(r.power), _num(r.ddf, 2))
            console.print(table)
            doc = {"power": [r.to_dict() for r in rows]}
        else:
            tab = power_table(
                pilot,
                readers=readers_list,
                target_power=target_power,
                effect_size=d,
                analyses=analyses,
                alpha=alpha,
                max_cases=max_cases,
            )
            table = RichTable(title=f"Cases needed for power {target_power:g}", title_justify="left")
            for col in ("Analysis", "Readers", "Cases", "Power"):
                table.add_column(col, justify="right")
            for r in tab.rows:
                table.add_row(
                    r.analysis,
                    str(r.n_readers),
                    str(r.n_cases) if r.n_cases is not None else f"> {r.max_cases} (RJafroc: {r.max_cases + 1})",
                    _num(r.power),
                )
            console.print(table)
            if any(r.n_cases is None for r in tab.rows):
                console.print(
                    f"'> {max_cases}': the target power is not reached with {max_cases} cases (more readers "
                    f"help where reader variability dominates); RJafroc reports {max_cases + 1} there.",
                    highlight=False,
                )
            doc = tab.to_dict()
    except ValueError as exc:
        _fail(str(exc))
    if json_out is not None:
        doc.update(prov.to_dict())
        doc.update(
            {
                "fom": fom,
                "method": pilot.method,
                "method_description": pilot.description,
                "treatments": pair,
                "effect_size": d,
                "alpha": alpha,
                "max_cases": max_cases,
                "backend": "python",
            }
        )
        _write_json(json_out, doc)
        console.print(f"Wrote {json_out}")


@app.command("report")
def report_command(
    file: Path = typer.Argument(..., help=_FILE_HELP),
    study: Optional[str] = typer.Option(None, "--study", "-s", help="Study name: the report's title and folder name (default: the file name)."),
    fom: str = typer.Option("wAFROC", "--fom", "-f", help=_FOM_HELP),
    method: str = typer.Option("OR", "--method", "-m", help="OR (Obuchowski-Rockette, default) or DBM (Dorfman-Berbaum-Metz)."),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Parent folder; the report goes to OUT/<study>/."),
    subgroups: str = typer.Option(
        "auto",
        "--subgroups",
        help="Comma-separated subgroups: reader_group, lesion_location, lesion_type (or lesion:<attribute>); "
        "'auto' (default) = all the file supports; 'none' = no subgroups.",
    ),
    covariance: str = typer.Option(
        "jackknife", "--covariance", "-c", help="jackknife (default), delong or bootstrap (OR only; Wilcoxon, HrAuc, wAFROC)."
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level; confidence intervals are 1 - alpha."),
    n_bootstraps: int = typer.Option(2000, "--bootstraps", help="Bootstrap resamples (with --covariance bootstrap)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of the bootstrap."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also write report.pdf (default: yes)."),
    backend: str = typer.Option("python", "--backend", help="python (default) or rjafroc (main analysis computed by RJafroc in R)."),
    cad_marks: Optional[Path] = typer.Option(
        None,
        "--cad-marks",
        help="The detector's marks (CSV: case_id, rating, lesion_id; e.g. marks_<method>.csv of 'tsct detect evaluate'): "
        "adds the section 'The detector alone vs the radiologists' (1T-RRRC).",
    ),
    cad_treatment: Optional[str] = typer.Option(
        None,
        "--cad-treatment",
        help="Treatment in which the detector is compared with the radiologists (default: the unaided one, by name).",
    ),
) -> None:
    """Write the study report (HTML, PDF, JSON, CSV) to OUT/<study>/.

    The report holds the FOM table, the RRRC result first (then FRRC and RRFC), variance
    components, subgroups, curves and a forest plot, and a methods paragraph with references.
    Every number is also written to JSON and CSV, with the package version and the input's
    SHA-256 (docs/analysis-report.md).
    """
    from rich.status import Status

    from analysis.report import write_report
    from analysis.significance import BackendNotAvailableError
    from analysis.subgroups import SUBGROUP_KINDS
    from tsct_files import OutputPathError, check_output_dir

    if subgroups.strip().lower() == "auto":
        kinds = "auto"
    elif subgroups.strip().lower() in ("none", ""):
        kinds = []
    else:
        kinds = [k.strip() for k in subgroups.split(",") if k.strip()]
        bad = [k for k in kinds if k not in SUBGROUP_KINDS and not (k.startswith("lesion:") and len(k) > len("lesion:"))]
        if bad:
            _fail(
                f"--subgroups: unknown subgroup kind(s) {', '.join(repr(b) for b in bad)}; valid choices: "
                f"{', '.join(SUBGROUP_KINDS)}, lesion:<attribute> (a lesion attribute of the file), auto or none."
            )
    if not 0.0 < alpha < 1.0:
        _fail(f"--alpha must be a number between 0 and 1 (exclusive). Got {alpha!r}.")
    try:
        check_output_dir(out, option="--out")
    except OutputPathError as exc:
        _fail(str(exc))
    data = _load(file)
    marks = None
    if cad_marks is not None:
        from analysis.cad_vs_rad import read_cad_marks

        if not cad_marks.is_file():
            _fail(f"--cad-marks: file not found: {cad_marks}")
        try:
            marks = read_cad_marks(str(cad_marks))
        except ValueError as exc:
            _fail(f"--cad-marks: {exc}")
    caught: list = []
    try:
        with Status("Analysing", console=err_console) as status, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = write_report(
                data,
                out,
                study_name=study or file.stem,
                fom=fom,
                method=method,
                covariance=covariance,
                alpha=alpha,
                subgroups=kinds,
                input_path=file,
                backend=backend.lower(),
                n_bootstraps=n_bootstraps,
                random_state=seed,
                pdf=pdf,
                progress=lambda step: status.update(f"Report: {step}"),
                cad_marks=marks,
                cad_treatment=cad_treatment,
                cad_marks_source=cad_marks.name if cad_marks else None,
            )
    except BackendNotAvailableError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc), near=file)
    except OSError as exc:
        _fail(f"Cannot write the report under {out}: {exc.strerror or exc}; nothing was written.")
    shown = set()
    for w in caught:
        msg = str(w.message)
        if "Subgroups by" in msg and msg not in shown:
            shown.add(msg)
            err_console.print(f"[yellow]Warning:[/] {_one_line(msg)}", highlight=False)
    console.print(f"Report written to [bold]{paths.directory}[/]")
    for f in paths.files():
        console.print(f"  {f}", highlight=False)


def _crosscheck_table(report, show_all: bool, title: str) -> RichTable:
    import re

    key = re.compile(
        r"^(foms|treatment_means|variance_components)\.|"
        r"^analyses\.\w+\.(statistic|ddf|p|ms_error)$|"
        r"^analyses\.\w+\.differences\[\d+\]\.(estimate|se|p|ci95\[\d\])$|"
        r"^analyses\.\w+\.treatment_cis\.[^.]+\.(estimate|se|ci95\[\d\])$"
    )
    table = RichTable(title=title, title_justify="left")
    for col, just in (("Quantity", "left"), ("tsct", "right"), ("RJafroc", "right"), ("rel. diff", "right"), ("", "center")):
        table.add_column(col, justify=just)

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.12g}"
        return str(v)

    for row in report.rows:
        if not (show_all or not row.ok or key.search(row.path)):
            continue
        rel = "-" if math.isnan(row.rel_diff) else f"{row.rel_diff:.1e}"
        table.add_row(row.path, cell(row.ours), cell(row.reference), rel, "[green]ok[/]" if row.ok else "[red]FAIL[/]")
    return table


@app.command("crosscheck")
def crosscheck_command(
    file: Path = typer.Argument(..., help=_FILE_HELP),
    fom: str = typer.Option("wAFROC", "--fom", "-f", help=_FOM_HELP),
    method: str = typer.Option("OR", "--method", "-m", help="OR (default) or DBM."),
    show_all: bool = typer.Option(False, "--all", help="List every number compared (default: the main ones and any mismatch)."),
    rtol: float = typer.Option(1e-9, "--rtol", help="Relative tolerance for PASS."),
) -> None:
    """Compare our significance test with RJafroc's St() on the same file, number by number.

    Needs R, the RJafroc package and rpy2 (pip install '.[rjafroc]'); without them it says how to
    install them and exits with code 3.  Exit code 0 = PASS, 1 = some numbers differ by more
    than --rtol.
    """
    from analysis import rjafroc_backend as rb
    from analysis.results import Provenance
    from analysis.significance import significance_test

    ok, reason = rb.rjafroc_available()
    if not ok:
        from rich.markup import escape

        err_console.print(f"[bold red]RJafroc is not available:[/] {escape(reason)}", highlight=False, soft_wrap=True)
        err_console.print(
            "The Python engine alone is at your disposal: tsct analyze st FILE. Its results were checked "
            "against RJafroc 2.1.3 on RJafroc's example datasets to a relative 1e-9.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(3)
    data = _load(file)
    prov = Provenance.from_file(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = significance_test(data, fom, method=method, provenance=prov)
            theirs = rb.significance_test_rjafroc(data, fom, method, provenance=prov)
    except ValueError as exc:
        _fail(str(exc))
    except RuntimeError as exc:
        _fail(str(exc))
    report = rb.compare_results(ours, theirs, rtol=rtol)
    console.print(f"[bold]{file.name}[/]: {fom}, {ours.method}; RJafroc via {reason}")
    console.print(_crosscheck_table(report, show_all, f"tsct {prov.package_version} beside RJafroc"))
    if report.passed:
        console.print(f"[bold green]PASS[/]: {report.verdict()}", highlight=False)
    else:
        console.print(f"[bold red]FAIL[/]: {report.verdict()}", highlight=False)
        raise typer.Exit(1)


# ROC curve fitting (binormal, CBM, RSM): its command lives in analysis/fitting/cli.py.
from analysis.fitting.cli import register as _register_fit  # noqa: E402 - light: imports typer only; registered after `app` exists

_register_fit(app)


if __name__ == "__main__":  # pragma: no cover
    app()


# RJafroc's further methods (cad-vs-rad, lroc, split-plot): registered on `app` by importing.
from analysis import cli_methods as _cli_methods  # noqa: E402,F401
