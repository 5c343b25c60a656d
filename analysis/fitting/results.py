"""Results of the ROC curve fits: one :class:`RocFit` per treatment and reader, a :class:`RocFitSet` per study."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.fitting._core import ChiSquare, OrdinalModel, RatingBins
from analysis.results import _json_number as _num  # NaN -> null, inf -> "Infinity"

__all__ = ["FIT_SCHEMA_ID", "MODEL_NAMES", "STATUSES", "RocFit", "RocFitSet"]

FIT_SCHEMA_ID = "tsct.analysis.rocfit/1"

STATUSES = {
    "ok": "fitted; the estimates are interior maximum-likelihood estimates",
    "boundary": "fitted, but a parameter lies on its bound: the AUC is reported; standard errors, where given, are conditional on the bounded parameter",
    "not_unique": "fitted, but the likelihood is flat along some direction (singular information): the estimates are one of many equally likely values and have no standard errors",
    "degenerate": "the maximum-likelihood estimate does not exist for these data (operating points on the edges of the ROC square)",
    "not_estimable": "too little information in the ratings for this model (too few rating bins or no cases of one truth state)",
    "failed": "the optimiser did not reach a maximum",
}

MODEL_NAMES = {
    "binormal": "binormal (Dorfman-Alf maximum likelihood)",
    "cbm": "contaminated binormal model (Dorfman-Berbaum)",
    "rsm": "radiological search model (Chakraborty)",
}


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    return f"{x:.{digits}f}"


@dataclass(frozen=True, eq=False)
class RocFit:
    """The fit of one ROC model to the ratings of one treatment and reader.

    The fields mirror RJafroc's ``FitBinormalRoc`` / ``FitCbmRoc`` / ``FitRsmRoc`` lists:
    ``parameters`` (``a, b`` | ``mu, alpha`` | ``mu, lambda, nu``), ``zetas``, ``auc`` (AUC),
    ``se_auc`` (StdAUC), ``nll_initial`` / ``nll_final`` (NLLIni / NLLFin), ``chisq``
    (ChisqrFitStats) and ``cov`` (covMat, over ``cov_names``).

    Attributes
    ----------
    model : {"binormal", "cbm", "rsm"}
    treatment, reader : str or None
    status : str
        One of :data:`STATUSES`; anything but ``"ok"`` comes with ``reason``.
    reason : str
        Why the fit is not ``"ok"`` (empty otherwise).
    notes : tuple of str
        Further remarks (standard errors not available, pooled chi-square, binning used).
    parameters : mapping of str to float
        Model parameters (NaN when not estimable).  The RSM also gives ``lambda_i`` and
        ``nu_i`` (intrinsic parameters).
    parameter_se : mapping of str to float
        Wald standard errors of the model parameters (NaN when not available).
    zetas : tuple of float
        Fitted thresholds, lowest first, on the non-diseased (unit-normal) latent scale.
    auc, se_auc : float
        Fitted area under the ROC curve and its delta-method standard error.
    empirical_auc : float
        Trapezoidal (Wilcoxon) area of the binned operating points, for comparison.
    nll_initial, nll_final : float
        Negative log-likelihood at the starting values and at the optimum.
    chisq : ChiSquare
        Goodness of fit over pooled bins.
    cov : ndarray
        Inverse observed information over ``cov_names`` (model parameters, then thresholds).
    bins : RatingBins
        The rating bins fitted (counts per bin, how they were formed).
    lesion_distribution : mapping of int to float or None
        RSM only: fraction of diseased cases with each number of lesions.
    converged : bool
    n_iterations : int
    """

    model: str
    treatment: str | None
    reader: str | None
    status: str
    reason: str
    parameters: Mapping[str, float]
    parameter_se: Mapping[str, float]
    zetas: tuple[float, ...]
    auc: float
    se_auc: float
    empirical_auc: float
    nll_initial: float
    nll_final: float
    chisq: ChiSquare
    cov: np.ndarray
    cov_names: tuple[str, ...]
    bins: RatingBins
    notes: tuple[str, ...] = ()
    lesion_distribution: Mapping[int, float] | None = None
    converged: bool = False
    n_iterations: int = 0
    _model: OrdinalModel | None = field(default=None, repr=False)
    _theta: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the fit has estimates and a curve (status ``"ok"``, ``"boundary"`` or ``"not_unique"``)."""
        return self.status in ("ok", "boundary", "not_unique")

    def ci95(self) -> tuple[float, float]:
        """Wald 95% confidence interval of the AUC, clipped to [0, 1] (NaN without an SE)."""
        if not math.isfinite(self.se_auc) or not math.isfinite(self.auc):
            return (math.nan, math.nan)
        half = 1.959963984540054 * self.se_auc
        return (max(0.0, self.auc - half), min(1.0, self.auc + half))

    def curve(self, n: int = 201) -> tuple[np.ndarray, np.ndarray]:
        """The fitted ROC curve ``(FPF, TPF)`` from (0, 0) to (1, 1); empty when there is no fit."""
        if self._model is None or self._theta is None or not self.ok:
            return np.array([]), np.array([])
        return self._model.curve(self._theta, n)

    def operating_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The empirical operating points ``(FPF, TPF)`` of the fitted bins."""
        return self.bins.operating_points()

    def to_dict(self) -> dict[str, Any]:
        fpf, tpf = self.operating_points()
        lo, hi = self.ci95()
        out: dict[str, Any] = {
            "model": self.model,
            "treatment": self.treatment,
            "reader": self.reader,
            "status": self.status,
            "reason": self.reason,
            "notes": list(self.notes),
            "parameters": {k: _num(v) for k, v in self.parameters.items()},
            "parameter_se": {k: _num(v) for k, v in self.parameter_se.items()},
            "zetas": [_num(z) for z in self.zetas],
            "auc": _num(self.auc),
            "se_auc": _num(self.se_auc),
            "auc_ci95": [_num(lo), _num(hi)],
            "empirical_auc": _num(self.empirical_auc),
            "nll_initial": _num(self.nll_initial),
            "nll_final": _num(self.nll_final),
            "chisq": self.chisq.to_dict(),
            "cov": {"names": list(self.cov_names), "matrix": [[_num(v) for v in row] for row in np.asarray(self.cov)]},
            "bins": self.bins.to_dict(),
            "operating_points": {"fpf": [float(v) for v in fpf], "tpf": [float(v) for v in tpf]},
            "converged": bool(self.converged),
            "n_iterations": int(self.n_iterations),
        }
        if self.lesion_distribution is not None:
            out["lesion_distribution"] = {str(k): float(v) for k, v in self.lesion_distribution.items()}
        return out

    def summary_line(self) -> str:
        """One line: treatment, reader, parameters, AUC (SE), chi-square, status."""
        params = ", ".join(f"{k} = {_fmt(v, 3)}" for k, v in self.parameters.items() if k not in ("lambda_i", "nu_i"))
        chi = self.chisq
        gof = f"chi2({chi.df}) = {chi.statistic:.2f}, p = {chi.p_value:.3f}" if chi.df else "chi2 n/a"
        where = f"treatment {self.treatment}, reader {self.reader}"
        if not self.ok:
            return f"{where}: {self.status} - {self.reason}"
        return f"{where}: {params}; AUC = {_fmt(self.auc)} (SE {_fmt(self.se_auc)}); {gof}; {self.status}"


@dataclass(frozen=True, eq=False)
class RocFitSet:
    """Fits of one model to every treatment and reader of a study.

    Offers ``summary()`` (printable; HTML in notebooks), ``to_frame()`` (one row per treatment and reader),
    ``to_dict()`` / ``to_json()`` (schema ``tsct.analysis.rocfit/1``, docs/analysis-fitting.md)
    and ``curves_frame()`` (fitted and empirical curve points for plots).
    """

    model: str
    fits: tuple[RocFit, ...]
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    source_paradigm: str = "ROC"
    binning: str = "auto"
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[RocFit]:
        return iter(self.fits)

    def __len__(self) -> int:
        return len(self.fits)

    def get(self, treatment: str, reader: str) -> RocFit:
        """The fit of one treatment and reader (IDs as in the input)."""
        for f in self.fits:
            if f.treatment == str(treatment) and f.reader == str(reader):
                return f
        raise KeyError(f"no fit for treatment {treatment!r} and reader {reader!r}; treatments {list(self.treatments)}, readers {list(self.readers)}.")

    def to_frame(self) -> pd.DataFrame:
        """One row per treatment and reader: status, parameters, AUC, SE, CI, chi-square, NLL."""
        rows = []
        for f in self.fits:
            lo, hi = f.ci95()
            row = {"model": f.model, "treatment": f.treatment, "reader": f.reader, "status": f.status}
            row.update({k: float(v) for k, v in f.parameters.items()})
            row.update({f"se_{k}": float(v) for k, v in f.parameter_se.items()})
            row.update(
                {
                    "auc": f.auc,
                    "se_auc": f.se_auc,
                    "auc_ci_lower": lo,
                    "auc_ci_upper": hi,
                    "empirical_auc": f.empirical_auc,
                    "n_bins": f.bins.n_bins,
                    "chisq": f.chisq.statistic,
                    "chisq_df": f.chisq.df if f.chisq.df is not None else math.nan,
                    "chisq_p": f.chisq.p_value,
                    "nll_initial": f.nll_initial,
                    "nll_final": f.nll_final,
                    "reason": f.reason,
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def curves_frame(self, n: int = 201) -> pd.DataFrame:
        """Fitted curve points (``kind = "fitted"``) and empirical operating points (``"empirical"``)."""
        parts = []
        for f in self.fits:
            x, y = f.curve(n)
            if x.size:
                parts.append(pd.DataFrame({"model": f.model, "treatment": f.treatment, "reader": f.reader, "kind": "fitted", "fpf": x, "tpf": y}))
            ex, ey = f.operating_points()
            parts.append(pd.DataFrame({"model": f.model, "treatment": f.treatment, "reader": f.reader, "kind": "empirical", "fpf": ex, "tpf": ey}))
        if not parts:
            return pd.DataFrame(columns=["model", "treatment", "reader", "kind", "fpf", "tpf"])
        return pd.concat(parts, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": FIT_SCHEMA_ID,
            "backend": "python",
            "model": self.model,
            "model_description": MODEL_NAMES.get(self.model, self.model),
            "source_paradigm": self.source_paradigm,
            "binning": self.binning,
            "treatments": list(self.treatments),
            "readers": list(self.readers),
            "statuses": dict(STATUSES),
            "fits": [f.to_dict() for f in self.fits],
            **dict(self.provenance),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """Strict JSON (no NaN literals: NaN -> null); written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            from tsct_files import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

    def summary(self):
        """Printable summary (``print()`` it; ``as_text()``, ``as_html()``, notebook display).

        Returns an :class:`analysis.results.ResultSummary`: one table row per treatment and
        reader, then the status reasons and notes.
        """
        from analysis.results import ResultSummary

        title = f"ROC curve fits: {MODEL_NAMES.get(self.model, self.model)}"
        frame = self.to_frame()
        params = [c for c in frame.columns if c in ("a", "b", "mu", "alpha", "lambda", "nu")]
        cols = ["treatment", "reader"] + params + ["auc", "se_auc", "empirical_auc", "chisq", "chisq_df", "chisq_p", "status"]
        shown = frame[cols].copy()
        for c in params + ["auc", "se_auc", "empirical_auc", "chisq", "chisq_p"]:
            shown[c] = shown[c].map(lambda v: _fmt(v, 4))
        shown["chisq_df"] = shown["chisq_df"].map(lambda v: "-" if (v is None or (isinstance(v, float) and math.isnan(v))) else str(int(v)))
        sections: list[tuple[str, Any]] = []
        if self.source_paradigm != "ROC":
            sections.append(("Data", f"{self.source_paradigm} data: fitted to the highest-rating inferred ROC ratings."))
        sections.append(("Fits (one row per treatment and reader)", shown))
        lines = []
        for f in self.fits:
            if f.reason:
                lines.append(f"treatment {f.treatment}, reader {f.reader}: {f.status}: {f.reason}")
            for note in f.notes:
                lines.append(f"treatment {f.treatment}, reader {f.reader}: note: {note}")
        if lines:
            sections.append(("Statuses and notes", "\n".join(lines)))
        return ResultSummary(title, tuple(sections))

    def __str__(self) -> str:
        return self.summary().as_text()


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV through a temporary file and a rename (never a half-written file)."""
    from tsct_files import atomic_file

    path = Path(path)
    with atomic_file(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    return path
