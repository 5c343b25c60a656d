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
    from rich.markup import escape

    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


#: Above this many problems, the terminal shows a summary and the first ones; the full list goes to a file.
PROBLEMS_SHOWN = 30


def _print_problems(title: str, problems: list, style: str) -> None:
    """One line per problem, 'row N, column 'x': what to fix' (plain lines copy and search well)."""
    from rich.markup import escape

    err_console.print(f"[{style}]{escape(title)}[/]", highlight=False)
    for p in problems:
        err_console.print(f"  - {escape(str(p))}", highlight=False, soft_wrap=False)


def _write_problem_file(case_list: Path, problems: list, warnings: list) -> Path | None:
    """Write every problem and warning to a CSV beside the case list (or in the current folder)."""
    import csv
    import io
    import os

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["severity", "row", "column", "what to fix"])
    for p in [*problems, *warnings]:
        writer.writerow([p.severity, "" if p.row is None else p.row, p.column or "", p.message])
    for folder in (case_list.resolve().parent, Path.cwd()):
        target = folder / f"{case_list.stem}.problems.csv"
        tmp = folder / f".{target.name}.partial"
        try:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
            os.replace(tmp, target)
            return target
        except OSError:
            tmp.unlink(missing_ok=True)
    return None


@app.command("validate")
def validate(
    case_list: Path = typer.Argument(..., help="The case-list CSV to check (schema: docs/case-list.md)."),
    check_files: bool = typer.Option(True, help="Check that every exam, label map and transform file exists."),
    check_images: bool = typer.Option(
        True,
        help="Read every exam and label map in full and check them against the list (same patient, truth inside the exam and in bone, label maps on the exam's grid). --no-check-images checks the CSV and file names only.",
    ),
) -> None:
    """Check a case list and report every problem at once, with row numbers and what to fix.

    Reads every exam and label map in full (unless --no-check-images): damaged or truncated
    files, non-CT values, prior and current of different patients, truth outside the current
    exam or away from bone, label maps on another grid or without their label value, and case
    ids that cannot be folder names are all refused here, before a study is created.
    """
    from .caselist import CaseListError, read_case_list

    if check_images and check_files:
        err_console.print(f"Checking {case_list} and reading every exam it lists (use --no-check-images to skip the image checks)…")
    try:
        cl = read_case_list(case_list, check_files=check_files, check_images=check_images and check_files)
    except CaseListError as exc:
        problems, warns = exc.problems, exc.warnings
        shown = problems[:PROBLEMS_SHOWN]
        _print_problems(f"{len(problems)} problem(s) in {exc.path} (row 1 is the header):", shown, "bold red")
        if len(problems) > len(shown) or warns:
            by_column: dict[str, int] = {}
            for p in problems:
                by_column[p.column or "(file)"] = by_column.get(p.column or "(file)", 0) + 1
            summary = ", ".join(f"{k}: {v}" for k, v in sorted(by_column.items(), key=lambda kv: -kv[1]))
            where = _write_problem_file(case_list, problems, warns)
            more = f"{len(problems) - len(shown)} more not shown; " if len(problems) > len(shown) else ""
            err_console.print(
                f"{len(problems)} problems by column: {summary}. {more}"
                + (f"Full list ({len(problems)} problems, {len(warns)} warnings): {where}" if where else "(could not write the full list to a file)")
            )
        raise typer.Exit(1)
    if cl.warnings:
        _print_problems(f"{len(cl.warnings)} warning(s) (not blocking) in {case_list}:", list(cl.warnings), "yellow")
    console.print(
        f"[bold green]OK[/] {case_list}: {cl.summary()}" + (" (exams and truth checked)" if check_images and check_files else " (files not read)")
    )


@app.command("info")
def info(
    exam: Path = typer.Argument(..., help="A DICOM series folder or a .nii/.nii.gz/.nrrd/.mha file."),
    series_uid: Optional[str] = typer.Option(None, help="SeriesInstanceUID, when the folder holds several series."),
) -> None:
    """Show an exam's geometry, HU range and identifying header fields (or the series in a folder)."""
    from .io import ExamReadError, read_exam

    try:
        ex = read_exam(exam, series_uid=series_uid)
    except ExamReadError as exc:
        if exam.is_dir() and series_uid is None and "DICOM series; choose one" in str(exc):
            console.print(str(exc), markup=False, highlight=False)
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
        table.add_row({"geometry_notes": "geometry correction", "reading_notes": "note"}.get(key, key), str(value))
    console.print(table)


