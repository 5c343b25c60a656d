"""The detector's first half end to end: register, warp, bone ROI, subtract, QC, write.

:func:`run_pair` takes one prior/current pair (exams, volumes or paths) and returns everything
in a :class:`PairResult`; with ``out_dir`` it also writes the outputs in a fixed layout that the
later stages (z-score network, reading app) read:

``<out_dir>/``
    ``warped_prior.nii.gz``   prior CT warped onto the current exam's grid, int16 HU
    ``subtraction.nii.gz``    current − warped prior in the bone ROI, int16 HU (0 outside)
    ``subtraction_vm.nii.gz`` voxel-matched subtraction in the bone ROI, int16 HU (0 outside)
    ``bone_roi.nii.gz``       the bone ROI (uint8, 1 = inside)
    ``transform.h5``          ITK composite transform, current-exam points → prior-exam points
    ``zmap.nii.gz``, ``sigma.nii.gz``, ``candidates.json``, ``candidates.csv``
                              the z-score map, its sigma (HU) and the lesion candidates
                              (``zscore=True``, the default; see :mod:`detector.zscore_outputs`)
    ``qc.json``               QC figures and verdict
    ``dicom/warped_prior/``, ``dicom/subtraction/``, ``dicom/subtraction_vm/``,
    ``dicom/zscore_overlay/`` derived DICOM series (only when the current exam was DICOM); the
                              overlay is a colour Secondary Capture series
    ``outputs.json``          the case's output manifest (:mod:`detector.outputs`): every file
                              above with its role, SHA-256 and grid, the model and the exams'
                              hashes; written last and atomically, so its presence marks a
                              finished case. Read it with :func:`detector.read_case_outputs`.

:func:`run_case_list` runs a whole case list into ``<out>/<case_id>/`` folders, skips cases
that are already finished, goes on past a failed case and reports the failures at the end.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from cases import CaseList, Exam, LabelVolume, Volume, read_case_list, read_exam, read_exam_pair, read_volume, write_dicom_series, write_nifti_gz

from ._errors import DetectorInputError
from .bone import bone_mask, dilate_mask
from .outputs import MANIFEST_NAME, ROLES, ModelRecord, case_outputs_status, write_case_outputs
from .qc import QCReport, QCThresholds, assess_registration, header_checks
from .registration import IterationInfo, RegistrationConfig, RegistrationResult, register
from .subtraction import KernelSpec, SubtractionImages, _kernel_radius, temporal_subtraction

__all__ = ["PairResult", "BatchResult", "run_pair", "run_case_list", "OUTPUT_FILES"]

#: Output file names of this stage inside a case folder (from :data:`detector.outputs.ROLES`;
#: later stages find them through the case's manifest, :func:`detector.read_case_outputs`).
OUTPUT_FILES: dict[str, str] = {role: ROLES[role][0] for role in ("warped_prior", "subtraction", "subtraction_vm", "bone_roi", "transform", "qc")}

#: The lowest HU a CT holds; warped-prior voxels below it fell outside the prior's field of view.
AIR_HU = -1024.0
_OUTSIDE_SENTINEL = -8192.0

#: Compression level of the NIfTI outputs (zlib 1: several times faster than the default 6,
#: files about 10 % larger).
NIFTI_COMPRESSION_LEVEL = 1


@dataclass(frozen=True, eq=False)
class PairResult:
    """Everything :func:`run_pair` made for one prior/current pair.

    Attributes
    ----------
    registration : the registration (transform, per-stage report).
    warped_prior : the prior warped onto the current exam's grid, HU (air outside the prior).
    subtraction : plain and voxel-matched subtraction images.
    bone_roi : where the subtraction is read (1 = inside).
    qc : the QC report (also in ``qc.json``).
    timings_s : wall time per stage (``load``, ``register``, ``warp``, ``bone``, ``subtract``,
        ``qc``, ``write_nifti``, ``write_dicom``, ``total``), s.
    outputs : written files by kind (see :data:`OUTPUT_FILES`), empty without ``out_dir``.
    case_id : the case identifier, if given.
    zscore : the z-score map and lesion candidates (:class:`~detector.zscore_outputs.ZScoreOutputs`),
        None when run with ``zscore=False``.
    """

    registration: RegistrationResult
    warped_prior: Volume
    subtraction: SubtractionImages
    bone_roi: LabelVolume
    qc: QCReport
    timings_s: dict[str, float]
    outputs: dict[str, Path] = field(default_factory=dict)
    case_id: str | None = None
    zscore: Any = None

    def summary(self) -> str:
        """Registration, subtraction, z-score and QC summary plus stage times."""
        times = ", ".join(f"{k} {v:.1f}" for k, v in self.timings_s.items())
        lines = [
            f"Case {self.case_id}" if self.case_id else "Prior/current pair",
            self.registration.summary(),
            self.subtraction.summary(),
            *([self.zscore.summary()] if self.zscore is not None else []),
            self.qc.summary(),
            f"time (s): {times}",
        ]
        if self.outputs:
            lines.append("outputs: " + ", ".join(str(p) for p in self.outputs.values()))
        return "\n".join(lines)


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`run_case_list`.

    Attributes
    ----------
    out_dir : the batch output folder.
    completed : case IDs run in this batch.
    skipped : case IDs already finished (``outputs.json`` present) and not re-run.
    failed : case ID -> error message, for cases that raised an error.
    qc_status : case ID -> QC status of every completed or skipped case.
    elapsed_s : wall time of the batch, s.
    """

    out_dir: Path
    completed: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: dict[str, str]
    qc_status: dict[str, str]
    elapsed_s: float

    @property
    def qc_failed(self) -> list[str]:
        """Cases whose registration QC failed (outputs written but not to be read)."""
        return [cid for cid, status in self.qc_status.items() if status == "failed"]

    def summary(self) -> str:
        lines = [
            f"{len(self.completed)} case(s) run, {len(self.skipped)} skipped (already finished), "
            f"{len(self.failed)} failed with an error, {len(self.qc_failed)} with failed registration QC; "
            f"{self.elapsed_s:.0f} s. Outputs in {self.out_dir}."
        ]
        for cid, msg in self.failed.items():
            lines.append(f"  ERROR {cid}: {msg}")
        for cid in self.qc_failed:
            lines.append(f"  QC FAILED {cid}: see {self.out_dir / cid / OUTPUT_FILES['qc']}")
        return "\n".join(lines)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """One row per case: case_id, outcome (completed/skipped/error), qc_status, error."""
        import pandas as pd

        rows = []
        for cid in (*self.completed, *self.skipped, *self.failed):
            outcome = "error" if cid in self.failed else ("skipped" if cid in self.skipped else "completed")
            rows.append({"case_id": cid, "outcome": outcome, "qc_status": self.qc_status.get(cid), "error": self.failed.get(cid)})
        return pd.DataFrame(rows, columns=["case_id", "outcome", "qc_status", "error"])


