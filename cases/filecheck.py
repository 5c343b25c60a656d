"""Checking image files in full before they are trusted: truncation, compression damage, bad headers.

SimpleITK/ITK does not always raise on a damaged file: a NIfTI or MHA file cut short can be read
with the missing slices filled with zeros, and a gzip stream cut short can go unnoticed. Before a
NIfTI, NRRD or MetaImage file is read, :func:`check_image_file` parses its header itself,
computes how many bytes of voxel data the header promises, and compares that with what the file
(decompressed in full when it is compressed) really holds. Every problem is an
:class:`~cases.dicom.ExamReadError` naming the file and saying what to do.

After reading, :func:`check_voxels_finite` and :func:`check_geometry_sane` refuse NaN/infinite
voxels and broken geometry (zero or negative spacing, a sheared or non-finite direction).
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .dicom import ExamReadError

__all__ = ["check_image_file", "check_voxels_finite", "check_geometry_sane"]

# NIfTI datatype code -> bytes per voxel (complex/RGB included so their sizes are right)
_NIFTI_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8, 1536: 16, 1792: 16, 2048: 32, 2304: 4}
_NRRD_BYTES = {
    "signed char": 1,
    "int8": 1,
    "int8_t": 1,
    "uchar": 1,
    "unsigned char": 1,
    "uint8": 1,
    "uint8_t": 1,
    "short": 2,
    "short int": 2,
    "signed short": 2,
    "signed short int": 2,
    "int16": 2,
    "int16_t": 2,
    "ushort": 2,
    "unsigned short": 2,
    "unsigned short int": 2,
    "uint16": 2,
    "uint16_t": 2,
    "int": 4,
    "signed int": 4,
    "int32": 4,
    "int32_t": 4,
    "uint": 4,
    "unsigned int": 4,
    "uint32": 4,
    "uint32_t": 4,
    "longlong": 8,
    "long long": 8,
    "long long int": 8,
    "signed long long": 8,
    "signed long long int": 8,
    "int64": 8,
    "int64_t": 8,
    "ulonglong": 8,
    "unsigned long long": 8,
    "unsigned long long int": 8,
    "uint64": 8,
    "uint64_t": 8,
    "float": 4,
    "double": 8,
}
_MET_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
_REEXPORT = "The file is damaged or was not copied completely; copy or export it again."
#: plausible voxel spacing of any image TSCT reads (CT, label map, detector output), in mm
MIN_SPACING_MM, MAX_SPACING_MM = 0.01, 100.0
#: no voxel grid starts further than this from the scanner's centre (mm)
MAX_ORIGIN_MM = 1.0e5
#: the NIfTI qform and sform may place a grid corner at most this far apart (mm)
QFORM_SFORM_TOLERANCE_MM = 0.5


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for double in (".nii.gz",):
        if name.endswith(double):
            return double
    return path.suffix.lower()


def _read_all(path: Path, compressed: str | None = None) -> bytes:
    """The file's bytes, decompressed in full (a truncated or corrupt stream raises ExamReadError)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ExamReadError(f"{path}: cannot be read ({exc.strerror or exc}). Check the file's permissions.") from None
    if compressed is None:
        return raw
    try:
        if compressed == "gzip":
            return gzip.decompress(raw)
        if compressed == "bzip2":
            return bz2.decompress(raw)
        if compressed == "zlib":
            out = zlib.decompressobj()
            data = out.decompress(raw)
            if not out.eof:
                raise EOFError("compressed stream ends early")
            return data
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise ExamReadError(f"{path}: the compressed ({compressed}) data are truncated or corrupt ({exc}). {_REEXPORT}") from None
    raise AssertionError(compressed)


def _check_size(path: Path, have: int, need: int, what: str) -> None:
    if have < need:
        missing = need - have
        raise ExamReadError(
            f"{path}: truncated: the header promises {need:,} bytes of {what} but the file holds {have:,} "
            f"({missing:,} bytes, {100 * missing / max(need, 1):.0f} % missing). {_REEXPORT}"
        )


