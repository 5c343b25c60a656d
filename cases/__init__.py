"""Cases: CT exams, case lists with truth, and synthetic spine CT pairs.

The first stage of the platform's data flow (cases → detector → reader_study → analysis).
Everything here works in DICOM/ITK LPS patient coordinates and millimetres.

Public API, by domain
---------------------
Geometry
    ``Grid``, ``read_grid``, ``GridReadError``: the one voxel-grid type (no voxels): voxel <-> mm,
    grid comparison, header-only reading. ``Volume``, ``LabelVolume``: images that carry their
    grid (array in (z, y, x) order, spacing/origin in (x, y, z)).
Exams
    ``Exam``, ``read_exam``, ``read_exam_pair``, ``read_volume``, ``write_volume``, ``write_nifti_gz``, ``write_dicom_series``,
    ``check_same_patient``, ``list_dicom_series``: CT exams from DICOM series folders, NIfTI, NRRD
    or MHA, in HU, and back; ``file_sha256`` of an exam or output (a DICOM folder as a whole).
Case lists and truth
    ``Case``, ``CaseList``, ``Lesion``, ``read_case_list``, ``write_case_list``,
    ``validate_case_list``: prior/current pairs, normal/abnormal, truth lesions; ``TruthLesion``
    and ``HitRule``: a truth lesion for scoring and the one rule that says whether a mark or
    candidate hits it.
Synthetic spine CT pairs
    ``synthesize_pair``, ``synthesize_case_set``, ``SyntheticPair``, ``load_true_transform`` …:
    realistic thoracolumbar pairs with new lesions and a known transform
    (``docs/synthetic-cases.md``).
"""

# geometry: the one grid type, and images that carry it --------------------------------------------
# case lists and truth --------------------------------------------------------------------------------
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
from .grid import Grid, GridReadError, read_grid
from .hashing import file_sha256

# exams: reading and writing CT, hashing -------------------------------------------------------------
from .io import (
    Exam,
    ExamReadError,
    check_hu_plausible,
    check_same_patient,
    read_exam,
    read_exam_pair,
    read_volume,
    write_dicom_series,
    write_nifti_gz,
    write_volume,
)

# synthetic spine CT pairs ------------------------------------------------------------------------------
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
from .truth import HitRule, TruthLesion
from .volume import GeometryMismatchError, LabelVolume, Volume

__all__ = [
    # geometry
    "Grid",
    "GridReadError",
    "read_grid",
    "GeometryMismatchError",
    "LabelVolume",
    "Volume",
    # exams
    "Exam",
    "ExamReadError",
    "check_hu_plausible",
    "check_same_patient",
    "read_exam",
    "read_exam_pair",
    "read_volume",
    "write_dicom_series",
    "write_nifti_gz",
    "write_volume",
    "DicomSeriesInfo",
    "list_dicom_series",
    "file_sha256",
    # case lists and truth
    "CASE_LIST_COLUMNS",
    "Case",
    "CaseList",
    "CaseListError",
    "CaseListProblem",
    "Lesion",
    "LesionLocation",
    "LesionType",
    "read_case_list",
    "validate_case_list",
    "write_case_list",
    "HitRule",
    "TruthLesion",
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
]
