"""Coordinator functions on SQLite and PostgreSQL: creating, readers, design, lock and its hash, status."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from reader_study import (
    DesignError,
    DuplicateReaderError,
    InputFileError,
    ReaderSpec,
    ReaderStudyError,
    ReadingService,
    StudyLockedError,
    StudyStateError,
    TreatmentSpec,
    add_readers,
    close_study,
    create_study,
    list_studies,
    load_design,
    lock_study,
    make_design,
    open_study,
    read_readers_file,
    study_status,
    verify_lock,
)
from reader_study.models import AuditEvent, CaseRead, Lesion, Study, StudyCase

from .conftest import make_study


def test_create_stores_cases_truth_and_settings(db, case_files):
    make_study(db, case_files, code="NEW", design=None, acceptance_radius_mm=12.5, washout_days=35, seed=4)
    with db.snapshot() as s:
        study = s.scalar(select(Study).where(Study.code == "NEW"))
        assert (study.paradigm, study.rating_scale, study.acceptance_rule, study.acceptance_radius_mm, study.washout_days, study.seed) == (
            "FROC",
            "1-5",
            "radius",
            12.5,
            35.0,
            4,
        )
        assert [t.code for t in study.treatments] == ["unaided", "aided"]
        assert study.treatments[1].overlay_names == ("subtraction", "zmap")
        cases = {c.code: c for c in s.scalars(select(StudyCase).where(StudyCase.study_id == study.id))}
        assert sorted(cases) == ["C001", "C002", "C003", "C004", "T001"]
        assert cases["T001"].is_training and not cases["C001"].is_training
        assert [cases[c].jafroc_id for c in ("C001", "C002", "C003", "C004", "T001")] == [1, 2, 3, 4, 5]
        assert cases["C003"].abnormal and not cases["C002"].abnormal
        assert cases["C001"].size == (16, 16, 12) and cases["C001"].origin_mm == (-8.0, -8.0, 0.0)
        assert len(cases["C001"].current_sha256) == 64
        lesions = list(s.scalars(select(Lesion).where(Lesion.case_id == cases["C003"].id).order_by(Lesion.number)))
        assert [(les.code, les.center_mm, les.radius_mm, les.weight, les.lesion_type, les.location) for les in lesions] == [
            ("L1", (-4.0, -4.0, 6.0), 3.0, 0.5, "blastic", "lamina_arch"),
            ("L2", (4.0, 4.0, 16.0), 3.0, 0.5, "lytic", "vertebral_body"),
        ]
        assert len(study.study_readers) == 4 and [sr.reader_code for sr in study.study_readers] == ["R01", "R02", "R03", "R04"]
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "CREATE_STUDY")) == 1
        table = list_studies(s)
        assert table.set_index("code").loc["NEW", "cases"] == 4


def test_bad_settings_and_codes_are_refused(db, case_files):
    case_list, training = case_files
    with db.transaction() as s:
        create_study(s, code="A1", case_list=case_list)
    bad = [
        ({"code": "A1"}, "already exists"),
        ({"code": "bad code!"}, "must be 1-64 letters"),
        ({"code": "X", "paradigm": "LROC"}, "Paradigm"),
        ({"code": "X", "rating_scale": "1-10"}, "Rating scale"),
        ({"code": "X", "acceptance_rule": "overlap"}, "Acceptance rule"),
        ({"code": "X", "acceptance_radius_mm": -1.0}, "positive acceptance radius"),
        ({"code": "X", "washout_days": -3}, "washout-days"),
        ({"code": "X", "treatments": [TreatmentSpec("a"), TreatmentSpec("a")]}, "repeated: a"),
        ({"code": "X", "training_case_list": case_list}, "appear in both"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ReaderStudyError, match=message):
            with db.transaction() as s:
                create_study(s, **{"case_list": case_list, **kwargs})
    with db.snapshot() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 1


def test_create_refuses_truth_the_current_exam_contradicts(db, tmp_path):
    """`study create` runs the case list's full content checks (as `tsct cases validate` does):
    a lesion centre outside the current exam, or in air, is refused and nothing is created."""
    import csv

    from typer.testing import CliRunner

    from cases import CaseListError
    from reader_study.harness import SyntheticLesion, write_synthetic_case_list
    from tsct_cli import app

    good = write_synthetic_case_list(tmp_path, [[SyntheticLesion((8, 8, 6), 4.0)], [SyntheticLesion((4, 4, 3), 3.0)], []])
    rows = list(csv.DictReader(good.open(newline="")))
    rows[0]["center_x_mm"] = "5000"  # the exam spans -8 ... 8 mm in x
    rows[1]["center_x_mm"], rows[1]["center_y_mm"] = "6", "6"  # inside the exam, in -500 HU noise: no bone
    wrong = tmp_path / "wrong.csv"
    with wrong.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CaseListError) as info:
        with db.transaction() as s:
            create_study(s, code="WRONG", case_list=wrong)
    messages = [str(p) for p in info.value.problems]
    assert len(messages) == 2, messages
    assert "row 2" in messages[0] and "C001" in messages[0] and "outside the current exam" in messages[0]
    assert "row 3" in messages[1] and "C002" in messages[1] and "not in bone" in messages[1]
    with db.snapshot() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 0
    result = CliRunner().invoke(app, ["study", "--db", db.url, "create", "WRONG", "--case-list", str(wrong)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "outside the current exam" in flat and "Traceback" not in flat
    with db.transaction() as s:  # the same list, truth untouched: accepted
        create_study(s, code="GOOD", case_list=good)


def test_duplicate_reader_names_are_refused(db, case_files, tmp_path):
    make_study(db, case_files, code="R", design=None)
    with pytest.raises(DuplicateReaderError, match="already a reader"):
        with db.transaction() as s:
            add_readers(s, "R", [ReaderSpec("dr ada", "board-certified")])  # same name, other case
    with pytest.raises(DuplicateReaderError, match="given twice"):
        with db.transaction() as s:
            add_readers(s, "R", [ReaderSpec("Dr Eve"), ReaderSpec("DR EVE")])
    with pytest.raises(DuplicateReaderError, match="already exists with group"):
        with db.transaction() as s:
            add_readers(s, "R", [ReaderSpec("Dr Ada", "resident")])
    with db.snapshot() as s:
        assert len(s.scalar(select(Study).where(Study.code == "R")).study_readers) == 4
    # A readers file with a repeated name, an empty name and a bad number: every row reported.
    path = tmp_path / "readers.csv"
    path.write_text("name,group,experience_years\nDr X,resident,2\n,resident,1\nDr x,resident,3\nDr Y,resident,many\n")
    with pytest.raises(InputFileError) as info:
        read_readers_file(path)
    assert [(p.row, p.column) for p in info.value.problems] == [(3, "name"), (4, "name"), (5, "experience_years")]
    path.write_text("name,group,role,experience_years\nDr X,board-certified,radiologist,12\nDr Y,resident,,2\n")
    assert read_readers_file(path) == [ReaderSpec("Dr X", "board-certified", "radiologist", 12.0), ReaderSpec("Dr Y", "resident", "radiologist", 2.0)]


def test_lock_freezes_truth_and_design_with_a_stable_hash(db, case_files):
    make_study(db, case_files, code="L", lock=False)
    with db.transaction() as s:
        digest = lock_study(s, "L")
    with db.snapshot() as s:
        ok, stored, now = verify_lock(s, "L")
    assert ok and stored == now == digest and len(digest) == 64
    for change in (
        lambda s: add_readers(s, "L", [ReaderSpec("Dr Late")]),
        lambda s: make_design(s, "L"),
        lambda s: lock_study(s, "L"),
    ):
        with pytest.raises(StudyLockedError, match="locked"):
            with db.transaction() as s:
                change(s)
    with pytest.raises(StudyLockedError):
        with db.transaction() as s:
            s.scalar(select(CaseRead).limit(1)).order_index = 999
    with db.snapshot() as s:
        assert verify_lock(s, "L")[0]


def test_the_same_inputs_give_the_same_hash_and_design(db, case_files):
    make_study(db, case_files, code="H1", open_=False)
    make_study(db, case_files, code="H2", open_=False, design=None)
    with db.transaction() as s:
        make_design(s, "H2")
    with db.snapshot() as s:
        d1, d2 = load_design(s, "H1"), load_design(s, "H2")
    assert d1.reads == d2.reads and d1.reader_groups == d2.reader_groups
    with db.transaction() as s:
        h2 = lock_study(s, "H2")
    with db.snapshot() as s:
        h1 = s.scalar(select(Study.content_hash).where(Study.code == "H1"))
    assert h1 != h2  # the study code is part of the content
    with db.snapshot() as s:
        from reader_study.lock import content_hash, study_content

        c1 = study_content(s, s.scalar(select(Study).where(Study.code == "H1")))
        c2 = study_content(s, s.scalar(select(Study).where(Study.code == "H2")))
    c2["study"]["code"] = "H1"
    assert content_hash(c1) == content_hash(c2)


def test_lifecycle_needs_a_design_and_a_lock(db, case_files):
    make_study(db, case_files, code="LC", design=None)
    with pytest.raises(DesignError, match="no design"):
        with db.transaction() as s:
            lock_study(s, "LC")
    with pytest.raises(StudyStateError, match="not locked"):
        with db.transaction() as s:
            open_study(s, "LC")
    with db.transaction() as s:
        make_design(s, "LC")
        add_readers(s, "LC", [ReaderSpec("Dr Eve", "resident")])
    with pytest.raises(DesignError, match="out of date"):
        with db.transaction() as s:
            lock_study(s, "LC")
    with db.transaction() as s:
        make_design(s, "LC")
        lock_study(s, "LC")
        open_study(s, "LC")
        close_study(s, "LC")
    with pytest.raises(StudyStateError, match="not reopened"):
        with db.transaction() as s:
            open_study(s, "LC")


def test_status_reports_progress_and_time_per_case(db, study):
    t = [dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc)]
    svc = ReadingService(db, reader_id=study.reader_ids["Dr Cem"], study_code=study.code, clock=lambda: t[0])
    svc.open_session()
    seconds = iter([20, 40, 60, 80, 100, 120])
    done = 0
    while (item := svc.next_case()) is not None and done < 4:
        svc.open_case(item.case_read_id)
        t[0] += dt.timedelta(seconds=next(seconds))
        svc.finish_case(item.case_read_id, no_lesion=True)
        done += 1
    with db.snapshot() as s:
        st = study_status(s, study.code)
    frame = st.to_frame().set_index(["name", "session"])
    row = frame.loc[("Dr Cem", 1)]
    assert (row["status"], row["finished"], row["reads"]) == ("open", 4, 6)  # 2 training + 4 study reads
    assert row["median_time_s"] == 50.0 and row["total_time_s"] == 200.0
    assert frame.loc[("Dr Ada", 1), "status"] == "scheduled"
    assert st.times.set_index("treatment")["n_reads"].sum() == 2  # only study reads count (the 3rd and 4th read)
    assert "4 of 40 case reads finished (10%)" in st.summary()