# ---------------------------------------------------------------------------------------------
def _as_exam(item: Exam | Volume | str | Path, role: str, series_uid: str | None = None) -> tuple[Exam | None, Volume]:
    if isinstance(item, Exam):
        return item, item.volume
    if isinstance(item, LabelVolume):
        raise DetectorInputError(f"The {role} exam is a label volume; give the CT in HU.")
    if isinstance(item, Volume):
        return None, item
    if isinstance(item, (str, Path)):
        exam = read_exam(item, series_uid=series_uid)
        return exam, exam.volume
    raise DetectorInputError(f"The {role} exam must be a cases.Exam, a cases.Volume or a path, got {type(item).__name__}.")


def _int16(volume: Volume) -> Volume:
    """The volume rounded to int16 (clipped to its range), slab by slab: the same values as
    ``np.clip(np.rint(a), -32768, 32767).astype(np.int16)`` without two full-size float
    temporaries (1.1 CPU s per 512 x 512 x 300 image that way, page faults mostly)."""
    a = volume.array
    out = np.empty(a.shape, dtype=np.int16)
    step = max(1, (1 << 22) // max(1, int(np.prod(a.shape[1:]))))  # slabs of about 4 M voxels
    for k in range(0, a.shape[0], step):
        slab = np.rint(a[k : k + step])
        np.clip(slab, -32768, 32767, out=slab)
        out[k : k + step] = slab
    return volume.with_array(out)


def _write_nifti(volume: Volume, path: Path) -> Path:
    """NIfTI writer with a fast compression level (``cases.write_volume`` uses the default)."""
    return write_nifti_gz(volume.to_sitk(), path, zlib_level=NIFTI_COMPRESSION_LEVEL)


def _int16_of(volume: Volume) -> Callable[[], Volume]:
    """Deferred :func:`_int16`: the int16 copy is made by the writer thread, one image at a time."""
    return lambda: _int16(volume)


def _write_images(out: Path, images: dict[str, Callable[[], Volume]]) -> dict[str, Path]:
    """Write the pair's images (role -> maker of the volume) one after the other as NIfTI."""
    return {role: _write_nifti(make(), out / OUTPUT_FILES[role]) for role, make in images.items()}


def _subtract_and_write(current: Volume, warped: Volume, roi: LabelVolume, out: Path, **options: Any) -> tuple[SubtractionImages, dict[str, Path]]:
    """The subtraction images (:func:`temporal_subtraction` in ``roi``), then the two of them and
    the ROI written as NIfTI (the pipeline's writer thread runs this)."""
    subtraction = temporal_subtraction(current, warped, bone_roi=roi, **options)
    written = _write_images(
        out,
        {"subtraction": _int16_of(subtraction.plain), "subtraction_vm": _int16_of(subtraction.voxel_matched), "bone_roi": lambda: roi},
    )
    return subtraction, written


def _load_zscore_model_quietly(model: Any, device: str) -> None:
    """Load (and cache) the z-score model ahead of the z-score stage; errors are left to that stage."""
    from .zscore import _resolve_model

    with contextlib.suppress(Exception):  # the z-score stage loads it again and reports the error
        _resolve_model(model, device)


def _spacing_rules_out_network(model: Any, current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float]) -> bool:
    """Whether the voxel spacings alone put the pair outside the network's domain (then the z-map
    neither loads it nor resamples onto its grid); errors are left to the z-score stage."""
    from .zscore import spacing_domain_check

    try:
        check = spacing_domain_check(model, current_spacing_mm, prior_spacing_mm)
    except Exception:  # noqa: BLE001 - the z-score stage reads the bundle again and reports the error
        return False
    return check is not None and not check.in_domain


