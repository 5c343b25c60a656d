"""Synthetic spine CT pairs: the generator's promises, checked with numbers (small size only).

What is checked: HU statistics per tissue class (from the truth tissue map), scanner noise level
and correlation, lesion truth against the HU change between the exams, the recorded true
transform (read back from its file and used to warp the prior onto the current), landmarks,
benign findings present in both exams, reproducibility from the seed, rebuilding from the
recorded parameters, the DICOM <-> NIfTI round trip, the case set and its case list, the CLI.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import scipy.ndimage as ndi
import SimpleITK as sitk

from cases.caselist import read_case_list
from cases.io import read_exam, read_volume
from cases.synth import (
    BONE_LABELS,
    TISSUE_LABELS,
    SynthesisError,
    load_true_transform,
    map_points_mm,
    synthesize_case_set,
    synthesize_from_parameters,
    synthesize_pair,
    true_bone_displacements_mm,
    write_pair,
)

SPINE_LOCATIONS = ["vertebral_body", "pedicle", "lamina_arch", "spinous_process", "transverse_process", "rib"]
TYPES = ["lytic", "blastic", "mixed", "lytic", "blastic", "lytic"]


@pytest.fixture(scope="module")
def abnormal_pair():
    """Six lesions, one per spine location class, same acquisition in both exams."""
    return synthesize_pair(
        "T-ABN",
        seed=11,
        size="small",
        abnormal=True,
        n_lesions=6,
        lesion_types=TYPES,
        lesion_locations=SPINE_LOCATIONS,
        include_pelvis=False,
        vary_acquisition=False,
        benign_finding=True,
        keep_noise_free=True,
    )


@pytest.fixture(scope="module")
def pelvic_pair():
    return synthesize_pair(
        "T-PEL",
        seed=5,
        size="small",
        abnormal=True,
        n_lesions=2,
        lesion_types=["lytic", "blastic"],
        lesion_locations=["pelvis", "pelvis"],
        include_pelvis=True,
        vary_acquisition=True,
        keep_noise_free=True,
    )


@pytest.fixture(scope="module")
def normal_pair():
    return synthesize_pair("T-NOR", seed=12, size="small", abnormal=False, benign_finding=True, vary_acquisition=False, keep_noise_free=True)


def _warp_to_current(pair, volume, transform=None, default=-5000.0) -> np.ndarray:
    out = sitk.Resample(volume.to_sitk(), pair.current.to_sitk(), transform or pair.true_transform, sitk.sitkLinear, default)
    return sitk.GetArrayFromImage(out)


def _bone_away_from_lesions(pair, warped: np.ndarray, erode: int = 1, margin: int = 3) -> np.ndarray:
    bone = ndi.binary_erosion(pair.bone_label.array > 0, iterations=erode)
    near_lesion = ndi.binary_dilation(pair.lesion_labels.array > 0, iterations=margin)
    return bone & ~near_lesion & (warped > -4000)


# ----------------------------------------------------------------------------------------------
def test_small_geometry_and_value_range(abnormal_pair):
    prior, current = abnormal_pair.prior, abnormal_pair.current
    assert prior.shape == (96, 128, 128)
    assert prior.spacing_mm == (1.5, 1.5, 2.0)
    assert current.shape == prior.shape and current.spacing_mm == prior.spacing_mm
    for vol in (prior, current):
        assert vol.array.dtype == np.float32
        assert np.all(vol.array == np.rint(vol.array))
        assert vol.array.min() >= -1024 and vol.array.max() <= 3071
        assert vol.orientation == "LPS"
    for label in (abnormal_pair.lesion_labels, abnormal_pair.bone_label):
        assert label.same_space(current)
    assert abnormal_pair.prior_tissue_label.same_space(prior)


def test_hu_statistics_per_tissue_class(normal_pair):
    nf = normal_pair.noise_free["prior"].array
    noisy = normal_pair.prior.array
    tissue = normal_pair.prior_tissue_label.array
    anatomy = normal_pair.parameters["anatomy"]

    def interior(name: str) -> np.ndarray:
        mask = ndi.binary_erosion(tissue == TISSUE_LABELS[name], iterations=1)
        assert mask.sum() > 500, f"too few interior {name} voxels"
        return mask

    air = tissue == TISSUE_LABELS["air"]
    assert np.median(nf[air]) == -1000
    assert -1006 < noisy[interior("air")].mean() < -990  # noise clipped at -1024 biases it slightly up
    fat, muscle = interior("fat"), interior("muscle")
    assert -120 < np.median(nf[fat]) < -80 and abs(np.median(nf[fat]) - anatomy["fat_hu"]) < 2
    assert 35 < np.median(nf[muscle]) < 60 and abs(np.median(nf[muscle]) - anatomy["muscle_hu"]) < 3
    assert abs(noisy[fat].mean() - np.median(nf[fat])) < 3  # zero-mean noise
    cancellous = interior("cancellous_bone")
    assert 150 < np.median(nf[cancellous]) < 300
    assert np.percentile(nf[cancellous], 90) - np.percentile(nf[cancellous], 10) > 30  # trabecular texture
    cortex = tissue == TISSUE_LABELS["cortical_bone"]
    # a 1-2 mm shell in 1.5 mm voxels: partial volume, but the shell stays in the 700-1200 band
    assert 700 < np.median(nf[cortex]) < 1200
    assert 950 <= anatomy["cortex_hu"] <= 1150
    lung = interior("lung")
    assert -900 < np.median(nf[lung]) < -800
    disc = interior("disc")
    assert 60 < np.median(nf[disc]) < 110


def test_noise_level_and_spatial_correlation(normal_pair):
    sigma = normal_pair.parameters["acquisition"]["prior"]["noise_sigma_hu"]
    assert 15 <= sigma <= 30
    noise = normal_pair.prior.array - normal_pair.noise_free["prior"].array
    muscle = ndi.binary_erosion(normal_pair.prior_tissue_label.array == TISSUE_LABELS["muscle"], iterations=2)
    assert abs(noise[muscle].std() - sigma) < 0.08 * sigma
    pairs_x = muscle[:, :, :-1] & muscle[:, :, 1:]
    rho_x = np.corrcoef(noise[:, :, :-1][pairs_x], noise[:, :, 1:][pairs_x])[0, 1]
    assert 0.4 < rho_x < 0.9, "noise should be correlated between neighbouring voxels, not white"
    far = muscle[:, :, :-4] & muscle[:, :, 4:]
    assert abs(np.corrcoef(noise[:, :, :-4][far], noise[:, :, 4:][far])[0, 1]) < 0.15


def test_lesion_truth_matches_hu_change(abnormal_pair, pelvic_pair):
    for pair in (abnormal_pair, pelvic_pair):
        warped_nf = _warp_to_current(pair, pair.noise_free["prior"])
        warped = _warp_to_current(pair, pair.prior)
        delta_nf = pair.noise_free["current"].array - warped_nf
        delta = pair.current.array - warped
        labels = pair.lesion_labels.array
        assert sorted(np.unique(labels[labels > 0])) == [les.label_value for les in pair.lesions]
        for les in pair.lesions:
            mask = labels == les.label_value
            assert mask.sum() >= 3
            # every lesion voxel is bone of the lesion's location class
            assert np.all(pair.bone_label.array[mask] == BONE_LABELS[les.location.value])
            # centre and extent: all label voxels within radius_mm of the centre
            idx = np.argwhere(mask)[:, ::-1]
            pts = np.asarray(pair.current.origin_mm) + idx * np.asarray(pair.current.spacing_mm)
            assert np.linalg.norm(pts - np.asarray(les.center_mm), axis=1).max() <= les.radius_mm
            assert 1.5 <= les.radius_mm <= 15.0
            assert pair.current.contains_point(les.center_mm)
            # mean HU change inside the label (noise-free current minus warped prior). Small
            # lesions in thin cortical bone are partial-volume limited: over 30 random pairs the
            # weakest lytic lesion measured -82 HU and the weakest blastic one +139 HU.
            change = float(delta_nf[mask].mean())
            if les.lesion_type.value == "lytic":
                assert change < -60, (les, change)
            elif les.lesion_type.value == "blastic":
                assert change > 100, (les, change)
            else:  # mottled: both sclerotic and lytic parts
                assert delta_nf[mask].max() > 200 and delta_nf[mask].min() < -60, (les, change)
            # the same sign survives the noise
            assert np.sign(delta[mask].mean()) == np.sign(change)
        # lytic lesions reach lytic HU, blastic lesions sclerotic HU (noise-free current)
        cur = pair.noise_free["current"].array
        for les in pair.lesions:
            vals = cur[labels == les.label_value]
            if les.lesion_type.value == "lytic" and vals.size >= 20:
                assert np.min(vals) < 120
            elif les.lesion_type.value == "blastic":
                assert np.max(vals) > 600
        # away from lesions, bone is unchanged (same acquisition in the abnormal pair)
        if pair is abnormal_pair:
            far = _bone_away_from_lesions(pair, warped_nf)
            assert np.abs(delta_nf[far]).mean() < 1.0


def test_every_location_class_gets_lesions(abnormal_pair, pelvic_pair):
    got = {les.location.value for pair in (abnormal_pair, pelvic_pair) for les in pair.lesions}
    assert got == set(SPINE_LOCATIONS) | {"pelvis"}
    assert [les.lesion_type.value for les in abnormal_pair.lesions] == TYPES
    assert [les.location.value for les in abnormal_pair.lesions] == SPINE_LOCATIONS


def test_normal_case_has_no_lesions_but_benign_island_in_both_exams(normal_pair):
    assert normal_pair.lesions == [] and not normal_pair.abnormal
    assert not normal_pair.lesion_labels.array.any()
    islands = normal_pair.parameters["benign_findings"]
    assert islands, "benign_finding=True must add at least one bone island"
    for isl in islands:
        assert isl["kind"] == "bone_island" and 600 <= isl["hu"] <= 1000
        for exam, key in (("prior", "center_prior_mm"), ("current", "center_current_mm")):
            vol = normal_pair.noise_free[exam]
            i, j, k = np.round(vol.point_to_index(isl[key])).astype(int)
            patch = vol.array[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2]
            assert patch.max() > 450, f"bone island not dense in the {exam} exam"
        # unchanged: the warped prior matches the current at the island
        assert np.allclose(map_points_mm(normal_pair.true_transform, [isl["center_current_mm"]])[0], isl["center_prior_mm"], atol=1e-3)


def test_true_transform_file_reproduces_the_current_exam(abnormal_pair, tmp_path):
    pair = abnormal_pair
    paths = write_pair(pair, tmp_path / "case")
    transform = load_true_transform(paths["true_transform"])
    prior = read_volume(paths["prior"])
    warped = _warp_to_current(pair, prior, transform)
    warped_nf = _warp_to_current(pair, pair.noise_free["prior"], transform)
    far = _bone_away_from_lesions(pair, warped_nf)
    assert far.sum() > 2000
    # noise-free: the recorded transform maps the prior anatomy exactly onto the current exam
    assert np.abs(pair.noise_free["current"].array - warped_nf)[far].mean() < 1.0
    # noisy: what is left is noise, far below the error of a transform off by 1.5 mm
    err_true = np.abs(pair.current.array - warped)[far].mean()
    off = sitk.CompositeTransform([sitk.TranslationTransform(3, (1.5, 0.0, 0.0)), transform])
    err_off = np.abs(pair.current.array - _warp_to_current(pair, prior, off))[far].mean()
    sig = [pair.parameters["acquisition"][e]["noise_sigma_hu"] for e in ("prior", "current")]
    assert err_true < 1.2 * np.hypot(*sig)
    assert err_off > 2.0 * err_true
    # the composite holds the recorded rigid part, and its size is what the issue asks for
    rigid = pair.parameters["transform"]["rigid"]
    assert all(abs(a) <= 4.0 for a in rigid["angles_deg"])
    assert 5.0 <= np.linalg.norm(rigid["translation_mm"]) <= 20.0
    assert 0.5 < pair.parameters["transform"]["nonrigid"]["max_displacement_mm"] <= 5.0
    lo, hi = pair.parameters["transform"]["nonrigid"]["jacobian_range"]
    assert 0.85 < lo <= hi < 1.15
    euler = sitk.Euler3DTransform()
    euler.SetCenter(rigid["center_mm"])
    euler.SetRotation(*np.radians(rigid["angles_deg"]))
    euler.SetTranslation(rigid["translation_mm"])
    p = np.asarray(pair.current.index_to_point_mm((64, 64, 48)))
    nonrigid = np.linalg.norm(np.subtract(transform.TransformPoint(tuple(p)), euler.TransformPoint(tuple(p))))
    assert nonrigid < 6.0  # |E(x + u) - E(x)| = |u| <= 5 mm


def test_landmarks_and_bone_displacements(abnormal_pair):
    pair = abnormal_pair
    cur_lm = pair.parameters["landmarks_current_mm"]
    prior_lm = pair.parameters["landmarks_prior_mm"]
    assert len(cur_lm) >= 4
    mapped = map_points_mm(pair.true_transform, [cur_lm[k] for k in cur_lm])
    assert np.allclose(mapped, [prior_lm[k] for k in cur_lm], atol=1e-3)
    for name, point in cur_lm.items():
        if name == "S1":
            continue
        i, j, k = np.round(pair.current.point_to_index(point)).astype(int)
        assert pair.bone_label.array[k, j, i] == BONE_LABELS["vertebral_body"], name
    pts, disp = true_bone_displacements_mm(pair.true_transform, pair.bone_label, max_points=500, seed=1)
    assert pts.shape == disp.shape == (500, 3)
    norms = np.linalg.norm(disp, axis=1)
    assert 1.0 < norms.mean() < 40.0
    assert np.allclose(map_points_mm(pair.true_transform, pts[:5]) - pts[:5], disp[:5])
    i, j, k = np.round(pair.current.point_to_index(pts[0])).astype(int)
    assert pair.bone_label.array[k, j, i] > 0


def test_different_acquisitions_still_register(pelvic_pair):
    pair = pelvic_pair
    prior_acq, cur_acq = (pair.parameters["acquisition"][e] for e in ("prior", "current"))
    assert cur_acq["spacing_mm"] != prior_acq["spacing_mm"] or cur_acq["kernel"] != prior_acq["kernel"]
    assert pair.current.spacing_mm == tuple(cur_acq["spacing_mm"])
    warped_nf = _warp_to_current(pair, pair.noise_free["prior"])
    far = _bone_away_from_lesions(pair, warped_nf, erode=2)
    # different slice profile and kernel blur edges differently, but interiors agree
    assert np.abs(pair.noise_free["current"].array - warped_nf)[far].mean() < 25.0


def test_same_seed_same_bytes_and_rebuild_from_parameters(normal_pair):
    again = synthesize_pair("T-NOR", seed=12, size="small", abnormal=False, benign_finding=True, vary_acquisition=False)
    assert again.prior.array.tobytes() == normal_pair.prior.array.tobytes()
    assert again.current.array.tobytes() == normal_pair.current.array.tobytes()
    assert again.bone_label.array.tobytes() == normal_pair.bone_label.array.tobytes()
    rebuilt = synthesize_from_parameters(json.loads(json.dumps(normal_pair.parameters)))
    assert rebuilt.current.array.tobytes() == normal_pair.current.array.tobytes()
    other = synthesize_pair("T-NOR", seed=13, size="small", abnormal=False, benign_finding=True, vary_acquisition=False)
    assert other.prior.array.tobytes() != normal_pair.prior.array.tobytes()
    assert np.abs(other.prior.array - normal_pair.prior.array).mean() > 20
    assert other.parameters["transform"]["rigid"] != normal_pair.parameters["transform"]["rigid"]


def test_dicom_and_nifti_round_trip_keep_geometry(pelvic_pair, tmp_path):
    paths = write_pair(pelvic_pair, tmp_path / "case", dicom=True)
    headers = {}
    for exam in ("prior", "current"):
        from_dicom = read_exam(paths[f"{exam}_dicom"])
        from_nifti = read_exam(paths[exam])
        original = getattr(pelvic_pair, exam)
        for vol in (from_dicom.volume, from_nifti.volume):
            assert vol.size == original.size
            assert np.allclose(vol.spacing_mm, original.spacing_mm, atol=1e-4)
            assert np.allclose(vol.origin_mm, original.origin_mm, atol=1e-3)
            assert np.allclose(vol.direction, original.direction, atol=1e-6)
            assert np.array_equal(vol.array, original.array)
        headers[exam] = from_dicom.header
    assert headers["prior"]["PatientID"] == headers["current"]["PatientID"] == "T-PEL"
    assert headers["prior"]["StudyInstanceUID"] != headers["current"]["StudyInstanceUID"]
    assert headers["prior"]["FrameOfReferenceUID"] != headers["current"]["FrameOfReferenceUID"]
    d0, d1 = (dt.datetime.strptime(str(headers[e]["StudyDate"]), "%Y%m%d") for e in ("prior", "current"))
    assert 150 <= (d1 - d0).days <= 250
    labels = read_volume(paths["lesions"], label=True)
    assert labels.same_space(pelvic_pair.current)
    assert np.array_equal(labels.array, pelvic_pair.lesion_labels.array)


def test_case_set_and_case_list(tmp_path):
    path = synthesize_case_set(tmp_path / "set", n_cases=4, abnormal_fraction=0.5, seed=2, progress=False)
    case_list = read_case_list(path)
    assert len(case_list) == 4 and len(case_list.abnormal_cases) == 2
    for case in case_list:
        assert case.true_transform is not None and case.true_transform.is_file()
        params = json.loads((case.prior.parent / "params.json").read_text())
        assert params["request"]["case_id"] == case.case_id
        labels = read_volume(case.current.parent / "lesions.nii.gz", label=True).array
        for les in case.lesions:
            assert les.label_map is not None and les.label_value in np.unique(labels)
            assert les.radius_mm is not None and les.radius_mm > 0
    seeds = [json.loads((c.prior.parent / "params.json").read_text())["request"]["seed"] for c in case_list]
    assert len(set(seeds)) == 4


def test_cli_synth_writes_a_valid_case_list(tmp_path):
    from typer.testing import CliRunner

    from cases.cli import app

    out = tmp_path / "cli_set"
    result = CliRunner().invoke(app, ["synth", str(out), "--n-cases", "2", "--abnormal-fraction", "0.5", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "caselist.csv" in result.output.replace("\n", "")
    assert len(read_case_list(out / "caselist.csv")) == 2
    again = CliRunner().invoke(app, ["synth", str(out), "--n-cases", "2"])
    assert again.exit_code != 0 and "already holds a case set" in again.output.replace("\n", " ")
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--size", "huge"])
    assert bad.exit_code != 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": "huge"}, "size must be one of"),
        ({"abnormal": False, "n_lesions": 2}, "normal case"),
        ({"n_lesions": 0}, "n_lesions must be between"),
        ({"lesion_locations": ["femur"]}, "unknown value"),
        ({"lesion_types": ["cystic"]}, "unknown value"),
        ({"lesion_radius_mm": (5.0, 2.0)}, "lesion_radius_mm"),
        ({"noise_sigma_hu": -1.0}, "noise_sigma_hu"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(SynthesisError, match=message):
        synthesize_pair("bad", seed=0, **kwargs)


def test_pelvis_lesion_needs_a_pelvic_window():
    with pytest.raises(SynthesisError, match="include_pelvis"):
        synthesize_pair("nopelvis", seed=21, size="small", lesion_locations=["pelvis"], include_pelvis=False)


def test_load_true_transform_reports_missing_file(tmp_path):
    with pytest.raises(SynthesisError, match="not found"):
        load_true_transform(tmp_path / "none.h5")
