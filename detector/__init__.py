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
read_case_outputs, CaseOutputs, CaseOutputsError, write_case_outputs
    The hand-off to reading: each case folder's ``outputs.json`` manifest (every file with its
    role, SHA-256 and grid; the model; the exams' hashes), and the one reader of it.

Detector, part 2 (docs/detector-zscore.md):

compute_zmap, ZMap, load_zscore_model, ZScoreModel, DomainCheck, analytic_sigma
    The z-score map z = (current - estimate) / sigma from a network that sees only the
    registered prior (shipped weights ``detector/weights/zscore-v1.pt``), with a domain check and
    the analytic error model as documented fallback.
find_candidates, matched_filter_score, CandidateSet, Candidate
    Lesion candidates: connected regions of |z| above a threshold, with hysteresis.
render_overlay, OverlayStyle, write_overlay_dicom
    The colour overlay (green increase, orange decrease) for the reading app and as a DICOM
    Secondary Capture series.
zscore_stage, ZScoreSettings, ZScoreOutputs
    The z-score stage of a case folder (``run_pair(..., zscore=True)`` calls it).
train_zscore_model, prepare_training_pairs, TrainingConfig
    Training on the normal pairs of a case list (``tsct detect train``).
evaluate_detectors, EvaluationSettings, DetectorEvaluation
    Plain vs voxel-matched subtraction vs z-map as stand-alone detectors (``tsct detect evaluate``).

compute_single_exam_zmap, load_single_exam_model, SingleExamModel, single_exam_roi,
prepare_single_exam_exams, train_single_exam_model, SingleExamTrainingConfig
    Single-exam mode (no prior exam): a blind-spot in-painting network predicts each bone voxel
    of the current exam from its surroundings, never seeing the 5x5x5 block around it
    (shipped weights ``detector/weights/single-exam-v1.pt``); the same ZMap, method
    ``"single-exam"`` (``tsct detect single-exam``, ``tsct detect train-single-exam``).

See docs/detector.md for parameters, measurements, output layout and JSON keys.
"""

from ._errors import DetectorInputError
from .bone import bone_mask
from .candidates import Candidate, CandidateSet, find_candidates, matched_filter_score
from .detection_eval import DetectorEvaluation, EvaluationSettings, evaluate_detectors
from .evaluation import RegistrationMeasurement, measure_registration
from .outputs import CaseOutputs, CaseOutputsError, read_case_outputs, write_case_outputs
from .overlay import OverlayStyle, render_overlay, write_overlay_dicom
from .pipeline import BatchResult, PairResult, run_case_list, run_pair
from .qc import QCReport
from .registration import IterationInfo, RegistrationConfig, RegistrationResult, register
from .single_exam import (
    SingleExamModel,
    SingleExamTrainingConfig,
    compute_single_exam_zmap,
    load_single_exam_model,
    prepare_single_exam_exams,
    single_exam_roi,
    train_single_exam_model,
)
from .subtraction import SubtractionImages, temporal_subtraction
from .train import TrainingConfig, prepare_training_pairs, train_zscore_model
from .zscore import DomainCheck, ModelBundleError, OutOfDomainWarning, ZMap, ZScoreModel, analytic_sigma, compute_zmap, load_zscore_model
from .zscore_outputs import ZScoreOutputs, ZScoreSettings, zscore_stage

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
    # the hand-off to reading (outputs.json)
    "CaseOutputs",
    "CaseOutputsError",
    "read_case_outputs",
    "write_case_outputs",
    # part 2: z-score map, candidates, overlay, training, evaluation
    "Candidate",
    "CandidateSet",
    "DetectorEvaluation",
    "DomainCheck",
    "EvaluationSettings",
    "ModelBundleError",
    "OutOfDomainWarning",
    "OverlayStyle",
    "TrainingConfig",
    "ZMap",
    "ZScoreModel",
    "ZScoreOutputs",
    "ZScoreSettings",
    "analytic_sigma",
    "compute_zmap",
    "evaluate_detectors",
    "find_candidates",
    "matched_filter_score",
    "load_zscore_model",
    "prepare_training_pairs",
    "render_overlay",
    "train_zscore_model",
    "write_overlay_dicom",
    "zscore_stage",
    # single-exam mode (no prior exam)
    "SingleExamModel",
    "SingleExamTrainingConfig",
    "compute_single_exam_zmap",
    "load_single_exam_model",
    "prepare_single_exam_exams",
    "single_exam_roi",
    "train_single_exam_model",
]
