"""Scoring marks against truth: lesion localisations (LL) and non-lesion localisations (NL).

Pure functions on plain records; no database. Positions are LPS millimetres of the current exam.

Acceptance rule (which marks hit a lesion)
------------------------------------------
The study's acceptance rule is the platform's one hit rule (:class:`cases.HitRule`, also used by
the detector's stand-alone FROC) with no margin:

``radius``
    A mark hits a lesion when its distance to the lesion's centre is **at most** ``radius_mm``
    (a mark exactly on the boundary counts as a hit).
``extent``
    A mark hits a lesion when it lies inside the lesion itself: inside its label map (the voxel
    containing the mark holds the lesion's label value, or any non-zero value when the lesion has
    no label value), or, for a lesion described only by a sphere, within ``radius_mm`` of its
    centre (boundary included). A mark outside the label map's grid hits nothing.

Rules when marks and lesions meet more than once
------------------------------------------------
Within one reader, treatment and case, marks are considered from the highest rating down
(equal ratings: the mark saved first, i.e. the lower ``mark_id``, goes first):

1. A mark that hits no lesion is an **NL**. Every mark on a normal case is an NL.
2. A mark that hits several lesions is assigned to the one whose **centre is nearest** (equal
   distances: the lesion listed first). It is not reassigned to another lesion later.
3. The first — highest-rated — mark assigned to a lesion is that lesion's **LL**, with its
   rating. Further marks assigned to the same lesion are **dropped**: neither LL nor NL. This is
   the convention of JAFROC analysis (Chakraborty): a second mark on an already found lesion
   shows neither a new detection nor a false positive; counting it as an NL would penalise
   readers for outlining a lesion twice. Dropped marks are kept in :meth:`ScoringResult.marks_frame`
   with outcome ``"dropped"`` so they can be reviewed.
4. A lesion without any LL is unmarked: its rating is ``-inf``, as RJafroc represents it
   (:meth:`ScoringResult.lesion_ratings`); in the JAFROC file it simply has no LL row.

ROC ratings derived from FROC marks (:func:`roc_ratings`): the highest rating of any mark on the
case (LL, NL or dropped: a dropped mark never exceeds its lesion's LL); a case read without any
mark gets the lowest value, ``unmarked`` (``-inf`` by default; the iMRMC export uses one below the
scale's lowest rating).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from cases import HitRule, TruthLesion
from cases.truth import BOUNDARY_TOLERANCE_MM

from .errors import ReaderStudyError

__all__ = [
    "AcceptanceRule",
    "TruthLesion",
    "MarkToScore",
    "MarkScore",
    "ScoringResult",
    "ScoringError",
    "score_marks",
    "roc_ratings",
    "BOUNDARY_TOLERANCE_MM",
]


class ScoringError(ReaderStudyError):
    """Marks or truth cannot be scored (e.g. a label map is missing for the extent rule)."""


@dataclass(frozen=True)
class AcceptanceRule:
    """When a mark hits a lesion: ``kind`` ``"radius"`` (within ``radius_mm`` of the centre) or ``"extent"``."""

    kind: Literal["radius", "extent"]
    radius_mm: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("radius", "extent"):
            raise ScoringError(
                f"Unknown acceptance rule {self.kind!r}; use 'radius' (within a distance of the centre) or 'extent' (inside the lesion)."
            )
        if self.kind == "radius":
            if self.radius_mm is None or not math.isfinite(self.radius_mm) or self.radius_mm <= 0:
                raise ScoringError(f"The radius rule needs a positive acceptance radius in mm, got {self.radius_mm!r}.")

    @property
    def hit_rule(self) -> HitRule:
        """The platform's hit rule (:class:`cases.HitRule`) this acceptance rule stands for."""
        return HitRule("radius", radius_mm=self.radius_mm) if self.kind == "radius" else HitRule("extent", margin_mm=0.0)

    def describe(self) -> str:
        return self.hit_rule.describe()


@dataclass(frozen=True)
class MarkToScore:
    """A mark: who made it, where (LPS mm of the current exam) and with which rating."""

    mark_id: int | str
    treatment: str
    reader: str
    case_id: str
    point_mm: tuple[float, float, float]
    rating: float


