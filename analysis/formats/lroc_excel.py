"""LROC data in the JAFROC Excel format (RJafroc ``DfReadDataFile`` with ``Paradigm = LROC``).

The workbook has the usual three sheets (current six-column TRUTH layout, Paradigm ``LROC`` in
the first data row and ``FCTRL`` in the second):

``TRUTH``
    ``CaseID | LesionID | Weight | ReaderID | ModalityID | Paradigm``; a normal case has
    ``LesionID = 0``, an abnormal case exactly one row with ``LesionID = 1`` (LROC has one
    lesion per abnormal case).
``FP`` (or ``NL``)
    ``ReaderID | ModalityID | CaseID | FP_Rating``: on a **normal** case the case's rating; on
    an **abnormal** case the rating of a mark that missed the lesion (an incorrect
    localization, RJafroc ``LL_IL``).  At most one row per (reader, modality, case).
``TP`` (or ``LL``)
    ``ReaderID | ModalityID | CaseID | LesionID | TP_Rating``: the rating of an abnormal case
    whose mark hit the lesion (a correct localization, RJafroc ``LL``).

A case without a row is "not rated" (``-inf``).  An abnormal case may have both a TP and an FP
row (RJafroc's ``lrocForcedMark = FALSE``; its datasetCadLroc is written that way, with 0 in the
unused slot).  Every problem is reported with sheet, Excel row and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from analysis.data import ObserverDataError, Problem
from analysis.formats._common import is_blank, parse_id
from analysis.formats.jafroc_excel import (
    _LL_SPEC,
    _NL_SPEC,
    _TRUTH_SPEC,
    _find,
    _load_workbook,
    _open_sheets,
    _split_list,
)
from analysis.lroc import LrocData, lroc_layout

__all__ = ["read_lroc_excel", "write_lroc_excel", "is_lroc_workbook"]


def _cell(row: tuple, i: int | None) -> Any:
    return row[i] if i is not None and i < len(row) else None


def is_lroc_workbook(path: str | Path) -> bool:
    """True when the workbook's TRUTH sheet declares the LROC paradigm."""
    try:
        sheets = _load_workbook(Path(path))
        truth = _find(sheets, ["TRUTH"], "TRUTH", str(path))
    except (ObserverDataError, FileNotFoundError):
        return False
    problems: list[Problem] = []
    cols, _ = truth.columns(_TRUTH_SPEC, [], str(path), problems)
    if "paradigm" not in cols:
        return False
    for row in truth.rows[1:]:
        v = _cell(row, cols["paradigm"])
        if not is_blank(v):
            return str(v).strip().upper() == "LROC"
    return False


