"""Input contracts of the z-score network: contract 3 (resolution-matched prior) in training and at inference, v1/v2 unchanged.

Contract 3 gives the network the warped prior brought to the current exam's resolution
(:func:`detector.zscore_model.network_prior_input`). Training and inference must feed it through
that one function; bundles without a recorded contract (v1, v2) keep the warped prior itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

import detector.zscore as zscore_module
from detector.working_grid import make_working_grid, to_working_grid
from detector.zscore import compute_zmap, load_zscore_model, noise_index_hu
from detector.zscore_model import INPUT_CONTRACT_RESOLUTION_MATCH, ZScoreModel, input_contract, network_prior_input

from .zscore_toy import toy_pair, untrained_model

torch = pytest.importorskip("torch")

WEIGHTS = Path(zscore_module.__file__).resolve().parent / "weights"


def _sharper_current(pair):  # type: ignore[no-untyped-def]
    """The toy pair's current re-made with a sharper in-plane kernel (an unsharp mask): a resolution change."""
    cur = pair.current.array.astype(np.float64)
    out = cur + 0.8 * (cur - ndi.gaussian_filter(cur, (0.0, 1.0, 1.0), mode="nearest"))
    return pair.current.with_array(np.rint(out).astype(np.float32))


def _contract_model(contract: int | None) -> ZScoreModel:
    model = untrained_model()
    meta = {**model.metadata, "input": {**model.metadata["input"]}}
    if contract is not None:
        meta["input"]["contract"] = contract
    return ZScoreModel(net=model.net, metadata=meta, path=None, device=model.device)


