"""Malformed inputs for the ``tsct cases`` commands, generated here, and how to judge each outcome.

Each :class:`Hostile` builds one bad input in a scratch folder and says which command to run on
it, which text the error must name (the culprit: a file, a row and column, an option) and which
paths must not exist afterwards. :func:`run_case` runs the command in-process and
:func:`classify` sorts the outcome into one of:

- ``clear error``: non-zero exit, no traceback, the culprit named, nothing left behind;
- ``vague error``: refused cleanly but without naming the culprit (or with a raw Python warning);
- ``traceback``: an exception escaped (or a traceback was printed);
- ``silent acceptance``: exit status 0;
- ``partial output``: refused, but output or temporary files were left behind.

Used by ``tests/integrity/test_hostile_inputs.py`` (one test per input) and by
``bench/hostile_inputs_tally.py`` (the totals). Images are tiny (12x12x8 voxels) so the whole
set runs in seconds.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

__all__ = ["Hostile", "Built", "HOSTILE", "run_case", "classify", "CATEGORIES"]

CATEGORIES = ("clear error", "vague error", "traceback", "silent acceptance", "partial output")
CSV_HEADER = "case_id,prior,current,status,true_transform,lesion_id,lesion_type,location,center_x_mm,center_y_mm,center_z_mm,radius_mm,label_map,label_value,weight"
SHAPE = (8, 12, 12)  # z, y, x
SPACING = (2.0, 2.0, 2.5)
ORIGIN = (-11.0, -11.0, -8.75)
#: a bone voxel block: index x 4-7, y 4-7, z 2-5 -> centre near (0, 0, 0) mm
BONE_CENTRE = (0.0, 0.0, 0.0)


@dataclass
class Built:
    """What a builder made: the command line, the text the error must contain, paths that must not appear."""

    argv: list[str]
    culprit: str
    must_not_exist: list[Path] = field(default_factory=list)
    watch: list[Path] = field(default_factory=list)  # folders where no new file may appear
    cleanup: Callable[[], None] | None = None  # run after the command (e.g. unmount a tmpfs)


@dataclass(frozen=True)
class Hostile:
    """One malformed input: an id, its family, and a builder ``build(tmp) -> Built``."""

    id: str
    family: str
    build: Callable[[Path], Built]


# ------------------------------------------------------------------------------------------------
# valid building blocks
def ct_array(kind: str = "ct") -> np.ndarray:
    """A tiny CT in HU: air around a soft-tissue body holding a bone block."""
    a = np.full(SHAPE, -1000.0, dtype=np.float32)
    a[1:7, 2:10, 2:10] = 40.0
    a[2:6, 4:8, 4:8] = 700.0
    return a


def ct_image(array: np.ndarray | None = None) -> sitk.Image:
    img = sitk.GetImageFromArray(ct_array() if array is None else array)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def write_image(img: sitk.Image, path: Path, compress: bool | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=bool(compress) if compress is not None else path.name.endswith(".gz"))
    return path


def label_image(value: int = 1, shape: tuple[int, int, int] = SHAPE) -> sitk.Image:
    a = np.zeros(shape, dtype=np.uint16)
    a[3:5, 5:7, 5:7] = value
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def dicom_series(folder: Path, *, patient_id: str = "PAT1", study_date: str = "20240101", birth: str = "19600101") -> list[Path]:
    """A valid 8-slice DICOM CT series of the tiny CT (written by the project's own writer)."""
    from cases import Volume, write_dicom_series

    vol = Volume(ct_array(), (SPACING[0], SPACING[1], SPACING[2]), ORIGIN)
    return write_dicom_series(
        vol,
        folder,
        series_description="hostile test",
        patient_id=patient_id,
        study_date=study_date,
        template={"PatientBirthDate": birth, "PatientSex": "F"},
    )


def _edit_dicom(path: Path, edit: Callable) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=False)


def _caselist(tmp: Path, rows: list[str], header: str = CSV_HEADER, name: str = "list.csv") -> Path:
    path = tmp / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _valid_pair(tmp: Path) -> tuple[str, str]:
    write_image(ct_image(), tmp / "prior.nii.gz")
    write_image(ct_image(), tmp / "current.nii.gz")
    return "prior.nii.gz", "current.nii.gz"


def _normal_row(case_id: str = "C1", prior: str = "prior.nii.gz", current: str = "current.nii.gz") -> str:
    return f"{case_id},{prior},{current},normal,,,,,,,,,,,"


def _lesion_row(
    case_id: str = "C1",
    *,
    lid: str = "L1",
    ltype: str = "lytic",
    loc: str = "vertebral_body",
    center=BONE_CENTRE,
    radius: str = "3",
    label_map: str = "",
    label_value: str = "",
    weight: str = "",
    prior: str = "prior.nii.gz",
    current: str = "current.nii.gz",
) -> str:
    cx, cy, cz = (str(c) for c in center)
    return f"{case_id},{prior},{current},abnormal,,{lid},{ltype},{loc},{cx},{cy},{cz},{radius},{label_map},{label_value},{weight}"


# ------------------------------------------------------------------------------------------------
# image-file mutations (NIfTI / NRRD / MHA)
FORMATS = {"nii": ".nii", "niigz": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha"}


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])


def _mut_truncate(frac: float) -> Callable[[Path, str], None]:
    def f(path: Path, suffix: str) -> None:
        # uncompressed copies so that the cut falls inside the voxel data
        write_image(ct_image(), path, compress=suffix.endswith(".gz"))
        _truncate(path, frac)

    return f


def _mut_array(make: Callable[[], np.ndarray]) -> Callable[[Path, str], None]:
    def f(path: Path, suffix: str) -> None:
        write_image(ct_image(make()), path)

    return f


def _nan() -> np.ndarray:
    a = ct_array()
    a[4, 6, 6] = np.nan
    return a


def _inf() -> np.ndarray:
    a = ct_array()
    a[1, 3, 3] = np.inf
    a[5, 3, 3] = -np.inf
    return a


def _mut_2d(path: Path, suffix: str) -> None:
    img = sitk.GetImageFromArray(ct_array()[4])
    write_image(img, path)


def _mut_4d(path: Path, suffix: str) -> None:
    img = sitk.JoinSeries([ct_image(), ct_image(), ct_image()])
    write_image(img, path)


def _mut_one_slice(path: Path, suffix: str) -> None:
    write_image(ct_image(ct_array()[3:4]), path)


def _mut_rgb(path: Path, suffix: str) -> None:
    a = np.stack([ct_array()] * 3, axis=-1)
    img = sitk.GetImageFromArray(a, isVector=True)
    write_image(img, path)


def _mut_garbage(path: Path, suffix: str) -> None:
    path.write_bytes(os.urandom(3000))


def _mut_empty(path: Path, suffix: str) -> None:
    path.write_bytes(b"")


