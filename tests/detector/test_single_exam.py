"""Single-exam mode: blind spot, geometry, bundle hash, a tiny training run, evaluation and CLI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cases import LabelVolume  # noqa: E402
from detector import DetectorInputError, compute_single_exam_zmap, load_single_exam_model, single_exam_roi  # noqa: E402
from detector._inpaint_net import BlindSpotNet  # noqa: E402
from detector.detection_eval import EVALUATION_JSON_KEYS, EvaluationSettings, evaluate_detectors  # noqa: E402
from detector.single_exam import (  # noqa: E402
    SingleExamTrainingConfig,
    predict_single_exam_on_grid,
    prepare_single_exam_exams,
    single_exam_conditions,
    train_single_exam_model,
)
from detector.zscore import ModelBundleError, OutOfDomainWarning, default_model_path  # noqa: E402

from .zscore_toy import BLASTIC_CENTRE, toy_pair, write_toy_study  # noqa: E402


def _random_net(seed: int = 0, blind_radius_vox: int = 2) -> BlindSpotNet:
    torch.manual_seed(seed)
    net = BlindSpotNet(channels=4, n_layers=3, blind_radius_vox=blind_radius_vox, head_channels=8)
    with torch.no_grad():  # the head starts at zero: give it weights so outputs depend on the input
        for p in net.head.parameters():
            p.normal_(0.0, 0.3)
    return net.eval()


# ---------------------------------------------------------------------------------------------
# The blind spot
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("blind_radius_vox", [1, 2])
def test_blind_cube_is_never_seen(blind_radius_vox):
    net = _random_net(blind_radius_vox=blind_radius_vox)
    r = blind_radius_vox
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 27, 26, 25, generator=gen)
    cond = torch.tensor([[0.3, 1.0, 1.3]])
    c = (13, 12, 12)
    with torch.no_grad():
        mu, lv = net(x, cond)
        # anything inside the (2r+1)^3 cube around c: neither mu nor sigma at c may change
        x_in = x.clone()
        x_in[0, 0, c[0] - r : c[0] + r + 1, c[1] - r : c[1] + r + 1, c[2] - r : c[2] + r + 1] += 10.0 * torch.randn((2 * r + 1,) * 3, generator=gen)
        mu_in, lv_in = net(x_in, cond)
        assert float(mu_in[0, 0, c[0], c[1], c[2]]) == pytest.approx(float(mu[0, 0, c[0], c[1], c[2]]), abs=1e-6)
        assert float(lv_in[0, 0, c[0], c[1], c[2]]) == pytest.approx(float(lv[0, 0, c[0], c[1], c[2]]), abs=1e-6)
        # ... but the voxels next to the cube, along each of the six directions, are seen
        for axis in range(3):
            for sign in (-1, 1):
                pos = list(c)
                pos[axis] += sign * (r + 1)
                x_out = x.clone()
                x_out[0, 0, pos[0], pos[1], pos[2]] += 10.0
                mu_out, lv_out = net(x_out, cond)
                changed = abs(float(mu_out[0, 0, c[0], c[1], c[2]] - mu[0, 0, c[0], c[1], c[2]])) + abs(
                    float(lv_out[0, 0, c[0], c[1], c[2]] - lv[0, 0, c[0], c[1], c[2]])
                )
                assert changed > 1e-5, f"voxel at offset {sign * (r + 1)} along axis {axis} is not seen"
    assert net.reach_vox == r + 1 + 2 * 3


def test_tiled_prediction_equals_whole_volume():
    net = _random_net(seed=3)
    pair = toy_pair(seed=5)
    hu = pair.current.array
    roi = pair.roi.array != 0
    cond = single_exam_conditions(15.0, (1.5, 1.5, 1.5))
    mu_a, sig_a = predict_single_exam_on_grid(net, hu, cond, roi)
    mu_b, sig_b = predict_single_exam_on_grid(net, hu, cond, roi, tile_vox=16)
    computed = np.isfinite(sig_b)
    assert computed[roi].all()
    np.testing.assert_allclose(mu_b[computed], mu_a[computed], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(sig_b[computed], sig_a[computed], rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Training, bundle, inference (one tiny trained bundle per module)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    return write_toy_study(tmp_path_factory.mktemp("toy-single"))


@pytest.fixture(scope="module")
def tiny_bundle(toy_study, tmp_path_factory):
    caselist, _ = toy_study
    root = tmp_path_factory.mktemp("single-bundle")
    exams = prepare_single_exam_exams(caselist, root / "work", progress=False)
    cfg = SingleExamTrainingConfig(
        iterations=40,
        batch_size=2,
        patch_vox=20,
        loss_border_vox=3,
        learning_rate=1e-2,
        channels=4,
        n_layers=3,
        head_channels=8,
        checkpoint_every=20,
        validation_pairs=1,
        seed=0,
        device="cpu",
        num_threads=1,
        version="0.0.1-test",
    )
    result = train_single_exam_model(
        exams, root / "single.pt", config=cfg, progress=False, checkpoint_dir=root / "work", training_data={"case_list": str(caselist)}
    )
    return exams, result, cfg, root


def test_training_data_are_both_exams_of_normal_pairs(tiny_bundle):
    exams = tiny_bundle[0]
    # the toy study has two normal cases (T0, T2): current and prior of each, no abnormal case
    assert sorted(f"{e.case_id}/{e.role}" for e in exams) == ["T0/current", "T0/prior", "T2/current", "T2/prior"]
    for e in exams:
        assert e.roi.any() and e.hu.shape == e.roi.shape
        assert 10.0 < e.noise_hu < 25.0  # white noise of 15 HU, read on the working grid


def test_tiny_training_lowers_the_loss_and_writes_the_bundle(tiny_bundle):
    _, result, cfg, root = tiny_bundle
    nll = np.asarray(result.history["nll"])
    assert nll.size == cfg.iterations
    assert nll[-10:].mean() < nll[:5].mean() - 0.5
    meta = json.loads(result.metadata_path.read_text())
    assert meta["name"] == "tsct-single-exam" and meta["version"] == "0.0.1-test"
    assert meta["training_data"]["n_exams_train"] == 2 and meta["training_data"]["n_exams_validation"] == 2
    assert meta["architecture"]["blind_radius_vox"] == 2
    assert meta["intended_use"].startswith("research use only")
    assert set(meta["validation"]) >= {"frac_abs_z_gt3", "z_sd", "nll", "sigma_median_hu"}
    assert (root / "single-loss.png").stat().st_size > 1000 and (root / "single-calibration.png").is_file()
    card = result.model_card_path.read_text()
    assert "not for diagnosis" in card and meta["sha256"] in card
    assert (root / "work" / "single.ckpt.pt").is_file()


def test_resume_continues_from_the_checkpoint(tiny_bundle):
    exams, result, cfg, root = tiny_bundle
    longer = SingleExamTrainingConfig(**{**cfg.to_dict(), "iterations": 44})
    res2 = train_single_exam_model(exams, root / "resumed" / "single.pt", config=longer, resume=True, progress=False, checkpoint_dir=root / "work")
    assert res2.iterations == 44
    assert res2.history["nll"][:40] == result.history["nll"]


def test_bundle_hash_is_checked(tiny_bundle, tmp_path):
    _, result, _, _ = tiny_bundle
    model = load_single_exam_model(result.weights_path)
    assert model.version == "0.0.1-test" and model.blind_radius_vox == 2
    bad = tmp_path / "single.pt"
    bad.write_bytes(result.weights_path.read_bytes() + b"\0")
    (tmp_path / "single.metadata.json").write_text(result.metadata_path.read_text())
    with pytest.raises(ModelBundleError, match="SHA-256"):
        load_single_exam_model(bad)
    # the temporal network's bundle is refused by name, not loaded into the wrong architecture
    with pytest.raises(ModelBundleError, match="not a single-exam"):
        load_single_exam_model(default_model_path())


def test_zmap_geometry_and_blastic_lesion(tiny_bundle):
    _, result, _, _ = tiny_bundle
    model = load_single_exam_model(result.weights_path)
    pair = toy_pair(seed=7)
    zm = compute_single_exam_zmap(pair.current, model=model)
    assert zm.method == "single-exam" and zm.model_version == "0.0.1-test"
    for vol in (zm.z, zm.sigma_hu, zm.estimate_hu, zm.bone_roi):
        assert vol.shape == pair.current.shape and vol.same_space(pair.current)
    roi = zm.bone_roi.array != 0
    np.testing.assert_array_equal(roi, single_exam_roi(pair.current).array != 0)
    assert np.all(zm.z.array[~roi] == 0) and np.all(zm.sigma_hu.array[~roi] == 0)
    assert np.all(zm.sigma_hu.array[roi] > 0) and np.all(np.isfinite(zm.z.array))
    assert zm.parameters["blind_cube_vox"] == 5 and zm.parameters["recalibration_factor"] >= 1.0
    # the ROI may also be given; outside it nothing is computed
    small = np.zeros(pair.current.shape, np.uint8)
    small[20:30, 14:26, 14:26] = 1
    with warnings.catch_warnings():  # a box of bone and marrow: other bone HU than the trained ROI
        warnings.simplefilter("ignore", OutOfDomainWarning)
        zs = compute_single_exam_zmap(pair.current, LabelVolume(small, pair.current.spacing_mm, pair.current.origin_mm), model=model, force=True)
    assert np.all(zs.z.array[small == 0] == 0)
    # a 900 HU sphere inside 230 HU cancellous bone: the map is positive at its centre
    assert zm.z.array[BLASTIC_CENTRE] > 0.0


def test_out_of_domain_exam_is_refused_unless_forced(tiny_bundle):
    _, result, _, _ = tiny_bundle
    model = load_single_exam_model(result.weights_path)
    pair = toy_pair(seed=8, spacing_mm=(3.0, 3.0, 3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        with pytest.raises(DetectorInputError, match="voxel spacing"):
            compute_single_exam_zmap(pair.current, model=model)
    with pytest.warns(OutOfDomainWarning):
        zm = compute_single_exam_zmap(pair.current, model=model, force=True)
    assert zm.parameters["forced"] and any("forced" in n for n in zm.notes)


def test_evaluation_scores_the_single_exam_method(toy_study, tiny_bundle, tmp_path):
    caselist, work = toy_study
    _, result, _, _ = tiny_bundle
    ev = evaluate_detectors(
        caselist, work, methods=("plain", "single_exam"), single_exam_model=result.weights_path, settings=EvaluationSettings(), progress=False
    )
    assert set(ev.scores) == {"plain", "single_exam"}
    se = ev.scores["single_exam"]
    assert se.n_cases == 4 and se.n_lesions == 4 and se.n_normal_cases == 2
    assert math.isfinite(se.wafroc) and 0.0 <= se.wafroc <= 1.0
    assert 0.0 <= se.calibration_frac_abs_gt3 <= 1.0
    data = json.loads(ev.write_json(tmp_path / "ev.json").read_text())
    for key in ("sensitivity_at_0.5_fp", "sensitivity_at_1_fp", "sensitivity_at_3_fp", "wafroc", "calibration_frac_abs_gt3", "froc", "subgroups"):
        assert key in data["methods"]["single_exam"] and key in EVALUATION_JSON_KEYS
    assert data["model"]["single_exam"]["sha256"] == json.loads(result.metadata_path.read_text())["sha256"]
    assert "Single-exam network" in ev.to_markdown()
    with pytest.raises(DetectorInputError, match="single_exam"):
        evaluate_detectors(caselist, work, methods=("single-exam",), progress=False)


def test_cli_writes_the_single_exam_outputs(toy_study, tiny_bundle, tmp_path):
    from typer.testing import CliRunner

    from detector.cli import app

    caselist, _ = toy_study
    _, result, _, _ = tiny_bundle
    current = caselist.parent / "cases" / "T1" / "current.nii.gz"
    out = tmp_path / "se"
    res = CliRunner().invoke(app, ["single-exam", str(current), "--out", str(out), "--model", str(result.weights_path)])
    assert res.exit_code == 0, res.output
    for name in ("zmap.nii.gz", "sigma.nii.gz", "candidates.json", "candidates.csv", "single_exam.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "single_exam.json").read_text())
    assert summary["method"] == "single-exam" and summary["blind_cube_vox"] == 5
    cands = json.loads((out / "candidates.json").read_text())
    assert cands["parameters"]["z_method"] == "single-exam"
    bad = CliRunner().invoke(app, ["single-exam", str(current), "--out", str(tmp_path / "x"), "--model", str(tmp_path / "missing.pt")])
    assert bad.exit_code == 2 and "not found" in bad.output
