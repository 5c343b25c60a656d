"""Figures of fitted ROC curves beside the empirical operating points."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from analysis.fitting.results import RocFit, RocFitSet

__all__ = ["plot_fits", "save_figure"]

_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")  # as the report
_LINESTYLES = ("-", "--", "-.", ":")


def _style(i: int) -> dict[str, Any]:
    return {"color": _COLOURS[i % len(_COLOURS)], "linestyle": _LINESTYLES[(i // len(_COLOURS)) % len(_LINESTYLES)]}


def plot_fits(fits: RocFitSet, *, reader_groups: Mapping[str, str] | None = None, replacements: Mapping[tuple[str, str], RocFit] | None = None):
    """One panel per reader: each treatment's fitted curve (line) and empirical points (markers).

    ``replacements`` maps ``(treatment, reader)`` to another fit drawn dashed instead (the report
    uses it to show the CBM where the binormal fit is degenerate).  Returns a matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    readers = list(fits.readers)
    groups = dict(reader_groups or {})
    replacements = dict(replacements or {})
    ncols = max(1, min(4, len(readers)))
    nrows = max(1, math.ceil(len(readers) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows + 0.4), squeeze=False, sharex=True, sharey=True)
    for n, r in enumerate(readers):
        ax = axes[n // ncols][n % ncols]
        for i, t in enumerate(fits.treatments):
            f = fits.get(t, r)
            style = _style(i)
            ex, ey = f.operating_points()
            ax.plot(
                np.concatenate([[0.0], ex[::-1], [1.0]]),
                np.concatenate([[0.0], ey[::-1], [1.0]]),
                lw=0.6,
                alpha=0.6,
                color=style["color"],
                linestyle=":",
            )
            ax.plot(ex, ey, "o", ms=3.2, color=style["color"])
            x, y = f.curve()
            label = f"{t}: " + (f"AUC {f.auc:.3f}" if f.ok else f.status)
            alt = replacements.get((t, r))
            if alt is not None and alt.ok:
                x, y = alt.curve()
                label = f"{t}: {alt.model.upper()} AUC {alt.auc:.3f}"
                style = dict(style, linestyle="--")
            ax.plot(x if x.size else [], y if y.size else [], lw=1.3, label=label, **style)
        ax.plot([0, 1], [0, 1], color="#cccccc", lw=0.7, ls=":", zorder=0)
        group = groups.get(r)
        ax.set_title(f"Reader {r}" + (f" ({group})" if group else ""), fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        ax.legend(loc="lower right", frameon=False, fontsize=6.5, handlelength=1.6)
    for n in range(len(readers), nrows * ncols):
        axes[n // ncols][n % ncols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("FPF")
    for row in axes:
        row[0].set_ylabel("TPF")
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure (format from the extension: .png, .svg, .pdf) through a temporary file."""

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"{path.name}: the plot must be a .png, .svg or .pdf file.")
    from tsct_files import atomic_file

    with atomic_file(path, suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
