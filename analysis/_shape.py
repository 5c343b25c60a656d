"""The study sizes that every study and result object derives from its ID tuples.

:class:`ObserverData`, :class:`~analysis.lroc.LrocData` and
:class:`~analysis.results.SignificanceResult` each keep ``treatments`` and ``readers`` (and the
studies ``normal_cases`` and ``abnormal_cases``) as tuples; these mixins give the sizes once.
They have no fields of their own, so they mix into frozen dataclasses unchanged.
"""

from __future__ import annotations


class TreatmentsReaders:
    """``n_treatments`` and ``n_readers`` from the ``treatments`` and ``readers`` tuples."""

    treatments: tuple[str, ...]
    readers: tuple[str, ...]

    @property
    def n_treatments(self) -> int:
        """Number of treatments ``I``."""
        return len(self.treatments)

    @property
    def n_readers(self) -> int:
        """Number of readers ``J``."""
        return len(self.readers)


class StudyShape(TreatmentsReaders):
    """Case counts and the case order of a study (normal cases, then abnormal cases)."""

    normal_cases: tuple[str, ...]
    abnormal_cases: tuple[str, ...]

    @property
    def n_normal(self) -> int:
        """Number of normal cases ``K1``."""
        return len(self.normal_cases)

    @property
    def n_abnormal(self) -> int:
        """Number of abnormal cases ``K2``."""
        return len(self.abnormal_cases)

    @property
    def n_cases(self) -> int:
        """Total number of cases ``K = K1 + K2``."""
        return self.n_normal + self.n_abnormal

    @property
    def case_ids(self) -> tuple[str, ...]:
        """All case IDs in array order: normal cases, then abnormal cases (the jackknife's order)."""
        return self.normal_cases + self.abnormal_cases