def _mut_corrupt_stream(path: Path, suffix: str) -> None:
    """Flip bytes inside compressed data (gzip CRC / zlib stream damage)."""
    write_image(ct_image(), path, compress=True)
    data = bytearray(path.read_bytes())
    mid = len(data) * 2 // 3
    for i in range(mid, min(mid + 16, len(data) - 8)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _mut_zero_spacing(path: Path, suffix: str) -> None:
    write_image(ct_image(), path, compress=False)
    data = bytearray(path.read_bytes())
    if suffix in (".nii", ".nii.gz"):
        raw = bytearray(gzip.decompress(bytes(data))) if suffix == ".nii.gz" else data
        struct.pack_into("<f", raw, 76 + 4, 0.0)  # pixdim[1] = 0
        path.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    elif suffix == ".mha":
        path.write_bytes(bytes(data).replace(b"ElementSpacing = 2 2 2.5", b"ElementSpacing = 0 2 2.5"))
    else:
        path.write_bytes(bytes(data).replace(b"space directions: (2,0,0)", b"space directions: (0,0,0)"))


CT_MUTATIONS: dict[str, tuple[Callable[[Path, str], None], str]] = {
    # name: (mutation, text the error must contain besides the file name)
    "truncated-half": (_mut_truncate(0.5), ""),
    "truncated-90pc": (_mut_truncate(0.9), ""),
    "truncated-header": (_mut_truncate(0.05), ""),
    "empty-file": (_mut_empty, ""),
    "garbage-bytes": (_mut_garbage, ""),
    "nan-voxel": (_mut_array(_nan), "NaN"),
    "inf-voxels": (_mut_array(_inf), "infinite"),
    "2d-image": (_mut_2d, "2-D"),
    "4d-series": (_mut_4d, "4-D"),
    "one-slice": (_mut_one_slice, "3-D"),
    "rgb-vector": (_mut_rgb, "components"),
    "normalised-0-1": (_mut_array(lambda: (ct_array() + 1000) / 1700), "not a CT"),
    "8bit-picture": (_mut_array(lambda: np.clip((ct_array() + 1000) / 7, 0, 255)), "8-bit"),
    "raw-no-intercept": (_mut_array(lambda: ct_array() + 1024), "rescale"),
    "beyond-hu-range": (_mut_array(lambda: ct_array() * 1000), "outside the HU range"),
    "constant": (_mut_array(lambda: np.full(SHAPE, 40.0, np.float32)), "not a CT"),
    "zero-spacing": (_mut_zero_spacing, "spacing"),
}


def _image_import_case(
    fmt: str, mutation: str, mutate: Callable[[Path, str], None] | None = None, extra: str = "", family: str = "image file"
) -> Hostile:
    """``tsct cases import`` of a file ``bad<suffix>`` made by ``mutate`` (default: ``CT_MUTATIONS[mutation]``)."""
    suffix = FORMATS[fmt]
    if mutate is None:
        mutate, extra = CT_MUTATIONS[mutation]

    def build(tmp: Path) -> Built:
        src = tmp / f"bad{suffix}"
        mutate(src, suffix)
        out = tmp / "out" / "exam.nii.gz"
        return Built(["cases", "import", str(src), str(out)], f"bad{suffix}" + (f"|{extra}" if extra else ""), [out, tmp / "out"], [tmp])

    return Hostile(f"import-{fmt}-{mutation}", family, build)


def _corrupt_case(fmt: str) -> Hostile:
    suffix = {"niigz": ".nii.gz", "mha": ".mha", "nrrd": ".nrrd"}[fmt]

    def build(tmp: Path) -> Built:
        src = tmp / f"bad{suffix}"
        _mut_corrupt_stream(src, suffix)
        out = tmp / "exam.nii.gz"
        return Built(["cases", "import", str(src), str(out)], f"bad{suffix}", [out], [tmp])

    return Hostile(f"import-{fmt}-corrupt-compressed-stream", "image file", build)


def _detached_case(kind: str) -> Hostile:
    def build(tmp: Path) -> Built:
        header = tmp / ("bad.mhd" if kind.startswith("mhd") else "bad.nhdr")
        write_image(ct_image(), header, compress=False)
        data = [p for p in tmp.iterdir() if p != header][0]
        if kind.endswith("missing-data"):
            data.unlink()
            culprit = header.name
        else:
            _truncate(data, 0.5)
            culprit = data.name
        out = tmp / "exam.nii.gz"
        return Built(["cases", "import", str(header), str(out)], culprit, [out], [tmp])

    return Hostile(f"import-{kind}", "image file", build)


# ------------------------------------------------------------------------------------------------
# DICOM mutations: each edits a valid 8-slice series
def _dicom_case(name: str, mutate: Callable[[Path, list[Path]], str], extra: str = "", *, args: tuple[str, ...] = ()) -> Hostile:
    def build(tmp: Path) -> Built:
        folder = tmp / "series"
        files = dicom_series(folder)
        culprit = mutate(folder, files)
        out = tmp / "exam.nii.gz"
        return Built(["cases", "import", str(folder), str(out), *args], culprit + (f"|{extra}" if extra else ""), [out], [tmp])

    return Hostile(f"dicom-{name}", "DICOM", build)


def _set(attr: str, value, index: int = 3) -> Callable[[Path, list[Path]], str]:
    def m(folder: Path, files: list[Path]) -> str:
        _edit_dicom(files[index], lambda ds: setattr(ds, attr, value))
        return files[index].name

    return m


def _delete(attr: str, index: int = 3) -> Callable[[Path, list[Path]], str]:
    def m(folder: Path, files: list[Path]) -> str:
        def edit(ds):
            delattr(ds, attr)

        _edit_dicom(files[index], edit)
        return files[index].name

    return m


def _delete_many(attr: str, indices: tuple[int, ...]) -> Callable[[Path, list[Path]], str]:
    def m(folder: Path, files: list[Path]) -> str:
        for i in indices:
            _delete(attr, i)(folder, files)
        return "|".join(files[i].name for i in indices)  # every culprit named

    return m


def _truncate_file(index: int, keep: float | int) -> Callable[[Path, list[Path]], str]:
    def m(folder: Path, files: list[Path]) -> str:
        data = files[index].read_bytes()
        n = keep if isinstance(keep, int) else int(len(data) * keep)
        files[index].write_bytes(data[:n])
        return files[index].name

    return m


def _patched(attr: str, value, old: bytes, new: bytes, index: int = 3) -> Callable[[Path, list[Path]], str]:
    """Set a header value, then replace its bytes in the file by same-length junk (not a number)."""

    def m(folder: Path, files: list[Path]) -> str:
        _edit_dicom(files[index], lambda ds: setattr(ds, attr, value))
        data = files[index].read_bytes()
        assert old in data
        files[index].write_bytes(data.replace(old, new, 1))
        return files[index].name

    return m


def _duplicate_copy(folder: Path, files: list[Path]) -> str:
    shutil.copy(files[4], folder / "copy_of_slice.dcm")
    return "copy_of_slice.dcm"


def _duplicate_position(folder: Path, files: list[Path]) -> str:
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(files[4])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / "second_acquisition.dcm")
    return "duplicated slice"


def _missing_slice(folder: Path, files: list[Path]) -> str:
    files[4].unlink()
    return files[5].name


def _tilted_odd(folder: Path, files: list[Path]) -> str:
    def edit(ds):
        p = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [p[0] + 6.0, p[1], p[2]]

    _edit_dicom(files[3], edit)
    return files[3].name


