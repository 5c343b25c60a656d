"""Pieces both trainers share (temporal z-score network and single-exam in-painting network).

The beta-NLL loss, the optimisation loop with its checkpoints and resume (:func:`fit`), the
validation figures, the working-grid cache of the training data, the result record, the hardware
record, the loss and calibration figures and the writing of evaluation figures into a bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._errors import DetectorInputError
from .working_grid import WORKING_SPACING_MM

__all__ = [
    "beta_nll",
    "hardware_info",
    "value_range",
    "write_training_figures",
    "record_bundle_evaluation",
    "TrainingSettings",
    "TrainingResult",
    "validation_figures",
    "fit",
    "save_cache",
    "load_cache",
    "write_bundle",
    "start_run",
    "split_by_case",
    "loss_mask",
    "validate_on",
]


@dataclass(frozen=True)
class TrainingSettings:
    """Settings both trainers share (each trainer's configuration adds its network's and may change defaults).

    Parameters
    ----------
    iterations : optimiser steps.
    batch_size : patches per step.
    patch_vox : patch edge on the working grid, voxels.
    loss_border_vox : voxels next to a patch face left out of the loss.
    learning_rate : Adam step size (cosine decay to 5 % over the run).
    beta : beta of the beta-NLL loss (0 = Gaussian NLL).
    working_spacing_mm : the network's grid spacing, mm (isotropic).
    checkpoint_every : iterations between checkpoints and validation passes.
    validation_pairs : normal cases held out (with all their exams or variants) for validation and the calibration figures.
    seed : seeds patch sampling, the validation split and the weight initialisation.
    device : ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    num_threads : CPU threads for torch (None: torch's default).
    version : version string written into the metadata.
    """

    iterations: int = 1500
    batch_size: int = 8
    patch_vox: int = 32
    loss_border_vox: int = 3
    learning_rate: float = 1e-3
    beta: float = 0.5
    working_spacing_mm: float = WORKING_SPACING_MM
    checkpoint_every: int = 100
    validation_pairs: int = 2
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    version: str = "1.0.0"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise DetectorInputError(f"Invalid {type(self).__name__}: " + "; ".join(problems) + ".")

    def problems(self) -> list[str]:
        """What is wrong with the settings (empty: nothing); subclasses add their network's checks."""
        problems = []
        if self.iterations < 1 or self.batch_size < 1:
            problems.append("iterations and batch_size must be at least 1")
        if self.patch_vox < 8 or self.loss_border_vox < 0 or self.patch_vox - 2 * self.loss_border_vox < 4:
            problems.append(f"patch_vox ({self.patch_vox}) must leave at least 4 voxels inside a loss border of {self.loss_border_vox}")
        if not 0.0 <= self.beta <= 1.0:
            problems.append(f"beta must be in [0, 1], got {self.beta}")
        if self.learning_rate <= 0 or self.working_spacing_mm <= 0:
            problems.append("learning_rate and working_spacing_mm must be positive")
        if self.checkpoint_every < 1 or self.validation_pairs < 0:
            problems.append("checkpoint_every must be at least 1 and validation_pairs non-negative")
        return problems

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingResult:
    """What a training run produced.

    Attributes
    ----------
    weights_path, metadata_path, model_card_path : the bundle's files.
    figures : loss curve and calibration figures (PNG).
    iterations : iterations done in total (including resumed ones).
    elapsed_s : training wall time of this run plus resumed runs, s.
    history : per-iteration training loss and per-checkpoint validation figures.
    validation : final validation figures (NLL, fraction of |z| > 3, z standard deviation).
    """

    weights_path: Path
    metadata_path: Path
    model_card_path: Path
    figures: tuple[Path, ...]
    iterations: int
    elapsed_s: float
    history: dict[str, Any]
    validation: dict[str, float]

    def summary(self) -> str:
        v = self.validation
        val = (
            f"validation: |z| > 3 in {100 * v['frac_abs_z_gt3']:.2f} % of bone voxels (0.27 % if calibrated), "
            f"z sd {v['z_sd']:.2f}, NLL {v['nll']:.3f}"
            if v
            else "no validation data"
        )
        return (
            f"{self.iterations} iterations in {self.elapsed_s / 60:.1f} min; {val}. Weights: {self.weights_path}; model card: {self.model_card_path}"
        )


def validation_figures(z: np.ndarray, sigma: np.ndarray, residual: np.ndarray) -> dict[str, Any]:
    """Figures of z, sigma (HU) and residual (HU) over held-out bone voxels: NLL (HU units), tails, calibration by decile of sigma."""
    if z.size == 0:
        return {}
    s64 = sigma.astype(np.float64)
    nll = float(np.mean(0.5 * np.log(2 * np.pi * s64**2) + 0.5 * z.astype(np.float64) ** 2))
    edges = np.quantile(sigma, np.linspace(0, 1, 11))
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (sigma >= lo) & (sigma <= hi)
        if sel.any():
            bins.append(
                {
                    "sigma_mean_hu": float(sigma[sel].mean()),
                    "rmse_hu": float(np.sqrt(np.mean(residual[sel].astype(np.float64) ** 2))),
                    "n": int(sel.sum()),
                }
            )
    return {
        "nll": nll,
        "frac_abs_z_gt3": float(np.mean(np.abs(z) > 3)),
        "frac_abs_z_gt4": float(np.mean(np.abs(z) > 4)),
        "z_mean": float(z.mean()),
        "z_sd": float(z.std()),
        "z_robust_sd": float(1.4826 * np.median(np.abs(z - np.median(z)))),
        "rmse_hu": float(np.sqrt(np.mean(residual.astype(np.float64) ** 2))),
        "sigma_median_hu": float(np.median(sigma)),
        "sigma_p95_hu": float(np.percentile(sigma, 95)),
        "n_voxels": int(z.size),
        "calibration_bins": bins,
        "z_histogram": np.histogram(np.clip(z, -8, 8), bins=np.linspace(-8, 8, 81))[0].tolist(),
    }


def fit(
    net: Any,
    cfg: Any,
    *,
    make_sampler: Callable[[np.random.Generator], Any],
    step: Callable[[Any, Any], tuple[Any, Any]],
    validate: Callable[[], dict[str, Any]],
    ckpt_path: Path,
    device: Any,
    resume: bool,
    resume_keys: Sequence[str],
    progress_label: str,
    progress: bool,
    on_checkpoint: Callable[[int, dict[str, Any]], None] | None,
) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """The optimisation loop both trainers use: Adam with cosine decay to 5 %, gradient clipping,
    checkpoints (model, optimiser, scheduler, random states, history) every ``cfg.checkpoint_every``
    iterations, resume from ``ckpt_path``.

    ``make_sampler(rng)`` gives an object whose ``batch(cfg.batch_size)`` is passed to
    ``step(net, batch)``, which returns the loss to minimise and the plain NLL (torch scalars).
    ``validate()`` gives the validation figures (:func:`validation_figures`), with the network put
    back into training mode. Returns the history, the wall time (resumed runs included) and the
    final validation figures.
    """
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(it, cfg.iterations) / cfg.iterations)))
    history: dict[str, Any] = {"loss": [], "nll": [], "validation": []}
    start_it = 0
    elapsed_before = 0.0
    sampler_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(1)[0])
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if any(state.get("config", {}).get(k) != getattr(cfg, k) for k in resume_keys):
            raise DetectorInputError(
                f"{ckpt_path}: the checkpoint was made with other settings ({state.get('config')}); remove it or train with those settings."
            )
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = state["history"]
        start_it = int(state["iteration"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        sampler_rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
    sampler = make_sampler(sampler_rng)
    t0 = time.perf_counter()
    bar = task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn(f"[bold]{progress_label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        bar.start()
        task = bar.add_task("train", total=cfg.iterations, completed=start_it, info="")
    last_val: dict[int, dict[str, Any]] = {}

    def checkpoint(it: int) -> None:
        val = validate()
        last_val.clear()
        last_val[it] = val
        history["validation"].append({"iteration": it, **{k: v for k, v in val.items() if k not in ("calibration_bins", "z_histogram")}})
        torch.save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": history,
                "iteration": it,
                "elapsed_s": elapsed_before + time.perf_counter() - t0,
                "config": cfg.to_dict(),
                "sampler_rng": sampler_rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
            },
            ckpt_path,
        )
        if on_checkpoint is not None:
            on_checkpoint(it, val)

    net.train()
    try:
        for it in range(start_it, cfg.iterations):
            loss, nll = step(net, sampler.batch(cfg.batch_size))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            history["loss"].append(float(loss.item()))
            history["nll"].append(float(nll.item()))
            if bar is not None:
                bar.update(task, advance=1, info=f"NLL {np.mean(history['nll'][-50:]):+.3f}")  # type: ignore[arg-type]
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                checkpoint(it + 1)
    finally:
        if bar is not None:
            bar.stop()
    elapsed = elapsed_before + time.perf_counter() - t0
    n_done = len(history["loss"])
    final_val = last_val[n_done] if n_done in last_val else validate()
    return history, elapsed, final_val


def save_cache(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a working-grid training cache (HU arrays as int16, masks as bool, ``meta`` as JSON), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: (v if v.dtype == bool else np.clip(np.rint(v), -32768, 32767).astype(np.int16)) for k, v in arrays.items()}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, meta=json.dumps(meta), **data)
    os.replace(tmp, path)


