"""The reader-facing service, on SQLite and PostgreSQL: saving, idempotency, history, isolation, bad input, washout."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from reader_study import (
    CaseView,
    ClientKeyConflictError,
    MarkPositionError,
    NotFoundError,
    RatingError,
    ReadingService,
    ReadingStateError,
    StudyStateError,
    WashoutError,
    WorklistItem,
    close_study,
    waive_washout,
)
from reader_study.models import AuditEvent, Mark

from .conftest import make_study

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += dt.timedelta(**kwargs)


def counts(db) -> tuple[int, int]:
    with db.snapshot() as s:
        return s.scalar(select(func.count()).select_from(Mark)), s.scalar(select(func.count()).select_from(AuditEvent))


def service(db, study, name, clock=None) -> ReadingService:
    return ReadingService(db, reader_id=study.reader_ids[name], study_code=study.code, clock=clock or Clock())


def open_next(svc: ReadingService) -> CaseView:
    item = svc.next_case()
    assert item is not None
    return svc.open_case(item.case_read_id)


def finish_session(svc: ReadingService, clock: Clock | None = None) -> None:
    while (item := svc.next_case()) is not None:
        view = svc.open_case(item.case_read_id)
        if clock:
            clock.advance(seconds=30)
        svc.finish_case(view.case_read_id, no_lesion=not view.marks)


def test_a_reading_is_saved_at_once_and_audited(db, study):
    clock = Clock()
    svc = service(db, study, "Dr Ada", clock)
    session = svc.open_session()
    assert (session.session_index, session.status) == (1, "open")
    worklist = svc.worklist()
    assert [w.position for w in worklist] == list(range(1, len(worklist) + 1))
    assert [w.training for w in worklist[:2]] == [True, True]  # training case first, in both treatments
    assert {w.overlays for w in worklist} == {(), ("subtraction", "zmap")}
    view = open_next(svc)
    assert view.training and view.status == "open" and view.marks == ()
    assert view.grid.size_xyz == (16, 16, 12) and view.grid.spacing_mm == (1.0, 1.0, 2.0)
    mark = svc.save_mark(view.case_read_id, client_key="click-1", point_mm=(0.2, -0.3, 12.4), rating=4)
    assert mark.index_xyz == (8, 8, 6)  # nearest voxel of (0.2, -0.3, 12.4) mm
    by_voxel = svc.save_mark(view.case_read_id, client_key="click-2", index_xyz=(3, 4, 5), rating=2)
    assert by_voxel.point_mm == (-5.0, -4.0, 10.0)  # voxel centre
    clock.advance(seconds=42)
    finished = svc.finish_case(view.case_read_id)
    assert finished.status == "finished" and finished.reading_time_s == 42.0
    assert [m.mark_id for m in finished.marks] == [mark.mark_id, by_voxel.mark_id]
    with db.snapshot() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.actor == "Dr Ada").order_by(AuditEvent.id))]
        stored = s.get(Mark, mark.mark_id)
        assert stored.created_at == T0 and stored.created_at.tzinfo is not None
    assert actions == ["OPEN_SESSION", "OPEN_CASE", "ADD_MARK", "ADD_MARK", "FINISH_CASE"]
    # Finishing every case closes the session.
    finish_session(svc, clock)
    assert svc.sessions()[0].status == "closed" and svc.next_case() is None


def test_a_repeated_save_with_the_same_client_key_is_a_no_op(db, study):
    svc = service(db, study, "Dr Ada")
    svc.open_session()
    view = open_next(svc)
    first = svc.save_mark(view.case_read_id, client_key="k-1", point_mm=(0, 0, 12), rating=3)
    n_marks, n_events = counts(db)
    again = svc.save_mark(view.case_read_id, client_key="k-1", point_mm=(0, 0, 12), rating=3)
    assert again == first
    assert counts(db) == (n_marks, n_events)
    # After a rating change, a late retry of the original save still returns the (changed) mark.
    svc.change_rating(first.mark_id, 5)
    late = svc.save_mark(view.case_read_id, client_key="k-1", point_mm=(0, 0, 12), rating=3)
    assert late.mark_id == first.mark_id and late.rating == 5
    # The same key for a different mark is a client bug, not a silent no-op.
    with pytest.raises(ClientKeyConflictError, match="already used"):
        svc.save_mark(view.case_read_id, client_key="k-1", point_mm=(4, 4, 12), rating=3)
    # Idempotent also after the read was finished (a retry that arrives late).
    svc.finish_case(view.case_read_id)
    assert svc.save_mark(view.case_read_id, client_key="k-1", point_mm=(0, 0, 12), rating=3).mark_id == first.mark_id


def test_changes_and_deletions_leave_their_trail(db, study):
    svc = service(db, study, "Dr Ada")
    svc.open_session()
    view = open_next(svc)
    m = svc.save_mark(view.case_read_id, client_key="a", point_mm=(0, 0, 12), rating=2)
    changed = svc.change_rating(m.mark_id, 4)
    assert changed.rating == 4 and changed.changed_at is not None
    assert svc.change_rating(m.mark_id, 4) == changed  # same rating: nothing happens
    deleted = svc.delete_mark(m.mark_id)
    assert deleted.deleted
    assert svc.delete_mark(m.mark_id) == deleted  # deleting twice: no-op
    assert svc.marks(view.case_read_id) == []
    assert [x.mark_id for x in svc.marks(view.case_read_id, include_deleted=True)] == [m.mark_id]
    with pytest.raises(ReadingStateError, match="deleted"):
        svc.change_rating(m.mark_id, 3)
    with db.snapshot() as s:
        row = s.get(Mark, m.mark_id)
        assert row is not None and row.rating == 4 and row.deleted_at is not None
        events = {
            e.action: json.loads(e.detail_json)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.entity_id == m.mark_id, AuditEvent.entity == "mark"))
        }
    assert events["CHANGE_RATING"]["old_rating"] == 2 and events["CHANGE_RATING"]["new_rating"] == 4
    assert events["DELETE_MARK"]["rating"] == 4 and events["DELETE_MARK"]["point_mm"] == [0.0, 0.0, 12.0]


def test_a_reader_cannot_reach_another_readers_marks_or_the_truth(db, study):
    ada, ben = service(db, study, "Dr Ada"), service(db, study, "Dr Ben")
    ada.open_session()
    ben.open_session()
    view = open_next(ada)
    mark = ada.save_mark(view.case_read_id, client_key="a1", point_mm=(0, 0, 12), rating=5)
    n = counts(db)
    for attempt in (
        lambda: ben.open_case(view.case_read_id),
        lambda: ben.get_case(view.case_read_id),
        lambda: ben.marks(view.case_read_id),
        lambda: ben.save_mark(view.case_read_id, client_key="b1", point_mm=(0, 0, 12), rating=1),
        lambda: ben.change_rating(mark.mark_id, 1),
        lambda: ben.delete_mark(mark.mark_id),
        lambda: ben.finish_case(view.case_read_id, no_lesion=True),
        lambda: ben.training_feedback(view.case_read_id),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    assert counts(db) == n
    assert ada.marks(view.case_read_id)[0].rating == 5
    # Nothing a reader gets back carries truth, and the service offers no way to ask for it.
    for cls in (CaseView, WorklistItem):
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"abnormal", "lesions", "normal", "truth", "status_truth"}
    public = {name for name in dir(ReadingService) if not name.startswith("_")}
    assert public == {
        "sessions",
        "open_session",
        "worklist",
        "next_case",
        "open_case",
        "get_case",
        "save_mark",
        "change_rating",
        "delete_mark",
        "marks",
        "set_case_rating",
        "finish_case",
        "training_feedback",
        "study_code",
        "paradigm",
        "rating_scale",
    }
    # Study cases never give feedback on their truth.
    finish_session(ada)
    study_read = next(w for w in ada.worklist(1) if not w.training)
    with pytest.raises(NotFoundError, match="training cases only"):
        ada.training_feedback(study_read.case_read_id)


def test_training_feedback_scores_the_readers_marks(db, study):
    svc = service(db, study, "Dr Ada")
    svc.open_session()
    view = open_next(svc)
    svc.save_mark(view.case_read_id, client_key="hit", point_mm=(1, 0, 12), rating=4)
    svc.save_mark(view.case_read_id, client_key="miss", point_mm=(-7, -7, 0), rating=2)
    with pytest.raises(ReadingStateError, match="Finish training case"):
        svc.training_feedback(view.case_read_id)
    svc.finish_case(view.case_read_id)
    feedback = svc.training_feedback(view.case_read_id)
    assert [les["lesion"] for les in feedback.lesions] == ["L1"]
    assert {(m["rating"], m["outcome"]) for m in feedback.marks} == {(4.0, "LL"), (2.0, "NL")}


def test_bad_input_gets_a_clear_error_and_changes_nothing(db, study, case_files):
    svc = service(db, study, "Dr Ada")
    svc.open_session()
    view = open_next(svc)
    before = counts(db)
    cases = [
        (NotFoundError, "no case read 99999", lambda: svc.save_mark(99999, client_key="x", point_mm=(0, 0, 0), rating=3)),
        (RatingError, "outside the study's scale", lambda: svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, 0, 0), rating=6)),
        (RatingError, "outside the study's scale", lambda: svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, 0, 0), rating=0)),
        (RatingError, "not a whole number", lambda: svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, 0, 0), rating=2.5)),
        (RatingError, "not a number", lambda: svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, 0, 0), rating="high")),
        (
            MarkPositionError,
            "outside the current exam of case T001",
            lambda: svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, 0, 40), rating=3),
        ),
        (MarkPositionError, "outside the current exam", lambda: svc.save_mark(view.case_read_id, client_key="x", index_xyz=(16, 0, 0), rating=3)),
        (MarkPositionError, "whole numbers", lambda: svc.save_mark(view.case_read_id, client_key="x", index_xyz=(1.5, 0, 0), rating=3)),
        (MarkPositionError, "not both or neither", lambda: svc.save_mark(view.case_read_id, client_key="x", rating=3)),
        (MarkPositionError, "finite", lambda: svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, float("nan"), 0), rating=3)),
        (ClientKeyConflictError, "1 to 200 characters", lambda: svc.save_mark(view.case_read_id, client_key="  ", point_mm=(0, 0, 0), rating=3)),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()
    assert counts(db) == before
    # A study that is not open: draft ...
    draft = make_study(db, case_files, code="DRAFT", lock=False)
    draft_svc = service(db, draft, "Dr Ada")
    with pytest.raises(StudyStateError, match="draft, not open"):
        draft_svc.open_session()
    # ... and closed.
    with db.transaction() as s:
        close_study(s, study.code)
    with pytest.raises(StudyStateError, match="closed, not open"):
        svc.save_mark(view.case_read_id, client_key="late", point_mm=(0, 0, 12), rating=3)
    with pytest.raises(StudyStateError):
        svc.finish_case(view.case_read_id, no_lesion=True)
    assert counts(db)[0] == before[0]


def test_cases_are_read_in_order_and_a_finished_read_is_locked(db, study):
    svc = service(db, study, "Dr Ada")
    svc.open_session()
    items = svc.worklist()
    with pytest.raises(ReadingStateError, match="assigned order"):
        svc.open_case(items[1].case_read_id)
    with pytest.raises(ReadingStateError, match="not opened yet"):
        svc.save_mark(items[0].case_read_id, client_key="early", point_mm=(0, 0, 12), rating=3)
    view = svc.open_case(items[0].case_read_id)
    assert svc.open_case(items[0].case_read_id) == view  # reopening (browser refresh) changes nothing
    with pytest.raises(ReadingStateError, match="confirm that it has no lesion"):
        svc.finish_case(view.case_read_id)
    m = svc.save_mark(view.case_read_id, client_key="m", point_mm=(0, 0, 12), rating=3)
    with pytest.raises(ReadingStateError, match="delete them"):
        svc.finish_case(view.case_read_id, no_lesion=True)
    svc.finish_case(view.case_read_id)
    assert svc.finish_case(view.case_read_id).status == "finished"  # finishing twice: no-op
    for call in (
        lambda: svc.save_mark(view.case_read_id, client_key="after", point_mm=(0, 0, 12), rating=3),
        lambda: svc.change_rating(m.mark_id, 5),
        lambda: svc.delete_mark(m.mark_id),
    ):
        with pytest.raises(ReadingStateError, match="finished and locked"):
            call()
    assert svc.open_case(items[1].case_read_id).status == "open"


def test_the_washout_is_enforced(db, study):
    clock = Clock()
    svc = service(db, study, "Dr Ada", clock)
    with pytest.raises(NotFoundError, match="no session 3"):
        svc.open_session(3)
    svc.open_session()
    with pytest.raises(WashoutError, match="session 1 is not finished"):
        svc.open_session(2)
    finish_session(svc, clock)
    closed_at = svc.sessions()[0].closed_at
    second = svc.sessions()[1]
    assert second.not_before == closed_at + dt.timedelta(days=28) and not second.can_open
    clock.advance(days=27, hours=23)
    with pytest.raises(WashoutError, match="washout: session 2 opens on"):
        svc.open_session()
    clock.advance(hours=1)
    assert svc.open_session().session_index == 2
    # A coordinator may waive the washout for one reader; it is audited.
    clock2 = Clock()
    ben = service(db, study, "Dr Ben", clock2)
    ben.open_session()
    finish_session(ben, clock2)
    with pytest.raises(WashoutError):
        ben.open_session()
    with db.transaction() as s:
        waive_washout(s, study.code, "Dr Ben", 2, reason="reader leaves the hospital next week")
    assert ben.open_session().session_index == 2
    with db.snapshot() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "WAIVE_WASHOUT"))
        assert "leaves the hospital" in event.detail_json


def test_sequential_reading_locks_the_unaided_read_and_carries_its_marks(db, case_files):
    study = make_study(db, case_files, code="SEQ", design="sequential", training=False)
    svc = service(db, study, "Dr Cem")
    svc.open_session()
    items = svc.worklist()
    assert [w.treatment for w in items[:4]] == ["unaided", "aided", "unaided", "aided"]
    assert items[0].case_code == items[1].case_code
    unaided = svc.open_case(items[0].case_read_id)
    assert unaided.overlays == ()
    with pytest.raises(ReadingStateError, match="assigned order"):
        svc.open_case(items[1].case_read_id)  # the aided read waits for the unaided one
    first = svc.save_mark(unaided.case_read_id, client_key="u1", point_mm=(1, 1, 10), rating=2)
    svc.finish_case(unaided.case_read_id)
    aided = svc.open_case(items[1].case_read_id)
    assert aided.overlays == ("subtraction", "zmap")
    (carried,) = aided.marks
    assert carried.source == "carried" and carried.point_mm == first.point_mm and carried.rating == 2
    svc.change_rating(carried.mark_id, 5)
    svc.save_mark(aided.case_read_id, client_key="a2", point_mm=(-3, -3, 4), rating=4)
    svc.finish_case(aided.case_read_id)
    # The unaided reading is unchanged.
    assert [(m.mark_id, m.rating) for m in svc.marks(unaided.case_read_id)] == [(first.mark_id, 2)]
    with pytest.raises(ReadingStateError):
        svc.save_mark(unaided.case_read_id, client_key="u2", point_mm=(0, 0, 0), rating=3)


def test_roc_studies_rate_whole_cases_on_a_0_to_100_scale(db, case_files):
    study = make_study(db, case_files, code="ROC", paradigm="ROC", rating_scale="0-100", training=False)
    svc = service(db, study, "Dr Dee")
    svc.open_session()
    view = open_next(svc)
    assert view.rating_scale.name == "0-100"
    with pytest.raises(ReadingStateError, match="ROC study"):
        svc.save_mark(view.case_read_id, client_key="x", point_mm=(0, 0, 12), rating=50)
    with pytest.raises(ReadingStateError, match="no rating yet"):
        svc.finish_case(view.case_read_id)
    with pytest.raises(RatingError, match="from 0"):
        svc.set_case_rating(view.case_read_id, 100.5)
    assert svc.set_case_rating(view.case_read_id, 72.5).case_rating == 72.5
    assert svc.finish_case(view.case_read_id).case_rating == 72.5


def test_the_reader_must_belong_to_the_study(db, study):
    with pytest.raises(NotFoundError, match="not a reader of study"):
        ReadingService(db, reader_id=99999, study_code=study.code)
    with pytest.raises(NotFoundError):
        ReadingService(db, reader_id=study.reader_ids["Dr Ada"], study_code="NOPE")