@dataclass(frozen=True)
class MarkScore:
    """The outcome of one mark: ``"LL"``, ``"NL"`` or ``"dropped"``.

    ``lesion_id`` is the lesion the mark was assigned to (LL and dropped), ``distance_mm`` the
    distance to that lesion's centre, or for an NL the distance to the nearest lesion centre of
    the case (``nan`` on a normal case).
    """

    mark: MarkToScore
    outcome: Literal["LL", "NL", "dropped"]
    lesion_id: str | None
    distance_mm: float


@dataclass(frozen=True)
class ScoringResult:
    """Scored marks with the truth they were scored against."""

    scores: tuple[MarkScore, ...]
    lesions: tuple[TruthLesion, ...]
    rule: AcceptanceRule

    def marks_frame(self) -> pd.DataFrame:
        """Every mark with its outcome, assigned lesion and distance."""
        return pd.DataFrame(
            [
                {
                    "mark_id": s.mark.mark_id,
                    "treatment": s.mark.treatment,
                    "reader": s.mark.reader,
                    "case_id": s.mark.case_id,
                    "x_mm": s.mark.point_mm[0],
                    "y_mm": s.mark.point_mm[1],
                    "z_mm": s.mark.point_mm[2],
                    "rating": s.mark.rating,
                    "outcome": s.outcome,
                    "lesion_id": s.lesion_id,
                    "distance_mm": s.distance_mm,
                }
                for s in self.scores
            ],
            columns=["mark_id", "treatment", "reader", "case_id", "x_mm", "y_mm", "z_mm", "rating", "outcome", "lesion_id", "distance_mm"],
        )

    def nl_frame(self) -> pd.DataFrame:
        """Non-lesion localisations: treatment, reader, case_id, rating."""
        rows = [
            {"treatment": s.mark.treatment, "reader": s.mark.reader, "case_id": s.mark.case_id, "rating": s.mark.rating}
            for s in self.scores
            if s.outcome == "NL"
        ]
        return pd.DataFrame(rows, columns=["treatment", "reader", "case_id", "rating"])

    def ll_frame(self) -> pd.DataFrame:
        """Lesion localisations (at most one per lesion, reader and treatment): treatment, reader, case_id, lesion_id, rating."""
        rows = [
            {"treatment": s.mark.treatment, "reader": s.mark.reader, "case_id": s.mark.case_id, "lesion_id": s.lesion_id, "rating": s.mark.rating}
            for s in self.scores
            if s.outcome == "LL"
        ]
        return pd.DataFrame(rows, columns=["treatment", "reader", "case_id", "lesion_id", "rating"])

    def lesion_ratings(self, treatments: Sequence[str], readers: Sequence[str]) -> pd.DataFrame:
        """Every lesion for every reader and treatment, with its LL rating or ``-inf`` when unmarked."""
        ll = {(s.mark.treatment, s.mark.reader, s.mark.case_id, s.lesion_id): s.mark.rating for s in self.scores if s.outcome == "LL"}
        rows = [
            {
                "treatment": t,
                "reader": r,
                "case_id": les.case_id,
                "lesion_id": les.lesion_id,
                "rating": ll.get((t, r, les.case_id, les.lesion_id), -math.inf),
            }
            for t in treatments
            for r in readers
            for les in self.lesions
        ]
        return pd.DataFrame(rows, columns=["treatment", "reader", "case_id", "lesion_id", "rating"])

    def counts(self) -> dict[str, int]:
        out = {"LL": 0, "NL": 0, "dropped": 0}
        for s in self.scores:
            out[s.outcome] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        return f"{len(self.scores)} marks: {c['LL']} lesion localisations, {c['NL']} non-lesion localisations, {c['dropped']} dropped (second marks on a found lesion); rule: {self.rule.describe()}"


def _with_label_map(lesion: TruthLesion, rule: AcceptanceRule, label_maps: Mapping | None) -> TruthLesion:
    """The lesion with its label map attached (extent rule), after checking that its extent is known."""
    if rule.kind != "extent":
        return lesion
    volume = (label_maps or {}).get((lesion.case_id, lesion.lesion_id))
    if volume is None:
        if lesion.radius_mm is None and lesion.label_map is None and lesion.points_mm is None:
            raise ScoringError(
                f"Lesion {lesion.lesion_id} of case {lesion.case_id} has neither a label map nor a radius; "
                "the extent rule needs one of them. Give the label map (label_maps) or use the radius rule."
            )
        return lesion
    return replace(lesion, label_map=volume)


