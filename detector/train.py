"""Training the z-score network on lesion-free prior/current pairs (``tsct detect train``).

What it learns
--------------
For every bone voxel of the current exam, a Gaussian ``N(mu, sigma^2)`` of its value given the
registered prior around it (:mod:`detector.zscore`). Only **normal** pairs (no new lesions) of a
case list are used: the network must learn what "no change" looks like, including the artifacts
of registration, noise and edges, and nothing else.

How
---
1. Every normal case is registered with :func:`detector.run_pair` (or its finished outputs are
   reused from the work folder), then the current exam, the warped prior and the bone ROI are
   resampled onto the network's working grid and cached (``zscore_train.npz``).
2. A few pairs are held out for validation (``validation_pairs``, chosen from the seed).
3. Each iteration draws ``batch_size`` patches of ``patch_vox``^3 voxels centred on random bone-ROI
   voxels (random left-right flips), and minimises the **beta-NLL** (Seitzer et al., ICLR 2022)

       L = mean over ROI voxels of  sg(sigma^(2 beta)) * [ log sigma^2 / 2 + (current - mu)^2 / (2 sigma^2) ],

   where ``sg`` stops the gradient. ``beta = 0`` is the Gaussian NLL; ``beta = 0.5`` keeps the
   variance from "explaining away" hard voxels (edges) at the expense of the mean. Voxels within
   ``loss_border_vox`` of a patch face are left out of the loss (zero padding there).
4. Checkpoints (model, optimiser, random states, loss history) every ``checkpoint_every``
   iterations; ``resume=True`` continues from the last one. Same seed, same data, same device:
   same result.
5. At the end: the weights (``.pt``, state dict only), ``.metadata.json`` (version, changelog,
   input contract, domain of the training data, training data, settings, hardware and time,
   SHA-256 of the weights) and a model card (``.md``) with the loss curve and calibration figures
   (``-loss.png``, ``-calibration.png``) beside the weights.

Uses a CUDA GPU when present (``device="auto"``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from cases import Case, CaseList, LabelVolume, read_case_list, read_exam, read_volume

from ._errors import DetectorInputError
from ._training_common import (
    TrainingResult,
    TrainingSettings,
    beta_nll,
    fit,
    hardware_info,
    load_cache,
    loss_mask,
    record_bundle_evaluation,
    save_cache,
    split_by_case,
    start_run,
    validate_on,
    value_range,
    write_bundle,
)
from .working_grid import WORKING_SPACING_MM, make_working_grid, to_working_grid
from .zscore_bundle import load_bundle_weights, sha256_of
from .zscore_domain import bone_hu_statistics, effective_spacing_mm, noise_index_hu
from .zscore_model import (
    CONDITION_NAMES,
    INPUT_CONTRACT_RESOLUTION_MATCH,
    build_net,
    condition_vector,
    network_prior_input,
    normalise_hu,
    predict_on_grid,
)

__all__ = [
    "TrainingConfig",
    "TrainingPair",
    "TrainingResult",
    "prepare_training_pairs",
    "augment_training_pairs",
    "with_network_input",
    "train_zscore_model",
    "record_evaluation",
]

MODEL_NAME = "tsct-zscore"
TRAINING_CACHE = "zscore_train.npz"


@dataclass(frozen=True)
class TrainingConfig(TrainingSettings):
    """Settings of :func:`train_zscore_model`: those of :class:`~detector._training_common.TrainingSettings`, and

    Parameters
    ----------
    channels, n_blocks : width and depth of :class:`~detector.zscore.ZScoreNet`.
    spacing_floor : give the network voxel spacings finer than the working spacing as the
        working spacing (recorded as ``domain.spacing_floor_mm``): such detail never reaches the
        working grid (:func:`~detector.zscore_domain.effective_spacing_mm`). False: the v1 contract.
    augment_variants : re-acquired variants per training pair (:func:`augment_training_pairs`), 0: none.
    init_weights : start from the weights of this bundle (same architecture; a warm start,
        recorded in the metadata) instead of a random initialisation.
    resolution_match : input contract 3: the network's channel 0 is the warped prior matched to
        the current exam's resolution (:func:`~detector.zscore_model.network_prior_input`, the
        function inference uses), for every pair and variant. False: contract 2 (or 1 without
        ``spacing_floor``). Needs ``spacing_floor``.
    """

    channels: int = 16
    n_blocks: int = 4
    spacing_floor: bool = True
    augment_variants: int = 0
    init_weights: str | None = None
    resolution_match: bool = False

    @property
    def input_contract(self) -> int:
        """The input contract the bundle will record (:func:`detector.zscore_model.input_contract`)."""
        if self.resolution_match:
            return INPUT_CONTRACT_RESOLUTION_MATCH
        return 2 if self.spacing_floor else 1

    def problems(self) -> list[str]:
        extra = ["channels and n_blocks must be at least 1"] if self.channels < 1 or self.n_blocks < 1 else []
        extra += ["augment_variants must be non-negative"] if self.augment_variants < 0 else []
        extra += ["resolution_match (input contract 3) needs spacing_floor"] if self.resolution_match and not self.spacing_floor else []
        return super().problems() + extra


@dataclass(eq=False)
class TrainingPair:
    """One registered normal pair on the working grid (HU arrays, bone ROI, noise levels)."""

    case_id: str
    current_hu: np.ndarray
    prior_hu: np.ndarray
    roi: np.ndarray
    noise_current_hu: float
    noise_prior_hu: float
    spacing_mm: tuple[float, float, float]
    prior_spacing_mm: tuple[float, float, float]
    bone_stats: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    spacing_floor_mm: float | None = None
    #: channel 0 of the network when it is not the warped prior itself (input contract 3, :func:`with_network_input`)
    prior_input_hu: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_roi_voxels(self) -> int:
        return int(self.roi.sum())

    @property
    def network_input_hu(self) -> np.ndarray:
        """The network's channel 0 for this pair, HU: :attr:`prior_input_hu` when set, else the warped prior."""
        return self.prior_input_hu if self.prior_input_hu is not None else self.prior_hu

    @property
    def base_case_id(self) -> str:
        """The case a variant was made from (:func:`augment_training_pairs`); the case itself otherwise."""
        return self.case_id.split("~", 1)[0]

    @property
    def conditions(self) -> np.ndarray:
        """The network's exam-level inputs for this pair (:func:`detector.zscore_model.condition_vector`)."""
        return condition_vector(
            self.noise_current_hu, self.noise_prior_hu, self.spacing_mm, self.prior_spacing_mm, spacing_floor_mm=self.spacing_floor_mm
        )