def load_cache(path: Path, keys: Sequence[str], working_spacing_mm: float) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Read a cache written by :func:`save_cache` (HU arrays as float32); None when missing, unreadable or of another working spacing."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if abs(float(meta.get("working_spacing_mm", -1)) - working_spacing_mm) > 1e-6:
                return None
            arrays = {k: (data[k].astype(bool) if data[k].dtype == bool else data[k].astype(np.float32)) for k in keys}
    except (OSError, KeyError, ValueError):
        return None  # unreadable or from an older layout: rebuilt
    return arrays, meta


def beta_nll(mu, log_var, target, mask, beta: float):  # type: ignore[no-untyped-def]
    """beta-NLL (Seitzer et al. 2022): per-voxel Gaussian NLL weighted by stop-gradient sigma^(2 beta)."""
    import torch

    nll = 0.5 * (log_var + (target - mu) ** 2 * torch.exp(-log_var))
    w = mask.float()
    n = w.sum().clamp_min(1.0)
    weighted = nll * torch.exp(beta * log_var).detach() if beta > 0 else nll
    return (weighted * w).sum() / n, (nll * w).sum() / n


def hardware_info(device) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """What a model was trained on (for the bundle metadata and the model card)."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if getattr(device, "type", str(device)) == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def value_range(values: Sequence[float | None]) -> list[float] | None:
    """[min, max] of the values that are not None (None when there are none)."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    return [min(v), max(v)] if v else None