def score_marks(
    marks: Iterable[MarkToScore],
    lesions: Iterable[TruthLesion],
    rule: AcceptanceRule,
    *,
    label_maps: Mapping[tuple[str, str], object] | None = None,
) -> ScoringResult:
    """Classify every mark as LL, NL or dropped (see the module docstring for the rules).

    Parameters
    ----------
    marks : the marks (deleted marks must be left out by the caller).
    lesions : the truth lesions of all cases; a case without lesions is normal.
    rule : the acceptance rule.
    label_maps : for the extent rule, a :class:`cases.LabelVolume` per ``(case_id, lesion_id)``
        that is described by a label map.

    Returns
    -------
    ScoringResult
        With one :class:`MarkScore` per mark, in the input order.
    """
    lesions = tuple(lesions)
    hit_rule = rule.hit_rule
    by_case: dict[str, list[TruthLesion]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for lesion in lesions:
        key = (lesion.case_id, lesion.lesion_id)
        if key in seen:
            raise ScoringError(f"Lesion {lesion.lesion_id} appears twice in case {lesion.case_id}; lesion IDs must be unique within a case.")
        seen.add(key)
        by_case[lesion.case_id].append(_with_label_map(lesion, rule, label_maps))

    marks = list(marks)
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, mark in enumerate(marks):
        if not math.isfinite(float(mark.rating)):
            raise ScoringError(f"Mark {mark.mark_id} has rating {mark.rating!r}; ratings must be finite numbers.")
        groups[(mark.treatment, mark.reader, mark.case_id)].append(i)

    results: list[MarkScore | None] = [None] * len(marks)
    for (_treatment, _reader, case_id), indices in groups.items():
        case_lesions = by_case.get(case_id, [])
        centres = np.asarray([les.center_mm for les in case_lesions], dtype=float).reshape(-1, 3)
        taken: set[str] = set()
        ordered = sorted(indices, key=lambda i: (-float(marks[i].rating), _sort_key(marks[i].mark_id)))
        for i in ordered:
            mark = marks[i]
            point = np.asarray(mark.point_mm, dtype=float)
            if not case_lesions:
                results[i] = MarkScore(mark, "NL", None, math.nan)
                continue
            distances = np.linalg.norm(centres - point, axis=1)
            hit = [n for n, les in enumerate(case_lesions) if hit_rule.hits(les, point)]
            if not hit:
                results[i] = MarkScore(mark, "NL", None, float(distances.min()))
                continue
            chosen = min(hit, key=lambda n: (distances[n], n))
            lesion = case_lesions[chosen]
            outcome = "dropped" if lesion.lesion_id in taken else "LL"
            taken.add(lesion.lesion_id)
            results[i] = MarkScore(mark, outcome, lesion.lesion_id, float(distances[chosen]))
    return ScoringResult(tuple(r for r in results if r is not None), lesions, rule)


def _sort_key(mark_id: object) -> tuple[int, object]:
    return (0, mark_id) if isinstance(mark_id, (int, np.integer)) else (1, str(mark_id))


def roc_ratings(
    marks: Iterable[MarkToScore],
    reads: Iterable[tuple[str, str, str]],
    *,
    unmarked: float = -math.inf,
) -> pd.DataFrame:
    """Case-level ROC ratings from FROC marks: the highest rating of any mark on the case.

    Parameters
    ----------
    marks : the marks (not deleted).
    reads : every ``(treatment, reader, case_id)`` that was read, with or without marks.
    unmarked : the rating of a case read without any mark (default ``-inf``: below every rating).

    Returns
    -------
    DataFrame with columns treatment, reader, case_id, rating (one row per read).
    """
    best: dict[tuple[str, str, str], float] = {}
    for mark in marks:
        key = (mark.treatment, mark.reader, mark.case_id)
        best[key] = max(best.get(key, -math.inf), float(mark.rating))
    rows = []
    for key in dict.fromkeys(tuple(r) for r in reads):
        rows.append({"treatment": key[0], "reader": key[1], "case_id": key[2], "rating": best.get(key, unmarked)})
    missing = set(best) - {(r["treatment"], r["reader"], r["case_id"]) for r in rows}
    if missing:
        example = sorted(missing)[0]
        raise ScoringError(
            f"{len(missing)} (treatment, reader, case) combinations have marks but are not in reads, e.g. {example}; pass every read case."
        )
    return pd.DataFrame(rows, columns=["treatment", "reader", "case_id", "rating"])
