"""JAFROC Excel files (the input format of RJafroc and Windows JAFROC).

A workbook has three sheets, found by case-insensitive name in any order:

``TRUTH``
    One row per normal case (``LesionID`` = 0, ``Weight`` = 0) and one row per lesion of an
    abnormal case.  Current ("new") layout: ``CaseID | LesionID | Weight | ReaderID |
    ModalityID | Paradigm``, where ``ReaderID``/``ModalityID`` hold the comma- or
    space-separated list of readers/treatments that read the case and the ``Paradigm``
    column holds ``ROC``/``FROC`` in its first data row and ``FCTRL`` (or ``CROSSED``) in the
    second.  Older layout: ``CaseID | LesionID | Weight`` only; readers and treatments are then
    taken from the mark sheets and the paradigm is inferred (ROC when every case has exactly
    one rating per reader and treatment, otherwise FROC).  Further named columns (e.g.
    ``location``, ``lesion_type``) are read as lesion attributes.
``FP`` or ``NL``
    One row per non-lesion localisation: ``ReaderID | ModalityID | CaseID | FP_Rating``
    (``NL_Rating``/``NLRating`` also accepted).  ROC: the rating of each normal case.
``TP`` or ``LL``
    One row per lesion localisation: ``ReaderID | ModalityID | CaseID | LesionID |
    TP_Rating`` (``LL_Rating``/``LLRating`` also accepted).  ROC: the rating of each
    abnormal case (``LesionID`` = 1).

Optional sheets written by :func:`write_jafroc_excel` and understood by
:func:`read_jafroc_excel` (RJafroc ignores them): ``TSCT_ID_MAP`` (``Kind | FileID |
OriginalID | CaseFileID``, maps IDs in the file back to the study's own IDs) and
``TSCT_READERS`` (``ReaderID | Group``).  Their names sort after ``TRUTH``, as RJafroc's reader
requires (:data:`RJAFROC_SHEET_RULE`); the older names ``ID_MAP`` and ``READERS`` are read too.

Differences from RJafroc's reader (deliberate): any text or integer IDs are accepted
(non-numeric, non-consecutive, lesion IDs need not be 1..n); readers and treatments keep the
order of the TRUTH list (RJafroc labels them in string-sorted order, which mislabels 10 or more
readers); fully blank rows are ignored; every problem of a sheet is reported at once with its
Excel row and column.  LROC files and split-plot designs raise :class:`UnsupportedDataError`.

ROI (region-of-interest) data: ``Paradigm`` = ``ROI`` (current layout), or, in the older layout,
inferred when every lesion is rated and every case has the same number ``Q >= 2`` of rated
regions.  The FP/NL sheet holds one row per lesion-free region (normal cases and abnormal
cases), the TP/LL sheet one row per lesion region; see ``docs/analysis-data.md``.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.data import ObserverData, ObserverDataError, Problem, Records, _build_from_frames
from analysis.formats._common import (
    UnsupportedDataError,
    is_blank,
    natural_sorted,
    norm_header,
    parse_id,
)

__all__ = ["ID_MAP_SHEET", "READERS_SHEET", "RJAFROC_SHEET_RULE", "read_jafroc_excel", "rjafroc_sheet_order_ok", "write_jafroc_excel"]

#: Our extension sheets.  Their names sort after ``TRUTH`` (``TS`` > ``TR``) in every collation,
#: so RJafroc's reader, which sorts the sheet names and takes the first three, still finds
#: FP, TP, TRUTH.  ``ID_MAP`` and ``READERS`` (written before 2026-12) are still read.
ID_MAP_SHEET = "TSCT_ID_MAP"
READERS_SHEET = "TSCT_READERS"
RJAFROC_SHEET_RULE = (
    "RJafroc's DfReadDataFile(newExcelFileFormat = TRUE) sorts the upper-cased sheet names and "
    "needs FP or NL first, TP or LL second and TRUTH third; every other sheet must sort after TRUTH."
)

_TRUTH_SPEC = {
    "case_id": ("caseid",),
    "lesion_id": ("lesionid",),
    "weight": ("weight", "weights"),
    "reader": ("readerid",),
    "treatment": ("modalityid", "treatmentid"),
    "paradigm": ("paradigm",),
}
_NL_SPEC = {
    "reader": ("readerid",),
    "treatment": ("modalityid", "treatmentid"),
    "case_id": ("caseid",),
    "rating": ("fprating", "nlrating", "rating"),
}
_LL_SPEC = {
    "reader": ("readerid",),
    "treatment": ("modalityid", "treatmentid"),
    "case_id": ("caseid",),
    "lesion_id": ("lesionid",),
    "rating": ("tprating", "llrating", "rating"),
}
_CROSSED = {"FCTRL", "CROSSED", "FACTORIAL"}
_LIST_SPLIT = re.compile(r"[,\s]+")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


class _Sheet:
    """A worksheet's rows with their Excel row numbers and a header -> column map.

    Large mark sheets may instead arrive as typed columns (``arrays``, read by fastexcel with
    strict types); their rows are then read only if the row-by-row path is needed
    (:meth:`materialize`).
    """

    def __init__(
        self,
        title: str,
        rows: list[tuple[Any, ...]] | None,
        *,
        arrays: list[np.ndarray] | None = None,
        header: tuple[Any, ...] | None = None,
        loader: Any = None,
    ):
        self.title = title
        self._rows = rows  # rows[0] is the header (Excel row 1)
        self.arrays = arrays
        self._header = header
        self._loader = loader

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self.materialize()
        assert self._rows is not None
        return self._rows

    def materialize(self) -> None:
        """Read the sheet's rows (dropping the typed columns) for the row-by-row path."""
        if self._rows is None:
            self._rows = self._loader() if self._loader is not None else []
        self.arrays = None
        self._header = None

    @property
    def header(self) -> tuple[Any, ...]:
        if self._header is not None:
            return self._header
        return tuple(self.rows[0]) if self.rows else ()

    @property
    def empty(self) -> bool:
        if self.arrays is not None:
            return False
        return not self.rows

    def column_arrays(self) -> list[np.ndarray]:
        """The data rows (header excluded) as one array per column."""
        if self.arrays is not None:
            return self.arrays
        from analysis.formats._fast_marks import transpose

        return transpose(self.rows)

    def columns(
        self,
        spec: Mapping[str, Sequence[str]],
        required: Sequence[str],
        file: str,
        problems: list[Problem],
    ) -> tuple[dict[str, int], dict[str, str]]:
        """Map logical column names to indices; report missing required columns."""
        norm = [norm_header(h) for h in self.header]
        idx: dict[str, int] = {}
        names: dict[str, str] = {}
        for key, aliases in spec.items():
            for alias in aliases:
                if alias in norm:
                    idx[key] = norm.index(alias)
                    names[key] = str(self.header[idx[key]])
                    break
        for key in required:
            if key not in idx:
                expected = spec[key][0]
                problems.append(
                    Problem(
                        f"required column {expected!r} (e.g. "
                        f"{'/'.join(_display(a) for a in spec[key])}) is missing; the header row has "
                        f"{[h for h in self.header if h is not None]}.",
                        file=file,
                        sheet=self.title,
                        row=1,
                        column=_display(expected),
                    )
                )
        return idx, names