def _other_orientation(folder: Path, files: list[Path]) -> str:
    _edit_dicom(files[5], lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    return files[5].name


def _oblique_nonorthonormal(folder: Path, files: list[Path]) -> str:
    for f in files:
        _edit_dicom(f, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0.5, 1, 0]))
    return "ImageOrientationPatient"


def _mixed_series(folder: Path, files: list[Path]) -> str:
    dicom_series(folder.parent / "other")
    for f in (folder.parent / "other").iterdir():
        shutil.move(str(f), folder / f"other_{f.name}")
    return "2 DICOM series"


def _single_slice(folder: Path, files: list[Path]) -> str:
    for f in files[1:]:
        f.unlink()
    return files[0].name


def _empty_folder(folder: Path, files: list[Path]) -> str:
    for f in files:
        f.unlink()
    return "no DICOM series"


def _text_files(folder: Path, files: list[Path]) -> str:
    for f in files:
        f.unlink()
    (folder / "scan1.bin").write_bytes(os.urandom(500))
    (folder / "scan2.bin").write_bytes(os.urandom(500))
    return "no DICOM series"


def _all(attr: str, value) -> Callable[[Path, list[Path]], str]:
    def m(folder: Path, files: list[Path]) -> str:
        for f in files:
            _edit_dicom(f, lambda ds: setattr(ds, attr, value))
        return files[0].name

    return m


def _compressed(syntax: str, bits: int = 12) -> Callable[[Path, list[Path]], str]:
    """Claim a compressed transfer syntax with encapsulated (undecodable) data in every slice."""

    def m(folder: Path, files: list[Path]) -> str:
        import pydicom
        from pydicom.encaps import encapsulate

        for f in files:
            ds = pydicom.dcmread(f)
            ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(syntax)
            ds.BitsStored = bits
            ds.HighBit = bits - 1
            ds.PixelData = encapsulate([b"\xff\xd8\xff" + os.urandom(200) + b"\xff\xd9"])
            ds["PixelData"].VR = "OB"
            ds.save_as(f, enforce_file_format=True)
        return files[0].name

    return m


def _rescale_huge(folder: Path, files: list[Path]) -> str:
    for f in files:
        _edit_dicom(f, lambda ds: setattr(ds, "RescaleIntercept", 40000))
    return "series"


def _raw_values(folder: Path, files: list[Path]) -> str:
    def edit(ds):
        a = ds.pixel_array.astype(np.int32) + 1024
        ds.PixelData = a.astype(np.int16).tobytes()

    for f in files:
        _edit_dicom(f, edit)
    return "series"


def _odd_rows(folder: Path, files: list[Path]) -> str:
    def edit(ds):
        ds.Rows = 10
        ds.PixelData = ds.PixelData[: 10 * 12 * 2]

    _edit_dicom(files[2], edit)
    return files[2].name


# ------------------------------------------------------------------------------------------------
# output paths
def _output_case(name: str, arrange: Callable[[Path], tuple[list[str], str, list[Path]]]) -> Hostile:
    def build(tmp: Path) -> Built:
        argv, culprit, gone = arrange(tmp)
        return Built(argv, culprit, gone, [tmp])

    return Hostile(f"output-{name}", "output path", build)


def _import_into(
    target_of: Callable[[Path], Path], culprit: str = "", extra: tuple[str, ...] = ()
) -> Callable[[Path], tuple[list[str], str, list[Path]]]:
    def arrange(tmp: Path) -> tuple[list[str], str, list[Path]]:
        src = write_image(ct_image(), tmp / "src" / "exam.nii.gz")
        out = target_of(tmp)
        return ["cases", "import", str(src), str(out), *extra], culprit or out.name, []

    return arrange


def _synth_into(
    target_of: Callable[[Path], Path], extra: tuple[str, ...] = (), culprit: str = ""
) -> Callable[[Path], tuple[list[str], str, list[Path]]]:
    def arrange(tmp: Path) -> tuple[list[str], str, list[Path]]:
        out = target_of(tmp)
        return ["cases", "synth", str(out), "--n-cases", "1", "--size", "small", *extra], culprit or out.name, []

    return arrange


def _file_at(tmp: Path, rel: str) -> Path:
    p = tmp / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("an existing file")
    return p


def _existing_output(tmp: Path) -> Path:
    return _file_at(tmp, "exists.nii.gz")


def _folder_output(tmp: Path) -> Path:
    (tmp / "a_folder.nii.gz").mkdir()
    return tmp / "a_folder.nii.gz"


def _under_file(tmp: Path) -> Path:
    _file_at(tmp, "blocker")
    return tmp / "blocker" / "sub" / "exam.nii.gz"


def _proc_output(tmp: Path) -> Path:
    return Path("/proc/tsct-no-such-dir/exam.nii.gz")


def _bad_suffix(tmp: Path) -> Path:
    return tmp / "exam.txt"


def _synth_file(tmp: Path) -> Path:
    return _file_at(tmp, "set")


def _synth_nonempty(tmp: Path) -> Path:
    _file_at(tmp, "set/notes.txt")
    return tmp / "set"


def _synth_existing(tmp: Path) -> Path:
    _file_at(tmp, "set/caselist.csv")
    return tmp / "set"


def _synth_under_file(tmp: Path) -> Path:
    _file_at(tmp, "blocker")
    return tmp / "blocker" / "set"


def _synth_proc(tmp: Path) -> Path:
    return Path("/proc/tsct-no-such-dir/set")


def _synth_fresh(tmp: Path) -> Path:
    return tmp / "set"


# ------------------------------------------------------------------------------------------------
# case lists: structure
def _csv_case(
    name: str, rows: Callable[[Path], list[str]] | list[str], culprit: str, header: str = CSV_HEADER, *, images: bool = True, raw: bytes | None = None
) -> Hostile:
    def build(tmp: Path) -> Built:
        _valid_pair(tmp)
        if raw is not None:
            path = tmp / "list.csv"
            path.write_bytes(raw)
        else:
            path = _caselist(tmp, rows(tmp) if callable(rows) else rows, header)
        argv = ["cases", "validate", str(path)] + ([] if images else ["--no-check-images"])
        return Built(argv, culprit, [], [tmp])

    return Hostile(f"caselist-{name}", "case list", build)


def _content_case(name: str, arrange: Callable[[Path], tuple[list[str], str]], family: str = "truth and exams") -> Hostile:
    def build(tmp: Path) -> Built:
        rows, culprit = arrange(tmp)
        wide = any(row.count(",") > CSV_HEADER.count(",") for row in rows)
        path = _caselist(tmp, rows, CSV_HEADER + (",same_patient" if wide else ""))
        return Built(["cases", "validate", str(path)], culprit, [], [tmp])

    return Hostile(f"content-{name}", family, build)


