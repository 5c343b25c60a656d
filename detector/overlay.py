"""Colour overlay of the z-map on the CT, for the reading app and as a DICOM series.

The CT is shown in a bone window (default level 400 HU, width 1800 HU); voxels with
``z >= +threshold`` are tinted with the *increase* colour (green by default: bone became denser,
blastic), voxels with ``z <= -threshold`` with the *decrease* colour (orange: lytic). Below the
threshold the overlay is transparent. The opacity rises linearly with ``|z|`` from
``opacity[0]`` at the threshold to ``opacity[1]`` at ``z_max``:

    alpha = opacity[0] + (opacity[1] - opacity[0]) * clip((|z| - t) / (z_max - t), 0, 1).

Hoshiai et al. (2019) showed temporal increases in blue and decreases in red; that palette is
``"blue-red"``. Any pair of RGB colours works.

:func:`render_overlay` works on one slice with NumPy only (a 512 x 512 slice takes a few ms), so
the reading app can call it on every scroll. :func:`write_overlay_dicom` writes the whole fused
volume as a colour DICOM series (Secondary Capture, RGB, one instance per axial slice) in the
current exam's study and frame of reference, marked "NOT FOR DIAGNOSTIC USE".
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from cases import Volume

from ._errors import DetectorInputError

__all__ = [
    "PALETTES",
    "OverlayStyle",
    "overlay_pixels",
    "render_overlay",
    "render_overlay_volume",
    "write_overlay_dicom",
    "SECONDARY_CAPTURE_SOP_CLASS",
    "NOT_FOR_DIAGNOSIS",
]

#: Named palettes: (colour of an increase z > 0, colour of a decrease z < 0), RGB 0-255.
PALETTES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "green-orange": ((0, 220, 60), (255, 140, 0)),
    "blue-red": ((40, 110, 255), (235, 30, 30)),
}

#: Secondary Capture Image Storage.
SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"

PaletteSpec = Union[str, Sequence[Sequence[int]]]


def _palette(palette: PaletteSpec) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(palette, str):
        if palette not in PALETTES:
            raise DetectorInputError(
                f"Unknown palette {palette!r}; choose one of {', '.join(PALETTES)} or give two RGB colours ((r, g, b), (r, g, b))."
            )
        inc, dec = PALETTES[palette]
    else:
        try:
            inc, dec = palette
            inc = tuple(int(v) for v in inc)
            dec = tuple(int(v) for v in dec)
        except (TypeError, ValueError):
            raise DetectorInputError(
                f"palette must be a name or two RGB colours ((r, g, b) for increase, (r, g, b) for decrease), got {palette!r}."
            ) from None
        if len(inc) != 3 or len(dec) != 3 or not all(0 <= v <= 255 for v in (*inc, *dec)):
            raise DetectorInputError(f"palette colours must be three integers 0-255 each, got {palette!r}.")
    return np.asarray(inc, dtype=np.float32), np.asarray(dec, dtype=np.float32)


def _opacity(opacity: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(opacity, (int, float)):
        lo, hi = 0.4 * float(opacity), float(opacity)
    else:
        lo, hi = (float(v) for v in opacity)
    if not (0.0 <= lo <= hi <= 1.0):
        raise DetectorInputError(f"opacity must be (at threshold, at z_max) with 0 <= first <= second <= 1, got {opacity!r}.")
    return lo, hi


@dataclass(frozen=True)
class OverlayStyle:
    """How the overlay looks; the defaults are the platform's reading defaults.

    Parameters
    ----------
    window_level_hu, window_width_hu : the CT's display window (bone window by default).
    threshold : ``|z|`` from which voxels are coloured.
    z_max : ``|z|`` at which the opacity reaches its maximum.
    palette : a name of :data:`PALETTES` or ((r, g, b) increase, (r, g, b) decrease).
    opacity : (opacity at the threshold, opacity at ``z_max``), or one number for the maximum
        (the minimum is then 40 % of it).
    """

    window_level_hu: float = 400.0
    window_width_hu: float = 1800.0
    threshold: float = 4.0
    z_max: float = 10.0
    palette: PaletteSpec = "green-orange"
    opacity: float | tuple[float, float] = (0.35, 0.85)

    def __post_init__(self) -> None:
        if self.window_width_hu <= 0:
            raise DetectorInputError(f"window_width_hu must be positive, got {self.window_width_hu}.")
        if self.threshold <= 0 or self.z_max <= self.threshold:
            raise DetectorInputError(f"Need 0 < threshold < z_max, got threshold {self.threshold} and z_max {self.z_max}.")
        _palette(self.palette)
        _opacity(self.opacity)

    @property
    def window(self) -> tuple[float, float]:
        return (self.window_level_hu, self.window_width_hu)


def render_overlay(
    ct_slice_hu: np.ndarray,
    z_slice: np.ndarray,
    *,
    window: tuple[float, float] = (400.0, 1800.0),
    threshold: float = 4.0,
    palette: PaletteSpec = "green-orange",
    opacity: float | Sequence[float] = (0.35, 0.85),
    z_max: float = 10.0,
) -> np.ndarray:
    """Fuse one CT slice (grey, windowed) with its z-map slice (colour) into an RGB image.

    Parameters
    ----------
    ct_slice_hu : array of shape (rows, columns) (or any shape), HU.
    z_slice : z-scores of the same shape; NaN counts as 0 (no colour).
    window : (level, width) of the grey-scale display, HU.
    threshold : ``|z|`` from which voxels are coloured; below it the overlay is transparent.
    palette : ``"green-orange"`` (default), ``"blue-red"`` (Hoshiai et al. 2019) or two RGB colours
        ((r, g, b) for an increase, (r, g, b) for a decrease).
    opacity : (opacity at the threshold, opacity at ``z_max``), or the maximum opacity alone.
    z_max : ``|z|`` where the opacity stops rising.

    Returns
    -------
    ndarray of uint8, shape ``ct_slice_hu.shape + (3,)``
    """
    ct = np.asarray(ct_slice_hu, dtype=np.float32)
    z = np.asarray(z_slice, dtype=np.float32)
    if ct.shape != z.shape:
        raise DetectorInputError(f"The CT slice {ct.shape} and the z slice {z.shape} must have the same shape.")
    level, width = float(window[0]), float(window[1])
    if width <= 0:
        raise DetectorInputError(f"window width must be positive, got {width}.")
    grey = (ct - (level - 0.5 * width)) * (255.0 / width)
    np.clip(grey, 0.0, 255.0, out=grey)
    where, alpha, colour = overlay_pixels(z, threshold=threshold, z_max=z_max, opacity=opacity, palette=palette)
    out = np.repeat(grey[..., None], 3, axis=-1)
    if alpha.size:
        a = alpha[:, None]
        out[where] = grey[where][:, None] * (1.0 - a) + colour * a
    return np.rint(out, out=out).astype(np.uint8)


def overlay_pixels(
    z_slice: np.ndarray,
    *,
    threshold: float = 4.0,
    z_max: float = 10.0,
    opacity: float | Sequence[float] = (0.35, 0.85),
    palette: PaletteSpec = "green-orange",
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """The z-map overlay's one rule (module notes): which pixels are coloured, how opaque and in which colour.

    Used by :func:`render_overlay` (the DICOM overlay series) and by the reading app's viewer
    (``reading_app.workstation.render.zmap_overlay_rgba``), so both show the same overlay.

    Returns
    -------
    where : indices of the coloured pixels (``|z| >= threshold``; NaN never), as ``np.nonzero`` gives them.
    alpha : their opacity, float32 in 0..1, shape (n,).
    colour : their RGB colour (increase for z > 0, decrease for z < 0), float32, shape (n, 3).
    """
    if threshold <= 0 or z_max <= threshold:
        raise DetectorInputError(f"Need 0 < threshold < z_max, got threshold {threshold} and z_max {z_max}.")
    inc, dec = _palette(palette)
    a_lo, a_hi = _opacity(opacity)
    z = np.asarray(z_slice, dtype=np.float32)
    where = np.nonzero(np.abs(z) >= threshold)  # NaN compares False: transparent
    values = z[where]
    ramp = np.clip((np.abs(values) - threshold) / (z_max - threshold), 0.0, 1.0)
    alpha = (a_lo + (a_hi - a_lo) * ramp).astype(np.float32)
    colour = np.where((values > 0)[:, None], inc, dec).astype(np.float32)
    return where, alpha, colour


def render_overlay_volume(ct: Volume, z: Volume, style: OverlayStyle | None = None) -> np.ndarray:
    """Every axial slice of :func:`render_overlay`: uint8 array of shape (z, y, x, 3)."""
    style = style or OverlayStyle()
    if not ct.same_space(z):
        raise DetectorInputError("The CT and the z-map are not on the same grid.")
    out = np.empty(ct.shape + (3,), dtype=np.uint8)
    for k in range(ct.shape[0]):
        out[k] = render_overlay(
            ct.array[k], z.array[k], window=style.window, threshold=style.threshold, palette=style.palette, opacity=style.opacity, z_max=style.z_max
        )
    return out


def _orientation_letters(cosines: np.ndarray, max_letters: int = 3) -> str:
    """DICOM Patient Orientation letters (LPS: L/R, P/A, H/F) of a direction, main axis first."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    out = ""
    for axis in np.argsort(-np.abs(cosines))[:max_letters]:
        if abs(float(cosines[axis])) > 1e-3:
            out += letters[axis][0] if cosines[axis] > 0 else letters[axis][1]
    return out


