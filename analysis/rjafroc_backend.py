"""Run the significance test through R's RJafroc (via rpy2) and compare it with ours.

This optional backend (``pip install '.[rjafroc]'`` plus R >= 4 with
``install.packages("RJafroc")``) lets a statistician obtain the same
:class:`~analysis.SignificanceResult` (and hence the same JSON document,
``docs/analysis-json.md``) from RJafroc 2.1.x instead of the Python engine, and check the two
against each other (``tsct analyze crosscheck FILE``).

How a study reaches RJafroc
---------------------------
1. The study (an :class:`~analysis.ObserverData`, or a file read with
   :func:`analysis.read_observer_data`) is copied with positional IDs that sort the same way as
   strings and as numbers (``T1..TI`` / ``R1..RJ``, zero-padded to equal width: ``R01..R12``), without reader groups and
   lesion attributes, and written with :func:`analysis.write_jafroc_excel`
   (``rjafroc_compatible=True``: integer case IDs, lesion IDs 1..n).  The positional IDs avoid
   RJafroc 2.1.3's string-sorted reader labels (``"1", "10", "2"``) with 10 or more readers.
2. R runs ``ds <- DfReadDataFile(file, newExcelFileFormat = TRUE)`` and, for each requested
   analysis, ``St(ds, FOM = fom, method = method, covEstMethod = "jackknife",
   analysisOption = analysis, alpha = alpha)`` (RJafroc 2.1.x's documented API).
3. Each ``St()`` return value (the lists ``FOMs``, ``ANOVA`` and ``RRRC`` / ``FRRC`` /
   ``RRFC`` of data frames) is turned into plain Python data in the same serialisation as the
   reference outputs in ``tests/data/rjafroc/expected/st/`` (arrays and data frames tagged with
   ``__type__``) by :func:`r_to_plain`.
4. :func:`result_from_st` converts those structures into a :class:`SignificanceResult`, mapping
   RJafroc's labels (``trtT1``, ``rdrR01``) back to the study's own IDs by position and checking
   every label on the way.

Only steps 2-3 touch R; they are a few lines in :func:`_run_st_in_r`.  The conversion (step 4)
is pure Python and is tested on RJafroc's real ``St()`` output stored in the repository, so the
converter is proven without R: its JSON equals the Python engine's to a relative 1e-9.

Known limits of RJafroc 2.1.3 that this backend inherits: only the jackknife covariance works
(its DeLong and bootstrap options stop with "code needs fixing"), and ``St()`` needs at least 2
treatments.
"""

from __future__ import annotations

import math
import re
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.data import Lesion, ObserverData
from analysis.results import (
    AnalysisResult,
    Comparison,
    Provenance,
    SignificanceResult,
    Table,
    TreatmentEstimate,
)
from analysis.significance import BackendNotAvailableError
from analysis.stats._common import MRMCInputError, WarningLog, resolve_analyses, validate_alpha

__all__ = [
    "INSTALL_HINT",
    "MIN_RJAFROC_VERSION",
    "RJafrocOutputError",
    "rjafroc_available",
    "significance_test_rjafroc",
    "result_from_st",
    "decode_plain",
    "r_to_plain",
    "CrosscheckRow",
    "CrosscheckReport",
    "compare_results",
]

MIN_RJAFROC_VERSION = (2, 1)
"""Oldest RJafroc release whose ``St()`` / ``DfReadDataFile()`` API this bridge is written for."""

INSTALL_HINT = (
    "To run RJafroc: (1) install R >= 4.0 (Debian/Ubuntu: 'apt-get install r-base'); "
    '(2) in R: install.packages("RJafroc"); (3) in this environment: '
    "pip install '.[rjafroc]' (installs rpy2; the extra pins rpy2 < 3.6, which is also what "
    "Debian 12's R 4.2 needs)."
)

#: RJafroc's error-term formulas in our words (identical to the Python engine's).
_ERROR_TERMS = {
    ("DBM", "RRRC"): "MS(TR) + max(MS(TC) - MS(TRC), 0)",
    ("DBM", "FRRC"): "MS(TC)",
    ("DBM", "RRFC"): "MS(TR)",
    ("OR", "RRRC"): "MS(TR) + J * max(Cov2 - Cov3, 0)",
    ("OR", "FRRC"): "Var - Cov1 + (J-1) * max(Cov2 - Cov3, 0)",
    ("OR", "RRFC"): "MS(TR)",
}


class RJafrocOutputError(ValueError):
    """RJafroc's ``St()`` output does not have the structure or labels this bridge expects."""


# ------------------------------------------------------------------------------------------
# Availability
# ------------------------------------------------------------------------------------------

_AVAILABLE: tuple[bool, str] | None = None


