"""What the lock protects: the content hash of every file a reader reads, and checks that files are complete.

A study's lock (:func:`reader_study.lock_study`) stores one :class:`~reader_study.models.StudyFile`
row per file readers read or scoring uses:

* ``prior`` / ``current`` - the exams (a NIfTI/NRRD/MHA file, or every file of a DICOM folder);
* ``label_map`` - the lesions' label maps;
* ``detector`` - the detector outputs of each case: its manifest ``outputs.json`` (which records
  the model and the exams' hashes) and every file it lists (overlay, z-map, subtraction,
  candidates, QC, ...), with the model's name and version from the manifest.

:func:`verify_files` re-hashes them and names each file that changed, by case and file.
:func:`check_detector_case` checks, before anything is read, that the detector finished a case
(its manifest is there) and that the outputs of the roles a treatment's overlays show
(:func:`overlay_roles_needed`, from :data:`reader_study.aids.AIDS`) are complete and still the
files the manifest hashed (a missing, truncated or altered overlay is refused; an aided reading is
never done without its overlay).

Which detector files count is decided in one place, :func:`detector_output_files`: the manifest
and what it lists, never file names.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "FileEntry",
    "FileChange",
    "IncompleteFileError",
    "sha256_file",
    "exam_files",
    "detector_output_files",
    "detector_model",
    "check_complete",
    "check_detector_case",
    "overlay_roles_needed",
    "describe_changes",
]


class IncompleteFileError(ValueError):
    """A file is missing, truncated or cannot be parsed; the message names it and says what to do."""


@dataclass(frozen=True)
class FileEntry:
    """One file under the lock: its role, a name the user recognises, where it is, and its content hash."""

    case_code: str | None
    role: str
    name: str
    path: Path
    sha256: str
    size_bytes: int
    model_name: str = ""
    model_version: str = ""


@dataclass(frozen=True)
class FileChange:
    """A locked file that is no longer what was locked: ``missing``, ``changed`` (content hash differs) or ``added`` (a new output)."""

    case_code: str | None
    role: str
    name: str
    path: str
    kind: str
    stored_sha256: str = ""
    now_sha256: str = ""

    def __str__(self) -> str:
        where = f"case {self.case_code}" if self.case_code else "study"
        if self.kind == "missing":
            return f"{where}: {self.role} file {self.name} is missing ({self.path})"
        if self.kind == "added":
            return f"{where}: {self.role} file {self.name} was added after the lock ({self.path})"
        return f"{where}: {self.role} file {self.name} changed (sha256 locked {self.stored_sha256[:12]}…, now {self.now_sha256[:12]}…) ({self.path})"


def sha256_file(path: str | Path) -> str:
    """SHA-256 of one file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".part"))


def exam_files(path: str | Path) -> list[tuple[str, Path]]:
    """The files of an exam as ``(name, path)``: the file itself, or every file of a DICOM folder (``folder/relative``).

    Raises
    ------
    IncompleteFileError
        The exam does not exist, or its folder holds no files.
    """
    path = Path(path)
    if path.is_file():
        return [(path.name, path)]
    if path.is_dir():
        files = _files_under(path)
        if not files:
            raise IncompleteFileError(f"{path} is an empty folder; an exam is a NIfTI/NRRD/MHA file or a folder of DICOM files.")
        return [(f"{path.name}/{f.relative_to(path).as_posix()}", f) for f in files]
    raise IncompleteFileError(f"{path} does not exist.")


def detector_output_files(case_dir: str | Path) -> list[tuple[str, Path]]:
    """The detector outputs of one case that the lock protects, as ``(name relative to the case folder, path)``.

    The case's manifest ``outputs.json`` (:func:`detector.read_case_outputs`; it records the
    model and the two exams' hashes) and every file it lists (overlay, z-map, subtraction,
    candidates, QC, each file of a derived DICOM series). A file in the folder that the manifest
    does not list is not an output: no reader or analysis ever reads it. This is the single place
    that decides which detector files count.

    Raises
    ------
    detector.outputs.CaseOutputsError
        The case has no finished, readable manifest (the message names the folder and says to
        rerun ``tsct detect``).
    """
    from detector.outputs import MANIFEST_NAME, read_case_outputs

    case_dir = Path(case_dir)
    outputs = read_case_outputs(case_dir)
    files: list[tuple[str, Path]] = [(MANIFEST_NAME, case_dir / MANIFEST_NAME)]
    for role in sorted(outputs.files):
        entry = outputs.files[role]
        path = case_dir / entry.path
        if path.is_dir():
            files += [(f"{entry.path}/{f.relative_to(path).as_posix()}", f) for f in _files_under(path)]
        else:
            files.append((entry.path, path))
    return files


def detector_model(case_dir: str | Path) -> tuple[str, str]:
    """``(model name, model version)`` of the z-score model that made a case folder, from its manifest (``outputs.json``).

    ``("", "")`` when the manifest is missing or unreadable, or records no model (the z-score
    stage did not run). A model without a name is named by its method (e.g. ``analytic error model``).
    """
    from detector.outputs import CaseOutputsError, read_case_outputs

    try:
        model = read_case_outputs(case_dir).model
    except CaseOutputsError:
        return "", ""
    if model is None:
        return "", ""
    return str(model.name or model.describe()), str(model.version or "")


