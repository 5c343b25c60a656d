"""Fixtures: every database test runs against SQLite and against a real, throw-away PostgreSQL.

The PostgreSQL server is started once per test session in a temporary folder on 127.0.0.1
(``reader_study.harness.TemporaryPostgres``) and removed afterwards. Its run is skipped only
when it cannot be started here (no server programs, no ``postgres`` user when running as root),
and the skip says why and what to install. The schema is migrated once into a template (a SQLite
file copied per test; a PostgreSQL template database cloned per test), so each test gets a fresh,
fully migrated database quickly.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from reader_study import Database, ReaderSpec, create_study, init_db, lock_study, make_design, open_db, open_study
from reader_study.harness import PostgresUnavailable, SyntheticLesion, TemporaryPostgres, write_synthetic_case_list

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_server():
    server = TemporaryPostgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL run skipped: {exc}")
    try:
        url = server.create_database("tsct_template")
        init_db(url).dispose()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db = init_db(f"sqlite:///{path}")
    db.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "study.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        yield f"sqlite:///{target}"
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"t_{uuid.uuid4().hex[:12]}"
        url = server.create_database(name, template="tsct_template")
        yield url
        server.drop_database(name)


@pytest.fixture()
def db(db_url) -> Database:
    database = open_db(db_url)
    yield database
    database.dispose()


# ------------------------------------------------------------------------------------------------
# A small standard study. Grid: 16 x 16 x 12 voxels, spacing (1, 1, 2) mm, origin (-8, -8, 0):
# voxel (i, j, k) is at (i - 8, j - 8, 2 k) mm.
#   C001 abnormal: L1 at voxel (8, 8, 6) = (0, 0, 12) mm, radius 4 mm
#   C002 normal
#   C003 abnormal: L1 at voxel (4, 4, 3) = (-4, -4, 6) mm; L2 at voxel (12, 12, 8) = (4, 4, 16) mm; radius 3 mm
#   C004 normal
#   T001 training, abnormal: L1 at voxel (8, 8, 6), radius 4 mm
LESIONS = [
    [SyntheticLesion((8, 8, 6), 4.0)],
    [],
    [SyntheticLesion((4, 4, 3), 3.0, "blastic", "lamina_arch"), SyntheticLesion((12, 12, 8), 3.0)],
    [],
]
READERS = [
    ReaderSpec("Dr Ada", "board-certified"),
    ReaderSpec("Dr Ben", "board-certified"),
    ReaderSpec("Dr Cem", "resident"),
    ReaderSpec("Dr Dee", "resident"),
]


@pytest.fixture(scope="session")
def case_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cases")
    case_list = write_synthetic_case_list(folder, LESIONS)
    training = write_synthetic_case_list(folder / "training", [[SyntheticLesion((8, 8, 6), 4.0)]], prefix="T")
    return case_list, training


@dataclass
class StudyInfo:
    code: str
    reader_ids: dict[str, int]


def make_study(
    db: Database,
    case_files: tuple[Path, Path],
    *,
    code: str = "S1",
    design: str | None = "crossover",
    lock: bool = True,
    open_: bool = True,
    training: bool = True,
    **settings,
) -> StudyInfo:
    """Create the standard study (4 cases, 4 readers) and optionally design, lock and open it."""
    from sqlalchemy import select

    from reader_study.models import Reader, StudyReader

    case_list, training_list = case_files
    with db.transaction() as s:
        create_study(s, code=code, case_list=case_list, readers=READERS, training_case_list=training_list if training else None, **settings)
        if design:
            make_design(s, code, kind=design)
            if lock:
                lock_study(s, code)
                if open_:
                    open_study(s, code)
    with db.snapshot() as s:
        rows = s.execute(select(Reader.name, Reader.id).join(StudyReader, StudyReader.reader_id == Reader.id)).all()
    return StudyInfo(code, {name: rid for name, rid in rows})


@pytest.fixture()
def study(db, case_files) -> StudyInfo:
    return make_study(db, case_files)


def write_detector_outputs(case_lists, detector_dir: Path) -> Path:
    """Detector outputs readers see (subtraction, z-map) and a ``qc.json``, with a finished ``outputs.json`` manifest
    (model ``tsct z-score network`` 9.9.9-test), for every case of ``case_lists``."""
    from detector.outputs import ModelRecord
    from reading_app.workstation.testing import write_test_detector_outputs

    model = ModelRecord("network", "tsct z-score network", "9.9.9-test")
    for case_list in case_lists:
        write_test_detector_outputs(case_list, detector_dir, model=model, qc=True)
    return detector_dir


@pytest.fixture(scope="session")
def detector_outputs(case_files, tmp_path_factory) -> Path:
    """Detector outputs for the standard cases (shared; tests that change files make their own)."""
    return write_detector_outputs(case_files, tmp_path_factory.mktemp("detector"))