def write_training_figures(out: Path, history: dict[str, Any], val: dict[str, Any], *, title: str) -> list[Path]:
    """Loss curve (``<stem>-loss.png``) and calibration figure (``<stem>-calibration.png``) beside ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    nll = np.asarray(history["nll"], dtype=float)
    if nll.size:
        k = max(1, min(50, nll.size // 10))
        smooth = np.convolve(nll, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(nll.size) + 1, nll, color="0.8", lw=0.5, label="training NLL (per batch)")
        ax.plot(np.arange(smooth.size) + k, smooth, color="C0", label=f"training NLL ({k}-batch mean)")
    vh = [v for v in history.get("validation", []) if "nll" in v]
    if vh:
        # validation NLL is in HU units (log sigma in HU); shift it onto the normalised scale
        shift = math.log(500.0)
        ax.plot([v["iteration"] for v in vh], [v["nll"] - shift - 0.5 * math.log(2 * math.pi) for v in vh], "o-", color="C3", label="validation NLL")
    ax.set_xlabel("iteration")
    ax.set_ylabel("Gaussian NLL (normalised HU units)")
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: training loss")
    fig.tight_layout()
    p = out.with_name(out.stem + "-loss.png")
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    if val:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
        edges = np.linspace(-8, 8, 81)
        counts = np.asarray(val["z_histogram"], dtype=float)
        centres = 0.5 * (edges[:-1] + edges[1:])
        dens = counts / counts.sum() / np.diff(edges)
        axes[0].semilogy(centres, np.maximum(dens, 1e-7), drawstyle="steps-mid", label="z in held-out normal bone")
        axes[0].semilogy(centres, np.exp(-0.5 * centres**2) / math.sqrt(2 * math.pi), "k--", lw=1, label="N(0, 1)")
        axes[0].set_ylim(1e-6, 1)
        axes[0].set_xlabel("z")
        axes[0].set_ylabel("density")
        axes[0].set_title(f"|z| > 3: {100 * val['frac_abs_z_gt3']:.2f} % (calibrated: 0.27 %)", fontsize=9)
        axes[0].legend(fontsize=7)
        bins = val["calibration_bins"]
        sm = [b["sigma_mean_hu"] for b in bins]
        rm = [b["rmse_hu"] for b in bins]
        axes[1].plot(sm, rm, "o-", label="held-out normal bone (deciles of sigma)")
        lim = max(max(sm), max(rm)) * 1.1
        axes[1].plot([0, lim], [0, lim], "k--", lw=1, label="ideal")
        axes[1].set_xlabel("predicted sigma (HU)")
        axes[1].set_ylabel("observed RMS error (HU)")
        axes[1].set_title("calibration of sigma", fontsize=9)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        p = out.with_name(out.stem + "-calibration.png")
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths


def record_bundle_evaluation(weights: str | Path, metrics: dict[str, Any], split: str, write_card: Callable[..., Path]) -> Path:
    """Write evaluation figures (with the split named) into a bundle's metadata and model card.

    The weights and their SHA-256 are unchanged; only ``eval_metrics`` and ``eval_split`` of the
    metadata and the model card (``write_card(weights, metadata, figures)``) are rewritten.
    """
    weights = Path(weights)
    meta_path = weights.with_name(weights.stem + ".metadata.json")
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    metadata["eval_metrics"] = metrics
    metadata["eval_split"] = split
    meta_path.write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    figures = [p for p in (weights.with_name(weights.stem + "-loss.png"), weights.with_name(weights.stem + "-calibration.png")) if p.is_file()]
    write_card(weights, metadata, figures)
    return meta_path


def write_bundle(
    net: Any,
    out: Path,
    history: dict[str, Any],
    validation: dict[str, Any],
    elapsed_s: float,
    *,
    title: str,
    make_metadata: Callable[[Any, str], dict[str, Any]],
    write_card: Callable[..., Path],
) -> TrainingResult:
    """Write a trained network's bundle: weights (float32 state dict), figures, ``.metadata.json`` and model card.

    ``make_metadata(net_on_cpu, sha256)`` gives the metadata; ``write_card(weights, metadata, figures)`` the card.
    """
    import torch

    net_cpu = net.to("cpu").eval()
    torch.save({k: v.detach().clone().float() for k, v in net_cpu.state_dict().items()}, out)
    h = hashlib.sha256(out.read_bytes()).hexdigest()
    figures = write_training_figures(out, history, validation, title=title)
    metadata = make_metadata(net_cpu, h)
    meta_path = out.with_name(out.stem + ".metadata.json")
    meta_path.write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    card = write_card(out, metadata, figures)
    scalars = {k: v for k, v in validation.items() if isinstance(v, (int, float))}
    return TrainingResult(out, meta_path, card, tuple(figures), len(history["loss"]), elapsed_s, history, scalars)


def start_run(cfg: Any, out_path: str | Path, checkpoint_dir: str | Path | None) -> tuple[Path, Path, Any]:
    """The weights path, the checkpoint path (``<stem>.ckpt.pt`` in ``checkpoint_dir``, default beside the weights) and the torch device of a run; sets torch's CPU threads."""
    import torch

    from .zscore_bundle import resolve_device

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_path = (Path(checkpoint_dir) if checkpoint_dir is not None else out.parent) / (out.stem + ".ckpt.pt")
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    return out, ckpt_path, resolve_device(cfg.device)