def _nifti_expected_bytes(header: bytes) -> int | None:
    """Bytes a NIfTI-1 file needs (header + voxels), or None when ``header`` is not NIfTI-1."""
    if len(header) < 348:
        return None
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = struct.unpack(endian + "f", header[108:112])[0]
            ndim = dims[0]
            if not 1 <= ndim <= 7 or bitpix <= 0:
                return None
            n = 1
            for d in dims[1 : ndim + 1]:
                n *= max(int(d), 1)
            return int(vox_offset) + n * bitpix // 8
    return None


def check_complete(path: str | Path) -> None:
    """Check that a file is complete: gzip streams end with their checksum, NIfTI files hold every
    voxel their header promises, JSON parses, and nothing is empty.

    Raises
    ------
    IncompleteFileError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise IncompleteFileError(f"{path} is missing.")
    size = path.stat().st_size
    if size == 0:
        raise IncompleteFileError(f"{path} is empty (0 bytes).")
    name = path.name.lower()
    data: bytes | None = None
    if name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        except (EOFError, OSError, zlib.error) as exc:
            raise IncompleteFileError(f"{path} is truncated or damaged ({exc}).") from None
        name = name[:-3]
    if name.endswith(".nii"):
        if data is None:
            with path.open("rb") as handle:
                head = handle.read(352)
            total = size
        else:
            head, total = data[:352], len(data)
        need = _nifti_expected_bytes(head)
        if need is None:
            raise IncompleteFileError(f"{path} is not a NIfTI-1 image (bad header).")
        if total < need:
            raise IncompleteFileError(f"{path} is truncated: its header promises {need} bytes, the file holds {total}.")
    elif name.endswith(".json"):
        try:
            json.loads((data if data is not None else path.read_bytes()).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise IncompleteFileError(f"{path} is not complete JSON ({exc}).") from None


def overlay_roles_needed(overlays: Iterable[str]) -> list[str]:
    """Detector output roles the given treatment overlays show (``zmap`` -> ``zmap`` …), from the study's aids (:data:`reader_study.aids.AIDS`)."""
    from .aids import aid_roles

    return aid_roles(overlays)


_RERUN = "rerun `tsct detect batch` for this case"


def check_detector_case(
    case_code: str,
    case_dir: Path | None,
    needed: Sequence[str],
    *,
    optional: Sequence[str] = (),
    option: str = "--detector-dir",
) -> list[str]:
    """Problems (empty when fine) with one case's detector folder for the output roles ``needed``.

    The detector must have finished the case: its manifest (``outputs.json``, written last) is
    present and readable (:func:`detector.read_case_outputs`). Every needed role must be listed
    in it, its file complete (:func:`check_complete`) and still the file the detector wrote (the
    SHA-256 in the manifest). Roles in ``optional`` are checked the same way when the manifest
    lists them (e.g. ``bone_roi``).
    """
    from detector.outputs import ROLES, CaseOutputsError, read_case_outputs

    if case_dir is None:
        return [f"case {case_code}: no detector folder; give {option} DIR (the detector's batch output, DIR/{case_code}/)"]
    if not case_dir.is_dir():
        return [f"case {case_code}: the detector folder {case_dir} is missing; run `tsct detect batch` for this case or give the right {option}"]
    try:
        outputs = read_case_outputs(case_dir)
    except CaseOutputsError as exc:
        return [f"case {case_code}: the detector did not finish this case: {exc}"]
    problems = []
    wanted = list(needed) + [r for r in optional if r not in needed and outputs.has(r)]
    for role in wanted:
        if not outputs.has(role):
            problems.append(
                f"case {case_code}: {ROLES[role][0] if role in ROLES else role}: the detector wrote no {role!r} output for this case "
                f"(its outputs.json lists: {', '.join(outputs.files) or 'none'}); {_RERUN}"
            )
            continue
        entry = outputs.files[role]
        path = case_dir / entry.path
        try:
            if not path.is_dir():
                check_complete(path)
            outputs.verify([role])
        except (IncompleteFileError, CaseOutputsError) as exc:
            problems.append(f"case {case_code}: {entry.path}: {exc} ({_RERUN})")
    return problems


def describe_changes(changes: Sequence[FileChange], *, limit: int = 10) -> str:
    """A summary of changed files for a terminal: a count per case and the first ``limit`` files."""
    by_case: dict[str, int] = {}
    for c in changes:
        by_case[c.case_code or "(study)"] = by_case.get(c.case_code or "(study)", 0) + 1
    head = "; ".join(str(c) for c in changes[:limit])
    more = f"; … and {len(changes) - limit} more" if len(changes) > limit else ""
    cases = ", ".join(f"{k} ({v})" for k, v in by_case.items())
    return f"{len(changes)} file(s) differ from the lock, in case(s) {cases}: {head}{more}"
