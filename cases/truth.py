"""Truth lesions for scoring, and the one rule that says whether a position hits one.

Both the detector's stand-alone FROC (:mod:`detector.froc`, candidates) and the reader study's
scoring (:mod:`reader_study.scoring`, readers' marks) ask the same question — *does this point
hit this lesion?* — and answer it here, so the detector's wAFROC and the readers' are on the same
footing. Positions are LPS millimetres of the current exam.

The hit rule
------------
A :class:`HitRule` is one of two kinds:

``extent`` (with ``margin_mm`` ≥ 0)
    The point hits when it lies inside the lesion grown by ``margin_mm``
    (:meth:`TruthLesion.contains`):

    * a lesion with a label map: the voxel containing the point is one of the lesion's voxels
      (its label value, or any non-zero value when the lesion has none), or the point lies within
      ``margin_mm`` of the centre of one of them;
    * a lesion described by a sphere only (or whose label map holds none of its voxels): the
      point lies within ``radius_mm + margin_mm`` of the centre.

    Readers' studies use ``margin_mm = 0`` ("inside the lesion"); the detector's evaluation uses
    3 mm by default (a candidate's centroid may sit just outside a small lesion).
``radius`` (with ``radius_mm`` > 0)
    The point hits when it lies within ``radius_mm`` of the lesion's centre, whatever the
    lesion's size (the acceptance radius of many published reader studies).

Boundaries count as hits (with :data:`BOUNDARY_TOLERANCE_MM` of floating-point slack). What
happens when one position hits several lesions, or several positions hit one lesion, is a matter
of the scoring that uses the rule (see :mod:`reader_study.scoring` and :mod:`detector.froc`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .volume import LabelVolume

__all__ = ["TruthLesion", "HitRule", "BOUNDARY_TOLERANCE_MM"]

#: Distances within this of a boundary count as on it (floating-point slack), mm.
BOUNDARY_TOLERANCE_MM = 1e-6


@dataclass(frozen=True)
class TruthLesion:
    """A truth lesion of one case, for scoring.

    Attributes
    ----------
    case_id : the case it belongs to.
    lesion_id : unique within its case.
    center_mm : centre, LPS mm of the current exam.
    radius_mm : extent as a sphere radius (used without a label map).
    weight : wAFROC weight (None: equal within the case).
    label_value : the lesion's value in ``label_map`` (None: any non-zero voxel).
    label_map : the lesion's label map (:class:`cases.LabelVolume`, any grid), when it has one.
    points_mm : (n, 3) LPS centres of the lesion's voxels, when known without a label map (else
        derived from ``label_map`` when first needed).
    lesion_type, location : for subgroup figures.
    diameter_mm : equivalent-sphere diameter (from the label map, else 2 x radius).
    """

    case_id: str
    lesion_id: str
    center_mm: tuple[float, float, float]
    radius_mm: float | None = None
    weight: float | None = None
    label_value: int | None = None
    label_map: "LabelVolume | None" = field(default=None, repr=False, compare=False)
    points_mm: np.ndarray | None = field(default=None, repr=False, compare=False)
    lesion_type: str | None = None
    location: str | None = None
    diameter_mm: float | None = None
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_mm", tuple(float(v) for v in self.center_mm))

    # --- extent ---------------------------------------------------------------------------------
    def _selected(self, values: np.ndarray) -> np.ndarray:
        return values != 0 if self.label_value is None else values == self.label_value

    def voxel_points_mm(self) -> np.ndarray | None:
        """LPS centres (n, 3) of the lesion's voxels, or None when it has no voxel description."""
        if self.points_mm is not None:
            return np.asarray(self.points_mm, dtype=float).reshape(-1, 3)
        if self.label_map is None:
            return None
        if "points" not in self._cache:
            self._cache["points"] = self.label_map.grid.mask_points_mm(self._selected(self.label_map.array))
        return self._cache["points"]

    def center_distance_mm(self, point_mm: Sequence[float]) -> float:
        """Distance from a point to the lesion's centre, mm."""
        return float(np.linalg.norm(np.asarray(point_mm, dtype=float) - np.asarray(self.center_mm)))

    def distance_mm(self, point_mm: Sequence[float]) -> float:
        """Distance from a point to the lesion's extent, mm: to the nearest voxel centre with a voxel
        description, else to the sphere (0 inside the sphere)."""
        points = self.voxel_points_mm()
        p = np.asarray(point_mm, dtype=float)
        if points is not None and len(points):
            return float(np.sqrt(np.min(np.sum((points - p) ** 2, axis=1))))
        if self.radius_mm is None:
            raise ValueError(f"Lesion {self.lesion_id} of case {self.case_id} has neither voxels nor a radius; its extent is unknown.")
        return max(0.0, self.center_distance_mm(p) - float(self.radius_mm))

    def contains(self, point_mm: Sequence[float], margin_mm: float = 0.0) -> bool:
        """Whether a point lies inside the lesion grown by ``margin_mm`` (the ``extent`` hit rule; module notes).

        Raises ``ValueError`` when the lesion has neither a voxel description nor a radius.
        """
        p = np.asarray(point_mm, dtype=float)
        points = self.voxel_points_mm()
        if points is not None and len(points):
            if self.label_map is not None:
                index = self.label_map.grid.nearest_index(p)
                if index is not None and bool(self._selected(self.label_map.array[index[2], index[1], index[0]])):
                    return True
            if margin_mm > 0 or self.label_map is None:
                return float(np.min(np.sum((points - p) ** 2, axis=1))) <= (margin_mm + BOUNDARY_TOLERANCE_MM) ** 2
            return False
        if self.radius_mm is None:
            if points is not None:  # a label map without any of the lesion's voxels, and no sphere
                return False
            raise ValueError(f"Lesion {self.lesion_id} of case {self.case_id} has neither a label map nor a radius; its extent is unknown.")
        return self.center_distance_mm(p) <= float(self.radius_mm) + margin_mm + BOUNDARY_TOLERANCE_MM


