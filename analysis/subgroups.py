"""Subgroup analyses of an observer study: by reader group and by lesion class.

Reader studies report, besides the primary analysis, whether the effect holds for subgroups:
board-certified radiologists vs residents, vertebral-body vs posterior-arch lesions, lytic vs
blastic metastases.  :func:`subgroup_analysis` repeats the significance test
(:func:`analysis.significance_test`) within each subgroup:

* **Reader groups** (``by="reader_group"``): the readers of one group
  (:meth:`ObserverData.select_readers`) reading all cases.
* **Lesion classes** (``by="lesion_location"``, ``"lesion_type"``, ``"lesion:<attribute>"`` or a
  callable): all readers on the lesion-class subgroup :meth:`ObserverData.select_lesions` —
  all normal cases, plus the abnormal cases with at least one lesion of the class; lesions of
  other classes are removed together with the marks on them (which therefore count neither as
  lesion localisations nor as false positives); the weights of the remaining lesions of a
  case are renormalised to sum to 1.  ``docs/analysis-subgroups.md`` states the definition
  with a worked example.

Subgroups are smaller than the study, so some analyses may be undefined: a reader group with
one reader has only the fixed-reader analysis (FRRC); a lesion class may leave a figure of merit
undefined.  Such subgroups are reported with a :class:`SubgroupWarning` and an ``error`` entry,
never with an exception, so that one thin subgroup does not stop a report.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from analysis.data import Lesion, ObserverData, ObserverDataError
from analysis.results import ResultSummary, SignificanceResult, _fmt, _fmt_p

__all__ = [
    "SUBGROUP_KINDS",
    "SubgroupError",
    "SubgroupWarning",
    "Subgroup",
    "SubgroupResult",
    "subgroup_analysis",
    "available_subgroups",
]

#: Built-in subgroup kinds -> the lesion attribute they use (None: reader groups).
SUBGROUP_KINDS: dict[str, str | None] = {
    "reader_group": None,
    "lesion_location": "location",
    "lesion_type": "lesion_type",
}

_RESULT_PROVENANCE_KEYS = ("schema", "package_version", "input_file", "input_sha256", "created_utc")


class SubgroupError(ValueError):
    """A subgroup analysis was requested that the study cannot support (says what to add)."""


class SubgroupWarning(UserWarning):
    """A subgroup's analysis is reduced or undefined (single reader, undefined FOM, ...)."""


LesionClassifier = Callable[[str, Lesion], "str | None"]


