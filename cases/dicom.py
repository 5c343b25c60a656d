"""DICOM series in and out: reading a CT series into a :class:`Volume` and writing volumes back.

Reading uses pydicom to read every file of the folder in full, group the files by series, and
order the slices by Image Position (Patient) along the slice normal, never by file name or
InstanceNumber. Each slice's header and pixel data are checked (damaged or truncated files,
missing geometry, another orientation, duplicates, missing slices, undecodable compression);
gantry-tilted series and series with variable spacing are resampled onto an orthogonal, evenly
spaced grid as dcm2niix does, and the result is checked against every slice's position
(docs/dicom-import.md). Writing uses pydicom: one CT Image Storage instance per slice, signed 16-bit
HU (rescale slope 1, intercept 0), new SOP instance UIDs, and patient/study/frame-of-reference
attributes taken from a template exam when one is given (derived series land in the same study).
"""

from __future__ import annotations

import datetime as _dt
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


#: Files in a series folder that are not slices and are skipped without complaint.
_SKIP_NAMES = {"dicomdir", "license", "readme", "thumbs.db", "desktop.ini", "version"}
_SKIP_SUFFIXES = {".txt", ".json", ".xml", ".md", ".pdf", ".csv", ".html", ".htm", ".jpg", ".jpeg", ".png", ".log", ".ini", ".zip"}
#: Slice positions closer than this (mm) along the normal are the same position.
_SAME_POSITION_MM = 0.01
#: In-plane drift of ImagePositionPatient (mm) below which a series is not tilted.
_TILT_TOLERANCE_MM = 0.05
#: Largest number of slices a resampled (tilt or variable-spacing) series may get.
_MAX_RESAMPLED_SLICES = 4000

#: Which packages pydicom needs to decode each compressed transfer syntax (shown to the user).
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg  (or python-gdcm)",
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg  (or python-gdcm)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg  (or python-gdcm)",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg  (or python-gdcm)",
    "1.2.840.10008.1.2.4.80": "pyjpegls  (or python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pyjpegls  (or python-gdcm)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg  (or python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg  (or python-gdcm)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}
#: Lossless syntaxes that SimpleITK's built-in GDCM decodes reliably when pydicom has no plugin.
_GDCM_FALLBACK = {
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
}


def _header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several unrelated types for bad files
        raise ExamReadError(f"{path}: not a readable DICOM file ({exc}). Remove it from the folder or replace it with an intact copy.") from None


def _has_dicom_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _skippable(path: Path) -> bool:
    name = path.name.lower()
    return name.startswith(".") or name in _SKIP_NAMES or name.split(".")[0] in _SKIP_NAMES or path.suffix.lower() in _SKIP_SUFFIXES


@dataclass
class _Slice:
    path: Path
    ds: pydicom.Dataset
    truncated: str = ""


def _scan_folder(folder: Path, *, pixels: bool) -> tuple[dict[str, list[_Slice]], list[Path]]:
    """Read every file of a folder: image slices grouped by SeriesInstanceUID, and skipped files.

    Damaged DICOM files (the 'DICM' signature, or a .dcm/.ima name, but unreadable or cut short)
    are refused naming the file, since they may be slices of the series; other files (notes,
    DICOMDIR, structured reports) are skipped.
    """
    import warnings as _warnings

    if not folder.is_dir():
        raise ExamReadError(f"{folder}: not a folder. Give the folder that holds the series' DICOM files.")
    series: dict[str, list[_Slice]] = {}
    skipped: list[Path] = []
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError as exc:
        raise ExamReadError(f"{folder}: cannot list the folder ({exc.strerror or exc}). Check its permissions.") from None
    damaged: list[str] = []
    for path in entries:
        if _skippable(path):
            skipped.append(path)
            continue
        magic = _has_dicom_magic(path)
        if path.stat().st_size == 0 and path.suffix.lower() in (".dcm", ".ima", ".dicom", ""):
            damaged.append(f"{path.name} (empty file, 0 bytes)")
            continue
        looks_dicom = magic or path.suffix.lower() in (".dcm", ".ima", ".dicom")
        with _warnings.catch_warnings(record=True) as caught:
            _warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(str(path), stop_before_pixels=not pixels, force=not magic and looks_dicom)
            except Exception as exc:  # pydicom raises many types for damaged files
                if looks_dicom:
                    damaged.append(f"{path.name} ({'empty file' if path.stat().st_size == 0 else type(exc).__name__ + ': ' + str(exc)[:80]})")
                else:
                    skipped.append(path)
                continue
        notes = " ".join(str(w.message) for w in caught)
        truncated = notes if ("end of file" in notes.lower() or "truncat" in notes.lower()) else ""
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
        is_image_class = "Image Storage" in getattr(pydicom.uid.UID(sop_class), "name", "") if sop_class else False
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        has_image = ("PixelData" in ds) if pixels else ("Rows" in ds)
        if not has_image:
            if looks_dicom and (is_image_class or not sop_class) and sop_class != "1.2.840.10008.1.3.10":
                what = "no pixel data" if "Rows" in ds else "no image attributes (Rows, Columns, pixel data)"
                damaged.append(f"{path.name} (a DICOM image file with {what}: cut short?)")
            else:
                skipped.append(path)
            continue
        series.setdefault(uid, []).append(_Slice(path, ds, truncated))
    if damaged:
        listing = "; ".join(damaged[:10]) + (f"; and {len(damaged) - 10} more" if len(damaged) > 10 else "")
        raise ExamReadError(
            f"{folder}: {len(damaged)} damaged or truncated DICOM file(s): {listing}. "
            "Replace them with intact copies (export the series again) or remove them if they are not part of the exam."
        )
    return series, skipped


