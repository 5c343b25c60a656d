"""What the lock protects: the content hash of every file a reader reads, and checks that files are complete.

A study's lock (:func:`reader_study.lock_study`) stores one :class:`~reader_study.models.StudyFile`
row per file readers read or scoring uses:

* ``prior`` / ``current`` - the exams (a NIfTI/NRRD/MHA file, or every file of a DICOM folder);
* ``label_map`` - the lesions' label maps;
* ``detector`` - the detector outputs of each case that readers see in an aided treatment
  (overlay, z-map, subtraction, candidates, ...), with the model's name and version.

:func:`verify_files` re-hashes them and names each file that changed, by case and file.
:func:`check_detector_case` checks, before anything is read, that a case's detector folder holds
complete files for the overlays a treatment shows (a missing or truncated overlay is refused; an
aided reading is never done without its overlay).

Which detector files count is decided in one place, :func:`detector_output_files`, so that it can
follow the detector's own output manifest when there is one.
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
    "overlay_files_needed",
    "describe_changes",
]

#: Files of a detector case folder that are not outputs (a failed case's traceback, temporary names).
_NOT_OUTPUTS = ("error.txt",)


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
    """The detector outputs of one case that readers may see, as ``(name relative to the case folder, path)``.

    Today: every regular file of the case folder (overlay, z-map, subtraction, candidates, QC,
    derived DICOM series), except hidden or temporary names and ``error.txt``. This is the single
    place to switch to the detector's output manifest (``outputs.json``) when it lists the files.
    """
    case_dir = Path(case_dir)
    return [(f.relative_to(case_dir).as_posix(), f) for f in _files_under(case_dir) if f.name not in _NOT_OUTPUTS]


def detector_model(case_dir: str | Path) -> tuple[str, str]:
    """``(model name, model version)`` of the detector run that made a case folder, from its ``qc.json``.

    ``("", "")`` when ``qc.json`` is absent or says nothing about the model.
    """
    qc = Path(case_dir) / "qc.json"
    if not qc.is_file():
        return "", ""
    try:
        doc = json.loads(qc.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "", ""
    z = doc.get("zscore") or {}
    version = str(z.get("model_version") or doc.get("tsct_version") or doc.get("package_version") or "")
    method = str(z.get("method") or "")
    if method == "network":
        name = "tsct z-score network"
    elif method:
        name = f"tsct z-score {method} model"
    else:
        name = "tsct temporal subtraction"
    return name, version


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


def overlay_files_needed(overlays: Iterable[str]) -> list[str]:
    """Detector file names the given treatment overlays show (``zmap`` -> ``zmap.nii.gz`` …)."""
    from workstation.layers import LAYERS

    names = []
    for overlay in overlays:
        spec = LAYERS.get(overlay)
        if spec is not None and spec.detector_file and spec.detector_file not in names:
            names.append(spec.detector_file)
    return names


def check_detector_case(case_code: str, case_dir: Path | None, needed: Sequence[str], *, require_qc: bool, option: str = "--detector-dir") -> list[str]:
    """Problems (empty when fine) with one case's detector folder for the files ``needed``.

    Every needed file must be present and complete (:func:`check_complete`); with ``require_qc``
    the detector must have finished the case (``qc.json``, written last, present and complete).
    """
    if case_dir is None:
        return [f"case {case_code}: no detector folder; give {option} DIR (the detector's batch output, DIR/{case_code}/)"]
    if not case_dir.is_dir():
        return [f"case {case_code}: the detector folder {case_dir} is missing; run `tsct detect batch` for this case or give the right {option}"]
    problems = []
    wanted = list(needed) + (["qc.json"] if require_qc else [])
    for file_name in wanted:
        try:
            check_complete(case_dir / file_name)
        except IncompleteFileError as exc:
            hint = "the detector did not finish this case" if file_name == "qc.json" else "rerun `tsct detect batch` for this case"
            problems.append(f"case {case_code}: {file_name}: {exc} ({hint})")
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