def _nifti_gz_fast_ok(path: Path) -> bool:
    """True when a .nii.gz file is certainly complete without inflating it all: an integer
    datatype (no NaN possible) and a gzip trailer whose size field equals what the header promises.
    A truncated file ends in arbitrary bytes, so its 'size field' matches with odds of 1 in 2**32;
    anything else (float data, several gzip members, extra bytes) takes the full check."""
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(540)
        with path.open("rb") as handle:
            handle.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", handle.read(4))[0]
    except (OSError, EOFError, zlib.error, struct.error):
        return False
    if len(head) < 348:
        return False
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", head[:4])[0] == 348:
            break
    else:
        return False  # NIfTI-2 or damaged: full check
    dims = struct.unpack(endian + "8h", head[40:56])
    datatype = struct.unpack(endian + "h", head[70:72])[0]
    vox_offset = struct.unpack(endian + "f", head[108:112])[0]
    if datatype in (16, 32, 64, 128, 1536, 1792, 2048, 2304) or datatype not in _NIFTI_BYTES or not 1 <= dims[0] <= 7 or not np.isfinite(vox_offset):
        return False
    sizes = dims[1 : dims[0] + 1]
    if any(s < 1 for s in sizes):
        return False
    need = int(vox_offset) + math.prod(int(v) for v in sizes) * _NIFTI_BYTES[datatype]
    return isize == need % (1 << 32)


def _check_nifti(path: Path) -> None:
    if _suffix(path) == ".nii.gz":
        if _nifti_gz_fast_ok(path):
            with gzip.open(path, "rb") as handle:
                _check_nifti_bytes(path, handle.read(540), None)
            return
        data = _read_all(path, "gzip")
        _check_nifti_bytes(path, data, len(data))
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(540)
        total = path.stat().st_size
    except OSError as exc:
        raise ExamReadError(f"{path}: cannot be read ({exc.strerror or exc}). Check the file's permissions.") from None
    _check_nifti_bytes(path, head, total)