# =============================================================================================
# Data
# =============================================================================================
def _case_provenance(case: Case) -> dict[str, Any]:
    """Synthetic generation seed and parameters when the case folder has a ``params.json``."""
    info: dict[str, Any] = {"case_id": case.case_id, "prior": str(case.prior), "current": str(case.current)}
    folder = case.current if case.current.is_dir() else case.current.parent
    for candidate in (folder / "params.json", folder.parent / "params.json"):
        if candidate.is_file():
            try:
                params = json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError:
                break
            req = params.get("request", {})
            info["synthetic"] = {k: req.get(k) for k in ("seed", "size", "abnormal") if k in req}
            info["synthetic"]["generator"] = params.get("generator")
            break
    return info


def _pair_outputs(case: Case, case_dir: Path, run_options: dict[str, Any]) -> tuple[Any, Any, LabelVolume, str, tuple[float, float, float]]:
    """Current exam, warped prior, ROI, QC status and the prior's own spacing of a registered pair."""
    from .pipeline import OUTPUT_FILES, run_pair

    qc = case_dir / OUTPUT_FILES["qc"]
    current = read_exam(case.current).volume
    prior_spacing = None
    if qc.is_file() and (case_dir / OUTPUT_FILES["warped_prior"]).is_file() and (case_dir / OUTPUT_FILES["bone_roi"]).is_file():
        report = json.loads(qc.read_text(encoding="utf-8"))
        status = str(report.get("status", "unknown"))
        prior_spacing = report.get("inputs", {}).get("prior", {}).get("spacing_mm")
        warped = read_volume(case_dir / OUTPUT_FILES["warped_prior"])
        roi = read_volume(case_dir / OUTPUT_FILES["bone_roi"], label=True)
    else:
        result = run_pair(case.prior, current, case_dir, case_id=case.case_id, write_dicom=False, **{"zscore": False, **run_options})
        warped, roi, status = result.warped_prior, result.bone_roi, result.qc.status
        prior_spacing = result.qc.inputs.get("prior", {}).get("spacing_mm")
    if prior_spacing is None:
        prior_spacing = read_exam(case.prior).volume.spacing_mm
    return current, warped, roi, status, tuple(float(v) for v in prior_spacing)  # type: ignore[return-value]


