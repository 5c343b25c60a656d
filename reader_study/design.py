"""Reading designs: who reads which case, in which treatment, in which session and order.

Pure functions (no database): :func:`plan_design` turns readers, cases and treatments into a
:class:`DesignPlan`, and :meth:`DesignPlan.check_balance` checks it. The coordinator module
stores a plan in the database.

Designs
-------
Every design is **fully crossed**: every reader reads every study case once in every treatment,
which is what the multi-reader multi-case (MRMC) analyses (DBM, Obuchowski–Rockette, RJafroc's
``FCTRL``) expect and what FDA guidance on clinical performance studies of CADe devices
describes.

``crossover`` (default): as many sessions as treatments, separated by the washout. Readers are
split into as many *sequence groups* as treatments (balanced, and stratified by reader group such
as board-certified/resident), and with ``case_blocks = n_treatments`` (default) the cases are
split into as many *blocks* (stratified by normal/abnormal). In session ``s`` a reader of group
``g`` reads block ``b`` in treatment ``(g + b + s) mod T`` — a Latin square — so that

* each reader reads each case once per treatment, never twice in one session;
* for every case, the readers who meet it first unaided and those who meet it first aided are
  equally many (half and half for two treatments);
* every session mixes treatments, so session (learning, fatigue) and treatment are not confounded
  within a reader.

With ``case_blocks = 1`` it is the classic AB/BA crossover: group 0 reads everything unaided in
session 1 and aided in session 2, group 1 the other way round.

``sequential``: one session; each case is read in the treatments' order (unaided, then aided)
one right after the other, and each reading is locked before the next opens. No washout is
needed; the aided reading measures the effect of adding the aid to an already formed opinion.

Order: within each session each reader gets an independent random order of the study cases,
seeded from the study seed, the reader code and the session index (stable across runs and
independent of how many other readers there are). Training cases come first in the first session, in the order
given, once in every treatment (so readers learn both the plain and the aided viewer before any
study case); they are never analysed.

References
----------
FDA (2020). Clinical Performance Assessment: Considerations for Computer-Assisted Detection
Devices Applied to Radiology Images and Radiology Device Data in Premarket Notification (510(k))
Submissions. Guidance for Industry and FDA Staff.
Obuchowski NA, Beiden SV, Berbaum KS, et al. (2004). Multireader, multicase receiver operating
characteristic analysis: an empirical comparison of five methods. Acad Radiol 11:980–995.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DesignError

__all__ = ["PlannedRead", "DesignPlan", "BalanceCheck", "BalanceReport", "plan_design", "DESIGN_KINDS"]

DESIGN_KINDS = ("crossover", "sequential")


@dataclass(frozen=True)
class PlannedRead:
    """One planned reading: ``reader`` reads ``case`` in ``treatment`` at ``order_index`` of session ``session_index``."""

    reader: str
    session_index: int
    order_index: int
    case: str
    treatment: str
    training: bool = False


@dataclass(frozen=True)
class BalanceCheck:
    """One property of a design: ``level`` is ``"ok"``, ``"warning"`` or ``"error"``."""

    name: str
    level: Literal["ok", "warning", "error"]
    message: str


@dataclass(frozen=True)
class BalanceReport:
    """The result of :meth:`DesignPlan.check_balance`."""

    checks: tuple[BalanceCheck, ...]

    @property
    def ok(self) -> bool:
        """No errors (the design is usable)."""
        return all(c.level != "error" for c in self.checks)

    @property
    def balanced(self) -> bool:
        """No errors and no warnings."""
        return all(c.level == "ok" for c in self.checks)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"check": c.name, "level": c.level, "message": c.message} for c in self.checks])

    def summary(self) -> str:
        verdict = "balanced" if self.balanced else ("usable, with warnings" if self.ok else "NOT usable")
        lines = [f"Design check: {verdict}"]
        lines += [f"  [{c.level}] {c.name}: {c.message}" for c in self.checks]
        return "\n".join(lines)


@dataclass(frozen=True)
class DesignPlan:
    """A complete reading design.

    Attributes
    ----------
    kind : ``"crossover"`` or ``"sequential"``.
    treatments, readers, cases, training_cases : codes, in order.
    n_sessions : sessions per reader.
    case_blocks : number of case blocks (crossover).
    reader_groups : sequence group of each reader (0-based).
    case_block_of : block of each study case (0-based).
    reads : every planned reading, sorted by reader, session and order.
    seed : the seed the orders were drawn with.
    """

    kind: str
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    training_cases: tuple[str, ...]
    n_sessions: int
    case_blocks: int
    reader_groups: Mapping[str, int]
    case_block_of: Mapping[str, int]
    reads: tuple[PlannedRead, ...]
    seed: int
    abnormal: Mapping[str, bool] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per planned reading."""
        return pd.DataFrame(
            [
                {
                    "reader": r.reader,
                    "sequence": self.reader_groups.get(r.reader),
                    "session": r.session_index,
                    "position": r.order_index + 1,
                    "case": r.case,
                    "treatment": r.treatment,
                    "training": r.training,
                }
                for r in self.reads
            ]
        )

    def schedule_frame(self) -> pd.DataFrame:
        """One row per reader and session: sequence group (1-based) and number of study cases per treatment."""
        rows = []
        counts: dict[tuple[str, int], Counter] = defaultdict(Counter)
        training: Counter = Counter()
        for r in self.reads:
            if r.training:
                training[(r.reader, r.session_index)] += 1
            else:
                counts[(r.reader, r.session_index)][r.treatment] += 1
        for reader in self.readers:
            for s in range(1, self.n_sessions + 1):
                row = {"reader": reader, "sequence": self.reader_groups[reader] + 1, "session": s, "training reads": training[(reader, s)]}
                for t in self.treatments:
                    row[t] = counts[(reader, s)][t]
                rows.append(row)
        return pd.DataFrame(rows)

    def check_balance(self, *, washout_days: float | None = None) -> BalanceReport:
        """Check that the design is fully crossed and counterbalanced; see :class:`BalanceReport`."""
        checks: list[BalanceCheck] = []
        study = [r for r in self.reads if not r.training]
        T, J, K = len(self.treatments), len(self.readers), len(self.cases)

        # 1. fully crossed: every reader x case x treatment exactly once
        seen = Counter((r.reader, r.case, r.treatment) for r in study)
        missing = [(j, k, t) for j in self.readers for k in self.cases for t in self.treatments if seen[(j, k, t)] == 0]
        twice = [key for key, n in seen.items() if n > 1]
        if missing or twice:
            msg = []
            if missing:
                msg.append(f"{len(missing)} reader×case×treatment combinations never read (e.g. {missing[0]})")
            if twice:
                msg.append(f"{len(twice)} read more than once (e.g. {twice[0]})")
            checks.append(BalanceCheck("fully crossed", "error", "; ".join(msg)))
        else:
            checks.append(
                BalanceCheck(
                    "fully crossed", "ok", f"each of {J} readers reads each of {K} cases once in each of {T} treatments ({len(study)} study reads)"
                )
            )

        # 2. no case twice in a session (crossover) / consecutive phases (sequential)
        if self.kind == "crossover":
            per_session = Counter((r.reader, r.session_index, r.case) for r in study)
            repeated = [key for key, n in per_session.items() if n > 1]
            if repeated:
                checks.append(
                    BalanceCheck(
                        "one reading per case per session",
                        "error",
                        f"{len(repeated)} times a reader meets the same case twice in a session (e.g. {repeated[0]})",
                    )
                )
            else:
                checks.append(BalanceCheck("one reading per case per session", "ok", "no reader meets a case twice within a session"))
        else:
            bad = 0
            by_session: dict[tuple[str, int], list[PlannedRead]] = defaultdict(list)
            for r in study:
                by_session[(r.reader, r.session_index)].append(r)
            for reads in by_session.values():
                reads = sorted(reads, key=lambda r: r.order_index)
                for i in range(0, len(reads), T):
                    chunk = reads[i : i + T]
                    if len({r.case for r in chunk}) != 1 or tuple(r.treatment for r in chunk) != self.treatments:
                        bad += 1
            level = "error" if bad else "ok"
            checks.append(
                BalanceCheck(
                    "sequential phases",
                    level,
                    f"{bad} cases whose readings are not consecutive in treatment order"
                    if bad
                    else f"each case is read {' then '.join(self.treatments)}, one right after the other",
                )
            )

        # 3. sequence groups of equal size
        group_sizes = Counter(self.reader_groups[j] for j in self.readers)
        n_groups = T if self.kind == "crossover" else 1
        sizes = [group_sizes.get(g, 0) for g in range(n_groups)]
        if max(sizes) - min(sizes) == 0:
            checks.append(BalanceCheck("equal sequence groups", "ok", f"{n_groups} group(s) of {sizes[0]} reader(s)"))
        else:
            checks.append(
                BalanceCheck(
                    "equal sequence groups",
                    "warning",
                    f"group sizes {sizes}: with {J} readers and {n_groups} sequence groups the order of treatments cannot be fully counterbalanced; use a multiple of {n_groups} readers",
                )
            )

        # 4. first treatment per case counterbalanced
        if self.kind == "crossover" and T > 1:
            first: dict[str, Counter] = defaultdict(Counter)
            by_reader_case: dict[tuple[str, str], list[PlannedRead]] = defaultdict(list)
            for r in study:
                by_reader_case[(r.reader, r.case)].append(r)
            for (_reader, case), reads in by_reader_case.items():
                first_read = min(reads, key=lambda r: (r.session_index, r.order_index))
                first[case][first_read.treatment] += 1
            spread = (
                max((max(first[k][t] for t in self.treatments) - min(first[k][t] for t in self.treatments)) for k in self.cases) if self.cases else 0
            )
            allowed = 0 if J % T == 0 else 1
            example = self.cases[0] if self.cases else None
            detail = ", ".join(f"{t} {first[example][t]}" for t in self.treatments) if example else ""
            if spread <= allowed:
                checks.append(
                    BalanceCheck(
                        "treatment order counterbalanced",
                        "ok",
                        f"for every case the readers meeting it first in each treatment are equally many (case {example}: {detail})",
                    )
                )
            else:
                checks.append(
                    BalanceCheck(
                        "treatment order counterbalanced",
                        "warning",
                        f"for some cases up to {spread} more readers meet them first in one treatment than another (case {example}: {detail})",
                    )
                )
        elif self.kind == "sequential":
            checks.append(
                BalanceCheck(
                    "treatment order counterbalanced", "ok", f"not applicable: sequential reading always reads {self.treatments[0]} first by design"
                )
            )

        # 5. blocks balanced for normal/abnormal
        if self.case_blocks > 1 and self.abnormal:
            table = Counter((self.case_block_of[k], bool(self.abnormal.get(k))) for k in self.cases)
            worst = 0
            for status in (False, True):
                counts = [table[(b, status)] for b in range(self.case_blocks)]
                worst = max(worst, max(counts) - min(counts))
            desc = "; ".join(f"block {b + 1}: {table[(b, True)]} abnormal + {table[(b, False)]} normal" for b in range(self.case_blocks))
            checks.append(BalanceCheck("case blocks balanced", "ok" if worst <= 1 else "warning", desc))

        # 6. treatments within each session
        if self.kind == "crossover" and self.case_blocks > 1:
            per = Counter((r.reader, r.session_index, r.treatment) for r in study)
            spread = 0
            for j in self.readers:
                for s in range(1, self.n_sessions + 1):
                    counts = [per[(j, s, t)] for t in self.treatments]
                    spread = max(spread, max(counts) - min(counts))
            checks.append(
                BalanceCheck(
                    "treatments mixed within sessions",
                    "ok" if spread <= 1 else "warning",
                    "every session holds each treatment about equally often"
                    if spread <= 1
                    else f"within a session the treatments differ by up to {spread} cases (unequal case blocks)",
                )
            )

        # 7. washout
        if washout_days is not None and self.n_sessions > 1:
            if washout_days >= 28:
                checks.append(BalanceCheck("washout", "ok", f"{washout_days:g} days between sessions"))
            else:
                checks.append(
                    BalanceCheck(
                        "washout",
                        "warning",
                        f"{washout_days:g} days between sessions; reader studies usually use at least 4 weeks (28 days) so readers do not recall cases",
                    )
                )
        return BalanceReport(tuple(checks))

    def summary(self) -> str:
        J, K, T = len(self.readers), len(self.cases), len(self.treatments)
        blocks = f", {self.case_blocks} case block(s)" if self.kind == "crossover" else ""
        return (
            f"{self.kind} design: {J} readers × {K} cases × {T} treatments ({', '.join(self.treatments)}), "
            f"{self.n_sessions} session(s) per reader{blocks}, {len(self.training_cases)} training case(s), seed {self.seed}"
        )


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (stable across runs and platforms)."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in keys).encode()).digest()
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:8], "big")]))


