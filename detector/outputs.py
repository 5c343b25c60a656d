"""The detector's hand-off to reading: one typed, versioned manifest per case (``outputs.json``).

Everything downstream of the detector — the reading app's aid layers, the simulated readers, the
study (``tsct study create --detector-dir``), the analysis report — finds a case's outputs through
:func:`read_case_outputs`, never by file name. The manifest lists every file the detector wrote
with its **role**, SHA-256 and (for images) voxel grid; the model bundle that made the z-map
(name, version, SHA-256); the two exams (path, SHA-256, grid) and the QC verdict.

It is written by :func:`detector.run_pair` **last** and atomically (a temporary name, then a
rename), so its presence means the case is complete; a re-run deletes it first.

``outputs.json`` (format ``tsct-case-outputs``, version 1)::

    {"format": "tsct-case-outputs", "version": 1, "case_id": "C001", "created_at": "...Z",
     "grid": {"size": [...], "spacing_mm": [...], "origin_mm": [...], "direction": [...]},
     "qc_status": "passed",
     "model": {"method": "network", "name": "zscore", "version": "1.2", "sha256": "..."},
     "exams": {"prior": {"path": "...", "sha256": "...", "grid": {...}}, "current": {...}},
     "files": {"zmap": {"path": "zmap.nii.gz", "sha256": "...", "kind": "image", "grid": {...}}, ...}}

Roles are listed in :data:`ROLES`; paths are relative to the case folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from cases import Grid, file_sha256, read_grid

from ._errors import DetectorInputError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "ROLES",
    "OutputFile",
    "ModelRecord",
    "ExamRecord",
    "CaseOutputs",
    "CaseOutputsError",
    "write_case_outputs",
    "read_case_outputs",
    "case_outputs_status",
    "outputs_record",
]

MANIFEST_NAME = "outputs.json"
MANIFEST_FORMAT = "tsct-case-outputs"
MANIFEST_VERSION = 1

FileKind = Literal["image", "table", "json", "transform", "dicom_series"]

#: Every role a case folder may hold: role -> (file name in the folder, kind, what it is).
ROLES: dict[str, tuple[str, FileKind, str]] = {
    "warped_prior": ("warped_prior.nii.gz", "image", "prior CT registered onto the current exam's grid, int16 HU"),
    "subtraction": ("subtraction.nii.gz", "image", "current - warped prior in the bone ROI, int16 HU"),
    "subtraction_vm": ("subtraction_vm.nii.gz", "image", "voxel-matched subtraction in the bone ROI, int16 HU"),
    "bone_roi": ("bone_roi.nii.gz", "image", "bone ROI, uint8 (1 = inside)"),
    "transform": ("transform.h5", "transform", "ITK composite transform, current-exam points -> prior-exam points"),
    "zmap": ("zmap.nii.gz", "image", "z-score map, float32 (0 outside the bone ROI)"),
    "sigma": ("sigma.nii.gz", "image", "the z-score model's sigma, HU, float32"),
    "candidates_json": ("candidates.json", "json", "lesion candidates (LPS mm of the current exam)"),
    "candidates_csv": ("candidates.csv", "table", "lesion candidates, one row each"),
    "candidate_score": (
        "candidate_score.nii.gz",
        "image",
        "matched-filter score the candidates are found on and the overlay shows, float32 (robust sigmas)",
    ),
    "candidate_labels": ("candidate_labels.nii.gz", "image", "candidate regions, int32 (label = candidate id, 0 = none)"),
    "qc": ("qc.json", "json", "registration QC figures and verdict"),
    "dicom_warped_prior": ("dicom/warped_prior", "dicom_series", "registered prior as a DICOM series"),
    "dicom_subtraction": ("dicom/subtraction", "dicom_series", "subtraction as a DICOM series"),
    "dicom_subtraction_vm": ("dicom/subtraction_vm", "dicom_series", "voxel-matched subtraction as a DICOM series"),
    "dicom_zscore_overlay": ("dicom/zscore_overlay", "dicom_series", "colour z-score overlay (Secondary Capture series)"),
}

_RERUN = "Rerun tsct detect for this case (`tsct detect batch CASELIST --out DIR`) to write it."


class CaseOutputsError(DetectorInputError):
    """A case's detector outputs are missing, incomplete, altered or on another grid; the message names the folder and what to do."""


