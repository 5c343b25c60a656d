"""Case lists: which prior/current exam pairs a study reads, and the truth lesions of each.

A case list is a CSV file with **one row per truth lesion** (abnormal cases) or **one row per
case** (normal cases, lesion columns empty). Case-level columns repeat on every row of a case
and must agree. Paths are relative to the folder holding the CSV (absolute paths also work).
The schema is documented in ``docs/case-list.md``.

==================  ========  ==========================================================
column              required  meaning
==================  ========  ==========================================================
case_id             yes       unique case identifier (any text)
prior               yes       prior exam: DICOM series folder, .nii/.nii.gz, .nrrd or .mha
current             yes       current exam, same formats
status              yes       ``normal`` or ``abnormal``
true_transform      no        synthetic cases only: ITK transform file mapping current→prior
lesion_id           abnormal  lesion identifier, unique within the case
lesion_type         abnormal  ``lytic``, ``blastic`` or ``mixed``
location            abnormal  vertebral_body, pedicle, lamina_arch, spinous_process,
                              transverse_process, rib, pelvis, other
center_x_mm …_z_mm  abnormal  lesion centre in the current exam, LPS patient coordinates, mm
radius_mm           one of    lesion extent as a sphere radius (mm) …
label_map           one of    … or a label-map file on the current exam's grid
label_value         no        the lesion's value in ``label_map`` (default: any non-zero)
weight              no        lesion weight for wAFROC; empty = equal weights within the case
==================  ========  ==========================================================

Coordinates are DICOM/ITK LPS (x grows to the patient's left, y to posterior, z to superior).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterable

__all__ = [
    "LesionType",
    "LesionLocation",
    "Lesion",
    "Case",
    "CaseList",
    "CaseListError",
    "CaseListProblem",
    "CASE_LIST_COLUMNS",
    "read_case_list",
    "write_case_list",
    "validate_case_list",
]


class LesionType(str, Enum):
    """Radiological type of a bone metastasis."""

    LYTIC = "lytic"
    BLASTIC = "blastic"
    MIXED = "mixed"


class LesionLocation(str, Enum):
    """Where in the skeleton a lesion lies (the location classes reader studies report)."""

    VERTEBRAL_BODY = "vertebral_body"
    PEDICLE = "pedicle"
    LAMINA_ARCH = "lamina_arch"
    SPINOUS_PROCESS = "spinous_process"
    TRANSVERSE_PROCESS = "transverse_process"
    RIB = "rib"
    PELVIS = "pelvis"
    OTHER = "other"


CASE_COLUMNS = ("case_id", "prior", "current", "status", "true_transform")
LESION_COLUMNS = (
    "lesion_id",
    "lesion_type",
    "location",
    "center_x_mm",
    "center_y_mm",
    "center_z_mm",
    "radius_mm",
    "label_map",
    "label_value",
    "weight",
)
CASE_LIST_COLUMNS: tuple[str, ...] = CASE_COLUMNS + LESION_COLUMNS
#: Optional case-level columns, written only when used.
OPTIONAL_CASE_COLUMNS = ("same_patient",)
KNOWN_COLUMNS: tuple[str, ...] = CASE_LIST_COLUMNS + OPTIONAL_CASE_COLUMNS
#: Case ids become folder names (detector outputs, exports): letters, digits, '.', '_', '-' only.
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
REQUIRED_COLUMNS = ("case_id", "prior", "current", "status")
WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Lesion:
    """One truth lesion of an abnormal case, in the current exam's patient coordinates (LPS, mm)."""

    lesion_id: str
    center_mm: tuple[float, float, float]
    lesion_type: LesionType
    location: LesionLocation
    radius_mm: float | None = None
    label_map: Path | None = None
    label_value: int | None = None
    weight: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lesion_type", LesionType(self.lesion_type))
        object.__setattr__(self, "location", LesionLocation(self.location))
        object.__setattr__(self, "center_mm", tuple(float(c) for c in self.center_mm))
        if self.label_map is not None:
            object.__setattr__(self, "label_map", Path(self.label_map))