def _load_bone_labels(bone_labels: LabelVolume | str | Path | None) -> LabelVolume | None:
    if bone_labels is None or isinstance(bone_labels, LabelVolume):
        return bone_labels
    return read_volume(bone_labels, label=True)  # type: ignore[return-value]


def _describe(exam: Exam | None, volume: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"size_xyz": list(volume.size), "spacing_mm": list(volume.spacing_mm)}
    if exam is not None:
        out["source"] = str(exam.source)
        out["format"] = exam.format
        for key in ("PatientID", "StudyDate", "StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription"):
            if key in exam.header:
                out[key] = exam.header[key]
    elif "source" in volume.metadata:
        out["source"] = volume.metadata["source"]
    return out


def _slice_thickness_mm(exam: Exam | None, volume: Volume) -> float:
    """Reconstructed slice thickness: DICOM SliceThickness, else the volume's metadata, else the
    slice spacing."""
    for value in ((exam.header.get("SliceThickness") if exam is not None else None), volume.metadata.get("slice_thickness_mm")):
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return float(volume.spacing_mm[2])


def match_slice_thickness(prior: Volume, prior_thickness_mm: float, current_thickness_mm: float) -> tuple[Volume, float]:
    """Blur a thinner-sliced prior along z to the current exam's slice thickness.

    Subtracting a 1 mm prior from a 2 mm current leaves partial-volume artifacts at every
    cortical edge crossing the slices. A Gaussian along z with FWHM ``sqrt(t_c^2 - t_p^2)``
    (slice profiles add in quadrature) matches the two; on a synthetic 1 mm / 2 mm pair it cut the
    artifact level in bone from 61 to 51 HU and the registration error from 0.14 to 0.08 mm.
    Returns the (possibly) blurred prior and the sigma used (mm, 0 when nothing was done).
    """
    if current_thickness_mm <= prior_thickness_mm * 1.05:
        return prior, 0.0
    sigma_mm = float(np.sqrt(current_thickness_mm**2 - prior_thickness_mm**2) / 2.3548)
    image = prior.to_sitk()
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    blurred = sitk.RecursiveGaussian(image, sigma_mm, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, 2)
    return prior.with_array(sitk.GetArrayFromImage(blurred), slice_thickness_matched_mm=current_thickness_mm), sigma_mm