def _capture_network_input(monkeypatch):  # type: ignore[no-untyped-def]
    seen: list[np.ndarray] = []
    real = zscore_module.predict_on_grid

    def spy(net, prior_hu, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(np.array(prior_hu, copy=True))
        return real(net, prior_hu, *args, **kwargs)

    monkeypatch.setattr(zscore_module, "predict_on_grid", spy)
    return seen


def _working_grid_arrays(pair, current, model):  # type: ignore[no-untyped-def]
    roi = pair.roi.array != 0
    grid = make_working_grid(current, roi, model.working_spacing_mm, (model.net.receptive_radius_vox + 2) * model.working_spacing_mm)
    cur_w = to_working_grid(current.array.astype(np.float32), grid, current.spacing_mm)
    pri_w = to_working_grid(pair.prior.array.astype(np.float32), grid, current.spacing_mm)
    roi_w = to_working_grid(roi, grid, current.spacing_mm, label=True) > 0.5
    return cur_w, pri_w, roi_w


def test_shipped_v1_and_v2_bundles_keep_their_contracts():
    v1 = load_zscore_model(WEIGHTS / "zscore-v1.pt")
    v2 = load_zscore_model(WEIGHTS / "zscore-v2.pt")
    assert (v1.input_contract, v2.input_contract) == (1, 2)
    assert v1.operating_threshold is None and v2.operating_threshold is None  # they keep the method's threshold (5.0)
    v3 = load_zscore_model(WEIGHTS / "zscore-v3.pt")
    assert v3.input_contract == INPUT_CONTRACT_RESOLUTION_MATCH and v3.operating_threshold is not None
    assert input_contract({}) == 1 and input_contract({"input": {"contract": 3}}) == 3
    a, b = np.zeros((4, 4, 4), np.float32), np.ones((4, 4, 4), np.float32)
    same, info = network_prior_input(a, b, np.ones((4, 4, 4), bool), 2)
    assert same is b and info is None  # contracts 1 and 2: the warped prior itself, not even a copy


@pytest.mark.parametrize("contract", [None, 2])
def test_older_contracts_feed_the_warped_prior_at_inference(monkeypatch, contract):
    pair = toy_pair(seed=31)
    current = _sharper_current(pair)
    model = _contract_model(contract)
    seen = _capture_network_input(monkeypatch)
    zm = compute_zmap(current, pair.prior, pair.roi, model=model, prior_spacing_mm=(1.5, 1.5, 1.5))
    assert zm.method == "network" and "resolution_match" not in zm.parameters
    _, pri_w, _ = _working_grid_arrays(pair, current, model)
    np.testing.assert_array_equal(seen[0], pri_w)


def test_contract_3_feeds_the_matched_prior_at_inference(monkeypatch):
    pair = toy_pair(seed=32)
    current = _sharper_current(pair)
    model = _contract_model(INPUT_CONTRACT_RESOLUTION_MATCH)
    seen = _capture_network_input(monkeypatch)
    zm = compute_zmap(current, pair.prior, pair.roi, model=model, prior_spacing_mm=(1.5, 1.5, 1.5), recalibrate=False)
    assert zm.method == "network" and zm.parameters["input_contract"] == 3
    cur_w, pri_w, roi_w = _working_grid_arrays(pair, current, model)
    expected, info = network_prior_input(cur_w, pri_w, roi_w, INPUT_CONTRACT_RESOLUTION_MATCH)
    np.testing.assert_array_equal(seen[0], expected)
    assert zm.parameters["resolution_match"]["coefficients"] == info["coefficients"]
    # the match is applied to the whole grid (no seam at the ROI's edge) and removes most of the kernel change
    assert not np.array_equal(expected[~roi_w], pri_w[~roi_w])
    rsd = lambda v: 1.4826 * np.median(np.abs(v - np.median(v)))  # noqa: E731
    assert rsd((cur_w - expected)[roi_w]) < 0.8 * rsd((cur_w - pri_w)[roi_w])
    # the estimate is still the warped prior plus the network's change, and z = (current - estimate) / sigma on the grid
    sel = (pair.roi.array != 0) & (zm.sigma_hu.array > 0)
    assert np.isfinite(zm.z.array[sel]).all()


def test_training_feeds_the_same_function_as_inference():
    from detector.train import TrainingConfig, TrainingPair, _PatchSampler, augment_training_pairs, with_network_input
    from detector.zscore_model import normalise_hu

    p = toy_pair(seed=33, lesions=False)
    current = _sharper_current(p)
    roi = p.roi.array != 0
    pair = TrainingPair(
        "toy", current.array, p.prior.array, roi, noise_index_hu(current.array, roi), noise_index_hu(p.prior.array, roi), (1.5,) * 3, (1.5,) * 3, {}
    )
    pairs = augment_training_pairs([pair], 1, seed=0)
    cfg = TrainingConfig(resolution_match=True, device="cpu")
    assert cfg.input_contract == INPUT_CONTRACT_RESOLUTION_MATCH
    matched = with_network_input(pairs, cfg.input_contract)
    for before, after in zip(pairs, matched):  # every pair and every variant, each matched to its own current
        expected, _ = network_prior_input(before.current_hu, before.prior_hu, before.roi, INPUT_CONTRACT_RESOLUTION_MATCH)
        np.testing.assert_array_equal(after.network_input_hu, expected)
        np.testing.assert_array_equal(after.prior_hu, before.prior_hu)  # the prior itself (domain, noise index) unchanged
    # the sampler's channel 0 is cut from the matched prior
    sampler = _PatchSampler(matched[:1], 16, np.random.default_rng(0))
    x, _, _ = sampler.batch(1, flip=False)
    pad = 8
    padded = np.pad(normalise_hu(matched[0].network_input_hu), ((pad, 16),) * 3, mode="edge")
    assert any(np.array_equal(x[0, 0], padded[tuple(slice(int(c), int(c) + 16) for c in centre)]) for centre in np.argwhere(roi))
    # contract 2 leaves the pairs as they are
    assert all(q.prior_input_hu is None for q in with_network_input(pairs, 2))
    with pytest.raises(Exception, match="needs spacing_floor"):
        TrainingConfig(resolution_match=True, spacing_floor=False)


def test_a_contract_3_bundle_records_its_contract(tmp_path):
    from detector.train import TrainingConfig, TrainingPair, train_zscore_model

    p = toy_pair(seed=34, lesions=False)
    roi = p.roi.array != 0
    pairs = [
        TrainingPair("toy", p.current.array, p.prior.array, roi, 15.0, 15.0, (1.5,) * 3, (1.5,) * 3, {"bone_hu_p50": 230.0, "bone_hu_p95": 900.0})
    ]
    cfg = TrainingConfig(
        iterations=2,
        batch_size=2,
        patch_vox=16,
        loss_border_vox=2,
        channels=4,
        n_blocks=1,
        checkpoint_every=2,
        validation_pairs=0,
        device="cpu",
        resolution_match=True,
    )
    result = train_zscore_model(pairs, tmp_path / "c3.pt", config=cfg, progress=False)
    model = load_zscore_model(result.weights_path)
    assert model.input_contract == INPUT_CONTRACT_RESOLUTION_MATCH
    assert "resolution" in model.metadata["input"]["channels"]["0"]
    assert "input contract 3" in result.model_card_path.read_text()


def test_a_bundle_operating_threshold_is_the_stage_default():
    from detector.zscore_outputs import OPERATING_THRESHOLDS, ZScoreSettings, operating_threshold_of, zscore_stage

    pair = toy_pair(seed=35)
    plain = _contract_model(INPUT_CONTRACT_RESOLUTION_MATCH)
    own = ZScoreModel(net=plain.net, metadata={**plain.metadata, "operating_threshold": 6.5}, path=None, device=plain.device)
    assert operating_threshold_of("network", {}) == OPERATING_THRESHOLDS["network"]
    out = zscore_stage(pair.current, pair.prior, pair.roi, settings=ZScoreSettings(model=own), prior_spacing_mm=(1.5, 1.5, 1.5))
    assert out.zmap.parameters["operating_threshold"] == 6.5
    assert out.candidates.parameters["threshold"] == 6.5
    default = zscore_stage(pair.current, pair.prior, pair.roi, settings=ZScoreSettings(model=plain), prior_spacing_mm=(1.5, 1.5, 1.5))
    assert default.candidates.parameters["threshold"] == OPERATING_THRESHOLDS["network"]
