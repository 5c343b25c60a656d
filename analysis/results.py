"""Results objects of the multi-reader multi-case (MRMC) significance tests and power analyses.

Every analysis returns a frozen dataclass that carries all the numbers RJafroc's ``St()``
reports (figures of merit, ANOVA tables, variance components, F / chi-square tests, treatment
differences, confidence intervals) together with the identifiers of the input (treatment and
reader IDs exactly as in the input file) and its provenance.  Each result offers

* ``summary()`` -> an object with ``as_text()``, ``as_html()`` and ``_repr_html_`` (notebooks),
* ``to_frame()`` -> a tidy :class:`pandas.DataFrame` (one row per estimate),
* ``to_dict()`` -> the stable JSON document described in ``docs/analysis-json.md``.

Numbers that do not exist (a chi-square test has no denominator df) are ``None``; numbers that
exist but are undefined for the data at hand (for example a standard error from a negative
variance estimate) are ``nan`` and come with an entry in ``warnings``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from analysis._shape import TreatmentsReaders
from analysis._text import format_number

if TYPE_CHECKING:  # pandas is imported by the methods that build frames: `tsct analyze st` never loads it
    import pandas as pd

__all__ = [
    "JSON_SCHEMA_ID",
    "Table",
    "Comparison",
    "TreatmentEstimate",
    "AnalysisResult",
    "Provenance",
    "SignificanceResult",
    "ResultSummary",
    "PowerResult",
    "SampleSizeResult",
    "PowerTable",
    "package_version",
]

JSON_SCHEMA_ID = "tsct.analysis.significance/1"

ANALYSIS_DESCRIPTIONS = {
    "RRRC": "random readers, random cases: generalises to the populations of readers and cases",
    "FRRC": "fixed readers, random cases: generalises to cases, for these readers only",
    "RRFC": "random readers, fixed cases: generalises to readers, for these cases only",
}


def package_version() -> str:
    """Version of the installed ``tsct`` distribution (``"0+unknown"`` when not installed)."""
    try:
        from importlib.metadata import version

        return version("tsct")
    except Exception:  # PackageNotFoundError or a broken metadata directory
        return "0+unknown"


def _json_number(x: Any) -> Any:
    """Map a float to JSON: NaN -> null, +/-inf -> "Infinity"/"-Infinity"."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _fmt(x: float | None, digits: int = 4) -> str:
    return format_number(x, digits, sci_at=1e6)


def _fmt_p(p: float | None) -> str:
    if p is None or math.isnan(float(p)):
        return "NaN" if p is not None else "-"
    if p < 1e-4:
        return f"{p:.2e}"
    return f"{p:.4f}"