def _write_dicom_outputs(
    result_images: dict[str, tuple[Volume, str, Sequence[str], float, float]], current: Exam, out_dir: Path, derivation: str
) -> dict[str, Path]:
    outputs = {}
    base_number = int(current.header.get("SeriesNumber") or 0)
    for i, (kind, (volume, description, image_type, wc, ww)) in enumerate(result_images.items()):
        folder = out_dir / "dicom" / kind
        if folder.exists():
            for old in folder.glob("*.dcm"):
                old.unlink()
        write_dicom_series(
            volume,
            folder,
            series_description=description[:64],
            template=current.header,
            image_type=tuple(image_type),
            window_center_hu=wc,
            window_width_hu=ww,
            derivation_description=derivation,
            series_number=base_number * 100 + 91 + i if base_number < 1000 else 9091 + i,
        )
        outputs[f"dicom_{kind}"] = folder
    return outputs


def run_pair(
    prior: Exam | Volume | str | Path,
    current: Exam | Volume | str | Path,
    out_dir: str | Path | None = None,
    *,
    case_id: str | None = None,
    config: RegistrationConfig | None = None,
    bone_labels: LabelVolume | str | Path | None = None,
    bone_label_values: Sequence[int] | None = None,
    roi_margin_mm: float = 3.0,
    kernel: KernelSpec = "adaptive",
    symmetric: bool = False,
    match_thickness: bool = True,
    qc_thresholds: QCThresholds | None = None,
    write_dicom: bool | None = None,
    save_transform: bool = True,
    prior_series_uid: str | None = None,
    current_series_uid: str | None = None,
    on_iteration: Callable[[IterationInfo], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    zscore: bool = True,
    zscore_settings: Any = None,
) -> PairResult:
    """Register a prior CT onto a current CT and make the temporal subtraction images.

    Parameters
    ----------
    prior, current : the two exams of one patient: :class:`cases.Exam`, :class:`cases.Volume`
        (HU), or a path (DICOM series folder, NIfTI, NRRD, MHA) read with ``cases.read_exam``.
    out_dir : when given, the outputs are written there (layout in the module docstring).
    case_id : identifier written into ``qc.json``.
    config : registration parameters (``RegistrationConfig()`` by default).
    bone_labels : a label map of the current exam (e.g. TotalSegmentator output) to use as bone
        instead of the threshold mask; ``LabelVolume`` or a file path.
    bone_label_values : the bone values in ``bone_labels`` (default: every non-zero label).
    roi_margin_mm : the bone mask is grown by this much to make the ROI, mm, so that lesions
        breaking through the cortex stay inside.
    kernel, symmetric : voxel-matching kernel and mode (see :func:`temporal_subtraction`).
    match_thickness : when the prior has thinner slices than the current exam, blur it along z to
        the current slice thickness before registering and subtracting
        (:func:`match_slice_thickness`).
    qc_thresholds : limits of the QC verdict.
    write_dicom : write derived DICOM series; default: when the current exam is DICOM.
    save_transform : write ``transform.h5`` (about 3 bytes x 8 per voxel of the 1.5 mm field).
    prior_series_uid, current_series_uid : series to read from DICOM folders holding several.
    on_iteration : registration progress callback (see :func:`register`).
    on_stage : called with a stage name (``"register"``, ``"warp"``, ``"bone"``, ``"subtract"``,
        ``"qc"``, ``"zscore"``, ``"write"``) when that stage starts. With ``zscore``, QC runs in a
        thread beside the z-score stage ("zscore" follows "qc" at once). With ``out_dir``, a
        background thread writes the warped prior from the end of the warp on, and makes the
        subtraction images (so "qc" follows "subtract" at once) and writes them with the ROI
        while QC and the z-score stage run.
    zscore : also compute the z-score map and lesion candidates (and write ``zmap.nii.gz``,
        ``sigma.nii.gz``, ``candidates.json``/``.csv`` and, for DICOM input, the colour overlay
        series). The shipped network is used where the pair fits its training domain, else the
        analytic error model, with a note in ``qc.json``.
    zscore_settings : a :class:`~detector.zscore_outputs.ZScoreSettings` (model, device,
        candidate rule, overlay style); None: the defaults.

    Returns
    -------
    PairResult

    Raises
    ------
    DetectorInputError, cases.ExamReadError
        Unreadable or non-CT inputs, a bone label map that does not fit the current exam, a
        request for DICOM outputs from a non-DICOM current exam. A registration that runs but
        looks wrong does not raise: it is reported by ``result.qc.status == "failed"``.
    """
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name: str) -> float:
        if on_stage is not None:
            on_stage(name)
        return time.perf_counter()

    t = time.perf_counter()
    if isinstance(prior, (str, Path)) and isinstance(current, (str, Path)):
        prior_exam, current_exam = read_exam_pair(prior, current, prior_series_uid=prior_series_uid, current_series_uid=current_series_uid)
        prior_vol, current_vol = prior_exam.volume, current_exam.volume
    else:
        prior_exam, prior_vol = _as_exam(prior, "prior", prior_series_uid)
        current_exam, current_vol = _as_exam(current, "current", current_series_uid)
    labels = _load_bone_labels(bone_labels)
    timings["load"] = time.perf_counter() - t
    if write_dicom is None:
        write_dicom = current_exam is not None and current_exam.format == "dicom"
    elif write_dicom and (current_exam is None or current_exam.format != "dicom"):
        raise DetectorInputError("write_dicom=True needs a current exam read from DICOM (its header is the template of the derived series).")
    problems, notes = header_checks(
        prior_exam.header if prior_exam else None,
        current_exam.header if current_exam else None,
        prior_exam.source if prior_exam else None,
        current_exam.source if current_exam else None,
    )

    prior_thickness = _slice_thickness_mm(prior_exam, prior_vol)
    current_thickness = _slice_thickness_mm(current_exam, current_vol)
    prior_spacing = prior_vol.spacing_mm
    blur_sigma_mm = 0.0
    if match_thickness:
        prior_vol, blur_sigma_mm = match_slice_thickness(prior_vol, prior_thickness, current_thickness)

    t = stage("register")
    # The rigid stage runs on one core (one ITK work unit, for reproducibility): meanwhile a
    # thread finds the current exam's blood pools (they do not depend on the prior) and makes
    # the prior's SimpleITK image for the warp.
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsct-ahead")
    current_pools_ahead: Future[Any] | None = None
    if labels is None:
        from cases.blood_pool import exam_pools

        current_pools_ahead = ahead.submit(exam_pools, current_vol)
    prior_image_ahead = ahead.submit(prior_vol.to_sitk)  # for the warp
    try:
        reg = register(current_vol, prior_vol, config=config, on_iteration=on_iteration)
    except BaseException:
        ahead.shutdown(wait=False, cancel_futures=True)
        raise
    timings["register"] = time.perf_counter() - t

    model_loading: threading.Thread | None = None
    if zscore:
        # The z-score network (importing torch alone takes seconds) loads in a thread while the
        # prior is warped and the bone ROI made; the z-score stage then finds it loaded.
        from .zscore_outputs import ZScoreSettings

        settings = zscore_settings if zscore_settings is not None else ZScoreSettings()
        if settings.force_model or not _spacing_rules_out_network(settings.model, current_vol.spacing_mm, prior_spacing):
            model_loading = threading.Thread(
                target=_load_zscore_model_quietly, args=(settings.model, settings.device), name="tsct-model", daemon=True
            )
            model_loading.start()

    t = stage("warp")
    # Resample only the current exam's body box; the rest of the grid is air.
    warped = reg.warp(prior_vol, default_value=_OUTSIDE_SENTINEL, outside_body_value=AIR_HU, image=prior_image_ahead.result())
    del prior_image_ahead
    outside = warped.array < AIR_HU - 0.5
    np.maximum(warped.array, AIR_HU, out=warped.array)
    timings["warp"] = time.perf_counter() - t

    writer: ThreadPoolExecutor | None = None
    images_written: list[Future[dict[str, Path]]] = []
    out: Path | None = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        qc_path = out / OUTPUT_FILES["qc"]
        for done in (out / MANIFEST_NAME, qc_path):
            if done.exists():
                done.unlink()  # re-running: the case is unfinished until the new manifest lands
        # Each image is written by a background thread as soon as it is final (SimpleITK's
        # writer and zlib release the GIL): the warped prior while the bone ROI is made (mostly
        # on one core), the subtractions and the ROI while QC and the z-map run; the z-map's
        # files join them in the write stage. The case stays unfinished until the manifest.
        writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tsct-write")
        images_written.append(writer.submit(_write_images, out, {"warped_prior": _int16_of(warped)}))

    t = stage("bone")
    current_pools = None
    if labels is not None:
        jacobian_ahead = ahead.submit(reg.jacobian_determinant)  # for QC
        bone = bone_mask(current_vol, labels=labels, label_values=bone_label_values)
    else:
        # One threshold pass over the voxel-wise maximum of both exams: bone of either exam
        # (a lytic lesion of the current exam is still bone in the warped prior).
        # Contrast blood pools are left out where they are pools in both exams: a new blastic
        # lesion in marrow looks like a pool in the current exam alone (docs/detector.md).
        # The pools are found in a thread while the threshold steps run (bone_mask calls
        # `excluded_pools` only once it needs them); then QC's Jacobian, in the same thread.
        from cases.blood_pool import pools_in_both

        assert current_pools_ahead is not None
        pools_ahead = ahead.submit(pools_in_both, current_vol, warped, current_pools=current_pools_ahead.result())
        jacobian_ahead = ahead.submit(reg.jacobian_determinant)  # for QC

        def excluded_pools() -> np.ndarray:
            nonlocal current_pools
            shared, current_only = pools_ahead.result()
            pools = shared.array != 0
            current_pools = (current_only.array != 0) & ~pools  # pools of the current exam alone (QC)
            return pools

        both = np.maximum(current_vol.array, warped.array)
        bone = bone_mask(current_vol.with_array(both), exclude=excluded_pools)
        if current_pools is None:  # bone_mask found no bone and returned before it needed them
            excluded_pools()
        del both, pools_ahead
    ahead.shutdown(wait=False)
    roi_with_outside = dilate_mask(bone, roi_margin_mm)
    del bone
    # Where the prior has no data there is nothing to subtract: those voxels leave the ROI.
    roi = roi_with_outside.with_array(np.where(outside, 0, roi_with_outside.array).astype(np.uint8))
    timings["bone"] = time.perf_counter() - t

    t = stage("subtract")
    kernel_radius = _kernel_radius(kernel, current_vol, prior_spacing)  # a malformed kernel fails here, not in a thread
    subtraction_made: Future[tuple[SubtractionImages, dict[str, Path]]] | None = None
    subtraction: SubtractionImages | None = None
    if writer is not None:
        # Nothing before the write stage reads the subtraction images: a writer thread makes
        # them beside QC and the z-map (which leave a core free much of the time), then writes
        # them with the ROI.
        assert out is not None
        subtraction_made = writer.submit(
            _subtract_and_write, current_vol, warped, roi, out, kernel=kernel_radius, prior_spacing_mm=prior_spacing, symmetric=symmetric
        )
    else:
        subtraction = temporal_subtraction(
            current_vol, warped, bone_roi=roi, kernel=kernel_radius, prior_spacing_mm=prior_spacing, symmetric=symmetric
        )
    timings["subtract"] = time.perf_counter() - t

    stage("qc")  # with the z-score stage, QC runs beside it (below)
    registration_info = {
        "rigid": reg.rigid_parameters(),
        "stages": [
            {
                "name": s.name,
                "elapsed_s": s.elapsed_s,
                "n_iterations": list(s.n_iterations),
                "final_metric": s.final_metric,
                "stop_condition": s.stop_condition,
            }
            for s in reg.stages
        ],
        "config": reg.config.to_dict(),
        "voxel_matching_kernel_xyz": [2 * r + 1 for r in kernel_radius],
        "slice_thickness_mm": {"prior": prior_thickness, "current": current_thickness},
        "prior_z_blur_sigma_mm": blur_sigma_mm,
    }

    def assess(roi_with_outside: LabelVolume, outside: np.ndarray, current_pools: np.ndarray | None) -> QCReport:
        started = time.perf_counter()
        report = assess_registration(
            current_vol,
            warped,
            roi_with_outside,  # overlap is measured before voxels outside the prior left the ROI
            outside_fov=outside,
            jacobian=jacobian_ahead.result(),
            rigid_parameters=reg.rigid_parameters(),
            header_problems=problems,
            header_warnings=notes,
            registration=registration_info,
            inputs={"prior": _describe(prior_exam, prior_vol), "current": _describe(current_exam, current_vol)},
            thresholds=qc_thresholds,
            case_id=case_id,
            blood_pool=current_pools,
        )
        timings["qc"] = time.perf_counter() - started
        return report

    zscore_result = None
    if not zscore:
        qc = assess(roi_with_outside, outside, current_pools)
    else:
        from .zscore_outputs import zscore_stage

        # QC and the z-map read the same images and change none: QC runs in a thread beside the
        # z-map stage, which uses one core for most of its time.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsct-qc") as qc_thread:
            qc_done = qc_thread.submit(assess, roi_with_outside, outside, current_pools)
            t = stage("zscore")
            if model_loading is not None:
                model_loading.join()
            zscore_result = zscore_stage(current_vol, warped, roi, None, settings=zscore_settings, prior_spacing_mm=prior_spacing, case_id=case_id)
            qc = qc_done.result()
        qc = QCReport(
            status=qc.status,
            messages=qc.messages,
            metrics=qc.metrics,
            thresholds=qc.thresholds,
            registration=qc.registration,
            inputs=qc.inputs,
            case_id=qc.case_id,
            zscore=zscore_result.qc_entry(),
        )
        timings["zscore"] = time.perf_counter() - t
    del roi_with_outside, outside, current_pools

    outputs: dict[str, Path] = {}
    if out_dir is not None:
        assert writer is not None and out is not None
        t = stage("write")
        zscore_written: list[Future[dict[str, Path]]] = []
        if zscore_result is not None:
            from .zscore_outputs import zscore_file_jobs

            # one job per file, on the writer's two threads
            zscore_written = [writer.submit(job) for job in zscore_file_jobs(zscore_result, current_vol, out)]
        transform_path = reg.save(out / OUTPUT_FILES["transform"]) if save_transform else None
        writer.shutdown(wait=True)
        for done_images in images_written:
            outputs.update(done_images.result())
        assert subtraction_made is not None
        subtraction, subtraction_files = subtraction_made.result()
        outputs.update(subtraction_files)
        if transform_path is not None:
            outputs["transform"] = transform_path
        for done_files in zscore_written:
            outputs.update(done_files.result())
        timings["write_nifti"] = time.perf_counter() - t
        if write_dicom:
            t = time.perf_counter()
            assert current_exam is not None
            prior_date = prior_exam.header.get("StudyDate") if prior_exam is not None else None
            since = f" vs prior {prior_date}" if prior_date else ""
            kernel_txt = "x".join(map(str, subtraction.kernel_size_vox))
            derivation = (
                "TSCT detector: prior CT registered to this exam (rigid + "
                f"{reg.config.deformable.replace('_', ' ')}), temporal subtraction in bone. Research use only; not for diagnosis."
            )
            outputs.update(
                _write_dicom_outputs(
                    {
                        "warped_prior": (_int16(warped), f"TSCT warped prior{since}", ("DERIVED", "SECONDARY", "REGISTERED"), 400.0, 1800.0),
                        "subtraction": (_int16(subtraction.plain), f"TSCT subtraction{since}", ("DERIVED", "SECONDARY", "SUBTRACTION"), 0.0, 500.0),
                        "subtraction_vm": (
                            _int16(subtraction.voxel_matched),
                            f"TSCT subtraction VM {kernel_txt}{since}",
                            ("DERIVED", "SECONDARY", "SUBTRACTION"),
                            0.0,
                            500.0,
                        ),
                    },
                    current_exam,
                    out,
                    derivation,
                )
            )
            if zscore_result is not None:
                from .zscore_outputs import write_zscore_files

                base_number = int(current_exam.header.get("SeriesNumber") or 0)
                outputs.update(
                    write_zscore_files(
                        zscore_result,
                        current_vol,
                        out,
                        style=getattr(zscore_settings, "style", None),
                        dicom_template=current_exam.header,
                        series_number=base_number * 100 + 99 if base_number < 1000 else 9099,
                        nifti=False,
                    )
                )
            timings["write_dicom"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        qc_final = QCReport(
            status=qc.status,
            messages=qc.messages,
            metrics=qc.metrics,
            thresholds=qc.thresholds,
            registration={**qc.registration, "timings_s": dict(timings)},
            inputs=qc.inputs,
            case_id=qc.case_id,
            zscore=qc.zscore,
        )
        outputs["qc"] = qc_final.write_json(qc_path)
        qc = qc_final
        write_case_outputs(
            out,
            outputs,
            grid=current_vol.grid,
            case_id=case_id,
            qc_status=qc.status,
            model=_model_record(zscore_result),
            exams={
                "prior": (prior_exam.source if prior_exam is not None else None, prior_vol.grid),
                "current": (current_exam.source if current_exam is not None else None, current_vol.grid),
            },
        )
    timings["total"] = time.perf_counter() - t_all
    assert subtraction is not None
    return PairResult(
        registration=reg,
        warped_prior=warped,
        subtraction=subtraction,
        bone_roi=roi,
        qc=qc,
        timings_s=timings,
        outputs=outputs,
        case_id=case_id,
        zscore=zscore_result,
    )


def _model_record(zscore_result: Any) -> ModelRecord | None:
    """The z-score model of a case for its manifest (None without the z-score stage)."""
    if zscore_result is None:
        return None
    zm = zscore_result.zmap
    if zm.method != "network":
        return ModelRecord(method=str(zm.method))
    return ModelRecord("network", zm.parameters.get("model_name"), zm.model_version, zm.parameters.get("model_sha256"))


def _case_finished(case_dir: Path) -> str | None:
    """The QC status of a finished case folder (its ``outputs.json`` is there), or None if it is not finished."""
    return case_outputs_status(case_dir)


def run_case_list(
    case_list: CaseList | str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = False,
    on_case: Callable[[str, str], None] | None = None,
    **pair_options: Any,
) -> BatchResult:
    """Run :func:`run_pair` on every case of a case list, into ``<out_dir>/<case_id>/``.

    Parameters
    ----------
    case_list : a :class:`cases.CaseList` or the path of a case-list CSV.
    out_dir : batch output folder.
    overwrite : re-run cases that are already finished (``outputs.json`` present).
    progress : show a progress bar (rich) with the current case and stage.
    on_case : called as ``on_case(case_id, outcome)`` with outcome ``"completed"``,
        ``"skipped"`` or ``"error"`` after each case.
    **pair_options : passed to :func:`run_pair` (config, kernel, ...).

    Returns
    -------
    BatchResult
        Also written to ``<out_dir>/batch_report.json``. A case that raises does not stop the
        batch: its message lands in ``failed`` and in ``<out_dir>/<case_id>/error.txt``.
    """
    if not isinstance(case_list, CaseList):
        case_list = read_case_list(case_list)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    completed: list[str] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    qc_status: dict[str, str] = {}
    start = time.perf_counter()

    bar = None
    task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("cases", total=len(case_list))
    try:
        for case in case_list:
            case_dir = out / case.case_id
            status = None if overwrite else _case_finished(case_dir)
            if status is not None:
                skipped.append(case.case_id)
                qc_status[case.case_id] = status
                outcome = "skipped"
            else:

                def _stage(name: str, cid: str = case.case_id) -> None:
                    if bar is not None:
                        bar.update(task, description=f"{cid}: {name}")  # type: ignore[arg-type]

                try:
                    result = run_pair(case.prior, case.current, case_dir, case_id=case.case_id, on_stage=_stage, **pair_options)
                except Exception as exc:  # noqa: BLE001 - one bad case must not stop the batch
                    message = f"{type(exc).__name__}: {exc}"
                    failed[case.case_id] = message
                    case_dir.mkdir(parents=True, exist_ok=True)
                    (case_dir / "error.txt").write_text(message + "\n\n" + traceback.format_exc(), encoding="utf-8")
                    outcome = "error"
                else:
                    completed.append(case.case_id)
                    qc_status[case.case_id] = result.qc.status
                    err = case_dir / "error.txt"
                    if err.exists():
                        err.unlink()
                    outcome = "completed"
                    del result
            if on_case is not None:
                on_case(case.case_id, outcome)
            if bar is not None:
                bar.advance(task)  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.stop()
    batch = BatchResult(
        out_dir=out,
        completed=tuple(completed),
        skipped=tuple(skipped),
        failed=failed,
        qc_status=qc_status,
        elapsed_s=time.perf_counter() - start,
    )
    report = {
        "case_list": str(case_list.source) if case_list.source else None,
        "completed": list(batch.completed),
        "skipped": list(batch.skipped),
        "failed": batch.failed,
        "qc_status": batch.qc_status,
        "elapsed_s": round(batch.elapsed_s, 3),
    }
    (out / "batch_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return batch
