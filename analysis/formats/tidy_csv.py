"""A single tidy CSV file holding a whole observer study (truth, readers, marks).

One row per record; the ``record`` column says what the row is.  Columns:

============  ==================================================================================
column        meaning
============  ==================================================================================
record        ``study`` | ``treatment`` | ``reader`` | ``truth`` | ``NL`` | ``LL``
paradigm      ``study`` rows only: ``FROC`` (default), ``ROC`` or ``ROI``
treatment     treatment (modality) ID: ``treatment``, ``NL`` and ``LL`` rows
reader        reader ID: ``reader``, ``NL`` and ``LL`` rows
reader_group  ``reader`` rows, optional: e.g. ``resident``
case_id       case ID: ``truth``, ``NL`` and ``LL`` rows
lesion_id     ``truth`` rows: the lesion (empty = a normal case without lesions);
              ``LL`` rows: the lesion that was marked (may be empty for ROC data)
weight        ``truth`` rows, optional: lesion weight; the weights of a case sum to 1
              (all empty = equal weights)
rating        ``NL``/``LL`` rows: the mark's rating (a number; ``-inf`` only in ROC data)
*other*       any further column is a lesion attribute on ``truth`` rows (e.g. ``location``,
              ``lesion_type``) used for lesion-class subgroups
============  ==================================================================================

``treatment`` and ``reader`` rows fix the order of treatments and readers and keep readers
that made no mark; without them the order of first appearance in the mark rows is used.  Cases
keep the order of their ``truth`` rows (normal cases are placed first).  ROC data: an ``NL``
row gives the rating of a normal case and an ``LL`` row the rating of an abnormal case.
IDs are read as text exactly as written (``007`` stays ``007``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.data import ObserverData, ObserverDataError, Problem, _build_from_frames

__all__ = ["read_tidy_csv", "write_tidy_csv", "TIDY_COLUMNS"]

TIDY_COLUMNS = (
    "record",
    "paradigm",
    "treatment",
    "reader",
    "reader_group",
    "case_id",
    "lesion_id",
    "weight",
    "rating",
)
_RECORDS = ("study", "treatment", "reader", "truth", "NL", "LL")


def read_tidy_csv(path: str | Path, *, name: str | None = None) -> ObserverData:
    """Read a study from the tidy CSV layout described in this module.

    Raises
    ------
    ObserverDataError
        Every problem with its CSV line number (header = line 1) and column.
    """
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise FileNotFoundError(f"No such CSV file: {file!r}")
    from tsct_files import InputFileError, read_input_text

    try:
        text = read_input_text(path, what="CSV file")  # a regular file, UTF-8 or UTF-16 with BOM
    except InputFileError as exc:
        raise ObserverDataError(Problem(str(exc).removeprefix(f"{path}: "), file=file)) from None
    header = next(csv.reader(text.splitlines()[:1]), [])
    twice = sorted({h.strip() for h in header if h.strip() and [x.strip() for x in header].count(h.strip()) > 1})
    if twice:
        raise ObserverDataError(Problem(f"column(s) {twice} appear more than once in the header; keep one of each.", file=file, row=1))
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ObserverDataError(Problem("the file is empty.", file=file)) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ObserverDataError(Problem(f"cannot be parsed as CSV ({exc}).", file=file)) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("record", "treatment", "reader", "case_id", "lesion_id", "rating") if c not in df.columns]
    if missing:
        raise ObserverDataError(Problem(f"missing column(s) {missing}; the header must include {list(TIDY_COLUMNS)}.", file=file, row=1))
    df = df.apply(lambda col: col.str.strip())
    line = pd.Series(np.arange(len(df)) + 2, index=df.index)
    problems: list[Problem] = []
    kinds = df["record"]
    unknown = ~kinds.isin(_RECORDS) & (kinds != "")
    for idx in df.index[unknown]:
        problems.append(Problem(f"unknown record {kinds[idx]!r}; use one of {list(_RECORDS)}.", file=file, row=int(line[idx]), column="record"))
    blank = kinds == ""
    for idx in df.index[blank]:
        if (df.loc[idx] != "").any():
            problems.append(Problem("the record column is empty.", file=file, row=int(line[idx]), column="record"))

    paradigm = "FROC"
    study = df[kinds == "study"]
    if len(study) > 1:
        problems.append(Problem("more than one 'study' row.", file=file, row=int(line[study.index[1]]), column="record"))
    if len(study) and "paradigm" in df.columns and study["paradigm"].iloc[0]:
        paradigm = study["paradigm"].iloc[0].upper()
        if paradigm not in ("ROC", "FROC", "ROI"):
            problems.append(
                Problem(f"paradigm must be ROC, FROC or ROI, got {paradigm!r}.", file=file, row=int(line[study.index[0]]), column="paradigm")
            )
            paradigm = "FROC"

    def declared(kind: str, col: str) -> list[str] | None:
        rows = df[kinds == kind]
        if rows.empty:
            return None
        out: list[str] = []
        for idx, v in rows[col].items():
            if not v:
                problems.append(Problem(f"{kind} row without a {col}.", file=file, row=int(line[idx]), column=col))
            elif v in out:
                problems.append(Problem(f"{kind} {v!r} is declared twice.", file=file, row=int(line[idx]), column=col))
            else:
                out.append(v)
        return out

    treatments = declared("treatment", "treatment")
    readers = declared("reader", "reader")
    groups: dict[str, str] = {}
    if "reader_group" in df.columns:
        for _, row in df[(kinds == "reader") & (df["reader_group"] != "")].iterrows():
            groups[row["reader"]] = row["reader_group"]

    reserved = set(TIDY_COLUMNS)
    attr_cols = [c for c in df.columns if c not in reserved]
    truth_rows = df[kinds == "truth"]
    truth_cols = ["case_id", "lesion_id"] + (["weight"] if "weight" in df.columns else [])
    truth = truth_rows[truth_cols + attr_cols].replace("", None)
    nl = df[kinds == "NL"][["treatment", "reader", "case_id", "rating"]].replace("", None)
    ll = df[kinds == "LL"][["treatment", "reader", "case_id", "lesion_id", "rating"]].replace("", None)
    row_of = {
        "truth": line[truth_rows.index].to_numpy(),
        "NL": line[nl.index].to_numpy(),
        "LL": line[ll.index].to_numpy(),
    }

    def locate(table: str, index: int, column: str | None) -> Problem:
        return Problem("", file=file, sheet=None, row=int(row_of[table][index]), column=column)

    try:
        data = _build_from_frames(
            truth.reset_index(drop=True),
            nl.reset_index(drop=True),
            ll.reset_index(drop=True),
            paradigm=paradigm,
            treatments=treatments,
            readers=readers,
            reader_groups=None,
            name=name if name is not None else path.stem,
            locate=locate,
            table_names={"truth": "truth", "nl": "NL", "ll": "LL"},
        )
    except ObserverDataError as exc:
        raise ObserverDataError(problems + list(exc.problems)) from None
    if problems:
        raise ObserverDataError(problems)
    if groups:
        unknown_r = sorted(set(groups) - set(data.readers))
        if unknown_r:
            raise ObserverDataError(Problem(f"reader groups given for unknown readers {unknown_r}.", file=file))
        data = data._replace(reader_groups=groups)
    return data


def write_tidy_csv(data: ObserverData, path: str | Path) -> Path:
    """Write a study in the tidy CSV layout (lossless: ratings at full precision)."""
    truth, nl, ll = data.to_frames()
    attrs = list(data.lesion_attribute_names())
    rows: list[dict[str, object]] = [{"record": "study", "paradigm": data.paradigm}]
    rows += [{"record": "treatment", "treatment": t} for t in data.treatments]
    rows += [{"record": "reader", "reader": r, "reader_group": data.reader_groups.get(r, "")} for r in data.readers]
    for rec in truth.to_dict("records"):
        row: dict[str, object] = {"record": "truth", "case_id": rec["case_id"]}
        if rec["lesion_id"] is not None:
            row.update(lesion_id=rec["lesion_id"], weight=repr(float(rec["weight"])))
            for a in attrs:
                if rec.get(a) is not None:
                    row[a] = rec[a]
        rows.append(row)
    for kind, frame in (("NL", nl), ("LL", ll)):
        for rec in frame.to_dict("records"):
            x = float(rec["rating"])
            rows.append({"record": kind, **{k: v for k, v in rec.items() if k != "rating"}, "rating": "-inf" if x == -math.inf else repr(x)})
    out = pd.DataFrame(rows, columns=[*TIDY_COLUMNS, *attrs]).fillna("")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from tsct_files import csv_safe_frame

    csv_safe_frame(out).to_csv(path, index=False)  # text a spreadsheet would run as a formula is quoted
    return path
