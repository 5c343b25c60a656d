"""A small reader-study world for the hostile-input tests and the tally script (bench/hostile_study_tally.py).

Built once per test session in a folder: synthetic prior/current NIfTI pairs (16x16x12 voxels),
their case list, detector outputs readers see (subtraction, z-map, qc.json), a readers file, and a
SQLite database holding four studies:

``DRAFT``   created, no design yet
``LOCKED``  designed and locked (with the detector outputs), not open
``OPEN``    locked and open for reading, nothing read yet
``DONE``    every case read and the study closed

plus the analysis files exported from ``DONE`` (JAFROC Excel, iMRMC, tidy CSV). Each hostile case
works on its own copy of the database.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from reader_study import ReaderSpec, ReadingService, close_study, create_study, init_db, lock_study, make_design, open_study
from reader_study.exchange import export_study
from reader_study.harness import SyntheticLesion, write_synthetic_case_list

LESIONS = [[SyntheticLesion((8, 8, 6), 4.0)], [], [SyntheticLesion((4, 4, 3), 3.0), SyntheticLesion((12, 12, 8), 3.0)], []]


@dataclass(frozen=True)
class StudyEnv:
    """Paths of the shared world (read-only for the tests: copy before changing anything)."""

    root: Path
    case_list: Path
    detector_dir: Path
    readers_csv: Path
    db_template: Path
    jafroc: Path
    imrmc: Path
    tidy: Path


def write_detector_outputs(case_list: Path, detector_dir: Path) -> None:
    """Subtraction, z-map and qc.json per case with a finished outputs.json manifest (what `tsct detect batch` leaves for a reader)."""
    from detector.outputs import ModelRecord
    from reading_app.workstation.testing import write_test_detector_outputs

    write_test_detector_outputs(case_list, detector_dir, model=ModelRecord("network", "tsct z-score network", "test"), qc=True)


def _readers(prefix: str) -> list[ReaderSpec]:
    return [ReaderSpec(f"{prefix} Ada", "board-certified"), ReaderSpec(f"{prefix} Ben", "resident")]


def build_env(root: Path) -> StudyEnv:
    """Build the world under ``root`` (a fresh folder)."""
    root.mkdir(parents=True, exist_ok=True)
    case_list = write_synthetic_case_list(root / "cases", LESIONS)
    detector_dir = root / "detector"
    write_detector_outputs(case_list, detector_dir)
    readers_csv = root / "readers.csv"
    readers_csv.write_text("name,group\nDr New One,board-certified\nDr New Two,resident\n")
    db_path = root / "template.sqlite3"
    db = init_db(f"sqlite:///{db_path}")
    with db.transaction() as s:
        create_study(s, code="DRAFT", case_list=case_list, readers=_readers("Draft"))
        create_study(s, code="LOCKED", case_list=case_list, readers=_readers("Locked"))
        make_design(s, "LOCKED")
        lock_study(s, "LOCKED", detector_dir=detector_dir)
        for code in ("OPEN", "DONE"):
            create_study(s, code=code, case_list=case_list, readers=_readers(code.title()), washout_days=0)
            make_design(s, code)
            lock_study(s, code, detector_dir=detector_dir)
            open_study(s, code)
    from sqlalchemy import select

    from reader_study.models import Reader

    with db.snapshot() as s:
        ids = dict(s.execute(select(Reader.name, Reader.id).where(Reader.name.like("Done %"))).all())
    for name, rid in ids.items():
        svc = ReadingService(db, reader_id=rid, study_code="DONE")
        for session in range(1, len(svc.sessions()) + 1):
            svc.open_session(session)
            while (item := svc.next_case()) is not None and item.session_index == session:
                svc.open_case(item.case_read_id)
                if item.case_code in ("C001", "C003"):
                    svc.save_mark(item.case_read_id, client_key=f"k{item.case_read_id}", point_mm=(0.0, 0.0, 12.0), rating=4 if item.overlays else 3)
                    svc.finish_case(item.case_read_id)
                else:
                    svc.finish_case(item.case_read_id, no_lesion=True)
    with db.transaction() as s:
        close_study(s, "DONE")
    export = export_study(db, "DONE", root / "analysis-files")
    db.dispose()
    out = export.out_dir
    return StudyEnv(root, case_list, detector_dir, readers_csv, db_path, out / "DONE-jafroc.xlsx", out / "DONE.imrmc", out / "DONE-tidy.csv")


def copy_db(env: StudyEnv, folder: Path) -> Path:
    """A private copy of the template database in ``folder``."""
    target = folder / "study.sqlite3"
    shutil.copyfile(env.db_template, target)
    return target