@dataclass(frozen=True)
class OutputFile:
    """One file (or DICOM series folder) of a case: its role, path relative to the case folder, SHA-256, kind and grid."""

    role: str
    path: str
    sha256: str
    kind: FileKind
    grid: Grid | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "kind": self.kind}
        if self.grid is not None:
            out["grid"] = self.grid.to_dict()
        return out


@dataclass(frozen=True)
class ModelRecord:
    """The z-score model that made the map: ``method`` ``"network"`` or ``"analytic"``, and the bundle's name, version and SHA-256."""

    method: str
    name: str | None = None
    version: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "name": self.name, "version": self.version, "sha256": self.sha256}

    def describe(self) -> str:
        if self.method == "analytic":
            return "analytic error model"
        if self.method != "network":
            return self.method
        digest = f", SHA-256 {self.sha256[:12]}…" if self.sha256 else ""
        return f"network {self.name or '?'} v{self.version or '?'}{digest}"


@dataclass(frozen=True)
class ExamRecord:
    """One input exam: where it was read from, its SHA-256 and its grid (None when given as an in-memory volume)."""

    path: str | None
    sha256: str | None
    grid: Grid | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "grid": None if self.grid is None else self.grid.to_dict()}


@dataclass(frozen=True)
class CaseOutputs:
    """A case's detector outputs, as its manifest describes them (see the module notes).

    Attributes
    ----------
    folder : the case folder.
    case_id : the case, when the detector was told it.
    grid : the current exam's grid, on which every image output lies.
    files : role -> :class:`OutputFile`.
    model : the z-score model (None when the z-score stage did not run).
    exams : ``"prior"``/``"current"`` -> :class:`ExamRecord`.
    qc_status : the registration QC verdict (``passed``/``warning``/``failed``).
    created_at : when the manifest was written (UTC, ISO 8601).
    manifest_sha256 : SHA-256 of ``outputs.json`` itself (what a study records and its lock hashes).
    version : the manifest's format version.
    """

    folder: Path
    case_id: str | None
    grid: Grid
    files: dict[str, OutputFile]
    model: ModelRecord | None
    exams: dict[str, ExamRecord]
    qc_status: str
    created_at: str
    manifest_sha256: str = ""
    version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_NAME

    def has(self, role: str) -> bool:
        """Whether the case has an output of this role."""
        return role in self.files

    def path(self, role: str) -> Path:
        """The absolute path of the output with this ``role``.

        Raises :class:`CaseOutputsError` naming the folder and the roles it has when it has none.
        """
        if role not in ROLES:
            raise CaseOutputsError(f"Unknown output role {role!r}; roles are {', '.join(ROLES)}.")
        entry = self.files.get(role)
        if entry is None:
            have = ", ".join(self.files) or "none"
            raise CaseOutputsError(f"{self.folder}: the detector wrote no {role!r} output for this case (it has: {have}). {_RERUN}")
        return self.folder / entry.path

    def verify(self, roles: Iterable[str] | None = None) -> None:
        """Re-hash the outputs (all, or ``roles``) and compare with the manifest.

        Raises :class:`CaseOutputsError` naming the first file that is missing or altered.
        """
        for role in roles if roles is not None else list(self.files):
            path = self.path(role)
            if not path.exists():
                raise CaseOutputsError(f"{path}: listed in {self.manifest_path} as the case's {role!r} output but missing. {_RERUN}")
            actual = file_sha256(path)
            if actual != self.files[role].sha256:
                raise CaseOutputsError(
                    f"{path}: its SHA-256 ({actual[:12]}…) is not the one in {self.manifest_path} ({self.files[role].sha256[:12]}…); "
                    f"the file was changed after the detector wrote it. {_RERUN}"
                )

    def check_grid(self, other: Any, what: str) -> None:
        """Raise :class:`CaseOutputsError` when ``other`` (a grid, volume or anything :meth:`cases.Grid.of` takes) is not the outputs' grid."""
        problem = self.grid.mismatch(other)
        if problem is not None:
            raise CaseOutputsError(
                f"{self.folder}: the detector's outputs lie on another grid than {what} ({problem}). They were made from another exam; {_RERUN}"
            )

    def record(self) -> dict[str, Any]:
        """What a study or an analysis result keeps of the outputs: folder, manifest hash, model and QC."""
        return {
            "folder": str(self.folder),
            "manifest_sha256": self.manifest_sha256,
            "model": None if self.model is None else self.model.to_dict(),
            "qc_status": self.qc_status,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "case_id": self.case_id,
            "created_at": self.created_at,
            "grid": self.grid.to_dict(),
            "qc_status": self.qc_status,
            "model": None if self.model is None else self.model.to_dict(),
            "exams": {k: v.to_dict() for k, v in self.exams.items()},
            "files": {role: f.to_dict() for role, f in self.files.items()},
            **self.extra,
        }


