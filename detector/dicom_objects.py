"""Standard DICOM objects of a detector case, made with highdicom, for a PACS and its viewers.

A case folder written by ``tsct detect`` (``bone_roi.nii.gz``, ``zmap.nii.gz``,
``candidates.json``) and the current exam's DICOM series become, in the current exam's study
and frame of reference (Study/Frame of Reference UIDs, patient module and the referenced CT
instances are taken from the current exam's own headers):

``SEG.dcm``        a binary **Segmentation**: segment 1 the bone ROI, then one segment per
                   candidate ("Candidate 3 (lytic)"), each with category/type codes and the
                   detector as the segmentation algorithm;
``PM.dcm``         a **Parametric Map** of the z-map: 32-bit float frames, real-world value
                   mapping "z-score" (DCM 113071, UCUM "1"), 0 outside the bone ROI;
``SR.dcm``         a **Comprehensive 3D SR** holding a TID 1500 Measurement Report: per candidate a
                   TID 1411 volumetric group with its centre as an SCOORD3D POINT, its volume
                   (mm³), its peak |score|, mean HU change and its polarity (lytic/blastic);
``overlay/``       the colour overlay series for plain viewers (RGB Secondary Capture, one
                   instance per slice; :func:`detector.overlay.write_overlay_dicom`).

Candidate regions: a case folder with ``candidate_labels.nii.gz`` (integer label = candidate_id
on the current grid) gives the detector's regions as they are. Otherwise (``candidates.json``
stores each candidate's centre, peak and size, not its voxels) :func:`candidate_label_array`
rebuilds them from the saved z-map with the recorded rule (matched-filter score divided by the
recorded robust spread, the hysteresis thresholds, 26-connectivity inside the bone ROI) and keeps,
for each candidate, the rebuilt region that holds its peak voxel; where there is none, a sphere of
the candidate's volume around its centre inside the bone ROI. The detector scores candidates on
the native-resolution z (``ZMap.z_native``) inside a slightly smaller ROI, which the case folder
does not keep, so a rebuilt region can differ from the detector's by some voxels: every segment
whose voxel count is not the candidate's ``n_voxels`` says "(approximate)" in its label, and the
command prints their IDs.

Every object is written atomically (temporary name, then rename) and passes ``dciodvfy``
(see docs/dicom-objects.md and tests/detector/test_dicom_objects.py).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import DetectorInputError

__all__ = [
    "POLARITY_CODES",
    "POLARITY_NAME",
    "TSCT_SCHEME",
    "SourceExam",
    "candidate_label_array",
    "export_case_dicom",
    "make_candidate_report",
    "make_parametric_map",
    "make_segmentation",
    "read_source_exam",
    "save_dataset",
]

#: Coding scheme designator of the project's own (private) codes; "99" prefix = local scheme.
TSCT_SCHEME = "99TSCT"
MANUFACTURER = "TSCT"
#: Optional file of a case folder with the detector's candidate regions (label = candidate_id).
CANDIDATE_LABELS_FILE = "candidate_labels.nii.gz"
MODEL_NAME = "TSCT temporal-subtraction detector"
DEVICE_SERIAL = "0"


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("tsct")
    except Exception:  # noqa: BLE001 - not installed as a distribution (run from a checkout)
        return "0.1.0"


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    return {
        "polarity_name": CodedConcept("POLARITY", TSCT_SCHEME, "Density change polarity"),
        "blastic": CodedConcept("BLASTIC", TSCT_SCHEME, "Density increase (blastic)"),
        "lytic": CodedConcept("LYTIC", TSCT_SCHEME, "Density decrease (lytic)"),
        "peak_score": CodedConcept("PEAKSCORE", TSCT_SCHEME, "Peak absolute candidate score"),
        "mean_change": CodedConcept("MEANCHANGE", TSCT_SCHEME, "Mean HU change since prior"),
        "n_candidates": CodedConcept("NCAND", TSCT_SCHEME, "Number of lesion candidates"),
        "procedure": CodedConcept("TSCT", TSCT_SCHEME, "Temporal subtraction CT bone lesion detection"),
        "lesion": codes.SCT.Lesion,
        "abnormal": codes.SCT.MorphologicallyAbnormalStructure,
        "anatomical": codes.SCT.AnatomicalStructure,
        "bone": codes.SCT.Bone,
        "volume": codes.SCT.Volume,
        "zscore": codes.DCM.ZScore,
        "mm3": codes.UCUM.CubicMillimeter,
        "hu": codes.UCUM.HounsfieldUnit,
        "unity": codes.UCUM.NoUnits,
    }


#: Polarity values in the SR (code value in :data:`TSCT_SCHEME`).
POLARITY_CODES: dict[str, str] = {"blastic": "BLASTIC", "lytic": "LYTIC"}
POLARITY_NAME = "POLARITY"


@dataclass
class SourceExam:
    """The current exam: its volume (HU; slice k = ``datasets[k]`` unless the series was resampled for gantry
    tilt or uneven spacing, see :func:`_grid_geometry`) and its DICOM headers."""

    volume: Any  # cases.Volume
    datasets: list[Any]  # pydicom Datasets, headers only
    folder: Path

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)

    @property
    def series_number(self) -> int:
        return int(self.datasets[0].get("SeriesNumber") or 0)

    def header(self) -> dict[str, Any]:
        from cases.dicom import header_summary

        return header_summary(self.datasets[0])


# Type 2 attributes of the patient and study modules that highdicom copies from the source images.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def read_source_exam(folder: str | Path, *, series_uid: str | None = None) -> SourceExam:
    """Read the current exam's series (volume and headers), refusing what cannot be referenced.

    Raises
    ------
    DetectorInputError
        The folder is not a DICOM series or its headers lack the Study/Frame of Reference UIDs.
    """
    import pydicom

    from cases import ExamReadError, read_exam

    folder = Path(folder)
    try:
        exam = read_exam(folder, series_uid=series_uid)
    except ExamReadError as exc:
        raise DetectorInputError(str(exc)) from None
    if exam.format != "dicom":
        raise DetectorInputError(
            f"{folder}: the current exam must be a DICOM series folder (derived objects reference its instances), not {exam.format}."
        )
    datasets = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in exam.files]
    for path, ds in zip(exam.files, datasets):
        # anonymised series often drop type 2 patient/study attributes (the GE series of the tests has no
        # PatientBirthDate): present but empty is what the derived objects' modules need
        for key in _TYPE2_COPIED:
            if key not in ds:
                setattr(ds, key, "")
        if (
            str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
            and not ds.get("DeidentificationMethod")
            and not ds.get("DeidentificationMethodCodeSequence")
        ):
            ds.DeidentificationMethod = "not stated in the source series"  # type 1C once identity is removed
        # some anonymisers blank SOP Class/Instance UID in the data set and keep them in the file
        # meta information: references need them, so take them from there
        meta = getattr(ds, "file_meta", None)
        for key, meta_key in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not ds.get(key) and meta is not None and meta.get(meta_key):
                setattr(ds, key, meta.get(meta_key))
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID", "SOPClassUID"):
            if not ds.get(key):
                raise DetectorInputError(
                    f"{path}: no {key}; derived objects cannot be placed in this exam's study. Export the series with its full header."
                )
    return SourceExam(volume=exam.volume, datasets=datasets, folder=folder)


# ---------------------------------------------------------------------------------------------
def _sphere(shape: tuple[int, int, int], centre_zyx: np.ndarray, radius_mm: float, spacing_zyx: np.ndarray) -> np.ndarray:
    """Boolean array of ``shape``: voxels within ``radius_mm`` of ``centre_zyx`` (computed in a local box)."""
    out = np.zeros(shape, dtype=bool)
    lo = [max(0, int(np.floor(centre_zyx[a] - radius_mm / spacing_zyx[a]))) for a in range(3)]
    hi = [min(shape[a], int(np.ceil(centre_zyx[a] + radius_mm / spacing_zyx[a])) + 1) for a in range(3)]
    if any(h <= l for l, h in zip(lo, hi)):
        return out
    idx = np.indices([h - l for l, h in zip(lo, hi)], dtype=np.float32)
    d2 = sum(((idx[a] + lo[a] - centre_zyx[a]) * spacing_zyx[a]) ** 2 for a in range(3))
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = d2 <= radius_mm**2
    return out


def candidate_label_array(zmap: Any, bone_roi: np.ndarray, candidates: Any, *, rescore: bool = True) -> tuple[np.ndarray, set[int]]:
    """Voxels of each candidate, rebuilt from the saved z-map: int32 labels (candidate_id, 0 = none).

    Parameters
    ----------
    zmap : the case's z-map (``cases.Volume``) on the current grid.
    bone_roi : boolean array of the bone ROI, same shape.
    candidates : the case's :class:`detector.candidates.CandidateSet` (with its ``parameters``).
    rescore : apply the recorded matched filter to ``zmap`` first (True), or take ``zmap`` as
        the very score the candidates were found on (False: with the detector's own score and
        candidate ROI the regions are the detector's, voxel for voxel).

    Returns
    -------
    labels, approximate : the label array and the IDs of candidates whose region is not the
    detector's own voxel for voxel: rebuilt with another voxel count, or drawn as a sphere
    (see the module notes).
    """
    from scipy import ndimage as ndi

    from ._geometry import mask_bounding_box
    from .candidates import matched_filter_score

    roi = np.asarray(bone_roi, dtype=bool)
    labels = np.zeros(zmap.shape, dtype=np.int32)
    approximate: set[int] = set()
    if len(candidates) == 0:
        return labels, approximate
    params = candidates.parameters
    score = zmap
    if rescore and params.get("matched_filter_mm"):
        recorded_sd = params.get("matched_filter_robust_sd")
        score = matched_filter_score(zmap, roi, sigma_mm=float(params["matched_filter_mm"]), renormalise=not recorded_sd)
        if recorded_sd:  # the detector's own spread (measured on its candidate ROI), not one re-measured here
            score = score.with_array(score.array / np.float32(recorded_sd))
    arr = np.asarray(score.array, dtype=np.float32)
    thr = float(params.get("threshold", 4.0))
    low = params.get("low_threshold")
    low = thr if low is None else float(low)
    spacing_zyx = np.asarray(zmap.spacing_mm[::-1], dtype=float)
    # label within the ROI's bounding box only (as find_candidates does): seconds saved per clinical exam
    box = mask_bounding_box(roi) or tuple(slice(0, 0) for _ in range(3))
    offset = np.asarray([b.start for b in box])
    sub_labels = labels[box]  # a view: writing into it writes into labels
    comps: dict[str, tuple[np.ndarray, list[Any]]] = {}
    arr_box = np.nan_to_num(arr[box])
    for polarity, sign in (("blastic", 1.0), ("lytic", -1.0)):
        lab_arr, _ = ndi.label((arr_box * np.float32(sign) >= low) & roi[box], structure=np.ones((3, 3, 3), dtype=bool))
        comps[polarity] = (lab_arr, ndi.find_objects(lab_arr))
    used: set[tuple[str, int]] = set()
    for cand in candidates:
        lab_arr, objects = comps[cand.polarity]
        peak = np.rint(zmap.point_to_index(cand.peak_mm)).astype(int)[::-1] - offset
        lab = 0
        if all(0 <= peak[a] < lab_arr.shape[a] for a in range(3)):
            lab = int(lab_arr[tuple(peak)])
        if lab and (cand.polarity, lab) not in used:
            used.add((cand.polarity, lab))
            sl = objects[lab - 1]
            region = (lab_arr[sl] == lab) & (sub_labels[sl] == 0)
            sub_labels[sl][region] = cand.candidate_id
            if int(region.sum()) != int(cand.n_voxels):
                approximate.add(int(cand.candidate_id))
            continue
        centre = zmap.point_to_index(cand.center_mm)[::-1]
        radius = (3.0 * float(cand.volume_mm3) / (4.0 * math.pi)) ** (1.0 / 3.0)
        sphere = _sphere(zmap.shape, np.asarray(centre, dtype=float), max(radius, float(spacing_zyx.max())), spacing_zyx) & roi & (labels == 0)
        labels[sphere] = cand.candidate_id
        approximate.add(int(cand.candidate_id))
    return labels, approximate


def _algorithm(version: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(name="TSCT detector", family=codes.cid7162.ArtificialIntelligence, version=version)


def make_segmentation(
    source: SourceExam,
    bone_roi: np.ndarray,
    candidate_labels: np.ndarray,
    candidates: Any,
    *,
    approximate: set[int] | None = None,
    series_number: int | None = None,
) -> Any:
    """A binary DICOM Segmentation: segment 1 = bone ROI, segment k+1 = candidate k.

    ``bone_roi`` and ``candidate_labels`` are arrays of the current exam's shape (slice, row,
    column) in the order of ``source.datasets``.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    c = _codes()
    version = _software_version()
    shape = source.volume.shape
    for name, arr in (("bone ROI", bone_roi), ("candidate labels", candidate_labels)):
        if tuple(arr.shape) != tuple(shape):
            raise DetectorInputError(
                f"The {name} has shape {tuple(arr.shape)}, the current exam {tuple(shape)}; it must be on the current exam's grid."
            )
    approximate = approximate or set()
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="Bone ROI",
            segmented_property_category=c["anatomical"],
            segmented_property_type=c["bone"],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(version),
            tracking_uid=generate_uid(),
            tracking_id="Bone ROI",
        )
    ]
    # one dense uint8 array, filled in place (no per-segment copies): segment 1 the ROI, then each
    # candidate within its own bounding box
    from scipy import ndimage as ndi

    cand_list = list(candidates)
    pixels = np.zeros(tuple(shape) + (1 + len(cand_list),), dtype=np.uint8)
    pixels[..., 0] = np.asarray(bone_roi, dtype=bool)
    labels_arr = np.asarray(candidate_labels)
    boxes = ndi.find_objects(labels_arr.astype(np.int32, copy=False)) if labels_arr.any() else []
    for i, cand in enumerate(cand_list, start=2):
        extra = " (approximate)" if cand.candidate_id in approximate else ""
        label = f"Candidate {cand.candidate_id} ({cand.polarity}){extra}"
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=i,
                segment_label=label[:64],
                segmented_property_category=c["abnormal"],
                segmented_property_type=c["lesion"],
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=_algorithm(version),
                tracking_uid=generate_uid(),
                tracking_id=f"Candidate {cand.candidate_id}",
                anatomic_regions=[c["bone"]],
            )
        )
        cid = int(cand.candidate_id)
        box = boxes[cid - 1] if 0 < cid <= len(boxes) else None
        if box is not None:
            pixels[box + (i - 1,)] = labels_arr[box] == cid
    return hd.seg.Segmentation(
        source_images=source.datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=series_number or _series_number(source, 91),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=version,
        device_serial_number=DEVICE_SERIAL,
        series_description="TSCT bone ROI and candidates (research)",
        content_label="TSCT_SEG",
        content_description="Bone ROI and lesion candidates (research use, not for diagnosis)",
        omit_empty_frames=False,
        **_grid_geometry(source),
    )


