"""``tsct cases …``: the study coordinator's commands for exams and case lists."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    help="Import CT exams, validate case lists and generate synthetic spine CT pairs (study coordinators).",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]Error:[/] {message}")
    raise typer.Exit(code)


@app.command("validate")
def validate(
    case_list: Path = typer.Argument(..., help="The case-list CSV to check (schema: docs/case-list.md)."),
    check_files: bool = typer.Option(True, help="Also check that every exam, label map and transform file exists."),
) -> None:
    """Check a case list and report every bad row at once, with row numbers and what to fix."""
    from .caselist import CaseListError, read_case_list

    try:
        cl = read_case_list(case_list, check_files=check_files)
    except CaseListError as exc:
        table = Table(title=f"{len(exc.problems)} problem(s) in {exc.path}", show_lines=False)
        table.add_column("row", justify="right")
        table.add_column("column")
        table.add_column("what to fix")
        for p in exc.problems:
            table.add_row("" if p.row is None else str(p.row), p.column or "", p.message)
        err_console.print(table)
        raise typer.Exit(1)
    console.print(f"[bold green]OK[/] {case_list}: {cl.summary()}")


@app.command("info")
def info(
    exam: Path = typer.Argument(..., help="A DICOM series folder or a .nii/.nii.gz/.nrrd/.mha file."),
    series_uid: Optional[str] = typer.Option(None, help="SeriesInstanceUID, when the folder holds several series."),
) -> None:
    """Show an exam's geometry, HU range and identifying header fields (or the series in a folder)."""
    from .dicom import list_dicom_series
    from .io import ExamReadError, read_exam

    try:
        ex = read_exam(exam, series_uid=series_uid)
    except ExamReadError as exc:
        if exam.is_dir() and series_uid is None and len(list_dicom_series(exam)) > 1:
            console.print(str(exc))
            raise typer.Exit(1)
        _fail(str(exc))
        return
    vol = ex.volume
    table = Table(show_header=False, title=str(ex.source))
    table.add_row("format", ex.format)
    table.add_row("size (x, y, z)", " x ".join(map(str, vol.size)))
    table.add_row("spacing (mm)", ", ".join(f"{s:.3f}" for s in vol.spacing_mm))
    table.add_row("origin (LPS mm)", ", ".join(f"{s:.1f}" for s in vol.origin_mm))
    table.add_row("orientation", vol.orientation)
    table.add_row("HU range", f"{float(vol.array.min()):.0f} to {float(vol.array.max()):.0f}")
    for key, value in ex.header.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command("import")
def import_exam(
    exam: Path = typer.Argument(..., help="A DICOM series folder (or any supported image file)."),
    out: Path = typer.Argument(..., help="Output image file: .nii.gz (recommended), .nii, .nrrd or .mha."),
    series_uid: Optional[str] = typer.Option(None, help="SeriesInstanceUID, when the folder holds several series."),
) -> None:
    """Convert an exam into one research image file in HU, keeping its geometry."""
    from .io import ExamReadError, read_exam, write_volume

    try:
        ex = read_exam(exam, series_uid=series_uid)
        write_volume(ex.volume, out)
    except (ExamReadError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"[bold green]Wrote[/] {out}")


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create the case set in (cases/<case_id>/ and caselist.csv)."),
    n_cases: int = typer.Option(20, "--n-cases", min=1, help="How many prior/current pairs to generate."),
    abnormal_fraction: float = typer.Option(0.5, "--abnormal-fraction", min=0.0, max=1.0, help="Share of cases with new lesions in the current exam."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives the same cases."),
    size: str = typer.Option("small", "--size", help="'small' (128x128x96 voxels, for tests and quick demos) or 'clinical' (512x512x300 at 0.75x0.75x1 mm)."),
    dicom: bool = typer.Option(False, "--dicom", help="Also write each exam as a DICOM CT series and list those in the case list."),
    from_ct: Optional[list[Path]] = typer.Option(None, "--from-ct", help="Make the pairs from this real CT (NIfTI/NRRD/MHA or DICOM folder) instead of the phantom; repeat for several CTs (cycled). See docs/synthetic-cases.md."),
    labels: Optional[list[str]] = typer.Option(None, "--labels", help="Label map of each --from-ct CT (TotalSegmentator 'total' values), in the same order; 'none' for a CT without one."),
) -> None:
    """Generate synthetic prior/current spine CT pairs with known truth (not patient data).

    Each case gets both exams, a lesion label map, a bone label map, the true transform between
    the exams and every generation parameter; caselist.csv lists them for `tsct cases validate`
    and the reader study.
    """
    from .synth import SIZES, SynthesisError, synthesize_case_set

    if labels and not from_ct:
        _fail("--labels needs --from-ct (the label map of a real CT).")
    if from_ct:
        from .io import ExamReadError
        from .real_ct_pairs import real_ct_case_set

        if out_dir.exists() and (out_dir / "caselist.csv").exists():
            _fail(f"{out_dir} already holds a case set (caselist.csv); choose a new folder or delete it first.")
        if dicom:
            _fail("--dicom is not available with --from-ct yet; the pairs are written as NIfTI.")
        try:
            path = real_ct_case_set(out_dir, list(from_ct), labels=list(labels) if labels else None, n_cases=n_cases,
                                    abnormal_fraction=abnormal_fraction, seed=seed, progress=True)
        except (SynthesisError, ExamReadError, ValueError) as exc:
            _fail(str(exc))
            return
        n_abn = int(round(n_cases * abnormal_fraction))
        console.print(f"[bold green]Wrote[/] {n_cases} pairs from {len(from_ct)} real CT(s) ({n_abn} abnormal, {n_cases - n_abn} normal) to {out_dir}")
        console.print(f"Case list: {path}  (check it with: tsct cases validate {path})")
        return
    if size not in SIZES:
        _fail(f"--size must be one of {', '.join(SIZES)}, got '{size}'.")
    if out_dir.exists() and (out_dir / "caselist.csv").exists():
        _fail(f"{out_dir} already holds a case set (caselist.csv); choose a new folder or delete it first.")
    try:
        path = synthesize_case_set(out_dir, n_cases=n_cases, abnormal_fraction=abnormal_fraction, seed=seed, size=size, dicom=dicom, progress=True)
    except SynthesisError as exc:
        _fail(str(exc))
        return
    n_abn = int(round(n_cases * abnormal_fraction))
    console.print(f"[bold green]Wrote[/] {n_cases} synthetic cases ({n_abn} abnormal, {n_cases - n_abn} normal) to {out_dir}")
    console.print(f"Case list: {path}  (check it with: tsct cases validate {path})")