def _check_unique(values: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(str(v) for v in values)
    dupes = sorted(k for k, n in Counter(values).items() if n > 1)
    if dupes:
        raise DesignError(f"{what} must be unique; repeated: {', '.join(dupes)}")
    return values


def plan_design(
    readers: Sequence[str],
    cases: Sequence[str],
    treatments: Sequence[str],
    *,
    kind: str = "crossover",
    case_blocks: int | None = None,
    seed: int = 0,
    training_cases: Sequence[str] = (),
    abnormal: Mapping[str, bool] | None = None,
    reader_strata: Mapping[str, str] | None = None,
) -> DesignPlan:
    """Plan a fully crossed reading design.

    Parameters
    ----------
    readers : reader codes.
    cases : study case codes.
    treatments : treatment codes in reading order for sequential designs (e.g. unaided, aided).
    kind : ``"crossover"`` (default) or ``"sequential"``; see the module docstring.
    case_blocks : crossover only: 1 (classic AB/BA) or the number of treatments (default: Latin
        square of case blocks, treatments mixed within sessions).
    seed : seed of every random choice (groups, blocks, orders).
    training_cases : read first in the first session, in every treatment; not analysed.
    abnormal : truth status of each case, used only to balance blocks for normal/abnormal.
    reader_strata : reader group of each reader (e.g. board-certified/resident), used to balance
        sequence groups.

    Raises
    ------
    DesignError
        For an unknown design kind, no readers/cases/treatments, repeated codes, a training case
        that is also a study case, or an unsupported number of case blocks.
    """
    readers = _check_unique(readers, "Reader codes")
    cases = _check_unique(cases, "Case codes")
    treatments = _check_unique(treatments, "Treatment codes")
    training_cases = _check_unique(training_cases, "Training case codes")
    if kind not in DESIGN_KINDS:
        raise DesignError(f"Unknown design {kind!r}; use one of {', '.join(DESIGN_KINDS)}.")
    if not readers:
        raise DesignError("The study has no readers; add readers (`tsct study readers add`) before making the design.")
    if not cases:
        raise DesignError("The study has no study cases (training cases alone cannot be analysed).")
    if not treatments:
        raise DesignError("The study has no treatments.")
    both = sorted(set(cases) & set(training_cases))
    if both:
        raise DesignError(f"Cases {', '.join(both)} are both study and training cases; a training case must not be analysed.")
    T = len(treatments)
    abnormal = dict(abnormal or {})
    strata = dict(reader_strata or {})

    if kind == "sequential":
        n_sessions, n_groups, blocks = 1, 1, 1
        if case_blocks not in (None, 1):
            raise DesignError("Case blocks apply to crossover designs only; a sequential design reads every case in one session.")
    else:
        n_sessions, n_groups = T, T
        blocks = T if case_blocks is None else int(case_blocks)
        if blocks not in (1, T):
            raise DesignError(
                f"The number of case blocks (--blocks) must be 1 (AB/BA crossover) or {T} (the number of treatments: Latin square); got {case_blocks}."
            )

    # Sequence groups: shuffle readers within each stratum, then deal them out in turn.
    reader_groups: dict[str, int] = {}
    counter = 0
    for stratum in sorted({strata.get(j, "") for j in readers}):
        members = [j for j in readers if strata.get(j, "") == stratum]
        order = _rng(seed, "groups", stratum).permutation(len(members))
        for i in order:
            reader_groups[members[int(i)]] = counter % n_groups
            counter += 1

    # Case blocks: shuffle normal and abnormal cases separately, deal them out in turn.
    case_block_of: dict[str, int] = {}
    counter = 0
    for status in (False, True):
        members = [k for k in cases if bool(abnormal.get(k, False)) == status]
        order = _rng(seed, "blocks", status).permutation(len(members))
        for i in order:
            case_block_of[members[int(i)]] = counter % blocks
            counter += 1

    reads: list[PlannedRead] = []
    for reader in readers:
        g = reader_groups[reader]
        for s in range(n_sessions):
            if kind == "crossover":
                study_reads = [(k, treatments[(g + case_block_of[k] + s) % T]) for k in cases]
                order = _rng(seed, "order", reader, s + 1).permutation(len(study_reads))
                study_reads = [study_reads[int(i)] for i in order]
            else:
                order = _rng(seed, "order", reader, s + 1).permutation(len(cases))
                study_reads = [(cases[int(i)], t) for i in order for t in treatments]
            if s > 0:
                training_reads = []
            elif kind == "sequential":
                training_reads = [(k, t) for k in training_cases for t in treatments]
            else:
                training_reads = [(k, t) for t in treatments for k in training_cases]
            position = 0
            for k, t in training_reads:
                reads.append(PlannedRead(reader, s + 1, position, k, t, training=True))
                position += 1
            for k, t in study_reads:
                reads.append(PlannedRead(reader, s + 1, position, k, t, training=False))
                position += 1

    return DesignPlan(
        kind=kind,
        treatments=treatments,
        readers=readers,
        cases=cases,
        training_cases=training_cases,
        n_sessions=n_sessions,
        case_blocks=blocks,
        reader_groups=reader_groups,
        case_block_of=case_block_of,
        reads=tuple(reads),
        seed=int(seed),
        abnormal=abnormal,
    )
