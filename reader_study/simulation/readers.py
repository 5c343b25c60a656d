"""Simulated readers that read the images, so a whole study can run without radiologists.

A simulated reader looks at what a real reader gets in each treatment and nothing else:

* **unaided**: the current CT alone. It searches bone for *blobs*: regions denser or less dense
  than the bone around them in every direction (the signed Hessian blob response of the CT at
  1.5 and 3 mm), compared with how strong such blobs usually are in bone of the same thickness in
  the same exam, so that the normal dense cortex of thin posterior elements is not taken for a
  lesion while a lytic hole in a vertebral body stands out; old sclerotic islands look as
  suspicious as new blastic lesions;
* **aided**: the same CT plus the temporal-subtraction z-map overlay (the ``zmap`` output of the
  detector's ``outputs.json``; the plain subtraction scaled by its robust spread when no z-map exists). Coloured
  regions (``|z| ≥ overlay_threshold``) draw the reader's attention wherever they are, and a
  CT finding without any change on the overlay is discounted as an old finding.

How suspicious a finding is to a reader is its *surprise*: ``-log10`` of how many findings at
least that conspicuous the reader meets per case, counted over every candidate region of every
case of the study (CT and overlay counted separately; truth is never used). It puts the CT and
the overlay on one scale, the way a radiologist learns how often a finding that conspicuous is
seen at all: on a good overlay a coloured region is rare and suspicious, on a noisy one it is not.

Readers differ by group and individually: perceptual noise (how well they judge what they look
at), search coverage (how much of the CT evidence they inspect), the criterion for marking and
the rating cut-points, and localisation error. None of the parameters adds an aided benefit:
the same reader with the same parameters reads both treatments, and any difference between
treatments comes from what the overlay images show.

Marks are written through :class:`reader_study.ReadingService`, exactly as the reading app
does, with simulated time passing between sessions so the washout is respected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tsct_files import pause_point

from ..coordinator import get_study
from ..db import Database
from ..errors import ReaderStudyError, StudyStateError
from ..reading import ReadingService
from .evidence import CaseEvidence, SuspicionScale, case_evidence

__all__ = [
    "ReaderProfile",
    "default_reader_profiles",
    "read_case",
    "check_simulation_inputs",
    "simulate_readers",
    "SimulatedMark",
    "SimulationSummary",
    "GROUP_DEFAULTS",
]

#: Typical parameters per reader group (before per-reader variation).
GROUP_DEFAULTS: dict[str, dict[str, float]] = {
    "board-certified": {"perceptual_noise": 0.15, "search_coverage": 0.92, "criterion": 0.45, "localisation_sd_mm": 1.5},
    "resident": {"perceptual_noise": 0.25, "search_coverage": 0.78, "criterion": 0.35, "localisation_sd_mm": 2.5},
}


@dataclass(frozen=True)
class ReaderProfile:
    """How one simulated reader perceives and reports.

    Attributes
    ----------
    name, group : as in the study's readers file (group ``board-certified`` or ``resident``).
    perceptual_noise : SD of the reader's internal noise on a candidate's surprise (log10 units).
    search_coverage : probability that a region visible on the CT is inspected at all.
    overlay_attention : probability that a coloured overlay region is inspected (aided reading).
    criterion : perceived surprise needed to place a mark (0.5: a finding that conspicuous is met
        about once in three cases).
    rating_step : surprise per rating step above the criterion.
    old_finding_discount : factor applied, in the aided reading, to a CT finding that shows no
        change on the overlay (the reader takes it for an old, unchanged finding).
    localisation_sd_mm : SD of the mark's position around the region's centre, per axis.
    max_marks : most marks per case.
    reading_time_s : mean time per case.
    """

    name: str
    group: str
    perceptual_noise: float
    search_coverage: float
    criterion: float
    overlay_attention: float = 0.95
    rating_step: float = 0.3
    old_finding_discount: float = 0.6
    localisation_sd_mm: float = 2.0
    max_marks: int = 6
    reading_time_s: float = 120.0


def default_reader_profiles(names_and_groups: Sequence[tuple[str, str]], *, seed: int = 0) -> list[ReaderProfile]:
    """Profiles for readers given as ``(name, group)``: group defaults with seeded per-reader variation."""
    out = []
    for name, group in names_and_groups:
        base = GROUP_DEFAULTS.get(group, GROUP_DEFAULTS["resident"])
        rng = np.random.default_rng([seed, int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])
        out.append(
            ReaderProfile(
                name=name,
                group=group,
                perceptual_noise=float(base["perceptual_noise"] * rng.uniform(0.85, 1.15)),
                search_coverage=float(np.clip(base["search_coverage"] + rng.normal(0, 0.04), 0.5, 0.99)),
                criterion=float(base["criterion"] + rng.normal(0, 0.05)),
                localisation_sd_mm=float(base["localisation_sd_mm"]),
                reading_time_s=float(rng.uniform(90, 180) * (1.3 if group == "resident" else 1.0)),
            )
        )
    return out


@dataclass(frozen=True)
class SimulatedMark:
    """A mark a simulated reader decided to make."""

    point_mm: tuple[float, float, float]
    rating: int
    evidence: float


def read_case(
    profile: ReaderProfile,
    evidence: CaseEvidence,
    *,
    aided: bool,
    rng: np.random.Generator,
    scale: SuspicionScale,
    rating_levels: int = 5,
) -> list[SimulatedMark]:
    """One reader's marks on one case in one treatment (pure function of images, profile and rng).

    Unaided, the reader inspects CT-visible regions with probability ``search_coverage`` and
    judges the surprise of their CT evidence. Aided, coloured regions are inspected with
    probability ``overlay_attention`` too, the judged surprise is the larger of the CT and the
    overlay surprise, and a CT finding that is not coloured on the overlay is discounted by
    ``old_finding_discount``. The same random draws are made in both treatments.
    """
    marks = []
    for cand in evidence.candidates:
        attend = rng.random()
        noise = rng.normal(0.0, profile.perceptual_noise)
        jitter = rng.normal(0.0, profile.localisation_sd_mm, size=3)
        ct_s = scale.ct(cand.ct_evidence) if cand.ct_visible else -math.inf
        if aided and evidence.has_overlay:
            inspected = (cand.ct_visible and attend < profile.search_coverage) or (cand.overlay_visible and attend < profile.overlay_attention)
            overlay_s = scale.overlay(cand.overlay_evidence) if cand.overlay_visible else -math.inf
            if not cand.overlay_visible:
                ct_s *= profile.old_finding_discount if ct_s > 0 else 1.0
            judged = max(ct_s, overlay_s)
        else:
            inspected = cand.ct_visible and attend < profile.search_coverage
            judged = ct_s
        if not inspected or not math.isfinite(judged):
            continue
        perceived = judged + noise
        if perceived < profile.criterion:
            continue
        rating = 1 + int(min(rating_levels - 1, (perceived - profile.criterion) // profile.rating_step))
        marks.append(SimulatedMark(tuple(float(c + j) for c, j in zip(cand.center_mm, jitter)), rating, float(perceived)))
    marks.sort(key=lambda m: -m.evidence)
    return marks[: profile.max_marks]


@dataclass
class SimulationSummary:
    """What a simulation wrote: marks and case reads per reader and treatment."""

    n_marks: int = 0
    n_reads: int = 0
    per_reader: dict[str, dict[str, int]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.n_reads} case reads, {self.n_marks} marks by {len(self.per_reader)} readers"


def _rating_value(level: int, scale_name: str) -> float:
    if scale_name == "0-100":
        return float(min(100, 10 + 20 * (level - 1)))
    return float(level)


def check_simulation_inputs(session: Any, study: Any, detector_dir: str | Path | None) -> None:
    """Refuse to read when an aided treatment's overlay is missing, unfinished, truncated or not the locked one.

    Every case is read in an aided treatment in a fully crossed design, so every case needs a
    finished detector manifest (``<detector_dir>/<case>/outputs.json``) listing the outputs its
    aided treatments show (roles ``subtraction``, ``zmap`` … of :data:`reader_study.aids.AIDS`),
    each complete and still the file the manifest hashed, and a bone ROI, if it lists one,
    likewise. When the lock recorded the detector outputs, the manifest and each file read must
    still have their locked SHA-256.

    Raises
    ------
    ReaderStudyError
        Naming every case and file at fault; nothing is read or saved.
    """
    from sqlalchemy import select

    from detector.outputs import MANIFEST_NAME, CaseOutputsError, read_case_outputs

    from ..integrity import check_detector_case, overlay_roles_needed, sha256_file
    from ..models import StudyCase, StudyFile, Treatment

    treatments = list(session.scalars(select(Treatment).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    aided = [t for t in treatments if t.overlays]
    if not aided:
        return
    needed: list[str] = []
    for t in aided:
        for role in overlay_roles_needed(o for o in t.overlays.split(",") if o):
            if role not in needed:
                needed.append(role)
    if not needed:
        return
    cases = list(session.scalars(select(StudyCase).where(StudyCase.study_id == study.id).order_by(StudyCase.jafroc_id)))
    if detector_dir is None:
        raise ReaderStudyError(
            f"Study {study.code!r} has aided treatment(s) {', '.join(t.code for t in aided)} that show {', '.join(needed)}; "
            "give --detector-dir DIR (the detector's batch output, DIR/<case id>/) so that aided readings see their overlay."
        )
    root = Path(detector_dir)
    if not root.is_dir():
        raise ReaderStudyError(f"--detector-dir {root} is not a folder; give the detector's batch output folder (DIR/<case id>/).")
    locked: dict[tuple[int, str], str] = {
        (f.case_id, f.name): f.sha256 for f in session.scalars(select(StudyFile).where(StudyFile.study_id == study.id, StudyFile.role == "detector"))
    }
    problems: list[str] = []
    for case in cases:
        case_dir = root / case.code
        found = check_detector_case(case.code, case_dir, needed, optional=("bone_roi",))
        if not found and locked:
            try:
                outputs = read_case_outputs(case_dir)
            except CaseOutputsError as exc:
                found.append(f"case {case.code}: {exc}")
                outputs = None
            if outputs is not None:
                read = [MANIFEST_NAME] + [outputs.files[r].path for r in needed + (["bone_roi"] if outputs.has("bone_roi") else [])]
                for name in read:
                    want = locked.get((case.id, name))
                    if want is None:
                        found.append(f"case {case.code}: {name} was not among the detector outputs locked with the study")
                    elif sha256_file(case_dir / name) != want:
                        found.append(f"case {case.code}: {name} differs from the file locked with the study (sha256 {want[:12]}…)")
        problems.extend(found)
    if problems:
        shown = "; ".join(problems[:8]) + (f"; … and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ReaderStudyError(
            f"Cannot read study {study.code!r} with its overlays: {len(problems)} problem(s) with the detector outputs in {root}: {shown}. Nothing was read."
        )


def simulate_readers(
    db: Database,
    study_code: str,
    *,
    detector_dir: str | Path | None,
    profiles: Sequence[ReaderProfile] | None = None,
    seed: int = 0,
    start: dt.datetime | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SimulationSummary:
    """Read every session of every simulated reader of an open study, writing marks via the reading service.

    Parameters
    ----------
    db, study_code : the database and an open study whose readers are to be simulated.
    detector_dir : the detector's batch output folder (``<detector_dir>/<case>/outputs.json``,
        :func:`detector.read_case_outputs`); the aided treatment's overlay is read from there.
    profiles : one per reader name; default: :func:`default_reader_profiles` from the readers'
        groups.
    seed : makes the readings reproducible.
    start : simulated time of the first session (default: now); sessions follow one another
        after the study's washout.
    progress : called with (done, total, description) after each case read.

    Readers that already finished their reads are skipped, so a rerun adds nothing twice (marks
    are also saved with deterministic client keys, which makes a repeated save a no-op).
    """
    from sqlalchemy import select

    from ..models import Reader, StudyReader, utcnow

    with db.snapshot() as s:
        study = get_study(s, study_code)
        if study.status != "open":
            raise StudyStateError(f"Study {study.code!r} is {study.status}; simulated readers read an open study (`tsct study open {study.code}`).")
        check_simulation_inputs(s, study, detector_dir)
        rows = s.execute(
            select(Reader.id, Reader.name, Reader.group, StudyReader.reader_code)
            .join(StudyReader, StudyReader.reader_id == Reader.id)
            .where(StudyReader.study_id == study.id)
            .order_by(StudyReader.reader_code)
        ).all()
        washout_days = float(study.washout_days)
        scale_name = study.rating_scale
    if profiles is None:
        profiles = default_reader_profiles([(r.name, r.group or "resident") for r in rows], seed=seed)
    by_name = {p.name: p for p in profiles}
    det_root = Path(detector_dir) if detector_dir is not None else None
    summary = SimulationSummary()
    clock_now = [start or utcnow()]

    services = []
    total = 0
    for row in rows:
        profile = by_name.get(row.name)
        if profile is None:
            continue
        svc = ReadingService(db, reader_id=row.id, study_code=study_code, clock=lambda: clock_now[0], actor=f"simulated:{row.name}")
        services.append((row, profile, svc))
        total += sum(v.n_reads - v.n_finished for v in svc.sessions())
    # Every case's candidate regions first (training cases too): the readers' sense of how
    # common a finding is comes from all the cases they will read (never from the truth).
    from ..models import StudyCase

    with db.snapshot() as s:
        case_rows = s.execute(select(StudyCase.code, StudyCase.current_path).where(StudyCase.study_id == study.id).order_by(StudyCase.code)).all()
    cache: dict[str, CaseEvidence] = {}
    for k, row in enumerate(case_rows, start=1):
        cache[row.code] = case_evidence(row.code, row.current_path, det_root / row.code if det_root else None)
        if progress is not None:
            progress(0, total, f"looking at the images: case {k} of {len(case_rows)} ({row.code})")
    scale = SuspicionScale.from_cases(cache.values())
    done = 0
    n_sessions = max((len(svc.sessions()) for _, _, svc in services), default=0)
    for session_index in range(1, n_sessions + 1):
        for row, profile, svc in services:
            views = {v.session_index: v for v in svc.sessions()}
            view = views.get(session_index)
            if view is None or view.n_finished == view.n_reads:
                continue
            if view.status != "open":
                svc.open_session(session_index)
            counts = summary.per_reader.setdefault(row.reader_code, {"reads": 0, "marks": 0})
            while (item := svc.next_case()) is not None and item.session_index == session_index:
                case_view = svc.open_case(item.case_read_id)
                aided = bool(item.overlays)
                rng = np.random.default_rng([seed, int(row.id), item.case_read_id])
                marks = read_case(profile, cache[item.case_code], aided=aided, rng=rng, scale=scale, rating_levels=5)
                existing = {m.client_key for m in case_view.marks}
                grid = case_view.grid.to_volume()
                n_saved = len(case_view.marks)
                for k, mark in enumerate(marks):
                    key = f"sim-{seed}-{item.case_read_id}-{k}"
                    if key in existing or not grid.contains_point(mark.point_mm):
                        continue
                    svc.save_mark(item.case_read_id, client_key=key, rating=_rating_value(mark.rating, scale_name), point_mm=mark.point_mm)
                    n_saved += 1
                    summary.n_marks += 1
                    counts["marks"] += 1
                pause_point(f"simulate-before-finish-{done + 1}")  # kill -9 tests: marks saved, the read not yet finished
                reading_time = float(rng.gamma(4.0, profile.reading_time_s / 4.0))
                clock_now[0] += dt.timedelta(seconds=reading_time)
                svc.finish_case(item.case_read_id, no_lesion=n_saved == 0, reading_time_s=reading_time)
                summary.n_reads += 1
                counts["reads"] += 1
                done += 1
                if progress is not None:
                    progress(done, total, f"{row.reader_code} session {session_index}: {item.case_code}")
        clock_now[0] += dt.timedelta(days=washout_days, hours=1)
    return summary