def _exam_record(source: str | Path | None, grid: Grid | None, *, hash_exams: bool) -> ExamRecord:
    if source is None:
        return ExamRecord(None, None, grid)
    p = Path(source)
    return ExamRecord(str(p.resolve()), file_sha256(p) if hash_exams and p.exists() else None, grid)


def write_case_outputs(
    folder: str | Path,
    outputs: Mapping[str, Path],
    *,
    grid: Grid,
    case_id: str | None = None,
    qc_status: str = "unknown",
    model: ModelRecord | None = None,
    exams: Mapping[str, tuple[str | Path | None, Grid | None]] | None = None,
    hash_exams: bool = True,
) -> CaseOutputs:
    """Write a case folder's ``outputs.json`` (atomically) and return it as :class:`CaseOutputs`.

    Parameters
    ----------
    folder : the case folder.
    outputs : role -> path of every output written (roles of :data:`ROLES`).
    grid : the current exam's grid (image outputs are checked to lie on it).
    case_id, qc_status, model : recorded as given.
    exams : ``"prior"``/``"current"`` -> (source path or None, grid or None).
    hash_exams : hash the exams' files (a clinical DICOM series: about half a second).
    """
    folder = Path(folder)
    files: dict[str, OutputFile] = {}
    for role, path in outputs.items():
        if role not in ROLES:
            raise CaseOutputsError(f"Unknown output role {role!r} for {path}; add it to detector.outputs.ROLES.")
        path = Path(path)
        kind = ROLES[role][1]
        file_grid = read_grid(path) if kind == "image" else None
        if file_grid is not None and not grid.agrees(file_grid):
            raise CaseOutputsError(f"{path}: the {role!r} output is not on the current exam's grid ({grid.mismatch(file_grid)}).")
        files[role] = OutputFile(role, path.resolve().relative_to(folder.resolve()).as_posix(), file_sha256(path), kind, file_grid)
    manifest = CaseOutputs(
        folder=folder,
        case_id=case_id,
        grid=grid,
        files=files,
        model=model,
        exams={k: _exam_record(src, g, hash_exams=hash_exams) for k, (src, g) in (exams or {}).items()},
        qc_status=qc_status,
        created_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    text = json.dumps(manifest.to_dict(), indent=2) + "\n"
    target = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return read_case_outputs(folder, verify=False)


def read_case_outputs(folder: str | Path, *, verify: bool | Iterable[str] = False) -> CaseOutputs:
    """Read a case folder's ``outputs.json``: the one way to find a case's detector outputs.

    Parameters
    ----------
    folder : the case folder (``<detector dir>/<case id>``).
    verify : re-hash every output (True), the outputs of the given roles (an iterable of roles),
        or none (False, the default: reading a manifest takes well under a millisecond, re-hashing
        a clinical case's outputs about a second).

    Raises
    ------
    CaseOutputsError
        With the folder and what to do: no folder; no manifest (an unfinished case, or a folder
        written before manifests existed); an unreadable or foreign manifest; a newer format
        version; a listed file missing or altered (with ``verify``).
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise CaseOutputsError(f"{folder}: no detector output folder for this case. {_RERUN}")
    if not path.is_file():
        legacy = (folder / ROLES["qc"][0]).is_file()
        why = (
            "it was written by a version of the detector without output manifests"
            if legacy
            else "the case did not finish (the manifest is written last)"
        )
        raise CaseOutputsError(f"{folder}: no {MANIFEST_NAME} ({why}). {_RERUN}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CaseOutputsError(f"{path}: not readable JSON ({exc}). {_RERUN}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise CaseOutputsError(
            f"{path}: not a TSCT case-outputs manifest (format {data.get('format') if isinstance(data, dict) else None!r}). {_RERUN}"
        )
    version = int(data.get("version", 0))
    if version > MANIFEST_VERSION:
        raise CaseOutputsError(f"{path}: manifest version {version} is newer than this TSCT reads ({MANIFEST_VERSION}); update TSCT.")
    try:
        files = {
            role: OutputFile(role, str(f["path"]), str(f["sha256"]), f["kind"], Grid.from_dict(f["grid"]) if f.get("grid") else None)
            for role, f in data["files"].items()
        }
        model = data.get("model")
        exams = {
            k: ExamRecord(e.get("path"), e.get("sha256"), Grid.from_dict(e["grid"]) if e.get("grid") else None)
            for k, e in (data.get("exams") or {}).items()
        }
        known = {"format", "version", "case_id", "created_at", "grid", "qc_status", "model", "exams", "files"}
        outputs = CaseOutputs(
            folder=folder,
            case_id=data.get("case_id"),
            grid=Grid.from_dict(data["grid"]),
            files=files,
            model=None if model is None else ModelRecord(str(model.get("method")), model.get("name"), model.get("version"), model.get("sha256")),
            exams=exams,
            qc_status=str(data.get("qc_status", "unknown")),
            created_at=str(data.get("created_at", "")),
            manifest_sha256=file_sha256(path),
            version=version,
            extra={k: v for k, v in data.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseOutputsError(f"{path}: incomplete manifest ({type(exc).__name__}: {exc}). {_RERUN}") from None
    if verify:
        outputs.verify(None if verify is True else verify)
    return outputs


def case_outputs_status(folder: str | Path) -> str | None:
    """The QC status of a finished case folder (its manifest is present and readable), else None."""
    try:
        return read_case_outputs(folder).qc_status
    except CaseOutputsError:
        return None


def outputs_record(detector_dir: str | Path, case_ids: Iterable[str]) -> dict[str, Any]:
    """One record of a batch of cases' detector outputs, for a study's or a report's provenance.

    Returns ``{"folder", "n_cases", "manifests_sha256", "models", "missing"}``: one SHA-256 over
    the sorted ``case_id:manifest_sha256`` lines of every case that has a manifest, the distinct
    models that made them (:meth:`ModelRecord.describe`), and the cases without a finished
    manifest (each with the reason).
    """
    import hashlib

    root = Path(detector_dir)
    lines: list[str] = []
    models: set[str] = set()
    missing: dict[str, str] = {}
    for case_id in sorted(set(case_ids)):
        try:
            outputs = read_case_outputs(root / case_id)
        except CaseOutputsError as exc:
            missing[case_id] = str(exc)
            continue
        lines.append(f"{case_id}:{outputs.manifest_sha256}")
        models.add(outputs.model.describe() if outputs.model is not None else "no z-score model")
    return {
        "folder": str(root.resolve()),
        "n_cases": len(lines),
        "manifests_sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(),
        "models": sorted(models),
        "missing": missing,
    }
