"""Vectorised reading of the mark sheets of large, valid JAFROC workbooks.

A 2-treatment x 11-reader x 10,000-case FROC study has about 400,000 mark rows.  Checking
them one by one in Python (:func:`analysis.data._build_from_frames`) takes seconds; this
module checks and places them with NumPy in a fraction of that.  It is a *fast path only*:
whenever anything is irregular (a blank or malformed cell, an unknown ID, a duplicate mark, an
ROC rating in the wrong sheet...) it returns ``None`` and the reader falls back to the row-by-row
path, which names every problem with its sheet, row and column.  Both paths give identical
:class:`~analysis.data.ObserverData` on valid files (tested in ``tests/analysis/test_io_rjafroc_files.py``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

from analysis.data import ObserverData, _readonly
from analysis.formats._common import parse_id

__all__ = ["distinct_ids", "fast_marks"]


def transpose(rows: list) -> list[np.ndarray]:
    """The columns of ``rows`` (header excluded) as object arrays; short rows padded with None."""
    width = max((len(r) for r in rows), default=0)
    body = rows[1:]
    if any(len(r) != width for r in body):
        body = [tuple(r) + (None,) * (width - len(r)) for r in body]
    out = []
    for col in zip(*body) if body else [()] * width:
        arr = np.empty(len(body), dtype=object)
        arr[:] = col
        out.append(arr)
    return out


def _has_duplicates(values: np.ndarray) -> bool:
    """Whether an integer array holds a value twice (``np.unique(values).size != values.size``,
    without ``np.unique``'s first-call import of ``numpy.ma``, about 10 ms of start-up)."""
    ordered = np.sort(values.reshape(-1))
    return bool((ordered[1:] == ordered[:-1]).any())


def _column(columns: list[np.ndarray], col: int, n_rows: int) -> np.ndarray:
    if col < len(columns):
        return columns[col]
    return np.full(n_rows, None, dtype=object)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, list] | None:
    """``(codes, distinct cells)`` with ``distinct[codes] == values``; None if a cell is blank
    (None, NaN) or a boolean (not an ID; a dict would also take ``True`` for ``1``).

    A float column (fastexcel's typed columns) is factorised by NumPy; an object column by a
    dict, in order of first appearance (numbers equal as values, ``1`` and ``1.0``, share a code:
    both are the ID "1").  No pandas: ``tsct analyze st`` would pay its import for this alone.
    """
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            return None
        uniques, codes = np.unique(values, return_inverse=True)
        return codes.reshape(-1).astype(np.int64), uniques.tolist()
    cells = values.tolist()
    try:
        uniques = list(dict.fromkeys(cells))
    except TypeError:  # an unhashable cell
        return None
    if any(u is None or type(u) is bool or (isinstance(u, float) and math.isnan(u)) for u in uniques):
        return None
    if any(type(u) in (int, float) and u in (0, 1) for u in uniques) and bool in set(map(type, cells)):
        return None  # a True/False cell that the dict took for the number 1/0
    index = {u: n for n, u in enumerate(uniques)}
    codes = np.fromiter(map(index.__getitem__, cells), dtype=np.int64, count=len(cells))
    return codes, uniques


def _ids(values: np.ndarray, mapped: Callable[[str], str]) -> tuple[np.ndarray, list[str]] | None:
    """Factorise an ID column; ``(codes, canonical IDs)`` or None if any cell is not a valid ID."""
    factorized = _factorize(values)
    if factorized is None:
        return None
    codes, uniques = factorized
    canon: list[str] = []
    for u in uniques:
        v, err = parse_id(u)
        if err or v is None or v == "":
            return None
        canon.append(mapped(v))
    # different cells (1 and "1", or two originals mapped to one ID) may give one canonical ID
    final, inverse = np.unique(np.asarray(canon, dtype=object), return_inverse=True)
    return inverse.reshape(-1)[codes], [str(x) for x in final]