@dataclass(frozen=True)
class Case:
    """A prior/current exam pair of one patient, with its truth."""

    case_id: str
    prior: Path
    current: Path
    abnormal: bool
    lesions: tuple[Lesion, ...] = ()
    true_transform: Path | None = None
    same_patient_override: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "prior", Path(self.prior))
        object.__setattr__(self, "current", Path(self.current))
        object.__setattr__(self, "lesions", tuple(self.lesions))
        if self.true_transform is not None:
            object.__setattr__(self, "true_transform", Path(self.true_transform))

    @property
    def status(self) -> str:
        """``'abnormal'`` or ``'normal'``."""
        return "abnormal" if self.abnormal else "normal"

    def lesion_weights(self) -> dict[str, float]:
        """Lesion weights, equal within the case unless given (they sum to 1)."""
        if not self.lesions:
            return {}
        given = [lesion.weight for lesion in self.lesions]
        if all(w is None for w in given):
            return {lesion.lesion_id: 1.0 / len(self.lesions) for lesion in self.lesions}
        return {lesion.lesion_id: float(lesion.weight or 0.0) for lesion in self.lesions}


@dataclass(frozen=True)
class CaseList:
    """An ordered collection of cases, as read from or written to a case-list CSV."""

    cases: tuple[Case, ...]
    source: Path | None = None
    warnings: tuple["CaseListProblem", ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(self.cases))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.cases)

    def __getitem__(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(f"No case {case_id!r} in the case list{f' {self.source}' if self.source else ''}.")

    @property
    def case_ids(self) -> list[str]:
        """Case identifiers in list order."""
        return [case.case_id for case in self.cases]

    @property
    def normal_cases(self) -> list[Case]:
        return [case for case in self.cases if not case.abnormal]

    @property
    def abnormal_cases(self) -> list[Case]:
        return [case for case in self.cases if case.abnormal]

    def summary(self) -> str:
        """One paragraph: counts of cases and lesions by type and location."""
        lesions = [lesion for case in self.cases for lesion in case.lesions]
        by_type: dict[str, int] = {}
        by_location: dict[str, int] = {}
        for lesion in lesions:
            by_type[lesion.lesion_type.value] = by_type.get(lesion.lesion_type.value, 0) + 1
            by_location[lesion.location.value] = by_location.get(lesion.location.value, 0) + 1
        return (
            f"{len(self.cases)} cases ({len(self.normal_cases)} normal, {len(self.abnormal_cases)} abnormal), "
            f"{len(lesions)} lesions; by type: {_fmt_counts(by_type)}; by location: {_fmt_counts(by_location)}"
        )


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


@dataclass(frozen=True)
class CaseListProblem:
    """One problem found in a case list: where (CSV row number, 1 = header) and what to fix."""

    row: int | None
    column: str | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class CaseListError(ValueError):
    """A case list has problems; ``problems`` lists every one, with row numbers (``warnings``: non-blocking notes)."""

    def __init__(self, path: Path | str, problems: Iterable[CaseListProblem], warnings: Iterable[CaseListProblem] = ()):
        self.path = Path(path)
        self.problems = list(problems)
        self.warnings = list(warnings)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Case list {self.path} has {len(self.problems)} problem(s):\n{lines}")


# ---------------------------------------------------------------------------------------------
def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _exam_exists(path: Path) -> bool:
    return path.is_dir() or path.is_file()


def _parse_float(text: str, column: str, row: int, problems: list[CaseListProblem]) -> float | None:
    try:
        value = float(text)
    except ValueError:
        problems.append(CaseListProblem(row, column, f"'{text}' is not a number"))
        return None
    if not math.isfinite(value):
        problems.append(CaseListProblem(row, column, f"'{text}' is not a finite number"))
        return None
    return value


def case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot be used as a folder name, or ``None`` when it is safe."""
    if not CASE_ID_PATTERN.match(case_id):
        if "/" in case_id or "\\" in case_id or ".." in case_id:
            why = "it contains a path separator or '..'"
        elif len(case_id) > 64:
            why = "it is longer than 64 characters"
        elif case_id[:1] in ".-_":
            why = f"it starts with '{case_id[0]}'"
        else:
            bad = sorted({ch for ch in case_id if not (ch.isascii() and (ch.isalnum() or ch in "._-"))})
            why = "it contains " + ", ".join(repr(ch) for ch in bad[:5])
        return f"'{case_id}' cannot be used as a folder name: {why}. Use letters, digits, '.', '_' and '-' only, starting with a letter or digit (at most 64 characters)"
    if case_id.split(".")[0].lower() in _RESERVED_NAMES:
        return f"'{case_id}' is a reserved device name on Windows and cannot be a folder name; choose another id"
    if case_id.endswith("."):
        return f"'{case_id}' ends with '.', which Windows drops from folder names; choose another id"
    return None


def read_case_list(path: str | Path, *, check_files: bool = True, check_images: bool = False, progress: object = None) -> CaseList:
    """Read and validate a case-list CSV.

    Parameters
    ----------
    path : the CSV file.
    check_files : also check that every exam, label map and transform file exists.
    check_images : also read every exam, label map and transform in full and check what the
        list says about them (:func:`cases.casecheck.check_case_files`): exams readable and in
        HU, prior and current of the same patient and in date order, every lesion centre inside
        the current exam and near bone, label maps on the current exam's grid and holding their
        label values. Slow for large lists (every exam is read).
    progress : optional callable ``progress(done, total, case_id)`` called per case when images are checked.

    Raises
    ------
    CaseListError
        With every problem found (not just the first), each naming its CSV row and column.
    """
    from tsct_files import InputFileError, csv_field_error, read_input_text

    path = Path(path)
    problems: list[CaseListProblem] = []
    if path.is_dir():
        raise CaseListError(path, [CaseListProblem(None, None, "is a folder; give the path to the case-list CSV file")])
    if not path.exists():
        raise CaseListError(path, [CaseListProblem(None, None, "file not found; give the path to a case-list CSV")])
    try:
        text = read_input_text(path, what="case-list CSV")
    except InputFileError as exc:
        raise CaseListError(path, [CaseListProblem(None, None, str(exc).removeprefix(f"{path}: "))]) from None
    reader = csv.reader(text.splitlines())
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise CaseListError(path, [CaseListProblem(reader.line_num, None, csv_field_error(path, exc).removeprefix(f"{path}: "))]) from None
    rows = [r for r in rows if any(cell.strip() for cell in r)] if rows else []
    if not rows:
        raise CaseListError(path, [CaseListProblem(None, None, "the file is empty; it needs a header row: " + ",".join(CASE_LIST_COLUMNS))])
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c and c not in KNOWN_COLUMNS]
    if missing:
        separator = next((sep for sep in (";", "\t", "|") if sep in rows[0][0]), None) if len(rows[0]) == 1 else None
        hint = f" (the header is separated by {separator!r}: save the file as comma-separated CSV)" if separator else ""
        problems.append(
            CaseListProblem(1, None, f"missing required column(s) {', '.join(missing)}; the header must include {', '.join(REQUIRED_COLUMNS)}{hint}")
        )
    if unknown:
        problems.append(CaseListProblem(1, None, f"unknown column(s) {', '.join(unknown)}; known columns: {', '.join(KNOWN_COLUMNS)}"))
    if len(set(header)) != len(header):
        problems.append(CaseListProblem(1, None, "a column name appears twice"))
    if missing:
        raise CaseListError(path, problems)

    base = path.parent
    cases: dict[str, dict] = {}
    order: list[str] = []
    folded: dict[str, str] = {}
    case_level = CASE_COLUMNS + OPTIONAL_CASE_COLUMNS
    # Physical line numbers: csv rows may span lines only with quoted newlines, which we do not expect.
    for row_number, raw in enumerate(_data_rows(text), start=2):
        if raw is None:
            continue
        if len(raw) > len(header):
            problems.append(CaseListProblem(row_number, None, f"{len(raw)} values but the header has {len(header)} columns"))
            continue
        rec = {name: (raw[i].strip() if i < len(raw) else "") for i, name in enumerate(header)}
        case_id = rec.get("case_id", "")
        if not case_id:
            problems.append(CaseListProblem(row_number, "case_id", "empty; every row needs the case it belongs to"))
            continue
        status = rec.get("status", "").lower()
        if status not in ("normal", "abnormal"):
            problems.append(CaseListProblem(row_number, "status", f"'{rec.get('status', '')}' must be 'normal' or 'abnormal'"))
        case_fields = {c: rec.get(c, "") for c in case_level}
        case_fields["status"] = status
        if case_id not in cases:
            unsafe = case_id_problem(case_id)
            if unsafe:
                problems.append(CaseListProblem(row_number, "case_id", unsafe))
            elif case_id.lower() in folded:
                problems.append(
                    CaseListProblem(
                        row_number,
                        "case_id",
                        f"'{case_id}' differs from case '{folded[case_id.lower()]}' only in upper/lower case; their folders would collide on Windows and macOS. Make the ids differ by more than case",
                    )
                )
            folded.setdefault(case_id.lower(), case_id)
            if case_fields["same_patient"].lower() not in ("", "yes"):
                problems.append(
                    CaseListProblem(
                        row_number,
                        "same_patient",
                        f"'{case_fields['same_patient']}' must be empty or 'yes' (yes = the coordinator confirms prior and current are the same patient although their headers' patient IDs differ)",
                    )
                )
            for col in ("prior", "current"):
                if not case_fields[col]:
                    problems.append(CaseListProblem(row_number, col, "empty; give the exam's DICOM folder or image file"))
                elif check_files and not _exam_exists(_resolve(base, case_fields[col])):
                    there = _resolve(base, case_fields[col]).exists()
                    why = "is not a file or folder (a pipe, socket or device)" if there else f"not found (relative paths are read from {base})"
                    problems.append(CaseListProblem(row_number, col, f"'{case_fields[col]}' {why}"))
            if case_fields["true_transform"] and check_files and not _resolve(base, case_fields["true_transform"]).is_file():
                problems.append(CaseListProblem(row_number, "true_transform", f"'{case_fields['true_transform']}' not found"))
            cases[case_id] = {"fields": case_fields, "row": row_number, "lesions": []}
            order.append(case_id)
        else:
            first = cases[case_id]["fields"]
            for col in case_level:
                if case_fields[col] != first[col]:
                    problems.append(
                        CaseListProblem(
                            row_number,
                            col,
                            f"'{case_fields[col]}' differs from '{first[col]}' on row {cases[case_id]['row']} for the same case {case_id}; case columns must agree on every row of a case",
                        )
                    )
        lesion_values = [rec.get(c, "") for c in LESION_COLUMNS]
        if any(lesion_values):
            lesion = _parse_lesion(rec, row_number, base, check_files, problems)
            if status == "normal":
                problems.append(
                    CaseListProblem(
                        row_number,
                        "lesion_id",
                        f"case {case_id} is 'normal' but this row gives a lesion; set status to 'abnormal' or clear the lesion columns",
                    )
                )
            elif lesion is not None:
                ids = [lid for lid, _, _ in cases[case_id]["lesions"]]
                if lesion.lesion_id in ids:
                    problems.append(
                        CaseListProblem(
                            row_number,
                            "lesion_id",
                            f"lesion '{lesion.lesion_id}' appears twice in case {case_id}; lesion IDs must be unique within a case",
                        )
                    )
                else:
                    cases[case_id]["lesions"].append((lesion.lesion_id, lesion, row_number))

    result: list[Case] = []
    for case_id in order:
        info = cases[case_id]
        fields = info["fields"]
        lesions = [lesion for _, lesion, _ in info["lesions"]]
        abnormal = fields["status"] == "abnormal"
        if abnormal and not lesions:
            problems.append(
                CaseListProblem(info["row"], "lesion_id", f"abnormal case {case_id} has no truth lesion; add one row per lesion or mark it 'normal'")
            )
        weights = [lesion.weight for lesion in lesions]
        if lesions and any(w is not None for w in weights):
            if any(w is None for w in weights):
                problems.append(CaseListProblem(info["row"], "weight", f"case {case_id}: give a weight for every lesion or for none"))
            elif abs(sum(weights) - 1.0) > WEIGHT_TOLERANCE:  # type: ignore[arg-type]
                problems.append(
                    CaseListProblem(info["row"], "weight", f"case {case_id}: lesion weights sum to {sum(weights):.6g}, they must sum to 1")
                )  # type: ignore[arg-type]
        if fields["status"] not in ("normal", "abnormal"):
            continue
        result.append(
            Case(
                case_id=case_id,
                prior=_resolve(base, fields["prior"]),
                current=_resolve(base, fields["current"]),
                abnormal=abnormal,
                lesions=tuple(lesions),
                true_transform=_resolve(base, fields["true_transform"]) if fields["true_transform"] else None,
                same_patient_override=fields["same_patient"].lower() == "yes",
            )
        )
        cases[case_id]["case"] = result[-1]
    if not order and not problems:
        problems.append(CaseListProblem(None, None, "the file has a header but no cases"))
    notes: list[CaseListProblem] = []
    if check_images and check_files:
        from .casecheck import check_case_files

        bad_rows = {p.row for p in problems if p.column in ("prior", "current", "label_map", "true_transform")}
        checkable = [c for c in result if cases[c.case_id]["row"] not in bad_rows]
        for i, case in enumerate(checkable):
            info = cases[case.case_id]
            lesion_rows = {lid: row for lid, _, row in info["lesions"]}
            errors, warns = check_case_files(case, case_row=info["row"], lesion_rows=lesion_rows)
            problems.extend(errors)
            notes.extend(warns)
            if callable(progress):
                progress(i + 1, len(checkable), case.case_id)
    if problems:
        problems.sort(key=lambda p: p.row if p.row is not None else 0)
        raise CaseListError(path, problems, notes)
    return CaseList(cases=tuple(result), source=path, warnings=tuple(notes))


def _data_rows(text: str) -> Iterable[list[str] | None]:
    """Data rows after the header; ``None`` for blank lines so row numbers stay physical."""
    lines = text.splitlines()
    for line in lines[1:]:
        if not line.strip() or line.strip().startswith("#"):
            yield None
            continue
        yield next(csv.reader([line]))


def _parse_lesion(rec: dict[str, str], row: int, base: Path, check_files: bool, problems: list[CaseListProblem]) -> Lesion | None:
    n_before = len(problems)
    lesion_id = rec.get("lesion_id", "")
    if not lesion_id:
        problems.append(CaseListProblem(row, "lesion_id", "empty; each lesion row needs an ID unique within its case"))
    lesion_type = rec.get("lesion_type", "").lower()
    if lesion_type not in {t.value for t in LesionType}:
        problems.append(
            CaseListProblem(row, "lesion_type", f"'{rec.get('lesion_type', '')}' must be one of {', '.join(t.value for t in LesionType)}")
        )
    location = rec.get("location", "").lower()
    if location not in {loc.value for loc in LesionLocation}:
        problems.append(
            CaseListProblem(row, "location", f"'{rec.get('location', '')}' must be one of {', '.join(loc.value for loc in LesionLocation)}")
        )
    center = []
    for col in ("center_x_mm", "center_y_mm", "center_z_mm"):
        if not rec.get(col, ""):
            problems.append(CaseListProblem(row, col, "empty; give the lesion centre in LPS mm of the current exam"))
        else:
            center.append(_parse_float(rec[col], col, row, problems))
    radius = None
    if rec.get("radius_mm", ""):
        radius = _parse_float(rec["radius_mm"], "radius_mm", row, problems)
        if radius is not None and radius <= 0:
            problems.append(CaseListProblem(row, "radius_mm", f"{radius} must be positive"))
        elif radius is not None and radius > 150:
            problems.append(
                CaseListProblem(row, "radius_mm", f"{radius:g} mm is larger than any bone lesion (limit 150 mm); is it a diameter in another unit?")
            )
    label_map = None
    if rec.get("label_map", ""):
        label_map = _resolve(base, rec["label_map"])
        if check_files and not label_map.is_file():
            problems.append(CaseListProblem(row, "label_map", f"'{rec['label_map']}' not found"))
    if radius is None and label_map is None and not rec.get("radius_mm", ""):
        problems.append(CaseListProblem(row, "radius_mm", "the lesion needs an extent: a radius_mm or a label_map"))
    label_value = None
    if rec.get("label_value", ""):
        try:
            label_value = int(rec["label_value"])
        except ValueError:
            problems.append(CaseListProblem(row, "label_value", f"'{rec['label_value']}' is not an integer"))
        else:
            if not 1 <= label_value <= 65535:
                problems.append(CaseListProblem(row, "label_value", f"{label_value} must be 1 to 65535 (0 is the background)"))
                label_value = None
        if not rec.get("label_map", ""):
            problems.append(CaseListProblem(row, "label_value", "given without a label_map; give the label-map file too, or clear label_value"))
    weight = None
    if rec.get("weight", ""):
        weight = _parse_float(rec["weight"], "weight", row, problems)
        if weight is not None and not 0 < weight <= 1:
            problems.append(CaseListProblem(row, "weight", f"{weight} must be in (0, 1]"))
    if len(problems) > n_before:
        return None
    return Lesion(
        lesion_id=lesion_id,
        center_mm=tuple(center),  # type: ignore[arg-type]
        lesion_type=LesionType(lesion_type),
        location=LesionLocation(location),
        radius_mm=radius,
        label_map=label_map,
        label_value=label_value,
        weight=weight,
    )


def validate_case_list(path: str | Path, *, check_files: bool = True, check_images: bool = False) -> list[CaseListProblem]:
    """Every problem in a case list (empty list when it is valid)."""
    try:
        read_case_list(path, check_files=check_files, check_images=check_images)
    except CaseListError as exc:
        return exc.problems
    return []


def _relative(path: Path | None, base: Path) -> str:
    if path is None:
        return ""
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def write_case_list(case_list: CaseList, path: str | Path) -> Path:
    """Write a case list as CSV (paths relative to the CSV's folder when inside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent
    override = any(case.same_patient_override for case in case_list.cases)
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CASE_LIST_COLUMNS + (("same_patient",) if override else ()))
        for case in case_list.cases:
            case_cells = [
                case.case_id,
                _relative(case.prior, base),
                _relative(case.current, base),
                case.status,
                _relative(case.true_transform, base),
            ]
            tail = ["yes" if case.same_patient_override else ""] if override else []
            if not case.lesions:
                writer.writerow(case_cells + [""] * len(LESION_COLUMNS) + tail)
            for lesion in case.lesions:
                writer.writerow(
                    case_cells
                    + [
                        lesion.lesion_id,
                        lesion.lesion_type.value,
                        lesion.location.value,
                        *(f"{c:.3f}" for c in lesion.center_mm),
                        "" if lesion.radius_mm is None else f"{lesion.radius_mm:.3f}",
                        _relative(lesion.label_map, base),
                        "" if lesion.label_value is None else str(lesion.label_value),
                        "" if lesion.weight is None else repr(float(lesion.weight)),
                    ]
                    + tail
                )
    tmp.replace(path)
    return path