@dataclass(frozen=True, eq=False)
class Subgroup:
    """One subgroup and its significance test.

    Attributes
    ----------
    by : str
        The partition (``"reader_group"``, ``"lesion_location"``, ``"lesion_type"``,
        ``"lesion:<attribute>"`` or the name given for a callable).
    label : str
        The subgroup (``"resident"``, ``"vertebral_body"``, ...).
    kind : {"readers", "lesions"}
        Whether the subgroup selects readers or lesions.
    readers : tuple of str
        Readers in the subgroup.
    n_normal, n_abnormal, n_lesions : int
        Cases and lesions that enter the subgroup's figures of merit.
    result : SignificanceResult or None
        ``None`` when the analysis is undefined for the subgroup (see ``error``).
    error : str or None
        Why there is no result.
    warnings : tuple of str
        Notes on reduced analyses (e.g. FRRC only with one reader).
    """

    by: str
    label: str
    kind: Literal["readers", "lesions"]
    readers: tuple[str, ...]
    n_normal: int
    n_abnormal: int
    n_lesions: int
    result: SignificanceResult | None
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def primary_analysis(self) -> str | None:
        """``"RRRC"`` when computed, otherwise the first analysis available (FRRC for a
        single reader), or None without a result."""
        if self.result is None:
            return None
        if "RRRC" in self.result.analyses:
            return "RRRC"
        return next(iter(self.result.analyses), None)

    @property
    def n_readers(self) -> int:
        return len(self.readers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``result`` is the significance JSON without provenance."""
        result = None
        if self.result is not None:
            result = {k: v for k, v in self.result.to_dict().items() if k not in _RESULT_PROVENANCE_KEYS}
        return {
            "by": self.by,
            "label": self.label,
            "kind": self.kind,
            "readers": list(self.readers),
            "n_normal": self.n_normal,
            "n_abnormal": self.n_abnormal,
            "n_lesions": self.n_lesions,
            "primary_analysis": self.primary_analysis,
            "result": result,
            "error": self.error,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, eq=False)
class SubgroupResult:
    """Significance tests of the subgroups of one partition.

    Attributes
    ----------
    by : str
    fom, method, covariance : str
    alpha : float
    subgroups : tuple of Subgroup
        In order of first appearance in the study (reader order / lesion order).
    unassigned : int
        Lesions (lesion partitions) or readers (reader groups) that belong to no subgroup.
    warnings : tuple of str
    """

    by: str
    fom: str
    method: str
    covariance: str
    alpha: float
    subgroups: tuple[Subgroup, ...]
    unassigned: int = 0
    warnings: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Subgroup]:
        return iter(self.subgroups)

    def __len__(self) -> int:
        return len(self.subgroups)

    def __getitem__(self, label: str) -> Subgroup:
        for s in self.subgroups:
            if s.label == label:
                return s
        raise KeyError(f"No subgroup {label!r}; the subgroups are {[s.label for s in self.subgroups]}.")

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.subgroups)

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per subgroup x analysis x estimate (as
        :meth:`SignificanceResult.to_frame`) with the subgroup columns in front.

        Columns: ``by, subgroup, n_readers, n_normal, n_abnormal, n_lesions, analysis, kind,
        treatment_a, treatment_b, reader, estimate, se, df, statistic, p_value, ci_lower,
        ci_upper, error``.  A subgroup without a result has one row with its ``error``.
        """
        frames = []
        for s in self.subgroups:
            head = {
                "by": s.by,
                "subgroup": s.label,
                "n_readers": s.n_readers,
                "n_normal": s.n_normal,
                "n_abnormal": s.n_abnormal,
                "n_lesions": s.n_lesions,
            }
            if s.result is None:
                frames.append(pd.DataFrame([{**head, "error": s.error}]))
                continue
            f = s.result.to_frame()
            for k, v in reversed(list(head.items())):
                f.insert(0, k, v)
            f["error"] = None
            frames.append(f)
        columns = [
            "by",
            "subgroup",
            "n_readers",
            "n_normal",
            "n_abnormal",
            "n_lesions",
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
            "error",
        ]
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True).reindex(columns=columns)

    def summary_frame(self) -> pd.DataFrame:
        """One row per subgroup and treatment pair: the primary analysis's difference
        (RRRC; FRRC for a single reader) with CI and p, plus the treatment means."""
        rows = []
        for s in self.subgroups:
            base = {
                "by": s.by,
                "subgroup": s.label,
                "readers": s.n_readers,
                "normal cases": s.n_normal,
                "abnormal cases": s.n_abnormal,
                "lesions": s.n_lesions,
            }
            if s.result is None:
                rows.append({**base, "analysis": None, "comparison": None, "note": s.error})
                continue
            res = s.result.analyses[s.primary_analysis]
            means = dict(zip(s.result.treatments, s.result.treatment_means))
            for c in res.differences:
                rows.append(
                    {
                        **base,
                        "analysis": s.primary_analysis,
                        "comparison": f"{c.treatments[0]} - {c.treatments[1]}",
                        "mean_a": means[c.treatments[0]],
                        "mean_b": means[c.treatments[1]],
                        "difference": c.estimate,
                        "ci_lower": c.ci_lower,
                        "ci_upper": c.ci_upper,
                        "p_value": c.p_value,
                        "note": "; ".join(s.warnings) or None,
                    }
                )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document (``docs/analysis-json.md``, section "Subgroups")."""
        return {
            "by": self.by,
            "fom": self.fom,
            "method": self.method,
            "covariance": self.covariance,
            "alpha": self.alpha,
            "definition": _definition(self.by),
            "unassigned": self.unassigned,
            "subgroups": [s.to_dict() for s in self.subgroups],
            "warnings": list(self.warnings),
        }

    def summary(self) -> ResultSummary:
        frame = self.summary_frame()
        shown = frame.copy()
        for col in ("mean_a", "mean_b", "difference", "ci_lower", "ci_upper"):
            if col in shown:
                shown[col] = shown[col].map(lambda v: _fmt(v) if v is not None and not _isnan(v) else "-")
        if "p_value" in shown:
            shown["p_value"] = shown["p_value"].map(lambda v: _fmt_p(v) if v is not None and not _isnan(v) else "-")
        sections: list[tuple[str, pd.DataFrame | str]] = [("Definition", _definition(self.by)), ("Subgroups", shown)]
        if self.warnings:
            sections.append(("Warnings", "\n".join(self.warnings)))
        title = f"Subgroups by {self.by}: {self.method} analysis of {self.fom}"
        return ResultSummary(title=title, sections=tuple(sections))

    def __repr__(self) -> str:
        return f"SubgroupResult(by={self.by!r}, fom={self.fom!r}, method={self.method!r}, subgroups={list(self.labels)})"


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def _definition(by: str) -> str:
    if by == "reader_group":
        return (
            "Reader groups: the readers of each group, reading all cases; the group's "
            "reader-averaged figure of merit and its test treat the group's readers as a "
            "sample of that group."
        )
    return (
        "Lesion classes: all normal cases plus the abnormal cases with at least one lesion of "
        "the class; lesions of other classes and the marks on them are removed (neither lesion "
        "localisations nor false positives); the weights of a case's remaining lesions are "
        "renormalised to sum to 1."
    )


def _lesion_attribute(by: str) -> str | None:
    if by in SUBGROUP_KINDS:
        return SUBGROUP_KINDS[by]
    if by.startswith("lesion:") and len(by) > len("lesion:"):
        return by[len("lesion:") :]
    raise SubgroupError(
        f"Unknown subgroup kind {by!r}; use 'reader_group', 'lesion_location', 'lesion_type', "
        "'lesion:<attribute>' (any lesion attribute of the study) or a function "
        "(case_id, lesion) -> class label."
    )


def available_subgroups(data: ObserverData) -> tuple[str, ...]:
    """The built-in subgroup kinds the study supports.

    ``"reader_group"`` when reader groups are recorded (at least one reader with a group);
    ``"lesion_location"`` / ``"lesion_type"`` when lesions carry a ``location`` /
    ``lesion_type`` attribute.
    """
    out = []
    if data.reader_groups:
        out.append("reader_group")
    attrs = set(data.lesion_attribute_names())
    for kind in ("lesion_location", "lesion_type"):
        if SUBGROUP_KINDS[kind] in attrs:
            out.append(kind)
    return tuple(out)


def subgroup_analysis(
    data: ObserverData,
    fom: str = "wAFROC",
    *,
    by: str | LesionClassifier = "reader_group",
    method: Literal["OR", "DBM"] = "OR",
    analyses: str | Sequence[str] = "ALL",
    covariance: Literal["jackknife", "delong", "bootstrap"] = "jackknife",
    alpha: float = 0.05,
    name: str | None = None,
    random_state: int | None = None,
    n_bootstraps: int = 2000,
    progress: Callable[[int, int, str], None] | None = None,
) -> SubgroupResult:
    """Run the significance test within each subgroup of readers or lesions.

    Parameters
    ----------
    data : ObserverData
    fom : str, default "wAFROC"
        Figure of merit (``analysis.FOMS``).
    by : str or callable, default "reader_group"
        ``"reader_group"`` (the study's ``reader_groups``), ``"lesion_location"`` (lesion
        attribute ``location``), ``"lesion_type"`` (attribute ``lesion_type``),
        ``"lesion:<attribute>"`` for any other lesion attribute, or a function
        ``(case_id, lesion) -> label or None`` assigning each lesion to a class (None: in no
        class).
    method, analyses, covariance, alpha, random_state, n_bootstraps
        Passed to :func:`analysis.significance_test`.
    name : str, optional
        Name of the partition of a callable ``by`` (default ``"lesion_class"``).
    progress : callable, optional
        ``progress(done, total, label)`` after each subgroup.

    Returns
    -------
    SubgroupResult

    Raises
    ------
    SubgroupError
        Unknown ``by``, or the study records no reader groups / no lesion of that attribute.

    Warns
    -----
    SubgroupWarning
        For each subgroup whose analysis is reduced (a single reader: FRRC only) or undefined
        (then its ``result`` is None and ``error`` says why), and for lesions or readers in no
        subgroup.

    Examples
    --------
    >>> res = subgroup_analysis(data, "wAFROC", by="lesion_type")   # doctest: +SKIP
    >>> res.summary_frame()                                          # doctest: +SKIP
    """
    from analysis.significance import significance_test
    from analysis.stats._common import MRMCWarning

    if callable(by):
        classify: LesionClassifier | None = by
        by_name = name or "lesion_class"
        kind: Literal["readers", "lesions"] = "lesions"
    elif by == "reader_group":
        classify, by_name, kind = None, "reader_group", "readers"
    else:
        attr = _lesion_attribute(str(by))
        by_name, kind = str(by), "lesions"
        if attr not in data.lesion_attribute_names():
            raise SubgroupError(
                f"Subgroups by {by!r} need the lesion attribute {attr!r}, but the study's lesions "
                f"have {list(data.lesion_attribute_names()) or 'no attributes'}. Add a {attr!r} "
                "column to the truth table (TRUTH sheet or tidy CSV)."
            )

        def classify(case_id: str, lesion: Lesion, _a: str = attr) -> str | None:
            value = lesion.attributes.get(_a)
            return value if value not in (None, "") else None

    notes: list[str] = []
    groups: list[tuple[str, ObserverData | None, str | None]] = []
    unassigned = 0
    if kind == "readers":
        if not data.reader_groups:
            raise SubgroupError(
                "Subgroups by reader group need the readers' groups, but the study records none. "
                "Add a READERS sheet (ReaderID | Group) to the Excel file, a reader_group column to "
                "the tidy CSV, or pass reader_groups= when building the data."
            )
        labels: list[str] = []
        for r in data.readers:
            g = data.reader_groups.get(r)
            if g is None:
                unassigned += 1
            elif g not in labels:
                labels.append(g)
        if unassigned:
            notes.append(f"{unassigned} reader(s) have no group and are in no reader-group subgroup.")
            warnings.warn(notes[-1], SubgroupWarning, stacklevel=2)
        for g in labels:
            members = [r for r in data.readers if data.reader_groups.get(r) == g]
            groups.append((g, data.select_readers(members), None))
    else:
        assert classify is not None
        labels_l: list[str] = []
        cls = []
        for c, case in zip(data.abnormal_cases, data.lesions):
            row = []
            for les in case:
                lab = classify(c, les)
                lab = None if lab is None else str(lab)
                row.append(lab)
                if lab is None:
                    unassigned += 1
                elif lab not in labels_l:
                    labels_l.append(lab)
            cls.append(row)
        if unassigned:
            notes.append(
                f"{unassigned} lesion(s) have no {by_name} class; they are in no lesion-class "
                "subgroup (their cases enter a subgroup only through lesions of its class)."
            )
            warnings.warn(notes[-1], SubgroupWarning, stacklevel=2)
        if not labels_l:
            raise SubgroupError(f"No lesion has a {by_name} class, so there are no subgroups.")
        for lab in labels_l:
            mask = np.zeros((data.n_abnormal, data.max_ll), dtype=bool)
            for k, row in enumerate(cls):
                for l, x in enumerate(row):
                    mask[k, l] = x == lab
            try:
                groups.append((lab, data.select_lesions(mask), None))
            except ObserverDataError as exc:  # pragma: no cover - a label always has a lesion
                groups.append((lab, None, str(exc)))

    subgroups: list[Subgroup] = []
    for n, (label, sub, err) in enumerate(groups):
        sub_warnings: list[str] = []
        result = None
        if sub is not None and err is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MRMCWarning)
                try:
                    result = significance_test(
                        sub,
                        fom,
                        method=method,
                        analyses=analyses,
                        covariance=covariance,
                        alpha=alpha,
                        random_state=random_state,
                        n_bootstraps=n_bootstraps,
                    )
                except ValueError as exc:  # MRMCInputError, FomError: undefined for this subgroup
                    err = str(exc)
            for w in caught:
                if issubclass(w.category, MRMCWarning):
                    msg = str(w.message)
                    if msg not in sub_warnings:
                        sub_warnings.append(msg)
                else:  # pragma: no cover - unrelated warnings pass through
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        ref = sub if sub is not None else data
        subgroups.append(
            Subgroup(
                by=by_name,
                label=label,
                kind=kind,
                readers=ref.readers if sub is not None else (),
                n_normal=ref.n_normal if sub is not None else 0,
                n_abnormal=ref.n_abnormal if sub is not None else 0,
                n_lesions=ref.n_lesions if sub is not None else 0,
                result=result,
                error=err,
                warnings=tuple(sub_warnings),
            )
        )
        if err is not None:
            msg = f"Subgroup {by_name}={label!r}: no analysis ({err})"
            notes.append(msg)
            warnings.warn(msg, SubgroupWarning, stacklevel=2)
        elif sub_warnings:
            msg = f"Subgroup {by_name}={label!r}: " + " ".join(sub_warnings)
            notes.append(msg)
            warnings.warn(msg, SubgroupWarning, stacklevel=2)
        if progress is not None:
            progress(n + 1, len(groups), label)
    return SubgroupResult(
        by=by_name,
        fom=fom,
        method=str(method).upper(),
        covariance=str(covariance).lower(),
        alpha=alpha,
        subgroups=tuple(subgroups),
        unassigned=unassigned,
        warnings=tuple(notes),
    )