def prepare_training_pairs(
    case_list: CaseList | str | Path,
    work_dir: str | Path,
    *,
    working_spacing_mm: float = WORKING_SPACING_MM,
    halo_mm: float = 20.0,
    max_pairs: int | None = None,
    progress: bool = True,
    on_pair: Callable[[str, str], None] | None = None,
    **run_options: Any,
) -> list[TrainingPair]:
    """Register the normal pairs of a case list and bring them onto the working grid.

    Parameters
    ----------
    case_list : a case list or its CSV path; only ``normal`` cases are used.
    work_dir : registration outputs go to ``work_dir/<case_id>/`` (finished ones are reused),
        with the working-grid cache ``zscore_train.npz``.
    working_spacing_mm : the network's grid spacing.
    halo_mm : margin around the bone ROI kept on the working grid.
    max_pairs : use at most this many normal cases (in list order).
    progress : show a progress bar.
    on_pair : called as ``on_pair(case_id, outcome)`` with ``"cached"``, ``"registered"`` or
        ``"skipped: <why>"``.
    **run_options : passed to :func:`detector.run_pair` (e.g. ``config``).

    Raises
    ------
    DetectorInputError
        When the case list has no normal case, or none could be used.
    """
    if not isinstance(case_list, CaseList):
        case_list = read_case_list(case_list)
    normals = case_list.normal_cases
    if not normals:
        raise DetectorInputError(
            f"{case_list.source or 'The case list'}: no normal case. The z-score network is trained on pairs without new lesions (status 'normal')."
        )
    if max_pairs is not None:
        normals = normals[:max_pairs]
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    pairs: list[TrainingPair] = []
    skipped: dict[str, str] = {}
    bar = task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("training pairs", total=len(normals))
    try:
        for case in normals:
            case_dir = work / case.case_id
            cache = case_dir / TRAINING_CACHE
            outcome = "cached"
            if bar is not None:
                bar.update(task, description=f"{case.case_id}: preparing")  # type: ignore[arg-type]
            try:
                pair = _load_cache(cache, working_spacing_mm)
                if pair is None:
                    outcome = "registered"
                    current, warped, roi_vol, status, prior_spacing = _pair_outputs(case, case_dir, run_options)
                    if status == "failed":
                        raise DetectorInputError(f"registration QC failed (see {case_dir / 'qc.json'})")
                    pair = _to_training_pair(case, current, warped, roi_vol, prior_spacing, working_spacing_mm, halo_mm)
                    _save_cache(cache, pair, working_spacing_mm)
                pairs.append(pair)
            except Exception as exc:  # noqa: BLE001 - a bad pair is reported and left out
                outcome = f"skipped: {type(exc).__name__}: {exc}"
                skipped[case.case_id] = outcome
            if on_pair is not None:
                on_pair(case.case_id, outcome)
            if bar is not None:
                bar.advance(task)  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.stop()
    if not pairs:
        raise DetectorInputError("No normal pair could be prepared for training: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return pairs


def _to_training_pair(
    case: Case, current, warped, roi_vol: LabelVolume, prior_spacing: tuple[float, float, float], ws: float, halo_mm: float
) -> TrainingPair:  # type: ignore[no-untyped-def]
    roi = roi_vol.array != 0
    grid = make_working_grid(current, roi, ws, halo_mm)
    if grid is None:
        raise DetectorInputError("empty bone ROI")
    cur_w = to_working_grid(current.array, grid, current.spacing_mm)
    pri_w = to_working_grid(warped.array, grid, current.spacing_mm)
    roi_w = to_working_grid(roi.astype(np.float32), grid, current.spacing_mm, label=True) > 0.5
    grown = _grow(roi_w)
    return TrainingPair(
        case_id=case.case_id,
        current_hu=cur_w.astype(np.float32),
        prior_hu=pri_w.astype(np.float32),
        roi=roi_w,
        noise_current_hu=noise_index_hu(cur_w, grown),
        noise_prior_hu=noise_index_hu(pri_w, grown),
        spacing_mm=tuple(float(s) for s in current.spacing_mm),  # type: ignore[arg-type]
        prior_spacing_mm=prior_spacing,
        bone_stats=bone_hu_statistics(pri_w, roi_w),
        provenance=_case_provenance(case),
    )


def _grow(mask: np.ndarray) -> np.ndarray:
    return ndi.binary_dilation(mask, iterations=2) if mask.any() else mask


_CACHE_META = ("case_id", "noise_current_hu", "noise_prior_hu", "spacing_mm", "prior_spacing_mm", "bone_stats", "provenance")


def _save_cache(path: Path, pair: TrainingPair, ws: float) -> None:
    meta = {k: getattr(pair, k) for k in _CACHE_META}
    save_cache(
        path,
        {"current": pair.current_hu, "prior": pair.prior_hu, "roi": pair.roi},
        {**meta, "spacing_mm": list(pair.spacing_mm), "prior_spacing_mm": list(pair.prior_spacing_mm), "working_spacing_mm": ws},
    )


def _load_cache(path: Path, ws: float) -> TrainingPair | None:
    got = load_cache(path, ("current", "prior", "roi"), ws)
    if got is None:
        return None
    arrays, meta = got
    try:
        return TrainingPair(
            case_id=meta["case_id"],
            current_hu=arrays["current"],
            prior_hu=arrays["prior"],
            roi=arrays["roi"],
            noise_current_hu=float(meta["noise_current_hu"]),
            noise_prior_hu=float(meta["noise_prior_hu"]),
            spacing_mm=tuple(meta["spacing_mm"]),
            prior_spacing_mm=tuple(meta["prior_spacing_mm"]),
            bone_stats=meta["bone_stats"],
            provenance=meta.get("provenance", {}),
        )
    except KeyError:
        return None  # from an older layout: rebuilt from the registration outputs


def _thicker_slices(hu: np.ndarray, from_mm: float, to_mm: float, ws: float) -> np.ndarray:
    """Blur a working-grid array along z as a thicker slice profile would (Gaussian, FWHM = slice thickness)."""
    sigma_mm = math.sqrt(max(to_mm**2 - max(from_mm, ws) ** 2, 0.0)) / 2.3548
    if sigma_mm < 1e-3:
        return hu
    return ndi.gaussian_filter1d(hu, sigma_mm / ws, axis=0, mode="nearest").astype(np.float32)


def augment_training_pairs(
    pairs: Sequence[TrainingPair],
    variants: int,
    *,
    seed: int,
    working_spacing_mm: float = WORKING_SPACING_MM,
    max_slice_mm: float = 5.0,
    max_extra_noise_hu: float = 15.0,
) -> list[TrainingPair]:
    """Re-acquired variants of each training pair: the input pairs followed by ``variants`` variants per pair.

    Each variant re-acquires one exam or both on the working grid, each change drawn
    independently: the current exam, the prior exam, or both, get a thicker slice (a Gaussian
    slice profile along z, FWHM = a slice thickness drawn between the exam's own and
    ``max_slice_mm``; its slice spacing becomes that thickness), and the current and/or the prior
    get extra white noise (0 to ``max_extra_noise_hu``). The noise indices and the bone-HU
    statistics are measured again on the variant, so the network's conditions describe it. It
    widens the slice and noise ranges the network sees beyond those of the source pairs (docs/detector-zscore.md).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4409]))
    out = list(pairs)
    for pair in pairs:
        grown = _grow(pair.roi)
        for k in range(variants):
            cur, pri = pair.current_hu, pair.prior_hu
            cur_sp, pri_sp = list(pair.spacing_mm), list(pair.prior_spacing_mm)
            which = rng.choice(["current", "prior", "both"])
            for exam in ("current", "prior") if which == "both" else (which,):
                sp = cur_sp if exam == "current" else pri_sp
                t = float(rng.uniform(max(sp[2], working_spacing_mm), max(max_slice_mm, sp[2])))
                if exam == "current":
                    cur = _thicker_slices(cur, sp[2], t, working_spacing_mm)
                else:
                    pri = _thicker_slices(pri, sp[2], t, working_spacing_mm)
                sp[2] = t
            if rng.random() < 0.5:
                cur = (cur + rng.normal(0.0, rng.uniform(0.0, max_extra_noise_hu), cur.shape)).astype(np.float32)
            if rng.random() < 0.5:
                pri = (pri + rng.normal(0.0, rng.uniform(0.0, max_extra_noise_hu), pri.shape)).astype(np.float32)
            out.append(
                TrainingPair(
                    case_id=f"{pair.case_id}~{k + 1}",
                    current_hu=cur,
                    prior_hu=pri,
                    roi=pair.roi,
                    noise_current_hu=noise_index_hu(cur, grown),
                    noise_prior_hu=noise_index_hu(pri, grown),
                    spacing_mm=tuple(cur_sp),
                    prior_spacing_mm=tuple(pri_sp),
                    bone_stats=bone_hu_statistics(pri, pair.roi),
                    provenance={**pair.provenance, "variant_of": pair.case_id, "variant": k + 1},
                    spacing_floor_mm=pair.spacing_floor_mm,
                )
            )
    return out


def with_network_input(pairs: Sequence[TrainingPair], contract: int) -> list[TrainingPair]:
    """The pairs with the network's channel 0 of ``contract`` (:func:`detector.zscore_model.network_prior_input`).

    The same function inference calls on the working grid; applied after
    :func:`augment_training_pairs`, so that each variant is matched to its own re-acquired
    current. Contracts 1 and 2 leave the pairs unchanged.
    """
    if contract < INPUT_CONTRACT_RESOLUTION_MATCH:
        return list(pairs)
    return [replace(p, prior_input_hu=network_prior_input(p.current_hu, p.prior_hu, p.roi, contract)[0]) for p in pairs]


# =============================================================================================
# Training
# =============================================================================================
class _PatchSampler:
    """Random bone-centred patches from the training pairs (current is the target only)."""

    def __init__(self, pairs: Sequence[TrainingPair], patch_vox: int, rng: np.random.Generator) -> None:
        self.pairs = list(pairs)
        self.p = int(patch_vox)
        self.rng = rng
        half = self.p // 2
        self.padded = []
        weights = []
        for pair in self.pairs:
            pad = ((half, self.p), (half, self.p), (half, self.p))
            prior_n = np.pad(normalise_hu(pair.network_input_hu), pad, mode="edge")
            cur_n = np.pad(normalise_hu(pair.current_hu), pad, mode="edge")
            roi = np.pad(pair.roi, pad, mode="constant")
            centres = np.argwhere(pair.roi)
            self.padded.append((prior_n, cur_n, roi, centres))
            weights.append(len(centres))
        w = np.asarray(weights, dtype=float)
        self.pair_prob = w / w.sum()
        self.conditions = [pair.conditions for pair in self.pairs]

    def batch(self, batch_size: int, flip: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.p
        n_cond = len(self.pairs[0].conditions)
        x = np.empty((batch_size, 1 + n_cond, p, p, p), dtype=np.float32)
        y = np.empty((batch_size, 1, p, p, p), dtype=np.float32)
        m = np.empty((batch_size, 1, p, p, p), dtype=bool)
        for b in range(batch_size):
            i = int(self.rng.choice(len(self.pairs), p=self.pair_prob))
            prior_n, cur_n, roi, centres = self.padded[i]
            c = centres[int(self.rng.integers(len(centres)))]
            sl = tuple(slice(int(v), int(v) + p) for v in c)  # padded by half: start = centre
            xp, yp, mp = prior_n[sl], cur_n[sl], roi[sl]
            if flip and self.rng.random() < 0.5:
                xp, yp, mp = xp[..., ::-1], yp[..., ::-1], mp[..., ::-1]
            x[b, 0] = xp
            x[b, 1:] = self.conditions[i][:, None, None, None]
            y[b, 0] = yp
            m[b, 0] = mp
        return x, y, m


def _validate(net, pairs: Sequence[TrainingPair], device) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """z on the working grid of held-out pairs: NLL (HU units), |z| > 3 fraction, calibration bins."""
    return validate_on(net, pairs, lambda p: (p.current_hu, *predict_on_grid(net, p.network_input_hu, p.conditions, p.roi, device=device), p.roi))


def train_zscore_model(
    pairs: Sequence[TrainingPair],
    out_path: str | Path,
    *,
    config: TrainingConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    training_data: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    changelog: dict[str, str] | None = None,
    on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainingResult:
    """Train the z-score network on prepared normal pairs and write the weights bundle.

    Parameters
    ----------
    pairs : from :func:`prepare_training_pairs`.
    out_path : the weights file to write (``.pt``); the metadata, model card and figures go
        beside it.
    config : training settings.
    resume : continue from the checkpoint (same settings expected).
    progress : show a progress bar with the running loss.
    training_data : description of the data for the metadata (case list, split, seeds).
    checkpoint_dir : where the checkpoint ``<stem>.ckpt.pt`` is kept (default: beside the weights).
    changelog : version -> one line, written into the metadata (default: one line for
        ``config.version``).
    on_checkpoint : called as ``on_checkpoint(iteration, validation)`` at each checkpoint.

    Returns
    -------
    TrainingResult
    """
    import torch

    cfg = config or TrainingConfig()
    out, ckpt_path, device = start_run(cfg, out_path, checkpoint_dir)
    floor = cfg.working_spacing_mm if cfg.spacing_floor else None
    pairs = [replace(p, spacing_floor_mm=floor) for p in pairs]
    if cfg.augment_variants:
        pairs = augment_training_pairs(pairs, cfg.augment_variants, seed=cfg.seed, working_spacing_mm=cfg.working_spacing_mm)
    pairs = with_network_input(pairs, cfg.input_contract)
    train_pairs, val_pairs = split_by_case(pairs, lambda p: p.base_case_id, cfg.validation_pairs, cfg.seed)
    torch.manual_seed(cfg.seed)
    net = build_net(channels=cfg.channels, dilations=(1,) * cfg.n_blocks)
    if cfg.init_weights:
        net = load_bundle_weights(net, Path(cfg.init_weights), "cpu").train()
    net = net.to(device)
    # channels-last 3-D layout: about 25 % faster convolutions on CPU (oneDNN) and on GPU
    net = net.to(memory_format=torch.channels_last_3d)
    inner_t = loss_mask(cfg.patch_vox, cfg.loss_border_vox, device)

    def step(net, batch):  # type: ignore[no-untyped-def]
        x, y, m = batch
        xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last_3d)
        mu, log_var = net(xt)
        return beta_nll(mu, log_var, torch.from_numpy(y).to(device), torch.from_numpy(m).to(device) & inner_t, cfg.beta)

    history, elapsed, final_val = fit(
        net,
        cfg,
        make_sampler=lambda rng: _PatchSampler(train_pairs, cfg.patch_vox, rng),
        step=step,
        validate=lambda: _validate(net, val_pairs, device) if val_pairs else {},
        ckpt_path=ckpt_path,
        device=device,
        resume=resume,
        resume_keys=("patch_vox", "channels"),
        progress_label="training",
        progress=progress,
        on_checkpoint=on_checkpoint,
    )

    def make_metadata(net_cpu, digest: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        metadata = _metadata(cfg, net_cpu, train_pairs, val_pairs, final_val, elapsed, device, digest, training_data or {}, len(history["loss"]))
        if changelog:
            metadata["changelog"] = {**changelog, **({} if cfg.version in changelog else metadata["changelog"])}
        return metadata

    return write_bundle(net, out, history, final_val, elapsed, title="z-score network", make_metadata=make_metadata, write_card=write_model_card)


def _metadata(cfg: TrainingConfig, net, train_pairs, val_pairs, val, elapsed, device, digest, training_data, n_it) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    import torch

    floor = cfg.working_spacing_mm if cfg.spacing_floor else None
    spacings = np.asarray([effective_spacing_mm(p.spacing_mm, floor) for p in train_pairs])
    prior_spacings = np.asarray([effective_spacing_mm(p.prior_spacing_mm, floor) for p in train_pairs])
    seeds = [p.provenance.get("synthetic", {}).get("seed") for p in train_pairs]
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return {
        "schema": "tsct-zscore-bundle/1",
        "name": MODEL_NAME,
        "version": cfg.version,
        "changelog": {cfg.version: "trained with tsct detect train (4-block residual 3-D CNN, beta-NLL)"},
        "created": now,
        "intended_use": "research use only; not for diagnosis",
        "sha256": digest,
        "pytorch_version": torch.__version__,
        "numpy_version": np.__version__,
        "architecture": {
            "class": "detector.zscore.ZScoreNet",
            "channels": cfg.channels,
            "dilations": [1] * cfg.n_blocks,
            "n_inputs": int(net.n_inputs),
            "n_parameters": int(sum(p.numel() for p in net.parameters())),
            "receptive_radius_vox": int(net.receptive_radius_vox),
            "padding": "zeros",
            "normalisation_layers": "none",
        },
        "input": {
            "modality": "CT",
            "format": "hounsfield",
            "working_spacing_mm": cfg.working_spacing_mm,
            "contract": cfg.input_contract,
            "channels": {
                "0": (
                    "warped prior CT on the working grid brought to the current exam's resolution (detector.zscore_model.network_prior_input: "
                    "match_resolution fitted over the bone ROI of the working grid, applied to the whole grid), (clip(HU, -1024, 3071) - 200) / 500"
                    if cfg.resolution_match
                    else "warped prior CT on the working grid, (clip(HU, -1024, 3071) - 200) / 500"
                ),
                **{str(i + 1): f"{name}, constant map" for i, name in enumerate(CONDITION_NAMES)},
            },
            "noise_index": "1.4826 x MAD of neighbour differences / sqrt(2) along x and y in soft tissue (-150..150 HU) outside the bone ROI grown by 2 voxels, on the working grid",
            "never_sees": (
                "the current exam's voxels inside the bone ROI, except through the five coefficients of the robust resolution fit "
                "(and its soft-tissue noise index)"
                if cfg.resolution_match
                else "the current exam's voxels inside the bone ROI (the current enters only through its soft-tissue noise index)"
            ),
            "patch_shape_training": [cfg.patch_vox] * 3,
            "dtype": "float32",
            "inference": "fully convolutional, tiles of 64^3 with a halo of the receptive field",
        },
        "output": {
            "channel_def": {
                "0": "mu: no-change estimate of the current, (HU - 200) / 500",
                "1": "log sigma^2 of the same units (clamped to [-12, 4])",
            },
            "z": "(current - mu) / sigma on the current exam's grid, mu and sigma interpolated from the working grid",
        },
        "domain": {
            "spacing_min_mm": spacings.min(axis=0).tolist(),
            "spacing_max_mm": spacings.max(axis=0).tolist(),
            "prior_spacing_min_mm": prior_spacings.min(axis=0).tolist(),
            "prior_spacing_max_mm": prior_spacings.max(axis=0).tolist(),
            "spacing_tolerance": 0.1,
            **({"spacing_floor_mm": floor} if floor else {}),
            "bone_hu_p50": value_range([p.bone_stats.get("bone_hu_p50") for p in train_pairs]),
            "bone_hu_p95": value_range([p.bone_stats.get("bone_hu_p95") for p in train_pairs]),
            "hu_margin": 50.0,
            "noise_current_hu": value_range([p.noise_current_hu for p in train_pairs]),
            "noise_prior_hu": value_range([p.noise_prior_hu for p in train_pairs]),
            "noise_factor": 1.3,
        },
        "training_data": {
            **training_data,
            "n_pairs_train": len(train_pairs),
            "n_pairs_validation": len(val_pairs),
            "train_case_ids": [p.case_id for p in train_pairs],
            "validation_case_ids": [p.case_id for p in val_pairs],
            "n_source_pairs_train": len({p.base_case_id for p in train_pairs}),
            "synthetic_seeds_train": [s for s in seeds if s is not None],
            "n_bone_voxels_train": int(sum(p.n_roi_voxels for p in train_pairs)),
        },
        "training": {
            "loss": f"beta-NLL, beta = {cfg.beta}",
            "optimizer": f"Adam, lr {cfg.learning_rate} with cosine decay to 5 %",
            "iterations": n_it,
            "batch_size": cfg.batch_size,
            "patch_vox": cfg.patch_vox,
            "loss_border_vox": cfg.loss_border_vox,
            "augmentation": "random left-right flips"
            + (
                f"; {cfg.augment_variants} re-acquired variant(s) per pair (thicker slices up to 5 mm, extra noise up to 15 HU; augment_training_pairs)"
                if cfg.augment_variants
                else ""
            ),
            "seed": cfg.seed,
            "elapsed_s": round(elapsed, 1),
            "hardware": hardware_info(device),
            **({"initial_weights": f"{Path(cfg.init_weights).name} (sha256 {sha256_of(cfg.init_weights)})"} if cfg.init_weights else {}),
        },
        "validation": {k: v for k, v in val.items() if k not in ("calibration_bins", "z_histogram")},
        "validation_split": "normal pairs of the training case list held out from training (validation_case_ids), z on the working grid",
        "eval_metrics": {},
        "references": [
            "Seitzer M. et al., On the Pitfalls of Heteroscedastic Uncertainty Estimation with Probabilistic Neural Networks, ICLR 2022 (beta-NLL)",
            "Kendall A., Gal Y., What Uncertainties Do We Need in Bayesian Deep Learning for Computer Vision?, NeurIPS 2017",
            "Hoshiai S. et al., Clinical usefulness of temporal subtraction CT in detecting vertebral bone metastases, Eur J Radiol 2019",
        ],
    }


def write_model_card(weights: str | Path, metadata: dict[str, Any], figures: Sequence[Path] = ()) -> Path:
    """Write (or rewrite) the model card ``<stem>.md`` beside the weights from the metadata."""
    weights = Path(weights)
    m = metadata
    tr = m["training"]
    td = m["training_data"]
    hw = tr["hardware"]
    val = m.get("validation", {})
    dom = m["domain"]
    hardware = hw.get("gpu") or f"{hw.get('cpu', 'CPU')} ({hw.get('cpu_count')} cores, torch threads: {hw.get('torch_threads')})"
    if hw.get("note"):
        hardware += f"; {hw['note']}"
    matched = (
        " matched to the current exam's resolution (input contract 3)" if m["input"].get("contract", 0) >= INPUT_CONTRACT_RESOLUTION_MATCH else ""
    )
    lines = [
        f"# Model card: {m['name']} v{m['version']}",
        "",
        "**Intended use: research use only; not for diagnosis.** It produces per-voxel z-scores of change between a",
        "registered prior and current CT of the spine for temporal-subtraction reader studies. It was trained on the",
        "lesion-free pairs listed under Training data (synthetic phantom pairs and/or pairs simulated from real CTs by a",
        "known motion and re-acquisition); it has not been validated on pairs of real follow-up exams.",
        "",
        "## What it does",
        "",
        "For every bone voxel of the current CT it estimates the value the voxel would have if nothing had changed",
        "(`mu`) and its own error (`sigma`) from the registered prior around it. `z = (current - mu) / sigma`.",
        f"Input: the warped prior{matched} on a {m['input']['working_spacing_mm']} mm working grid; the network never sees {m['input']['never_sees']}. Plus",
        "constant channels of exam-level conditions: the soft-tissue noise index of each exam and the voxel spacing of each exam.",
        "",
        "## Architecture",
        "",
        f"3-D residual fully convolutional network, {m['architecture']['channels']} channels, {len(m['architecture']['dilations'])} residual blocks",
        f"(two 3x3x3 convolutions each), head with 2 outputs (`mu` residual, `log sigma^2`); {m['architecture']['n_parameters']:,} parameters;",
        f"receptive field radius {m['architecture']['receptive_radius_vox']} voxels. Weights: `{weights.name}`, SHA-256 `{m['sha256']}` (checked on load).",
        "",
        "## Training data",
        "",
        f"- {td['n_pairs_train']} lesion-free prior/current pairs for training, {td['n_pairs_validation']} held out for validation ({', '.join(td['validation_case_ids']) or 'none'}).",
    ]
    if td.get("case_list"):
        lines.append(f"- Case list: `{td['case_list']}`.")
    if td.get("description"):
        lines.append(f"- {td['description']}")
    if td.get("synthetic_seeds_train"):
        lines.append(f"- Synthetic generation seeds of the training pairs: {', '.join(str(s) for s in td['synthetic_seeds_train'])}.")
    lines += [
        f"- {td['n_bone_voxels_train']:,} bone-ROI voxels on the working grid.",
        f"- Domain recorded for the out-of-domain check: voxel spacing of the current {_fmt_list(dom['spacing_min_mm'])} to {_fmt_list(dom['spacing_max_mm'])} mm,",
        f"  of the prior {_fmt_list(dom['prior_spacing_min_mm'])} to {_fmt_list(dom['prior_spacing_max_mm'])} mm (x, y, z; ±{100 * dom['spacing_tolerance']:.0f} %),",
        f"  median bone HU of the prior {_fmt_list(dom['bone_hu_p50'], '.0f')}, 95th percentile {_fmt_list(dom['bone_hu_p95'], '.0f')} (±{dom['hu_margin']:.0f} HU),",
        f"  soft-tissue noise index current {_fmt_list(dom['noise_current_hu'], '.1f')}, prior {_fmt_list(dom['noise_prior_hu'], '.1f')} HU (x/÷{dom['noise_factor']}).",
        "  Outside it the detector warns and uses the analytic error model unless forced.",
        "",
        "## Training settings",
        "",
        f"- Loss: {tr['loss']}; optimiser: {tr['optimizer']}; {tr['iterations']} iterations of {tr['batch_size']} patches of {tr['patch_vox']}^3 voxels",
        f"  centred on bone voxels ({tr['loss_border_vox']}-voxel border left out of the loss); {tr['augmentation']}; seed {tr['seed']}.",
        f"- Hardware: {hardware}; device `{hw.get('device')}`. Training time: {tr['elapsed_s'] / 60:.1f} min ({tr['elapsed_s']:.0f} s, validation passes included).",
        f"- torch {m['pytorch_version']}, numpy {m['numpy_version']}.",
        "",
        "## Validation (held-out normal pairs of the training case list)",
        "",
    ]
    if val:
        lines += [
            f"- Fraction of bone voxels with |z| > 3: {100 * val['frac_abs_z_gt3']:.2f} % (a calibrated Gaussian gives 0.27 %); |z| > 4: {100 * val['frac_abs_z_gt4']:.3f} % (0.006 %).",
            f"- z mean {val['z_mean']:+.3f}, standard deviation {val['z_sd']:.3f}; sigma median {val['sigma_median_hu']:.0f} HU, 95th percentile {val['sigma_p95_hu']:.0f} HU.",
            f"- Gaussian NLL per voxel (HU units): {val['nll']:.3f}.",
        ]
    else:
        lines.append("- No validation pairs were held out.")
    ev = m.get("eval_metrics") or {}
    if ev:
        lines += ["", f"## Evaluation ({m.get('eval_split', 'see docs/detector-zscore.md')})", ""]
        for k, v in ev.items():
            if isinstance(v, float) and k.startswith("calibration"):
                lines.append(f"- {k}: {100 * v:.2f} % of unchanged bone voxels with |z| > 3")
            else:
                lines.append(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}")
    if m.get("operating_threshold") is not None:
        lines += [
            "",
            "## Operating point",
            "",
            f"- Candidate threshold {float(m['operating_threshold']):g} on the matched-filter score, used by default when this bundle makes the map"
            + (f": {m['operating_threshold_rule']}" if m.get("operating_threshold_rule") else "")
            + ".",
        ]
    if m.get("inference"):
        lines += ["", "## Inference", ""] + [f"- {k}: {v}" for k, v in m["inference"].items()]
    lines += ["", "## Figures", ""]
    for f in figures:
        lines.append(f"![{f.stem}]({f.name})")
    if m.get("changelog"):
        lines += ["", "## Changelog", ""] + [f"- {v}: {text}" for v, text in m["changelog"].items()]
    lines += [
        "",
        "## Limitations",
        "",
        "- Trained on synthetic spine CT pairs (tsct.cases.synth); real scanners, reconstruction kernels, contrast",
        "  phases and anatomy variants are not represented. Retrain on your own normal pairs (`tsct detect train`).",
        "- Blastic change inside already dense cortex cannot be seen (no headroom); thin posterior elements have",
        "  large sigma, so small lesions there are missed more often.",
        "- sigma assumes registration quality like the training pairs; a pair whose registration QC failed must not be read.",
        "",
    ]
    path = weights.with_name(weights.stem + ".md")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _fmt_list(values: Any, spec: str = ".2f") -> str:
    if values is None:
        return "n/a"
    return "[" + ", ".join(format(float(v), spec) for v in values) + "]"


def record_evaluation(weights: str | Path, metrics: dict[str, Any], split: str) -> Path:
    """Write evaluation figures (with the split named) into a bundle's metadata and model card.

    The weights and their SHA-256 are unchanged; only ``eval_metrics`` and ``eval_split`` of the
    metadata and the model card are rewritten.
    """
    return record_bundle_evaluation(weights, metrics, split, write_model_card)
