"""Readers' marks of a finished study as one DICOM SR per reader and case (TID 1500), checked
with dciodvfy (skipped only without dicom3tools) and read back with highdicom."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from cases import read_volume, write_dicom_series
from reader_study import open_db, study_records

from .conftest import make_study
from .test_exchange import PLAN, read_everything

hd = pytest.importorskip("highdicom")
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture()
def finished(sqlite_template, case_files, tmp_path):
    target = tmp_path / "study.sqlite3"
    shutil.copyfile(sqlite_template, target)
    db = open_db(f"sqlite:///{target}")
    study = make_study(db, case_files)
    read_everything(db, study)
    # each case's current exam as a DICOM series (one study per case), listed in a CSV map
    from sqlalchemy import select

    from reader_study.models import StudyCase

    rows = ["case_id,current_dicom"]
    with db.snapshot() as s:
        cases = [(c.code, c.current_path) for c in s.scalars(select(StudyCase).where(StudyCase.is_training.is_(False)))]
    for code, current in cases:
        folder = tmp_path / "dicom" / code
        write_dicom_series(
            read_volume(current), folder, series_description=f"{code} current", template={"PatientID": f"P-{code}", "PatientName": f"Test^{code}"}
        )
        rows.append(f"{code},dicom/{code}")
    (tmp_path / "map.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    yield db, study, tmp_path
    db.dispose()


def test_one_sr_per_reader_and_case_with_every_mark(finished):
    from reader_study.marks_sr import export_marks_sr, read_dicom_map

    db, study, tmp = finished
    with db.snapshot() as s:
        res = export_marks_sr(s, study.code, tmp / "sr", dicom_folders=read_dicom_map(tmp / "map.csv"))
        rec = study_records(s, study.code)
    assert len(res.files) == len(rec.readers) * len(PLAN)
    assert res.n_marks == len(rec.marks)
    for (reader, case), path in res.files.items():
        ds = pydicom.dcmread(str(path))
        src = pydicom.dcmread(str(next((tmp / "dicom" / case).glob("*.dcm"))), stop_before_pixels=True)
        assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == f"P-{case}"
        sr = hd.sr.srread(str(path))
        (observer,) = sr.content.get_observer_contexts()
        assert pydicom.valuerep.PersonName(observer.observer_identifying_attributes.name).family_name == reader
        reads = sr.content.get_image_measurement_groups()
        assert [g.tracking_identifier for g in reads] == [
            f"Read {t}" for t in rec.reads[(rec.reads.reader == reader) & (rec.reads.case_id == case)].sort_values(["session", "position"]).treatment
        ]
        got = []
        for g in sr.content.get_volumetric_roi_measurement_groups():
            point = g.roi[0]
            assert point.GraphicType == "POINT" and point.ReferencedFrameOfReferenceUID == src.FrameOfReferenceUID
            (m,) = g.get_measurements()
            treatment = g.tracking_identifier.split(" mark ")[0]
            got.append((treatment, tuple(np.round(np.asarray(point.GraphicData, dtype=float), 3)), m.value))
        want = [(t, tuple(np.round(p, 3)), float(r)) for t, marks in PLAN[case].items() for p, r in marks]
        assert sorted(got) == sorted(want)
        if DCIODVFY:
            proc = subprocess.run([DCIODVFY, str(path)], check=False, capture_output=True, text=True)
            assert [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")] == []


def test_reader_names_and_missing_dicom_are_handled(finished):
    from reader_study.marks_sr import MarksSRError, export_marks_sr, read_dicom_map

    db, study, tmp = finished
    folders = read_dicom_map(tmp / "map.csv")
    with db.snapshot() as s:
        res = export_marks_sr(s, study.code, tmp / "named", dicom_folders=folders, reader_names=True)
        first = next(iter(res.files.values()))
        (observer,) = hd.sr.srread(str(first)).content.get_observer_contexts()
        assert pydicom.valuerep.PersonName(observer.observer_identifying_attributes.name).family_name.startswith("Dr ")
        folders.pop("C002")
        with pytest.raises(MarksSRError, match="C002.*--dicom-map"):
            export_marks_sr(s, study.code, tmp / "x", dicom_folders=folders)


def test_cli_export_sr(finished):
    from typer.testing import CliRunner

    from reader_study.cli import app

    db, study, tmp = finished
    runner = CliRunner()
    url = db.url
    res = runner.invoke(app, ["--db", url, "export-sr", study.code, "--out", str(tmp / "cli"), "--dicom-map", str(tmp / "map.csv")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp / "cli").rglob("SR_*.dcm"))) == 4 * len(PLAN)
    res = runner.invoke(app, ["--db", url, "export-sr", study.code, "--out", str(tmp / "cli2")])
    assert res.exit_code == 2 and "--dicom-map" in res.output and "Traceback" not in res.output