# --------------------------------------------------------------------------------------------
# Generic table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Table:
    """A small labelled table (ANOVA table, per-treatment mean squares, ...).

    Parameters
    ----------
    index : tuple of str
        Row labels (for example ``("T", "R", "TR")`` or treatment IDs).
    columns : mapping of str to ndarray of shape (n_rows,)
        Column name -> values (float; NaN where a cell is empty, e.g. the F of an error row).
    index_name : str
        Name of the row label column in :meth:`to_frame`.
    """

    index: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    index_name: str = "source"

    def __post_init__(self) -> None:
        cols = {str(k): np.asarray(v, dtype=float).reshape(-1) for k, v in self.columns.items()}
        for name, values in cols.items():
            if values.shape[0] != len(self.index):
                raise ValueError(f"Table column {name!r} has {values.shape[0]} values for {len(self.index)} rows.")
            values.setflags(write=False)
        object.__setattr__(self, "index", tuple(str(i) for i in self.index))
        object.__setattr__(self, "columns", cols)

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def value(self, row: str, column: str) -> float:
        """The cell ``(row, column)`` as a float."""
        return float(self.columns[column][self.index.index(row)])

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame indexed by the row labels."""
        import pandas as pd

        frame = pd.DataFrame({k: np.array(v) for k, v in self.columns.items()}, index=list(self.index))
        frame.index.name = self.index_name
        return frame

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{row: {column: value}}`` with JSON-safe numbers."""
        return {row: {col: _json_number(values[r]) for col, values in self.columns.items()} for r, row in enumerate(self.index)}


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Difference of reader-averaged (or single-reader) figures of merit between two treatments.

    Attributes
    ----------
    treatments : (str, str)
        ``(A, B)``; the estimate is ``FOM(A) - FOM(B)`` (A precedes B in the input order).
    estimate, se : float
        Difference and its standard error.
    df : float or None
        Degrees of freedom of the t reference distribution; ``None`` when a normal (z)
        reference is used (OR fixed-reader analysis).
    statistic : float
        ``estimate / se`` (t or z).
    p_value : float
        Two-sided p value for H0: difference = 0.
    ci_lower, ci_upper : float
        ``1 - alpha`` confidence limits, ``estimate -/+ q_{1-alpha/2} * se``.
    alpha : float
        Level used for ``ci_lower``/``ci_upper``.
    reader : str or None
        Reader ID for single-reader comparisons (FRRC), otherwise ``None``.
    """

    treatments: tuple[str, str]
    estimate: float
    se: float
    df: float | None
    statistic: float
    p_value: float
    ci_lower: float
    ci_upper: float
    alpha: float = 0.05
    reader: str | None = None

    @property
    def statistic_name(self) -> str:
        """``"t"`` or ``"z"``."""
        return "z" if self.df is None else "t"

    @property
    def label(self) -> str:
        """RJafroc-style row label, e.g. ``"trtA-trtB"`` or ``"rdr1::trtA-trtB"``."""
        base = f"trt{self.treatments[0]}-trt{self.treatments[1]}"
        return base if self.reader is None else f"rdr{self.reader}::{base}"

    def conf_int(self, alpha: float | None = None) -> tuple[float, float]:
        """Two-sided ``1 - alpha`` confidence interval (default: the level of the analysis)."""
        alpha = self.alpha if alpha is None else float(alpha)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be a float in (0, 1). Got {alpha!r} instead.")
        from analysis.stats._distributions import t_quantile

        q = t_quantile(1.0 - alpha / 2.0, self.df)
        return (self.estimate - q * self.se, self.estimate + q * self.se)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.reader is not None:
            out["reader"] = self.reader
        out.update(
            {
                "treatments": list(self.treatments),
                "estimate": _json_number(self.estimate),
                "se": _json_number(self.se),
                "df": _json_number(self.df),
                "statistic_name": self.statistic_name,
                "statistic": _json_number(self.statistic),
                "p": _json_number(self.p_value),
                "ci95": [_json_number(v) for v in self.conf_int(0.05)],
            }
        )
        if not math.isclose(self.alpha, 0.05):
            out["ci"] = [_json_number(self.ci_lower), _json_number(self.ci_upper)]
        return out


@dataclass(frozen=True)
class TreatmentEstimate:
    """Reader-averaged figure of merit of one treatment with its confidence interval.

    Attributes
    ----------
    treatment : str
    estimate, se : float
    df : float or None
        Degrees of freedom reported for the interval.  ``None`` if not applicable.
    ci_lower, ci_upper : float
    alpha : float
    normal_reference : bool
        True when the interval uses the normal quantile although a df is reported (the OR
        fixed-reader single-treatment interval reports ``K - 1`` but uses z, as RJafroc and
        OR-DBM MRMC do).
    cov2 : float or None
        OR random-reader analysis only: the treatment's ``Cov2`` used in the error term.
    """

    treatment: str
    estimate: float
    se: float
    df: float | None
    ci_lower: float
    ci_upper: float
    alpha: float = 0.05
    normal_reference: bool = False
    cov2: float | None = None

    def conf_int(self, alpha: float | None = None) -> tuple[float, float]:
        """Two-sided ``1 - alpha`` confidence interval (default: the level of the analysis)."""
        alpha = self.alpha if alpha is None else float(alpha)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be a float in (0, 1). Got {alpha!r} instead.")
        from analysis.stats._distributions import t_quantile

        q = t_quantile(1.0 - alpha / 2.0, None if self.normal_reference else self.df)
        return (self.estimate - q * self.se, self.estimate + q * self.se)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "estimate": _json_number(self.estimate),
            "se": _json_number(self.se),
            "df": _json_number(self.df),
            "ci95": [_json_number(v) for v in self.conf_int(0.05)],
        }
        if self.normal_reference:
            out["ci_reference"] = "normal"
        if self.cov2 is not None:
            out["cov2"] = _json_number(self.cov2)
        if not math.isclose(self.alpha, 0.05):
            out["ci"] = [_json_number(self.ci_lower), _json_number(self.ci_upper)]
        return out


@dataclass(frozen=True)
class AnalysisResult:
    """One generalisation (RRRC, FRRC or RRFC) of a DBM or OR analysis.

    Attributes
    ----------
    analysis : {"RRRC", "FRRC", "RRFC"}
    method : {"DBM", "OR"}
    statistic_name : {"F", "chi2"}
        The OR fixed-reader test is a chi-square test; all others are F tests.
    statistic : float
        F or chi-square value of the global test of equal treatment FOMs.
    df : float
        Numerator degrees of freedom, ``I - 1``.
    ddf : float or None
        Denominator degrees of freedom (Hillis ``ddf_H`` for RRRC); ``None`` for chi-square.
    p_value : float
    ms_treatment, ms_error : float
        Numerator mean square and the error term (``MSden``) of the test.
    error_term : str
        The formula of the error term, in words.
    differences : tuple of Comparison
        All pairwise treatment differences ``i - i'`` for ``i < i'``.
    treatment_cis : tuple of TreatmentEstimate
        Per-treatment reader-averaged FOM with its confidence interval.
    reader_differences : tuple of Comparison
        FRRC only: the pairwise differences within each reader.
    alpha : float
    warnings : tuple of str
        Degenerate-data notes (infinite ddf, negative variance estimates, ...).
    """

    analysis: str
    method: str
    statistic_name: str
    statistic: float
    df: float
    ddf: float | None
    p_value: float
    ms_treatment: float
    ms_error: float
    error_term: str
    differences: tuple[Comparison, ...]
    treatment_cis: tuple[TreatmentEstimate, ...]
    reader_differences: tuple[Comparison, ...] = ()
    alpha: float = 0.05
    warnings: tuple[str, ...] = ()

    def test_text(self, fmt: Any = None) -> str:
        """The equal-FOM test as text, ``"F(df, ddf) = F"`` or ``"chi2(df) = X2"``; ``fmt(x, digits)``
        formats each number (default this module's ``_fmt``)."""
        fmt = fmt or _fmt
        if self.statistic_name == "chi2":
            return f"chi2({fmt(self.df, 0)}) = {fmt(self.statistic, 3)}"
        return f"F({fmt(self.df, 0)}, {fmt(self.ddf, 2)}) = {fmt(self.statistic, 3)}"

    def difference(self, a: str, b: str, *, reader: str | None = None) -> Comparison:
        """The comparison of treatments ``a`` and ``b`` (sign follows the stored order)."""
        pool = self.differences if reader is None else self.reader_differences
        for c in pool:
            if c.reader == reader and set(c.treatments) == {a, b}:
                return c
        raise KeyError(f"No comparison of treatments {a!r} and {b!r}" + (f" for reader {reader!r}" if reader else ""))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": ANALYSIS_DESCRIPTIONS.get(self.analysis, ""),
            "statistic_name": self.statistic_name,
            "statistic": _json_number(self.statistic),
            "df": _json_number(self.df),
            "ddf": _json_number(self.ddf),
            "p": _json_number(self.p_value),
            "ms_treatment": _json_number(self.ms_treatment),
            "ms_error": _json_number(self.ms_error),
            "error_term": self.error_term,
            "differences": [c.to_dict() for c in self.differences],
            "treatment_cis": {t.treatment: t.to_dict() for t in self.treatment_cis},
        }
        if self.reader_differences:
            out["reader_differences"] = [c.to_dict() for c in self.reader_differences]
        out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: input file, its SHA-256, code version and time.

    ``detector_outputs`` (optional): the detector outputs the readers saw — folder, one hash over
    the cases' ``outputs.json`` manifests, the model(s) that made them
    (``detector.outputs.outputs_record``); written into ``results.json`` when given.
    """

    input_file: str | None = None
    input_sha256: str | None = None
    package_version: str = field(default_factory=package_version)
    created_utc: str = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    detector_outputs: dict[str, Any] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> "Provenance":
        """Provenance of an input file (its name and the SHA-256 of its bytes)."""
        import hashlib

        path = Path(path)
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return cls(input_file=path.name, input_sha256=digest.hexdigest())

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_file": self.input_file,
            "input_sha256": self.input_sha256,
            "package_version": self.package_version,
            "created_utc": self.created_utc,
            **({"detector_outputs": self.detector_outputs} if self.detector_outputs is not None else {}),
        }


# --------------------------------------------------------------------------------------------
# Summary rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultSummary:
    """Printable summary of a result: ``as_text()``, ``as_html()`` and notebook display."""

    title: str
    sections: tuple[tuple[str, pd.DataFrame | str], ...]

    def as_text(self) -> str:
        import pandas as pd

        lines = [self.title, "=" * len(self.title)]
        for heading, body in self.sections:
            lines += ["", heading, "-" * len(heading)]
            if isinstance(body, pd.DataFrame):
                lines.append(body.to_string(index=not isinstance(body.index, pd.RangeIndex)))
            else:
                lines.append(str(body))
        return "\n".join(lines)

    def as_html(self) -> str:
        import html  # here, not at the top: `tsct analyze st` never needs it

        import pandas as pd

        parts = [f"<h3>{html.escape(self.title)}</h3>"]
        for heading, body in self.sections:
            parts.append(f"<h4>{html.escape(heading)}</h4>")
            if isinstance(body, pd.DataFrame):
                parts.append(body.to_html(border=0, index=not isinstance(body.index, pd.RangeIndex)))
            else:
                parts.append(f"<p>{html.escape(str(body))}</p>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.as_html()

    def __str__(self) -> str:
        return self.as_text()


def _comparisons_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for c in comparisons:
        lo, hi = c.ci_lower, c.ci_upper
        rows.append(
            {
                **({"reader": c.reader} if c.reader is not None else {}),
                "comparison": f"{c.treatments[0]} - {c.treatments[1]}",
                "estimate": _fmt(c.estimate),
                "SE": _fmt(c.se),
                "df": _fmt(c.df, 2) if c.df is not None else "z",
                c.statistic_name: _fmt(c.statistic, 3),
                "p": _fmt_p(c.p_value),
                f"{100 * (1 - c.alpha):g}% CI": f"({_fmt(lo)}, {_fmt(hi)})",
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Significance result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SignificanceResult(TreatmentsReaders):
    """Result of a DBM or Obuchowski-Rockette (OR) MRMC significance test.

    Attributes
    ----------
    fom : str
        Figure of merit name (RJafroc spelling, e.g. ``"wAFROC"``).
    method : {"DBM", "OR"}
    covariance : {"jackknife", "delong", "bootstrap"}
        How the case-sampling (co)variances were estimated (DBM always uses jackknife
        pseudovalues).
    treatments, readers : tuple of str
        IDs exactly as in the input, in input order.
    n_cases : int
        Number of cases the case-resampling used (K1 for MaxNLF/HrSp, K2 for MaxLLF/HrSe,
        K1 + K2 otherwise).
    foms : ndarray of shape (n_treatments, n_readers)
        Figure of merit of each treatment-reader combination.
    anova : Table
        DBM: treatment x reader x case ANOVA of pseudovalues (rows T, R, C, TR, TC, RC, TRC,
        Total); OR: treatment x reader ANOVA of the FOMs (rows T, R, TR).
    variance_components : Table
        DBM: VarR, VarC, VarTR, VarTC, VarRC, VarErr (column ``estimate``); OR: VarR, VarTR,
        Cov1, Cov2, Cov3, Var (columns ``estimate`` and ``rho``).  Not truncated at zero.
    treatment_anova, reader_anova : Table
        Per-treatment and per-reader mean squares (DBM: msR/msC/msRC and msT/msC/msTC, with
        a ``DF`` row; OR: msR/var/cov2 per treatment and msT/var/cov1 per reader).
    analyses : mapping of str to AnalysisResult
        The analyses computed, in the order RRRC, FRRC, RRFC.
    alpha : float
    n_bootstraps, random_state : int or None
        Bootstrap covariance only.
    provenance : Provenance or None
    warnings : tuple of str
    """

    fom: str
    method: str
    covariance: str
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    foms: np.ndarray
    anova: Table
    variance_components: Table
    treatment_anova: Table
    reader_anova: Table
    analyses: Mapping[str, AnalysisResult]
    alpha: float = 0.05
    n_bootstraps: int | None = None
    random_state: int | None = None
    provenance: Provenance | None = None
    warnings: tuple[str, ...] = ()
    backend: str = "python"  # the engine that computed the numbers: "python" or "rjafroc"

    def __post_init__(self) -> None:
        foms = np.array(self.foms, dtype=float)
        foms.setflags(write=False)
        object.__setattr__(self, "foms", foms)
        object.__setattr__(self, "analyses", MappingProxyType(dict(self.analyses)))

    # -- convenience (n_treatments, n_readers: TreatmentsReaders) ----------------------------
    @property
    def treatment_means(self) -> np.ndarray:
        """Reader-averaged FOM per treatment, shape (n_treatments,)."""
        return self.foms.mean(axis=1)

    def __getitem__(self, analysis: str) -> AnalysisResult:
        return self.analyses[analysis.upper()]

    def with_provenance(self, provenance: Provenance) -> "SignificanceResult":
        """A copy carrying ``provenance`` (for example :meth:`Provenance.from_file`)."""
        from dataclasses import replace

        return replace(self, provenance=provenance)

    def fom_frame(self) -> pd.DataFrame:
        """FOMs as a treatment x reader DataFrame with a reader-average column."""
        import pandas as pd

        frame = pd.DataFrame(self.foms, index=list(self.treatments), columns=list(self.readers))
        frame.index.name = "treatment"
        frame.columns.name = "reader"
        frame["reader average"] = self.treatment_means
        return frame

    # -- outputs ----------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per estimate (treatment differences, single-treatment FOMs,
        single-reader differences) and analysis.

        Columns: ``analysis, kind, treatment_a, treatment_b, reader, estimate, se, df,
        statistic, p_value, ci_lower, ci_upper``; ``kind`` is ``"difference"``,
        ``"treatment"`` or ``"reader_difference"``.
        """
        import pandas as pd

        rows: list[dict[str, Any]] = []
        for name, res in self.analyses.items():
            for c in res.differences + res.reader_differences:
                rows.append(
                    {
                        "analysis": name,
                        "kind": "difference" if c.reader is None else "reader_difference",
                        "treatment_a": c.treatments[0],
                        "treatment_b": c.treatments[1],
                        "reader": c.reader,
                        "estimate": c.estimate,
                        "se": c.se,
                        "df": np.inf if c.df is None else c.df,
                        "statistic": c.statistic,
                        "p_value": c.p_value,
                        "ci_lower": c.ci_lower,
                        "ci_upper": c.ci_upper,
                    }
                )
            for t in res.treatment_cis:
                rows.append(
                    {
                        "analysis": name,
                        "kind": "treatment",
                        "treatment_a": t.treatment,
                        "treatment_b": None,
                        "reader": None,
                        "estimate": t.estimate,
                        "se": t.se,
                        "df": np.inf if (t.df is None or t.normal_reference) else t.df,
                        "statistic": np.nan,
                        "p_value": np.nan,
                        "ci_lower": t.ci_lower,
                        "ci_upper": t.ci_upper,
                    }
                )
        columns = [
            "analysis",
            "kind",
            "treatment_a",
            "treatment_b",
            "reader",
            "estimate",
            "se",
            "df",
            "statistic",
            "p_value",
            "ci_lower",
            "ci_upper",
        ]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON document (schema ``tsct.analysis.significance/1``)."""
        prov = self.provenance or Provenance()
        return {
            "schema": JSON_SCHEMA_ID,
            "package_version": prov.package_version,
            "input_file": prov.input_file,
            "input_sha256": prov.input_sha256,
            "created_utc": prov.created_utc,
            "backend": self.backend,
            **({"detector_outputs": prov.detector_outputs} if prov.detector_outputs is not None else {}),
            "fom": self.fom,
            "method": self.method,
            "covariance": self.covariance,
            "alpha": self.alpha,
            "n_bootstraps": self.n_bootstraps,
            "random_state": self.random_state,
            "treatments": list(self.treatments),
            "readers": list(self.readers),
            "n_cases": int(self.n_cases),
            "foms": {t: {r: _json_number(self.foms[i, j]) for j, r in enumerate(self.readers)} for i, t in enumerate(self.treatments)},
            "treatment_means": {t: _json_number(m) for t, m in zip(self.treatments, self.treatment_means)},
            "analyses": {name: res.to_dict() for name, res in self.analyses.items()},
            "variance_components": {row: _json_number(self.variance_components.value(row, "estimate")) for row in self.variance_components.index},
            "anova": self.anova.to_dict(),
            "treatment_anova": self.treatment_anova.to_dict(),
            "reader_anova": self.reader_anova.to_dict(),
            "warnings": list(self.warnings),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """Serialise :meth:`to_dict` (strict JSON: no NaN/Infinity literals); write it to
        ``path`` if given and return the text."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def summary(self) -> ResultSummary:
        """Human-readable summary (RRRC first), for the console, reports and notebooks."""
        import pandas as pd

        level = f"{100 * (1 - self.alpha):g}%"
        sections: list[tuple[str, pd.DataFrame | str]] = []
        foms = self.fom_frame().map(lambda v: _fmt(v))
        sections.append(("Figures of merit (treatment x reader)", foms))
        for name in ("RRRC", "FRRC", "RRFC"):
            if name not in self.analyses:
                continue
            res = self.analyses[name]
            test = f"{res.test_text()}, p = {_fmt_p(res.p_value)}"
            sections.append(
                (
                    f"{name} ({ANALYSIS_DESCRIPTIONS[name]})",
                    f"Test of equal treatment FOMs: {test}. Error term: {res.error_term}.",
                )
            )
            sections.append((f"{name}: treatment differences ({level} CI)", _comparisons_frame(res.differences)))
            trt = pd.DataFrame(
                [
                    {
                        "treatment": t.treatment,
                        "FOM": _fmt(t.estimate),
                        "SE": _fmt(t.se),
                        "df": _fmt(t.df, 2) if t.df is not None else "-",
                        f"{level} CI": f"({_fmt(t.ci_lower)}, {_fmt(t.ci_upper)})",
                    }
                    for t in res.treatment_cis
                ]
            )
            sections.append((f"{name}: reader-averaged FOM per treatment", trt))
            if res.reader_differences:
                sections.append((f"{name}: single-reader differences", _comparisons_frame(res.reader_differences)))
            if res.warnings:
                sections.append((f"{name}: warnings", "\n".join(res.warnings)))
        vc = self.variance_components.to_frame().map(lambda v: _fmt(v, 6))
        sections.append(("Variance components", vc))
        if self.warnings:
            sections.append(("Warnings", "\n".join(self.warnings)))
        title = (
            f"{self.method} significance test of {self.fom} "
            f"({self.n_treatments} treatments, {self.n_readers} readers, {self.n_cases} cases; "
            f"covariance: {self.covariance})"
        )
        return ResultSummary(title=title, sections=tuple(sections))

    def __repr__(self) -> str:
        analyses = ", ".join(f"{k}: {v.statistic_name}={_fmt(v.statistic, 3)} p={_fmt_p(v.p_value)}" for k, v in self.analyses.items())
        return (
            f"SignificanceResult(fom={self.fom!r}, method={self.method!r}, "
            f"covariance={self.covariance!r}, I={self.n_treatments}, J={self.n_readers}, "
            f"K={self.n_cases}; {analyses})"
        )

    def _repr_html_(self) -> str:
        return self.summary().as_html()


