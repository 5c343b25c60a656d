"""A small synthetic study on disk for tests and benchmarks: tiny NIfTI exams and their case list.

:func:`write_synthetic_case_list` writes prior/current pairs with blocks of bone under the given
lesion centres, so studies can be created, locked and read without real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["SyntheticLesion", "write_synthetic_case_list", "BONE_BLOCK_HU"]


@dataclass(frozen=True)
class SyntheticLesion:
    """A lesion to place in a synthetic case: centre in voxel index ``(x, y, z)`` and radius in mm."""

    index_xyz: tuple[int, int, int]
    radius_mm: float
    lesion_type: str = "lytic"
    location: str = "vertebral_body"


#: HU of the bone block :func:`write_synthetic_case_list` puts under each lesion centre.
BONE_BLOCK_HU = 400.0


def write_synthetic_case_list(
    folder: str | Path,
    lesions_per_case: Sequence[Sequence[SyntheticLesion]],
    *,
    size_xyz: tuple[int, int, int] = (16, 16, 12),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 2.0),
    origin_mm: tuple[float, float, float] = (-8.0, -8.0, 0.0),
    prefix: str = "C",
    seed: int = 0,
    label_maps: bool = False,
    name: str = "cases.csv",
) -> Path:
    """Write small prior/current NIfTI pairs and a case list; an empty lesion list makes a normal case.

    The exams are noise around -500 HU with a 3x3x3-voxel block of bone (:data:`BONE_BLOCK_HU`)
    around each lesion centre, in both exams, so the truth passes the case list's content checks
    (:func:`cases.read_case_list` with ``check_images``: a lesion centre must lie in bone).

    Lesion centres are given as voxel indices and written in LPS mm of the current exam. With
    ``label_maps`` each abnormal case also gets a label map (lesion ``n`` = value ``n``: the
    voxels within ``radius_mm`` of the centre) and lesions are described by it instead of a radius.
    Returns the case-list path.
    """
    from cases import Case, CaseList, LabelVolume, Lesion, Volume, write_case_list, write_volume

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape_zyx = (size_xyz[2], size_xyz[1], size_xyz[0])
    cases = []
    for k, lesion_specs in enumerate(lesions_per_case):
        code = f"{prefix}{k + 1:03d}"
        array = rng.normal(0.0, 20.0, shape_zyx).astype(np.float32) - 500.0
        array[0, 0, 0] = -1000.0
        array[-1, -1, -1] = 1200.0
        for spec in lesion_specs:  # truth lies in bone: a small block of bone under each lesion centre
            ix, iy, iz = spec.index_xyz
            array[max(iz - 1, 0) : iz + 2, max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2] = BONE_BLOCK_HU
        current = Volume(array, spacing_mm, origin_mm)
        prior = Volume(array + rng.normal(0.0, 5.0, shape_zyx).astype(np.float32), spacing_mm, origin_mm)
        prior_path = write_volume(prior, folder / f"{code}_prior.nii.gz")
        current_path = write_volume(current, folder / f"{code}_current.nii.gz")
        lesions = []
        label_path = None
        if label_maps and lesion_specs:
            labels = np.zeros(shape_zyx, dtype=np.uint8)
            zz, yy, xx = np.indices(shape_zyx)
            for n, spec in enumerate(lesion_specs, start=1):
                ix, iy, iz = spec.index_xyz
                dist = np.sqrt(((xx - ix) * spacing_mm[0]) ** 2 + ((yy - iy) * spacing_mm[1]) ** 2 + ((zz - iz) * spacing_mm[2]) ** 2)
                labels[(dist <= spec.radius_mm) & (labels == 0)] = n
            label_path = write_volume(LabelVolume(labels, spacing_mm, origin_mm), folder / f"{code}_labels.nii.gz")
        for n, spec in enumerate(lesion_specs, start=1):
            center = tuple(float(c) for c in current.index_to_point_mm(spec.index_xyz))
            lesions.append(
                Lesion(
                    lesion_id=f"L{n}",
                    center_mm=center,
                    lesion_type=spec.lesion_type,
                    location=spec.location,
                    radius_mm=None if label_path else spec.radius_mm,
                    label_map=label_path,
                    label_value=n if label_path else None,
                )
            )
        cases.append(Case(case_id=code, prior=prior_path, current=current_path, abnormal=bool(lesions), lesions=tuple(lesions)))
    return write_case_list(CaseList(tuple(cases)), folder / name)
