"""Checking what a case list points at: the exams, the truth and the label maps themselves.

:func:`check_case_files` reads every file of one case in full and compares it with what the case
list says (``tsct cases validate`` runs it on every case; ``read_case_list(...,
check_images=True)`` in code). It returns problems (the case cannot be used as it is) and
warnings (worth a look, not blocking), each naming the CSV row and column:

- the prior and current exams are readable in full and hold CT values (see :func:`cases.read_exam`);
- they are two different exams of the same patient (PatientID, birth date, sex when the headers
  carry them; the ``same_patient`` column = ``yes`` states a match when IDs differ), the prior
  dated no later than the current;
- every lesion centre lies inside the current exam's field of view, and near bone (a voxel of
  at least :data:`BONE_HU` within the lesion's radius plus :data:`BONE_MARGIN_MM`); a centre in
  air is refused, one in soft tissue warned about;
- every label map is a 3-D label image on the current exam's grid, holds the lesion's label
  value, and its labelled region reaches to within :data:`LABEL_CENTRE_TOLERANCE_MM` of the
  stated centre;
- the true transform (synthetic cases) is a readable ITK transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .caselist import Case, CaseListProblem
    from .volume import LabelVolume, Volume

__all__ = ["check_case_files", "BONE_HU", "BONE_MARGIN_MM", "AIR_HU", "LABEL_CENTRE_TOLERANCE_MM"]

#: A voxel at least this bright (HU) counts as bone for the truth-in-bone check.
BONE_HU = 150.0
#: Bone must lie within the lesion radius plus this margin (mm) of the centre.
BONE_MARGIN_MM = 3.0
#: A neighbourhood whose brightest voxel is below this (HU) is air or lung: the centre is wrong.
AIR_HU = -300.0
#: The labelled region of a lesion must reach within this distance (mm) of its stated centre.
LABEL_CENTRE_TOLERANCE_MM = 5.0
_DEFAULT_RADIUS_MM = 5.0


def _extent_text(volume: "Volume") -> str:
    corners = np.array(
        [volume.index_to_point_mm((i, j, k)) for i in (0, volume.size[0] - 1) for j in (0, volume.size[1] - 1) for k in (0, volume.size[2] - 1)]
    )
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return ", ".join(f"{axis} {a:.0f} to {b:.0f}" for axis, a, b in zip("xyz", lo, hi))


def _ball_values(volume: "Volume", center_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxel values within ``radius_mm`` of a point (empty when the ball misses the grid)."""
    idx = volume.point_to_index(center_mm)
    half = np.ceil(radius_mm / np.asarray(volume.spacing_mm)).astype(int) + 1
    lo = np.maximum(np.floor(idx).astype(int) - half, 0)
    hi = np.minimum(np.floor(idx).astype(int) + half + 1, np.asarray(volume.size))
    if np.any(hi <= lo):
        return np.empty(0, dtype=volume.array.dtype)
    zz, yy, xx = np.mgrid[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1).astype(float)
    phys = np.asarray(volume.origin_mm) + (pts * np.asarray(volume.spacing_mm)) @ volume.direction_matrix.T
    inside = np.linalg.norm(phys - np.asarray(center_mm), axis=1) <= radius_mm
    return volume.array[zz.ravel()[inside], yy.ravel()[inside], xx.ravel()[inside]]


