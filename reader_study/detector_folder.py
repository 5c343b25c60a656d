"""Where a study's detector outputs are: recorded with the study, so the app finds them without settings.

``tsct demo`` (and a coordinator) record the folder the detector wrote (``<dir>/<case id>/``)
with the study; the reading app uses it before ``$TSCT_DETECTOR_DIR`` and its default.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .errors import NotFoundError
from .models import Study

__all__ = ["set_detector_dir", "detector_dir_of"]


def set_detector_dir(session: Session, study_code: str, folder: str | Path, *, actor: str = "coordinator") -> Path:
    """Record ``folder`` (made absolute) as the detector output folder of a study (audited); returns it."""
    study = session.scalar(select(Study).where(Study.code == study_code))
    if study is None:
        raise NotFoundError(f"No study {study_code!r}.")
    path = Path(folder).expanduser().resolve()
    if study.detector_dir != str(path):
        before = study.detector_dir
        study.detector_dir = str(path)
        session.flush()
        audit.record(
            session, actor=actor, action="SET_DETECTOR_DIR", entity="study", entity_id=study.id, study_id=study.id, before=before, after=str(path)
        )
    return path


def detector_dir_of(session: Session, study_code: str) -> Path | None:
    """The detector output folder recorded for a study, or ``None`` when none was recorded."""
    value = session.scalar(select(Study.detector_dir).where(Study.code == study_code))
    return Path(value) if value else None