def _grid_geometry(source: SourceExam) -> dict[str, Any]:
    """Plane positions, orientation and pixel measures of the volume's grid, for a SEG or Parametric Map whose
    frames are not the source instances: a series read with gantry tilt or uneven spacing is resampled by
    ``cases.read_exam`` onto an orthogonal grid, and its slices then lie between and across the instances.
    Empty when slice k of the volume is instance k (highdicom then takes the geometry from the instances)."""
    import highdicom as hd

    vol = source.volume
    d = vol.direction_matrix
    nz = vol.shape[0]
    positions = [vol.index_to_point_mm((0.0, 0.0, float(k))) for k in range(nz)]
    if nz == len(source.datasets):
        same = all(
            np.allclose(np.asarray(ds.ImagePositionPatient, float), pos, atol=1e-3)
            and np.allclose(np.asarray(ds.ImageOrientationPatient, float), np.concatenate([d[:, 0], d[:, 1]]), atol=1e-4)
            for ds, pos in zip(source.datasets, positions)
            if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
        )
        if same:
            return {}
    sx, sy, sz = (float(v) for v in vol.spacing_mm)
    return {
        "plane_orientation": hd.PlaneOrientationSequence(
            coordinate_system="PATIENT", image_orientation=[float(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
        ),
        "plane_positions": [hd.PlanePositionSequence(coordinate_system="PATIENT", image_position=[float(v) for v in pos]) for pos in positions],
        "pixel_measures": hd.PixelMeasuresSequence(pixel_spacing=[sy, sx], slice_thickness=sz, spacing_between_slices=sz),
    }


def _series_number(source: SourceExam, suffix: int) -> int:
    base = source.series_number
    return base * 100 + suffix if 0 < base < 1000 else 9000 + suffix


def make_parametric_map(source: SourceExam, zmap: np.ndarray, *, series_number: int | None = None, method: str = "") -> Any:
    """A DICOM Parametric Map of the z-map (32-bit float frames, value = z-score, 0 outside the ROI)."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    c = _codes()
    z = np.nan_to_num(np.asarray(zmap, dtype=np.float32))
    if tuple(z.shape) != tuple(source.volume.shape):
        raise DetectorInputError(
            f"The z-map has shape {tuple(z.shape)}, the current exam {tuple(source.volume.shape)}; it must be on the current exam's grid."
        )
    lo, hi = float(z.min()), float(z.max())
    if lo == hi:
        hi = lo + 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ZSCORE",
        lut_explanation=f"Temporal subtraction z-score{(' (' + method + ')') if method else ''}"[:64],
        unit=c["unity"],
        value_range=(lo, hi),
        slope=1.0,
        intercept=0.0,
        quantity_definition=c["zscore"],
    )
    pm = hd.pm.ParametricMap(
        source_images=source.datasets,
        pixel_array=z,
        series_instance_uid=generate_uid(),
        series_number=series_number or _series_number(source, 92),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=_software_version(),
        device_serial_number=DEVICE_SERIAL,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.0, window_width=16.0)],
        series_description="TSCT z-score map (research)",
        content_label="TSCT_ZMAP",
        content_description="Temporal subtraction z-score (research use, not for diagnosis)",
        **_grid_geometry(source),
    )
    _copy_laterality(source, pm)
    return pm


def _copy_laterality(source: SourceExam, ds: Any) -> None:
    """General Series Laterality is type 2C (needed when the image has no Image Laterality): copy or leave empty."""
    if "Laterality" not in ds and "ImageLaterality" not in ds:
        ds.Laterality = source.datasets[0].get("Laterality", "")


def make_candidate_report(source: SourceExam, candidates: Any, *, series_number: int | None = None) -> Any:
    """A Comprehensive 3D SR with a TID 1500 Measurement Report of the candidates."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    c = _codes()
    version = _software_version()
    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="TSCT detector", manufacturer_name=MANUFACTURER, model_name=MODEL_NAME
        ),
    )
    groups = []
    series = hd.sr.SourceSeriesForSegmentation(str(source.datasets[0].SeriesInstanceUID))
    algo = hd.sr.AlgorithmIdentification(name="TSCT detector", version=version)
    for cand in candidates:
        measurements = [
            hd.sr.Measurement(name=c["volume"], value=float(cand.volume_mm3), unit=c["mm3"]),
            hd.sr.Measurement(name=c["peak_score"], value=float(cand.peak_abs_score), unit=c["unity"], algorithm_id=algo),
        ]
        if cand.mean_change_hu is not None:
            measurements.append(hd.sr.Measurement(name=c["mean_change"], value=float(cand.mean_change_hu), unit=c["hu"]))
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"Candidate {cand.candidate_id}"),
                referenced_volume_surface=hd.sr.VolumeSurface(
                    graphic_type=hd.sr.GraphicTypeValues3D.POINT,
                    graphic_data=np.asarray([cand.center_mm], dtype=float),
                    frame_of_reference_uid=source.frame_of_reference_uid,
                    source_series=series,
                ),
                finding_type=c["lesion"],
                finding_sites=[hd.sr.FindingSite(c["bone"])],
                algorithm_id=algo,
                measurements=measurements,
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=c["polarity_name"], value=c[cand.polarity])],
            )
        )
    # TID 1500 needs at least one measurement group: an exam-level TID 1501 group with the counts
    # comes first, so a case without candidates still gives a valid report ("0 candidates").
    summary = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Candidate count"),
        algorithm_id=algo,
        measurements=[
            hd.sr.Measurement(name=c["n_candidates"], value=float(len(candidates)), unit=c["unity"]),
            *[
                hd.sr.Measurement(name=c["n_candidates"], value=float(len(candidates.by_polarity(pol))), unit=c["unity"], qualifier=c[pol])
                for pol in ("blastic", "lytic")
            ],
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=c["procedure"],
        imaging_measurements=[summary, *groups],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=source.datasets,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=series_number or _series_number(source, 93),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        series_description="TSCT candidates report (research)",
    )