def _exam_error(path: Path, exc: Exception) -> str:
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def check_case_files(case: "Case", *, case_row: int, lesion_rows: dict[str, int]) -> tuple[list["CaseListProblem"], list["CaseListProblem"]]:
    """Read one case's files in full and check them against the case list (see module docstring).

    Parameters
    ----------
    case : the parsed case.
    case_row : the CSV row of the case's first line (for case-level messages).
    lesion_rows : CSV row of each lesion, by lesion id.

    Returns
    -------
    (problems, warnings), each a list of :class:`~cases.caselist.CaseListProblem`.
    """
    import SimpleITK as sitk

    from .caselist import CaseListProblem
    from .io import ExamReadError, read_exam, read_volume
    from .volume import GeometryMismatchError

    problems: list[CaseListProblem] = []
    warns: list[CaseListProblem] = []
    exams = {}
    for column, path in (("prior", case.prior), ("current", case.current)):
        try:
            exams[column] = read_exam(path)
        except ExamReadError as exc:
            problems.append(CaseListProblem(case_row, column, f"case {case.case_id}: {path} cannot be used: {_exam_error(path, exc)}"))
        except (OSError, RuntimeError, ValueError, MemoryError) as exc:
            problems.append(CaseListProblem(case_row, column, f"case {case.case_id}: {path} cannot be read ({type(exc).__name__}: {exc})"))
    if case.prior.resolve() == case.current.resolve():
        problems.append(
            CaseListProblem(
                case_row,
                "current",
                f"case {case.case_id}: prior and current are the same exam ({case.current}); a case needs two exams of the patient",
            )
        )
    prior, current = exams.get("prior"), exams.get("current")
    if prior is not None and current is not None:
        for key, label in (("PatientID", "patient ID"), ("PatientBirthDate", "birth date"), ("PatientSex", "sex")):
            a, b = str(prior.header.get(key, "") or "").strip(), str(current.header.get(key, "") or "").strip()
            if a and b and a != b:
                if key == "PatientID" and case.same_patient_override:
                    warns.append(
                        CaseListProblem(
                            case_row,
                            "same_patient",
                            f"case {case.case_id}: patient IDs differ ({a!r} vs {b!r}); accepted because same_patient is 'yes'",
                            "warning",
                        )
                    )
                    continue
                hint = "; if they are the same person under two IDs, set the same_patient column to 'yes'" if key == "PatientID" else ""
                problems.append(
                    CaseListProblem(
                        case_row,
                        "current",
                        f"case {case.case_id}: prior and current are of different patients ({label} {a!r} in {case.prior.name} vs {b!r} in {case.current.name}){hint}",
                    )
                )
        pd, cd = str(prior.header.get("StudyDate", "") or ""), str(current.header.get("StudyDate", "") or "")
        if pd and cd and pd > cd:
            problems.append(
                CaseListProblem(
                    case_row,
                    "prior",
                    f"case {case.case_id}: the prior exam is dated {pd}, after the current exam ({cd}); are prior and current swapped?",
                )
            )
        if prior.header.get("SeriesInstanceUID") and prior.header.get("SeriesInstanceUID") == current.header.get("SeriesInstanceUID"):
            problems.append(
                CaseListProblem(
                    case_row,
                    "current",
                    f"case {case.case_id}: prior and current are the same DICOM series (SeriesInstanceUID {prior.header['SeriesInstanceUID']})",
                )
            )
    if case.true_transform is not None and case.true_transform.is_file():
        try:
            sitk.ReadTransform(str(case.true_transform))
        except RuntimeError as exc:
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            problems.append(
                CaseListProblem(
                    case_row, "true_transform", f"case {case.case_id}: {case.true_transform} is not a readable ITK transform ({last[:120]})"
                )
            )
    if current is None:
        return problems, warns
    volume = current.volume
    label_maps: dict[Path, "LabelVolume | str"] = {}
    for lesion in case.lesions:
        row = lesion_rows.get(lesion.lesion_id, case_row)
        center = lesion.center_mm
        if not volume.contains_point(center):
            flipped = (-center[0], -center[1], center[2])
            hint = " The coordinates look like RAS (NIfTI viewer): negate x and y for LPS." if volume.contains_point(flipped) else ""
            problems.append(
                CaseListProblem(
                    row,
                    "center_x_mm",
                    f"case {case.case_id}, lesion {lesion.lesion_id}: centre ({center[0]:g}, {center[1]:g}, {center[2]:g}) mm lies outside the current exam ({_extent_text(volume)} mm).{hint}",
                )
            )
            continue
        radius = lesion.radius_mm or _DEFAULT_RADIUS_MM
        values = _ball_values(volume, center, radius + BONE_MARGIN_MM)
        if values.size:
            brightest = float(values.max())
            if brightest < AIR_HU:
                problems.append(
                    CaseListProblem(
                        row,
                        "center_x_mm",
                        f"case {case.case_id}, lesion {lesion.lesion_id}: centre ({center[0]:g}, {center[1]:g}, {center[2]:g}) mm lies in air or lung (brightest voxel within {radius + BONE_MARGIN_MM:g} mm: {brightest:.0f} HU), not in bone. Check the coordinates (LPS mm of the current exam).",
                    )
                )
            elif brightest < BONE_HU:
                warns.append(
                    CaseListProblem(
                        row,
                        "center_x_mm",
                        f"case {case.case_id}, lesion {lesion.lesion_id}: no bone (>= {BONE_HU:.0f} HU) within {radius + BONE_MARGIN_MM:g} mm of the centre (brightest {brightest:.0f} HU); check the coordinates",
                        "warning",
                    )
                )
        if lesion.label_map is None:
            continue
        if lesion.label_map not in label_maps:
            try:
                labels = read_volume(lesion.label_map, label=True)
                labels.check_same_space(volume, names=("label map", "current exam"))
                label_maps[lesion.label_map] = labels  # type: ignore[assignment]
            except ExamReadError as exc:
                label_maps[lesion.label_map] = f"{lesion.label_map} cannot be used: {_exam_error(lesion.label_map, exc)}"
            except (OSError, RuntimeError, ValueError, MemoryError) as exc:
                if isinstance(exc, GeometryMismatchError):
                    detail = str(exc).split(" (", 1)[-1].split(").", 1)[0]
                    label_maps[lesion.label_map] = (
                        f"{lesion.label_map} is not on the current exam's grid ({detail}); a label map must be drawn on the current exam"
                    )
                else:
                    label_maps[lesion.label_map] = f"{lesion.label_map} cannot be read ({type(exc).__name__}: {str(exc)[:160]})"
        labels = label_maps[lesion.label_map]
        if isinstance(labels, str):
            problems.append(CaseListProblem(row, "label_map", f"case {case.case_id}, lesion {lesion.lesion_id}: {labels}"))
            continue
        mask = labels.mask(lesion.label_value)
        n = int(np.count_nonzero(mask))
        if n == 0:
            present = np.unique(labels.array)
            present = present[present != 0]
            listing = ", ".join(str(int(v)) for v in present[:12]) or "none (the map is empty)"
            what = f"label value {lesion.label_value}" if lesion.label_value is not None else "any non-zero label"
            problems.append(
                CaseListProblem(
                    row,
                    "label_value" if lesion.label_value is not None else "label_map",
                    f"case {case.case_id}, lesion {lesion.lesion_id}: {lesion.label_map.name} holds no voxel with {what}; values present: {listing}",
                )
            )
            continue
        zyx = np.argwhere(mask)
        if zyx.shape[0] > 20000:
            zyx = zyx[:: zyx.shape[0] // 20000 + 1]
        phys = np.asarray(labels.origin_mm) + (zyx[:, ::-1] * np.asarray(labels.spacing_mm)) @ labels.direction_matrix.T
        distance = float(np.min(np.linalg.norm(phys - np.asarray(center), axis=1)))
        if distance > LABEL_CENTRE_TOLERANCE_MM:
            centroid = phys.mean(axis=0)
            problems.append(
                CaseListProblem(
                    row,
                    "label_map",
                    f"case {case.case_id}, lesion {lesion.lesion_id}: the labelled region ({'label ' + str(lesion.label_value) if lesion.label_value is not None else 'non-zero voxels'}, centred near ({centroid[0]:.1f}, {centroid[1]:.1f}, {centroid[2]:.1f}) mm) lies {distance:.1f} mm from the stated centre; the centre and the label map must describe the same lesion",
                )
            )
    return problems, warns
