"""Reading CT exams from DICOM, NIfTI, NRRD or MHA into one type, and writing volumes back.

:func:`read_exam` is the single entry point: give it a DICOM series folder or an image file and
it returns an :class:`Exam`, a :class:`~cases.volume.Volume` in HU with the exam's identifying
header attributes. Every problem is an :class:`ExamReadError` whose message names the file and
says what to fix. SimpleITK converts NIfTI's RAS convention to LPS on reading, so every volume in
the platform is in LPS millimetres whatever its source format.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .dicom import ExamReadError, read_dicom_series, write_dicom_series
from .volume import LabelVolume, Volume

__all__ = [
    "Exam",
    "ExamReadError",
    "read_exam",
    "read_exam_pair",
    "read_volume",
    "write_volume",
    "write_nifti_gz",
    "check_same_patient",
    "check_hu_plausible",
    "IMAGE_SUFFIXES",
    "write_dicom_series",
]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Lowest and highest values a CT volume in HU can hold (with padding values clipped).
HU_RANGE = (-3024.0, 32767.0)


@dataclass
class Exam:
    """One CT exam of a patient: the volume in HU and what identifies it.

    ``header`` holds the DICOM attributes that derived series copy (patient, study, frame of
    reference); for NIfTI/NRRD/MHA inputs it is empty unless a sidecar supplies it.
    """

    volume: Volume
    source: Path
    format: str
    header: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def patient_id(self) -> str | None:
        return self.header.get("PatientID")

    @property
    def study_date(self) -> str | None:
        return self.header.get("StudyDate")

    def __repr__(self) -> str:
        who = f"patient {self.patient_id}, " if self.patient_id else ""
        when = f"{self.study_date}, " if self.study_date else ""
        return f"Exam({who}{when}{self.format} from {self.source}; {self.volume!r})"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_volume(path: str | Path, *, label: bool = False, exam: bool = False) -> Volume:
    """Read a NIfTI, NRRD or MHA image file as a volume (float32) or, with ``label``, a label volume.

    The file is checked in full first (:func:`cases.filecheck.check_image_file`: truncation,
    damaged compression, impossible headers); then the voxels must be finite, the grid 3-D with
    at least two voxels along each axis, and the geometry a proper rotation with positive
    spacing. Label maps must hold whole numbers from 0 to 65535. With ``exam`` (the file is a CT
    exam, as :func:`read_exam` reads it) 8-bit storage is refused: it cannot hold HU. Detector
    outputs such as the bone ROI are 8-bit and are read without it.

    Raises
    ------
    ExamReadError
        Naming the file and what is wrong with it.
    """
    from .filecheck import check_geometry_sane, check_image_file, check_voxels_finite

    path = Path(path)
    if not path.exists():
        raise ExamReadError(f"{path}: file not found.")
    if path.is_dir():
        raise ExamReadError(f"{path}: is a folder; give an image file ({', '.join(IMAGE_SUFFIXES)}).")
    if _suffix(path) not in IMAGE_SUFFIXES:
        raise ExamReadError(f"{path}: unsupported file type '{_suffix(path)}'; use a DICOM series folder or one of {', '.join(IMAGE_SUFFIXES)}.")
    check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        if "orthonormal" in last:
            raise ExamReadError(
                f"{path}: its orientation (the NIfTI sform/qform or direction) is sheared, scaled or singular, not a rotation, so voxel positions "
                "cannot be trusted. Resample the image onto an orthogonal grid (e.g. convert the DICOM with dcm2niix) first."
            ) from None
        raise ExamReadError(f"{path}: cannot be read as an image ({last}). The file may be truncated or not an image; re-export it.") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ExamReadError(
            f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image); a CT exam is a scalar volume."
        )
    while image.GetDimension() > 3 and image.GetSize()[-1] == 1:
        image = image[(slice(None),) * (image.GetDimension() - 1) + (0,)]
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        what = "label map" if label else "CT exam"
        if image.GetDimension() > 3:
            hint = "a time series or several volumes in one file; save one 3-D volume per file"
        elif image.GetDimension() == 3:
            hint = "it has a single voxel along one axis (one slice)"
        else:
            hint = "a single slice or a projection"
        raise ExamReadError(
            f"{path}: is a {image.GetDimension()}-D image of size {image.GetSize()}, not a 3-D volume ({hint}). A {what} needs a 3-D grid with several slices."
        )
    check_geometry_sane(image.GetSpacing(), image.GetOrigin(), image.GetDirection(), path)
    if exam and not label and image.GetPixelID() in (sitk.sitkInt8, sitk.sitkUInt8):
        kind = "signed 8-bit (-128 to 127)" if image.GetPixelID() == sitk.sitkInt8 else "unsigned 8-bit (0 to 255)"
        raise ExamReadError(
            f"{path}: stores {kind} integers, which cannot hold CT values in HU (air -1000, bone up to 3000): a picture, "
            "mask or down-converted export, not the CT. Supply the original exam (16-bit or float) in Hounsfield units."
        )
    if label:
        array = sitk.GetArrayViewFromImage(image)
        check_voxels_finite(array, path, what="label value")
        if not np.issubdtype(array.dtype, np.integer):
            if array.size and float(np.abs(array - np.rint(array)).max()) > 1e-3:
                raise ExamReadError(
                    f"{path}: a label map must hold whole numbers, but it holds fractional values (e.g. {float(array.flat[np.argmax(np.abs(array - np.rint(array)))]):.3g}): a probability map or a CT image? Give the label map itself."
                )
        if array.size and (float(array.min()) < 0 or float(array.max()) > 65535):
            raise ExamReadError(
                f"{path}: label values must be 0 to 65535, but they span {float(array.min()):.0f} to {float(array.max()):.0f}. Is this a CT image rather than a label map?"
            )
        return LabelVolume.from_sitk(
            sitk.Cast(sitk.Round(image) if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64) else image, sitk.sitkUInt16),
            metadata={"source": str(path)},
        )
    volume = Volume.from_sitk(sitk.Cast(image, sitk.sitkFloat32), metadata={"source": str(path), "format": _suffix(path).lstrip(".")})
    check_voxels_finite(volume.array, path)
    return volume


def check_hu_plausible(volume: Volume, source: str | Path) -> None:
    """Refuse volumes whose values cannot be CT Hounsfield units.

    Catches the usual mistakes: intensities normalised to [0, 1]; raw stored values without the
    rescale intercept (air at 0 instead of -1000); MR or other non-CT images.
    """
    array = volume.array
    lo, hi = float(np.min(array)), float(np.max(array))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ExamReadError(f"{source}: holds NaN or infinite values; CT values must be finite HU.")
    if hi - lo < 50:
        raise ExamReadError(
            f"{source}: values span only {lo:.3g} to {hi:.3g}, which is not a CT in HU (normalised or empty image?). Supply the exam in Hounsfield units."
        )
    if lo < HU_RANGE[0] - 1 or hi > HU_RANGE[1]:
        raise ExamReadError(f"{source}: values {lo:.0f} to {hi:.0f} lie outside the HU range {HU_RANGE[0]:.0f} to {HU_RANGE[1]:.0f}.")
    if lo >= 0 and hi <= 255:
        raise ExamReadError(
            f"{source}: values span {lo:.0f} to {hi:.0f} with nothing below 0, like an 8-bit picture (screenshot, JPEG export) "
            "or a mask, not a CT in HU (air is -1000 HU, fat about -100 HU). Supply the original CT in Hounsfield units."
        )
    p1 = float(np.percentile(array[:: max(1, array.shape[0] // 16)], 1))
    if lo >= 0 and p1 >= 0 and hi > 1000:
        raise ExamReadError(
            f"{source}: the lowest value is {lo:.0f}, so air is not near -1000: these look like raw stored values "
            "without the rescale intercept (usually -1024). Apply RescaleSlope/RescaleIntercept, or export in HU."
        )


def read_exam(path: str | Path, *, series_uid: str | None = None, check_hu: bool = True) -> Exam:
    """Read one CT exam, from a DICOM series folder or a NIfTI/NRRD/MHA file, in HU.

    Parameters
    ----------
    path : a folder of DICOM files (one series, or several with ``series_uid``), a single DICOM
        file (its folder's series is read), or an image file.
    series_uid : SeriesInstanceUID to read when the folder holds several series.
    check_hu : refuse values that cannot be HU (see :func:`check_hu_plausible`).

    Raises
    ------
    ExamReadError
        With the file and what to fix: not found, unreadable, not DICOM, several series and none
        chosen, missing slices or uneven spacing, a 2-D image, values that cannot be HU.
    """
    path = Path(path)
    if not path.exists():
        raise ExamReadError(f"{path}: not found. Give a DICOM series folder or a .nii/.nii.gz/.nrrd/.mha file.")
    if path.is_dir():
        volume, header, files = read_dicom_series(path, series_uid=series_uid)
        exam = Exam(volume=volume, source=path, format="dicom", header=header, files=files)
    elif _suffix(path) in IMAGE_SUFFIXES:
        exam = Exam(volume=read_volume(path, exam=True), source=path, format=_suffix(path).lstrip("."))
    else:
        try:
            import pydicom

            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:
            raise ExamReadError(
                f"{path}: neither a DICOM file nor one of {', '.join(IMAGE_SUFFIXES)}. Give a DICOM series folder or an image file."
            ) from None
        uid = series_uid or str(getattr(ds, "SeriesInstanceUID", "")) or None
        volume, header, files = read_dicom_series(path.parent, series_uid=uid)
        exam = Exam(volume=volume, source=path.parent, format="dicom", header=header, files=files)
    if check_hu:
        check_hu_plausible(exam.volume, exam.source)
    return exam


def read_exam_pair(
    prior: str | Path,
    current: str | Path,
    *,
    prior_series_uid: str | None = None,
    current_series_uid: str | None = None,
    check_hu: bool = True,
) -> tuple[Exam, Exam]:
    """Read the prior and the current exam of a pair side by side, in two threads.

    The same as two :func:`read_exam` calls (same arguments, same errors: the prior's first),
    in about two thirds of the time on 2 cores: the image readers and their decompression
    release the GIL (two 512 x 512 x 300 NIfTI files: 2.2-2.3 s against 3.4-3.9 s).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsct-read") as pool:
        current_read = pool.submit(read_exam, current, series_uid=current_series_uid, check_hu=check_hu)
        try:
            prior_exam = read_exam(prior, series_uid=prior_series_uid, check_hu=check_hu)
        except BaseException:
            current_read.cancel()
            raise
        return prior_exam, current_read.result()


def check_same_patient(prior: Exam, current: Exam) -> None:
    """Refuse a prior/current pair whose headers say they are of different patients.

    Compares PatientID, and PatientBirthDate when both headers have it. Files without headers
    (NIfTI) cannot be checked and pass; registration QC catches unrelated exams later.
    """
    for key in ("PatientID", "PatientBirthDate"):
        a, b = prior.header.get(key), current.header.get(key)
        if a and b and str(a).strip() != str(b).strip():
            raise ExamReadError(
                f"The prior exam ({prior.source}) and current exam ({current.source}) are of different "
                f"patients: {key} {a!r} vs {b!r}. Check the case list pairs the right exams."
            )
    pd, cd = prior.header.get("StudyDate"), current.header.get("StudyDate")
    if pd and cd and str(pd) > str(cd):
        warnings.warn(f"The 'prior' exam ({pd}) is dated after the 'current' exam ({cd}); are they swapped?", stacklevel=2)


def _check_written(written: Path, target: Path) -> None:
    """Refuse an image file that ITK wrote incompletely: its writer does not report a full disk or
    a failed write, so the file is checked like an input (header against size, compressed stream
    complete) before it is renamed into place."""
    from tsct_files import OutputPathError

    from .filecheck import check_image_file

    try:
        check_image_file(written)
    except ExamReadError as exc:
        detail = str(exc).removeprefix(f"{written}: ").split(". The file is damaged")[0]
        free = ""
        try:
            free = f"; {shutil.disk_usage(written.parent).free:,} bytes free on that disk"
        except OSError:
            pass
        raise OutputPathError(
            f"{target}: the image could not be written completely ({detail}{free}); is the disk full? Nothing was kept under that name."
        ) from None


#: ISA-L compression level of :func:`write_nifti_gz` (0-3; 2 gives files the size of zlib level 1).
ISAL_LEVEL = 2


def write_nifti_gz(image: sitk.Image, path: str | Path, *, zlib_level: int = 1) -> Path:
    """Write a SimpleITK image as a gzip-compressed NIfTI file (``.nii.gz``), fast.

    With ``isal`` (python-isal, Intel's ISA-L) installed, SimpleITK writes the uncompressed
    ``.nii`` beside ``path`` (a page-cache write, 0.1 s for a 512 x 512 x 300 image), which is
    then gzip-compressed by ISA-L at :data:`ISAL_LEVEL`: 0.6 s against zlib level 1's 2.2 s for a
    512 x 512 x 300 int16 CT, the same size within 0.2 %. The decompressed bytes are exactly the
    ``.nii`` SimpleITK would have compressed (header and voxels), so every NIfTI reader reads the
    same image; the gzip header carries no name or time, so the file's bytes depend on the image
    only. Without ``isal``: SimpleITK's writer with zlib at ``zlib_level`` (-1: zlib's default).
    """
    path = Path(path)
    if not path.name.endswith(".nii.gz"):
        raise ValueError(f"{path}: write_nifti_gz writes .nii.gz files.")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from isal import isal_zlib
    except ImportError:
        sitk.WriteImage(image, str(path), True, zlib_level)
        return path
    import os
    import threading

    plain = path.with_name(f".{path.name[: -len('.nii.gz')]}.{os.getpid()}-{threading.get_ident()}.partial.nii")
    try:
        sitk.WriteImage(image, str(plain), False)
        gz = isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, 31)  # wbits 31: gzip wrapper, mtime 0
        with open(plain, "rb") as src, open(path, "wb") as dst:
            while chunk := src.read(16 << 20):
                dst.write(gz.compress(chunk))
            dst.write(gz.flush())
    finally:
        plain.unlink(missing_ok=True)
    return path


def write_volume(volume: Volume, path: str | Path, *, compress: bool = True) -> Path:
    """Write a volume to NIfTI/NRRD/MHA chosen by suffix, atomically.

    The image is written under a temporary name in the same folder and renamed into place when
    complete, so an interrupted write never leaves a partial file under the final name. CT
    volumes (float) holding whole numbers within int16 are written as int16 HU; other float
    data (z-maps, subtractions with fractions) stay float32; label volumes keep their integer type.
    """
    import os
    import shutil

    from tsct_files import remove_stale_partials, temporary_sibling

    path = Path(path)
    if _suffix(path) not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: choose a suffix among {', '.join(IMAGE_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)  # left by a killed earlier run
    array = volume.array
    if not isinstance(volume, LabelVolume) and np.issubdtype(array.dtype, np.floating):
        if (
            np.all(np.isfinite(array))
            and array.size
            and float(np.abs(array - np.rint(array)).max()) == 0.0
            and array.min() >= -32768
            and array.max() <= 32767
        ):
            volume = volume.with_array(array.astype(np.int16))
        elif array.dtype != np.float32:
            volume = volume.with_array(array.astype(np.float32))
    image = volume.to_sitk()
    if _suffix(path) in (".mhd", ".nhdr"):
        # detached header + data file: write both under their final names in a temporary folder
        tmp_dir = temporary_sibling(path)
        tmp_dir.mkdir()
        try:
            sitk.WriteImage(image, str(tmp_dir / path.name), useCompression=compress)
            _check_written(tmp_dir / path.name, path)
            for produced in sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name):
                os.replace(produced, path.parent / produced.name)  # data file first, header last
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return path
    tmp = temporary_sibling(path, _suffix(path))
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        _check_written(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