def _exam_in_list(column: str, fmt: str, mutation: str) -> Hostile:
    suffix = FORMATS[fmt]
    mutate, _ = CT_MUTATIONS[mutation]

    def arrange(tmp: Path) -> tuple[list[str], str]:
        _valid_pair(tmp)
        bad = tmp / f"bad{suffix}"
        mutate(bad, suffix)
        prior, current = ("prior.nii.gz", "current.nii.gz")
        if column == "prior":
            prior = bad.name
        else:
            current = bad.name
        return [_normal_row(prior=prior, current=current)], f"row 2, column '{column}'|bad{suffix}"

    return _content_case(f"{column}-{fmt}-{mutation}", arrange)


def _label_in_list(fmt: str, mutation: str) -> Hostile:
    suffix = FORMATS[fmt]
    mutate, _ = CT_MUTATIONS[mutation]

    def arrange(tmp: Path) -> tuple[list[str], str]:
        _valid_pair(tmp)
        bad = tmp / f"labels{suffix}"
        mutate(bad, suffix)
        return [_lesion_row(label_map=bad.name, label_value="1", radius="")], f"row 2, column 'label_map'|labels{suffix}"

    return _content_case(f"labelmap-{fmt}-{mutation}", arrange, "label map")


def _label_case(name: str, make: Callable[[Path], sitk.Image], culprit_column: str = "label_map", value: str = "1", center=BONE_CENTRE) -> Hostile:
    def arrange(tmp: Path) -> tuple[list[str], str]:
        _valid_pair(tmp)
        write_image(make(tmp), tmp / "labels.nii.gz")
        return [_lesion_row(label_map="labels.nii.gz", label_value=value, radius="", center=center)], f"row 2, column '{culprit_column}'"

    return _content_case(f"labelmap-{name}", arrange, "label map")


def _shifted_labels(tmp: Path) -> sitk.Image:
    img = label_image()
    img.SetOrigin((ORIGIN[0] + 30, ORIGIN[1], ORIGIN[2]))
    return img


def _respaced_labels(tmp: Path) -> sitk.Image:
    img = label_image()
    img.SetSpacing((1.0, 1.0, 1.0))
    return img


def _other_size_labels(tmp: Path) -> sitk.Image:
    return label_image(shape=(8, 12, 10))


def _rotated_labels(tmp: Path) -> sitk.Image:
    img = label_image()
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    return img


def _far_labels(tmp: Path) -> sitk.Image:
    a = np.zeros(SHAPE, dtype=np.uint16)
    a[0, 0, 0] = 1
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def _empty_labels(tmp: Path) -> sitk.Image:
    return label_image(value=0)


def _prob_labels(tmp: Path) -> sitk.Image:
    a = np.zeros(SHAPE, dtype=np.float32)
    a[3:5, 5:7, 5:7] = 0.7
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def _negative_labels(tmp: Path) -> sitk.Image:
    a = np.zeros(SHAPE, dtype=np.int16)
    a[3:5, 5:7, 5:7] = -1
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def _dicom_pair(tmp: Path, *, prior_kw: dict | None = None, current_kw: dict | None = None) -> tuple[str, str]:
    dicom_series(tmp / "prior_dcm", **(prior_kw or {}))
    dicom_series(tmp / "current_dcm", **{"study_date": "20240701", **(current_kw or {})})
    return "prior_dcm", "current_dcm"


def _patients(kind: str) -> Callable[[Path], tuple[list[str], str]]:
    def arrange(tmp: Path) -> tuple[list[str], str]:
        if kind == "id":
            p, c = _dicom_pair(tmp, current_kw={"patient_id": "PAT2"})
            return [_normal_row(prior=p, current=c)], "row 2, column 'current'|different patients|same_patient"
        if kind == "birth":
            p, c = _dicom_pair(tmp, current_kw={"birth": "19700101"})
            return [_normal_row(prior=p, current=c)], "row 2, column 'current'|birth date"
        if kind == "dates":
            p, c = _dicom_pair(tmp, prior_kw={"study_date": "20250101"})
            return [_normal_row(prior=p, current=c)], "row 2, column 'prior'|swapped"
        if kind == "same-file":
            _valid_pair(tmp)
            return [_normal_row(current="prior.nii.gz")], "row 2, column 'current'|same exam"
        if kind == "bad-override":
            p, c = _dicom_pair(tmp, current_kw={"patient_id": "PAT2"})
            return [f"C1,{p},{c},normal,,,,,,,,,,,,maybe"], "row 2, column 'same_patient'"  # header gets same_patient
        if kind == "dicom-truncated-slice":
            _valid_pair(tmp)
            files = dicom_series(tmp / "current_dcm", study_date="20240701")
            files[6].write_bytes(files[6].read_bytes()[:400])
            return [_normal_row(current="current_dcm")], f"row 2, column 'current'|{files[6].name}"
        raise AssertionError(kind)

    return arrange


def _truth(kind: str) -> Callable[[Path], tuple[list[str], str]]:
    def arrange(tmp: Path) -> tuple[list[str], str]:
        _valid_pair(tmp)
        if kind == "x5000":
            return [_lesion_row(center=(5000, 0, 0))], "row 2, column 'center_x_mm'|outside the current exam"
        if kind == "z-beyond":
            return [_lesion_row(center=(0, 0, 60))], "row 2, column 'center_x_mm'|outside the current exam"
        if kind == "in-air":
            return [_lesion_row(center=(-10, -10, -8), radius="1")], "row 2, column 'center_x_mm'|air"
        if kind == "second-lesion-outside":
            return [_lesion_row(), _lesion_row(lid="L2", center=(0, -400, 0))], "row 3, column 'center_x_mm'"
        if kind == "transform-garbage":
            (tmp / "t.tfm").write_text("not a transform\n")
            return ["C1,prior.nii.gz,current.nii.gz,normal,t.tfm,,,,,,,,,,"], "row 2, column 'true_transform'"
        raise AssertionError(kind)

    return arrange


def _exam_kind(kind: str) -> Callable[[Path], tuple[list[str], str]]:
    def arrange(tmp: Path) -> tuple[list[str], str]:
        _valid_pair(tmp)
        if kind == "nifti-folder":
            write_image(ct_image(), tmp / "niftis" / "a.nii.gz")
            return [_normal_row(prior="niftis")], "row 2, column 'prior'|no DICOM series"
        if kind == "label-map-as-prior":
            write_image(label_image(3), tmp / "seg.nii.gz")
            return [_normal_row(prior="seg.nii.gz")], "row 2, column 'prior'|seg.nii.gz"
        if kind == "zmap-as-current":
            rng = np.random.default_rng(0)
            write_image(ct_image(rng.normal(0, 2, SHAPE).astype(np.float32)), tmp / "zmap.nii.gz")
            return [_normal_row(current="zmap.nii.gz")], "row 2, column 'current'|zmap.nii.gz"
        if kind == "empty-folder":
            (tmp / "empty").mkdir()
            return [_normal_row(current="empty")], "row 2, column 'current'|no DICOM series"
        raise AssertionError(kind)

    return arrange


def _many_problems(tmp: Path) -> list[str]:
    return [f"C{i},missing{i}.nii.gz,current.nii.gz,sick,,,,,,,,,,," for i in range(40)]