def rjafroc_available(*, refresh: bool = False) -> tuple[bool, str]:
    """Whether R and RJafroc can be called from here, and why not.

    Parameters
    ----------
    refresh : bool, default False
        Check again instead of returning the cached answer (starting R is done once).

    Returns
    -------
    available : bool
    reason : str
        When available: the versions used (``"RJafroc 2.1.3 on R version 4.2.2 ... through rpy2
        3.5.17"``).  Otherwise what is missing and how to install it (:data:`INSTALL_HINT`).
    """
    global _AVAILABLE
    if _AVAILABLE is not None and not refresh:
        return _AVAILABLE
    _AVAILABLE = _check_available()
    return _AVAILABLE


def _check_available() -> tuple[bool, str]:
    try:
        import rpy2
    except ImportError:
        return False, f"rpy2 is not installed, so R cannot be called. {INSTALL_HINT}"
    rpy2_version = getattr(rpy2, "__version__", "?")
    try:
        import rpy2.robjects as ro  # starts the embedded R
    except Exception as exc:  # R missing, R_HOME unset, libR not found, ...
        return False, (f"rpy2 {rpy2_version} is installed but cannot start R ({type(exc).__name__}: {str(exc).strip()[:200]}). {INSTALL_HINT}")
    try:
        r_version = str(ro.r("R.version.string")[0])
        # isTRUE(): requireNamespace() returns invisibly, which ro.r() turns into None
        has = bool(ro.r('isTRUE(requireNamespace("RJafroc", quietly = TRUE))')[0])
    except Exception as exc:
        return False, f"R could not be queried through rpy2 {rpy2_version} ({exc}). {INSTALL_HINT}"
    if not has:
        return False, f"{r_version} runs, but the R package RJafroc is not installed. {INSTALL_HINT}"
    version = str(ro.r('as.character(utils::packageVersion("RJafroc"))')[0])
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if parts < MIN_RJAFROC_VERSION:
        return False, (
            f"RJafroc {version} is installed, but this bridge is written for RJafroc >= "
            f"{'.'.join(map(str, MIN_RJAFROC_VERSION))} (St / DfReadDataFile API). In R: "
            'install.packages("RJafroc").'
        )
    return True, f"RJafroc {version} on {r_version} through rpy2 {rpy2_version}"


# ------------------------------------------------------------------------------------------
# The R-calling layer (thin)
# ------------------------------------------------------------------------------------------


def _run_st_in_r(xlsx_path: Path, fom: str, method: str, analyses: Sequence[str], alpha: float) -> dict[str, dict[str, Any]]:
    """Read ``xlsx_path`` with RJafroc and run ``St()`` once per analysis.

    Returns ``{analysis: plain St() output}`` (see :func:`r_to_plain`).  R's console output is
    swallowed; R errors become :class:`RuntimeError` carrying R's message.
    """
    from rpy2.rinterface_lib import callbacks
    from rpy2.robjects.packages import importr

    captured: list[str] = []
    old_print, old_warn = callbacks.consolewrite_print, callbacks.consolewrite_warnerror
    callbacks.consolewrite_print = captured.append
    callbacks.consolewrite_warnerror = captured.append
    try:
        rj = importr("RJafroc")
        try:
            ds = rj.DfReadDataFile(str(xlsx_path), newExcelFileFormat=True)
        except Exception as exc:
            raise RuntimeError(f"RJafroc::DfReadDataFile failed on {xlsx_path.name}: {exc}") from exc
        out: dict[str, dict[str, Any]] = {}
        for analysis in analyses:
            try:
                st = rj.St(
                    ds,
                    FOM=fom,
                    method=method,
                    covEstMethod="jackknife",
                    analysisOption=analysis,
                    alpha=float(alpha),
                )
            except Exception as exc:
                raise RuntimeError(f"RJafroc::St(FOM = {fom!r}, method = {method!r}, analysisOption = {analysis!r}) failed: {exc}") from exc
            out[analysis] = r_to_plain(st)
        return out
    finally:
        callbacks.consolewrite_print, callbacks.consolewrite_warnerror = old_print, old_warn