def _check_nifti_bytes(path: Path, data: bytes, total: int | None) -> None:
    """Check a NIfTI header (``data`` starts with it) against the file's ``total`` decompressed size
    (``None`` when already confirmed); float data are scanned for NaN/inf (read in full if needed)."""
    if len(data) < 348:
        raise ExamReadError(f"{path}: only {total if total is not None else len(data)} bytes, too short for a NIfTI header (348 bytes). {_REEXPORT}")
    for endian in ("<", ">"):
        sizeof_hdr = struct.unpack(endian + "i", data[:4])[0]
        if sizeof_hdr in (348, 540):
            break
    else:
        raise ExamReadError(f"{path}: not a NIfTI file (its header size field is not 348 or 540). Check the file type.")
    if sizeof_hdr == 348:
        dims = struct.unpack(endian + "8h", data[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", data[70:74])
        pixdim = struct.unpack(endian + "8f", data[76:108])
        vox_offset = struct.unpack(endian + "f", data[108:112])[0]
        magic = data[344:348]
    else:
        if len(data) < 540:
            raise ExamReadError(f"{path}: only {len(data)} bytes, too short for a NIfTI-2 header (540 bytes). {_REEXPORT}")
        magic = data[4:12]
        datatype, bitpix = struct.unpack(endian + "2h", data[12:16])
        dims = struct.unpack(endian + "8q", data[16:80])
        pixdim = struct.unpack(endian + "8d", data[104:168])
        vox_offset = struct.unpack(endian + "q", data[168:176])[0]
    if not magic.startswith((b"n+1", b"n+2")):
        raise ExamReadError(
            f"{path}: NIfTI header without the single-file magic 'n+1' (a .hdr/.img pair renamed?). Convert it to a single .nii/.nii.gz file."
        )
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise ExamReadError(f"{path}: the NIfTI header gives {ndim} dimensions (must be 1 to 7); the header is damaged. {_REEXPORT}")
    sizes = dims[1 : ndim + 1]
    if any(s < 1 for s in sizes):
        raise ExamReadError(f"{path}: the NIfTI header gives a grid size of {tuple(sizes)}; every size must be at least 1. The header is damaged.")
    if datatype not in _NIFTI_BYTES:
        raise ExamReadError(f"{path}: unknown NIfTI datatype code {datatype}; the header is damaged or the type unsupported.")
    if bitpix != 8 * _NIFTI_BYTES[datatype]:
        raise ExamReadError(
            f"{path}: the NIfTI header is inconsistent (datatype {datatype} needs {8 * _NIFTI_BYTES[datatype]} bits per voxel, bitpix says {bitpix}). {_REEXPORT}"
        )
    spatial = pixdim[1 : min(ndim, 3) + 1]
    if any(not np.isfinite(s) or s <= 0 for s in spatial):
        raise ExamReadError(
            f"{path}: voxel spacing {tuple(round(float(s), 4) for s in spatial)} mm in the header is not positive and finite; the exam's geometry is unknown. Re-export it with its spacing."
        )
    if not np.isfinite(vox_offset) or vox_offset < sizeof_hdr:
        raise ExamReadError(f"{path}: the NIfTI header's data offset ({vox_offset}) is invalid. {_REEXPORT}")
    if sizeof_hdr == 348:
        _check_qform_sform(path, data, endian, sizes, pixdim)
    n_voxels = math.prod(int(v) for v in sizes)
    need = int(vox_offset) + n_voxels * _NIFTI_BYTES[datatype]
    if total is None:
        return  # size already confirmed (gzip trailer)
    _check_size(path, total, need, "header and voxel data")
    if datatype in (16, 64):
        if len(data) < need:
            data = _read_all(path, None)
        # ITK's NIfTI reader turns NaN into 0 without a word: look at the stored values themselves
        values = np.frombuffer(data, dtype=np.dtype(endian + ("f4" if datatype == 16 else "f8")), count=n_voxels, offset=int(vox_offset))
        bad = ~np.isfinite(values)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            first = int(np.argmax(bad))
            nx = sizes[0]
            ny = sizes[1] if len(sizes) > 1 else 1
            n_nan = int(np.count_nonzero(np.isnan(values)))
            raise ExamReadError(
                f"{path}: {n_bad:,} voxel(s) are not finite numbers ({n_nan:,} NaN, {n_bad - n_nan:,} infinite; first at voxel "
                f"x={first % nx}, y={(first // nx) % ny}, z={first // (nx * ny)}). They are not replaced silently: re-export the image without NaN/inf values."
            )


def _check_qform_sform(path: Path, data: bytes, endian: str, sizes: tuple[int, ...], pixdim: tuple[float, ...]) -> None:
    """Refuse a NIfTI-1 header whose sform alone is sheared, or whose qform and sform both claim
    to hold the geometry but disagree.

    Tools choose differently between the two (ITK, nibabel, FSL, viewers), so such a file means
    different voxel positions in different programs; the lesion coordinates could not be trusted.
    """
    qcode, scode = struct.unpack(endian + "2h", data[252:256])
    if scode <= 0:
        return
    srow = np.array(struct.unpack(endian + "12f", data[280:328]), dtype=float).reshape(3, 4)
    if not np.all(np.isfinite(srow)):
        raise ExamReadError(f"{path}: the NIfTI header's sform holds non-finite numbers; the exam's geometry is unknown. {_REEXPORT}")
    if qcode <= 0:
        lengths = np.linalg.norm(srow[:, :3], axis=0)
        cosines = srow[:, :3] / np.where(lengths > 0, lengths, 1.0)
        if np.any(lengths <= 0) or not np.allclose(cosines.T @ cosines, np.eye(3), atol=1e-3):
            raise ExamReadError(
                f"{path}: its orientation (the NIfTI sform) is sheared, scaled or singular, not a rotation, so voxel positions "
                "cannot be trusted. Resample the image onto an orthogonal grid (e.g. convert the DICOM with dcm2niix) first."
            )
        return
    b, c, d, qx, qy, qz = struct.unpack(endian + "6f", data[256:280])
    if not np.all(np.isfinite([b, c, d, qx, qy, qz])):
        raise ExamReadError(f"{path}: the NIfTI header's qform holds non-finite numbers; the exam's geometry is unknown. {_REEXPORT}")
    a2 = 1.0 - (b * b + c * c + d * d)
    a = np.sqrt(a2) if a2 > 1e-7 else 0.0
    rot = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    spacing = np.array([pixdim[1], pixdim[2] if len(pixdim) > 2 else 1.0, (pixdim[3] if len(pixdim) > 3 else 1.0) * qfac])
    qaff = np.column_stack([rot * spacing, [qx, qy, qz]])
    dims = [int(s) for s in sizes[:3]] + [1] * (3 - min(len(sizes), 3))
    corners = np.array([[i, j, k, 1.0] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1) for k in (0, dims[2] - 1)])
    gap = float(np.max(np.linalg.norm(corners @ qaff.T - corners @ srow.T, axis=1)))
    if gap > QFORM_SFORM_TOLERANCE_MM:
        raise ExamReadError(
            f"{path}: the NIfTI header holds two different geometries: its qform and sform place the grid's corners up to {gap:.1f} mm apart, "
            "and programs differ in which one they use, so voxel positions would depend on the program. "
            "Re-export the exam (e.g. with dcm2niix), or make them agree (fslorient -copysform2qform)."
        )


def _text_header(data: bytes, path: Path, kind: str) -> tuple[list[str], int]:
    """Header lines of a NRRD file (up to the blank line) and the offset where data start."""
    end = data.find(b"\n\n")
    end_r = data.find(b"\r\n\r\n")
    if end_r != -1 and (end == -1 or end_r < end):
        end, sep = end_r, 4
    else:
        sep = 2
    if end == -1:
        # a detached header (.nhdr) may end without a blank line
        return data.decode("latin-1").splitlines(), len(data)
    return data[:end].decode("latin-1").splitlines(), end + sep


def _check_nrrd(path: Path) -> None:
    try:
        head = path.read_bytes()[: 1 << 20] if path.stat().st_size else b""
    except OSError as exc:
        raise ExamReadError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if not head.startswith(b"NRRD"):
        raise ExamReadError(f"{path}: not a NRRD file (it does not start with 'NRRD'). Check the file type.")
    lines, data_start = _text_header(head, path, "NRRD")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.lstrip("=").strip()
    try:
        sizes = [int(s) for s in fields["sizes"].split()]
        dtype = fields["type"].lower()
    except (KeyError, ValueError):
        raise ExamReadError(f"{path}: the NRRD header lacks valid 'sizes' or 'type' fields. {_REEXPORT}") from None
    if any(s < 1 for s in sizes):
        raise ExamReadError(f"{path}: the NRRD header gives sizes {tuple(sizes)}; every size must be at least 1.")
    if dtype not in _NRRD_BYTES:
        if dtype == "block":
            raise ExamReadError(f"{path}: NRRD 'block' data are not an image; export the exam as a scalar volume.")
        raise ExamReadError(f"{path}: unknown NRRD type '{dtype}'.")
    encoding = fields.get("encoding", "raw").lower()
    compressed = {"gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}.get(encoding)
    if encoding not in ("raw", "gzip", "gz", "bzip2", "bz2"):
        return  # text/hex encodings: SimpleITK parses them and fails on missing values
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file:
        if data_file.upper().startswith("LIST") or "%" in data_file:
            return  # several data files: too rare to check here
        target = (path.parent / data_file) if not Path(data_file).is_absolute() else Path(data_file)
        if not target.is_file():
            raise ExamReadError(f"{path}: its data file '{data_file}' is missing (looked for {target}). Keep the .nhdr and its data file together.")
        payload = _read_all(target, compressed)
        culprit = target
    else:
        payload = _read_all(path, None)[data_start:]
        culprit = path
        if compressed:
            try:
                payload = gzip.decompress(payload) if compressed == "gzip" else bz2.decompress(payload)
            except (EOFError, OSError, ValueError, zlib.error) as exc:
                raise ExamReadError(f"{path}: the compressed ({compressed}) voxel data are truncated or corrupt ({exc}). {_REEXPORT}") from None
    need = math.prod(int(v) for v in sizes) * _NRRD_BYTES[dtype]
    skip = int(fields.get("byte skip", "0") or 0)
    if skip > 0:
        need += skip
    _check_size(culprit, len(payload), need, "voxel data")


def _check_meta(path: Path) -> None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ExamReadError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    fields: dict[str, str] = {}
    offset = 0
    while offset < len(raw):
        nl = raw.find(b"\n", offset)
        line = raw[offset : (nl if nl != -1 else len(raw))].decode("latin-1").strip()
        offset = (nl + 1) if nl != -1 else len(raw)
        if "=" not in line:
            if line:
                raise ExamReadError(f"{path}: not a MetaImage (.mha/.mhd) header (line '{line[:40]}'). Check the file type.")
            continue
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    if "elementdatafile" not in fields:
        raise ExamReadError(f"{path}: the MetaImage header has no ElementDataFile line; the file is truncated or not an image. {_REEXPORT}")
    try:
        sizes = [int(s) for s in fields["dimsize"].split()]
        element = fields["elementtype"].upper()
        channels = int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        raise ExamReadError(f"{path}: the MetaImage header lacks valid DimSize or ElementType. {_REEXPORT}") from None
    if any(s < 1 for s in sizes):
        raise ExamReadError(f"{path}: the MetaImage header gives DimSize {tuple(sizes)}; every size must be at least 1.")
    if element not in _MET_BYTES:
        raise ExamReadError(f"{path}: unknown MetaImage ElementType {element}.")
    spacing = fields.get("elementspacing") or fields.get("elementsize")
    if spacing:
        try:
            values = [float(s) for s in spacing.split()]
        except ValueError:
            values = [float("nan")]
        if any(not np.isfinite(v) or v <= 0 for v in values):
            raise ExamReadError(
                f"{path}: ElementSpacing '{spacing}' is not positive and finite; the exam's geometry is unknown. Re-export it with its spacing."
            )
    data_file = fields["elementdatafile"]
    if data_file.upper().startswith("LIST") or "%" in data_file:
        return
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if data_file.upper() == "LOCAL":
        payload, culprit = raw[offset:], path
    else:
        target = path.parent / data_file
        if not target.is_file():
            raise ExamReadError(f"{path}: its data file '{data_file}' is missing (looked for {target}). Keep the .mhd and its data file together.")
        payload, culprit = _read_all(target), target
    if compressed:
        dec = zlib.decompressobj()
        try:
            out = dec.decompress(payload)
        except zlib.error as exc:
            raise ExamReadError(f"{culprit}: the compressed voxel data are corrupt ({exc}). {_REEXPORT}") from None
        if not dec.eof:
            raise ExamReadError(f"{culprit}: the compressed voxel data are truncated (the zlib stream ends early). {_REEXPORT}")
        payload = out
    header_size = int(fields.get("headersize", "0") or 0)
    need = math.prod(int(v) for v in sizes) * _MET_BYTES[element] * channels + max(header_size, 0)
    _check_size(culprit, len(payload), need, "voxel data")


def check_image_file(path: str | Path) -> None:
    """Check a NIfTI/NRRD/MHA file's header against its size before it is read (see module docstring).

    Raises
    ------
    ExamReadError
        Empty, truncated or corrupt-compressed files; headers with impossible sizes or spacing.
    """
    import stat

    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise ExamReadError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise ExamReadError(f"{path}: is not a regular file (a pipe, socket or device), so it is not read; give the image file itself.")
    size = info.st_size
    if size == 0:
        raise ExamReadError(f"{path}: the file is empty (0 bytes). {_REEXPORT}")
    suffix = _suffix(path)
    if suffix in (".nii", ".nii.gz"):
        _check_nifti(path)
    elif suffix in (".nrrd", ".nhdr"):
        _check_nrrd(path)
    elif suffix in (".mha", ".mhd"):
        _check_meta(path)


def check_voxels_finite(array: np.ndarray, source: str | Path, *, what: str = "voxel") -> None:
    """Refuse NaN or infinite values, saying how many and where the first one is (index x, y, z)."""
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return
    bad = ~np.isfinite(array)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        z, y, x = (int(i) for i in np.argwhere(bad)[0]) if array.ndim == 3 else (0, 0, 0)
        n_nan = int(np.count_nonzero(np.isnan(array)))
        raise ExamReadError(
            f"{source}: {n_bad:,} {what}(s) are not finite numbers ({n_nan:,} NaN, {n_bad - n_nan:,} infinite; "
            f"first at voxel x={x}, y={y}, z={z}). They are not replaced silently: re-export the image without NaN/inf values."
        )


def check_geometry_sane(spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...], source: str | Path) -> None:
    """Refuse zero/negative/non-finite spacing, non-finite origin and a direction that is not a rotation."""
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise ExamReadError(
            f"{source}: voxel spacing {tuple(round(s, 4) for s in spacing)} mm is not positive and finite; the exam's geometry is unknown."
        )
    if any(not MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing):
        raise ExamReadError(
            f"{source}: voxel spacing {tuple(float(f'{s:.4g}') for s in spacing)} mm is outside {MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm, "
            "not a CT grid (spacing in metres or micrometres, or a damaged header?). Re-export the image with its spacing in mm."
        )
    if any(not np.isfinite(o) for o in origin):
        raise ExamReadError(f"{source}: the origin {origin} is not finite; the exam's geometry is unknown.")
    if any(abs(o) > MAX_ORIGIN_MM for o in origin):
        raise ExamReadError(
            f"{source}: the origin {tuple(float(f'{o:.4g}') for o in origin)} mm lies more than {MAX_ORIGIN_MM / 1000:g} m from the scanner's centre; the header is damaged or not in mm. Re-export the image."
        )
    m = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(m)) or not np.allclose(m.T @ m, np.eye(3), atol=1e-3):
        raise ExamReadError(
            f"{source}: the direction cosines are not orthonormal (a sheared or damaged orientation), so voxel positions "
            "cannot be trusted. Resample the image onto an orthogonal grid (e.g. convert the DICOM with dcm2niix) first."
        )
