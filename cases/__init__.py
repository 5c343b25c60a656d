"""Cases: CT exams, case lists with truth, and synthetic spine CT pairs.

The first stage of the platform's data flow (cases → detector → reader_study → analysis).
Everything here works in DICOM/ITK LPS patient coordinates and millimetres.

Public API
----------
Volume, LabelVolume
    Images that carry their geometry (array in (z, y, x) order, spacing/origin in (x, y, z)).
Grid, read_grid, GridReadError
    The one voxel-grid type (no voxels): voxel <-> mm, grid comparison, header-only reading.
file_sha256
    SHA-256 of an exam or output (a file, or a DICOM folder as a whole).
TruthLesion, HitRule
    A truth lesion for scoring, and the one rule that says whether a mark or candidate hits it.
Exam, read_exam, read_volume, write_volume, write_dicom_series, check_same_patient
    Reading CT exams from DICOM series folders, NIfTI, NRRD or MHA, in HU; writing them back.
Case, CaseList, Lesion, LesionType, LesionLocation, read_case_list, write_case_list,
validate_case_list
    Case lists: prior/current pairs, normal/abnormal, truth lesions.
synthesize_pair, synthesize_case_set, SyntheticPair, load_true_transform, ...
    Realistic synthetic thoracolumbar spine CT pairs with new lesions and a known transform
    (see docs/synthetic-cases.md).
"""

from .caselist import (
    CASE_LIST_COLUMNS,
    Case,
    CaseList,
    CaseListError,
    CaseListProblem,
    Lesion,
    LesionLocation,
    LesionType,
    read_case_list,
    validate_case_list,
    write_case_list,
)
from .dicom import DicomSeriesInfo, list_dicom_series
from .io import (
    Exam,
    ExamReadError,
    check_hu_plausible,
    check_same_patient,
    read_exam,
    read_volume,
    write_dicom_series,
    write_volume,
)
from .synth import (
    BONE_LABELS,
    SIZES,
    TISSUE_LABELS,
    SynthesisError,
    SyntheticPair,
    load_true_transform,
    map_points_mm,
    synthesize_case_set,
    synthesize_from_parameters,
    synthesize_pair,
    true_bone_displacements_mm,
    write_pair,
)
from .grid import Grid, GridReadError, read_grid
from .hashing import file_sha256
from .truth import HitRule, TruthLesion
from .volume import GeometryMismatchError, LabelVolume, Volume

__all__ = [
    "CASE_LIST_COLUMNS",
    "Case",
    "CaseList",
    "CaseListError",
    "CaseListProblem",
    "DicomSeriesInfo",
    "Exam",
    "ExamReadError",
    "GeometryMismatchError",
    "LabelVolume",
    "Lesion",
    "LesionLocation",
    "LesionType",
    "Volume",
    "check_hu_plausible",
    "check_same_patient",
    "list_dicom_series",
    "read_case_list",
    "read_exam",
    "read_volume",
    "validate_case_list",
    "write_case_list",
    "write_dicom_series",
    "write_volume",
    # synthetic spine CT pairs
    "BONE_LABELS",
    "SIZES",
    "TISSUE_LABELS",
    "SynthesisError",
    "SyntheticPair",
    "load_true_transform",
    "map_points_mm",
    "synthesize_case_set",
    "synthesize_from_parameters",
    "synthesize_pair",
    "true_bone_displacements_mm",
    "write_pair",
    # geometry and truth
    "Grid",
    "GridReadError",
    "read_grid",
    "file_sha256",
    "HitRule",
    "TruthLesion",
]