# --------------------------------------------------------------------------------------------
# Power and sample size
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerResult:
    """Predicted power of a planned two-treatment study (Hillis et al. 2011 / Hillis & Berbaum 2004).

    Attributes
    ----------
    analysis : {"RRRC", "FRRC", "RRFC"}
    method : {"OR", "DBM"}
        Which variance components drove the prediction.
    n_readers, n_cases : int
        Planned numbers of readers ``J`` and cases ``K``.
    effect_size : float
        Difference of the reader-averaged FOMs to detect.
    alpha : float
    power : float
    ncp : float
        Non-centrality parameter of the F (or chi-square) distribution.
    df, ddf : float
        Numerator (1) and denominator degrees of freedom (``inf`` for the chi-square test).
    f_critical : float
        Critical value of the test at level ``alpha``.
    """

    analysis: str
    method: str
    n_readers: int
    n_cases: int
    effect_size: float
    alpha: float
    power: float
    ncp: float
    df: float
    ddf: float
    f_critical: float

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_number(v) if not isinstance(v, str) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SampleSizeResult:
    """Smallest number of cases reaching a target power for a given number of readers.

    ``n_cases`` is ``None`` when the target is not reachable with at most ``max_cases`` cases
    (for example in RRFC analyses, whose power does not depend on the number of cases, or when
    the treatment-by-reader variance dominates).
    """

    analysis: str
    method: str
    n_readers: int
    n_cases: int | None
    target_power: float
    power: float
    effect_size: float
    alpha: float
    max_cases: int

    @property
    def rjafroc_n_cases(self) -> int | None:
        """What RJafroc reports: ``max_cases + 1`` (2001) when the target is not reached."""
        return self.n_cases if self.n_cases is not None else int(self.max_cases) + 1

    def to_dict(self) -> dict[str, Any]:
        out = {k: _json_number(v) if not isinstance(v, str) else v for k, v in self.__dict__.items()}
        out["reached"] = self.n_cases is not None
        out["rjafroc_n_cases"] = self.rjafroc_n_cases
        return out


