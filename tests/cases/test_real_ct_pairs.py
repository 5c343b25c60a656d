"""Pairs with truth made from a real CT (TotalSegmentator example, tests/data/real_ct)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cases import read_case_list, read_volume
from cases.real_ct_pairs import (
    TOTALSEGMENTATOR_BONE_CLASSES,
    bone_classes_from_labels,
    real_ct_case_set,
    real_ct_pair,
)
from cases.synth import SynthesisError, true_bone_displacements_mm

DATA = Path(__file__).resolve().parents[1] / "data" / "real_ct"
CT = DATA / "abdomen_ct_3mm_30slices.nii.gz"
LABELS = DATA / "abdomen_ct_3mm_30slices_labels.nii.gz"


@pytest.fixture(scope="module")
def source():
    return read_volume(CT), read_volume(LABELS, label=True)


@pytest.fixture(scope="module")
def pair(source):
    ct, labels = source
    return real_ct_pair(
        ct,
        "RT1",
        3,
        labels=labels,
        n_lesions=3,
        lesion_locations=["vertebral_body", "lamina_arch", "vertebral_body"],
        lesion_types=["lytic", "blastic", "mixed"],
    )


def test_bone_classes_from_totalsegmentator_labels(source):
    ct, labels = source
    cls = bone_classes_from_labels(labels).array
    vert = np.isin(labels.array, [v for v, k in TOTALSEGMENTATOR_BONE_CLASSES.items() if k == "vertebra"])
    ribs = np.isin(labels.array, range(92, 116))
    assert set(np.unique(cls[vert])) == {1, 3}  # every vertebra split into body and arch
    assert (cls[ribs] == 6).all()
    # organs and vessels (aorta 52, kidneys 2-3, liver 5) are never bone
    assert (cls[np.isin(labels.array, [2, 3, 5, 52, 63])] == 0).all()
    # the body lies anterior (smaller LPS y) of the arch
    ys = (labels.origin_mm[1] + labels.direction_matrix[1, 1] * labels.spacing_mm[1] * np.arange(cls.shape[1]))[None, :, None]
    yy = np.broadcast_to(ys, cls.shape)
    assert yy[cls == 1].mean() < yy[cls == 3].mean()
    with pytest.raises(SynthesisError, match="none of its labels"):
        bone_classes_from_labels(labels.with_array(np.where(vert | ribs, 0, labels.array) * (labels.array < 25)))


def test_lesions_are_in_bone_of_their_class_with_the_right_change(pair, source):
    ct, labels = source
    assert len(pair.lesions) >= 2
    warped = sitk.GetArrayFromImage(sitk.Resample(pair.prior.to_sitk(), pair.current.to_sitk(), pair.true_transform, sitk.sitkLinear, -1024.0))
    bone = pair.bone_label.array
    for les, rec in zip(pair.lesions, pair.parameters["lesions"]):
        m = pair.lesion_labels.array == les.label_value
        assert m.any()
        # every truth voxel lies in bone of the lesion's class (never in a vessel or organ)
        value = {"vertebral_body": 1, "lamina_arch": 3, "rib": 6, "pelvis": 7, "other": 8}[les.location.value]
        assert (bone[m] == value).all()
        change = float((pair.current.array[m] - warped[m]).mean())
        if les.lesion_type.value == "lytic":
            assert change < -40, change
        elif les.lesion_type.value == "blastic":
            assert change > 100, change
        # the centre and radius hold the whole label
        idx = np.argwhere(m)[:, ::-1].astype(float)
        pts = np.asarray(pair.current.origin_mm) + (idx * np.asarray(pair.current.spacing_mm)) @ pair.current.direction_matrix.T
        assert np.linalg.norm(pts - np.asarray(les.center_mm), axis=1).max() <= les.radius_mm + 1e-6
        assert 1.0 <= rec["equivalent_diameter_mm"] <= 20.0


def test_true_transform_maps_current_onto_prior_and_articulates_vertebrae(pair):
    t = pair.parameters["transform"]
    assert len(t["nonrigid"]["articulating_units"]) >= 3  # one per vertebra of the label map (T11-L2, partly in view)
    lo, hi = t["nonrigid"]["jacobian_range"]
    assert 0.8 < lo <= 1.0 <= hi < 1.25
    # outside the lesions, the current exam is the prior moved by T (up to noise, kernel and slice profile)
    warped = sitk.GetArrayFromImage(sitk.Resample(pair.prior.to_sitk(), pair.current.to_sitk(), pair.true_transform, sitk.sitkLinear, -1024.0))
    body = (pair.current.array > -300) & (warped > -300) & (pair.lesion_labels.array == 0)
    from scipy import ndimage as ndi

    inner = ndi.binary_erosion(body, iterations=2)
    diff = np.abs(pair.current.array[inner] - warped[inner])
    assert np.median(diff) < 30.0
    # a wrong transform (identity) is much worse
    ident = sitk.GetArrayFromImage(sitk.Resample(pair.prior.to_sitk(), pair.current.to_sitk(), sitk.Transform(), sitk.sitkLinear, -1024.0))
    assert np.median(np.abs(pair.current.array[inner] - ident[inner])) > 1.5 * np.median(diff)
    pts, disp = true_bone_displacements_mm(pair.true_transform, pair.bone_label, max_points=500)
    assert np.isfinite(disp).all() and np.linalg.norm(disp, axis=1).max() < 40.0


def test_same_seed_same_pair(source):
    ct, labels = source
    a = real_ct_pair(ct, "RT2", 9, labels=labels, n_lesions=1)
    b = real_ct_pair(ct, "RT2", 9, labels=labels, n_lesions=1)
    np.testing.assert_array_equal(a.current.array, b.current.array)
    np.testing.assert_array_equal(a.lesion_labels.array, b.lesion_labels.array)


def test_requested_class_that_is_absent_is_refused(source):
    ct, labels = source
    with pytest.raises(SynthesisError, match="no pelvis bone"):
        real_ct_pair(ct, "RT3", 1, labels=labels, n_lesions=1, lesion_locations=["pelvis"])


def test_case_set_passes_validation(tmp_path, source):
    path = real_ct_case_set(tmp_path / "set", [CT], labels=[LABELS], n_cases=2, abnormal_fraction=0.5, seed=4)
    cl = read_case_list(path)
    assert len(cl.cases) == 2 and sum(c.abnormal for c in cl.cases) == 1
    abnormal = next(c for c in cl.cases if c.abnormal)
    assert abnormal.lesions and all(les.label_map is not None and les.label_map.is_file() for les in abnormal.lesions)
    assert abnormal.true_transform is not None and abnormal.true_transform.is_file()
    from typer.testing import CliRunner

    from cases.cli import app

    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_cli_refuses_labels_without_ct(tmp_path):
    from typer.testing import CliRunner

    from cases.cli import app

    result = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--labels", str(LABELS)])
    assert result.exit_code == 2
    assert "--labels needs --from-ct" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "y"), "--from-ct", str(tmp_path / "missing.nii.gz")])
    assert result.exit_code == 2 and "CT not found" in " ".join(result.output.split())