def _ratings(values: np.ndarray, allow_minus_inf: bool) -> np.ndarray | None:
    """Ratings as float64; None if any cell is not a number (or is -inf where not allowed)."""
    if values.dtype.kind == "f":
        x = np.array(values, dtype=float)
        if np.isnan(x).any() or np.isposinf(x).any() or (not allow_minus_inf and np.isneginf(x).any()):
            return None
        return x
    if any(type(v) is bool for v in values):  # noqa: E721 (True is not a rating)
        return None
    x = np.fromiter(map(_number, values.tolist()), dtype=float, count=len(values))
    bad = np.isnan(x)
    if bad.any():
        for n in np.flatnonzero(bad):
            v = values[n]
            if isinstance(v, str) and v.strip().lower() in ("-inf", "-infinity"):
                x[n] = -math.inf
            else:
                return None
    if np.isposinf(x).any():
        return None
    if not allow_minus_inf and np.isneginf(x).any():
        return None
    return x


def _number(cell: object) -> float:
    """A cell as a float, NaN where it is not a number (as the row path's ``float(text.strip())``)."""
    try:
        return float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _index(codes: np.ndarray, uniques: list[str], order: dict[str, int]) -> np.ndarray | None:
    lookup = np.array([order.get(u, -1) for u in uniques], dtype=np.int64)
    out = lookup[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    return None if (out < 0).any() else out


def fast_marks(
    skeleton: ObserverData,
    nl_columns: list[np.ndarray],
    nl_cols: dict[str, int],
    ll_columns: list[np.ndarray],
    ll_cols: dict[str, int],
    mapped: Callable[..., str],
    *,
    roc: bool,
) -> ObserverData | None:
    """Place the marks of the FP/NL and TP/LL sheets into ``skeleton``'s arrays.

    Parameters
    ----------
    skeleton : ObserverData
        The study built from the TRUTH sheet alone (cases, lesions, readers, treatments,
        paradigm); its rating arrays are replaced.
    nl_columns, ll_columns : list of arrays
        The sheets' data rows, one array per column (:func:`transpose` or typed columns).
    nl_cols, ll_cols : dict
        Column index of ``reader``, ``treatment``, ``case_id``, (``lesion_id``), ``rating``.
    mapped : callable
        ``mapped(kind, file_id[, case_file_id])``: the ID_MAP translation.
    roc : bool
        ROC data: one rating per case and reader and treatment, ``-inf`` allowed.

    Returns
    -------
    ObserverData or None
        None whenever a row is not regular; the caller then reads row by row.
    """
    t_order = {t: i for i, t in enumerate(skeleton.treatments)}
    r_order = {r: j for j, r in enumerate(skeleton.readers)}
    cases = list(skeleton.normal_cases) + list(skeleton.abnormal_cases)
    k_order = {c: k for k, c in enumerate(cases)}
    n_i, n_j, n_k, k1 = len(t_order), len(r_order), len(cases), skeleton.n_normal
    parsed = []
    for columns, cols in ((nl_columns, nl_cols), (ll_columns, ll_cols)):
        n_rows = len(columns[0]) if columns else 0
        if n_rows == 0 or not cols:
            parsed.append(None)
            continue
        got = {}
        for key, kind in (("treatment", "treatment"), ("reader", "reader"), ("case_id", "case")):
            ids = _ids(_column(columns, cols[key], n_rows), lambda v, kind=kind: mapped(kind, v))
            if ids is None:
                return None
            order = {"treatment": t_order, "reader": r_order, "case_id": k_order}[key]
            idx = _index(ids[0], ids[1], order)
            if idx is None:
                return None
            got[key] = idx
        x = _ratings(_column(columns, cols["rating"], n_rows), allow_minus_inf=roc)
        if x is None:
            return None
        got["rating"] = x
        if "lesion_id" in cols:
            factorized = _factorize(_column(columns, cols["lesion_id"], n_rows))
            if factorized is None:
                return None
            codes, uniques = factorized
            canon = []
            for u in uniques:
                v, err = parse_id(u)
                if err or v is None:
                    return None
                canon.append(v)
            got["lesion_code"] = codes
            got["lesion_raw"] = canon
        parsed.append(got)
    nl_p, ll_p = parsed

    # ---- NL marks: sorted in decreasing order within (i, j, k), as the row path does
    if nl_p is not None:
        i, j, k, x = nl_p["treatment"], nl_p["reader"], nl_p["case_id"], nl_p["rating"]
        key = (i * n_j + j) * n_k + k
        if roc and ((k >= k1).any() or _has_duplicates(key)):
            return None
        order = np.lexsort((-x, key))
        key_s, x_s = key[order], x[order]
        starts = np.r_[0, np.flatnonzero(np.diff(key_s)) + 1] if key_s.size else np.zeros(0, int)
        run = np.repeat(starts, np.diff(np.r_[starts, key_s.size]))
        rank = np.arange(key_s.size) - run
        max_nl = int(rank.max()) + 1 if rank.size else 1
        nl = np.full((n_i, n_j, n_k, max_nl), -np.inf)
        nl.reshape(-1, max_nl)[key_s, rank] = x_s
    else:
        nl = np.full((n_i, n_j, n_k, 1), -np.inf)

    # ---- LL marks
    lesions = skeleton.lesions
    max_ll = max(len(c) for c in lesions)
    ll = np.full((n_i, n_j, len(lesions), max_ll), -np.inf)
    if ll_p is not None:
        i, j, k, x = ll_p["treatment"], ll_p["reader"], ll_p["case_id"], ll_p["rating"]
        if (k < k1).any():
            return None
        a = k - k1
        # (abnormal case, lesion code) -> lesion index, through the case's own lesion IDs
        n_codes = len(ll_p["lesion_raw"])
        pair = a.astype(np.int64) * n_codes + ll_p["lesion_code"]
        upairs, first, inv = np.unique(pair, return_index=True, return_inverse=True)
        l_of = np.empty(upairs.size, dtype=np.int64)
        case_col = ll_columns[ll_cols["case_id"]]
        for n, (p, row) in enumerate(zip(upairs.tolist(), first.tolist())):
            aa, code = divmod(p, n_codes)
            # ID_MAP keys lesions by the *file's* case ID: read it from the pair's first row
            case_fid, _ = parse_id(case_col[row])
            lid = mapped("lesion", ll_p["lesion_raw"][code], case_fid or "")
            ids = [les.id for les in lesions[aa]]
            if lid not in ids:
                return None
            l_of[n] = ids.index(lid)
        l = l_of[inv.reshape(-1)]
        flat = ((i * n_j + j) * len(lesions) + a) * max_ll + l
        if _has_duplicates(flat):
            return None
        ll.reshape(-1)[flat] = x
    if roc:
        # every normal case exactly one NL rating, every abnormal case exactly its one lesion
        if nl.shape[3] != 1 or max_ll != 1:
            return None
        if nl_p is None or ll_p is None:
            return None
        if nl_p["rating"].size != n_i * n_j * k1 or ll_p["rating"].size != n_i * n_j * len(lesions):
            return None
    return _with_ratings(skeleton, nl, ll, "ROC" if roc else skeleton.paradigm)


def _with_ratings(skeleton: ObserverData, nl: np.ndarray, ll: np.ndarray, paradigm: str) -> ObserverData:
    """``skeleton`` with these rating arrays, without validating its truth a second time.

    ``ObserverData(...)`` would renormalise the lesion weights again (a last-bit change from
    the row path, which normalises them exactly as the skeleton did).  The arrays were built
    above to satisfy every array invariant; the checks that concern them are repeated here.
    """
    max_ll = max(len(c) for c in skeleton.lesions)
    assert nl.shape[:3] == (skeleton.n_treatments, skeleton.n_readers, skeleton.n_cases)
    assert ll.shape == (skeleton.n_treatments, skeleton.n_readers, skeleton.n_abnormal, max_ll)
    if np.isnan(nl).any() or np.isnan(ll).any() or np.isposinf(nl).any() or np.isposinf(ll).any():
        return None  # type: ignore[return-value]
    if paradigm == "ROC" and np.isfinite(nl[:, :, skeleton.n_normal :]).any():
        return None  # type: ignore[return-value]
    out = copy.copy(skeleton)
    object.__setattr__(out, "nl", _readonly(nl))
    object.__setattr__(out, "ll", _readonly(ll))
    object.__setattr__(out, "paradigm", paradigm)
    return out


def distinct_ids(columns_and_cols: list[tuple[list[np.ndarray], dict[str, int]]], key: str, mapped: Callable[[str], str]) -> list[str] | None:
    """The distinct, mapped IDs of column ``key`` over several sheets (None if any is invalid)."""
    seen: dict[str, None] = {}
    for columns, cols in columns_and_cols:
        if not columns or key not in cols or cols[key] >= len(columns):
            continue
        for u in dict.fromkeys(columns[cols[key]].tolist()):
            v, err = parse_id(u)
            if err or not v:
                return None
            seen.setdefault(mapped(v), None)
    return list(seen)
