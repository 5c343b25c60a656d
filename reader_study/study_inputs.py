"""What a study is made from: its treatments, the readers file, and the case list's cases with their truth.

The inputs of :func:`reader_study.create_study`, checked before anything is written: treatment
and reader specifications (``--treatment``, ``--readers``), and the import of a case list's
cases into the database (:func:`add_cases`: both exams of every case read, the current exam's
grid recorded, files hashed, truth lesions stored with their weights).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from .errors import InputFileError, InputProblem, ReaderStudyError
from .models import Lesion, Study, StudyCase

__all__ = ["CODE_RE", "TreatmentSpec", "DEFAULT_TREATMENTS", "parse_treatment", "ReaderSpec", "read_readers_file", "file_sha256", "add_cases"]

#: what study and treatment codes may be: 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TreatmentSpec:
    """A reading condition: ``code`` (used in exports), ``overlays`` shown on the CT, and a readable ``label``."""

    code: str
    overlays: tuple[str, ...] = ()
    label: str = ""

    @property
    def display_label(self) -> str:
        if self.label:
            return self.label
        return f"{self.code}: {' + '.join(self.overlays)}" if self.overlays else self.code


DEFAULT_TREATMENTS: tuple[TreatmentSpec, ...] = (
    TreatmentSpec("unaided", (), "unaided"),
    TreatmentSpec("aided", ("subtraction", "zmap"), "aided: subtraction + z-map"),
)


def parse_treatment(text: str) -> TreatmentSpec:
    """Parse ``CODE`` or ``CODE=OVERLAY+OVERLAY`` (e.g. ``unaided``, ``aided=subtraction+zmap``)."""
    code, _, overlays = str(text).partition("=")
    code = code.strip()
    if not CODE_RE.match(code):
        raise ReaderStudyError(f"Treatment {text!r}: the code must be letters, digits, '-', '_' or '.', e.g. 'unaided' or 'aided=subtraction+zmap'.")
    names = tuple(o.strip() for o in overlays.split("+") if o.strip())
    return TreatmentSpec(code, names)


#: reader names and groups may not start with these: spreadsheets run such cells as formulas
FORMULA_STARTS = ("=", "+", "-", "@")


@dataclass(frozen=True)
class ReaderSpec:
    """A reader to add: name (unique), group (e.g. board-certified, resident), role, years of experience."""

    name: str
    group: str = ""
    role: str = "radiologist"
    experience_years: float | None = None


def read_readers_file(path: str | Path) -> list[ReaderSpec]:
    """Read a readers CSV: columns ``name`` (required), ``group``, ``role``, ``experience_years``.

    Raises
    ------
    InputFileError
        Listing every problem with its row number (missing names, repeated names, bad numbers).
    """
    import tsct_files

    path = Path(path)
    if not path.exists():
        raise InputFileError(
            path,
            [InputProblem(None, None, "file not found; give a CSV with a 'name' column (and optionally group, role, experience_years)")],
            what="readers file",
        )
    try:
        text = tsct_files.read_input_text(path, what="readers file")
    except tsct_files.InputFileError as exc:
        raise InputFileError(path, [InputProblem(None, None, str(exc).removeprefix(f"{path}: "))], what="readers file") from None
    reader = csv.DictReader(text.splitlines())
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise InputFileError(
            path, [InputProblem(reader.line_num, None, tsct_files.csv_field_error(path, exc).removeprefix(f"{path}: "))], what="readers file"
        ) from None
    problems: list[InputProblem] = []
    known = {"name", "group", "role", "experience_years"}
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise InputFileError(
            path, [InputProblem(1, None, f"column(s) {', '.join(twice)} appear more than once in the header; keep one of each")], what="readers file"
        )
    if "name" not in header:
        raise InputFileError(
            path,
            [InputProblem(1, None, f"no 'name' column; the header must include name (and may include {', '.join(sorted(known - {'name'}))})")],
            what="readers file",
        )
    unknown = [h for h in header if h and h not in known]
    if unknown:
        problems.append(InputProblem(1, None, f"unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"))
    specs: list[ReaderSpec] = []
    first_row: dict[str, int] = {}
    for row_number, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v if isinstance(v, str) else ",".join(v or [])).strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        name = row.get("name", "")
        if not name:
            problems.append(InputProblem(row_number, "name", "empty; every reader needs a name"))
            continue
        key = name.casefold()
        if key in first_row:
            problems.append(InputProblem(row_number, "name", f"'{name}' repeats row {first_row[key]}; reader names must be unique"))
            continue
        first_row[key] = row_number
        formula = [c for c in ("name", "group", "role") if row.get(c, "").startswith(FORMULA_STARTS)]
        if formula:
            problems.append(
                InputProblem(
                    row_number,
                    formula[0],
                    f"'{row[formula[0]]}' starts with {row[formula[0]][0]!r}, which spreadsheets run as a formula; start it with a letter or digit",
                )
            )
            continue
        years = None
        if row.get("experience_years"):
            try:
                years = float(row["experience_years"])
                if years < 0:
                    raise ValueError
            except ValueError:
                problems.append(InputProblem(row_number, "experience_years", f"'{row['experience_years']}' is not a non-negative number"))
                continue
        specs.append(ReaderSpec(name, row.get("group", ""), row.get("role", "") or "radiologist", years))
    if not specs and not problems:
        problems.append(InputProblem(None, None, "no readers listed"))
    if problems:
        raise InputFileError(path, problems, what="readers file")
    return specs


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder (DICOM series): :func:`cases.file_sha256`."""
    from cases import file_sha256 as _sha256

    return _sha256(path)