def read_lroc_excel(path: str | Path, *, name: str | None = None) -> LrocData:
    """Read an LROC JAFROC workbook.

    Parameters
    ----------
    path : str or Path
        The ``.xlsx`` file.
    name : str, optional
        Study name (default: the file name without extension).

    Returns
    -------
    LrocData
        Treatments and readers in the order of the TRUTH sheet's lists; normal cases, then
        abnormal cases, in TRUTH order.

    Raises
    ------
    ObserverDataError
        Listing every problem (file, sheet, row, column).
    """
    path, file, _, truth, nl_sheet, ll_sheet = _open_sheets(
        path, "FP/NL (ratings of normal cases, incorrect localizations)", "TP/LL (correct localizations)"
    )
    problems: list[Problem] = []
    t_cols, t_names = truth.columns(_TRUTH_SPEC, ["case_id", "lesion_id", "reader", "treatment", "paradigm"], file, problems)
    n_cols, n_names = nl_sheet.columns(_NL_SPEC, list(_NL_SPEC), file, problems) if nl_sheet.rows else ({}, {})
    l_cols, l_names = ll_sheet.columns(_LL_SPEC, list(_LL_SPEC), file, problems) if ll_sheet.rows else ({}, {})
    if problems:
        raise ObserverDataError(problems)

    normal: list[str] = []
    abnormal: list[str] = []
    seen: dict[str, int] = {}
    readers: dict[str, None] = {}
    treatments: dict[str, None] = {}
    paradigm_cells: list[Any] = []
    for n, row in enumerate(truth.rows[1:], start=2):
        if all(is_blank(_cell(row, i)) for i in t_cols.values()):
            continue
        paradigm_cells.append(_cell(row, t_cols["paradigm"]))
        cid, err = parse_id(_cell(row, t_cols["case_id"]))
        lid, err2 = parse_id(_cell(row, t_cols["lesion_id"]))
        if err or cid is None:
            problems.append(Problem(err or "the case ID is empty.", file=file, sheet=truth.title, row=n, column=t_names["case_id"]))
            continue
        if err2 or lid is None:
            problems.append(
                Problem(
                    err2 or "the lesion ID is empty; use 0 for a normal case and 1 for the lesion of an abnormal case.",
                    file=file,
                    sheet=truth.title,
                    row=n,
                    column=t_names["lesion_id"],
                )
            )
            continue
        if cid in seen:
            problems.append(
                Problem(
                    f"case {cid!r} appears again (first on row {seen[cid]}); LROC data have one "
                    "lesion per abnormal case, so each case has exactly one TRUTH row.",
                    file=file,
                    sheet=truth.title,
                    row=n,
                    column=t_names["case_id"],
                )
            )
            continue
        seen[cid] = n
        (normal if lid == "0" else abnormal).append(cid)
        for key, store in (("reader", readers), ("treatment", treatments)):
            ids = _split_list(_cell(row, t_cols[key]))
            if not ids:
                problems.append(Problem(f"the {t_names[key]} list is empty.", file=file, sheet=truth.title, row=n, column=t_names[key]))
            for x in ids:
                store.setdefault(x, None)
    p = [str(x).strip().upper() for x in paradigm_cells if not is_blank(x)]
    if not p or p[0] != "LROC":
        problems.append(
            Problem(
                f"the first entry of the Paradigm column must be LROC for an LROC file; got {p[0] if p else 'nothing'!r}.",
                file=file,
                sheet=truth.title,
                row=2,
                column=t_names.get("paradigm"),
            )
        )
    elif len(p) > 1 and p[1] not in ("FCTRL", "CROSSED", "FACTORIAL"):
        problems.append(
            Problem(
                f"design {p[1]!r} is not supported for LROC data; only fully crossed (FCTRL).",
                file=file,
                sheet=truth.title,
                row=3,
                column=t_names.get("paradigm"),
            )
        )
    if problems:
        raise ObserverDataError(problems)

    t_ids, r_ids = list(treatments), list(readers)
    (ti, ri, ni, ai), (fp, cl, il) = lroc_layout(t_ids, r_ids, normal, abnormal)

    def rows(sheet, cols, names, with_lesion: bool):
        first: dict[tuple[str, str, str], int] = {}
        for n, row in enumerate(sheet.rows[1:], start=2):
            if all(is_blank(_cell(row, i)) for i in cols.values()):
                continue
            vals = {}
            bad = False
            for key in ("reader", "treatment", "case_id") + (("lesion_id",) if with_lesion else ()):
                v, err = parse_id(_cell(row, cols[key]))
                if err or v is None:
                    problems.append(Problem(err or f"the {names[key]} cell is empty.", file=file, sheet=sheet.title, row=n, column=names[key]))
                    bad = True
                vals[key] = v
            raw = _cell(row, cols["rating"])
            try:
                x = float(raw)
                if np.isnan(x) or x == np.inf or isinstance(raw, bool):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(Problem(f"rating {raw!r} is not a number.", file=file, sheet=sheet.title, row=n, column=names["rating"]))
                bad = True
            if bad:
                continue
            key3 = (vals["treatment"], vals["reader"], vals["case_id"])
            if vals["treatment"] not in ti or vals["reader"] not in ri:
                problems.append(
                    Problem(
                        f"reader {vals['reader']!r} / modality {vals['treatment']!r} is not listed in the TRUTH sheet.",
                        file=file,
                        sheet=sheet.title,
                        row=n,
                    )
                )
                continue
            if key3 in first:
                problems.append(
                    Problem(
                        f"a second rating for reader {vals['reader']!r}, modality "
                        f"{vals['treatment']!r}, case {vals['case_id']!r} (first on row "
                        f"{first[key3]}); LROC allows one mark per case.",
                        file=file,
                        sheet=sheet.title,
                        row=n,
                    )
                )
                continue
            first[key3] = n
            yield n, vals, x

    for n, v, x in rows(nl_sheet, n_cols, n_names, False) if n_cols else ():
        c = v["case_id"]
        idx = (ti[v["treatment"]], ri[v["reader"]])
        if c in ni:
            fp[idx + (ni[c],)] = x
        elif c in ai:
            il[idx + (ai[c],)] = x
        else:
            problems.append(Problem(f"case {c!r} is not in the TRUTH sheet.", file=file, sheet=nl_sheet.title, row=n, column=n_names["case_id"]))
    for n, v, x in rows(ll_sheet, l_cols, l_names, True) if l_cols else ():
        c = v["case_id"]
        if c in ni:
            problems.append(
                Problem(
                    f"case {c!r} is a normal case; a correct localization (TP row) needs an abnormal case.",
                    file=file,
                    sheet=ll_sheet.title,
                    row=n,
                    column=l_names["case_id"],
                )
            )
        elif c not in ai:
            problems.append(Problem(f"case {c!r} is not in the TRUTH sheet.", file=file, sheet=ll_sheet.title, row=n, column=l_names["case_id"]))
        elif v["lesion_id"] != "1":
            problems.append(
                Problem(
                    f"lesion ID {v['lesion_id']!r}: LROC cases have one lesion, ID 1.",
                    file=file,
                    sheet=ll_sheet.title,
                    row=n,
                    column=l_names["lesion_id"],
                )
            )
        else:
            cl[(ti[v["treatment"]], ri[v["reader"]], ai[c])] = x
    if problems:
        raise ObserverDataError(problems)
    return LrocData(tuple(t_ids), tuple(r_ids), tuple(normal), tuple(abnormal), fp, cl, il, name if name is not None else path.stem)