@dataclass(frozen=True, eq=False)
class PowerTable:
    """Numbers of cases needed for a target power, for a range of reader numbers."""

    rows: tuple[SampleSizeResult, ...]
    provenance: Provenance | None = None

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "analysis": r.analysis,
                    "n_readers": r.n_readers,
                    "n_cases": r.n_cases,
                    "power": r.power,
                    "target_power": r.target_power,
                    "effect_size": r.effect_size,
                    "alpha": r.alpha,
                }
                for r in self.rows
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": [r.to_dict() for r in self.rows]}
        if self.provenance is not None:
            out.update(self.provenance.to_dict())
        return out

    def summary(self) -> ResultSummary:
        frame = self.to_frame()
        frame["n_cases"] = [
            (str(int(k)) if k is not None and not (isinstance(k, float) and math.isnan(k)) else f"> {r.max_cases} (RJafroc: {r.max_cases + 1})")
            for k, r in zip(frame["n_cases"], self.rows)
        ]
        frame["power"] = frame["power"].map(lambda v: _fmt(v, 4))
        title = "Sample size: cases needed per number of readers"
        return ResultSummary(title=title, sections=(("Power table", frame),))


def iter_analyses(requested: str | Iterable[str]) -> tuple[str, ...]:
    """Normalise an ``analyses`` argument ("ALL", "RRRC", ["FRRC", "RRFC"], ...)."""
    if isinstance(requested, str):
        requested = [requested]
    out: list[str] = []
    for a in requested:
        a = str(a).strip().upper()
        if a == "ALL":
            for b in ("RRRC", "FRRC", "RRFC"):
                if b not in out:
                    out.append(b)
        elif a in ("RRRC", "FRRC", "RRFC"):
            if a not in out:
                out.append(a)
        else:
            raise ValueError(f"Unknown analysis {a!r}: use 'RRRC' (random readers and cases), 'FRRC' (fixed readers), 'RRFC' (fixed cases) or 'ALL'.")
    order = {"RRRC": 0, "FRRC": 1, "RRFC": 2}
    return tuple(sorted(out, key=order.__getitem__))
