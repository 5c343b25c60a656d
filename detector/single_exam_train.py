"""Training of the single-exam in-painting network (``tsct detect train-single-exam``).

The lesion-free exams of a case list are brought onto the working grid with their own bone ROI
(:func:`prepare_single_exam_exams`), and the blind-spot network is trained on bone-centred
patches with the loop, checkpoints, validation figures and bundle writing that the temporal
trainer uses (:mod:`detector._training_common`); see :mod:`detector.single_exam` for the network
and the map, docs/detector-zscore.md for the design and the results.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from cases import CaseList, Volume, read_case_list, read_exam

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
from .single_exam import (
    CONDITION_NAMES,
    MODEL_NAME,
    ROI_MARGIN_MM,
    build_single_exam_net,
    predict_single_exam_on_grid,
    single_exam_conditions,
    single_exam_roi,
)
from .train import _case_provenance
from .working_grid import WORKING_SPACING_MM, make_working_grid, to_working_grid
from .zscore_domain import bone_hu_statistics, noise_index_hu
from .zscore_model import normalise_hu

__all__ = [
    "SingleExamExam",
    "SingleExamTrainingConfig",
    "SingleExamTrainingResult",
    "prepare_single_exam_exams",
    "train_single_exam_model",
    "write_single_exam_model_card",
    "record_single_exam_evaluation",
]

_CACHE_NAME = "single_exam_{role}.npz"


# =============================================================================================
# Training data
# =============================================================================================
@dataclass(eq=False)
class SingleExamExam:
    """One lesion-free exam on the working grid: HU, bone ROI, noise index, native spacing."""

    case_id: str
    role: str
    hu: np.ndarray
    roi: np.ndarray
    noise_hu: float
    spacing_mm: tuple[float, float, float]
    bone_stats: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_roi_voxels(self) -> int:
        return int(self.roi.sum())

    @property
    def conditions(self) -> np.ndarray:
        return single_exam_conditions(self.noise_hu, self.spacing_mm)


def _exam_to_working(case_id: str, role: str, volume: Volume, ws: float, halo_mm: float, provenance: dict[str, Any]) -> SingleExamExam:
    roi = single_exam_roi(volume).array != 0
    grid = make_working_grid(volume, roi, ws, halo_mm)
    if grid is None:
        raise DetectorInputError("empty bone ROI")
    hu = to_working_grid(volume.array, grid, volume.spacing_mm)
    roi_w = to_working_grid(roi.astype(np.float32), grid, volume.spacing_mm, label=True) > 0.5
    grown = ndi.binary_dilation(roi_w, iterations=2) if roi_w.any() else roi_w
    return SingleExamExam(
        case_id=case_id,
        role=role,
        hu=hu.astype(np.float32),
        roi=roi_w,
        noise_hu=noise_index_hu(hu, grown),
        spacing_mm=tuple(float(s) for s in volume.spacing_mm),
        bone_stats=bone_hu_statistics(hu, roi_w),
        provenance=provenance,  # type: ignore[arg-type]
    )


def _save_exam(path: Path, exam: SingleExamExam, ws: float) -> None:
    meta = {
        "case_id": exam.case_id,
        "role": exam.role,
        "noise_hu": exam.noise_hu,
        "spacing_mm": list(exam.spacing_mm),
        "bone_stats": exam.bone_stats,
        "provenance": exam.provenance,
        "working_spacing_mm": ws,
    }
    save_cache(path, {"hu": exam.hu, "roi": exam.roi}, meta)


def _load_exam(path: Path, ws: float) -> SingleExamExam | None:
    got = load_cache(path, ("hu", "roi"), ws)
    if got is None:
        return None
    arrays, meta = got
    try:
        return SingleExamExam(
            case_id=meta["case_id"],
            role=meta["role"],
            hu=arrays["hu"],
            roi=arrays["roi"],
            noise_hu=float(meta["noise_hu"]),
            spacing_mm=tuple(meta["spacing_mm"]),
            bone_stats=meta["bone_stats"],
            provenance=meta.get("provenance", {}),
        )
    except KeyError:
        return None


def prepare_single_exam_exams(
    case_list: CaseList | str | Path,
    work_dir: str | Path,
    *,
    include_priors: bool = True,
    working_spacing_mm: float = WORKING_SPACING_MM,
    halo_mm: float = 20.0,
    max_pairs: int | None = None,
    progress: bool = True,
    on_exam: Callable[[str, str], None] | None = None,
) -> list[SingleExamExam]:
    """The lesion-free exams of a case list's normal pairs, on the working grid, with their ROI.

    No registration is needed: each exam is read, its bone ROI derived from itself
    (:func:`single_exam_roi`), and both are resampled onto the working grid and cached in
    ``work_dir/<case_id>/single_exam_<role>.npz``.

    Parameters
    ----------
    case_list : a case list or its CSV path; only ``normal`` cases are used.
    work_dir : where the caches go (reused when present).
    include_priors : also use the prior exam of each normal pair (lesion-free as well).
    working_spacing_mm, halo_mm : the working grid and the margin kept around the ROI.
    max_pairs : at most this many normal cases (in list order).
    progress : show a progress bar.
    on_exam : called as ``on_exam("<case_id>/<role>", outcome)`` with ``"cached"``, ``"prepared"``
        or ``"skipped: <why>"``.

    Raises
    ------
    DetectorInputError
        No normal case in the list, or none of its exams could be used.
    """
    if not isinstance(case_list, CaseList):
        case_list = read_case_list(case_list)
    normals = case_list.normal_cases
    if not normals:
        raise DetectorInputError(
            f"{case_list.source or 'The case list'}: no normal case. The single-exam network is trained on lesion-free exams (status 'normal')."
        )
    if max_pairs is not None:
        normals = normals[:max_pairs]
    roles = ("current", "prior") if include_priors else ("current",)
    work = Path(work_dir)
    exams: list[SingleExamExam] = []
    skipped: list[str] = []
    bar = task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("training exams", total=len(normals) * len(roles))
    try:
        for case in normals:
            for role in roles:
                key = f"{case.case_id}/{role}"
                cache = work / case.case_id / _CACHE_NAME.format(role=role)
                outcome = "cached"
                try:
                    exam = _load_exam(cache, working_spacing_mm)
                    if exam is None:
                        outcome = "prepared"
                        src = case.current if role == "current" else case.prior
                        volume = read_exam(src).volume
                        exam = _exam_to_working(case.case_id, role, volume, working_spacing_mm, halo_mm, _provenance(case, role))
                        _save_exam(cache, exam, working_spacing_mm)
                    exams.append(exam)
                except Exception as exc:  # noqa: BLE001 - a bad exam is reported and left out
                    outcome = f"skipped: {type(exc).__name__}: {exc}"
                    skipped.append(f"{key}: {outcome}")
                if on_exam is not None:
                    on_exam(key, outcome)
                if bar is not None:
                    bar.update(task, advance=1, description=key)  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.stop()
    if not exams:
        raise DetectorInputError("No exam could be prepared for training: " + "; ".join(skipped))
    return exams


def _provenance(case: Any, role: str) -> dict[str, Any]:
    """The case's provenance as the temporal trainer records it (synthetic seed, ...), with the exam's role and path."""
    info = _case_provenance(case)
    info.pop("prior", None)
    info.pop("current", None)
    return {**info, "role": role, "path": str(case.current if role == "current" else case.prior)}


# =============================================================================================
# Training
# =============================================================================================
@dataclass(frozen=True)
class SingleExamTrainingConfig(TrainingSettings):
    """Settings of :func:`train_single_exam_model`: those of :class:`~detector._training_common.TrainingSettings`
    (with other defaults: 600 iterations of 6 patches, a 5-voxel loss border, whose context the patch
    cuts off while inference does not, learning rate 0.002), and

    Parameters
    ----------
    channels, n_layers, blind_radius_vox, head_channels : the network
        (:class:`~detector._inpaint_net.BlindSpotNet`).
    """

    iterations: int = 600
    batch_size: int = 6
    loss_border_vox: int = 5
    learning_rate: float = 2e-3
    channels: int = 8
    n_layers: int = 5
    blind_radius_vox: int = 2
    head_channels: int = 32

    def problems(self) -> list[str]:
        bad = min(self.channels, self.n_layers, self.head_channels) < 1 or self.blind_radius_vox < 0
        return super().problems() + (["channels, n_layers and head_channels must be at least 1; blind_radius_vox non-negative"] if bad else [])


#: What :func:`train_single_exam_model` produced (the trainers share one result record).
SingleExamTrainingResult = TrainingResult


class _Sampler:
    """Random bone-centred patches of the training exams (input and target are the same exam)."""

    def __init__(self, exams: Sequence[SingleExamExam], patch_vox: int, rng: np.random.Generator) -> None:
        self.p = int(patch_vox)
        self.rng = rng
        half = self.p // 2
        pad = ((half, self.p), (half, self.p), (half, self.p))
        self.data = [(np.pad(normalise_hu(e.hu), pad, mode="edge"), np.pad(e.roi, pad), np.argwhere(e.roi)) for e in exams]
        w = np.asarray([len(d[2]) for d in self.data], dtype=float)
        self.prob = w / w.sum()
        self.conditions = np.stack([e.conditions for e in exams])

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.p
        x = np.empty((batch_size, 1, p, p, p), dtype=np.float32)
        m = np.empty((batch_size, 1, p, p, p), dtype=bool)
        c = np.empty((batch_size, self.conditions.shape[1]), dtype=np.float32)
        for b in range(batch_size):
            i = int(self.rng.choice(len(self.data), p=self.prob))
            hu, roi, centres = self.data[i]
            ctr = centres[int(self.rng.integers(len(centres)))]
            sl = tuple(slice(int(v), int(v) + p) for v in ctr)
            xp, mp = hu[sl], roi[sl]
            if self.rng.random() < 0.5:
                xp, mp = xp[..., ::-1], mp[..., ::-1]
            x[b, 0], m[b, 0], c[b] = xp, mp, self.conditions[i]
        return x, m, c


def _validate(net, exams: Sequence[SingleExamExam], device) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return validate_on(net, exams, lambda e: (e.hu, *predict_single_exam_on_grid(net, e.hu, e.conditions, e.roi, device=device), e.roi))


def train_single_exam_model(
    exams: Sequence[SingleExamExam],
    out_path: str | Path,
    *,
    config: SingleExamTrainingConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    training_data: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    hardware_note: str | None = None,
    on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
) -> SingleExamTrainingResult:
    """Train the single-exam in-painting network on lesion-free exams and write the bundle.

    Parameters
    ----------
    exams : from :func:`prepare_single_exam_exams`.
    out_path : the weights file (``.pt``); metadata, model card and figures go beside it.
    config : training settings.
    resume : continue from the checkpoint ``<stem>.ckpt.pt`` in ``checkpoint_dir`` (same
        settings expected).
    progress : show a progress bar with the running NLL.
    training_data : description of the data for the metadata (case list, ...).
    checkpoint_dir : where the checkpoint is kept (default: beside the weights).
    hardware_note : a sentence on the conditions (e.g. shared CPU) for the model card.
    on_checkpoint : called as ``on_checkpoint(iteration, validation)`` at each checkpoint.

    Returns
    -------
    SingleExamTrainingResult
    """
    import torch

    cfg = config or SingleExamTrainingConfig()
    if not exams:
        raise DetectorInputError("No training exams given.")
    out, ckpt_path, device = start_run(cfg, out_path, checkpoint_dir)
    train_exams, val_exams = split_by_case(exams, lambda e: e.case_id, cfg.validation_pairs, cfg.seed)
    torch.manual_seed(cfg.seed)
    net = build_single_exam_net(cfg.channels, cfg.n_layers, cfg.blind_radius_vox, cfg.head_channels).to(device)
    inner_t = loss_mask(cfg.patch_vox, cfg.loss_border_vox, device)

    def step(net, batch):  # type: ignore[no-untyped-def]
        x, m, c = batch
        xt = torch.from_numpy(x).to(device)
        mu, log_var = net(xt, torch.from_numpy(c).to(device))
        return beta_nll(mu, log_var, xt, torch.from_numpy(m).to(device) & inner_t, cfg.beta)

    history, elapsed, final_val = fit(
        net,
        cfg,
        make_sampler=lambda rng: _Sampler(train_exams, cfg.patch_vox, rng),
        step=step,
        validate=lambda: _validate(net, val_exams, device) if val_exams else {},
        ckpt_path=ckpt_path,
        device=device,
        resume=resume,
        resume_keys=("patch_vox", "channels", "n_layers", "blind_radius_vox", "head_channels"),
        progress_label="training (single exam)",
        progress=progress,
        on_checkpoint=on_checkpoint,
    )
    return write_bundle(
        net,
        out,
        history,
        final_val,
        elapsed,
        title="single-exam in-painting network",
        write_card=write_single_exam_model_card,
        make_metadata=lambda net_cpu, digest: _metadata(
            cfg, net_cpu, train_exams, val_exams, final_val, elapsed, device, digest, training_data or {}, len(history["loss"]), hardware_note
        ),
    )


def _metadata(cfg, net, train_exams, val_exams, val, elapsed, device, digest, training_data, n_it, hardware_note) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    import torch

    spacings = np.asarray([e.spacing_mm for e in train_exams])
    seeds = sorted({e.provenance.get("synthetic", {}).get("seed") for e in train_exams} - {None})
    hw = hardware_info(device)
    if hardware_note:
        hw["note"] = hardware_note
    return {
        "schema": "tsct-single-exam-bundle/1",
        "name": MODEL_NAME,
        "version": cfg.version,
        "changelog": {cfg.version: "first single-exam in-painting network (3-D blind-spot network, beta-NLL), tsct detect train-single-exam"},
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "intended_use": "research use only; not for diagnosis",
        "sha256": digest,
        "pytorch_version": torch.__version__,
        "numpy_version": np.__version__,
        "architecture": {
            "class": "detector._inpaint_net.BlindSpotNet",
            "channels": cfg.channels,
            "n_layers": cfg.n_layers,
            "blind_radius_vox": cfg.blind_radius_vox,
            "head_channels": cfg.head_channels,
            "n_conditions": len(CONDITION_NAMES),
            "n_parameters": int(sum(p.numel() for p in net.parameters())),
            "reach_vox": int(net.reach_vox),
            "padding": "zeros",
            "normalisation_layers": "none",
            "design": "six half-space branches with shared weights (causal 3x3x3 convolutions, shift of blind_radius_vox + 1), combined by 1x1x1 layers",
        },
        "input": {
            "modality": "CT",
            "format": "hounsfield",
            "working_spacing_mm": cfg.working_spacing_mm,
            "channels": {"0": "the exam on the working grid, (clip(HU, -1024, 3071) - 200) / 500"},
            "conditions": list(CONDITION_NAMES),
            "noise_index": "1.4826 x MAD of neighbour differences / sqrt(2) along x and y in soft tissue (-150..150 HU) outside the bone ROI grown by 2 voxels, on the working grid",
            "never_sees": f"the cube of {2 * cfg.blind_radius_vox + 1}^3 working-grid voxels ({(2 * cfg.blind_radius_vox + 1) * cfg.working_spacing_mm:g} mm) centred on the voxel it predicts",
            "bone_roi": f"detector.bone_mask of the exam grown by {ROI_MARGIN_MM:g} mm",
            "patch_shape_training": [cfg.patch_vox] * 3,
            "dtype": "float32",
        },
        "output": {
            "channel_def": {
                "0": "mu: in-painted estimate of the voxel, (HU - 200) / 500",
                "1": "log sigma^2 of the same units (clamped to [-12, 4])",
            },
            "z": "(exam - mu) / sigma on the working grid, interpolated onto the exam's grid",
        },
        "domain": {
            "spacing_min_mm": spacings.min(axis=0).tolist(),
            "spacing_max_mm": spacings.max(axis=0).tolist(),
            "spacing_tolerance": 0.1,
            "bone_hu_p50": value_range([e.bone_stats.get("bone_hu_p50") for e in train_exams]),
            "bone_hu_p95": value_range([e.bone_stats.get("bone_hu_p95") for e in train_exams]),
            "hu_margin": 50.0,
            "noise_hu": value_range([e.noise_hu for e in train_exams]),
            "noise_factor": 1.3,
        },
        "training_data": {
            **training_data,
            "n_exams_train": len(train_exams),
            "n_exams_validation": len(val_exams),
            "train_exams": [f"{e.case_id}/{e.role}" for e in train_exams],
            "validation_exams": [f"{e.case_id}/{e.role}" for e in val_exams],
            "synthetic_seeds_train": seeds,
            "n_bone_voxels_train": int(sum(e.n_roi_voxels for e in train_exams)),
        },
        "training": {
            "loss": f"beta-NLL, beta = {cfg.beta}",
            "optimizer": f"Adam, lr {cfg.learning_rate} with cosine decay to 5 %",
            "iterations": n_it,
            "batch_size": cfg.batch_size,
            "patch_vox": cfg.patch_vox,
            "loss_border_vox": cfg.loss_border_vox,
            "augmentation": "random left-right flips",
            "seed": cfg.seed,
            "elapsed_s": round(elapsed, 1),
            "hardware": hw,
        },
        "validation": {k: v for k, v in val.items() if k not in ("calibration_bins", "z_histogram")},
        "validation_calibration_bins": val.get("calibration_bins", []),
        "validation_split": "both exams of normal pairs of the training case list held out from training (validation_exams), z on the working grid, no recalibration",
        "eval_metrics": {},
        "references": [
            "Laine S., Karras T., Lehtinen J., Aila T., High-Quality Self-Supervised Deep Image Denoising, NeurIPS 2019 (blind-spot network from half-space branches)",
            "Krull A., Buchholz T.-O., Jug F., Noise2Void - Learning Denoising from Single Noisy Images, CVPR 2019",
            "Seitzer M. et al., On the Pitfalls of Heteroscedastic Uncertainty Estimation with Probabilistic Neural Networks, ICLR 2022 (beta-NLL)",
        ],
    }


def _fmt(values: Any, spec: str = ".2f") -> str:
    return "n/a" if values is None else "[" + ", ".join(format(float(v), spec) for v in values) + "]"


def write_single_exam_model_card(weights: str | Path, metadata: dict[str, Any], figures: Sequence[Path] = ()) -> Path:
    """Write (or rewrite) the model card ``<stem>.md`` beside single-exam weights from their metadata."""
    weights = Path(weights)
    m = metadata
    tr, td, arch, dom = m["training"], m["training_data"], m["architecture"], m["domain"]
    hw = tr["hardware"]
    val = m.get("validation", {})
    hardware = hw.get("gpu") or f"{hw.get('cpu', 'CPU')} ({hw.get('cpu_count')} cores, torch threads: {hw.get('torch_threads')})"
    if hw.get("note"):
        hardware += f"; {hw['note']}"
    lines = [
        f"# Model card: {m['name']} v{m['version']}",
        "",
        "**Intended use: research use only; not for diagnosis.** It produces per-voxel z-scores of how poorly a bone voxel",
        "of a single CT is explained by its surroundings, for observer studies when no prior exam exists. It was trained on",
        "synthetic data only and has not been validated on patient CT.",
        "",
        "## What it does",
        "",
        "For every bone voxel it predicts the voxel's value (`mu`) and its own error (`sigma`) from the exam around it,",
        f"never looking at {m['input']['never_sees']}. `z = (exam - mu) / sigma`.",
        f"Input: the exam on a {m['input']['working_spacing_mm']} mm working grid, HU normalised as (HU - 200) / 500; exam-level conditions",
        f"entering the combining layers: {', '.join(m['input']['conditions'])}. Bone ROI: {m['input']['bone_roi']}.",
        "",
        "## Architecture",
        "",
        f"3-D blind-spot network: {arch['design']}; {arch['channels']} channels and {arch['n_layers']} layers per branch,",
        f"{arch['head_channels']} channels in the two hidden combining layers; {arch['n_parameters']:,} parameters; reach {arch['reach_vox']} voxels along",
        f"each axis. Weights: `{weights.name}`, SHA-256 `{m['sha256']}` (checked on load).",
        "",
        "## Training data",
        "",
        f"- {td['n_exams_train']} lesion-free exams for training (current and prior exams of normal pairs), {td['n_exams_validation']} held out for validation"
        f" ({', '.join(td['validation_exams']) or 'none'}).",
    ]
    if td.get("case_list"):
        lines.append(f"- Case list: `{td['case_list']}`.")
    if td.get("synthetic_seeds_train"):
        lines.append(f"- Synthetic generation seeds of the training cases: {', '.join(str(s) for s in td['synthetic_seeds_train'])}.")
    lines += [
        f"- {td['n_bone_voxels_train']:,} bone-ROI voxels on the working grid.",
        f"- Domain recorded for the out-of-domain check: voxel spacing {_fmt(dom['spacing_min_mm'])} to {_fmt(dom['spacing_max_mm'])} mm (x, y, z; ±{100 * dom['spacing_tolerance']:.0f} %),",
        f"  median bone HU {_fmt(dom['bone_hu_p50'], '.0f')}, 95th percentile {_fmt(dom['bone_hu_p95'], '.0f')} (±{dom['hu_margin']:.0f} HU), noise index {_fmt(dom['noise_hu'], '.1f')} HU (x/÷{dom['noise_factor']}).",
        "  Outside it the map is refused unless forced (there is no analytic fallback without a prior exam).",
        "",
        "## Training settings",
        "",
        f"- Loss: {tr['loss']}; optimiser: {tr['optimizer']}; {tr['iterations']} iterations of {tr['batch_size']} patches of {tr['patch_vox']}^3 voxels",
        f"  centred on bone voxels ({tr['loss_border_vox']}-voxel border left out of the loss); {tr['augmentation']}; seed {tr['seed']}.",
        f"- Hardware: {hardware}; device `{hw.get('device')}`. Training time: {tr['elapsed_s'] / 60:.1f} min ({tr['elapsed_s']:.0f} s, validation passes included).",
        f"- torch {m['pytorch_version']}, numpy {m['numpy_version']}.",
        "",
        "## Validation (held-out normal exams of the training case list, no recalibration)",
        "",
    ]
    if val:
        lines += [
            f"- Fraction of bone voxels with |z| > 3: {100 * val['frac_abs_z_gt3']:.2f} % (a calibrated Gaussian gives 0.27 %); |z| > 4: {100 * val['frac_abs_z_gt4']:.3f} % (0.006 %).",
            f"- z mean {val['z_mean']:+.3f}, standard deviation {val['z_sd']:.3f} (robust {val['z_robust_sd']:.3f}); sigma median {val['sigma_median_hu']:.0f} HU, 95th percentile {val['sigma_p95_hu']:.0f} HU;",
            f"  RMS in-painting error {val['rmse_hu']:.0f} HU.",
            f"- Gaussian NLL per voxel (HU units): {val['nll']:.3f}.",
        ]
    else:
        lines.append("- No validation exams were held out.")
    ev = m.get("eval_metrics") or {}
    if ev:
        lines += ["", f"## Evaluation ({m.get('eval_split', 'see docs/detector-zscore.md')})", ""]
        for k, v in ev.items():
            if isinstance(v, float) and k.startswith("calibration"):
                lines.append(f"- {k}: {100 * v:.2f} % of unchanged bone voxels with |z| > 3")
            else:
                lines.append(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}")
    lines += ["", "## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures]
    lines += ["", "## Changelog", ""] + [f"- {v}: {text}" for v, text in m.get("changelog", {}).items()]
    lines += [
        "",
        "## Limitations",
        "",
        "- It cannot tell an old lesion or a benign sclerotic island from a new lesion: anything its surroundings do not",
        "  explain is flagged. Use the temporal z-map (tsct detect run) whenever a prior exam exists.",
        "- A lesion much larger than the blind cube is partly explained by its own rim, so its centre scores lower than a",
        "  temporal z-map would; the rim, where lesion meets normal bone, scores highest.",
        "- Trained on synthetic spine CT (tsct.cases.synth); real scanners, kernels, contrast phases and anatomy variants",
        "  are not represented. Retrain on your own lesion-free exams (`tsct detect train-single-exam`).",
        "",
    ]
    path = weights.with_name(weights.stem + ".md")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def record_single_exam_evaluation(weights: str | Path, metrics: dict[str, Any], split: str) -> Path:
    """Write evaluation figures (split named) into a single-exam bundle's metadata and model card.

    The weights and their SHA-256 are unchanged.
    """
    return record_bundle_evaluation(weights, metrics, split, write_single_exam_model_card)
