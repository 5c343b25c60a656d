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


def register_dicom_commands(app: typer.Typer) -> None:
    """Add ``export-dicom`` to the ``tsct detect`` group."""
    app.command("export-dicom")(export_dicom)