@dataclass(frozen=True)
class HitRule:
    """When a position (a reader's mark, a detector candidate's centre) hits a truth lesion.

    ``kind="extent"``: inside the lesion grown by ``margin_mm``; ``kind="radius"``: within
    ``radius_mm`` of its centre. See the module notes for the exact rule.
    """

    kind: Literal["extent", "radius"] = "extent"
    margin_mm: float = 0.0
    radius_mm: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("extent", "radius"):
            raise ValueError(
                f"Unknown hit rule {self.kind!r}; use 'extent' (inside the lesion, plus a margin) or 'radius' (within a distance of the centre)."
            )
        if self.kind == "radius" and (self.radius_mm is None or not math.isfinite(self.radius_mm) or self.radius_mm <= 0):
            raise ValueError(f"The radius hit rule needs a positive acceptance radius in mm, got {self.radius_mm!r}.")
        if not (math.isfinite(self.margin_mm) and self.margin_mm >= 0):
            raise ValueError(f"The hit rule's margin must be a finite number of mm >= 0, got {self.margin_mm!r}.")

    def hits(self, lesion: TruthLesion, point_mm: Sequence[float]) -> bool:
        """Whether ``point_mm`` hits ``lesion`` under this rule."""
        if self.kind == "radius":
            return lesion.center_distance_mm(point_mm) <= float(self.radius_mm) + BOUNDARY_TOLERANCE_MM  # type: ignore[arg-type]
        return lesion.contains(point_mm, self.margin_mm)

    def describe(self) -> str:
        """One sentence for reports and logs."""
        if self.kind == "radius":
            return f"a mark hits a lesion when it lies within {self.radius_mm:g} mm of the lesion's centre (boundary included)"
        grown = f" grown by {self.margin_mm:g} mm" if self.margin_mm > 0 else ""
        return f"a mark hits a lesion when it lies inside the lesion's label map{grown}, or inside its sphere{grown} when it has no label map (boundary included)"