def _display(alias: str) -> str:
    return {
        "caseid": "CaseID",
        "lesionid": "LesionID",
        "weight": "Weight",
        "weights": "Weights",
        "readerid": "ReaderID",
        "modalityid": "ModalityID",
        "treatmentid": "TreatmentID",
        "paradigm": "Paradigm",
        "fprating": "FP_Rating",
        "nlrating": "NL_Rating",
        "tprating": "TP_Rating",
        "llrating": "LL_Rating",
        "rating": "Rating",
    }.get(alias, alias)


def _load_workbook(path: Path) -> dict[str, _Sheet]:
    """Every sheet's cell values, by upper-cased sheet name.

    Read with python-calamine (Rust; about 14x faster than openpyxl on a 10,000-case FROC
    workbook, see ``bench/bench_analysis.py --workbook``) when it is installed, else with
    openpyxl.  Both read every stored cell whatever the sheet's ``<dimension>`` claims:
    openxlsx (RJafroc's ``DfWriteExcelDataFile``) writes ``<dimension ref="A1"/>`` on full
    sheets, which openpyxl's read-only mode would trust (it would see column A only).
    """
    if not path.exists():
        raise FileNotFoundError(f"No such Excel file: {str(path)!r}")
    if path.stat().st_size == 0:
        raise ObserverDataError(Problem("the file is empty (0 bytes); export the workbook again.", file=str(path)))
    _check_workbook_container(path)
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:  # pragma: no cover - python-calamine is a dependency
        return _load_workbook_openpyxl(path)
    typed_reader: list = []  # one fastexcel reader for both mark sheets (opened on first use)
    try:
        wb = CalamineWorkbook.from_path(str(path))
        sheets = {}
        for title in wb.sheet_names:
            key = title.strip().upper()

            def load(title: str = title) -> list:
                return wb.get_sheet_by_name(title).to_python(skip_empty_area=False)

            typed = _typed_columns(path, title, typed_reader) if key in _MARK_SHEETS else None
            if typed is not None:
                sheets[key] = _Sheet(title, None, arrays=typed[1], header=typed[0], loader=load)
            else:
                sheets[key] = _Sheet(title, load())
    except Exception as exc:  # calamine raises its own error types (CalamineError, ...)
        if isinstance(exc, (MemoryError, KeyboardInterrupt)):
            raise
        if zipfile.is_zipfile(path):
            # a valid zip calamine cannot parse: let openpyxl try before giving up
            try:
                return _load_workbook_openpyxl(path)
            except ObserverDataError:
                pass
        raise ObserverDataError(
            Problem(
                f"cannot be opened as an .xlsx workbook ({type(exc).__name__}: {exc}); save it from Excel as 'Excel Workbook (*.xlsx)'.",
                file=str(path),
            )
        ) from exc
    return sheets


#: a workbook whose parts unpack to more than this is refused before it is read (a zip bomb)
MAX_WORKBOOK_UNPACKED_BYTES = 2 << 30
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _check_workbook_container(path: Path) -> None:
    """Refuse, before any parsing, a password-protected workbook and a zip whose parts would unpack
    to more than :data:`MAX_WORKBOOK_UNPACKED_BYTES`.

    An OLE compound file is either an old Excel 97-2003 workbook (``.xls``: read by calamine) or
    an encrypted (password-protected) workbook, which Excel also stores in that container, with an
    ``EncryptedPackage`` stream; under a ``.xlsx``/``.xlsm`` name it can only be the latter.
    """
    with path.open("rb") as handle:
        head = handle.read(8)
    if head == _OLE_MAGIC:
        encrypted = "EncryptedPackage".encode("utf-16-le") in path.read_bytes()
        if encrypted or path.suffix.lower() != ".xls":
            raise ObserverDataError(
                Problem(
                    "is a password-protected (encrypted) workbook, which cannot be read; "
                    "remove the password and save it from Excel as 'Excel Workbook (*.xlsx)'.",
                    file=str(path),
                )
            )
        return
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # the reader reports a damaged archive
    if unpacked > MAX_WORKBOOK_UNPACKED_BYTES:
        raise ObserverDataError(
            Problem(
                f"its parts would unpack to {unpacked:,} bytes ({path.stat().st_size:,} on disk), more than any "
                f"study workbook ({MAX_WORKBOOK_UNPACKED_BYTES:,}): a damaged or malicious file (zip bomb); it was not read.",
                file=str(path),
            )
        )


_MARK_SHEETS = {"FP", "NL", "TP", "LL"}
_TYPED_MIN_BYTES = 1 << 20  # below 1 MiB the row reader is as fast


def _typed_columns(
    path: Path,
    title: str,
    reader_cache: list | None = None,
) -> tuple[tuple[Any, ...], list[np.ndarray]] | None:
    """A large mark sheet as typed columns via fastexcel (strict types), or None.

    Strict typing makes every column one type (numbers as float64, text as str, blanks as
    missing), so nothing is converted lossily; a column mixing numbers and text, or fastexcel
    not being installed, returns None and the sheet is read row by row.
    """
    if path.stat().st_size < _TYPED_MIN_BYTES:
        return None
    try:
        import fastexcel
    except ImportError:
        return None
    try:
        if reader_cache:
            reader = reader_cache[0]
        else:
            reader = fastexcel.read_excel(str(path))
            if reader_cache is not None:
                reader_cache.append(reader)
        sheet = reader.load_sheet(title, header_row=0, schema_sample_rows=None, dtype_coercion="strict")
        table = sheet.to_arrow()
    except Exception:  # fastexcel's own error types: mixed columns, odd files
        return None
    header = tuple(str(n) for n in table.column_names)
    arrays = []
    for column in table.columns:
        arr = column.to_numpy(zero_copy_only=False)
        if arr.dtype.kind not in "fiUO":
            return None  # booleans, dates: the row path gives the messages
        arrays.append(np.asarray(arr, dtype=float) if arr.dtype.kind in "fi" else arr.astype(object))
    return header, arrays


def _load_workbook_openpyxl(path: Path) -> dict[str, _Sheet]:
    import warnings

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    with warnings.catch_warnings():
        # openpyxl warns about workbook extensions (data validation, ...) it does not keep
        warnings.filterwarnings("ignore", category=UserWarning, module="openpyxl")
        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
            raise ObserverDataError(
                Problem(f"cannot be opened as an .xlsx workbook ({exc}); save it from Excel as 'Excel Workbook (*.xlsx)'.", file=str(path))
            ) from exc
        try:
            sheets = {}
            for ws in wb.worksheets:
                ws.reset_dimensions()  # do not trust <dimension ref="A1"/> (openxlsx)
                rows = [tuple(r) for r in ws.iter_rows(values_only=True)]
                sheets[ws.title.strip().upper()] = _Sheet(ws.title, rows)
        finally:
            wb.close()
    return sheets


def _find(sheets: dict[str, _Sheet], names: Sequence[str], what: str, file: str) -> _Sheet:
    found = [sheets[n] for n in names if n in sheets]
    if not found:
        raise ObserverDataError(
            Problem(
                f"no {what} sheet: expected a sheet named {' or '.join(names)}; the workbook has "
                f"{[s.title for s in sheets.values()]}. Rename the sheet.",
                file=file,
            )
        )
    if len(found) > 1:
        raise ObserverDataError(Problem(f"both {found[0].title!r} and {found[1].title!r} sheets exist; keep only one {what} sheet.", file=file))
    return found[0]


def _open_sheets(
    path: str | Path,
    nl_what: str = "FP/NL (non-lesion localisations)",
    ll_what: str = "TP/LL (lesion localisations)",
) -> tuple[Path, str, dict[str, _Sheet], _Sheet, _Sheet, _Sheet]:
    """Open a JAFROC workbook and find its TRUTH, FP/NL and TP/LL sheets (every reader's start).

    Returns ``(path, file, sheets, truth, nl, ll)``; ``nl_what``/``ll_what`` describe the mark
    sheets in the message when one is missing (their meaning differs in LROC files).
    """
    path = Path(path)
    file = str(path)
    sheets = _load_workbook(path)
    return (
        path,
        file,
        sheets,
        _find(sheets, ["TRUTH"], "TRUTH", file),
        _find(sheets, ["FP", "NL"], nl_what, file),
        _find(sheets, ["TP", "LL"], ll_what, file),
    )


def _id_map(sheets: dict[str, _Sheet], file: str) -> dict[tuple[str, str, str], str]:
    """Parse the optional ID_MAP sheet: (kind, case_file_id or '', file_id) -> original ID."""
    sheet = sheets.get(ID_MAP_SHEET) or sheets.get("ID_MAP")
    if sheet is None or not sheet.rows:
        return {}
    problems: list[Problem] = []
    spec = {"kind": ("kind",), "file_id": ("fileid",), "original_id": ("originalid",), "case_file_id": ("casefileid",)}
    cols, _ = sheet.columns(spec, ["kind", "file_id", "original_id"], file, problems)
    if problems:
        raise ObserverDataError(problems)
    out: dict[tuple[str, str, str], str] = {}
    for n, row in enumerate(sheet.rows[1:], start=2):
        cells = {k: row[i] if i < len(row) else None for k, i in cols.items()}
        if all(is_blank(v) for v in cells.values()):
            continue
        kind = str(cells["kind"]).strip().lower()
        fid, _ = parse_id(cells["file_id"])
        orig = "" if is_blank(cells["original_id"]) else str(cells["original_id"])
        cfid, _ = parse_id(cells.get("case_file_id"))
        if kind not in ("case", "lesion", "reader", "treatment") or fid is None or not orig:
            problems.append(
                Problem("expected Kind in case/lesion/reader/treatment and non-empty FileID and OriginalID.", file=file, sheet=sheet.title, row=n)
            )
            continue
        out[(kind, (cfid or "") if kind == "lesion" else "", fid)] = orig
    if problems:
        raise ObserverDataError(problems)
    return out


def read_jafroc_excel(path: str | Path, *, name: str | None = None) -> ObserverData:
    """Read a JAFROC Excel workbook (current six-column or older three-column TRUTH sheet).

    Parameters
    ----------
    path : str or Path
        The ``.xlsx`` file.
    name : str, optional
        Study name; default the file name without extension.

    Returns
    -------
    ObserverData
        Treatments and readers in the order of the TRUTH sheet's lists (current layout) or in
        natural order of the IDs in the mark sheets (older layout: "2" before "10", as RJafroc
        sorts them numerically); normal cases first, then abnormal cases, each in the order of
        their first TRUTH row; lesions in TRUTH row order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ObserverDataError
        For every malformed input, listing all problems found, each with file, sheet, Excel
        row and column.
    UnsupportedDataError
        For LROC data and designs that are not fully crossed.
    """
    path, file, sheets, truth_sheet, nl_sheet, ll_sheet = _open_sheets(path)
    idmap = _id_map(sheets, file)

    def mapped(kind: str, fid: str, case_fid: str = "") -> str:
        return idmap.get((kind, case_fid if kind == "lesion" else "", fid), fid)

    problems: list[Problem] = []
    for sheet in (nl_sheet, ll_sheet, truth_sheet):
        norm = {norm_header(h) for h in sheet.header}
        if {"modalityid1", "modalityid2"} <= norm:
            raise UnsupportedDataError(
                Problem(
                    "cross-modality (two modality factors, FCTRL-X-MOD) files are not supported; "
                    "analyse one modality factor at a time with a single ModalityID column.",
                    file=file,
                    sheet=sheet.title,
                    row=1,
                )
            )
    if not truth_sheet.rows:
        raise ObserverDataError(Problem("the TRUTH sheet is empty.", file=file, sheet=truth_sheet.title))
    t_cols, t_names = truth_sheet.columns(_TRUTH_SPEC, ["case_id", "lesion_id", "weight"], file, problems)
    header_problems: list[Problem] = []
    n_cols, n_names = nl_sheet.columns(_NL_SPEC, list(_NL_SPEC), file, header_problems) if not nl_sheet.empty else ({}, {})
    l_cols, l_names = ll_sheet.columns(_LL_SPEC, list(_LL_SPEC), file, header_problems) if not ll_sheet.empty else ({}, {})
    if header_problems and (nl_sheet.arrays is not None or ll_sheet.arrays is not None):
        # report the header as the user sees it (typed columns rename blank headers)
        nl_sheet.materialize()
        ll_sheet.materialize()
        header_problems = []
        n_cols, n_names = nl_sheet.columns(_NL_SPEC, list(_NL_SPEC), file, header_problems) if nl_sheet.rows else ({}, {})
        l_cols, l_names = ll_sheet.columns(_LL_SPEC, list(_LL_SPEC), file, header_problems) if ll_sheet.rows else ({}, {})
    problems.extend(header_problems)
    if problems:
        raise ObserverDataError(problems)
    new_format = "reader" in t_cols and "treatment" in t_cols
    known = set(t_cols.values())
    attr_cols = {
        i: str(h).strip()
        for i, h in enumerate(truth_sheet.header)
        if i not in known and h is not None and not is_blank(h) and not isinstance(h, (int, float))
    }

    def cell(row: tuple, i: int | None) -> Any:
        return row[i] if i is not None and i < len(row) else None

    # ---- TRUTH
    truth_recs: list[dict[str, Any]] = []
    truth_rows: list[int] = []
    paradigm_cells: list[Any] = []
    reader_lists: list[tuple[int, list[str]]] = []
    list_memo: dict[tuple[str, str], list[str]] = {}  # the same list cell on every TRUTH row
    treatment_lists: list[tuple[int, list[str]]] = []
    for n, row in enumerate(truth_sheet.rows[1:], start=2):
        if all(is_blank(cell(row, i)) for i in t_cols.values()):
            continue
        if "paradigm" in t_cols:
            paradigm_cells.append(cell(row, t_cols["paradigm"]))
        cid, err = parse_id(cell(row, t_cols["case_id"]))
        bad = False
        if err or cid is None:
            problems.append(
                Problem(
                    err or "the case ID is empty; fill it in or delete the row.", file=file, sheet=truth_sheet.title, row=n, column=t_names["case_id"]
                )
            )
            bad = True
        lid, err = parse_id(cell(row, t_cols["lesion_id"]))
        if err or lid is None:
            problems.append(
                Problem(
                    err or "the lesion ID is empty; use 0 for a normal case, 1, 2, ... for lesions.",
                    file=file,
                    sheet=truth_sheet.title,
                    row=n,
                    column=t_names["lesion_id"],
                )
            )
            bad = True
        w_raw = cell(row, t_cols["weight"])
        if is_blank(w_raw):
            w = None
        elif isinstance(w_raw, bool) or not _is_number(w_raw):
            problems.append(Problem(f"weight {w_raw!r} is not a number.", file=file, sheet=truth_sheet.title, row=n, column=t_names["weight"]))
            bad = True
            w = None
        else:
            w = float(w_raw)
        if new_format:
            for key, store in (("reader", reader_lists), ("treatment", treatment_lists)):
                raw = cell(row, t_cols[key])
                memo_key = (key, raw if isinstance(raw, str) else repr(raw))
                ids = list_memo.get(memo_key)
                if ids is None:
                    ids = list_memo[memo_key] = [mapped(key, x) for x in _split_list(raw)]
                if not ids:
                    problems.append(
                        Problem(
                            f"the {t_names[key]} list is empty; list the {key}s that read this case (comma separated).",
                            file=file,
                            sheet=truth_sheet.title,
                            row=n,
                            column=t_names[key],
                        )
                    )
                    bad = True
                else:
                    store.append((n, ids))
        if bad:
            continue
        assert cid is not None and lid is not None
        rec = {
            "case_id": mapped("case", cid),
            "lesion_id": None if lid == "0" else mapped("lesion", lid, cid),
            "weight": w,
        }
        for i, attr in attr_cols.items():
            v = cell(row, i)
            if not is_blank(v):
                as_id, err = parse_id(v)
                rec[attr] = as_id if (as_id is not None and not err) else str(v).strip()
        truth_recs.append(rec)
        truth_rows.append(n)
    if not truth_recs and not problems:
        problems.append(Problem("the TRUTH sheet has no cases.", file=file, sheet=truth_sheet.title))

    # ---- paradigm, design, readers, treatments
    paradigm: str | None = None
    treatments: list[str] | None = None
    readers: list[str] | None = None
    if new_format:
        p = [str(x).strip().upper() for x in paradigm_cells if not is_blank(x)]
        paradigm = p[0] if p else None
        design = p[1] if len(p) > 1 else "FCTRL"
        if paradigm == "LROC":
            raise UnsupportedDataError(
                Problem(
                    (
                        "LROC data are not supported by this reader (it returns ROC/FROC/ROI "
                        "data): read the file with analysis.formats.lroc_excel.read_lroc_excel "
                        "(tsct analyze lroc and cad-vs-rad read it directly); LrocData.to_roc() "
                        "converts it to ROC."
                    ),
                    file=file,
                    sheet=truth_sheet.title,
                    row=2,
                    column=t_names.get("paradigm"),
                )
            )
        if paradigm not in ("ROC", "FROC", "ROI"):
            problems.append(
                Problem(
                    f"the first entry of the Paradigm column must be ROC, FROC or ROI, got {p[0] if p else 'nothing'!r}.",
                    file=file,
                    sheet=truth_sheet.title,
                    row=2,
                    column=t_names.get("paradigm", "Paradigm"),
                )
            )
        if design not in _CROSSED:
            hint = (
                " Split-plot-C studies (each reader group reads its own cases in every treatment) are analysed by 'tsct analyze split-plot'."
                if design.startswith("SPLIT-PLOT")
                else ""
            )
            raise UnsupportedDataError(
                Problem(
                    f"study design {design!r} is not supported here; this reader takes fully crossed "
                    f"designs (FCTRL: every reader reads every case in every treatment).{hint}",
                    file=file,
                    sheet=truth_sheet.title,
                    row=3,
                    column=t_names.get("paradigm", "Paradigm"),
                )
            )
        for key, lists in (("reader", reader_lists), ("treatment", treatment_lists)):
            order: dict[str, None] = {}
            for _, ids in lists:
                for x in ids:
                    order.setdefault(x, None)
            full = list(order)
            for n, ids in lists:
                # (len(set) == len: no repeats; checked first, as most rows share one list)
                twice = [] if len(set(ids)) == len(ids) else sorted({x for x in ids if ids.count(x) > 1})
                if twice:
                    problems.append(
                        Problem(
                            f"{key} ID(s) {twice} appear more than once in the list {ids}; each {key} must have a distinct ID.",
                            file=file,
                            sheet=truth_sheet.title,
                            row=n,
                            column=t_names[key],
                        )
                    )
                elif set(ids) != set(full):
                    missing = [x for x in full if x not in ids]
                    problems.append(
                        Problem(
                            f"this case lists {key}s {ids}, but the study has {full} (missing "
                            f"{missing}); only fully crossed designs are supported: every {key} "
                            f"must be listed on every row.",
                            file=file,
                            sheet=truth_sheet.title,
                            row=n,
                            column=t_names[key],
                        )
                    )
            if key == "reader":
                readers = full
            else:
                treatments = full

    # ---- mark sheets
    def marks(sheet: _Sheet, cols: dict[str, int], names: dict[str, str], with_lesion: bool):
        recs: list[dict[str, Any]] = []
        rows: list[int] = []
        for n, row in enumerate(sheet.rows[1:], start=2):
            if all(is_blank(cell(row, i)) for i in cols.values()):
                continue
            rec: dict[str, Any] = {}
            bad = False
            keys = ["reader", "treatment", "case_id"] + (["lesion_id"] if with_lesion else [])
            for key in keys:
                v, err = parse_id(cell(row, cols[key]))
                if err or v is None:
                    problems.append(Problem(err or f"the {names[key]} cell is empty.", file=file, sheet=sheet.title, row=n, column=names[key]))
                    bad = True
                rec[key] = v
            if bad:
                continue
            rec["reader"] = mapped("reader", rec["reader"])
            rec["treatment"] = mapped("treatment", rec["treatment"])
            if with_lesion:
                rec["lesion_id"] = mapped("lesion", rec["lesion_id"], rec["case_id"])
            rec["case_id"] = mapped("case", rec["case_id"])
            rec["rating"] = cell(row, cols["rating"])
            if is_blank(rec["rating"]):
                problems.append(
                    Problem(
                        f"the {names['rating']} cell is empty; every mark needs its rating (delete the row if there is no mark).",
                        file=file,
                        sheet=sheet.title,
                        row=n,
                        column=names["rating"],
                    )
                )
                continue
            recs.append(rec)
            rows.append(n)
        return recs, rows

    groups = _reader_groups(sheets, file, mapped)
    if not problems and truth_recs and n_cols and l_cols:
        fast = _fast_read(
            truth_recs,
            attr_cols,
            nl_sheet,
            n_cols,
            ll_sheet,
            l_cols,
            mapped,
            paradigm=paradigm,
            new_format=new_format,
            treatments=treatments,
            readers=readers,
            name=name if name is not None else path.stem,
        )
        if fast is not None:
            return _finish(fast, new_format, groups, file)
    if nl_sheet.arrays is not None or ll_sheet.arrays is not None:
        nl_sheet.materialize()
        ll_sheet.materialize()
        n_cols, n_names = nl_sheet.columns(_NL_SPEC, list(_NL_SPEC), file, problems) if nl_sheet.rows else ({}, {})
        l_cols, l_names = ll_sheet.columns(_LL_SPEC, list(_LL_SPEC), file, problems) if ll_sheet.rows else ({}, {})
        if problems:
            raise ObserverDataError(problems)

    nl_recs, nl_rows = marks(nl_sheet, n_cols, n_names, False) if n_cols else ([], [])
    ll_recs, ll_rows = marks(ll_sheet, l_cols, l_names, True) if l_cols else ([], [])

    if not new_format:
        readers = natural_sorted({r["reader"] for r in nl_recs + ll_recs})
        treatments = natural_sorted({r["treatment"] for r in nl_recs + ll_recs})

    attr_names = list(dict.fromkeys(attr_cols.values()))
    truth_df = Records(truth_recs, ["case_id", "lesion_id", "weight", *attr_names])
    nl_df = Records(nl_recs, ["reader", "treatment", "case_id", "rating"])
    ll_df = Records(ll_recs, ["reader", "treatment", "case_id", "lesion_id", "rating"])
    row_of = {"TRUTH": truth_rows, "NL": nl_rows, "LL": ll_rows}
    title_of = {"TRUTH": truth_sheet.title, "NL": nl_sheet.title, "LL": ll_sheet.title}

    def locate(table: str, index: int, column: str | None) -> Problem:
        return Problem("", file=file, sheet=title_of[table], row=row_of[table][index], column=column)

    build_paradigm = paradigm if paradigm in ("ROC", "FROC", "ROI") else "FROC"
    try:
        data = _build_from_frames(
            truth_df,
            nl_df,
            ll_df,
            paradigm=build_paradigm,
            treatments=treatments or None,
            readers=readers or None,
            reader_groups=None,
            name=name if name is not None else path.stem,
            locate=locate,
            table_names={"truth": "TRUTH", "nl": "NL", "ll": "LL"},
            column_names={
                "truth": t_names,
                "nl": n_names,
                "ll": l_names,
            },
        )
    except ObserverDataError as exc:
        raise ObserverDataError(problems + list(exc.problems)) from None
    if problems:
        raise ObserverDataError(problems)
    return _finish(data, new_format, groups, file)


def _finish(data: ObserverData, new_format: bool, groups: dict[str, str], file: str) -> ObserverData:
    """Old-layout paradigm inference and reader groups, common to both reading paths."""
    if not new_format:
        data = _infer_old_format_paradigm(data, file)
    if groups:
        unknown = sorted(set(groups) - set(data.readers))
        if unknown:
            raise ObserverDataError(Problem(f"readers {unknown} are not in the study.", file=file, sheet=READERS_SHEET))
        data = data._replace(reader_groups=groups)
    return data


def _fast_read(
    truth_recs: list[dict[str, Any]],
    attr_cols: dict[int, str],
    nl_sheet: _Sheet,
    n_cols: dict[str, int],
    ll_sheet: _Sheet,
    l_cols: dict[str, int],
    mapped,
    *,
    paradigm: str | None,
    new_format: bool,
    treatments: list[str] | None,
    readers: list[str] | None,
    name: str,
) -> ObserverData | None:
    """The vectorised path for regular files (``_fast_marks``); None sends the caller row by row."""
    from analysis.formats._fast_marks import distinct_ids, fast_marks

    nl_arrays, ll_arrays = nl_sheet.column_arrays(), ll_sheet.column_arrays()
    sheets = [(nl_arrays, n_cols), (ll_arrays, l_cols)]
    if not new_format:
        t = distinct_ids(sheets, "treatment", lambda v: mapped("treatment", v))
        r = distinct_ids(sheets, "reader", lambda v: mapped("reader", v))
        if not t or not r:
            return None
        treatments, readers = natural_sorted(t), natural_sorted(r)
    elif paradigm not in ("ROC", "FROC", "ROI") or not treatments or not readers:
        return None
    attr_names = list(dict.fromkeys(attr_cols.values()))
    truth_df = Records(truth_recs, ["case_id", "lesion_id", "weight", *attr_names])
    empty_nl = Records([], ["reader", "treatment", "case_id", "rating"])
    empty_ll = Records([], ["reader", "treatment", "case_id", "lesion_id", "rating"])
    try:
        skeleton = _build_from_frames(
            truth_df,
            empty_nl,
            empty_ll,
            paradigm="FROC",
            treatments=treatments,
            readers=readers,
            reader_groups=None,
            name=name,
            locate=lambda table, index, column: Problem(""),
        )
    except ObserverDataError:
        return None
    try:
        data = fast_marks(skeleton, nl_arrays, n_cols, ll_arrays, l_cols, mapped, roc=paradigm == "ROC")
    except ObserverDataError:
        return None
    return data._replace(paradigm="ROI") if paradigm == "ROI" else data


def _safe_append(sheet: Any, row: Sequence[Any]) -> None:
    """Append a row to a write-only sheet; text that Excel would run as a formula is written as text."""
    from tsct_files import csv_safe_cell

    sheet.append([csv_safe_cell(v) for v in row])


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return not (isinstance(v, float) and math.isnan(v))
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return False
        return True
    return False


def _split_list(raw: Any) -> list[str]:
    if is_blank(raw):
        return []
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        v, err = parse_id(raw)
        return [v] if v and not err else []
    return [x for x in _LIST_SPLIT.split(str(raw).strip()) if x]


def _reader_groups(sheets: dict[str, _Sheet], file: str, mapped) -> dict[str, str]:
    sheet = sheets.get(READERS_SHEET) or sheets.get("READERS")
    if sheet is None or not sheet.rows:
        return {}
    problems: list[Problem] = []
    cols, _ = sheet.columns({"reader": ("readerid",), "group": ("group", "readergroup")}, ["reader", "group"], file, problems)
    if problems:
        raise ObserverDataError(problems)
    out = {}
    for row in sheet.rows[1:]:
        r, _ = parse_id(row[cols["reader"]] if cols["reader"] < len(row) else None)
        g = row[cols["group"]] if cols["group"] < len(row) else None
        if r is not None and not is_blank(g):
            out[mapped("reader", r)] = str(g).strip()
    return out


def _infer_old_format_paradigm(data: ObserverData, file: str) -> ObserverData:
    """Older TRUTH layout has no Paradigm column: infer ROC, ROI or FROC.

    ROI: every lesion rated and every case carrying the same number ``Q >= 2`` of rated regions
    (its NL rows plus its lesions), as in RJafroc's ``datasetROI`` (Q = 4).
    """
    k1 = data.n_normal
    one_lesion = bool(np.all(data.lesions_per_case == 1))
    nl_count = np.isfinite(data.nl).sum(axis=3)  # (I, J, K)
    ll_all = bool(np.all(np.isfinite(data.ll[:, :, data.lesion_mask])))
    if one_lesion and data.max_nl == 1 and np.all(nl_count[:, :, :k1] == 1) and np.all(nl_count[:, :, k1:] == 0) and ll_all:
        return data._replace(paradigm="ROC")
    if data.max_nl >= 2 and ll_all:
        per_case = nl_count.copy()
        per_case[:, :, k1:] += data.lesions_per_case[None, None, :]
        if np.all(per_case == per_case.flat[0]) and per_case.flat[0] >= 2:
            return data._replace(paradigm="ROI")
    return data


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _excel_id(s: str) -> int | str:
    """Write canonical integers as numbers (as JAFROC files do), everything else as text."""
    if re.fullmatch(r"-?[1-9]\d{0,14}|0", s):
        return int(s)
    return s


