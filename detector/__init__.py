"""Detector, part 1: registration, bone ROI, temporal subtraction and QC of prior/current CT pairs.

Second stage of the platform's data flow (cases → **detector** → reader_study → analysis).
All geometry is DICOM/ITK LPS in millimetres; images are :class:`cases.Volume` /
:class:`cases.LabelVolume`. Transforms map **current-exam points to prior-exam points** (fixed =
current, moving = prior), so resampling the prior through them puts it on the current grid.

Public API
----------
register, RegistrationConfig, RegistrationResult, IterationInfo
    Prior (moving) onto current (fixed): body crop, bone-centroid initialisation, rigid mutual
    information on a 8/4/2 mm pyramid, then Demons on clamped HU at 3 and 1.5 mm.
bone_mask
    Bone of a CT without downloaded weights (threshold, morphology, components), or from a
    user's label map.
temporal_subtraction, SubtractionImages
    Plain and voxel-matched subtraction inside the bone ROI.
run_pair, PairResult
    The whole chain for one pair, with QC and outputs (NIfTI, ``qc.json``, derived DICOM).
run_case_list, BatchResult
    Batch over a case list: skips finished cases, continues past failures, reports at the end.
measure_registration, RegistrationMeasurement
    TRE in bone against a known transform, artifact level and lesion contrast kept.
QCReport, DetectorInputError
    The QC verdict (``qc.json``) and the error raised for unusable input.

See docs/detector.md for parameters, measurements, output layout and JSON keys.
"""

from ._errors import DetectorInputError
from .bone import bone_mask
from .evaluation import RegistrationMeasurement, measure_registration
from .pipeline import BatchResult, PairResult, run_case_list, run_pair
from .qc import QCReport
from .registration import IterationInfo, RegistrationConfig, RegistrationResult, register
from .subtraction import SubtractionImages, temporal_subtraction

__all__ = [
    "BatchResult",
    "DetectorInputError",
    "IterationInfo",
    "PairResult",
    "QCReport",
    "RegistrationConfig",
    "RegistrationMeasurement",
    "RegistrationResult",
    "SubtractionImages",
    "bone_mask",
    "measure_registration",
    "register",
    "run_case_list",
    "run_pair",
    "temporal_subtraction",
]