def build_hostile() -> list[Hostile]:
    """Every malformed input of the suite."""
    out: list[Hostile] = []
    # image files through `cases import`: 4 formats x 17 mutations, + compressed-stream and detached-file damage
    for fmt in FORMATS:
        for mutation in CT_MUTATIONS:
            if mutation == "zero-spacing" and fmt == "nrrd":
                continue  # NRRD's spacing lives in 'space directions'; covered by the other formats
            out.append(_image_import_case(fmt, mutation))
    out += [_corrupt_case(f) for f in ("niigz", "mha", "nrrd")]
    out += [_detached_case(k) for k in ("mhd-missing-data", "mhd-truncated-data", "nhdr-missing-data", "nhdr-truncated-data")]
    # DICOM series through `cases import`
    out += [
        _dicom_case("other-orientation-slice", _other_orientation, "another orientation"),
        _dicom_case("slice-off-the-stack", _tilted_odd, "off the line"),
        _dicom_case("non-orthonormal-orientation", _oblique_nonorthonormal),
        _dicom_case("duplicate-copy", _duplicate_copy, "copy"),
        _dicom_case("duplicate-position", _duplicate_position, "second_acquisition.dcm"),
        _dicom_case("missing-slice", _missing_slice, "missing slice"),
        _dicom_case("truncated-pixels-middle", _truncate_file(4, 0.6), "truncat"),
        _dicom_case("truncated-pixels-last", _truncate_file(7, 0.8), "truncat"),
        _dicom_case("truncated-pixels-first", _truncate_file(0, 0.7), "truncat"),
        _dicom_case("truncated-header", _truncate_file(3, 300)),
        _dicom_case("truncated-to-preamble", _truncate_file(5, 140)),
        _dicom_case("empty-slice-file", _truncate_file(2, 0), "empty"),
        _dicom_case("missing-ipp-middle", _delete("ImagePositionPatient", 3), "ImagePositionPatient"),
        _dicom_case("missing-ipp-last", _delete("ImagePositionPatient", 7), "ImagePositionPatient"),
        _dicom_case("missing-ipp-first", _delete("ImagePositionPatient", 0), "ImagePositionPatient"),
        _dicom_case("missing-iop", _delete("ImageOrientationPatient", 5), "ImageOrientationPatient"),
        _dicom_case("missing-ipp-three-slices", _delete_many("ImagePositionPatient", (1, 4, 6)), "3 of 8 slices"),
        _dicom_case("missing-pixel-spacing", _delete("PixelSpacing", 6), "PixelSpacing"),
        _dicom_case("missing-pixel-data", _delete("PixelData", 4)),
        _dicom_case("odd-pixel-spacing", _set("PixelSpacing", [1.0, 1.0], 2), "PixelSpacing"),
        _dicom_case("odd-matrix", _odd_rows),
        _dicom_case("multiframe", _set("NumberOfFrames", 2, 0), "multi-frame"),
        _dicom_case("colour", _all("SamplesPerPixel", 3), "colour"),
        _dicom_case("modality-mr", _all("Modality", "MR"), "Modality is MR"),
        _dicom_case("mixed-series", _mixed_series),
        _dicom_case("unknown-series-uid", lambda f, fs: "1.2.3.4", args=("--series-uid", "1.2.3.4")),
        _dicom_case("single-slice", _single_slice, "single slice"),
        _dicom_case("empty-folder", _empty_folder),
        _dicom_case("non-dicom-files", _text_files),
        _dicom_case("jpeg-12bit-lossy", _compressed("1.2.840.10008.1.2.4.51", 12), "pylibjpeg"),
        _dicom_case("jpeg-baseline-garbage", _compressed("1.2.840.10008.1.2.4.50", 8)),
        _dicom_case("jpeg2000-garbage", _compressed("1.2.840.10008.1.2.4.91", 16)),
        _dicom_case("jpeg2000-lossless-garbage", _compressed("1.2.840.10008.1.2.4.90", 16)),
        _dicom_case("jpegls-garbage", _compressed("1.2.840.10008.1.2.4.80", 16)),
        _dicom_case("jpeg-lossless-garbage", _compressed("1.2.840.10008.1.2.4.70", 16)),
        _dicom_case("rle-garbage", _compressed("1.2.840.10008.1.2.5", 16)),
        _dicom_case("htj2k", _compressed("1.2.840.10008.1.2.4.201", 16), "pylibjpeg"),
        _dicom_case("rescale-beyond-hu", _rescale_huge, "HU range"),
        _dicom_case("raw-without-intercept", _raw_values, "rescale"),
        _dicom_case("zero-pixel-spacing", _set("PixelSpacing", [0.0, 0.0], 4), "PixelSpacing"),
        _dicom_case(
            "ipp-not-numeric", _patched("ImagePositionPatient", [11.25, 22.5, 33.75], b"11.25\\22.5\\33.75", b"ab.cd\\ef.g\\hi.jk"), "not numeric"
        ),
        _dicom_case("spacing-not-numeric", _patched("PixelSpacing", [2.25, 2.5], b"2.25\\2.5", b"x.yz\\w.v"), "not numeric"),
        _dicom_case("slope-not-numeric", _patched("RescaleSlope", 1.5, b"1.5", b"a.b"), "not valid"),
        _dicom_case(
            "frames-not-numeric", _patched("NumberOfFrames", "1", b"\x28\x00\x08\x00IS\x02\x001 ", b"\x28\x00\x08\x00IS\x02\x00x "), "not valid"
        ),
        _dicom_case("slope-zero", _set("RescaleSlope", 0, 5), "RescaleSlope"),
        _dicom_case("photometric-rgb", _set("PhotometricInterpretation", "RGB", 2), "RGB"),
        _dicom_case("palette-colour", _all("PhotometricInterpretation", "PALETTE COLOR"), "PALETTE COLOR"),
        _dicom_case("bits-allocated-12", _set("BitsAllocated", 12, 6), "BitsAllocated"),
        _dicom_case("bits-stored-20", _set("BitsStored", 20, 1)),
    ]
    # output paths
    out += [
        _output_case("import-existing-file", _import_into(_existing_output, "exists.nii.gz|--overwrite")),
        _output_case("import-onto-folder", _import_into(_folder_output, "a_folder.nii.gz|folder")),
        _output_case("import-under-a-file", _import_into(_under_file, "blocker")),
        _output_case("import-unwritable", _import_into(_proc_output, "/proc")),
        _output_case("import-bad-suffix", _import_into(_bad_suffix, "exam.txt")),
        _output_case("synth-onto-file", _synth_into(_synth_file, culprit="set|is a file")),
        _output_case("synth-non-empty", _synth_into(_synth_nonempty, culprit="set|already holds")),
        _output_case("synth-existing-set", _synth_into(_synth_existing, culprit="caselist.csv")),
        _output_case("synth-under-a-file", _synth_into(_synth_under_file, culprit="blocker")),
        _output_case("synth-unwritable", _synth_into(_synth_proc, culprit="/proc")),
        _output_case("synth-bad-size", _synth_into(_synth_fresh, ("--size", "huge"), culprit="--size")),
    ]
    # case lists: ids and structure (files exist and are valid unless the row says otherwise)
    for label, cid, why in [
        ("id-traversal", "../../evil", "path separator"),
        ("id-slash", "a/b", "path separator"),
        ("id-backslash", "a\\b", "path separator"),
        ("id-absolute", "/etc/x", "path separator"),
        ("id-dotdot", "..", "path separator"),
        ("id-hidden", ".hidden", "starts with"),
        ("id-space", "case 1", "' '"),
        ("id-colon", "c:1", "':'"),
        ("id-reserved-con", "CON", "reserved"),
        ("id-reserved-nul-ext", "nul.txt", "reserved"),
        ("id-reserved-com1", "com1", "reserved"),
        ("id-trailing-dot", "case.", "ends with"),
        ("id-too-long", "x" * 70, "64"),
        ("id-non-ascii", "cas\u00e9", "'\u00e9'"),
        ("id-wildcard", "c*", "'*'"),
    ]:
        out.append(_csv_case(label, [_normal_row(case_id=cid)], f"row 2, column 'case_id'|{why}"))
    out += [
        _csv_case("id-case-collision", [_normal_row("P1"), _normal_row("p1")], "row 3, column 'case_id'|upper/lower case"),
        _csv_case("id-empty", [_normal_row("")], "row 2, column 'case_id'"),
        _csv_case("missing-column", ["C1,prior.nii.gz,normal"], "current", header="case_id,prior,status"),
        _csv_case("unknown-column", ["C1,prior.nii.gz,current.nii.gz,normal,x"], "colour", header="case_id,prior,current,status,colour"),
        _csv_case(
            "duplicate-column", ["C1,prior.nii.gz,current.nii.gz,normal,normal"], "appears twice", header="case_id,prior,current,status,status"
        ),
        _csv_case("empty-file", [], "empty", raw=b""),
        _csv_case("header-only", [], "no cases", raw=(CSV_HEADER + "\n").encode()),
        _csv_case("not-utf8", [], "UTF-8", raw=(CSV_HEADER + "\nC1,pr\xe9or.nii.gz,current.nii.gz,normal,,,,,,,,,,,\n").encode("latin-1")),
        _csv_case("binary-file", [], "list.csv", raw=os.urandom(600)),
        _csv_case("too-many-values", [_normal_row() + ",extra,values"], "row 2"),
        _csv_case("bad-status", ["C1,prior.nii.gz,current.nii.gz,sick,,,,,,,,,,,"], "row 2, column 'status'"),
        _csv_case("prior-missing", [_normal_row(prior="nowhere.nii.gz")], "row 2, column 'prior'|nowhere.nii.gz"),
        _csv_case("current-missing", [_normal_row(current="nowhere_dir")], "row 2, column 'current'|nowhere_dir"),
        _csv_case("prior-empty", [_normal_row(prior="")], "row 2, column 'prior'"),
        _csv_case("lesion-type", [_lesion_row(ltype="cystic")], "row 2, column 'lesion_type'|cystic"),
        _csv_case("location", [_lesion_row(loc="skull")], "row 2, column 'location'|skull"),
        _csv_case("centre-text", [_lesion_row(center=("abc", 0, 0))], "row 2, column 'center_x_mm'|abc"),
        _csv_case("centre-nan", [_lesion_row(center=(0, "nan", 0))], "row 2, column 'center_y_mm'"),
        _csv_case("centre-inf", [_lesion_row(center=(0, 0, "inf"))], "row 2, column 'center_z_mm'"),
        _csv_case("centre-empty", [_lesion_row(center=(0, "", 0))], "row 2, column 'center_y_mm'"),
        _csv_case("radius-negative", [_lesion_row(radius="-2")], "row 2, column 'radius_mm'"),
        _csv_case("radius-zero", [_lesion_row(radius="0")], "row 2, column 'radius_mm'"),
        _csv_case("radius-huge", [_lesion_row(radius="4000")], "row 2, column 'radius_mm'"),
        _csv_case("no-extent", [_lesion_row(radius="")], "row 2, column 'radius_mm'"),
        _csv_case("label-value-text", [_lesion_row(label_map="current.nii.gz", label_value="two")], "row 2, column 'label_value'"),
        _csv_case("label-value-zero", [_lesion_row(label_map="current.nii.gz", label_value="0")], "row 2, column 'label_value'"),
        _csv_case("label-value-without-map", [_lesion_row(label_value="3")], "row 2, column 'label_value'"),
        _csv_case("label-map-missing", [_lesion_row(label_map="nolabels.nii.gz", radius="")], "row 2, column 'label_map'|nolabels.nii.gz"),
        _csv_case("weight-above-1", [_lesion_row(weight="1.5")], "row 2, column 'weight'"),
        _csv_case("weights-sum", [_lesion_row(weight="0.5"), _lesion_row(lid="L2", weight="0.2")], "column 'weight'|sum"),
        _csv_case("weights-partial", [_lesion_row(weight="0.5"), _lesion_row(lid="L2")], "column 'weight'"),
        _csv_case("normal-with-lesion", ["C1,prior.nii.gz,current.nii.gz,normal,,L1,lytic,vertebral_body,0,0,0,3,,,"], "row 2"),
        _csv_case("abnormal-without-lesion", ["C1,prior.nii.gz,current.nii.gz,abnormal,,,,,,,,,,,"], "row 2, column 'lesion_id'"),
        _csv_case("duplicate-lesion-id", [_lesion_row(), _lesion_row()], "row 3, column 'lesion_id'"),
        _csv_case("case-columns-disagree", [_lesion_row(), _lesion_row(lid="L2", prior="current.nii.gz")], "row 3, column 'prior'"),
        _csv_case("transform-missing", ["C1,prior.nii.gz,current.nii.gz,normal,none.tfm,,,,,,,,,,"], "row 2, column 'true_transform'|none.tfm"),
        _csv_case("many-problems-listed", _many_problems, "80 problem(s)|problems.csv"),
        _csv_case("semicolon-separated", [], "';'", raw=(CSV_HEADER.replace(",", ";") + "\nC1;prior.nii.gz;current.nii.gz;normal\n").encode()),
        _csv_case("tab-separated", [], "'\\t'", raw=(CSV_HEADER.replace(",", "\t") + "\nC1\tprior.nii.gz\tcurrent.nii.gz\tnormal\n").encode()),
    ]
    out.append(Hostile("caselist-is-a-folder", "case list", lambda tmp: Built(["cases", "validate", str(tmp)], "is a folder", [], [tmp])))
    out.append(
        Hostile(
            "caselist-missing-file", "case list", lambda tmp: Built(["cases", "validate", str(tmp / "nope.csv")], "nope.csv|not found", [], [tmp])
        )
    )
    # case lists: what the rows point at
    for column in ("prior", "current"):
        for fmt, mutation in [
            ("niigz", "truncated-half"),
            ("nii", "truncated-90pc"),
            ("mha", "nan-voxel"),
            ("nrrd", "inf-voxels"),
            ("niigz", "2d-image"),
            ("nii", "garbage-bytes"),
            ("mha", "normalised-0-1"),
            ("nrrd", "4d-series"),
        ]:
            out.append(_exam_in_list(column, fmt, mutation))
    for fmt in FORMATS:
        for mutation in ("truncated-half", "nan-voxel", "2d-image", "4d-series", "empty-file", "garbage-bytes"):
            out.append(_label_in_list(fmt, mutation))
    out += [
        _label_case("shifted-origin", _shifted_labels),
        _label_case("other-spacing", _respaced_labels),
        _label_case("other-size", _other_size_labels),
        _label_case("other-direction", _rotated_labels),
        _label_case("value-absent", lambda t: label_image(value=2), "label_value", value="1"),
        _label_case("empty-map", _empty_labels, "label_value"),
        _label_case("probability-map", _prob_labels),
        _label_case("negative-values", _negative_labels),
        _label_case("region-far-from-centre", _far_labels),
        _label_case("ct-as-label-map", lambda t: ct_image()),
    ]
    out += [_content_case(f"patient-{k}", _patients(k)) for k in ("id", "birth", "dates", "same-file", "bad-override", "dicom-truncated-slice")]
    out += [_content_case(f"truth-{k}", _truth(k)) for k in ("x5000", "z-beyond", "in-air", "second-lesion-outside", "transform-garbage")]
    out += [_content_case(f"exam-{k}", _exam_kind(k)) for k in ("nifti-folder", "label-map-as-prior", "zmap-as-current", "empty-folder")]
    out += _second_round()
    return out


