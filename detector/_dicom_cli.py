"""``tsct detect export-dicom``: a case folder's SEG, Parametric Map, SR and overlay series.

Registered on the ``tsct detect`` group by :func:`register_dicom_commands` (called from
detector/cli.py). See docs/dicom-objects.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._cli_common import console
from ._cli_common import fail as _fail


def export_dicom(
    case_dir: Path = typer.Argument(..., help="A case folder written by 'tsct detect run/batch' (bone_roi.nii.gz, zmap.nii.gz, candidates.json)."),
    current: Path = typer.Option(..., "--current", help="The current exam's DICOM series folder (the exam the case was run on)."),
    out: Path = typer.Option(..., "--out", help="Folder for SEG.dcm, PM.dcm, SR.dcm and overlay/ (created if needed)."),
    series_uid: Optional[str] = typer.Option(None, "--series-uid", help="SeriesInstanceUID of the current series when the folder holds several."),
    objects: str = typer.Option("seg,pm,sr,overlay", "--objects", help="Comma-separated subset of seg, pm, sr, overlay."),
) -> None:
    """Write the detector's findings as standard DICOM objects in the current exam's study."""
    from ._errors import DetectorInputError
    from .dicom_objects import export_case_dicom

    if not case_dir.is_dir():
        _fail(f"{case_dir}: not a folder. Give a case folder written by 'tsct detect run' or 'tsct detect batch' (<out>/<case_id>/).")
    chosen = [o.strip().lower() for o in objects.split(",") if o.strip()]
    try:
        result = export_case_dicom(case_dir, current, out, series_uid=series_uid, objects=chosen)
    except DetectorInputError as exc:
        _fail(str(exc))
    except (OSError, ValueError) as exc:
        _fail(f"{case_dir}: could not write the DICOM objects into {out}: {exc}")
    for name, path in result.paths.items():
        console.print(f"{name.upper():8s} {path}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {note}", highlight=False)


def export_dicom_batch(
    case_list: Path = typer.Argument(..., help="The case list the batch was run on (its current exams must be DICOM series folders)."),
    work: Path = typer.Option(..., "--work", help="The 'tsct detect batch' output folder (<work>/<case_id>/)."),
    out: Path = typer.Option(..., "--out", help="Folder for <case_id>/SEG.dcm, PM.dcm, SR.dcm, overlay/."),
    objects: str = typer.Option("seg,pm,sr,overlay", "--objects", help="Comma-separated subset of seg, pm, sr, overlay."),
) -> None:
    """The DICOM objects of every finished case of a batch; a failing case does not stop the others."""
    from cases import CaseListError, read_case_list

    from ._errors import DetectorInputError
    from .dicom_objects import export_case_dicom

    try:
        cases = read_case_list(case_list)
    except (CaseListError, OSError, ValueError) as exc:
        _fail(f"{case_list}: {str(exc).splitlines()[0]}")
    chosen = [o.strip().lower() for o in objects.split(",") if o.strip()]
    done, skipped, failed = 0, [], {}
    for case in cases:
        case_dir = work / case.case_id
        if not (case_dir / "qc.json").is_file():
            skipped.append(case.case_id)
            continue
        try:
            result = export_case_dicom(case_dir, case.current, out / case.case_id, objects=chosen)
        except (DetectorInputError, OSError, ValueError) as exc:
            failed[case.case_id] = str(exc)
            continue
        done += 1
        for note in result.notes:
            console.print(f"[yellow]{case.case_id}:[/] {note}", highlight=False)
    console.print(
        f"DICOM objects of {done} case(s) in {out}" + (f"; not finished (no qc.json), skipped: {', '.join(skipped)}" if skipped else ""),
        highlight=False,
    )
    if failed:
        _fail(f"{len(failed)} case(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()), code=1)


def register_dicom_commands(app: typer.Typer) -> None:
    """Add ``export-dicom`` and ``export-dicom-batch`` to the ``tsct detect`` group."""
    app.command("export-dicom")(export_dicom)
    app.command("export-dicom-batch")(export_dicom_batch)
