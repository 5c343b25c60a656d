"""How far a study's reading has got: per reader and session, and reading times per treatment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from statistics import median

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from .coordinator import get_study
from .models import CaseRead, Reader, ReadingSession, StudyCase, StudyReader, Treatment, utcnow
from .reading import session_not_before

__all__ = ["StudyStatus", "study_status"]


@dataclass(frozen=True)
class StudyStatus:
    """Progress of a study: per reader and session, and reading times per treatment."""

    code: str
    status: str
    locked: bool
    content_hash: str | None
    sessions: pd.DataFrame = field(repr=False)
    times: pd.DataFrame = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.sessions.copy()

    def summary(self) -> str:
        total = int(self.sessions["reads"].sum()) if len(self.sessions) else 0
        done = int(self.sessions["finished"].sum()) if len(self.sessions) else 0
        pct = 100.0 * done / total if total else 0.0
        lines = [f"Study {self.code}: {self.status}{', locked' if self.locked else ''}; {done} of {total} case reads finished ({pct:.0f}%)."]
        for _, row in self.times.iterrows():
            if row["n_reads"]:
                lines.append(f"  {row['treatment']}: median {row['median_time_s']:.0f} s per case over {int(row['n_reads'])} finished study reads")
            else:
                lines.append(f"  {row['treatment']}: no finished study reads yet")
        return "\n".join(lines)


def study_status(session: Session, study_code: str, *, now: dt.datetime | None = None) -> StudyStatus:
    """Progress per reader and session (reads finished, times per case) and median time per case per treatment."""
    study = get_study(session, study_code)
    now = now or utcnow()
    readers = session.execute(
        select(StudyReader.reader_code, Reader.name, Reader.group, Reader.id, StudyReader.sequence_group)
        .join(Reader, Reader.id == StudyReader.reader_id)
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.reader_code)
    ).all()
    sessions = list(
        session.scalars(
            select(ReadingSession).where(ReadingSession.study_id == study.id).order_by(ReadingSession.reader_id, ReadingSession.session_index)
        )
    )
    reads = session.execute(
        select(CaseRead.session_id, CaseRead.status, CaseRead.reading_time_s, Treatment.code, StudyCase.is_training)
        .join(Treatment, Treatment.id == CaseRead.treatment_id)
        .join(StudyCase, StudyCase.id == CaseRead.case_id)
        .where(CaseRead.study_id == study.id)
    ).all()
    by_session: dict[int, list] = {}
    for r in reads:
        by_session.setdefault(r[0], []).append(r)
    sessions_of: dict[int, list[ReadingSession]] = {}
    for rs in sessions:
        sessions_of.setdefault(rs.reader_id, []).append(rs)
    rows = []
    for code, name, group, reader_id, seq_group in readers:
        previous = None
        for rs in sessions_of.get(reader_id, []):
            rr = by_session.get(rs.id, [])
            times = [r[2] for r in rr if r[1] == "finished" and r[2] is not None]
            not_before = session_not_before(previous.closed_at, study.washout_days) if previous is not None else None
            rows.append(
                {
                    "reader": code,
                    "name": name,
                    "group": group,
                    "sequence": None if seq_group is None else seq_group + 1,
                    "session": rs.session_index,
                    "status": rs.status,
                    "reads": len(rr),
                    "finished": sum(r[1] == "finished" for r in rr),
                    "median_time_s": median(times) if times else float("nan"),
                    "total_time_s": float(sum(times)) if times else 0.0,
                    "opened_at": rs.opened_at,
                    "closed_at": rs.closed_at,
                    "not_before": not_before,
                    "washout_waived": rs.washout_waived_at is not None,
                }
            )
            previous = rs
    frame = pd.DataFrame(
        rows,
        columns=[
            "reader",
            "name",
            "group",
            "sequence",
            "session",
            "status",
            "reads",
            "finished",
            "median_time_s",
            "total_time_s",
            "opened_at",
            "closed_at",
            "not_before",
            "washout_waived",
        ],
    )
    per_treatment: dict[str, list[float]] = {}
    for r in reads:
        if r[1] == "finished" and r[2] is not None and not r[4]:
            per_treatment.setdefault(r[3], []).append(float(r[2]))
    treatments = list(session.scalars(select(Treatment.code).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    times = pd.DataFrame(
        [
            {
                "treatment": t,
                "n_reads": len(per_treatment.get(t, [])),
                "median_time_s": median(per_treatment[t]) if per_treatment.get(t) else float("nan"),
            }
            for t in treatments
        ],
        columns=["treatment", "n_reads", "median_time_s"],
    )
    return StudyStatus(study.code, study.status, study.is_locked, study.content_hash, frame, times)