def write_lroc_excel(data: LrocData, path: str | Path) -> Path:
    """Write an LROC study in RJafroc's JAFROC format (read back by :func:`read_lroc_excel`).

    Sheets ``TRUTH`` (Paradigm ``LROC``, ``FCTRL``), ``FP`` (normal-case ratings and incorrect
    localizations) and ``TP`` (correct localizations); sorted by name they are FP, TP, TRUTH,
    the order RJafroc's reader expects.  Unrated slots (``-inf``) get no row.  Written to a
    temporary file in the same folder, then renamed.

    Returns
    -------
    Path
        The written file.
    """

    import openpyxl

    from analysis.formats.jafroc_excel import _excel_id

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    fp_ws = wb.active
    fp_ws.title = "FP"
    fp_ws.append(["ReaderID", "ModalityID", "CaseID", "FP_Rating"])
    tp_ws = wb.create_sheet("TP")
    tp_ws.append(["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"])
    truth = wb.create_sheet("TRUTH")
    truth.append(["CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm"])
    readers = ",".join(data.readers)
    treatments = ",".join(data.treatments)
    para = iter(["LROC", "FCTRL"])
    for c in data.normal_cases:
        truth.append([_excel_id(c), 0, 0, readers, treatments, next(para, None)])
    for c in data.abnormal_cases:
        truth.append([_excel_id(c), 1, 1, readers, treatments, next(para, None)])
    for i, t in enumerate(data.treatments):
        for j, r in enumerate(data.readers):
            for k, c in enumerate(data.normal_cases):
                if np.isfinite(data.fp[i, j, k]):
                    fp_ws.append([_excel_id(r), _excel_id(t), _excel_id(c), float(data.fp[i, j, k])])
            for k, c in enumerate(data.abnormal_cases):
                if np.isfinite(data.il[i, j, k]):
                    fp_ws.append([_excel_id(r), _excel_id(t), _excel_id(c), float(data.il[i, j, k])])
                if np.isfinite(data.cl[i, j, k]):
                    tp_ws.append([_excel_id(r), _excel_id(t), _excel_id(c), 1, float(data.cl[i, j, k])])
    from tsct_files import atomic_file

    with atomic_file(path, suffix=".xlsx") as tmp:
        wb.save(tmp)
    return path