# ------------------------------------------------------------------------------------------------
# second round: headers that lie, mixed-up series, encodings, special files, full or read-only disks
def _nifti_patch(edits: list[tuple[str, int, tuple]]) -> Callable[[Path, str], None]:
    """Write the tiny CT as NIfTI (.nii or .nii.gz) and overwrite header fields (struct format, offset, values)."""

    def f(path: Path, suffix: str) -> None:
        write_image(ct_image(), path, compress=False)
        raw = bytearray(gzip.decompress(path.read_bytes()) if suffix == ".nii.gz" else path.read_bytes())
        for fmt, offset, values in edits:
            struct.pack_into(fmt, raw, offset, *values)
        path.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))

    return f


def _text_header_edit(old: bytes, new: bytes) -> Callable[[Path, str], None]:
    def f(path: Path, suffix: str) -> None:
        write_image(ct_image(), path, compress=False)
        data = path.read_bytes()
        assert old in data, (old, data[:300])
        path.write_bytes(data.replace(old, new, 1))

    return f


def _geometry(spacing=SPACING, origin=ORIGIN) -> Callable[[Path, str], None]:
    def f(path: Path, suffix: str) -> None:
        img = ct_image()
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        write_image(img, path)

    return f


def _fifo(path: Path, suffix: str) -> None:
    os.mkfifo(path)


