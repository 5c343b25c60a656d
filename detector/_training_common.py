"""Pieces both trainers share (temporal z-score network and single-exam in-painting network).

The beta-NLL loss, the hardware record, the loss and calibration figures and the writing of
evaluation figures into a bundle.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["beta_nll", "hardware_info", "value_range", "write_training_figures", "record_bundle_evaluation"]


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
    info: dict[str, Any] = {"device": str(device), "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
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
