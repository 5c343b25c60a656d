"""The detector: from a registered prior/current CT pair to a z-score map and lesion candidates.

Second stage of the platform's data flow (cases → **detector** → reader_study → analysis).
All geometry is DICOM/ITK LPS in millimetres; images are :class:`cases.Volume` /
:class:`cases.LabelVolume`. Transforms map **current-exam points to prior-exam points** (fixed =
current, moving = prior), so resampling the prior through them puts it on the current grid.
The public API, by stage of the chain (docs/architecture.md has the module table):

Registration (``registration.py``)
    register, RegistrationConfig, RegistrationResult, IterationInfo: prior (moving) onto current
    (fixed): body crop, bone-centroid initialisation, rigid mutual information, then a B-spline
    (default) or Demons deformation.
Bone ROI and temporal subtraction (``bone.py``, ``subtraction.py``)
    bone_mask: bone of a CT without downloaded weights, contrast blood pools left out, or from
    a user's label map. temporal_subtraction, SubtractionImages: plain and voxel-matched
    subtraction inside the bone ROI.
The chain, its QC and its hand-off to reading (``pipeline.py``, ``qc.py``, ``outputs.py``)
    run_pair, PairResult, run_case_list, BatchResult: the whole chain for one pair or a case
    list (skips finished cases, continues past failures). QCReport, DetectorInputError: the QC
    verdict (``qc.json``) and the error raised for unusable input. read_case_outputs,
    CaseOutputs, CaseOutputsError, write_case_outputs: each case folder's ``outputs.json``
    manifest (every file with role, SHA-256 and grid; the model; the exams' hashes) and its
    one reader.
z-score model (``zscore*.py``, ``working_grid.py``; docs/detector-zscore.md)
    compute_zmap, ZMap, load_zscore_model, ZScoreModel, DomainCheck, ModelBundleError,
    OutOfDomainWarning, analytic_sigma: z = (current - estimate) / sigma from a network that
    sees only the registered prior (shipped ``detector/weights/zscore-v1.pt``), its domain check,
    and the analytic error model it falls back to. zscore_stage, ZScoreSettings,
    ZScoreOutputs: the z-score stage of a case folder (``run_pair(..., zscore=True)``).
Candidates and overlay (``candidates.py``, ``overlay.py``)
    find_candidates, matched_filter_score, CandidateSet, Candidate: lesion candidates on the
    matched-filter score, split when nearby. render_overlay, OverlayStyle, write_overlay_dicom:
    the colour overlay (green increase, orange decrease) for the app and as DICOM.
Training (``train.py``, ``_training_common.py``)
    train_zscore_model, prepare_training_pairs, TrainingConfig: training on the normal pairs of
    a case list (``tsct detect train``).
Evaluation (``evaluation.py``, ``detection_eval.py``, ``froc.py``)
    measure_registration, RegistrationMeasurement: TRE in bone against a known transform.
    evaluate_detectors, EvaluationSettings, DetectorEvaluation: plain vs voxel-matched
    subtraction vs z-map as stand-alone detectors (``tsct detect evaluate``).
Single-exam mode (``single_exam.py``, ``single_exam_train.py``)
    compute_single_exam_zmap, load_single_exam_model, SingleExamModel, single_exam_roi,
    prepare_single_exam_exams, train_single_exam_model, SingleExamTrainingConfig: no prior
    exam; a blind-spot in-painting network predicts each bone voxel from its surroundings
    (shipped ``detector/weights/single-exam-v1.pt``; ``tsct detect single-exam``).

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
    # registration
    "register",
    "RegistrationConfig",
    "RegistrationResult",
    "IterationInfo",
    # bone ROI and temporal subtraction
    "bone_mask",
    "temporal_subtraction",
    "SubtractionImages",
    # the chain, its QC and the hand-off to reading (outputs.json)
    "run_pair",
    "PairResult",
    "run_case_list",
    "BatchResult",
    "QCReport",
    "DetectorInputError",
    "CaseOutputs",
    "CaseOutputsError",
    "read_case_outputs",
    "write_case_outputs",
    # z-score model
    "compute_zmap",
    "ZMap",
    "load_zscore_model",
    "ZScoreModel",
    "DomainCheck",
    "ModelBundleError",
    "OutOfDomainWarning",
    "analytic_sigma",
    "zscore_stage",
    "ZScoreSettings",
    "ZScoreOutputs",
    # candidates and overlay
    "find_candidates",
    "matched_filter_score",
    "CandidateSet",
    "Candidate",
    "render_overlay",
    "OverlayStyle",
    "write_overlay_dicom",
    # training
    "train_zscore_model",
    "prepare_training_pairs",
    "TrainingConfig",
    # evaluation
    "measure_registration",
    "RegistrationMeasurement",
    "evaluate_detectors",
    "EvaluationSettings",
    "DetectorEvaluation",
    # single-exam mode (no prior exam)
    "compute_single_exam_zmap",
    "load_single_exam_model",
    "SingleExamModel",
    "single_exam_roi",
    "prepare_single_exam_exams",
    "train_single_exam_model",
    "SingleExamTrainingConfig",
]
