"""Readers' marks of a finished study as DICOM Structured Reports: one SR per reader and case.

Each SR is a Comprehensive 3D SR with a TID 1500 Measurement Report in the current exam's study
and frame of reference (UIDs, patient module and evidence from the current exam's DICOM
headers), so a PACS or OHIF shows who marked what:

* the observer context is a person: the reader's study code (``R01`` …) by default, or the
  reader's name with ``reader_names=True``;
* per reading of the case (one per treatment, e.g. "unaided" and "aided"), an image-level TID
  1501 group ("Read <treatment>") with the number of marks, the reading time (s) and, for ROC
  studies, the case rating;
* per mark a TID 1411 group ("<treatment> mark <n>") with the mark's position as an SCOORD3D
  POINT (LPS mm of the current exam, the mark's own coordinates) and its confidence rating.

The marks are the study's analysed marks (:func:`reader_study.exchange.study_records`: finished
study readings, deleted marks left out, training cases left out). Truth and LL/NL outcomes are
not written: the SRs record what readers did, not how it was scored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from .errors import ReaderStudyError

__all__ = ["MarksSRResult", "export_marks_sr", "read_dicom_map"]


class MarksSRError(ReaderStudyError):
    """The marks cannot be exported as SR (a case without a DICOM current exam, a grid mismatch)."""


@dataclass
class MarksSRResult:
    """SR files written per (reader, case), and what was left out."""

    study_code: str
    out_dir: Path
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    n_marks: int = 0

    def summary(self) -> str:
        readers = {r for r, _ in self.files}
        cases = {c for _, c in self.files}
        return f"Study {self.study_code}: {len(self.files)} SR file(s) ({len(readers)} reader(s) × {len(cases)} case(s), {self.n_marks} mark(s)) in {self.out_dir}"


def read_dicom_map(path: str | Path) -> dict[str, Path]:
    """A CSV ``case_id,current_dicom`` (header row) of each case's current DICOM series folder.

    Relative folders are taken relative to the CSV's folder.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise MarksSRError(f"{path}: not found. Give a CSV with the columns case_id,current_dicom.")
    out: dict[str, Path] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"case_id", "current_dicom"} <= set(reader.fieldnames):
            raise MarksSRError(f"{path}: needs the columns case_id,current_dicom (found {', '.join(reader.fieldnames or []) or 'none'}).")
        for row_no, row in enumerate(reader, start=2):
            case, folder = (row.get("case_id") or "").strip(), (row.get("current_dicom") or "").strip()
            if not case or not folder:
                raise MarksSRError(f"{path}, row {row_no}: case_id and current_dicom must both be filled in.")
            p = Path(folder)
            out[case] = p if p.is_absolute() else (path.parent / p)
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def export_marks_sr(
    session: Any,
    study_code: str,
    out_dir: str | Path,
    *,
    dicom_folders: Mapping[str, str | Path] | None = None,
    reader_names: bool = False,
    allow_incomplete: bool = False,
) -> MarksSRResult:
    """Write ``<out_dir>/<case_id>/SR_<reader>.dcm`` for every reader and study case.

    Parameters
    ----------
    session : a database session (``db.snapshot()``).
    study_code : the study.
    dicom_folders : case_id -> the current exam's DICOM series folder; cases not in it use the
        study case's own current exam path when that is a DICOM folder.
    reader_names : observer name = the reader's name instead of the study's reader code.
    allow_incomplete : export the readers who have finished (see :func:`study_records`).

    Raises
    ------
    MarksSRError
        A case has no DICOM current exam, or its DICOM grid is not the grid the marks were made on.
    ExportError
        Unfinished readings (without ``allow_incomplete``).
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from detector import DetectorInputError
    from detector.dicom_objects import (
        MANUFACTURER,
        TSCT_SCHEME,
        read_source_exam,
        save_dataset,
    )

    from .exchange import study_records
    from .models import Reader, Study, StudyCase, StudyReader

    records = study_records(session, study_code, allow_incomplete=allow_incomplete)
    study = session.scalars(select(Study).where(Study.code == study_code)).one()
    cases = {c.code: c for c in session.scalars(select(StudyCase).where(StudyCase.study_id == study.id, StudyCase.is_training.is_(False)))}
    names = dict(
        session.execute(
            select(StudyReader.reader_code, Reader.name).join(Reader, Reader.id == StudyReader.reader_id).where(StudyReader.study_id == study.id)
        ).all()
    )
    dicom_folders = {k: Path(v) for k, v in (dicom_folders or {}).items()}
    unknown = sorted(set(dicom_folders) - set(cases))
    if unknown:
        raise MarksSRError(f"The DICOM map names case(s) not in study {study_code!r}: {', '.join(unknown)}.")
    missing = []
    for code, case in cases.items():
        if code not in dicom_folders:
            p = Path(case.current_path)
            if p.is_dir():
                dicom_folders[code] = p
            else:
                missing.append(code)
    if missing:
        raise MarksSRError(
            f"No DICOM current exam for case(s) {', '.join(sorted(missing))} of study {study_code!r} (their current exams are not DICOM folders). "
            "Give each case's current DICOM series with a CSV case_id,current_dicom (--dicom-map)."
        )

    rating = hd.sr.CodedConcept("RATING", TSCT_SCHEME, "Reader confidence rating")
    n_marks_code = hd.sr.CodedConcept("NMARKS", TSCT_SCHEME, "Number of marks")
    case_rating = hd.sr.CodedConcept("CASERATING", TSCT_SCHEME, "Case rating")
    reading_time = hd.sr.CodedConcept("READTIME", TSCT_SCHEME, "Reading time")
    procedure = hd.sr.CodedConcept("TSCTREAD", TSCT_SCHEME, "Reader study reading of temporal subtraction CT")
    unity = hd.sr.CodedConcept("1", "UCUM", "no units")
    seconds = hd.sr.CodedConcept("s", "UCUM", "second")

    reads = records.reads
    marks = records.marks
    out = Path(out_dir)
    result = MarksSRResult(study_code=study_code, out_dir=out)
    for case_code in sorted(set(reads["case_id"])):
        case = cases[case_code]
        try:
            source = read_source_exam(dicom_folders[case_code])
        except DetectorInputError as exc:
            raise MarksSRError(f"Case {case_code}: {exc}") from None
        if not source.volume.same_space(case.grid()):
            raise MarksSRError(
                f"Case {case_code}: the DICOM series {dicom_folders[case_code]} is not on the grid the readers marked (size {case.size}, spacing {case.spacing_mm} mm, "
                f"origin {case.origin_mm} mm); give the case's current exam."
            )
        series = hd.sr.SourceSeriesForSegmentation(str(source.datasets[0].SeriesInstanceUID))
        for reader_code in sorted(set(reads.loc[reads["case_id"] == case_code, "reader"])):
            observer_name = names.get(reader_code, reader_code) if reader_names else reader_code
            person = hd.sr.ObserverContext(
                observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=_person_name(observer_name)),
            )
            groups: list[Any] = []
            case_reads = reads[(reads["case_id"] == case_code) & (reads["reader"] == reader_code)].sort_values(["session", "position"])
            for _, read in case_reads.iterrows():
                treatment = str(read["treatment"])
                measurements = [hd.sr.Measurement(name=n_marks_code, value=float(read["n_marks"]), unit=unity)]
                if read["reading_time_s"] is not None and not _isnan(read["reading_time_s"]):
                    measurements.append(hd.sr.Measurement(name=reading_time, value=float(read["reading_time_s"]), unit=seconds))
                if read["case_rating"] is not None and not _isnan(read["case_rating"]):
                    measurements.append(hd.sr.Measurement(name=case_rating, value=float(read["case_rating"]), unit=unity))
                groups.append(
                    hd.sr.MeasurementsAndQualitativeEvaluations(
                        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"Read {treatment}"),
                        session=treatment,
                        measurements=measurements,
                    )
                )
                if len(marks):
                    these = marks[(marks["case_id"] == case_code) & (marks["reader"] == reader_code) & (marks["treatment"] == treatment)].sort_values(
                        "mark_id"
                    )
                else:
                    these = marks
                for n, (_, mark) in enumerate(these.iterrows(), start=1):
                    groups.append(
                        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{treatment} mark {n}"),
                            referenced_volume_surface=hd.sr.VolumeSurface(
                                graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                                graphic_data=np.asarray([[float(mark["x_mm"]), float(mark["y_mm"]), float(mark["z_mm"])]]),
                                frame_of_reference_uid=source.frame_of_reference_uid,
                                source_series=series,
                            ),
                            session=treatment,
                            measurements=[hd.sr.Measurement(name=rating, value=float(mark["rating"]), unit=unity)],
                        )
                    )
                    result.n_marks += 1
            report = hd.sr.MeasurementReport(
                observation_context=hd.sr.ObservationContext(observer_person_context=person),
                procedure_reported=procedure,
                imaging_measurements=groups,
            )
            sr = hd.sr.Comprehensive3DSR(
                evidence=source.datasets,
                content=report,
                series_instance_uid=generate_uid(),
                series_number=9095,
                sop_instance_uid=generate_uid(),
                instance_number=1,
                manufacturer=MANUFACTURER,
                is_complete=True,
                series_description=f"TSCT reader marks {observer_name} ({study_code})"[:64],
            )
            result.files[(reader_code, case_code)] = save_dataset(sr, out / _safe(case_code) / f"SR_{_safe(reader_code)}.dcm")
    return result


def _isnan(value: Any) -> bool:
    try:
        return bool(np.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def _person_name(name: str) -> str:
    """A DICOM PN from a free-text name or code: "Dr Ada" -> "Dr Ada^" (one family-name component, trailing caret)."""
    return (re.sub(r"[\\^=]", " ", name).strip()[:63] or "Reader") + "^"
