"""Records, exports (JAFROC Excel, iMRMC, CSV, analysis), imported marks and backups, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import subprocess
import threading
from collections import Counter

import pandas as pd
import pytest
from sqlalchemy import func, select

from reader_study import (
    ExportError,
    InputFileError,
    ReadingService,
    StudyStateError,
    backup_database,
    close_study,
    export_study,
    import_marks,
    open_db,
    study_records,
)
from reader_study.models import AuditEvent, CaseRead, Mark

from ._reading import read_every_session
from .conftest import make_study

# What every reader does on each study case (marks as (point_mm, rating) per treatment).
PLAN = {
    "C001": {"unaided": [((1, 0, 12), 3), ((0, 1, 12), 2)], "aided": [((1, 0, 12), 5), ((0, 1, 12), 2)]},  # LL + a second mark (dropped)
    "C002": {"unaided": [((0, 0, 12), 2)], "aided": []},  # a false positive unaided
    "C003": {"unaided": [((0.5, 0.5, 11), 4)], "aided": [((0.5, 0.5, 11), 4)]},  # between L1 and L2: nearer L2
    "C004": {"unaided": [], "aided": []},
}


def read_everything(db, study, names=None) -> None:
    def read(svc, item):
        marks = [] if item.training else PLAN[item.case_code][item.treatment]
        for n, (point, rating) in enumerate(marks):
            svc.save_mark(item.case_read_id, client_key=f"{item.case_read_id}-{n}", point_mm=point, rating=rating)
        return not marks

    read_every_session(db, study.code, [(name, study.reader_ids[name]) for name in names or list(study.reader_ids)], read)


def test_records_score_every_finished_reading(db, study):
    read_everything(db, study)
    with db.snapshot() as s:
        rec = study_records(s, study.code)
    assert rec.readers == ("R01", "R02", "R03", "R04") and rec.treatments == ("unaided", "aided")
    assert rec.reader_groups == {"R01": "board-certified", "R02": "board-certified", "R03": "resident", "R04": "resident"}
    truth = rec.truth
    assert truth.iloc[0].to_dict() == {"case_id": "C001", "lesion_id": "L1", "weight": 1.0, "location": "vertebral_body", "lesion_type": "lytic"}
    assert truth.iloc[1]["case_id"] == "C002" and pd.isna(truth.iloc[1]["lesion_id"]) and truth.iloc[1]["weight"] == 0.0
    assert truth["case_id"].tolist() == ["C001", "C002", "C003", "C003", "C004"]
    assert Counter(rec.marks["outcome"]) == {"LL": 16, "NL": 4, "dropped": 8}
    assert set(rec.ll["lesion_id"]) == {"L1", "L2"} and len(rec.ll) == 16
    assert (rec.ll[rec.ll["case_id"] == "C003"]["lesion_id"] == "L2").all()
    c001 = rec.ll[rec.ll["case_id"] == "C001"].set_index(["reader", "treatment"])["rating"]
    assert c001[("R01", "unaided")] == 3.0 and c001[("R01", "aided")] == 5.0
    assert rec.nl.groupby("treatment").size().to_dict() == {"unaided": 4}
    assert len(rec.reads) == 4 * 4 * 2 and (rec.reads["status"] == "finished").all()
    roc = rec.roc.set_index(["reader", "treatment", "case_id"])["rating"]
    assert roc[("R02", "unaided", "C001")] == 3.0 and roc[("R02", "aided", "C002")] == -math.inf
    assert roc[("R02", "unaided", "C002")] == 2.0
    # Straight into the analysis package.
    data = rec.to_observer_data()
    assert (data.n_treatments, data.n_readers, data.n_normal, data.n_abnormal, data.n_lesions) == (2, 4, 2, 2, 3)
    assert data.paradigm == "FROC" and data.reader_groups["R03"] == "resident"


def test_export_writes_files_that_read_back(db, study, tmp_path):
    from analysis import read_imrmc, read_jafroc_excel, read_tidy_csv

    read_everything(db, study)
    with db.transaction() as s:
        close_study(s, study.code)
    result = export_study(db, study.code, tmp_path / "out")
    names = set(result.files)
    assert {
        "S1-jafroc.xlsx",
        "S1.imrmc",
        "S1-tidy.csv",
        "truth.csv",
        "nl.csv",
        "ll.csv",
        "marks.csv",
        "reads.csv",
        "roc.csv",
        "readers.csv",
        "provenance.json",
    } <= names
    data = result.records.to_observer_data()
    assert read_jafroc_excel(tmp_path / "out" / "S1-jafroc.xlsx").equals(data)
    assert read_tidy_csv(tmp_path / "out" / "S1-tidy.csv").equals(data)
    roc = read_imrmc(tmp_path / "out" / "S1.imrmc")
    assert roc.paradigm == "ROC" and roc.n_readers == 4 and roc.n_cases == 4
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["content_hash"] == result.records.provenance["content_hash"] and len(provenance["files"]) == len(names) - 1
    assert "highest rating is the lesion localisation" in provenance["multiple_marks_on_one_lesion"]
    marks = pd.read_csv(tmp_path / "out" / "marks.csv")
    assert set(marks["outcome"]) == {"LL", "NL", "dropped"} and len(marks) == 28
    readers = pd.read_csv(tmp_path / "out" / "readers.csv")
    assert readers["name"].tolist() == ["Dr Ada", "Dr Ben", "Dr Cem", "Dr Dee"]
    with db.snapshot() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "EXPORT"))
        assert json.loads(event.detail_json)["files"]["S1-jafroc.xlsx"] == result.files["S1-jafroc.xlsx"]


def test_unfinished_readings_are_not_exported_as_negatives(db, study, tmp_path):
    read_everything(db, study, names=["Dr Ada", "Dr Ben"])
    with pytest.raises(ExportError, match=r"unfinished study readings \(R03 8, R04 8\)"):
        export_study(db, study.code, tmp_path / "x")
    result = export_study(db, study.code, tmp_path / "x", formats=["csv"], allow_incomplete=True)
    assert result.records.readers == ("R01", "R02") and result.records.excluded_readers == ("R03", "R04")
    assert "left out (unfinished): R03, R04" in result.records.summary()


def test_roc_study_exports_case_ratings(db, case_files, tmp_path):
    study = make_study(db, case_files, code="ROC", paradigm="ROC", rating_scale="0-100", training=False)

    def read(svc, item):
        svc.set_case_rating(item.case_read_id, 80.0 if item.case_code in ("C001", "C003") else 10.0)
        return False

    read_every_session(db, "ROC", study.reader_ids.items(), read)
    result = export_study(db, "ROC", tmp_path / "roc")
    data = result.records.to_observer_data()
    assert data.paradigm == "ROC" and data.n_normal == 2 and data.n_abnormal == 2


def test_imported_marks_are_checked_row_by_row_all_or_nothing(db, study, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "reader,case_id,treatment,rating,x_mm,y_mm,z_mm\n"
        "Dr Ada,C001,aided,4,0,0,12\n"  # fine
        "Dr Nobody,C001,aided,4,0,0,12\n"  # row 3: unknown reader
        "Dr Ada,C999,aided,4,0,0,12\n"  # row 4: unknown case
        "R02,C001,aided,9,0,0,12\n"  # row 5: rating outside the scale
        "Dr Ada,C001,aided,4,0,0,99\n"  # row 6: outside the volume
        "Dr Ada,C001,sideways,4,0,0,12\n"  # row 7: unknown treatment
    )
    with db.snapshot() as s:
        n_before = s.scalar(select(func.count()).select_from(Mark))
    with pytest.raises(InputFileError) as info:
        with db.transaction() as s:
            import_marks(s, study.code, bad)
    assert [(p.row, p.column) for p in info.value.problems] == [(3, "reader"), (4, "case_id"), (5, "rating"), (6, "z_mm"), (7, "treatment")]
    assert "nothing was changed" in str(info.value)
    with db.snapshot() as s:
        assert s.scalar(select(func.count()).select_from(Mark)) == n_before

    good = tmp_path / "good.csv"
    good.write_text(
        "reader,case_id,treatment,rating,index_x,index_y,index_z\nDr Ada,C001,aided,4,8,8,6\nR01,C001,aided,2,3,3,3\nDr Ben,C003,unaided,5,12,12,8\n"
    )
    with db.transaction() as s:
        result = import_marks(s, study.code, good)
    assert (result.n_added, result.n_already_present, result.n_reads_finished) == (3, 0, 2)
    with db.transaction() as s:
        again = import_marks(s, study.code, good)
    assert (again.n_added, again.n_already_present) == (0, 3)
    with db.snapshot() as s:
        marks = list(s.scalars(select(Mark).where(Mark.source == "import").order_by(Mark.id)))
        assert [(m.point_mm, m.rating) for m in marks] == [((0.0, 0.0, 12.0), 4.0), ((-5.0, -5.0, 6.0), 2.0), ((4.0, 4.0, 16.0), 5.0)]
        read = s.get(CaseRead, marks[0].case_read_id)
        assert read.status == "finished"
    # Marks cannot be imported over a reading finished in the workstation, nor into a closed study.
    svc = ReadingService(db, reader_id=study.reader_ids["Dr Cem"], study_code=study.code)
    svc.open_session()
    while (item := svc.next_case()) is not None:
        svc.open_case(item.case_read_id)
        svc.finish_case(item.case_read_id, no_lesion=True)
    done = next(w for w in svc.worklist(1) if not w.training)
    clash = tmp_path / "clash.csv"
    clash.write_text(f"reader,case_id,treatment,rating,x_mm,y_mm,z_mm\nDr Cem,{done.case_code},{done.treatment},3,0,0,12\n")
    with pytest.raises(InputFileError, match="already finished in the workstation"):
        with db.transaction() as s:
            import_marks(s, study.code, clash)
    with db.transaction() as s:
        close_study(s, study.code)
    with pytest.raises(StudyStateError, match="closed"):
        with db.transaction() as s:
            import_marks(s, study.code, good)


def test_backup_is_a_consistent_snapshot_while_readers_work(db, study, tmp_path):
    svc = ReadingService(db, reader_id=study.reader_ids["Dr Ada"], study_code=study.code)
    svc.open_session()
    view = svc.open_case(svc.next_case().case_read_id)
    stop = threading.Event()
    saved = []

    def reader_at_work() -> None:
        n = 0
        while not stop.is_set() and n < 300:
            saved.append(svc.save_mark(view.case_read_id, client_key=f"w{n}", point_mm=(0, 0, 12), rating=3).mark_id)
            n += 1

    worker = threading.Thread(target=reader_at_work)
    worker.start()
    while len(saved) < 20:
        threading.Event().wait(0.01)
    dest = tmp_path / ("backup.sqlite3" if db.dialect == "sqlite" else "backup.dump")
    result = backup_database(db, dest)
    stop.set()
    worker.join()
    assert dest.exists() and result.size_bytes > 0 and len(result.sha256) == 64
    assert 20 <= result.n_marks <= len(saved)
    if db.dialect == "sqlite":
        copy = open_db(f"sqlite:///{dest}")
        with copy.snapshot() as s:
            ids = list(s.scalars(select(Mark.id).order_by(Mark.id)))
        copy.dispose()
        assert len(ids) == result.n_marks and ids == saved[: len(ids)]  # a prefix of the saves: one moment in time
    else:
        from reader_study.backup import _pg_tool

        listing = subprocess.run([_pg_tool("pg_restore"), "--list", str(dest)], capture_output=True, text=True, check=True).stdout
        assert "TABLE DATA public mark" in listing and "TABLE DATA public audit_event" in listing
    with db.snapshot() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "BACKUP")) == 1


def test_postgresql_backup_restores(postgres_server, case_files, tmp_path):
    from reader_study import init_db
    from reader_study.backup import _pg_tool

    url = postgres_server.create_database()
    db = init_db(url)
    study = make_study(db, case_files, code="PGB")
    read_everything(db, study, names=["Dr Ada"])
    result = backup_database(db, tmp_path / "pg.dump")
    db.dispose()
    target = postgres_server.create_database()
    subprocess.run(
        [_pg_tool("pg_restore"), "--no-owner", f"--dbname={target.replace('postgresql+psycopg', 'postgresql')}", str(tmp_path / "pg.dump")],
        check=True,
        capture_output=True,
    )
    restored = open_db(target)
    with restored.snapshot() as s:
        assert s.scalar(select(func.count()).select_from(Mark)) == result.n_marks == 7  # Ada: unaided 2 + 1 + 1, aided 2 + 0 + 1
    restored.dispose()


def test_extent_rule_scores_against_label_maps_and_refuses_changed_ones(db, tmp_path):
    from reader_study.harness import SyntheticLesion, write_synthetic_case_list
    from reader_study.scoring import ScoringError

    # One abnormal case with two lesions in one label map (values 1 and 2), one normal case.
    case_list = write_synthetic_case_list(
        tmp_path / "ext", [[SyntheticLesion((4, 4, 3), 3.0), SyntheticLesion((11, 11, 8), 3.0)], []], label_maps=True
    )
    study = make_study(db, (case_list, case_list), code="EXT", training=False, acceptance_rule="extent", acceptance_radius_mm=None)
    # C001: L1 at voxel (4, 4, 3) = (-4, -4, 6) mm; L2 at voxel (11, 11, 8) = (3, 3, 16) mm.
    plan = {"C001": [((-4, -4, 6), 5), ((-3, -4, 6), 3), ((-4, -4, 10), 2), ((3, 3, 16), 4)], "C002": [((0, 0, 12), 1)]}

    def read(svc, item):
        for n, (point, rating) in enumerate(plan[item.case_code]):
            svc.save_mark(item.case_read_id, client_key=f"{item.case_read_id}-{n}", point_mm=point, rating=rating)
        return False

    read_every_session(db, "EXT", study.reader_ids.items(), read)
    with db.snapshot() as s:
        rec = study_records(s, "EXT")
    one = rec.marks[(rec.marks["reader"] == "R01") & (rec.marks["treatment"] == "unaided")].sort_values("rating", ascending=False)
    # rating 5 at L1's centre: LL; 3 one voxel away (inside the 3 mm sphere of voxels): dropped;
    # 4 at L2: LL; 2 at 4 mm above L1 (z 10 mm: two slices, outside the label): NL; the normal case's mark: NL.
    assert list(zip(one["rating"], one["outcome"], one["lesion_id"].fillna("-"), strict=True)) == [
        (5.0, "LL", "L1"),
        (4.0, "LL", "L2"),
        (3.0, "dropped", "L1"),
        (2.0, "NL", "-"),
        (1.0, "NL", "-"),
    ]
    # A label map that changed after the study was created is refused.
    label_map = next((tmp_path / "ext").glob("C001_labels.nii.gz"))
    label_map.write_bytes(label_map.read_bytes() + b"\0")
    with pytest.raises(ScoringError, match="changed after the study was created"):
        with db.snapshot() as s:
            study_records(s, "EXT")


def test_unreadable_exams_are_listed_when_creating_a_study(db, tmp_path):
    from cases import CaseListError
    from reader_study import create_study

    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("p.nii.gz", "c.nii.gz"):
        (folder / name).write_bytes(b"not an image")
    (folder / "cases.csv").write_text("case_id,prior,current,status\nB1,p.nii.gz,c.nii.gz,normal\n")
    with pytest.raises(CaseListError) as info:  # the case list's content checks read every exam first
        with db.transaction() as s:
            create_study(s, code="BROKEN", case_list=folder / "cases.csv")
    assert [(p.row, p.column) for p in info.value.problems] == [(2, "prior"), (2, "current")]
    assert all("case B1" in p.message and "cannot be used" in p.message for p in info.value.problems)
