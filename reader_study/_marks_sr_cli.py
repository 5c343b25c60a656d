"""``tsct study export-sr``: the readers' marks of a finished study as DICOM SR (reader_study/marks_sr.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register_marks_sr_command(app: typer.Typer) -> None:
    """Add ``export-sr`` to the ``tsct study`` group (uses that module's --db, console and error exit)."""
    from . import cli as _cli

    @app.command("export-sr")
    def export_sr(
        code: str = typer.Argument(..., help="Study code."),
        out: Path = typer.Option(..., "--out", help="Folder for <case_id>/SR_<reader>.dcm (created if needed)."),
        dicom_map: Optional[Path] = typer.Option(
            None,
            "--dicom-map",
            help="CSV case_id,current_dicom: each case's current DICOM series folder (needed when the study's current exams are not DICOM folders).",
        ),
        reader_names: bool = typer.Option(False, "--reader-names", help="Name the observer by the reader's name instead of the study's reader code."),
        allow_incomplete: bool = typer.Option(False, help="Export the readers who have finished, leaving out the others."),
    ) -> None:
        """Write the readers' marks as one DICOM SR (TID 1500) per reader and case, in the current exam's study."""
        from .marks_sr import export_marks_sr, read_dicom_map

        with _cli._errors():
            folders = read_dicom_map(dicom_map) if dicom_map is not None else None
            db = _cli._db()
            with db.snapshot() as s:
                result = export_marks_sr(s, code, out, dicom_folders=folders, reader_names=reader_names, allow_incomplete=allow_incomplete)
            _cli.console.print(result.summary(), highlight=False)
