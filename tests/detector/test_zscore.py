"""The z-score map: the network never reads the current, polarity, bundle hash, domain fallback."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from detector.zscore import (
    DomainCheck,
    ModelBundleError,
    OutOfDomainWarning,
    analytic_sigma,
    compute_zmap,
    condition_vector,
    default_model_path,
    load_zscore_model,
    metadata_path_for,
    noise_index_hu,
    predict_on_grid,
)

from .zscore_toy import toy_pair, untrained_model

torch = pytest.importorskip("torch")


def test_network_never_reads_the_current_inside_the_roi():
    pair = toy_pair(seed=1)
    model = untrained_model()
    a = compute_zmap(pair.current, pair.prior, pair.roi, model=model, prior_spacing_mm=pair.prior.spacing_mm, recalibrate=False)
    # a completely different current inside the bone ROI (soft tissue outside unchanged)
    other = pair.current.array.copy()
    inside = pair.roi.array != 0
    other[inside] = np.random.default_rng(5).normal(500.0, 300.0, int(inside.sum())).round()
    b = compute_zmap(pair.current.with_array(other), pair.prior, pair.roi, model=model, prior_spacing_mm=pair.prior.spacing_mm, recalibrate=False)
    assert a.method == b.method == "network"
    np.testing.assert_array_equal(a.estimate_hu.array, b.estimate_hu.array)
    np.testing.assert_array_equal(a.sigma_hu.array, b.sigma_hu.array)
    # ... while the z-map does change, and it is (current - estimate) / sigma
    assert not np.array_equal(a.z.array, b.z.array)
    sel = inside & (b.sigma_hu.array > 0)
    np.testing.assert_allclose(b.z.array[sel], (other[sel] - b.estimate_hu.array[sel]) / b.sigma_hu.array[sel], rtol=1e-4, atol=1e-4)


def test_recalibration_widens_sigma_only_for_an_overdispersed_pair():
    pair = toy_pair(seed=13, lesions=False)
    model = untrained_model()
    raw = compute_zmap(pair.current, pair.prior, pair.roi, model=model, recalibrate=False)
    inside = pair.roi.array != 0
    spread = 1.4826 * np.median(np.abs(raw.z.array[inside] - np.median(raw.z.array[inside])))
    cal = compute_zmap(pair.current, pair.prior, pair.roi, model=model, recalibrate=True)
    factor = cal.parameters["recalibration_factor"]
    assert factor == pytest.approx(max(1.0, min(5.0, spread)), rel=1e-5)
    np.testing.assert_allclose(cal.sigma_hu.array[inside], raw.sigma_hu.array[inside] * factor, rtol=1e-5)
    np.testing.assert_allclose(cal.z.array[inside], raw.z.array[inside] / factor, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(cal.estimate_hu.array, raw.estimate_hu.array)
    # a noisier current: the spread grows, and after recalibration the robust sd of z is 1
    noisy = pair.current.with_array(pair.current.array + np.random.default_rng(0).normal(0, 80, pair.current.shape).astype(np.float32))
    wide = compute_zmap(noisy, pair.prior, pair.roi, model=model, recalibrate=True)
    z = wide.z.array[inside]
    assert wide.parameters["recalibration_factor"] > factor
    assert 1.4826 * np.median(np.abs(z - np.median(z))) == pytest.approx(1.0, abs=0.02)
    assert any("widened" in n for n in wide.notes)


def test_estimate_depends_on_the_prior():
    pair = toy_pair(seed=1)
    model = untrained_model()
    a = compute_zmap(pair.current, pair.prior, pair.roi, model=model)
    shifted = pair.prior.with_array(pair.prior.array + 100.0)
    b = compute_zmap(pair.current, shifted, pair.roi, model=model)
    inside = pair.roi.array != 0
    assert np.abs(b.estimate_hu.array[inside] - a.estimate_hu.array[inside]).mean() > 10.0


def test_tiled_prediction_equals_whole_volume_prediction():
    pair = toy_pair(seed=2)
    net = untrained_model().net
    cond = condition_vector(15.0, 12.0, (1.5,) * 3, (1.5,) * 3)
    roi = np.ones(pair.prior.shape, bool)
    mu_a, s_a = predict_on_grid(net, pair.prior.array, cond, roi, tile_vox=64)
    mu_b, s_b = predict_on_grid(net, pair.prior.array, cond, roi, tile_vox=16)
    np.testing.assert_allclose(mu_a, mu_b, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(s_a, s_b, rtol=1e-4, atol=1e-3)


def test_analytic_zmap_polarity_on_lytic_and_blastic_lesions():
    pair = toy_pair(seed=3)
    zm = compute_zmap(pair.current, pair.prior, pair.roi, model="analytic")
    assert zm.method == "analytic"
    lyt = pair.lesions.array == 1
    bla = pair.lesions.array == 2
    # lytic: 230 -> 40 HU (about -190 HU over ~21 HU of two-exam noise); blastic: up to 900 HU
    assert np.median(zm.z.array[lyt]) < -4.0
    assert np.median(zm.z.array[bla]) > 4.0
    normal = (pair.roi.array != 0) & (pair.lesions.array == 0)
    assert np.median(np.abs(zm.z.array[normal])) < 1.0


def test_analytic_sigma_is_larger_at_the_cortex():
    pair = toy_pair(seed=4, lesions=False)
    sigma = analytic_sigma(pair.current, pair.prior, pair.roi)
    z, y, x = np.indices(pair.prior.shape)
    r = np.sqrt((y - 20) ** 2 + (x - 20) ** 2)
    edge = (np.abs(r - 9.0) < 0.6) & (pair.roi.array != 0)
    interior = (r < 6) & (pair.roi.array != 0)
    assert np.median(sigma[edge]) > 2.0 * np.median(sigma[interior])
    assert (sigma[pair.roi.array == 0] == 0).all()


def test_noise_index_measures_white_noise():
    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 20.0, (30, 60, 60)).astype(np.float32)
    assert noise_index_hu(hu) == pytest.approx(20.0, rel=0.05)
    assert np.isnan(noise_index_hu(hu[:1, :5, :5]))


@pytest.mark.skipif(not default_model_path().is_file(), reason="shipped weights not present")
def test_shipped_network_polarity_and_calibration_on_a_toy_pair():
    pair = toy_pair(seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        zm = compute_zmap(pair.current, pair.prior, pair.roi, model="default", prior_spacing_mm=(1.5, 1.5, 2.0), force=True)
    assert zm.method == "network"
    assert np.median(zm.z.array[pair.lesions.array == 1]) < -3.0
    assert np.median(zm.z.array[pair.lesions.array == 2]) > 3.0


@pytest.mark.skipif(not default_model_path().is_file(), reason="shipped weights not present")
def test_shipped_bundle_metadata_describes_the_weights():
    model = load_zscore_model()
    meta = model.metadata
    assert meta["intended_use"] == "research use only; not for diagnosis"
    assert meta["architecture"]["n_parameters"] == model.n_parameters
    assert model.path is not None and model.path.stat().st_size < 5_000_000
    for key in ("version", "changelog", "pytorch_version", "numpy_version", "input", "output", "training_data", "domain", "training"):
        assert key in meta
    assert meta["training"]["hardware"]["device"]
    assert meta["training"]["elapsed_s"] > 0


@pytest.fixture()
def bundle(tmp_path):
    """A tiny trained bundle written by train_zscore_model (3 iterations)."""
    from detector.train import TrainingConfig, TrainingPair, train_zscore_model

    pairs = []
    for seed in (10, 11):
        p = toy_pair(seed=seed, lesions=False)
        roi = p.roi.array != 0
        pairs.append(
            TrainingPair(
                case_id=f"toy{seed}",
                current_hu=p.current.array,
                prior_hu=p.prior.array,
                roi=roi,
                noise_current_hu=noise_index_hu(p.current.array, roi),
                noise_prior_hu=noise_index_hu(p.prior.array, roi),
                spacing_mm=(1.5, 1.5, 1.5),
                prior_spacing_mm=(1.5, 1.5, 1.5),
                bone_stats={"bone_hu_p50": 230.0, "bone_hu_p95": 900.0},
            )
        )
    cfg = TrainingConfig(
        iterations=3, batch_size=2, patch_vox=16, loss_border_vox=2, channels=4, n_blocks=2, checkpoint_every=2, validation_pairs=1, device="cpu"
    )
    result = train_zscore_model(pairs, tmp_path / "toy.pt", config=cfg, progress=False)
    return result


def test_training_writes_a_loadable_bundle_with_model_card(bundle):
    model = load_zscore_model(bundle.weights_path)
    assert model.version == "1.0.0"
    assert model.metadata["training"]["iterations"] == 3
    assert bundle.model_card_path.read_text().count("research use only") >= 1
    assert all(p.is_file() for p in bundle.figures)
    assert len(bundle.history["loss"]) == 3


def test_weights_hash_is_checked_on_load(bundle, tmp_path):
    copy = tmp_path / "copy" / "toy.pt"
    copy.parent.mkdir()
    shutil.copy(bundle.weights_path, copy)
    shutil.copy(bundle.metadata_path, metadata_path_for(copy))
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match="SHA-256"):
        load_zscore_model(copy)
    meta_missing = tmp_path / "nometa.pt"
    shutil.copy(bundle.weights_path, meta_missing)
    with pytest.raises(ModelBundleError, match="metadata"):
        load_zscore_model(meta_missing)


def test_out_of_domain_pair_falls_back_to_the_analytic_model():
    pair = toy_pair(seed=7)
    domain = {"spacing_min_mm": [1.5, 1.5, 1.5], "spacing_max_mm": [1.5, 1.5, 1.5], "spacing_tolerance": 0.1}
    model = untrained_model(domain)
    coarse = toy_pair(seed=7, spacing_mm=(1.5, 1.5, 3.0))
    with pytest.warns(OutOfDomainWarning, match="along z is 3.00 mm"):
        zm = compute_zmap(coarse.current, coarse.prior, coarse.roi, model=model)
    assert zm.method == "analytic" and zm.model_version is None
    assert isinstance(zm.domain, DomainCheck) and not zm.domain.in_domain
    assert any("analytic error model" in n for n in zm.notes)
    with pytest.warns(OutOfDomainWarning, match="forced"):
        forced = compute_zmap(coarse.current, coarse.prior, coarse.roi, model=model, force=True)
    assert forced.method == "network" and forced.parameters["forced"]
    # in domain: no warning, the network is used
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        ok = compute_zmap(pair.current, pair.prior, pair.roi, model=model, prior_spacing_mm=(1.5, 1.5, 1.5))
    assert ok.method == "network" and ok.domain.in_domain


def test_spacing_alone_rules_the_network_out_without_loading_it(monkeypatch):
    """Out of domain by voxel spacing: the network is neither loaded nor run on the working grid,
    and the reasons are the spacing reasons the full check gives first."""
    import detector.zscore as zscore_module

    model = untrained_model({"spacing_min_mm": [1.5, 1.5, 1.5], "spacing_max_mm": [1.5, 1.5, 1.5], "noise_current_hu": [100.0, 200.0]})
    coarse = toy_pair(seed=7, spacing_mm=(1.5, 1.5, 3.0))
    with pytest.warns(OutOfDomainWarning, match="along z is 3.00 mm"):
        quick = compute_zmap(coarse.current, coarse.prior, coarse.roi, model=model)
    with pytest.warns(OutOfDomainWarning, match="forced"):
        forced = compute_zmap(coarse.current, coarse.prior, coarse.roi, model=model, force=True)
    n = len(quick.domain.reasons)
    assert quick.method == "analytic" and n >= 1 and all("voxel spacing" in r for r in quick.domain.reasons)
    assert forced.domain.reasons[:n] == quick.domain.reasons and any("noise of the current exam" in r for r in forced.domain.reasons[n:])
    assert any("spacing alone rules the network out" in note for note in quick.notes)

    def no_loading(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("the network was loaded")

    monkeypatch.setattr(zscore_module, "_resolve_model", no_loading)
    with pytest.warns(OutOfDomainWarning, match="prior exam along x is 0.75 mm"):
        shipped = compute_zmap(coarse.current, coarse.prior, coarse.roi, model="default", prior_spacing_mm=(0.75, 0.75, 1.0))
    assert shipped.method == "analytic" and not shipped.domain.in_domain
    np.testing.assert_array_equal(shipped.z.array, quick.z.array)  # the analytic map either way


def test_noisier_current_is_out_of_domain():
    model = untrained_model({"noise_current_hu": [10.0, 16.0], "noise_factor": 1.3})
    noisy = toy_pair(seed=8, noise_hu=60.0)
    with pytest.warns(OutOfDomainWarning, match="noise of the current exam"):
        zm = compute_zmap(noisy.current, noisy.prior, noisy.roi, model=model)
    assert zm.method == "analytic"


def test_nll_training_step_decreases_the_loss():
    from detector._training_common import beta_nll as _beta_nll
    from detector.train import TrainingPair, _PatchSampler
    from detector.zscore import build_net

    p = toy_pair(seed=9, lesions=False)
    roi = p.roi.array != 0
    pair = TrainingPair("toy", p.current.array, p.prior.array, roi, 15.0, 15.0, (1.5,) * 3, (1.5,) * 3, {})
    sampler = _PatchSampler([pair], 16, np.random.default_rng(0))
    x, y, m = sampler.batch(2)
    torch.manual_seed(0)
    net = build_net(channels=8, dilations=(1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt, mt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)
    losses = []
    for _ in range(40):
        mu, lv = net(xt)
        loss, nll = _beta_nll(mu, lv, yt, mt, 0.5)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        losses.append(nll.item())
    assert losses[-1] < losses[0] - 0.3
    # sigma moved from its initial 60 HU towards the two-exam noise (~21 HU) in the cancellous bone
    with torch.no_grad():
        _, lv = net(xt)
    sigma_hu = 500.0 * torch.exp(0.5 * lv)[mt].median().item()
    assert sigma_hu < 40.0


def test_training_resumes_from_its_checkpoint(tmp_path):
    from detector.train import TrainingConfig, TrainingPair, train_zscore_model

    p = toy_pair(seed=12, lesions=False)
    roi = p.roi.array != 0
    pairs = [
        TrainingPair("toy", p.current.array, p.prior.array, roi, 15.0, 15.0, (1.5,) * 3, (1.5,) * 3, {"bone_hu_p50": 230.0, "bone_hu_p95": 900.0})
    ]
    base = dict(batch_size=2, patch_vox=16, loss_border_vox=2, channels=4, n_blocks=1, checkpoint_every=2, validation_pairs=0, device="cpu")
    first = train_zscore_model(pairs, tmp_path / "r.pt", config=TrainingConfig(iterations=2, **base), progress=False)
    assert first.iterations == 2
    resumed = train_zscore_model(pairs, tmp_path / "r.pt", config=TrainingConfig(iterations=4, **base), progress=False, resume=True)
    assert resumed.iterations == 4
    assert resumed.history["loss"][:2] == first.history["loss"]
    meta = json.loads(resumed.metadata_path.read_text())
    assert meta["training"]["iterations"] == 4
