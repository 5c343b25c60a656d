"""Writing to the append-only audit log.

Every change the package makes (a study created, a design made, a mark saved, a rating changed, a
log-in) records one :class:`~reader_study.models.AuditEvent` in the same transaction as the
change, so the log and the data can never disagree. ``detail`` holds what is needed to trace the
change: for a changed rating the old and new values, for a deleted mark the mark as it was.
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from typing import Any

import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .models import AuditEvent, Study, utcnow

__all__ = ["record", "tsct_version", "audit_frame"]


@functools.cache
def tsct_version() -> str:
    """The installed TSCT version (recorded with studies, audit events and exports)."""
    try:
        return metadata.version("tsct")
    except metadata.PackageNotFoundError:
        return "0+unknown"


#: Built once: constructing and cache-keying statements costs more than running them.
_INSERT = insert(AuditEvent.__table__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: int | None = None,
    study_id: int | None = None,
    actor_reader_id: int | None = None,
    **detail: Any,
) -> None:
    """Write one audit event in ``session``'s transaction (committed or rolled back with the change).

    Parameters
    ----------
    actor : who did it (account user name, reader name, or a tool such as ``"tsct study import-marks"``).
    action : what was done, upper-case verb phrase (``ADD_MARK``, ``CHANGE_RATING``, ``LOCK_STUDY``…).
    entity, entity_id : the table and row changed.
    study_id : the study concerned, if any.
    actor_reader_id : the reader who did it, when a reader did.
    detail : JSON-serialisable facts (before/after values).
    """
    if session.new or session.dirty or session.deleted:
        session.flush()  # the rows the event refers to exist before the event
    session.connection().execute(
        _INSERT,
        {
            "at": utcnow(),
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "study_id": study_id,
            "actor_reader_id": actor_reader_id,
            "detail_json": json.dumps(_jsonable(detail), sort_keys=True, separators=(",", ":")),
            "tsct_version": tsct_version(),
        },
    )


def audit_frame(session: Session, *, study_code: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The audit log (newest last) as a DataFrame: at, actor, action, entity, entity_id, detail."""
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if study_code is not None:
        study_id = session.scalar(select(Study.id).where(Study.code == study_code))
        stmt = stmt.where(AuditEvent.study_id == study_id)
    events = list(session.scalars(stmt))
    if limit is not None:
        events = events[-limit:]
    return pd.DataFrame(
        [
            {"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "entity": e.entity, "entity_id": e.entity_id, "detail": e.detail_json}
            for e in events
        ],
        columns=["id", "at", "actor", "action", "entity", "entity_id", "detail"],
    )