def split_by_case(items: Sequence[Any], case_of: Callable[[Any], str], n_validation: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Training and validation items: ``n_validation`` cases (in order of appearance, permuted by ``seed``) go to validation with all their items."""
    ids = list(dict.fromkeys(case_of(x) for x in items))
    order = np.random.default_rng(seed).permutation(len(ids))
    val_ids = {ids[i] for i in order[: min(n_validation, max(0, len(ids) - 1))]}
    return [x for x in items if case_of(x) not in val_ids], [x for x in items if case_of(x) in val_ids]


def loss_mask(patch_vox: int, border_vox: int, device: Any) -> Any:
    """Boolean tensor (1, 1, p, p, p): the voxels of a patch that count in the loss (a border of ``border_vox`` left out)."""
    import torch

    inner = np.zeros((1, 1) + (patch_vox,) * 3, dtype=bool)
    b = border_vox
    inner[..., b : patch_vox - b, b : patch_vox - b, b : patch_vox - b] = True
    return torch.from_numpy(inner).to(device)


def validate_on(net: Any, items: Sequence[Any], predict: Callable[[Any], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """:func:`validation_figures` over held-out items; ``predict(item)`` gives (target HU, mu, sigma, ROI) on the working grid. Leaves ``net`` in training mode."""
    zs, sig, res = [], [], []
    for item in items:
        target, mu, sigma, roi = predict(item)
        r = roi & np.isfinite(sigma)
        resid = target[r] - mu[r]
        zs.append(resid / sigma[r])
        sig.append(sigma[r])
        res.append(resid)
    net.train()
    if not zs:
        return {}
    return validation_figures(np.concatenate(zs), np.concatenate(sig), np.concatenate(res))
