"""A tiny registered prior/current pair for the z-score tests (no registration needed).

A 40^3 grid of 1.5 mm voxels: soft tissue (40 HU) around a bone cylinder along z (1000 HU cortex
one voxel thick, 230 HU cancellous bone with smooth texture), a slab of air along one side,
independent white noise in each
exam, and in the current exam a lytic sphere (bone replaced by 40 HU) and a blastic sphere (bone
raised to 900 HU), both of radius 4 voxels (6 mm). The prior is already "warped": the same
geometry as the current.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

SHAPE = (40, 40, 40)
CENTRE_YX = (20, 20)
LYTIC_CENTRE = (12, 20, 20)  # z, y, x
BLASTIC_CENTRE = (28, 20, 20)
LESION_RADIUS_VOX = 4


@dataclass
class ToyPair:
    prior: Volume
    current: Volume
    roi: LabelVolume
    lesions: LabelVolume  # 1 = lytic, 2 = blastic
    bone: np.ndarray


def _ball(centre: tuple[int, int, int], radius: float) -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def toy_pair(seed: int = 0, *, spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5), noise_hu: float = 15.0, lesions: bool = True) -> ToyPair:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    r = np.sqrt((y - CENTRE_YX[0]) ** 2 + (x - CENTRE_YX[1]) ** 2)
    bone = r <= 9.5
    cortex = bone & (r > 8.5)
    texture = ndi.gaussian_filter(rng.standard_normal(SHAPE), 1.0)
    texture *= 40.0 / texture.std()
    anatomy = np.full(SHAPE, 40.0)
    anatomy[:, :, :2] = -1000.0  # a slab of air, so the exams read as CT in HU
    anatomy[bone] = 230.0 + texture[bone]
    anatomy[cortex] = 1000.0
    prior = anatomy + rng.normal(0.0, noise_hu, SHAPE)
    cur_anat = anatomy.copy()
    labels = np.zeros(SHAPE, np.uint8)
    if lesions:
        lyt = _ball(LYTIC_CENTRE, LESION_RADIUS_VOX) & bone & ~cortex
        bla = _ball(BLASTIC_CENTRE, LESION_RADIUS_VOX) & bone & ~cortex
        cur_anat[lyt] = 40.0
        cur_anat[bla] = 900.0
        labels[lyt] = 1
        labels[bla] = 2
    current = cur_anat + rng.normal(0.0, noise_hu, SHAPE)
    roi = (r <= 11.5).astype(np.uint8)
    origin = (-30.0, -30.0, -30.0)
    mk = lambda a: Volume(np.rint(a).astype(np.float32), spacing_mm, origin)  # noqa: E731
    return ToyPair(
        prior=mk(prior),
        current=mk(current),
        roi=LabelVolume(roi, spacing_mm, origin),
        lesions=LabelVolume(labels, spacing_mm, origin),
        bone=bone,
    )


def untrained_model(domain: dict | None = None, seed: int = 0):  # type: ignore[no-untyped-def]
    """A ZScoreModel with random (untrained) weights and permissive metadata."""
    import torch

    from detector.zscore import ZScoreModel, build_net

    torch.manual_seed(seed)
    net = build_net(channels=4, dilations=(1, 1))
    # random head so that mu and sigma depend on the input
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    meta = {
        "name": "toy",
        "version": "0.0.1",
        "architecture": {"channels": 4, "dilations": [1, 1], "n_inputs": 7},
        "input": {"working_spacing_mm": 1.5},
        "domain": domain or {},
    }
    return ZScoreModel(net=net.eval(), metadata=meta, path=None, device=torch.device("cpu"))


def write_toy_study(root, abnormal=(False, True, False, True)):  # type: ignore[no-untyped-def]
    """Toy cases on disk with their "registration outputs" already in ``root/work/<case_id>/``.

    Returns (case-list path, work folder). The work folders hold what ``detector.run_pair``
    writes and the z-score stages read (warped prior = prior, bone ROI, voxel-matched
    subtraction = plain subtraction, ``qc.json`` with status and the prior's spacing).
    """
    import json
    from pathlib import Path

    from cases import Case, CaseList, Lesion, write_case_list, write_volume

    root = Path(root)
    work = root / "work"
    cases = []
    for i, is_abnormal in enumerate(abnormal):
        pair = toy_pair(seed=100 + i, lesions=is_abnormal)
        folder = root / "cases" / f"T{i}"
        prior = write_volume(pair.prior, folder / "prior.nii.gz")
        current = write_volume(pair.current, folder / "current.nii.gz")
        lesions = ()
        if is_abnormal:
            labels = write_volume(pair.lesions, folder / "lesions.nii.gz")
            lesions = tuple(
                Lesion(
                    f"T{i}-{k}",
                    tuple(float(v) for v in pair.current.index_to_point_mm(c[::-1])),
                    t,
                    "vertebral_body",
                    radius_mm=6.0,
                    label_map=labels,
                    label_value=k,
                )
                for k, (t, c) in enumerate((("lytic", LYTIC_CENTRE), ("blastic", BLASTIC_CENTRE)), start=1)
            )
        cases.append(Case(f"T{i}", prior, current, is_abnormal, lesions))
        out = work / f"T{i}"
        write_volume(pair.prior, out / "warped_prior.nii.gz")
        write_volume(pair.roi, out / "bone_roi.nii.gz")
        vm = np.where(pair.roi.array != 0, pair.current.array - pair.prior.array, 0).astype(np.float32)
        write_volume(pair.current.like(vm), out / "subtraction_vm.nii.gz")
        (out / "qc.json").write_text(json.dumps({"status": "ok", "inputs": {"prior": {"spacing_mm": [1.5, 1.5, 1.5]}}}))
    path = write_case_list(CaseList(tuple(cases)), root / "caselist.csv")
    return path, work