def r_to_plain(obj: Any) -> Any:
    """Convert an rpy2 object (RJafroc's ``St()`` list) into plain Python data.

    The layout is the one of the reference outputs in ``tests/data/rjafroc/expected``:

    * an R ``data.frame`` -> ``{"__type__": "data.frame", "rownames": [...], "columns":
      {name: [values]}}``;
    * a numeric vector with a ``dim`` attribute -> ``{"__type__": "array", "dim": [...],
      "dimnames": [[...], ...], "values": [...]}`` (values in R's column-major order);
    * a named list -> ``dict``; other vectors -> a list (or a scalar when of length 1).

    ``NA`` becomes ``nan``.
    """
    from rpy2.rinterface import NULL
    from rpy2.robjects import r, vectors

    if isinstance(obj, vectors.DataFrame):
        columns = {}
        for name in obj.names:
            columns[str(name)] = [_r_scalar(v) for v in obj.rx2(str(name))]
        return {
            "__type__": "data.frame",
            "rownames": [str(x) for x in obj.rownames],
            "columns": columns,
        }
    if isinstance(obj, vectors.ListVector):
        names = obj.names
        keys = [str(n) for n in names] if names is not NULL else [str(i) for i in range(len(obj))]
        return {k: r_to_plain(v) for k, v in zip(keys, obj)}
    if isinstance(obj, vectors.StrVector):
        values = [str(x) for x in obj]
        return values[0] if len(values) == 1 else values
    if isinstance(obj, (vectors.FloatVector, vectors.IntVector, vectors.BoolVector)):
        values = [_r_scalar(v) for v in obj]
        dim = r["dim"](obj)
        if dim is NULL:
            return values[0] if len(values) == 1 else values
        dimnames = r["dimnames"](obj)
        dn = None
        if dimnames is not NULL:
            dn = [[str(x) for x in d] if d is not NULL else None for d in dimnames]
        return {"__type__": "array", "dim": [int(d) for d in dim], "dimnames": dn, "values": values}
    return obj


def _r_scalar(v: Any) -> Any:
    from rpy2 import rinterface as ri

    if v is ri.NA_Real or v is ri.NA_Integer or v is ri.NA_Logical:
        return math.nan
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return str(v)


# ------------------------------------------------------------------------------------------
# Plain structure -> arrays / data frames
# ------------------------------------------------------------------------------------------

