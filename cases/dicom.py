"""DICOM series in and out: reading a CT series into a :class:`Volume` and writing volumes back.

Reading uses SimpleITK/GDCM to find the series in a folder and to order its files by Image
Position (Patient) along the slice normal, never by file name or InstanceNumber; pydicom reads
the headers to check the series before the pixels are loaded (missing slices, uneven spacing,
modality, rescale). Writing uses pydicom: one CT Image Storage instance per slice, signed 16-bit
HU (rescale slope 1, intercept 0), new SOP instance UIDs, and patient/study/frame-of-reference
attributes taken from a template exam when one is given (derived series land in the same study).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .volume import Volume

__all__ = [
    "DicomSeriesInfo",
    "ExamReadError",
    "header_summary",
    "list_dicom_series",
    "read_dicom_series",
    "write_dicom_series",
]

#: Relative tolerance on the spacing between consecutive slices before the series is refused.
SLICE_SPACING_TOLERANCE = 0.05


class ExamReadError(ValueError):
    """An exam cannot be read as a CT volume; the message names the file and what to fix."""


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One DICOM series found in a folder."""

    series_instance_uid: str
    n_files: int
    series_description: str = ""
    modality: str = ""
    first_file: Path | None = None

    def __str__(self) -> str:
        return f"{self.series_instance_uid} ({self.modality or '?'}, {self.n_files} files, '{self.series_description}')"


def _header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several unrelated types for bad files
        raise ExamReadError(f"{path}: not a readable DICOM file ({exc}). Remove it from the folder or replace it with an intact copy.") from None


def list_dicom_series(folder: Path) -> list[DicomSeriesInfo]:
    """The DICOM series in ``folder`` (not recursive), with descriptions for choosing one."""
    folder = Path(folder)
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    infos = []
    for uid in series_ids:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        ds = _header(Path(files[0])) if files else None
        infos.append(
            DicomSeriesInfo(
                series_instance_uid=uid,
                n_files=len(files),
                series_description=str(getattr(ds, "SeriesDescription", "")) if ds else "",
                modality=str(getattr(ds, "Modality", "")) if ds else "",
                first_file=Path(files[0]) if files else None,
            )
        )
    return infos


def _non_dicom_files(folder: Path) -> list[Path]:
    bad = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:
            bad.append(path)
    return bad


def read_dicom_series(folder: Path, *, series_uid: str | None = None) -> tuple[Volume, dict[str, Any], list[Path]]:
    """Read one CT series from a folder into a volume in HU.

    Returns the volume, a dict of the first slice's key header attributes, and the ordered files.

    Raises
    ------
    ExamReadError
        No series or non-DICOM files only; several series and none chosen; unknown
        ``series_uid``; unreadable slices; missing slices or uneven spacing beyond
        ``SLICE_SPACING_TOLERANCE``; a single-slice (2-D) series; values that cannot be HU.
    """
    folder = Path(folder)
    series = list_dicom_series(folder)
    if not series:
        bad = _non_dicom_files(folder)
        detail = f" {len(bad)} file(s) are not DICOM, e.g. {bad[0].name}." if bad else " The folder holds no files."
        raise ExamReadError(f"{folder}: no DICOM series found.{detail} Point to the folder that holds the exam's .dcm files.")
    if series_uid is None:
        if len(series) > 1:
            listing = "\n".join(f"  - {s}" for s in series)
            raise ExamReadError(
                f"{folder} holds {len(series)} DICOM series; choose one by SeriesInstanceUID "
                f"(--series-uid, or 'prior_series_uid' in code):\n{listing}"
            )
        chosen = series[0]
    else:
        matches = [s for s in series if s.series_instance_uid == series_uid]
        if not matches:
            listing = "\n".join(f"  - {s}" for s in series)
            raise ExamReadError(f"{folder}: no series with SeriesInstanceUID {series_uid}. Series present:\n{listing}")
        chosen = matches[0]

    files = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), chosen.series_instance_uid)]
    headers = [_header(f) for f in files]
    first = headers[0]
    if len(files) < 2:
        raise ExamReadError(
            f"{files[0]}: the series has a single slice, a 2-D image. A CT exam must be a 3-D series "
            "of axial slices; export the whole series."
        )
    _check_modality(files[0], first)
    _check_slice_positions(files, headers)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ExamReadError(f"{folder}: the pixel data of series {chosen.series_instance_uid} cannot be decoded ({str(exc).strip().splitlines()[-1]}). Check for truncated files or an unsupported compression.") from None
    image = sitk.Cast(image, sitk.sitkFloat32)
    meta = header_summary(first)
    meta["n_slices"] = len(files)
    volume = Volume.from_sitk(image, metadata={"source": str(folder), "format": "dicom", **meta})
    return volume, meta, files


def _check_modality(path: Path, ds: pydicom.Dataset) -> None:
    modality = str(getattr(ds, "Modality", ""))
    if modality and modality not in ("CT", "OT"):
        raise ExamReadError(f"{path}: Modality is {modality}, not CT, so its values cannot be Hounsfield units. Choose the CT series of the exam.")
    if "PixelData" not in ds and "RescaleIntercept" not in ds and not hasattr(ds, "Rows"):
        raise ExamReadError(f"{path}: holds no image (no Rows/pixel attributes); choose an image series.")
    if modality == "CT" and "RescaleIntercept" not in ds:
        warnings.warn(f"{path}: CT without RescaleIntercept; assuming the stored values are already HU.", stacklevel=3)