@app.command("import")
def import_exam(
    exam: Path = typer.Argument(..., help="A DICOM series folder (or any supported image file)."),
    out: Path = typer.Argument(..., help="Output image file: .nii.gz (recommended), .nii, .nrrd or .mha."),
    series_uid: Optional[str] = typer.Option(None, help="SeriesInstanceUID, when the folder holds several series."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
) -> None:
    """Convert an exam into one research image file in HU, keeping its geometry.

    The exam is read and checked in full before anything is written; the output is written
    under a temporary name and renamed when complete, so a failure leaves nothing behind. A
    gantry-tilted or unevenly spaced DICOM series is resampled onto an orthogonal, evenly
    spaced grid (said on the terminal); see docs/dicom-import.md.
    """
    from tsct_files import OutputPathError, check_output_file

    from .io import IMAGE_SUFFIXES, ExamReadError, read_exam, write_volume

    name = out.name.lower()
    if not any(name.endswith(sfx) for sfx in IMAGE_SUFFIXES):
        _fail(f"{out}: the output name must end with one of {', '.join(IMAGE_SUFFIXES)} (e.g. exam.nii.gz).")
    try:
        check_output_file(out, option="--out", overwrite=overwrite, overwrite_option="--overwrite")
        ex = read_exam(exam, series_uid=series_uid)
    except (OutputPathError, ExamReadError) as exc:
        _fail(str(exc))
        return
    created = [p for p in reversed(out.parents) if not p.exists()]
    try:
        write_volume(ex.volume, out)
    except (OSError, RuntimeError, ValueError) as exc:
        for parent in reversed(created):
            try:
                parent.rmdir()
            except OSError:
                pass
        if isinstance(exc, OutputPathError):
            _fail(str(exc))
        _fail(f"{out}: could not be written ({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}). Nothing was written.")
    for key in ("geometry_notes", "reading_notes"):
        if ex.header.get(key):
            console.print(f"[yellow]Note:[/] {exam}: {ex.header[key]}.", highlight=False)
    console.print(f"[bold green]Wrote[/] {out}")


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create the case set in (cases/<case_id>/ and caselist.csv)."),
    n_cases: int = typer.Option(20, "--n-cases", min=1, help="How many prior/current pairs to generate."),
    abnormal_fraction: float = typer.Option(
        0.5, "--abnormal-fraction", min=0.0, max=1.0, help="Share of cases with new lesions in the current exam."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives the same cases."),
    size: str = typer.Option(
        "small", "--size", help="'small' (128x128x96 voxels, for tests and quick demos) or 'clinical' (512x512x300 at 0.75x0.75x1 mm)."
    ),
    dicom: bool = typer.Option(False, "--dicom", help="Also write each exam as a DICOM CT series and list those in the case list."),
    from_ct: Optional[list[Path]] = typer.Option(
        None,
        "--from-ct",
        help="Make the pairs from this real CT (NIfTI/NRRD/MHA or DICOM folder) instead of the phantom; repeat for several CTs (cycled). See docs/synthetic-cases.md.",
    ),
    labels: Optional[list[str]] = typer.Option(
        None, "--labels", help="Label map of each --from-ct CT (TotalSegmentator 'total' values), in the same order; 'none' for a CT without one."
    ),
) -> None:
    """Generate synthetic prior/current spine CT pairs with known truth (not patient data).

    Each case gets both exams, a lesion label map, a bone label map, the true transform between
    the exams and every generation parameter; caselist.csv lists them for `tsct cases validate`
    and the reader study.
    """
    from tsct_files import OutputPathError, atomic_folder, check_output_dir

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
            path = real_ct_case_set(
                out_dir,
                list(from_ct),
                labels=list(labels) if labels else None,
                n_cases=n_cases,
                abnormal_fraction=abnormal_fraction,
                seed=seed,
                progress=True,
            )
        except (SynthesisError, ExamReadError, ValueError) as exc:
            _fail(str(exc))
            return
        n_abn = int(round(n_cases * abnormal_fraction))
        console.print(
            f"[bold green]Wrote[/] {n_cases} pairs from {len(from_ct)} real CT(s) ({n_abn} abnormal, {n_cases - n_abn} normal) to {out_dir}"
        )
        console.print(f"Case list: {path}  (check it with: tsct cases validate {path})")
        return
    if size not in SIZES:
        _fail(f"--size must be one of {', '.join(SIZES)}, got '{size}'.")
    if out_dir.exists() and (out_dir / "caselist.csv").exists():
        _fail(f"{out_dir} already holds a case set (caselist.csv); choose a new folder or delete it first.")
    try:
        check_output_dir(out_dir, option="The output folder", empty=True, what="case set")
    except OutputPathError as exc:
        _fail(str(exc))
    try:
        with atomic_folder(out_dir) as work:
            synthesize_case_set(work, n_cases=n_cases, abnormal_fraction=abnormal_fraction, seed=seed, size=size, dicom=dicom, progress=True)
    except SynthesisError as exc:
        _fail(str(exc))
        return
    except OutputPathError as exc:  # an image written incompletely (a full disk)
        reason = str(exc).split(": ", 1)[-1].replace(" Nothing was kept under that name.", "")
        _fail(f"{out_dir}: could not write the case set ({reason}). Nothing was left behind.")
        return
    except OSError as exc:
        _fail(f"{out_dir}: could not write the case set ({exc.strerror or exc}). Nothing was left behind.")
        return
    path = out_dir / "caselist.csv"
    n_abn = int(round(n_cases * abnormal_fraction))
    console.print(f"[bold green]Wrote[/] {n_cases} synthetic cases ({n_abn} abnormal, {n_cases - n_abn} normal) to {out_dir}")
    console.print(f"Case list: {path}  (check it with: tsct cases validate {path})")


from .cli_pacs import pull_command as _pull_command  # noqa: E402  (tsct cases pull: DICOMweb, docs/pacs.md)

app.command("pull")(_pull_command)

from .cli_pacs import push_command as _push_command  # noqa: E402  (tsct cases push: STOW-RS, docs/pacs.md)

app.command("push")(_push_command)