def list_dicom_series(folder: Path) -> list[DicomSeriesInfo]:
    """The DICOM image series in ``folder`` (not recursive), with descriptions for choosing one."""
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
        series, _ = _scan_folder(Path(folder), pixels=False)
    infos = []
    for uid, slices in series.items():
        ds = slices[0].ds
        infos.append(
            DicomSeriesInfo(
                series_instance_uid=uid,
                n_files=len(slices),
                series_description=str(getattr(ds, "SeriesDescription", "")),
                modality=str(getattr(ds, "Modality", "")),
                first_file=slices[0].path,
            )
        )
    return infos


def _name_list(paths: Sequence[Path], limit: int = 8) -> str:
    names = [p.name for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_dicom_series(folder: Path, *, series_uid: str | None = None) -> tuple[Volume, dict[str, Any], list[Path]]:
    """Read one CT series (see :func:`_read_dicom_series`); pydicom's own warnings about odd
    values are kept off the terminal: every problem that matters becomes an ExamReadError."""
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
        return _read_dicom_series(folder, series_uid=series_uid)


def _read_dicom_series(folder: Path, *, series_uid: str | None = None) -> tuple[Volume, dict[str, Any], list[Path]]:
    """Read one CT series from a folder into a volume in HU, every slice checked against its header.

    Every file is read in full. Slices are ordered by ImagePositionPatient along the slice normal
    (never by file name or InstanceNumber). A gantry-tilted series (positions drifting within
    the image plane) is resampled onto an orthogonal grid by shifting each slice in-plane, and a
    series with variable spacing is resampled to even spacing along the normal, as dcm2niix
    does; the result is then checked against the ImagePositionPatient of every slice. Returns
    the volume, a dict of the first slice's key header attributes (with ``geometry_notes`` when
    the series was resampled), and the ordered files.

    Raises
    ------
    ExamReadError
        Naming the folder or the file: no series; several series and none chosen; damaged or
        truncated files; missing geometry; a slice of another orientation or size; duplicated
        positions; missing slices; a compressed transfer syntax no installed decoder handles
        (with the package to install); a single-slice series; non-CT modality.
    """
    folder = Path(folder)
    series, skipped = _scan_folder(folder, pixels=True)
    if not series:
        detail = f" {len(skipped)} file(s) there are not DICOM images, e.g. {skipped[0].name}." if skipped else " The folder holds no files."
        below = _dicom_subfolders(folder)
        if below:
            detail += f" DICOM files lie in sub-folder(s) {', '.join(str(p) for p in below[:5])}{' …' if len(below) > 5 else ''} (a DICOMDIR/CD layout?): point to the series' own folder."
        raise ExamReadError(f"{folder}: no DICOM series found.{detail} Point to the folder that holds the exam's .dcm files.")
    infos = list_dicom_series_from(series)
    if series_uid is None:
        if len(series) > 1:
            listing = "\n".join(f"  - {s}" for s in infos)
            raise ExamReadError(
                f"{folder} holds {len(series)} DICOM series; choose one by SeriesInstanceUID (--series-uid on the command line):\n{listing}"
            )
        uid = next(iter(series))
    else:
        if series_uid not in series:
            listing = "\n".join(f"  - {s}" for s in infos)
            raise ExamReadError(f"{folder}: no series with SeriesInstanceUID {series_uid}. Series present:\n{listing}")
        uid = series_uid
    slices = series[uid]
    _check_not_split(folder, uid, len(slices))
    try:
        frames = int(slices[0].ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1  # a damaged value is reported by the slice-header check
    if len(slices) < 2 and frames > 1:
        raise ExamReadError(
            f"{slices[0].path}: an enhanced (multi-frame) DICOM image holding the whole series as {frames} frames in one file; "
            "TSCT reads classic single-frame CT slices. Convert it (e.g. dcm2niix to .nii.gz) or export the series as single-frame CT images."
        )
    if len(slices) < 2:
        raise ExamReadError(
            f"{slices[0].path}: the series has a single slice, a 2-D image. A CT exam must be a 3-D series of axial slices; export the whole series."
        )
    first = slices[0].ds
    notes: list[str] = []
    if _check_modality(slices[0].path, first):
        notes.append("CT without RescaleIntercept: the stored values are taken as HU")
    bad_slices: list[str] = []
    for sl in slices:
        try:
            _check_slice_header(sl)
        except ExamReadError as exc:
            bad_slices.append(str(exc))
        except (ValueError, TypeError, OverflowError) as exc:
            bad_slices.append(f"{sl.path}: a header value is not valid ({exc}); the header is damaged. Export the series again.")
    if len(bad_slices) == 1:
        raise ExamReadError(bad_slices[0])
    if bad_slices:
        listing = "\n".join(f"  - {m}" for m in bad_slices[:20]) + (f"\n  - … and {len(bad_slices) - 20} more" if len(bad_slices) > 20 else "")
        raise ExamReadError(f"{folder}: {len(bad_slices)} of {len(slices)} slices cannot be used:\n{listing}")
    _check_same_frame(slices)
    ordered, along, normal = _order_slices(slices)
    files = [s.path for s in ordered]
    stack, fill, whole = _decode_slices(ordered)
    volume_array, origin, spacing, geometry = _build_grid(ordered, along, normal, stack, fill)
    if geometry and whole:
        np.rint(volume_array, out=volume_array)  # resampled HU kept whole numbers, as the slices were (int16 on writing)
    direction = np.column_stack([_iop(ordered[0].ds)[:3], _iop(ordered[0].ds)[3:], normal])
    volume = Volume(volume_array, spacing, origin, direction.ravel())
    _verify_against_headers(volume, ordered)
    meta = header_summary(first)
    meta["n_slices"] = len(files)
    if geometry:
        meta["geometry_notes"] = "; ".join(geometry)
    if notes:
        meta["reading_notes"] = "; ".join(notes)
    volume.metadata.update({"source": str(folder), "format": "dicom", **meta})
    return volume, meta, files


def list_dicom_series_from(series: dict[str, list[_Slice]]) -> list[DicomSeriesInfo]:
    """Series descriptions of an already scanned folder."""
    return [
        DicomSeriesInfo(uid, len(sl), str(getattr(sl[0].ds, "SeriesDescription", "")), str(getattr(sl[0].ds, "Modality", "")), sl[0].path)
        for uid, sl in series.items()
    ]


def _iop(ds: pydicom.Dataset) -> np.ndarray:
    return np.asarray(ds.ImageOrientationPatient, dtype=float)


def _check_slice_header(sl: _Slice) -> None:
    ds, path = sl.ds, sl.path
    missing = [
        k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns") if k not in ds or ds.get(k) in (None, "")
    ]
    if missing:
        raise ExamReadError(
            f"{path}: missing {', '.join(missing)}, so this slice cannot be placed in the patient. "
            "Export the series again with its geometry (or remove this file if it is not a slice of the exam)."
        )
    try:
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        iop = _iop(ds)
        spacing = np.asarray(ds.PixelSpacing, dtype=float)
    except (TypeError, ValueError):
        raise ExamReadError(
            f"{path}: ImagePositionPatient, ImageOrientationPatient or PixelSpacing is not numeric. The header is damaged; export the series again."
        ) from None
    if (
        ipp.shape != (3,)
        or iop.shape != (6,)
        or spacing.shape != (2,)
        or not (np.all(np.isfinite(ipp)) and np.all(np.isfinite(iop)) and np.all(np.isfinite(spacing)))
    ):
        raise ExamReadError(
            f"{path}: ImagePositionPatient/ImageOrientationPatient/PixelSpacing have the wrong number of values or non-finite ones. The header is damaged; export the series again."
        )
    if np.any(spacing <= 0):
        raise ExamReadError(f"{path}: PixelSpacing {tuple(spacing)} must be positive.")
    r, c = iop[:3], iop[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-3 or abs(np.linalg.norm(c) - 1) > 1e-3 or abs(float(r @ c)) > 1e-3:
        raise ExamReadError(
            f"{path}: ImageOrientationPatient {tuple(np.round(iop, 4))} is not two perpendicular unit vectors; the slice geometry is damaged."
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ExamReadError(
            f"{path}: PhotometricInterpretation is {photometric}, a colour or palette image, not a CT slice in HU. Choose the CT series of the exam."
        )
    bits = ds.get("BitsAllocated", None)
    if bits is None or int(bits) not in (8, 16, 32):
        raise ExamReadError(
            f"{path}: BitsAllocated is {bits}; a CT slice has 8, 16 or 32 bits per pixel. The header is damaged or the image is not CT."
        )
    slope = ds.get("RescaleSlope", None)
    if slope is not None and str(slope).strip() != "" and (float(slope) == 0 or not np.isfinite(float(slope))):
        raise ExamReadError(
            f"{path}: RescaleSlope is {slope}; it must be a non-zero finite number (every value would be the intercept). The header is damaged."
        )
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ExamReadError(
            f"{path}: a multi-frame (enhanced) DICOM image with {ds.NumberOfFrames} frames; export the series as classic single-frame CT images."
        )
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise ExamReadError(f"{path}: a colour image (SamplesPerPixel {ds.SamplesPerPixel}), not a CT slice in HU. Choose the CT series of the exam.")
    if sl.truncated:
        raise ExamReadError(f"{path}: truncated ({sl.truncated.strip()[:120]}). Replace it with an intact copy of the slice.")


def _check_not_split(folder: Path, uid: str, n_here: int) -> None:
    """Refuse a series whose slices continue in sub-folders: reading only this folder would give a shorter exam."""
    elsewhere: dict[Path, int] = {}
    try:
        subfolders = [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return
    for sub in subfolders:
        for path in sub.rglob("*"):
            if not path.is_file() or _skippable(path) or not _has_dicom_magic(path):
                continue
            try:
                ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            except Exception:  # noqa: BLE001, S112 - an unreadable file in a sub-folder is not this series
                continue
            if str(ds.get("SeriesInstanceUID", "") or "") == uid:
                elsewhere[path.parent] = elsewhere.get(path.parent, 0) + 1
    if elsewhere:
        listing = ", ".join(f"{p} ({n} file(s))" for p, n in sorted(elsewhere.items())[:5])
        raise ExamReadError(
            f"{folder}: the series (SeriesInstanceUID {uid}) has {n_here} slice(s) here and {sum(elsewhere.values())} more in sub-folder(s): "
            f"{listing}. Reading this folder alone would give an incomplete exam: put all the series' files in one folder and point to it."
        )


def _dicom_subfolders(folder: Path, limit: int = 6) -> list[Path]:
    """Sub-folders (any depth) holding at least one file with the DICOM signature; at most ``limit``."""
    found: list[Path] = []
    try:
        for path in sorted(folder.rglob("*")):
            if path.parent != folder and path.parent not in found and path.is_file() and _has_dicom_magic(path):
                found.append(path.parent)
                if len(found) >= limit:
                    break
    except OSError:
        pass
    return found


#: header attributes every slice of one series must share (a slice that differs belongs elsewhere)
_SAME_IN_SERIES = (("Modality", "Modality"), ("PatientID", "PatientID"), ("StudyInstanceUID", "StudyInstanceUID"))


def _check_same_series_header(slices: Sequence[_Slice]) -> None:
    """Slices must agree on modality, patient and study, and all carry (or all lack) the rescale."""
    from collections import Counter

    for key, label in _SAME_IN_SERIES:
        values = [str(s.ds.get(key, "") or "").strip() for s in slices]
        counts = Counter(values)
        if len(counts) > 1:
            common = counts.most_common(1)[0][0]
            odd = [s.path for s, v in zip(slices, values) if v != common]
            raise ExamReadError(
                f"{odd[0]}: {label} is {str(_find(slices, odd[0]).ds.get(key, '') or '(empty)')!r} while the series' other slices have {common!r}"
                f"{'; also ' + _name_list(odd[1:]) if len(odd) > 1 else ''}. A slice from another exam is mixed in: remove it."
            )
    has = ["RescaleIntercept" in s.ds and str(s.ds.get("RescaleIntercept", "")).strip() != "" for s in slices]
    if any(has) and not all(has):
        odd = [s.path for s, h in zip(slices, has) if h != (sum(has) * 2 >= len(has))]
        raise ExamReadError(
            f"{odd[0]}: {'lacks' if sum(has) * 2 >= len(has) else 'has'} RescaleIntercept while the series' other slices "
            f"{'have' if sum(has) * 2 >= len(has) else 'lack'} it{'; also ' + _name_list(odd[1:]) if len(odd) > 1 else ''}, "
            "so its values would be on another scale (off by about 1024 HU). The slice was altered or comes from another export: export the series again."
        )


def _check_same_frame(slices: Sequence[_Slice]) -> None:
    """All slices must share orientation, matrix size and pixel spacing; name the odd one out."""
    _check_same_series_header(slices)
    ref = slices[0]
    ref_iop, ref_shape, ref_sp = _iop(ref.ds), (int(ref.ds.Rows), int(ref.ds.Columns)), np.asarray(ref.ds.PixelSpacing, float)
    odd_iop = [s.path for s in slices[1:] if not np.allclose(_iop(s.ds), ref_iop, atol=1e-4)]
    if odd_iop:
        # name the minority orientation as the culprit
        culprits = odd_iop if len(odd_iop) <= len(slices) / 2 else [ref.path]
        raise ExamReadError(
            f"{culprits[0]}: has another orientation (ImageOrientationPatient {tuple(np.round(_iop(_find(slices, culprits[0]).ds), 4))}) "
            f"than the rest of the series {tuple(np.round(ref_iop if culprits[0] != ref.path else _iop(_find(slices, odd_iop[0]).ds), 4))}"
            f"{'; also ' + _name_list(culprits[1:]) if len(culprits) > 1 else ''}. A series must be one stack of parallel slices: "
            "remove the localiser/reformatted slices or choose the right series."
        )
    odd_shape = [s.path for s in slices if (int(s.ds.Rows), int(s.ds.Columns)) != ref_shape]
    if odd_shape:
        raise ExamReadError(
            f"{odd_shape[0]}: {int(_find(slices, odd_shape[0]).ds.Rows)}x{int(_find(slices, odd_shape[0]).ds.Columns)} pixels, while the series' other slices have {ref_shape[0]}x{ref_shape[1]}. Remove the slice that does not belong."
        )
    odd_sp = [s.path for s in slices if not np.allclose(np.asarray(s.ds.PixelSpacing, float), ref_sp, rtol=1e-4)]
    if odd_sp:
        raise ExamReadError(
            f"{odd_sp[0]}: PixelSpacing differs from the series' other slices ({tuple(ref_sp)} mm). Remove the slice that does not belong."
        )


def _find(slices: Sequence[_Slice], path: Path) -> _Slice:
    return next(s for s in slices if s.path == path)


def _order_slices(slices: Sequence[_Slice]) -> tuple[list[_Slice], np.ndarray, np.ndarray]:
    iop = _iop(slices[0].ds)
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    along = np.asarray([np.asarray(s.ds.ImagePositionPatient, float) @ normal for s in slices])
    order = np.argsort(along, kind="stable")
    ordered = [slices[i] for i in order]
    along = along[order]
    steps = np.diff(along)
    same = np.nonzero(steps < _SAME_POSITION_MM)[0]
    if same.size:
        pairs = []
        for i in same[:5]:
            a, b = ordered[i], ordered[i + 1]
            if str(a.ds.get("SOPInstanceUID", "a")) == str(b.ds.get("SOPInstanceUID", "b")):
                pairs.append(f"{b.path.name} is a copy of {a.path.name} (same SOPInstanceUID)")
            else:
                pairs.append(f"{b.path.name} and {a.path.name} share the slice position {along[i]:.2f} mm")
        raise ExamReadError(
            f"{ordered[same[0] + 1].path}: duplicated slice(s): {'; '.join(pairs)}{' …' if same.size > 5 else ''} "
            f"({same.size} in all). Remove the duplicates (or, for two acquisitions in one series, export them as separate series)."
        )
    return ordered, along, normal


def _decode_slices(ordered: Sequence[_Slice]) -> tuple[np.ndarray, float]:
    """Decode every slice to HU (float32), checking the pixel data length and the decoder."""
    from pydicom.pixels import get_decoder

    rows, cols = int(ordered[0].ds.Rows), int(ordered[0].ds.Columns)
    stack = np.empty((len(ordered), rows, cols), dtype=np.float32)
    all_integer_finite = True  # integer pixels with finite rescale cannot give NaN/inf
    whole = True  # ... and with slope 1 and a whole intercept they are whole numbers of HU
    for k, sl in enumerate(ordered):
        path = sl.path
        try:
            finite_k, whole_k = _decode_one(k, sl, stack, rows, cols, get_decoder)
            all_integer_finite &= finite_k
            whole &= whole_k
        except (ValueError, TypeError, OverflowError) as exc:
            if isinstance(exc, ExamReadError):
                raise
            raise ExamReadError(
                f"{path}: a header value needed to decode the pixels is not valid ({exc}); the header is damaged. Export the series again."
            ) from None
    if not all_integer_finite:
        from .filecheck import check_voxels_finite

        check_voxels_finite(stack, ordered[0].path.parent)
    return stack, float(stack.min()), whole and all_integer_finite


def _decode_one(k: int, sl: _Slice, stack: np.ndarray, rows: int, cols: int, get_decoder: Any) -> tuple[bool, bool]:
    """Decode slice ``k`` into ``stack[k]`` (HU); (values cannot be NaN/inf, values are whole numbers)."""
    all_integer_finite = True
    whole = False
    ds, path = sl.ds, sl.path
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
    uid = pydicom.uid.UID(syntax)
    bits_alloc = int(ds.get("BitsAllocated", 16) or 16)
    bits_stored = int(ds.get("BitsStored", bits_alloc) or bits_alloc)
    rescaled_by_reader = False
    if not uid.is_compressed:
        need = rows * cols * bits_alloc // 8
        have = len(ds.PixelData) if "PixelData" in ds else 0
        if have < need:
            raise ExamReadError(
                f"{path}: truncated pixel data ({have:,} of {need:,} bytes for {rows}x{cols} pixels of {bits_alloc} bits). Replace it with an intact copy of the slice."
            )
        if syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1") and bits_stored == bits_alloc and bits_alloc in (8, 16, 32):
            # little-endian native data using every allocated bit: the bytes are the values
            kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) else "u"
            pixels = np.frombuffer(ds.PixelData, dtype=np.dtype(f"<{kind}{bits_alloc // 8}"), count=rows * cols).reshape(rows, cols)
        else:
            try:
                pixels = ds.pixel_array
            except Exception as exc:
                raise ExamReadError(f"{path}: the pixel data cannot be decoded ({exc}). Replace it with an intact copy.") from None
    else:
        try:
            decoder = get_decoder(uid)
        except (NotImplementedError, ValueError):
            decoder = None
        plugins = set(getattr(decoder, "available_plugins", ()) or ()) if decoder is not None else set()
        if uid == pydicom.uid.JPEGExtended12Bit and bits_stored > 8:
            plugins.discard("pillow")  # Pillow decodes only 8-bit JPEG: 12-bit data would come out as garbage
        if plugins:
            try:
                pixels = ds.pixel_array
            except Exception as exc:
                raise ExamReadError(
                    f"{path}: the compressed pixel data ({uid.name}) cannot be decoded ({str(exc)[:160]}). The file may be damaged; export the series again, uncompressed if possible."
                ) from None
        elif syntax in _GDCM_FALLBACK:
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as exc:
                raise ExamReadError(
                    f"{path}: the compressed pixel data ({uid.name}) cannot be decoded ({str(exc).strip().splitlines()[-1][:160]}). The file may be damaged; export the series again."
                ) from None
            pixels = sitk.GetArrayFromImage(image).reshape(-1, rows, cols)[0]
            rescaled_by_reader = True
        else:
            package = _DECODER_PACKAGES.get(syntax, "a pydicom pixel-data plugin for this transfer syntax (pylibjpeg, python-gdcm)")
            raise ExamReadError(
                f"{path}: its pixel data are compressed as '{uid.name}' ({syntax}), {bits_stored}-bit, and no installed decoder "
                f"reads that correctly. Install one with: pip install {package} ; or export the series uncompressed. "
                "Nothing was decoded."
            )
    pixels = np.asarray(pixels)
    if pixels.shape != (rows, cols):
        raise ExamReadError(f"{path}: decoded to {pixels.shape} pixels instead of {rows}x{cols}; the slice is damaged. Export the series again.")
    if not rescaled_by_reader:
        if np.issubdtype(pixels.dtype, np.integer) and bits_stored < bits_alloc:
            lo = -(1 << (bits_stored - 1)) if int(ds.get("PixelRepresentation", 0) or 0) else 0
            hi = (1 << (bits_stored - 1)) - 1 if lo else (1 << bits_stored) - 1
            if pixels.size and (int(pixels.min()) < lo or int(pixels.max()) > hi):
                raise ExamReadError(
                    f"{path}: decoded values {int(pixels.min())} to {int(pixels.max())} exceed the {bits_stored} bits the header declares; the pixel data are damaged or mis-decoded. Export the series again, uncompressed."
                )
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        if not (np.isfinite(slope) and np.isfinite(intercept)):
            raise ExamReadError(f"{path}: RescaleSlope/RescaleIntercept ({slope}, {intercept}) are not finite numbers; the header is damaged.")
        all_integer_finite &= bool(np.issubdtype(pixels.dtype, np.integer))
        if slope == 1.0:
            whole = float(intercept).is_integer()
            np.add(pixels, np.float32(intercept), out=stack[k], casting="unsafe")
        else:
            stack[k] = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    else:
        all_integer_finite = False
        stack[k] = pixels.astype(np.float32)
    return all_integer_finite, whole


def _build_grid(
    ordered: Sequence[_Slice], along: np.ndarray, normal: np.ndarray, stack: np.ndarray, fill: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], list[str]]:
    """Place the decoded slices on an orthogonal grid with even spacing; returns (array, origin, spacing, notes)."""
    from scipy import ndimage

    ds0 = ordered[0].ds
    iop = _iop(ds0)
    r, c = iop[:3], iop[3:]
    sy, sx = (float(v) for v in ds0.PixelSpacing)
    positions = np.asarray([np.asarray(s.ds.ImagePositionPatient, float) for s in ordered])
    origin = positions[0].copy()
    notes: list[str] = []
    # --- in-plane drift of the slice origins: gantry tilt (a shear) ----------------------------
    du = (positions - origin) @ r
    dv = (positions - origin) @ c
    rel = along - along[0]
    if max(np.abs(du).max(), np.abs(dv).max()) > _TILT_TOLERANCE_MM:
        a_u = float(rel @ du / (rel @ rel))
        a_v = float(rel @ dv / (rel @ rel))
        residual = np.hypot(du - a_u * rel, dv - a_v * rel)
        worst = int(np.argmax(residual))
        if residual[worst] > max(_TILT_TOLERANCE_MM, 0.25 * min(sx, sy)):
            raise ExamReadError(
                f"{ordered[worst].path}: its ImagePositionPatient lies {residual[worst]:.2f} mm off the line through the other slices' "
                "positions, so the slices do not form one straight (or evenly tilted) stack. Remove the slice that does not belong or export the series again."
            )
        tilt = float(np.degrees(np.arctan(np.hypot(a_u, a_v))))
        shifted = np.empty_like(stack)
        for k in range(len(ordered)):
            # voxel (row j, col i) of the output slice k lies at origin + rel_k n + i sx r + j sy c;
            # in source slice k that is column i - du_k/sx, row j - dv_k/sy
            ndimage.shift(stack[k], (dv[k] / sy, du[k] / sx), output=shifted[k], order=1, mode="constant", cval=fill)
        stack = shifted
        notes.append(f"gantry tilt of {tilt:.1f}° corrected: each slice shifted within its plane onto an orthogonal grid")
    # --- spacing along the normal ---------------------------------------------------------------
    steps = np.diff(along)
    n = len(ordered)
    dz_even = (along[-1] - along[0]) / (n - 1)
    deviation = np.abs(along - (along[0] + dz_even * np.arange(n)))
    if deviation.max() <= max(0.01, SLICE_SPACING_TOLERANCE * dz_even):
        return stack, origin, (sx, sy, float(dz_even)), notes
    median = float(np.median(steps))
    irregular = np.nonzero(np.abs(steps - median) > SLICE_SPACING_TOLERANCE * median)[0]
    multiples = steps[irregular] / median
    is_gap = np.all((np.abs(multiples - np.rint(multiples)) < SLICE_SPACING_TOLERANCE * np.rint(multiples)) & (np.rint(multiples) >= 2))
    if irregular.size and is_gap and irregular.size <= max(1, int(0.1 * steps.size)):
        gaps = [
            f"about {int(round(steps[i] / median)) - 1} missing slice(s) between {ordered[i].path.name} ({along[i]:.2f} mm) and {ordered[i + 1].path.name} ({along[i + 1]:.2f} mm)"
            for i in irregular[:5]
        ]
        raise ExamReadError(
            f"{ordered[irregular[0] + 1].path}: {'; '.join(gaps)}, in a series spaced {median:.2f} mm. "
            "Export the complete series (a slice file may have been lost in copying)."
        )
    n_out = int(np.ceil((along[-1] - along[0]) / float(steps.min()) - 1e-6)) + 1
    dz = float((along[-1] - along[0]) / (n_out - 1))  # at most the smallest step; both end slices on the grid
    if n_out > _MAX_RESAMPLED_SLICES:
        raise ExamReadError(
            f"{ordered[0].path.parent}: slice spacing varies from {steps.min():.3f} to {steps.max():.2f} mm; even spacing would need {n_out} slices. Export the series with even spacing."
        )
    targets = along[0] + dz * np.arange(n_out)
    out = np.empty((n_out, stack.shape[1], stack.shape[2]), dtype=np.float32)
    for m, t in enumerate(targets):
        k = int(np.clip(np.searchsorted(along, t, side="right") - 1, 0, n - 2))
        w = float(np.clip((t - along[k]) / (along[k + 1] - along[k]), 0.0, 1.0))
        out[m] = stack[k] if w == 0.0 else (1 - w) * stack[k] + w * stack[k + 1]
    notes.append(
        f"variable slice spacing ({steps.min():.2f} to {steps.max():.2f} mm) resampled to even {dz:.3f} mm by linear interpolation ({n} slices -> {n_out})"
    )
    return out, origin, (sx, sy, dz), notes


def _verify_against_headers(volume: Volume, ordered: Sequence[_Slice]) -> None:
    """Check the built volume against the ImagePositionPatient of every slice.

    Recomputes, from each slice's header alone, where its first pixel must fall in the output
    grid: along the normal at its distance from the first slice, and within the plane at the
    offset by which the slice was shifted (non-zero only for a tilted series). The volume's
    origin, direction and spacing must reproduce that position to 0.01 mm and keep it inside
    the grid along the normal; otherwise nothing is returned.
    """
    d = volume.direction_matrix
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise ExamReadError(
            f"{ordered[0].path.parent}: the series' orientation is not orthogonal; refusing rather than writing a volume with wrong geometry."
        )
    sx, sy, sz = volume.spacing_mm
    r, c, n = d[:, 0], d[:, 1], d[:, 2]
    p0 = np.asarray(ordered[0].ds.ImagePositionPatient, float)
    for sl in ordered:
        ipp = np.asarray(sl.ds.ImagePositionPatient, float)
        expected = np.array([(ipp - p0) @ r / sx, (ipp - p0) @ c / sy, (ipp - p0) @ n / sz])
        placed = volume.index_to_point_mm(expected)
        if not np.allclose(placed, ipp, atol=0.01) or expected[2] < -1e-3 or expected[2] > volume.size[2] - 1 + 1e-3:
            raise ExamReadError(
                f"{sl.path}: the volume built from the series would place this slice at {tuple(np.round(placed, 2))} mm, not at its "
                f"ImagePositionPatient {tuple(np.round(ipp, 2))}; refusing rather than writing a volume with wrong geometry."
            )


def _check_modality(path: Path, ds: pydicom.Dataset) -> bool:
    """Refuse non-CT series; True when a CT lacks RescaleIntercept (stored values taken as HU)."""
    modality = str(getattr(ds, "Modality", ""))
    if modality and modality not in ("CT", "OT"):
        raise ExamReadError(f"{path}: Modality is {modality}, not CT, so its values cannot be Hounsfield units. Choose the CT series of the exam.")
    if "PixelData" not in ds and "RescaleIntercept" not in ds and not hasattr(ds, "Rows"):
        raise ExamReadError(f"{path}: holds no image (no Rows/pixel attributes); choose an image series.")
    return modality == "CT" and "RescaleIntercept" not in ds


def header_summary(ds: pydicom.Dataset) -> dict[str, Any]:
    """Key identification and acquisition attributes of a DICOM header, as plain Python values."""
    keys = (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyID",
        "AccessionNumber",
        "SeriesInstanceUID",
        "SeriesDescription",
        "SeriesNumber",
        "FrameOfReferenceUID",
        "Modality",
        "Manufacturer",
        "ConvolutionKernel",
        "KVP",
        "SliceThickness",
        "StudyDescription",
        "ReferringPhysicianName",
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
    import os
    import shutil

    from tsct_files import remove_stale_partials, temporary_sibling

    folder = Path(folder)
    final_folder = folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final_folder)  # left by a killed earlier run
    folder = temporary_sibling(final_folder)  # written here, moved into place when complete
    folder.mkdir()
    template = dict(template or {})
    now = _dt.datetime.now()
    study_uid = study_instance_uid or template.get("StudyInstanceUID") or generate_uid()
    frame_uid = frame_of_reference_uid or template.get("FrameOfReferenceUID") or generate_uid()
    series_uid = generate_uid()
    direction = volume.direction_matrix
    sx, sy, sz = volume.spacing_mm
    hu = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    paths = []
    try:
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
            paths.append(final_folder / path.name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not final_folder.exists():
        os.replace(folder, final_folder)
    else:
        # slices of an earlier, longer series written here would mix with this one: remove them
        for stale in final_folder.glob("IM[0-9][0-9][0-9][0-9][0-9].dcm"):
            if int(stale.stem[2:]) > hu.shape[0]:
                stale.unlink()
        for k in range(hu.shape[0]):
            os.replace(folder / f"IM{k + 1:05d}.dcm", final_folder / f"IM{k + 1:05d}.dcm")
        shutil.rmtree(folder, ignore_errors=True)
    return paths