def save_dataset(ds: Any, path: str | Path) -> Path:
    """Write a dataset atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.save_as(tmp, enforce_file_format=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class ExportedObjects:
    """Paths of the objects written by :func:`export_case_dicom`, and notes for the user."""

    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def export_case_dicom(
    case_dir: str | Path,
    current_dicom: str | Path,
    out_dir: str | Path,
    *,
    series_uid: str | None = None,
    overlay: bool = True,
    objects: Sequence[str] = ("seg", "pm", "sr", "overlay"),
) -> ExportedObjects:
    """Write the SEG, PM, SR and overlay series of one detector case folder into ``out_dir``.

    Parameters
    ----------
    case_dir : a case folder written by ``tsct detect`` (needs ``bone_roi.nii.gz``,
        ``zmap.nii.gz`` and ``candidates.json``).
    current_dicom : the current exam's DICOM series folder (the one the case was run on).
    out_dir : created if needed; ``SEG.dcm``, ``PM.dcm``, ``SR.dcm`` and ``overlay/``.
    series_uid : the current series when the folder holds several.
    objects : which of ``seg``, ``pm``, ``sr``, ``overlay`` to write.
    """
    from cases import read_volume

    from .candidates import CandidateSet
    from .overlay import write_overlay_dicom

    case_dir = Path(case_dir)
    unknown = set(objects) - {"seg", "pm", "sr", "overlay"}
    if unknown:
        raise DetectorInputError(f"Unknown object(s) {', '.join(sorted(unknown))}; choose from seg, pm, sr, overlay.")
    if not overlay:
        objects = [o for o in objects if o != "overlay"]
    needed = {"bone_roi.nii.gz": ("seg",), "zmap.nii.gz": ("seg", "pm", "overlay"), "candidates.json": ("seg", "sr")}
    for name, users in needed.items():
        if set(users) & set(objects) and not (case_dir / name).is_file():
            raise DetectorInputError(f"{case_dir / name}: not found. Point to a case folder written by 'tsct detect' with the z-score stage on.")
    source = read_source_exam(current_dicom, series_uid=series_uid)
    grid = source.volume
    result = ExportedObjects()
    zmap = roi = cands = None
    if {"seg", "pm", "overlay"} & set(objects):
        zmap = read_volume(case_dir / "zmap.nii.gz")
        if not zmap.same_space(grid):
            raise DetectorInputError(
                f"{case_dir / 'zmap.nii.gz'} is not on the grid of the current exam {current_dicom}; give the current exam this case was run on."
            )
    if "seg" in objects:
        roi_vol = read_volume(case_dir / "bone_roi.nii.gz")
        if not roi_vol.same_space(grid):
            raise DetectorInputError(f"{case_dir / 'bone_roi.nii.gz'} is not on the grid of the current exam {current_dicom}.")
        roi = roi_vol.array != 0
    if {"seg", "sr"} & set(objects):
        cands = CandidateSet.read_json(case_dir / "candidates.json")
    out = Path(out_dir)
    if "seg" in objects:
        labels_path = case_dir / CANDIDATE_LABELS_FILE
        if labels_path.is_file():
            lab_vol = read_volume(labels_path)
            if not lab_vol.same_space(grid):
                raise DetectorInputError(f"{labels_path} is not on the grid of the current exam {current_dicom}.")
            labels, approx = np.rint(lab_vol.array).astype(np.int32), set()
        else:
            labels, approx = candidate_label_array(zmap, roi, cands)
        if approx:
            result.notes.append(
                f"{len(approx)} of {len(cands)} candidate region(s) rebuilt from the saved z-map differ from the detector's voxel count "
                f"(segment label '(approximate)'): {sorted(approx)}"
            )
        result.paths["seg"] = save_dataset(make_segmentation(source, roi, labels, cands, approximate=approx), out / "SEG.dcm")
    if "pm" in objects:
        result.paths["pm"] = save_dataset(make_parametric_map(source, zmap.array), out / "PM.dcm")
    if "sr" in objects:
        result.paths["sr"] = save_dataset(make_candidate_report(source, cands), out / "SR.dcm")
    if "overlay" in objects:
        write_overlay_dicom(grid, zmap, out / "overlay", template=source.header(), series_number=_series_number(source, 94))
        result.paths["overlay"] = out / "overlay"
    return result