def _check_slice_positions(files: Sequence[Path], headers: Sequence[pydicom.Dataset]) -> None:
    try:
        orientation = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
        positions = np.asarray([h.ImagePositionPatient for h in headers], dtype=float)
    except AttributeError:
        raise ExamReadError(f"{files[0]}: missing ImagePositionPatient/ImageOrientationPatient, so the slices cannot be placed in the patient. Export the series with geometry.") from None
    normal = np.cross(orientation[:3], orientation[3:])
    along = positions @ normal
    steps = np.diff(along)
    if np.any(np.abs(steps) < 1e-6):
        i = int(np.argmin(np.abs(steps)))
        raise ExamReadError(f"{files[i + 1]}: duplicates the slice position of {files[i].name} ({along[i]:.2f} mm). Remove the duplicate slice.")
    median = float(np.median(np.abs(steps)))
    bad = np.nonzero(np.abs(np.abs(steps) - median) > SLICE_SPACING_TOLERANCE * median)[0]
    if bad.size:
        i = int(bad[0])
        gap = abs(steps[i])
        kind = f"about {round(gap / median) - 1} missing slice(s)" if gap > 1.5 * median else "uneven slice spacing"
        raise ExamReadError(
            f"{files[i + 1]}: {kind} between slice positions {along[i]:.2f} and {along[i + 1]:.2f} mm "
            f"(step {gap:.2f} mm, series spacing {median:.2f} mm, tolerance {SLICE_SPACING_TOLERANCE:.0%}). "
            "Export the complete series, or resample it to even spacing first."
        )


def header_summary(ds: pydicom.Dataset) -> dict[str, Any]:
    """Key identification and acquisition attributes of a DICOM header, as plain Python values."""
    keys = (
        "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
        "StudyID", "AccessionNumber", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber",
        "FrameOfReferenceUID", "Modality", "Manufacturer", "ConvolutionKernel", "KVP", "SliceThickness",
        "StudyDescription", "ReferringPhysicianName",
    )
    out: dict[str, Any] = {}
    for key in keys:
        if key in ds:
            value = ds.data_element(key).value
            out[key] = str(value) if not isinstance(value, (int, float)) else value
    return out


# ---------------------------------------------------------------------------------------------
def write_dicom_series(
    volume: Volume,
    folder: Path,
    *,
    series_description: str,
    template: dict[str, Any] | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_instance_uid: str | None = None,
    study_date: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int = 1,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    window_center_hu: float = 40.0,
    window_width_hu: float = 400.0,
    derivation_description: str | None = None,
) -> list[Path]:
    """Write a volume as a DICOM CT series (one file per axial slice), values in HU.

    Parameters
    ----------
    volume : the image; values are rounded to signed 16-bit integers (HU).
    folder : created if needed; files are named ``IM00001.dcm`` … in slice order.
    series_description : what the series is, shown in every viewer's series list.
    template : header attributes of the exam this series belongs to (e.g. ``Exam.header`` of the
        current exam): patient, study and frame of reference are copied from it so that a derived
        series lands in the same study and registers with it. Explicit keyword arguments win.
    image_type : DICOM ImageType values; use ``("DERIVED", "SECONDARY", ...)`` for derived images.

    Returns
    -------
    The written file paths in slice order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    template = dict(template or {})
    now = _dt.datetime.now()
    study_uid = study_instance_uid or template.get("StudyInstanceUID") or generate_uid()
    frame_uid = frame_of_reference_uid or template.get("FrameOfReferenceUID") or generate_uid()
    series_uid = generate_uid()
    direction = volume.direction_matrix
    sx, sy, sz = volume.spacing_mm
    hu = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    paths = []
    for k in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"IM{k + 1:05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.ImageType = list(image_type)
        ds.PatientID = patient_id or template.get("PatientID", "ANON")
        ds.PatientName = patient_name or template.get("PatientName", "Anonymous")
        for key in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName"):
            if key in template:
                setattr(ds, key, template[key])
        ds.PatientBirthDate = ds.get("PatientBirthDate", "")
        ds.PatientSex = ds.get("PatientSex", "")
        ds.ReferringPhysicianName = ds.get("ReferringPhysicianName", "")
        ds.StudyID = ds.get("StudyID", "1")
        ds.AccessionNumber = ds.get("AccessionNumber", "")
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = study_date or template.get("StudyDate") or now.strftime("%Y%m%d")
        ds.StudyTime = template.get("StudyTime", now.strftime("%H%M%S"))
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.SeriesDate = now.strftime("%Y%m%d")
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S")
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = template.get("Manufacturer", "TSCT")
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in volume.index_to_point_mm((0, 0, k))]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(volume.metadata.get("slice_thickness_mm", sz))
        ds.SpacingBetweenSlices = float(sz)
        ds.SliceLocation = float(volume.index_to_point_mm((0, 0, k))[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = window_center_hu
        ds.WindowWidth = window_width_hu
        if derivation_description:
            ds.DerivationDescription = derivation_description[:1024]
        ds.PixelData = hu[k].tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths

