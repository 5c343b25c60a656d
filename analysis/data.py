"""The observer-study dataset: who read what, the truth, and every mark's rating.

:class:`ObserverData` is the single in-memory representation that every figure of merit,
significance test, curve and file format in :mod:`analysis` works on.  It follows the layout of
RJafroc (Chakraborty), so that arrays can be compared element by element with RJafroc's output
and every figure of merit can be vectorised:

* ``nl[i, j, k, m]`` -- the rating of the ``m``-th non-lesion localisation (NL, a false-positive
  mark) made by reader ``j`` in treatment ``i`` on case ``k``.  Cases are ordered with the
  ``K1`` normal (non-diseased) cases first, then the ``K2`` abnormal (diseased) cases.
  ``-inf`` means "no mark in this slot"; the order of the marks within a case is irrelevant.
* ``ll[i, j, k2, l]`` -- the rating of the lesion localisation (LL, a true-positive mark) on
  lesion ``l`` of abnormal case ``k2``; ``-inf`` means the lesion was not marked.  Slots beyond
  the case's number of lesions are padding and are always ``-inf``.

For ROC data (one rating per case) ``max_nl == max_ll == 1``: a normal case's rating is
``nl[i, j, k, 0]`` (``k < K1``), an abnormal case's rating is ``ll[i, j, k2, 0]``, and
``nl`` on abnormal cases is ``-inf``.  An ROC rating of ``-inf`` is allowed and means "below
every finite rating" (it ties with other ``-inf`` ratings).

Ratings are plain floats: only their order matters to every figure of merit.  NaN and ``+inf``
are rejected.

IDs (treatments, readers, cases, lesions) are strings and are kept exactly as given; they need
not be numeric or consecutive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from analysis._shape import StudyShape

if TYPE_CHECKING:  # pandas is loaded where frames are built: reading a workbook and analysing it never needs it
    import pandas as pd

__all__ = [
    "Lesion",
    "ObserverData",
    "ObserverDataError",
    "Problem",
    "PARADIGMS",
]

PARADIGMS = ("FROC", "ROC", "ROI")
"""Supported data paradigms.  ROI data (each case divided into regions of interest, each region
rated) are held in the FROC layout: ``nl`` = the normal ROIs' ratings, ``ll`` = the lesion
ROIs' ratings.  LROC data are held by :class:`analysis.lroc.LrocData` (see
``docs/analysis-data.md``)."""

_WEIGHT_TOLERANCE = 0.01  # RJafroc accepts weights summing to 1 within +-0.01 and renormalises.


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as the source allows.

    Attributes
    ----------
    message : str
        What is wrong and what to do about it.
    file : str or None
        The file the problem was found in.
    sheet : str or None
        Worksheet (Excel) or record kind (CSV) of the problem.
    row : int or None
        Row number as the user sees it (Excel row number, 1-based, header = row 1; CSV line
        number, header = line 1).
    column : str or None
        Column name as it appears in the file.
    """

    message: str
    file: str | None = None
    sheet: str | None = None
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file!r}")
        if self.sheet:
            where.append(f"sheet {self.sheet!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ObserverDataError(ValueError):
    """Invalid observer-study data.

    Raised for every malformed input: by :class:`ObserverData` when the arrays or IDs are
    inconsistent, and by the file readers, which collect all problems of a sheet before
    raising.  ``problems`` holds each :class:`Problem` (file, sheet, row, column, message).
    """

    def __init__(self, problems: str | Problem | Sequence[Problem], *, max_listed: int = 50):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = [str(p) for p in self.problems[:max_listed]]
        if len(self.problems) > max_listed:
            lines.append(f"... and {len(self.problems) - max_listed} more problems")
        if len(lines) == 1:
            text = lines[0]
        else:
            text = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {x}" for x in lines)
        super().__init__(text)


# ----------------------------------------------------------------------------------------------
# Lesions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lesion:
    """A true lesion on an abnormal case.

    Attributes
    ----------
    id : str
        Lesion ID, unique within its case.
    weight : float
        Clinical weight used by wAFROC/wAFROC1; the weights of a case sum to 1.
    attributes : Mapping[str, str]
        Optional descriptors used for lesion-class subgroups, e.g.
        ``{"location": "spine", "lesion_type": "osteolytic"}``.
    """

    id: str
    weight: float
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "attributes", {str(k): str(v) for k, v in dict(self.attributes).items()})

    def __hash__(self) -> int:  # attributes is a dict; hash the immutable parts
        return hash((self.id, self.weight, tuple(sorted(self.attributes.items()))))


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


def _normalise_study_ids(study: Any) -> None:
    """Set a frozen study's ``treatments``, ``readers``, ``normal_cases`` and ``abnormal_cases``
    to tuples of ID strings; raise if treatments, readers or cases repeat or are empty."""
    set_ = object.__setattr__
    set_(study, "treatments", _as_id_tuple(study.treatments, "Treatment"))
    set_(study, "readers", _as_id_tuple(study.readers, "Reader"))
    set_(study, "normal_cases", tuple(_id_str(c) for c in study.normal_cases))
    set_(study, "abnormal_cases", tuple(_id_str(c) for c in study.abnormal_cases))
    _as_id_tuple(study.normal_cases + study.abnormal_cases, "Case")


def _as_id_tuple(values: Iterable[Any], what: str) -> tuple[str, ...]:
    out = tuple(_id_str(v) for v in values)
    seen: set[str] = set()
    dup = [v for v in out if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
    if dup:
        raise ObserverDataError(f"{what} IDs must be unique; duplicated: {sorted(set(dup))}. Give each {what.lower()} a distinct ID.")
    if any(v == "" for v in out):
        raise ObserverDataError(f"{what} IDs must not be empty strings.")
    return out


def _id_str(value: Any) -> str:
    """Normalise an ID cell: integral floats lose their '.0', everything else is str()."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).strip()


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ObserverData(StudyShape):
    """A fully crossed multi-reader multi-case (MRMC) observer study.

    Every reader reads every case in every treatment (modality).  The ratings are stored in
    RJafroc's array layout (see the module docstring).  Instances are immutable: the arrays are
    read-only and every selection method returns a new object.  Construction validates the
    whole object and raises :class:`ObserverDataError` naming what is wrong.

    Parameters
    ----------
    treatments : sequence of str
        Treatment (modality) IDs, e.g. ``("CT", "CT+TS")``; axis 0 of the rating arrays.
    readers : sequence of str
        Reader IDs; axis 1 of the rating arrays.
    normal_cases : sequence of str
        IDs of the ``K1`` normal (lesion-free) cases; the first ``K1`` entries of axis 2 of
        ``nl``.  May be empty (then only AFROC1 and wAFROC1 are defined).
    abnormal_cases : sequence of str
        IDs of the ``K2 >= 1`` abnormal cases; the last ``K2`` entries of axis 2 of ``nl`` and
        axis 2 of ``ll``.
    lesions : sequence of sequence of Lesion
        For each abnormal case, its lesions in the order of axis 3 of ``ll``.  Every abnormal
        case has at least one lesion; weights of a case sum to 1 (within 0.01; they are
        renormalised exactly).
    nl : ndarray of shape (I, J, K1 + K2, max_nl)
        Non-lesion-localisation ratings, ``-inf`` = no mark.
    ll : ndarray of shape (I, J, K2, max_ll)
        Lesion-localisation ratings, ``-inf`` = unmarked lesion or padding.
    paradigm : {"FROC", "ROC", "ROI"}
        Data collection paradigm.  ROI (region of interest) data use the FROC layout: each
        case is divided into regions, each region is rated; ``nl[i, j, k, :]`` holds the
        ratings of case ``k``'s lesion-free regions (``-inf`` slots are padding, not regions)
        and ``ll[i, j, k2, l]`` the rating of the region holding lesion ``l`` (``-inf``: not
        rated, counted below every rated region, as RJafroc stores it).
    reader_groups : mapping of str to str, optional
        Optional group of each reader, e.g. ``{"R1": "resident", "R2": "radiologist"}``.
    name : str, optional
        Free-text name of the study (for reports).

    Notes
    -----
    ``max_nl`` is at least 1 even when no case carries an NL mark, so the arrays are never
    empty along the mark axis.
    """

    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    normal_cases: tuple[str, ...]
    abnormal_cases: tuple[str, ...]
    lesions: tuple[tuple[Lesion, ...], ...]
    nl: np.ndarray
    ll: np.ndarray
    paradigm: Literal["FROC", "ROC", "ROI"] = "FROC"
    reader_groups: Mapping[str, str] = field(default_factory=dict)
    name: str = ""

    # ------------------------------------------------------------------ construction/validation
    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _normalise_study_ids(self)
        if self.paradigm not in PARADIGMS:
            raise ObserverDataError(
                f"paradigm must be one of {PARADIGMS}, got {self.paradigm!r}. LROC data are "
                "held by analysis.lroc.LrocData (LrocData.to_roc() converts them to ROC)."
            )
        if not self.treatments:
            raise ObserverDataError("The study has no treatments; at least one is needed.")
        if not self.readers:
            raise ObserverDataError("The study has no readers; at least one is needed.")
        if not self.abnormal_cases:
            raise ObserverDataError("The study has no abnormal cases; every figure of merit needs at least one case with a lesion.")

        groups = {_id_str(k): str(v) for k, v in dict(self.reader_groups).items()}
        unknown = sorted(set(groups) - set(self.readers))
        if unknown:
            raise ObserverDataError(f"reader_groups names readers that are not in the study: {unknown}.")
        set_(self, "reader_groups", groups)

        # Lesions: normalise, check IDs and weights, renormalise weights exactly.
        lesions_in = tuple(tuple(case) for case in self.lesions)
        if len(lesions_in) != len(self.abnormal_cases):
            raise ObserverDataError(
                f"lesions has {len(lesions_in)} entries but there are "
                f"{len(self.abnormal_cases)} abnormal cases; give one tuple of lesions per "
                "abnormal case."
            )
        problems: list[Problem] = []
        lesions_out: list[tuple[Lesion, ...]] = []
        for case_id, case_lesions in zip(self.abnormal_cases, lesions_in):
            case_lesions = tuple(les if isinstance(les, Lesion) else Lesion(**les) for les in case_lesions)
            if not case_lesions:
                problems.append(Problem(f"abnormal case {case_id!r} has no lesions."))
                lesions_out.append(case_lesions)
                continue
            ids = [les.id for les in case_lesions]
            if len(set(ids)) != len(ids):
                problems.append(Problem(f"case {case_id!r} has duplicated lesion IDs {ids}; make them unique."))
            w = np.array([les.weight for les in case_lesions])
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                problems.append(Problem(f"case {case_id!r} has lesion weights {w.tolist()}; weights must be finite and non-negative."))
            elif abs(w.sum() - 1.0) > _WEIGHT_TOLERANCE + 1e-9:
                problems.append(
                    Problem(f"the lesion weights of case {case_id!r} sum to {w.sum():.6g}, not 1; fix the weights (or give none for equal weights).")
                )
            else:
                w = w / w.sum()
                case_lesions = tuple(Lesion(les.id, float(wi), les.attributes) for les, wi in zip(case_lesions, w))
            lesions_out.append(case_lesions)
        if problems:
            raise ObserverDataError(problems)
        set_(self, "lesions", tuple(lesions_out))

        # Arrays
        nl = np.asarray(self.nl, dtype=float)
        ll = np.asarray(self.ll, dtype=float)
        n_i, n_j, k1, k2 = len(self.treatments), len(self.readers), self.n_normal, self.n_abnormal
        max_ll = max(len(c) for c in self.lesions)
        if nl.ndim != 4 or nl.shape[:3] != (n_i, n_j, k1 + k2) or nl.shape[3] < 1:
            raise ObserverDataError(f"nl must have shape (I, J, K, max_nl) = ({n_i}, {n_j}, {k1 + k2}, >=1); got {nl.shape}.")
        if ll.ndim != 4 or ll.shape[:3] != (n_i, n_j, k2) or ll.shape[3] < max_ll:
            raise ObserverDataError(f"ll must have shape (I, J, K2, max_ll) = ({n_i}, {n_j}, {k2}, >={max_ll}); got {ll.shape}.")
        if ll.shape[3] > max_ll:  # drop all-padding columns so max_ll is tight
            if np.any(np.isfinite(ll[..., max_ll:])):
                raise ObserverDataError("ll has finite ratings in padding slots beyond the last lesion of a case.")
            ll = ll[..., :max_ll]
        for arr, what in ((nl, "nl"), (ll, "ll")):
            bad = np.isnan(arr) | (arr == np.inf)
            if bad.any():
                idx = tuple(int(x) for x in np.argwhere(bad)[0])
                raise ObserverDataError(
                    f"{what} contains {int(bad.sum())} NaN or +inf ratings (first at index "
                    f"{idx}); use -inf for 'no mark' and finite numbers for ratings."
                )
        pad = ~self.lesion_mask_for(self.lesions, max_ll)
        if np.any(np.isfinite(ll[:, :, pad])):
            raise ObserverDataError("ll has finite ratings in padding slots (lesion index beyond the case's number of lesions).")
        if self.paradigm == "ROC":
            if nl.shape[3] != 1 or ll.shape[3] != 1:
                raise ObserverDataError(
                    "ROC data must have exactly one rating per case (max_nl = max_ll = 1); got "
                    f"max_nl={nl.shape[3]}, max_ll={ll.shape[3]}. Use paradigm='FROC' for "
                    "mark-based data."
                )
            if np.any(np.isfinite(nl[:, :, k1:, :])):
                raise ObserverDataError("ROC data: an abnormal case's rating belongs in ll, not nl; nl on abnormal cases must be -inf.")
        set_(self, "nl", _readonly(nl))
        set_(self, "ll", _readonly(ll))

    @staticmethod
    def lesion_mask_for(lesions: Sequence[Sequence[Lesion]], max_ll: int) -> np.ndarray:
        """Boolean (K2, max_ll) mask of real (non-padding) lesion slots."""
        counts = np.array([len(c) for c in lesions], dtype=int)
        return np.arange(max_ll)[None, :] < counts[:, None]

    # ------------------------------------------------------------------ sizes and derived arrays
    # n_treatments, n_readers, n_normal, n_abnormal, n_cases, case_ids: StudyShape
    @property
    def n_lesions(self) -> int:
        """Total number of lesions ``L`` over all abnormal cases."""
        return int(sum(len(c) for c in self.lesions))

    @property
    def max_nl(self) -> int:
        """Size of the NL mark axis (at least 1)."""
        return int(self.nl.shape[3])

    @property
    def max_ll(self) -> int:
        """Largest number of lesions on one case (size of the LL lesion axis)."""
        return int(self.ll.shape[3])

    @property
    def lesions_per_case(self) -> np.ndarray:
        """Number of lesions of each abnormal case, shape (K2,)."""
        return np.array([len(c) for c in self.lesions], dtype=int)

    @property
    def lesion_mask(self) -> np.ndarray:
        """Boolean (K2, max_ll): True for real lesion slots, False for padding."""
        return self.lesion_mask_for(self.lesions, self.max_ll)

    @property
    def lesion_weights(self) -> np.ndarray:
        """Lesion weights, shape (K2, max_ll); 0 in padding slots; rows sum to 1."""
        w = np.zeros((self.n_abnormal, self.max_ll))
        for k, case in enumerate(self.lesions):
            w[k, : len(case)] = [les.weight for les in case]
        return w

    @property
    def lesion_ids(self) -> tuple[tuple[str, ...], ...]:
        """Lesion IDs per abnormal case."""
        return tuple(tuple(les.id for les in case) for case in self.lesions)

    def lesion_attribute_names(self) -> tuple[str, ...]:
        """Names of the lesion attributes present on at least one lesion (sorted)."""
        return tuple(sorted({k for case in self.lesions for les in case for k in les.attributes}))

    def __repr__(self) -> str:
        return (
            f"ObserverData(name={self.name!r}, paradigm={self.paradigm!r}, "
            f"treatments={list(self.treatments)}, readers={list(self.readers)}, "
            f"K1={self.n_normal}, K2={self.n_abnormal}, lesions={self.n_lesions}, "
            f"max_nl={self.max_nl}, max_ll={self.max_ll})"
        )

    def summary(self) -> str:
        """A short human-readable description of the study design and marks."""
        finite_nl = int(np.isfinite(self.nl).sum())
        finite_ll = int(np.isfinite(self.ll).sum())
        lines = [
            f"Observer study {self.name!r} ({self.paradigm}, fully crossed)",
            f"  treatments ({self.n_treatments}): {', '.join(self.treatments)}",
            f"  readers ({self.n_readers}): {', '.join(self.readers)}",
            f"  cases: {self.n_cases} ({self.n_normal} normal, {self.n_abnormal} abnormal)",
            f"  lesions: {self.n_lesions} (1..{self.max_ll} per abnormal case)",
            f"  marks: {finite_nl} NL, {finite_ll} LL",
        ]
        if self.reader_groups:
            groups = sorted(set(self.reader_groups.values()))
            lines.append(f"  reader groups: {', '.join(groups)}")
        return "\n".join(lines)

    def equals(self, other: ObserverData) -> bool:
        """True if both studies have identical IDs, truth and ratings (marks compared as sets)."""
        if not isinstance(other, ObserverData):
            return False
        same_meta = (
            self.treatments == other.treatments
            and self.readers == other.readers
            and self.normal_cases == other.normal_cases
            and self.abnormal_cases == other.abnormal_cases
            and self.paradigm == other.paradigm
            and dict(self.reader_groups) == dict(other.reader_groups)
            and self.lesion_ids == other.lesion_ids
            and np.allclose(self.lesion_weights, other.lesion_weights, rtol=0, atol=1e-12)
            and [[les.attributes for les in c] for c in self.lesions] == [[les.attributes for les in c] for c in other.lesions]
        )
        if not same_meta or self.ll.shape != other.ll.shape:
            return False
        if not np.array_equal(self.ll, other.ll):
            return False
        # NL marks: compare the sorted ratings per (i, j, k), ignoring slot order and padding.
        width = max(self.max_nl, other.max_nl)
        a = _pad_sorted(self.nl, width)
        b = _pad_sorted(other.nl, width)
        return bool(np.array_equal(a, b))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_marks(
        cls,
        truth: pd.DataFrame | Iterable[Mapping[str, Any]],
        nl_marks: pd.DataFrame | Iterable[Mapping[str, Any]],
        ll_marks: pd.DataFrame | Iterable[Mapping[str, Any]],
        *,
        paradigm: Literal["FROC", "ROC", "ROI"] = "FROC",
        treatments: Sequence[str] | None = None,
        readers: Sequence[str] | None = None,
        reader_groups: Mapping[str, str] | None = None,
        name: str = "",
    ) -> ObserverData:
        """Build a study from tidy records: a truth table and one row per mark.

        Parameters
        ----------
        truth : DataFrame or iterable of mappings
            One row per lesion, plus one row per normal case.  Columns: ``case_id``,
            ``lesion_id`` (missing/empty/None for a normal case), optional ``weight`` (a
            case whose weights are all missing or all 0 gets equal weights), and any further
            columns (e.g. ``location``, ``lesion_type``) which become lesion attributes
            (missing values are left out).  Cases keep the order of their first row; normal
            cases are placed before abnormal cases.
        nl_marks : DataFrame or iterable of mappings
            One row per non-lesion localisation: ``treatment``, ``reader``, ``case_id``,
            ``rating``.  NL marks may lie on normal or abnormal cases.  For ROC data this holds
            the rating of each normal case.
        ll_marks : DataFrame or iterable of mappings
            One row per marked lesion: ``treatment``, ``reader``, ``case_id``, ``lesion_id``,
            ``rating``.  At most one row per (treatment, reader, lesion).  For ROC data this
            holds the rating of each abnormal case (``lesion_id`` may be left empty).
        paradigm : {"FROC", "ROC", "ROI"}
            "ROC" requires one rating per case per reader and treatment.  "ROI": each NL row
            is the rating of one lesion-free region of the case, each LL row the rating of a
            lesion's region.
        treatments, readers : sequence of str, optional
            IDs and their order.  Default: order of first appearance in ``nl_marks`` then
            ``ll_marks``.  Pass them explicitly to keep readers/treatments without any mark.
        reader_groups : mapping, optional
            Group of each reader.
        name : str
            Study name.

        Returns
        -------
        ObserverData

        Raises
        ------
        ObserverDataError
            Listing every problem found (unknown case or lesion, LL on a normal case, duplicate
            LL, bad weights, non-numeric ratings, ...), each with the record number.
        """
        truth_df = _frame(truth, "truth", ["case_id"])
        nl_df = _frame(nl_marks, "nl_marks", ["treatment", "reader", "case_id", "rating"])
        ll_df = _frame(ll_marks, "ll_marks", ["treatment", "reader", "case_id", "rating"])
        if "lesion_id" not in ll_df.columns:
            if paradigm == "ROC" or ll_df.empty:
                ll_df["lesion_id"] = None
            else:
                raise ObserverDataError("ll_marks needs a 'lesion_id' column for FROC data.")
        if "lesion_id" not in truth_df.columns:
            truth_df["lesion_id"] = None
        return _build_from_frames(
            truth_df,
            nl_df,
            ll_df,
            paradigm=paradigm,
            treatments=treatments,
            readers=readers,
            reader_groups=reader_groups,
            name=name,
            locate=_record_locator,
        )

    @classmethod
    def from_roc(
        cls,
        ratings_normal: np.ndarray,
        ratings_abnormal: np.ndarray,
        *,
        treatments: Sequence[str] | None = None,
        readers: Sequence[str] | None = None,
        normal_cases: Sequence[str] | None = None,
        abnormal_cases: Sequence[str] | None = None,
        reader_groups: Mapping[str, str] | None = None,
        name: str = "",
    ) -> ObserverData:
        """Build an ROC study from rating arrays.

        Parameters
        ----------
        ratings_normal : array-like of shape (I, J, K1)
            Rating of each normal case by reader ``j`` in treatment ``i``.  A 2-D array of shape
            (J, K1) or 1-D (K1,) is taken as one treatment (and one reader).
        ratings_abnormal : array-like of shape (I, J, K2)
            Rating of each abnormal case.
        treatments, readers, normal_cases, abnormal_cases : sequence of str, optional
            IDs; default ``"1".."I"``, ``"1".."J"``, ``"N1".."NK1"``, ``"A1".."AK2"``.

        Returns
        -------
        ObserverData
            With ``paradigm="ROC"`` and one lesion (ID ``"1"``, weight 1) per abnormal case.
        """
        fp = np.asarray(ratings_normal, dtype=float)
        tp = np.asarray(ratings_abnormal, dtype=float)
        while fp.ndim < 3:
            fp = fp[None]
        while tp.ndim < 3:
            tp = tp[None]
        if fp.shape[:2] != tp.shape[:2]:
            raise ObserverDataError(
                f"ratings_normal has (I, J) = {fp.shape[:2]} but ratings_abnormal has {tp.shape[:2]}; both need the same treatments and readers."
            )
        n_i, n_j, k1 = fp.shape
        k2 = tp.shape[2]
        treatments = treatments if treatments is not None else [str(i + 1) for i in range(n_i)]
        readers = readers if readers is not None else [str(j + 1) for j in range(n_j)]
        normal_cases = normal_cases if normal_cases is not None else [f"N{k + 1}" for k in range(k1)]
        abnormal_cases = abnormal_cases if abnormal_cases is not None else [f"A{k + 1}" for k in range(k2)]
        nl = np.full((n_i, n_j, k1 + k2, 1), -np.inf)
        nl[:, :, :k1, 0] = fp
        ll = tp[..., None].copy()
        return cls(
            treatments=tuple(treatments),
            readers=tuple(readers),
            normal_cases=tuple(normal_cases),
            abnormal_cases=tuple(abnormal_cases),
            lesions=tuple((Lesion("1", 1.0),) for _ in range(k2)),
            nl=nl,
            ll=ll,
            paradigm="ROC",
            reader_groups=dict(reader_groups or {}),
            name=name,
        )

    # ------------------------------------------------------------------ tidy export
    def to_frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The study as the three tidy tables accepted by :meth:`from_marks`.

        Returns
        -------
        truth, nl_marks, ll_marks : DataFrame
            ``truth``: case_id, lesion_id (None for normal cases), weight, attribute columns.
            ``nl_marks``: treatment, reader, case_id, rating (one row per finite NL rating,
            plus, for ROC data, the ``-inf`` ratings of normal cases).
            ``ll_marks``: treatment, reader, case_id, lesion_id, rating (one row per marked
            lesion; for ROC data every abnormal case, ``-inf`` included).
        """
        import pandas as pd

        attrs = self.lesion_attribute_names()
        rows = [{"case_id": c, "lesion_id": None, "weight": 0.0, **{a: None for a in attrs}} for c in self.normal_cases]
        for c, case in zip(self.abnormal_cases, self.lesions):
            for les in case:
                rows.append(
                    {
                        "case_id": c,
                        "lesion_id": les.id,
                        "weight": les.weight,
                        **{a: les.attributes.get(a) for a in attrs},
                    }
                )
        truth = pd.DataFrame(rows, columns=["case_id", "lesion_id", "weight", *attrs])

        roc = self.paradigm == "ROC"
        nl_rows = []
        cases = self.case_ids
        for i, t in enumerate(self.treatments):
            for j, r in enumerate(self.readers):
                block = self.nl[i, j]
                for k in range(self.n_cases):
                    if roc:
                        if k < self.n_normal:
                            nl_rows.append((t, r, cases[k], float(block[k, 0])))
                        continue
                    for x in block[k][np.isfinite(block[k])]:
                        nl_rows.append((t, r, cases[k], float(x)))
        nl_df = pd.DataFrame(nl_rows, columns=["treatment", "reader", "case_id", "rating"])
        ll_rows = []
        for i, t in enumerate(self.treatments):
            for j, r in enumerate(self.readers):
                block = self.ll[i, j]
                for k2, (c, case) in enumerate(zip(self.abnormal_cases, self.lesions)):
                    for l, les in enumerate(case):
                        x = block[k2, l]
                        if roc or np.isfinite(x):
                            ll_rows.append((t, r, c, les.id, float(x)))
        ll_df = pd.DataFrame(ll_rows, columns=["treatment", "reader", "case_id", "lesion_id", "rating"])
        return truth, nl_df, ll_df

    # ------------------------------------------------------------------ subsets
    def _replace(self, **changes: Any) -> ObserverData:
        kwargs = {
            "treatments": self.treatments,
            "readers": self.readers,
            "normal_cases": self.normal_cases,
            "abnormal_cases": self.abnormal_cases,
            "lesions": self.lesions,
            "nl": self.nl,
            "ll": self.ll,
            "paradigm": self.paradigm,
            "reader_groups": self.reader_groups,
            "name": self.name,
        }
        kwargs.update(changes)
        return ObserverData(**kwargs)

    def select_readers(self, ids: Sequence[str] | str) -> ObserverData:
        """The study restricted to the given readers, in the order given.

        ``ids`` may also be a reader-group name from :attr:`reader_groups` (all its readers,
        in study order).
        """
        ids = self._resolve(ids, self.readers, "reader", groups=self.reader_groups)
        idx = [self.readers.index(r) for r in ids]
        return self._replace(
            readers=tuple(ids),
            nl=self.nl[:, idx],
            ll=self.ll[:, idx],
            reader_groups={r: g for r, g in self.reader_groups.items() if r in ids},
        )

    def select_treatments(self, ids: Sequence[str] | str) -> ObserverData:
        """The study restricted to the given treatments, in the order given."""
        ids = self._resolve(ids, self.treatments, "treatment")
        idx = [self.treatments.index(t) for t in ids]
        return self._replace(treatments=tuple(ids), nl=self.nl[idx], ll=self.ll[idx])

    @staticmethod
    def _resolve(
        ids: Sequence[str] | str,
        available: tuple[str, ...],
        what: str,
        groups: Mapping[str, str] | None = None,
    ) -> list[str]:
        if isinstance(ids, str):
            if groups and ids in set(groups.values()) and ids not in available:
                return [r for r in available if groups.get(r) == ids]
            ids = [ids]
        ids = [_id_str(x) for x in ids]
        if not ids:
            raise ObserverDataError(f"Select at least one {what}.")
        unknown = [x for x in ids if x not in available]
        if unknown:
            raise ObserverDataError(f"Unknown {what} ID(s) {unknown}; the study has {list(available)}.")
        if len(set(ids)) != len(ids):
            raise ObserverDataError(f"{what} IDs selected more than once: {ids}.")
        return ids

    def select_lesions(
        self,
        predicate: Callable[[str, Lesion], bool] | np.ndarray | None = None,
        /,
        **attributes: str | Sequence[str],
    ) -> ObserverData:
        """A lesion-class subgroup: only lesions of one class count.

        Exactly which lesions and cases enter:

        * Lesions: those for which ``predicate(case_id, lesion)`` is true (or ``mask[k2, l]``
          is true for a boolean mask of shape (K2, max_ll), or whose attributes equal the
          keyword filters, e.g. ``lesion_type="osteolytic"`` or ``location=["spine",
          "pelvis"]``; filters and predicate combine with AND).
        * Cases: **all normal cases**, plus the abnormal cases that have **at least one**
          selected lesion.  Abnormal cases without a selected lesion are dropped entirely
          (with all their marks): they are neither lesion-free nor do they contain the class
          under study.
        * Weights: the selected lesions of a case keep their relative weights, renormalised to
          sum to 1.
        * Marks on dropped lesions (lesions of other classes on a kept case) are **discarded**:
          they are correct localisations of real lesions, so counting them as NL (false
          positives) would penalise the reader, and counting them as LL would credit lesions
          outside the class.  NL marks on kept cases are kept unchanged.

        Returns
        -------
        ObserverData
            A new study; raises :class:`ObserverDataError` if no lesion is selected.
        """
        mask = np.zeros((self.n_abnormal, self.max_ll), dtype=bool)
        if predicate is None:
            mask[self.lesion_mask] = True
        elif callable(predicate):
            for k, (c, case) in enumerate(zip(self.abnormal_cases, self.lesions)):
                for l, les in enumerate(case):
                    mask[k, l] = bool(predicate(c, les))
        else:
            m = np.asarray(predicate, dtype=bool)
            if m.shape != mask.shape:
                raise ObserverDataError(f"The lesion mask must have shape (K2, max_ll) = {mask.shape}; got {m.shape}.")
            mask = m & self.lesion_mask
        if attributes:
            known = set(self.lesion_attribute_names())
            unknown = sorted(set(attributes) - known)
            if unknown:
                raise ObserverDataError(f"Unknown lesion attribute(s) {unknown}; the lesions have {sorted(known)}.")
            for k, case in enumerate(self.lesions):
                for l, les in enumerate(case):
                    for key, wanted in attributes.items():
                        allowed = {wanted} if isinstance(wanted, str) else {str(w) for w in wanted}
                        if les.attributes.get(key) not in allowed:
                            mask[k, l] = False
        keep_case = mask.any(axis=1)
        if not keep_case.any():
            raise ObserverDataError("No lesion matches the selection, so the subgroup has no abnormal cases.")
        kept = np.flatnonzero(keep_case)
        new_lesions = []
        new_max_ll = int(mask[kept].sum(axis=1).max())
        ll = np.full((self.n_treatments, self.n_readers, len(kept), new_max_ll), -np.inf)
        for n, k in enumerate(kept):
            cols = np.flatnonzero(mask[k])
            case = [self.lesions[k][l] for l in cols]
            total = sum(les.weight for les in case)
            if total > 0:
                case = [Lesion(les.id, les.weight / total, les.attributes) for les in case]
            else:  # all selected lesions had weight 0: fall back to equal weights
                case = [Lesion(les.id, 1.0 / len(case), les.attributes) for les in case]
            new_lesions.append(tuple(case))
            ll[:, :, n, : len(cols)] = self.ll[:, :, k, cols]
        case_idx = np.concatenate([np.arange(self.n_normal), self.n_normal + kept])
        return self._replace(
            abnormal_cases=tuple(self.abnormal_cases[k] for k in kept),
            lesions=tuple(new_lesions),
            nl=self.nl[:, :, case_idx],
            ll=ll,
        )

    def to_roc(self) -> ObserverData:
        """The highest-rating inferred ROC dataset (RJafroc's ``DfFroc2Roc``).

        Each normal case's ROC rating is its highest NL rating; each abnormal case's rating is
        the highest of all its marks (LL or NL).  A case without any mark gets
        ``min(finite ratings) - 1`` (all such cases tie with each other, below every marked
        case), exactly as RJafroc does, so that ``Wilcoxon(to_roc(d)) == HrAuc(d)``.
        Unlike RJafroc, the treatment/reader/case IDs are kept.  Each abnormal case gets a
        single lesion with ID ``"1"`` and weight 1 (lesion attributes are dropped).
        ROC data are returned unchanged.
        """
        if self.paradigm == "ROC":
            return self
        k1 = self.n_normal
        case_max_nl = self.nl.max(axis=3)  # (I, J, K)
        fp = case_max_nl[:, :, :k1]
        tp = np.maximum(self.ll.max(axis=3), case_max_nl[:, :, k1:])
        finite = np.concatenate([fp[np.isfinite(fp)], tp[np.isfinite(tp)]])
        floor = (finite.min() - 1.0) if finite.size else 0.0
        fp = np.where(np.isfinite(fp), fp, floor)
        tp = np.where(np.isfinite(tp), tp, floor)
        return ObserverData.from_roc(
            fp,
            tp,
            treatments=self.treatments,
            readers=self.readers,
            normal_cases=self.normal_cases,
            abnormal_cases=self.abnormal_cases,
            reader_groups=self.reader_groups,
            name=self.name,
        )


# ----------------------------------------------------------------------------------------------
# helpers for from_marks (also used by the file readers)
# ----------------------------------------------------------------------------------------------


def _pad_sorted(nl: np.ndarray, width: int) -> np.ndarray:
    s = -np.sort(-nl, axis=3)  # descending, -inf last
    if s.shape[3] < width:
        pad = np.full(s.shape[:3] + (width - s.shape[3],), -np.inf)
        s = np.concatenate([s, pad], axis=3)
    return s


def _frame(records: Any, what: str, required: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    df = df.reset_index(drop=True)
    if df.empty and not len(df.columns):
        df = pd.DataFrame(columns=list(required))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ObserverDataError(f"{what} lacks the column(s) {missing}; it has {list(df.columns)}.")
    return df


def _record_locator(table: str, index: int, column: str | None = None) -> Problem:
    """Default locator for from_marks: record number within the given table (1-based)."""
    return Problem("", sheet=table, row=index + 1, column=column)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, int):  # bool included: never missing (as pd.isna says)
        return False
    import pandas as pd  # only for other objects (pd.NA, NaT...): cells are None, numbers and text

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _rating(value: Any) -> float | None:
    """Parse a rating cell; None if it is not a number.  '-inf' strings are accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
        return None if math.isnan(x) or x == math.inf else x
    if isinstance(value, str):
        s = value.strip()
        if s.lower() in ("-inf", "-infinity"):
            return -math.inf
        try:
            x = float(s)
        except ValueError:
            return None
        return None if math.isnan(x) or x == math.inf else x
    return None


class Records:
    """A table as its column names and one tuple per row: what :func:`_build_from_frames` reads.

    The file readers build their tables this way rather than as DataFrames, so that reading a
    workbook and analysing it (``tsct analyze st``) never imports pandas (about 0.4 s of CPU
    at start-up).  :func:`_build_from_frames` reads a DataFrame through the same three
    operations: ``columns``, ``itertuples(index=False)`` and ``table[column]``.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._rows = [tuple(rec.get(c) for c in self.columns) for rec in records]

    def itertuples(self, index: bool = False) -> Iterable[tuple[Any, ...]]:
        """The rows in order, as tuples in :attr:`columns` order (``index`` must be False)."""
        assert not index
        return iter(self._rows)

    def __getitem__(self, column: str) -> list[Any]:
        j = self.columns.index(column)
        return [row[j] for row in self._rows]

    def __len__(self) -> int:
        return len(self._rows)


def _build_from_frames(
    truth: pd.DataFrame | Records,
    nl_df: pd.DataFrame | Records,
    ll_df: pd.DataFrame | Records,
    *,
    paradigm: str,
    treatments: Sequence[str] | None,
    readers: Sequence[str] | None,
    reader_groups: Mapping[str, str] | None,
    name: str,
    locate: Callable[[str, int, str | None], Problem],
    table_names: Mapping[str, str] | None = None,
    column_names: Mapping[str, Mapping[str, str]] | None = None,
) -> ObserverData:
    """Shared builder: validates tidy frames and assembles the arrays.

    ``locate(table, index, column)`` maps a row index of a frame to a :class:`Problem` with
    the user's coordinates (file, sheet, row); ``table_names`` maps the logical tables
    "truth"/"nl"/"ll" to what the user calls them, ``column_names`` maps logical column names
    to the file's column headers.
    """
    tn = {"truth": "truth", "nl": "nl_marks", "ll": "ll_marks", **dict(table_names or {})}
    cn = {t: dict((column_names or {}).get(t, {})) for t in ("truth", "nl", "ll")}
    problems: list[Problem] = []

    def problem(table: str, index: int, column: str | None, message: str) -> None:
        base = locate(tn[table], index, cn[table].get(column, column) if column else None)
        problems.append(Problem(message, file=base.file, sheet=base.sheet, row=base.row, column=base.column))

    # ---- truth
    reserved = {"case_id", "lesion_id", "weight"}
    attr_cols = [c for c in truth.columns if c not in reserved]
    case_order: list[str] = []
    case_lesions: dict[str, list[tuple[str, Any, dict[str, str], int]]] = {}
    normal_rows: dict[str, int] = {}
    truth_cols = list(truth.columns)  # a plain list: iterating an Index per row is slow
    for idx, row in enumerate(truth.itertuples(index=False)):
        rec = dict(zip(truth_cols, row))
        if _missing(rec["case_id"]):
            problem("truth", idx, "case_id", "the case ID is empty; fill it in or delete the row.")
            continue
        cid = _id_str(rec["case_id"])
        lid = rec.get("lesion_id")
        lid_s = None if _missing(lid) else _id_str(lid)
        if cid not in case_lesions and cid not in normal_rows:
            case_order.append(cid)
        if lid_s is None:
            if cid in normal_rows:
                problem(
                    "truth",
                    idx,
                    "case_id",
                    f"normal case {cid!r} is listed twice (first at row {locate(tn['truth'], normal_rows[cid], None).row}); delete the duplicate.",
                )
                continue
            if cid in case_lesions:
                problem(
                    "truth",
                    idx,
                    "lesion_id",
                    f"case {cid!r} is listed both as normal (no lesion) and with lesions; a case is either normal or abnormal.",
                )
                continue
            normal_rows[cid] = idx
            w = rec.get("weight")
            if not _missing(w):
                wv = _rating(w)
                if wv is None:
                    problem("truth", idx, "weight", f"weight {w!r} is not a number.")
                elif wv != 0:
                    problem(
                        "truth",
                        idx,
                        "weight",
                        f"normal case {cid!r} has weight {wv:g}; a normal case has no lesion, so its weight must be 0 or empty.",
                    )
            continue
        if cid in normal_rows:
            problem(
                "truth", idx, "lesion_id", f"case {cid!r} is listed both as normal (no lesion) and with lesions; a case is either normal or abnormal."
            )
            continue
        lesions = case_lesions.setdefault(cid, [])
        if any(l[0] == lid_s for l in lesions):
            problem("truth", idx, "lesion_id", f"lesion {lid_s!r} of case {cid!r} is listed twice; delete the duplicate row.")
            continue
        w = rec.get("weight")
        wv: Any
        if _missing(w):
            wv = None
        else:
            wv = _rating(w)
            if wv is None or wv < 0 or not math.isfinite(wv):
                problem("truth", idx, "weight", f"weight {w!r} is not a non-negative number.")
                wv = None
        attrs = {a: str(rec[a]).strip() for a in attr_cols if not _missing(rec.get(a))}
        lesions.append((lid_s, wv, attrs, idx))

    lesion_objs: dict[str, tuple[Lesion, ...]] = {}
    for cid, lesions in case_lesions.items():
        ws = [l[1] for l in lesions]
        if all(w is None or w == 0 for w in ws):
            eq = 1.0 / len(lesions)
            lesion_objs[cid] = tuple(Lesion(l[0], eq, l[2]) for l in lesions)
            continue
        if any(w is None for w in ws):
            problem(
                "truth",
                lesions[0][3],
                "weight",
                f"case {cid!r}: some lesions have a weight and some do not; give every lesion of the case a weight (or none for equal weights).",
            )
            continue
        total = float(sum(ws))
        if abs(total - 1.0) > _WEIGHT_TOLERANCE + 1e-9:
            problem(
                "truth",
                lesions[0][3],
                "weight",
                f"the weights of case {cid!r} sum to {total:.6g}, not 1; fix them so that they sum to 1 (or set all to 0 for equal weights).",
            )
            continue
        lesion_objs[cid] = tuple(Lesion(l[0], l[1] / total, l[2]) for l in lesions)

    normal_cases = [c for c in case_order if c in normal_rows]
    abnormal_cases = [c for c in case_order if c in case_lesions]
    if not case_order:
        problems.append(Problem("the truth table has no cases.", sheet=tn["truth"]))
    elif not abnormal_cases:
        problems.append(Problem("the truth table has no abnormal case (no lesion); at least one case with a lesion is needed.", sheet=tn["truth"]))

    # ---- treatments / readers
    def ids_in(col: str) -> list[str]:
        seen: dict[str, None] = {}
        for df in (nl_df, ll_df):
            for v in df[col]:
                if not _missing(v):
                    seen.setdefault(_id_str(v), None)
        return list(seen)

    trt = [_id_str(t) for t in treatments] if treatments is not None else ids_in("treatment")
    rdr = [_id_str(r) for r in readers] if readers is not None else ids_in("reader")
    if not trt:
        problems.append(Problem("no treatment found (no marks and none declared).", sheet=tn["nl"]))
    if not rdr:
        problems.append(Problem("no reader found (no marks and none declared).", sheet=tn["nl"]))
    t_index = {t: i for i, t in enumerate(trt)}
    r_index = {r: j for j, r in enumerate(rdr)}
    k_index = {c: k for k, c in enumerate(normal_cases + abnormal_cases)}
    k1 = len(normal_cases)
    a_index = {c: k for k, c in enumerate(abnormal_cases)}

    def check_ids(table: str, idx: int, rec: dict[str, Any]) -> tuple | None:
        ok = True
        out = []
        for col, index, what in (("treatment", t_index, "treatment"), ("reader", r_index, "reader")):
            v = rec[col]
            if _missing(v):
                problem(table, idx, col, f"the {what} ID is empty.")
                ok = False
                continue
            s = _id_str(v)
            if s not in index:
                problem(table, idx, col, f"{what} {s!r} is not one of the study's {what}s {list(index)}.")
                ok = False
                continue
            out.append(index[s])
        v = rec["case_id"]
        if _missing(v):
            problem(table, idx, "case_id", "the case ID is empty.")
            return None
        cid = _id_str(v)
        if cid not in k_index:
            problem(table, idx, "case_id", f"case {cid!r} is not in the truth table; add it there or correct the ID.")
            return None
        x = _rating(rec["rating"])
        if x is None:
            problem(table, idx, "rating", f"rating {rec['rating']!r} is not a number; ratings must be numeric.")
            ok = False
        elif x == -math.inf and paradigm != "ROC":
            problem(table, idx, "rating", "rating -inf is not a mark; leave unmarked cases/lesions out instead.")
            ok = False
        if not ok:
            return None
        return out[0], out[1], cid, x

    # ---- NL marks
    nl_lists: dict[tuple[int, int, int], list[float]] = {}
    roc_nl_seen: dict[tuple[int, int, int], int] = {}
    nl_cols = list(nl_df.columns)
    for idx, row in enumerate(nl_df.itertuples(index=False)):
        rec = dict(zip(nl_cols, row))
        r = check_ids("nl", idx, rec)
        if r is None:
            continue
        i, j, cid, x = r
        k = k_index[cid]
        if paradigm == "ROC":
            if k >= k1:
                problem(
                    "nl",
                    idx,
                    "case_id",
                    f"ROC data: case {cid!r} is abnormal, so its rating belongs in the lesion-localisation (LL/TP) table, not the NL/FP table.",
                )
                continue
            if (i, j, k) in roc_nl_seen:
                problem(
                    "nl",
                    idx,
                    "case_id",
                    f"ROC data: case {cid!r} is rated twice by reader {rdr[j]!r} in "
                    f"treatment {trt[i]!r} (also at row "
                    f"{locate(tn['nl'], roc_nl_seen[(i, j, k)], None).row}).",
                )
                continue
            roc_nl_seen[(i, j, k)] = idx
        nl_lists.setdefault((i, j, k), []).append(x)

    # ---- LL marks
    ll_entries: dict[tuple[int, int, int, int], int] = {}
    ll_values: dict[tuple[int, int, int, int], float] = {}
    ll_cols = list(ll_df.columns)
    for idx, row in enumerate(ll_df.itertuples(index=False)):
        rec = dict(zip(ll_cols, row))
        r = check_ids("ll", idx, rec)
        if r is None:
            continue
        i, j, cid, x = r
        if cid not in a_index:
            problem(
                "ll",
                idx,
                "case_id",
                f"case {cid!r} is a normal case (no lesion in the truth table), so it cannot "
                "have a lesion localisation; move the mark to the NL/FP table or fix the truth.",
            )
            continue
        if cid not in lesion_objs:
            continue  # its truth rows already have a problem
        lesions = lesion_objs[cid]
        lid = rec.get("lesion_id")
        if _missing(lid):
            if paradigm == "ROC" and len(lesions) == 1:
                l = 0
            else:
                problem("ll", idx, "lesion_id", "the lesion ID is empty.")
                continue
        else:
            lid_s = _id_str(lid)
            ids = [les.id for les in lesions]
            if lid_s not in ids:
                problem("ll", idx, "lesion_id", f"lesion {lid_s!r} of case {cid!r} is not in the truth table (that case has lesions {ids}).")
                continue
            l = ids.index(lid_s)
        key = (i, j, a_index[cid], l)
        if key in ll_entries:
            problem(
                "ll",
                idx,
                "lesion_id",
                f"lesion {lesions[l].id!r} of case {cid!r} is marked twice by reader "
                f"{rdr[j]!r} in treatment {trt[i]!r} (also at row "
                f"{locate(tn['ll'], ll_entries[key], None).row}); a lesion can be localised "
                "only once: keep the highest rating.",
            )
            continue
        ll_entries[key] = idx
        ll_values[key] = x

    if paradigm == "ROC" and not problems:
        missing_nl = [(i, j, k) for i in range(len(trt)) for j in range(len(rdr)) for k in range(k1) if (i, j, k) not in roc_nl_seen]
        missing_ll = [
            (i, j, k) for i in range(len(trt)) for j in range(len(rdr)) for k in range(len(abnormal_cases)) if (i, j, k, 0) not in ll_entries
        ]
        for i, j, k in missing_nl[:20]:
            problems.append(
                Problem(
                    f"ROC data: normal case {normal_cases[k]!r} has no rating from reader "
                    f"{rdr[j]!r} in treatment {trt[i]!r}; every reader must rate every case.",
                    sheet=tn["nl"],
                )
            )
        for i, j, k in missing_ll[:20]:
            problems.append(
                Problem(
                    f"ROC data: abnormal case {abnormal_cases[k]!r} has no rating from reader "
                    f"{rdr[j]!r} in treatment {trt[i]!r}; every reader must rate every case.",
                    sheet=tn["ll"],
                )
            )
        extra = len(missing_nl) + len(missing_ll) - min(20, len(missing_nl)) - min(20, len(missing_ll))
        if extra > 0:
            problems.append(Problem(f"... and {extra} more unrated cases.", sheet=tn["nl"]))
        if any(len(lesion_objs.get(c, ())) != 1 for c in abnormal_cases):
            bad = [c for c in abnormal_cases if len(lesion_objs.get(c, ())) != 1]
            problems.append(
                Problem(f"ROC data: abnormal cases {bad[:10]} have more than one lesion; ROC data have one truth row per case.", sheet=tn["truth"])
            )

    if problems:
        raise ObserverDataError(problems)

    n_i, n_j, k = len(trt), len(rdr), len(normal_cases) + len(abnormal_cases)
    max_nl = max([len(v) for v in nl_lists.values()] + [1])
    nl = np.full((n_i, n_j, k, max_nl), -np.inf)
    for (i, j, kk), vals in nl_lists.items():
        vals.sort(reverse=True)
        nl[i, j, kk, : len(vals)] = vals
    abn_lesions = tuple(lesion_objs[c] for c in abnormal_cases)
    max_ll = max(len(c) for c in abn_lesions)
    ll = np.full((n_i, n_j, len(abnormal_cases), max_ll), -np.inf)
    for key, x in ll_values.items():
        ll[key] = x
    return ObserverData(
        treatments=tuple(trt),
        readers=tuple(rdr),
        normal_cases=tuple(normal_cases),
        abnormal_cases=tuple(abnormal_cases),
        lesions=abn_lesions,
        nl=nl,
        ll=ll,
        paradigm=paradigm,  # type: ignore[arg-type]
        reader_groups=dict(reader_groups or {}),
        name=name,
    )