def _exam_grid(path: Path) -> tuple[tuple[int, int, int], tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Size (x, y, z), spacing, origin and direction of an exam, from its headers only (:func:`cases.read_grid`)."""
    from cases import read_grid

    grid = read_grid(path)
    return grid.size, grid.spacing_mm, grid.origin_mm, grid.direction


def _exam_problem(path: Path) -> str:
    """Why an exam cannot be used (empty when it reads in full): missing, truncated, or unreadable.

    Both exams of every case are read before a study is created: NIfTI files must hold every
    voxel their header promises, other formats (NRRD, MHA, DICOM folders) are read in full.
    """
    from .integrity import IncompleteFileError, check_complete

    path = Path(path)
    if not path.exists():
        return "does not exist"
    name = path.name.lower()
    try:
        if path.is_file() and name.endswith((".nii", ".nii.gz")):
            check_complete(path)
            _exam_grid(path)
        else:
            from cases import read_exam

            read_exam(path, check_hu=False)
    except IncompleteFileError as exc:
        return f"is incomplete: {str(exc).replace(str(path), 'the file')}"
    except (ValueError, RuntimeError, OSError) as exc:
        return f"cannot be read ({' '.join(str(exc).split())[:300]})"
    return ""


def add_cases(
    session: Session, study: Study, case_list: Any, *, training: bool, first_jafroc_id: int, hash_files: bool, problems: list[InputProblem]
) -> int:
    """Add the cases of ``case_list`` (a CaseList or a path); returns the number added."""
    from cases import CaseList, read_case_list

    cl = case_list if isinstance(case_list, CaseList) else read_case_list(case_list)
    jafroc_id = first_jafroc_id
    for case in cl:
        unreadable = False
        for role, exam_path in (("prior", case.prior), ("current", case.current)):
            why = _exam_problem(exam_path)
            if why:
                problems.append(InputProblem(None, role, f"case {case.case_id}: the {role} exam {exam_path} {why}"))
                unreadable = True
        if unreadable:
            continue
        try:
            size, spacing, origin, direction = _exam_grid(case.current)
        except (ValueError, RuntimeError, OSError) as exc:
            problems.append(InputProblem(None, "current", f"case {case.case_id}: the current exam {case.current} cannot be read ({exc})"))
            continue
        row = StudyCase(
            study_id=study.id,
            code=case.case_id,
            jafroc_id=jafroc_id,
            is_training=training,
            abnormal=case.abnormal,
            prior_path=str(case.prior),
            current_path=str(case.current),
            prior_sha256=file_sha256(case.prior) if hash_files else "",
            current_sha256=file_sha256(case.current) if hash_files else "",
            size_x=size[0],
            size_y=size[1],
            size_z=size[2],
            spacing_x_mm=spacing[0],
            spacing_y_mm=spacing[1],
            spacing_z_mm=spacing[2],
            origin_x_mm=origin[0],
            origin_y_mm=origin[1],
            origin_z_mm=origin[2],
            direction_json=json.dumps([float(v) for v in direction]),
        )
        session.add(row)
        session.flush()
        weights = case.lesion_weights()
        for number, lesion in enumerate(case.lesions, start=1):
            label_hash = ""
            if lesion.label_map is not None and hash_files:
                label_hash = file_sha256(lesion.label_map)
            session.add(
                Lesion(
                    study_id=study.id,
                    case_id=row.id,
                    code=lesion.lesion_id,
                    number=number,
                    center_x_mm=lesion.center_mm[0],
                    center_y_mm=lesion.center_mm[1],
                    center_z_mm=lesion.center_mm[2],
                    radius_mm=lesion.radius_mm,
                    label_map_path=None if lesion.label_map is None else str(lesion.label_map),
                    label_map_sha256=label_hash,
                    label_value=lesion.label_value,
                    weight=float(weights[lesion.lesion_id]),
                    lesion_type=lesion.lesion_type.value,
                    location=lesion.location.value,
                )
            )
        jafroc_id += 1
    session.flush()
    return jafroc_id - first_jafroc_id