_SPECIAL = {"NA": math.nan, "NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str):
        if v in _SPECIAL:
            return _SPECIAL[v]
        return float(v)
    return float(v)


@dataclass(frozen=True)
class _RArray:
    values: np.ndarray
    dimnames: tuple[tuple[str, ...] | None, ...]


def decode_plain(obj: Any) -> Any:
    """Decode the plain serialisation (``__type__`` arrays and data frames) recursively.

    Arrays become an object with ``values`` (ndarray, reshaped from R's column-major order)
    and ``dimnames``; data frames become :class:`pandas.DataFrame` indexed by the row names;
    ``"NA"``, ``"Inf"``, ... become floats.
    """
    if isinstance(obj, dict):
        kind = obj.get("__type__")
        if kind == "array":
            values = np.array([_num(v) for v in obj["values"]], dtype=float)
            dim = [int(d) for d in obj["dim"]]
            dn = obj.get("dimnames") or [None] * len(dim)
            return _RArray(
                values=values.reshape(dim, order="F"),
                dimnames=tuple(tuple(str(x) for x in d) if d is not None else None for d in dn),
            )
        if kind == "data.frame":
            cols = {}
            for name, vals in obj["columns"].items():
                vals = vals if isinstance(vals, list) else [vals]
                cols[str(name)] = [_num(v) if not isinstance(v, str) or v in _SPECIAL else v for v in vals]
            rownames = obj.get("rownames")
            if rownames is not None and not isinstance(rownames, list):
                rownames = [rownames]
            return pd.DataFrame(cols, index=[str(r) for r in rownames] if rownames else None)
        return {k: decode_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------
# St() output -> SignificanceResult
# ------------------------------------------------------------------------------------------


def _get(node: Mapping[str, Any], *path: str) -> Any:
    cur: Any = node
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            raise RJafrocOutputError(
                f"RJafroc's St() output has no element {'$'.join(path)!r} (missing {key!r}); this bridge is written for RJafroc 2.1.x."
            )
        cur = cur[key]
    return cur


def _frame(node: Mapping[str, Any], *path: str) -> pd.DataFrame:
    value = _get(node, *path)
    if not isinstance(value, pd.DataFrame):
        raise RJafrocOutputError(f"St() element {'$'.join(path)!r} is not a data frame.")
    return value


def _col(frame: pd.DataFrame, *names: str) -> np.ndarray:
    for n in names:
        if n in frame.columns:
            return frame[n].to_numpy(dtype=float)
    raise RJafrocOutputError(f"St() data frame with columns {list(frame.columns)} lacks {' or '.join(names)}.")


def _optional(x: float) -> float | None:
    return None if (x is None or math.isnan(x)) else float(x)


def result_from_st(
    st_outputs: Mapping[str, Mapping[str, Any]],
    *,
    method: str,
    fom: str,
    treatments: Sequence[str],
    readers: Sequence[str],
    n_cases: int,
    alpha: float = 0.05,
    rjafroc_treatments: Sequence[str] | None = None,
    rjafroc_readers: Sequence[str] | None = None,
    provenance: Provenance | None = None,
    extra_warnings: Sequence[str] = (),
) -> SignificanceResult:
    """Convert RJafroc ``St()`` outputs into a :class:`SignificanceResult`.

    Parameters
    ----------
    st_outputs : mapping of {"RRRC", "FRRC", "RRFC"} to St() output
        One ``St(..., analysisOption = a)`` return value per analysis, either plain (as from
        :func:`r_to_plain` or the JSON files in ``tests/data/rjafroc/expected/st``) or decoded
        (:func:`decode_plain`).  ``FOMs`` and ``ANOVA`` are taken from the first one.
    method : {"OR", "DBM"}
    fom : str
        RJafroc's FOM name, stored in the result.
    treatments, readers : sequence of str
        The study's IDs, in RJafroc's array order (the order of the file written for it).
    n_cases : int
        Size of the FOM's resampled case set (:func:`analysis.fom_case_ids`): RJafroc's ``St()``
        does not report it.
    alpha : float, default 0.05
        The ``alpha`` St() ran with.
    rjafroc_treatments, rjafroc_readers : sequence of str, optional
        The IDs as written to the file RJafroc read.  When given, RJafroc's labels must be
        ``"trt" + id`` / ``"rdr" + id`` in this order; otherwise RJafroc's own labels are
        accepted and matched by position.
    provenance : Provenance, optional
    extra_warnings : sequence of str
        Notes to add at the top level (e.g. analyses skipped for a single reader).

    Returns
    -------
    SignificanceResult
        Same type and JSON schema as :func:`analysis.significance_test`; ``covariance`` is
        ``"jackknife"``.  Warnings are derived from the numbers with the Python engine's rules.

    Raises
    ------
    RJafrocOutputError
        An element is missing, a label does not match, or the dimensions disagree.
    """
    method = str(method).upper()
    if method not in ("OR", "DBM"):
        raise MRMCInputError(f"method must be 'OR' or 'DBM'. Got {method!r} instead.")
    if not st_outputs:
        raise RJafrocOutputError("No St() output to convert.")
    order = {"RRRC": 0, "FRRC": 1, "RRFC": 2}
    unknown = [a for a in st_outputs if a not in order]
    if unknown:
        raise RJafrocOutputError(f"Unknown analyses {unknown}; expected RRRC, FRRC or RRFC.")
    decoded = {a: decode_plain(st_outputs[a]) for a in sorted(st_outputs, key=order.__getitem__)}
    first = next(iter(decoded.values()))
    treatments, readers = tuple(map(str, treatments)), tuple(map(str, readers))
    n_t, n_r = len(treatments), len(readers)

    foms_arr = _get(first, "FOMs", "foms")
    if not isinstance(foms_arr, _RArray):
        raise RJafrocOutputError("St()$FOMs$foms is not an array.")
    theta = foms_arr.values
    if theta.shape != (n_t, n_r):
        raise RJafrocOutputError(f"RJafroc reports FOMs of shape {theta.shape}; the study has {n_t} treatments and {n_r} readers.")
    t_labels = foms_arr.dimnames[0] if foms_arr.dimnames and foms_arr.dimnames[0] else tuple(f"trt{t}" for t in treatments)
    r_labels = foms_arr.dimnames[1] if len(foms_arr.dimnames) > 1 and foms_arr.dimnames[1] else tuple(f"rdr{r}" for r in readers)
    if rjafroc_treatments is not None:
        want = tuple(f"trt{t}" for t in rjafroc_treatments)
        if t_labels != want:
            raise RJafrocOutputError(f"RJafroc labelled the treatments {list(t_labels)}; expected {list(want)}.")
    if rjafroc_readers is not None:
        want = tuple(f"rdr{r}" for r in rjafroc_readers)
        if r_labels != want:
            raise RJafrocOutputError(f"RJafroc labelled the readers {list(r_labels)}; expected {list(want)}.")
    t_pos = {lab: i for i, lab in enumerate(t_labels)}
    r_pos = {lab: j for j, lab in enumerate(r_labels)}
    pairs = [(a, b) for a in range(n_t) for b in range(a + 1, n_t)]
    pair_labels = [f"{t_labels[a]}-{t_labels[b]}" for a, b in pairs]

    anova_node = _get(first, "ANOVA")
    if method == "DBM":
        anova, vc_table, trt_table, rdr_table = _dbm_tables(anova_node, treatments, readers, t_labels, r_labels, n_cases)
    else:
        anova, vc_table, trt_table, rdr_table = _or_tables(anova_node, treatments, readers, t_pos, r_pos)

    log = WarningLog()
    for w in extra_warnings:
        log.messages.append(w)
    analyses: dict[str, AnalysisResult] = {}
    for name, st in decoded.items():
        block = _get(st, name)
        notes: list[str] = []
        ftests = _frame(block, "FTests")
        chi2 = "Chisq" in ftests.columns
        stat = float(_col(ftests, "Chisq", "FStat", "F")[0])
        ms = _col(ftests, "MS")
        dfs = _col(ftests, "DF")
        p = float(_col(ftests, "p")[0])
        ddf = None if chi2 else float(dfs[1])
        diffs = _comparisons(_frame(block, "ciDiffTrt"), pairs, pair_labels, treatments, alpha, None)
        trt_frame = _frame(block, "ciAvgRdrEachTrt")
        if list(trt_frame.index) != list(t_labels):
            raise RJafrocOutputError(f"St()${name}$ciAvgRdrEachTrt rows {list(trt_frame.index)} != treatments {list(t_labels)}.")
        normal_ref = method == "OR" and name == "FRRC"
        cov2 = _col(trt_frame, "Cov2") if "Cov2" in trt_frame.columns else None
        est, se, df_t = _col(trt_frame, "Estimate"), _col(trt_frame, "StdErr"), _col(trt_frame, "DF")
        lo, hi = _col(trt_frame, "CILower"), _col(trt_frame, "CIUpper")
        trt_cis = tuple(
            TreatmentEstimate(
                treatment=treatments[i],
                estimate=float(est[i]),
                se=float(se[i]),
                df=_optional(df_t[i]),
                ci_lower=float(lo[i]),
                ci_upper=float(hi[i]),
                alpha=alpha,
                normal_reference=normal_ref,
                cov2=None if cov2 is None else float(cov2[i]),
            )
            for i in range(n_t)
        )
        reader_diffs: tuple[Comparison, ...] = ()
        if name == "FRRC":
            if "ciDiffTrtEachRdr" not in block:
                raise RJafrocOutputError("St()$FRRC has no ciDiffTrtEachRdr.")
            frame = block["ciDiffTrtEachRdr"]
            out: list[Comparison] = []
            for j, rl in enumerate(r_labels):
                labels = [f"{rl}::{pl}" for pl in pair_labels]
                sub = frame.loc[[lab for lab in labels if lab in frame.index]]
                if len(sub) != len(labels):
                    raise RJafrocOutputError(f"St()$FRRC$ciDiffTrtEachRdr lacks rows for reader {rl}: expected {labels}.")
                out.extend(_comparisons(sub, pairs, labels, treatments, alpha, readers[j]))
            reader_diffs = tuple(out)

        # The Python engine's degenerate-data notes, derived from the same numbers.
        if name == "RRRC":
            if ddf is not None and math.isinf(ddf):
                notes.append("RRRC: MS(TR) = 0 so ddf_H is infinite; the F and t tests use their chi-square/normal limits.")
            for t in trt_cis:
                if t.df is not None and math.isinf(t.df):
                    notes.append(f"RRRC: treatment {t.treatment} has msR = 0, so its interval uses infinite df.")
        elif name == "FRRC":
            if method == "DBM":
                if ms[1] == 0:
                    notes.append("FRRC: MS(TC) = 0; the F statistic is undefined or infinite.")
            else:
                if ms[1] <= 0:
                    notes.append(
                        "FRRC: the error term Var - Cov1 + (J-1) max(Cov2 - Cov3, 0) is not positive; "
                        "the chi-square statistic and standard errors are undefined."
                    )
                for j, r in enumerate(readers):
                    if rdr_table.value(r, "var") - rdr_table.value(r, "cov1") <= 0:
                        notes.append(f"FRRC: reader {r} has Var - Cov1 <= 0; its single-reader tests are undefined.")
        elif ms[1] == 0:
            notes.append("RRFC: MS(TR) = 0; the F statistic is undefined or infinite.")
        analyses[name] = AnalysisResult(
            analysis=name,
            method=method,
            statistic_name="chi2" if chi2 else "F",
            statistic=stat,
            df=float(dfs[0]),
            ddf=ddf,
            p_value=p,
            ms_treatment=float(ms[0]),
            ms_error=float(ms[1]),
            error_term=_ERROR_TERMS[(method, name)],
            differences=diffs,
            treatment_cis=trt_cis,
            reader_differences=reader_diffs,
            alpha=alpha,
            warnings=tuple(notes),
        )
        for m in notes:
            if m not in log.messages:
                log.messages.append(m)

    return SignificanceResult(
        fom=fom,
        method=method,
        covariance="jackknife",
        treatments=treatments,
        readers=readers,
        n_cases=int(n_cases),
        foms=theta,
        anova=anova,
        variance_components=vc_table,
        treatment_anova=trt_table,
        reader_anova=rdr_table,
        analyses=analyses,
        alpha=alpha,
        provenance=provenance,
        warnings=log.tuple(),
        backend="rjafroc",
    )


def _comparisons(
    frame: pd.DataFrame,
    pairs: Sequence[tuple[int, int]],
    labels: Sequence[str],
    treatments: Sequence[str],
    alpha: float,
    reader: str | None,
) -> tuple[Comparison, ...]:
    if list(frame.index) != list(labels):
        raise RJafrocOutputError(f"RJafroc's comparison rows {list(frame.index)} do not match the expected {list(labels)}.")
    z = "z" in frame.columns
    est, se = _col(frame, "Estimate"), _col(frame, "StdErr")
    stat, p = _col(frame, "z", "t"), _col(frame, "PrGTz", "PrGTt")
    lo, hi = _col(frame, "CILower"), _col(frame, "CIUpper")
    df = None if z else _col(frame, "DF")
    return tuple(
        Comparison(
            treatments=(treatments[a], treatments[b]),
            estimate=float(est[n]),
            se=float(se[n]),
            df=None if df is None else float(df[n]),
            statistic=float(stat[n]),
            p_value=float(p[n]),
            ci_lower=float(lo[n]),
            ci_upper=float(hi[n]),
            alpha=alpha,
            reader=reader,
        )
        for n, (a, b) in enumerate(pairs)
    )


def _dbm_tables(anova_node, treatments, readers, t_labels, r_labels, n_cases):
    trc = _frame(anova_node, "TRCanova")
    sources = ("T", "R", "C", "TR", "TC", "RC", "TRC", "Total")
    if tuple(trc.index) != sources:
        raise RJafrocOutputError(f"St()$ANOVA$TRCanova rows {list(trc.index)} != {list(sources)}.")
    anova = Table(index=sources, columns={c: _col(trc, c) for c in ("SS", "DF", "MS")})
    vc = _frame(anova_node, "VarCom")
    vc_table = Table(index=tuple(vc.index), columns={"estimate": _col(vc, "Estimates")}, index_name="component")
    it = _frame(anova_node, "IndividualTrt")  # rows msR, msC, msRC; columns DF, trt...
    ir = _frame(anova_node, "IndividualRdr")  # rows msT, msC, msTC; columns DF, rdr...
    n_t, n_r = len(treatments), len(readers)

    def row(frame, r, labels):
        if r not in frame.index:
            raise RJafrocOutputError(f"St()$ANOVA lacks row {r!r}.")
        missing = [lab for lab in labels if lab not in frame.columns]
        if missing:
            raise RJafrocOutputError(f"St()$ANOVA lacks columns {missing}.")
        return np.array([float(frame.loc[r, lab]) for lab in labels])

    from analysis.stats._common import level_tables

    trt_table, rdr_table = level_tables(
        treatments,
        readers,
        {
            **{ms: row(it, ms, t_labels) for ms in ("msR", "msC", "msRC")},
            **{f"df_{ms}": np.full(n_t, float(it.loc[ms, "DF"])) for ms in ("msR", "msC", "msRC")},
        },
        {
            **{ms: row(ir, ms, r_labels) for ms in ("msT", "msC", "msTC")},
            **{f"df_{ms}": np.full(n_r, float(ir.loc[ms, "DF"])) for ms in ("msT", "msC", "msTC")},
        },
    )
    return anova, vc_table, trt_table, rdr_table


def _or_tables(anova_node, treatments, readers, t_pos, r_pos):
    tr = _frame(anova_node, "TRanova")
    if tuple(tr.index) != ("T", "R", "TR"):
        raise RJafrocOutputError(f"St()$ANOVA$TRanova rows {list(tr.index)} != ['T', 'R', 'TR'].")
    anova = Table(index=("T", "R", "TR"), columns={c: _col(tr, c) for c in ("SS", "DF", "MS")})
    vc = _frame(anova_node, "VarCom")
    vc_table = Table(
        index=tuple(vc.index),
        columns={"estimate": _col(vc, "Estimates"), "rho": _col(vc, "Rhos")},
        index_name="component",
    )
    it = _frame(anova_node, "IndividualTrt")  # rows trt...; DF, msREachTrt, varEachTrt, cov2EachTrt
    ir = _frame(anova_node, "IndividualRdr")  # rows rdr...; DF, msTEachRdr, varEachRdr, cov1EachRdr

    def ordered(frame: pd.DataFrame, positions: Mapping[str, int], what: str) -> pd.DataFrame:
        labels = sorted(positions, key=positions.__getitem__)
        if sorted(frame.index) != sorted(labels):
            raise RJafrocOutputError(f"St()$ANOVA$Individual{what} rows {list(frame.index)} do not match {labels}.")
        return frame.loc[labels]

    it = ordered(it, t_pos, "Trt")
    ir = ordered(ir, r_pos, "Rdr")
    from analysis.stats._common import level_tables

    trt_table, rdr_table = level_tables(
        treatments,
        readers,
        {"msR": _col(it, "msREachTrt"), "var": _col(it, "varEachTrt"), "cov2": _col(it, "cov2EachTrt"), "df_msR": _col(it, "DF")},
        {"msT": _col(ir, "msTEachRdr"), "var": _col(ir, "varEachRdr"), "cov1": _col(ir, "cov1EachRdr"), "df_msT": _col(ir, "DF")},
    )
    return anova, vc_table, trt_table, rdr_table


# ------------------------------------------------------------------------------------------
# The backend entry point
# ------------------------------------------------------------------------------------------


def _positional_copy(data: ObserverData) -> tuple[ObserverData, tuple[str, ...], tuple[str, ...]]:
    """The study with IDs T1..TI / R01..RJ (same order as strings and numbers), no reader groups
    or lesion attributes (RJafroc's reader does not need them)."""
    wt, wr = len(str(data.n_treatments)), len(str(data.n_readers))
    trt_ids = tuple(f"T{i + 1:0{wt}d}" for i in range(data.n_treatments))
    rdr_ids = tuple(f"R{j + 1:0{wr}d}" for j in range(data.n_readers))
    lesions = tuple(tuple(Lesion(les.id, les.weight) for les in case) for case in data.lesions)
    copy = replace(data, treatments=trt_ids, readers=rdr_ids, reader_groups={}, lesions=lesions, name="")
    return copy, trt_ids, rdr_ids


def significance_test_rjafroc(
    path_or_data: str | Path | ObserverData,
    fom: str = "wAFROC",
    method: str = "OR",
    analyses: str | Iterable[str] = "ALL",
    *,
    alpha: float = 0.05,
    covariance: str = "jackknife",
    provenance: Provenance | None = None,
) -> SignificanceResult:
    """The significance test computed by RJafroc's ``St()`` (through rpy2).

    Parameters
    ----------
    path_or_data : str, Path or ObserverData
        A study file (read with :func:`analysis.read_observer_data`; its provenance is recorded
        unless ``provenance`` is given) or a study.
    fom : str, default "wAFROC"
        RJafroc's FOM name (``analysis.FOMS``).
    method : {"OR", "DBM"}, default "OR"
    analyses : {"ALL", "RRRC", "FRRC", "RRFC"} or a list, default "ALL"
        As in :func:`analysis.significance_test`; with one reader only FRRC.
    alpha : float, default 0.05
    covariance : {"jackknife"}
        RJafroc 2.1.3's DeLong and bootstrap options do not run ("code needs fixing").
    provenance : Provenance, optional

    Returns
    -------
    SignificanceResult
        The same type and JSON schema as the Python engine's, from RJafroc's numbers.

    Raises
    ------
    BackendNotAvailableError
        rpy2, R or RJafroc is missing (the message says how to install them).
    MRMCInputError
        Unsupported options (a covariance other than the jackknife, fewer than 2 treatments).
    RuntimeError
        RJafroc stopped with an error (its message is included).
    """
    from analysis.fom import check_fom, fom_case_ids
    from analysis.io import read_observer_data

    if str(covariance).lower() != "jackknife":
        raise MRMCInputError(
            f"The RJafroc backend supports covariance='jackknife' only (RJafroc 2.1.3's DeLong and "
            f"bootstrap options stop with 'code needs fixing'). Got {covariance!r}; use "
            "backend='python' for DeLong or the bootstrap."
        )
    method_u = str(method).upper()
    if method_u not in ("OR", "DBM"):
        raise MRMCInputError(f"method must be 'OR' or 'DBM'. Got {method!r} instead.")
    alpha = validate_alpha(alpha, "significance_test_rjafroc")
    if isinstance(path_or_data, ObserverData):
        data = path_or_data
    else:
        path = Path(path_or_data)
        data = read_observer_data(path)
        if provenance is None:
            provenance = Provenance.from_file(path)
    check_fom(data, fom)
    n_cases = len(fom_case_ids(data, fom))
    log = WarningLog()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wanted = resolve_analyses(analyses, data.n_treatments, data.n_readers, n_cases, log)
    for m in log.messages:
        from analysis.stats._common import MRMCWarning

        warnings.warn(m, MRMCWarning, stacklevel=2)

    ok, reason = rjafroc_available()
    if not ok:
        raise BackendNotAvailableError(f"RJafroc backend not available: {reason}")
    copy, trt_ids, rdr_ids = _positional_copy(data)
    from analysis.io import write_jafroc_excel

    with tempfile.TemporaryDirectory(prefix="tsct-rjafroc-") as tmp:
        xlsx = write_jafroc_excel(copy, Path(tmp) / "study.xlsx", rjafroc_compatible=True)
        outputs = _run_st_in_r(xlsx, fom, method_u, wanted, alpha)
    return result_from_st(
        outputs,
        method=method_u,
        fom=fom,
        treatments=data.treatments,
        readers=data.readers,
        n_cases=n_cases,
        alpha=alpha,
        rjafroc_treatments=trt_ids,
        rjafroc_readers=rdr_ids,
        provenance=provenance,
        extra_warnings=log.tuple(),
    )


# ------------------------------------------------------------------------------------------
# Cross-check: our numbers beside RJafroc's
# ------------------------------------------------------------------------------------------

_SKIP_KEYS = {
    "schema",
    "package_version",
    "input_file",
    "input_sha256",
    "created_utc",
    "warnings",
    "description",
    "error_term",
    "covariance",
    "n_bootstraps",
    "random_state",
    "backend",
}


@dataclass(frozen=True)
class CrosscheckRow:
    """One number of the result JSON, ours beside the reference's."""

    path: str
    ours: float | str | None
    reference: float | str | None
    abs_diff: float
    rel_diff: float
    ok: bool
    #: how it passed: "equal" (identical), "relative" (within rtol * |ref|), "absolute" (only
    #: within atol, i.e. a number near zero), or "" for a failure
    passed_by: str = ""


@dataclass(frozen=True, eq=False)
class CrosscheckReport:
    """Every number of two results compared (see :func:`compare_results`).

    Attributes
    ----------
    rows : tuple of CrosscheckRow
        One per number (JSON path such as ``analyses.RRRC.differences[0].p``).
    rtol, atol : float
        A number passes when ``|ours - ref| <= atol + rtol * |ref|`` (or both are equal
        non-numbers such as ``null`` / ``"Infinity"``).
    """

    rows: tuple[CrosscheckRow, ...]
    rtol: float
    atol: float

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def n_failed(self) -> int:
        return sum(not r.ok for r in self.rows)

    def count(self, passed_by: str) -> int:
        """Rows that passed by ``"equal"``, ``"relative"`` or ``"absolute"`` tolerance."""
        return sum(r.passed_by == passed_by for r in self.rows)

    @property
    def max_abs_diff_absolute(self) -> float:
        """Largest absolute difference among the rows that passed only by ``atol``."""
        vals = [r.abs_diff for r in self.rows if r.passed_by == "absolute"]
        return max(vals) if vals else 0.0

    def verdict(self) -> str:
        """One sentence saying how the numbers agreed, naming the tolerance each group used."""
        n = len(self.rows)
        if not self.passed:
            return f"{self.n_failed} of {n} numbers differ by more than {self.atol:g} + {self.rtol:g} x |RJafroc's value|."
        parts = []
        if self.count("equal"):
            parts.append(f"{self.count('equal')} identical")
        if self.count("relative"):
            parts.append(f"{self.count('relative')} within a relative {self.rtol:g} (largest relative difference {self.max_rel_diff_relative:.1e})")
        if self.count("absolute"):
            parts.append(
                f"{self.count('absolute')} near zero only within the absolute "
                f"{self.atol:g} (largest absolute difference "
                f"{self.max_abs_diff_absolute:.1e})"
            )
        return f"all {n} numbers agree: " + "; ".join(parts) + "."

    @property
    def max_rel_diff_relative(self) -> float:
        vals = [r.rel_diff for r in self.rows if r.passed_by == "relative" and math.isfinite(r.rel_diff)]
        return max(vals) if vals else 0.0

    @property
    def max_rel_diff(self) -> float:
        finite = [r.rel_diff for r in self.rows if math.isfinite(r.rel_diff)]
        return max(finite) if finite else 0.0

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.rows], columns=["path", "ours", "reference", "abs_diff", "rel_diff", "ok", "passed_by"])


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in _SKIP_KEYS:
                continue
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for n, v in enumerate(obj):
            out.extend(_flatten(v, f"{prefix}[{n}]"))
    else:
        out.append((prefix, obj))
    return out