def write_overlay_dicom(
    ct: Volume,
    z: Volume,
    folder: str | Path,
    *,
    template: dict[str, Any] | None = None,
    style: OverlayStyle | None = None,
    series_description: str = "TSCT z-score overlay (research)",
    series_number: int = 9099,
    derivation_description: str | None = None,
) -> list[Path]:
    """Write the fused CT + z overlay as a colour DICOM series (Secondary Capture, RGB).

    One Secondary Capture Image Storage instance per axial slice, 8-bit RGB, with the current
    exam's patient, study (StudyInstanceUID) and FrameOfReferenceUID copied from ``template``
    (``cases.Exam.header`` of the current exam) so it lands in the same study, plus the slice's
    ImagePositionPatient/ImageOrientationPatient/PixelSpacing so viewers can link it to the CT.
    ImageComments says "NOT FOR DIAGNOSTIC USE"; the image carries no burned-in text.

    Parameters
    ----------
    ct : the current CT, HU.
    z : the z-map on the same grid.
    folder : created if needed; files ``SC00001.dcm`` ... in slice order (old ones are removed).
    template : DICOM header attributes of the current exam.
    style : overlay look (window, threshold, palette, opacity).
    series_description, series_number : shown in the viewer's series list.
    derivation_description : how it was made (method, model version).

    Returns
    -------
    The written paths in slice order.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pydicom.valuerep import DSfloat

    style = style or OverlayStyle()
    rgb = render_overlay_volume(ct, z, style)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("SC*.dcm"):
        old.unlink()
    template = dict(template or {})
    now = _dt.datetime.now()
    study_uid = template.get("StudyInstanceUID") or generate_uid()
    frame_uid = template.get("FrameOfReferenceUID") or generate_uid()
    series_uid = generate_uid()
    direction = ct.direction_matrix
    sx, sy, sz = ct.spacing_mm
    inc, dec = _palette(style.palette)
    comments = (
        f"{NOT_FOR_DIAGNOSIS}. Research z-score overlay (TSCT): colour {tuple(int(v) for v in inc)} = density increase (z >= +{style.threshold:g}), "
        f"{tuple(int(v) for v in dec)} = decrease (z <= -{style.threshold:g}); window L {style.window_level_hu:g} / W {style.window_width_hu:g} HU."
    )
    paths = []
    for k in range(rgb.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"SC{k + 1:05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = SECONDARY_CAPTURE_SOP_CLASS
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "OT"
        ds.ConversionType = "WSD"
        ds.ImageType = ["DERIVED", "SECONDARY", "ZSCORE_OVERLAY"]
        ds.PatientID = template.get("PatientID", "ANON")
        ds.PatientName = template.get("PatientName", "Anonymous")
        for key in (
            "PatientBirthDate",
            "PatientSex",
            "AccessionNumber",
            "StudyID",
            "StudyDescription",
            "ReferringPhysicianName",
            "StudyDate",
            "StudyTime",
        ):
            setattr(ds, key, template.get(key, ""))
        if not ds.StudyDate:
            ds.StudyDate = now.strftime("%Y%m%d")
        if not ds.StudyTime:
            ds.StudyTime = now.strftime("%H%M%S")
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = int(series_number)
        ds.SeriesDescription = series_description[:64]
        ds.SeriesDate = now.strftime("%Y%m%d")
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S")
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "TSCT"
        # General Series Laterality and General Image Patient Orientation are type 2C for SC
        # (dciodvfy): Laterality as in the current exam (empty: not a paired body part known),
        # Patient Orientation from the slice direction cosines.
        ds.Laterality = template.get("Laterality", "")
        ds.PatientOrientation = [_orientation_letters(direction[:, 0]), _orientation_letters(direction[:, 1])]
        # DS holds at most 16 characters: a resampled grid's values (e.g. a tilted series') need rounding to fit
        ds.ImagePositionPatient = [DSfloat(float(v), auto_format=True) for v in ct.index_to_point_mm((0, 0, k))]
        ds.ImageOrientationPatient = [DSfloat(float(v), auto_format=True) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [DSfloat(float(sy), auto_format=True), DSfloat(float(sx), auto_format=True)]
        ds.SliceThickness = DSfloat(float(ct.metadata.get("slice_thickness_mm", sz)), auto_format=True)
        ds.SliceLocation = DSfloat(float(ct.index_to_point_mm((0, 0, k))[2]), auto_format=True)
        ds.ImageComments = comments
        ds.BurnedInAnnotation = "NO"
        if derivation_description:
            ds.DerivationDescription = derivation_description[:1024]
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = int(rgb.shape[1]), int(rgb.shape[2])
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(rgb[k]).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        paths.append(path)
    return paths