# qform_code 252, sform_code 254, quatern/qoffset 256-279, srow_x/y/z 280/296/312
_SFORM_SHIFTED = [
    ("<2h", 252, (1, 1)),
    ("<4f", 280, (-2.0, 0.0, 0.0, 61.0)),
    ("<4f", 296, (0.0, -2.0, 0.0, 71.0)),
    ("<4f", 312, (0.0, 0.0, 2.5, 81.0)),
]
_SFORM_SHEARED = [
    ("<2h", 252, (0, 1)),
    ("<4f", 280, (2.0, 1.0, 0.0, -11.0)),
    ("<4f", 296, (0.0, 2.0, 0.0, -11.0)),
    ("<4f", 312, (0.0, 0.0, 2.5, -8.0)),
]
SECOND_IMAGE_CASES: dict[str, tuple[tuple[str, ...], Callable[[Path, str], None], str]] = {
    # name: (formats, mutation, text the error must contain besides the file name)
    "qform-sform-disagree": (("nii", "niigz"), _nifti_patch(_SFORM_SHIFTED), "qform"),
    "sheared-sform": (("nii", "niigz"), _nifti_patch(_SFORM_SHEARED), "sheared"),
    "huge-dims-tiny-file": (("nii",), _nifti_patch([("<8h", 40, (3, 32000, 32000, 32000, 1, 1, 1, 1))]), "truncated"),
    "dims-overflow-int64": (("nii",), _nifti_patch([("<8h", 40, (7, 32767, 32767, 32767, 32767, 32767, 32767, 32767))]), ""),
    "int8-voxels": (("nii", "mha"), _mut_array(lambda: np.clip(ct_array() / 10, -127, 127).astype(np.int8)), "8-bit"),
    "uint8-voxels": (("niigz", "nrrd"), _mut_array(lambda: np.clip(ct_array() + 1000, 0, 255).astype(np.uint8)), "8-bit"),
    "spacing-micrometres": (("niigz", "mha"), _geometry(spacing=(2e-6, 2e-6, 2.5e-6)), "spacing"),
    "spacing-metres": (("niigz", "nrrd"), _geometry(spacing=(2000.0, 2000.0, 2500.0)), "spacing"),
    "origin-far-away": (("niigz",), _geometry(origin=(1e30, 0.0, 0.0)), "origin"),
    "named-pipe": (("nii", "niigz", "mha", "nrrd"), _fifo, "not a regular file"),
}


def _huge_text_dims(fmt: str) -> Hostile:
    suffix = FORMATS[fmt]
    old, new = {"mha": (b"DimSize = 12 12 8", b"DimSize = 99999 99999 99999"), "nrrd": (b"sizes: 12 12 8", b"sizes: 99999 99999 99999")}[fmt]

    def build(tmp: Path) -> Built:
        src = tmp / f"bad{suffix}"
        _text_header_edit(old, new)(src, suffix)
        out = tmp / "exam.nii.gz"
        return Built(["cases", "import", str(src), str(out)], f"bad{suffix}|truncated", [out], [tmp])

    return Hostile(f"import-{fmt}-huge-dims-tiny-file", "image header", build)


def _one_slice_header(attr: str, value, index: int = 3) -> Callable[[Path, list[Path]], str]:
    def m(folder: Path, files: list[Path]) -> str:
        _edit_dicom(files[index], lambda ds: setattr(ds, attr, value))
        return f"{files[index].name}|{attr}"

    return m


def _no_rescale_one(folder: Path, files: list[Path]) -> str:
    def edit(ds):
        del ds.RescaleIntercept
        del ds.RescaleSlope

    _edit_dicom(files[5], edit)
    return f"{files[5].name}|RescaleIntercept"


def _split_in_subfolder(folder: Path, files: list[Path]) -> str:
    sub = folder / "part2"
    sub.mkdir()
    for f in files[4:]:
        shutil.move(str(f), sub / f.name)
    return "part2|sub-folder"


def _cd_layout(folder: Path, files: list[Path]) -> str:
    """A CD-style layout: a DICOMDIR at the top, the slices two folders down."""
    deep = folder / "DICOM" / "S0001"
    deep.mkdir(parents=True)
    for f in files:
        shutil.move(str(f), deep / f.name)
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    return "no DICOM series found|S0001"


def _enhanced_multiframe(folder: Path, files: list[Path]) -> str:
    import pydicom

    ds = pydicom.dcmread(files[0])
    stack = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    for f in files[1:]:
        f.unlink()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.NumberOfFrames = len(files)
    ds.PixelData = stack.astype(np.int16).tobytes()
    ds.save_as(files[0])
    return f"{files[0].name}|multi-frame"