def compare_results(ours: SignificanceResult, reference: SignificanceResult, *, rtol: float = 1e-9, atol: float = 1e-12) -> CrosscheckReport:
    """Compare every number of two results' JSON documents (provenance and texts excluded).

    Parameters
    ----------
    ours, reference : SignificanceResult
        For example the Python engine's and RJafroc's (:func:`significance_test_rjafroc`).
    rtol, atol : float
        Relative and absolute tolerance.

    Returns
    -------
    CrosscheckReport
        A path present in only one of the two documents is a failure.
    """
    a = dict(_flatten(ours.to_dict()))
    b = dict(_flatten(reference.to_dict()))
    rows: list[CrosscheckRow] = []
    for path in list(b) + [p for p in a if p not in b]:
        x, y = a.get(path, "<missing>"), b.get(path, "<missing>")
        numeric = isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool)
        if numeric:
            x_f, y_f = float(x), float(y)
            diff = abs(x_f - y_f)
            rel = diff / abs(y_f) if y_f != 0 else (0.0 if diff == 0 else math.inf)
            ok = diff <= atol + rtol * abs(y_f)
            how = "" if not ok else ("equal" if diff == 0 else "relative" if diff <= rtol * abs(y_f) else "absolute")
            rows.append(CrosscheckRow(path, x_f, y_f, diff, rel, ok, how))
        else:
            same = x == y
            rows.append(CrosscheckRow(path, x, y, 0.0 if same else math.nan, 0.0 if same else math.nan, same, "equal" if same else ""))
    return CrosscheckReport(rows=tuple(rows), rtol=rtol, atol=atol)