def write_jafroc_excel(data: ObserverData, path: str | Path, *, rjafroc_compatible: bool = False) -> Path:
    """Write a study as a JAFROC Excel workbook (current six-column TRUTH layout).

    Parameters
    ----------
    data : ObserverData
        The study (ROC or FROC).
    path : str or Path
        Output ``.xlsx`` file (overwritten).
    rjafroc_compatible : bool, default False
        Write a file that RJafroc's ``DfReadDataFile(..., newExcelFileFormat = TRUE)`` reads:
        case IDs become integers (normal cases 1..K1, abnormal cases K1+1..K), lesion IDs
        become 1..n within each case, reader/treatment IDs that are not plain
        letters/digits/``_.-`` are renamed, and ROC ratings of ``-inf`` become
        ``min(finite ratings) - 1`` (which keeps every comparison, so every FOM is unchanged).
        A ``TSCT_ID_MAP`` sheet records the study's own IDs, and :func:`read_jafroc_excel` restores
        them.  Without this option the study's IDs are written as they are (only IDs that
        cannot be represented, e.g. lesion ID "0" or reader IDs containing commas, are mapped)
        and ROC ``-inf`` ratings are written as the text ``-inf``.

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    Lesion attributes are written as extra TRUTH columns after ``Paradigm``; reader groups as a
    ``TSCT_READERS`` sheet.  Ratings are written at full double precision.
    """
    import openpyxl

    path = Path(path)
    idmap_rows: list[tuple[str, str | int, str, str | int | None]] = []

    # --- file IDs
    def safe_rt(ids: Sequence[str], prefix: str, kind: str) -> list[str]:
        out = []
        taken = set(ids)
        for n, x in enumerate(ids):
            ok = bool(_SAFE_ID.match(x)) if rjafroc_compatible else not re.search(r"[,\s]", x)
            if ok:
                out.append(x)
                continue
            new = f"{prefix}{n + 1}"
            while new in taken:
                new = "_" + new
            taken.add(new)
            out.append(new)
            idmap_rows.append((kind, new, x, None))
        return out

    f_trt = safe_rt(data.treatments, "T", "treatment")
    f_rdr = safe_rt(data.readers, "R", "reader")
    if rjafroc_compatible:
        f_case: list[int | str] = list(range(1, data.n_cases + 1))
        for fid, orig in zip(f_case, data.case_ids):
            if str(fid) != orig:
                idmap_rows.append(("case", fid, orig, None))
    else:
        f_case = [_excel_id(c) for c in data.case_ids]
    f_les: list[list[int | str]] = []
    for k2, case in enumerate(data.lesions):
        cfid = f_case[data.n_normal + k2]
        ids: list[int | str] = []
        for n, les in enumerate(case):
            if rjafroc_compatible:
                fid: int | str = n + 1
            elif les.id == "0" or les.id.strip() != les.id:
                fid = f"lesion{n + 1}"
                while fid in [x.id for x in case]:
                    fid = "_" + fid
            else:
                fid = _excel_id(les.id)
            if str(fid) != les.id:
                idmap_rows.append(("lesion", fid, les.id, cfid))
            ids.append(fid)
        f_les.append(ids)

    # --- ratings
    roc = data.paradigm == "ROC"
    floor: float | None = None
    if roc and rjafroc_compatible:
        fin = np.concatenate([data.nl[np.isfinite(data.nl)], data.ll[np.isfinite(data.ll)]])
        floor = float(fin.min() - 1.0) if fin.size else 0.0

    def rating(x: float) -> float | str:
        if x == -math.inf:
            return floor if floor is not None else "-inf"
        return float(x)

    # write-only mode streams rows to disk: a 10,000-case FROC study is written in seconds
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("TRUTH")
    attrs = list(data.lesion_attribute_names())
    _safe_append(ws, ["CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm", *attrs])
    rdr_list = ",".join(f_rdr)
    trt_list = ",".join(f_trt)
    par_cells = [data.paradigm, "FCTRL"]
    truth_rows: list[list[Any]] = []
    for k in range(data.n_normal):
        truth_rows.append([f_case[k], 0, 0, rdr_list, trt_list, None, *([None] * len(attrs))])
    for k2, case in enumerate(data.lesions):
        for n, les in enumerate(case):
            truth_rows.append(
                [f_case[data.n_normal + k2], f_les[k2][n], les.weight, rdr_list, trt_list, None, *[les.attributes.get(a) for a in attrs]]
            )
    for n, row in enumerate(truth_rows):
        if n < 2:
            row[5] = par_cells[n]
        _safe_append(ws, row)

    fp_rows: list[list[Any]] = [["ReaderID", "ModalityID", "CaseID", "FP_Rating"]]
    tp_rows: list[list[Any]] = [["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"]]
    for i in range(data.n_treatments):
        for j in range(data.n_readers):
            for k in range(data.n_cases):
                marks = data.nl[i, j, k]
                if roc:
                    if k < data.n_normal:
                        fp_rows.append([f_rdr[j], f_trt[i], f_case[k], rating(marks[0])])
                    continue
                for x in marks[np.isfinite(marks)]:
                    fp_rows.append([f_rdr[j], f_trt[i], f_case[k], float(x)])
            for k2, case in enumerate(data.lesions):
                for n in range(len(case)):
                    x = data.ll[i, j, k2, n]
                    if roc or np.isfinite(x):
                        tp_rows.append([f_rdr[j], f_trt[i], f_case[data.n_normal + k2], f_les[k2][n], rating(x)])
    # RJafroc's new-format reader sorts the sheet names and requires FP, TP, TRUTH in the first
    # three places, so the mark sheets are named FP/TP (never NL/LL, which sort as LL < NL) and
    # our extension sheets carry names that sort after TRUTH (see RJAFROC_SHEET_RULE).
    for title, rows in (("FP", fp_rows), ("TP", tp_rows)):
        sheet = wb.create_sheet(title)
        for row in rows:
            _safe_append(sheet, row)
    if data.reader_groups:
        rs = wb.create_sheet(READERS_SHEET)
        _safe_append(rs, ["ReaderID", "Group"])
        for r, fr in zip(data.readers, f_rdr):
            if r in data.reader_groups:
                _safe_append(rs, [fr, data.reader_groups[r]])
    if idmap_rows:
        ms = wb.create_sheet(ID_MAP_SHEET)
        _safe_append(ms, ["Kind", "FileID", "OriginalID", "CaseFileID"])
        for row in idmap_rows:
            _safe_append(ms, list(row))
    from tsct_files import atomic_write_bytes

    # saved in memory first: openpyxl's streaming writer reports a full disk as an "exception
    # ignored" traceback; a plain write of the finished bytes raises one clean OSError
    buffer = io.BytesIO()
    wb.save(buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def rjafroc_sheet_order_ok(sheet_names: Sequence[str]) -> tuple[bool, str]:
    """Replay RJafroc's sheet check on a workbook's sheet names (see ``RJAFROC_SHEET_RULE``).

    RJafroc 2.1.3's ``DfReadDataFile(..., newExcelFileFormat = TRUE)`` upper-cases and sorts the
    sheet names and requires the first to be FP or NL, the second TP or LL and the third
    TRUTH.  R's ``sort`` follows the locale's collation, so the check is made both in byte
    order (C locale) and ignoring punctuation (ICU/glibc collations); a file passes only if
    both orders pass.  Returns ``(ok, reason)``.
    """
    names = [str(n).upper() for n in sheet_names]
    orders = {
        "C-locale": sorted(names),
        "punctuation-insensitive": sorted(names, key=lambda s: (re.sub(r"[^A-Z0-9]", "", s), s)),
    }
    for label, order in orders.items():
        padded = order + [""] * 3
        if padded[0] not in ("FP", "NL"):
            return False, f"{label} sort puts {padded[0]!r} first: 'FP or NL sheet not found'"
        if padded[1] not in ("TP", "LL"):
            return False, f"{label} sort puts {padded[1]!r} second: 'TP or LL sheet not found'"
        if padded[2] != "TRUTH":
            return False, f"{label} sort puts {padded[2]!r} third: 'Truth sheet not found'"
    return True, "FP/NL, TP/LL, TRUTH sort first, second and third"