def _caselist_raw(name: str, make: Callable[[Path, Path], None], culprit: str) -> Hostile:
    def build(tmp: Path) -> Built:
        _valid_pair(tmp)
        path = tmp / "list.csv"
        make(tmp, path)
        return Built(["cases", "validate", str(path)], culprit, [], [tmp])

    return Hostile(f"caselist-{name}", "text encoding", build)


_GOOD_LIST = CSV_HEADER + "\n" + "C1,prior.nii.gz,current.nii.gz,normal,,,,,,,,,,,\n"


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a small tmpfs on ``folder`` (needs root); False where that is not possible."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, check=False).returncode == 0


def _unmount(folder: Path) -> None:
    import subprocess

    subprocess.run(["umount", str(folder)], capture_output=True, check=False)


#: True where this process may mount a tmpfs (root in a container): the disk-full and read-only cases run only there.
CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None and os.environ.get("TSCT_TEST_NO_MOUNT") != "1"


def _disk_case(name: str, kind: str, out_name: str, synth: bool = False) -> Hostile:
    def build(tmp: Path) -> Built:
        disk = tmp / "disk"
        if kind == "full":
            ok = _mount_tmpfs(disk, "size=16k")
            if ok:
                (disk / "filler").write_bytes(b"x" * 14000)  # the disk is now full
            culprit = f"{out_name}|disk"
        else:
            ok = _mount_tmpfs(disk, "ro,size=64k")
            culprit = "disk|not writable"
        if not ok:
            raise RuntimeError("cannot mount a tmpfs here")
        out = disk / out_name
        if synth:
            argv = ["cases", "synth", str(out), "--n-cases", "1", "--size", "small"]
        else:
            src = write_image(ct_image(), tmp / "src" / "exam.nii.gz")
            argv = ["cases", "import", str(src), str(out)]
        return Built(argv, culprit, [out], [tmp], cleanup=lambda: _unmount(disk))

    return Hostile(f"output-{name}", "disk and mounts", build)


def _second_round() -> list[Hostile]:
    out: list[Hostile] = []
    for name, (fmts, mutate, extra) in SECOND_IMAGE_CASES.items():
        out += [_image_import_case(fmt, name, mutate, extra, "image header") for fmt in fmts]
    out += [_huge_text_dims("mha"), _huge_text_dims("nrrd")]
    out += [
        _dicom_case("one-slice-pet", _one_slice_header("Modality", "PT", 2)),
        _dicom_case("one-slice-other-patient", _one_slice_header("PatientID", "SOMEONE-ELSE", 6)),
        _dicom_case("one-slice-other-study", _one_slice_header("StudyInstanceUID", "1.2.3.4.5", 1)),
        _dicom_case("one-slice-without-rescale", _no_rescale_one),
        _dicom_case("series-split-in-subfolder", _split_in_subfolder),
        _dicom_case("enhanced-multiframe-file", _enhanced_multiframe),
        _dicom_case("cd-layout-top-folder", _cd_layout),
    ]
    out += [
        _caselist_raw("utf16-without-bom", lambda t, p: p.write_bytes(_GOOD_LIST.encode("utf-16-le")), "list.csv|UTF-16"),
        _caselist_raw("nul-bytes", lambda t, p: p.write_bytes(_GOOD_LIST.encode().replace(b"C1", b"C\x001")), "list.csv|NUL"),
        _caselist_raw(
            "cp1252-quotes", lambda t, p: p.write_bytes(_GOOD_LIST.encode().replace(b"normal", b"\x93normal\x94")), "list.csv|UTF-8|line 2"
        ),
        _caselist_raw(
            "cell-over-csv-limit", lambda t, p: p.write_text(CSV_HEADER + '\nC1,"prior.nii.gz' + "x" * 200_000 + "\n"), "list.csv|longer than"
        ),
        _caselist_raw("named-pipe", lambda t, p: os.mkfifo(p), "list.csv|not a regular file"),
        _caselist_raw("device", lambda t, p: os.symlink("/dev/zero", p), "list.csv|not a regular file"),
        _caselist_raw(
            "prior-is-a-pipe",
            lambda t, p: (os.mkfifo(t / "pipe.nii.gz"), p.write_text(CSV_HEADER + "\nC1,pipe.nii.gz,current.nii.gz,normal,,,,,,,,,,,\n")),
            "row 2, column 'prior'|pipe.nii.gz|not a file or folder",
        ),
    ]
    if CAN_MOUNT:
        out += [
            _disk_case("import-disk-full-nii-gz", "full", "exam.nii.gz"),
            _disk_case("import-disk-full-mha", "full", "exam.mha"),
            _disk_case("import-disk-full-nrrd", "full", "exam.nrrd"),
            _disk_case("import-read-only-disk", "ro", "exam.nii.gz"),
            _disk_case("synth-disk-full", "full", "set", synth=True),
            _disk_case("synth-read-only-disk", "ro", "set", synth=True),
        ]
    return out


HOSTILE: list[Hostile] = build_hostile()


# ------------------------------------------------------------------------------------------------
def _snapshot(folders: list[Path]) -> set[Path]:
    seen: set[Path] = set()
    for folder in folders:
        if folder.exists():
            seen.update(p for p in folder.rglob("*"))
    return seen


@dataclass
class Outcome:
    """What happened when a hostile input was run."""

    exit_code: int
    output: str
    exception: BaseException | None
    left_behind: list[Path]
    built: Built


def run_case(case: Hostile, tmp: Path) -> Outcome:
    """Build the input in ``tmp``, run its command in-process, and record the outcome."""
    from typer.testing import CliRunner

    from tsct_cli import app

    built = case.build(tmp)
    try:
        before = _snapshot(built.watch)
        result = CliRunner().invoke(app, built.argv)
        after = _snapshot(built.watch)
        new = sorted(p for p in after - before if not p.name.endswith(".problems.csv"))
        left = [p for p in built.must_not_exist if p.exists()] + [p for p in new if p not in built.must_not_exist]
    finally:
        if built.cleanup is not None:
            built.cleanup()
    exception = result.exception if result.exception is not None and not isinstance(result.exception, SystemExit) else None
    return Outcome(result.exit_code, result.output, exception, left, built)


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


def culprit_named(outcome: Outcome) -> bool:
    """Every '|'-separated part of the culprit text appears in the output (whitespace ignored)."""
    text = _squash(outcome.output)
    return all(_squash(part) in text for part in outcome.built.culprit.split("|") if part)


def classify(outcome: Outcome) -> str:
    """One of :data:`CATEGORIES` (see the module docstring)."""
    if outcome.exception is not None or "Traceback (most recent call last)" in outcome.output:
        return "traceback"
    if re.search(r"\.py:\d+: \w*Warning", outcome.output):
        return "vague error"  # a raw Python warning with its source line reached the user
    if outcome.exit_code == 0:
        return "silent acceptance"
    if outcome.left_behind:
        return "partial output"
    if not culprit_named(outcome):
        return "vague error"
    return "clear error"
