"""Reading a whole study through the service in tests: every session of every reader, in order."""

from __future__ import annotations

from typing import Callable, Iterable

from reader_study import Database, ReadingService, waive_washout
from reader_study.reading import WorklistItem

#: reads one opened case (saves its marks or rating); returns ``no_lesion`` for ``finish_case``
ReadCase = Callable[[ReadingService, WorklistItem], bool]


def read_every_session(db: Database, study_code: str, readers: Iterable[tuple[str, int]], read_case: ReadCase) -> None:
    """Each ``(name, reader id)`` reads every session of the study; the washout before a later session is waived (no weeks of waiting in a test)."""
    for name, reader_id in readers:
        svc = ReadingService(db, reader_id=reader_id, study_code=study_code)
        for index, _ in enumerate(svc.sessions(), start=1):
            if index > 1:
                with db.transaction() as s:
                    waive_washout(s, study_code, name, index, reason="test")
            svc.open_session()
            while (item := svc.next_case()) is not None:
                svc.open_case(item.case_read_id)
                no_lesion = read_case(svc, item)
                svc.finish_case(item.case_read_id, no_lesion=no_lesion)
