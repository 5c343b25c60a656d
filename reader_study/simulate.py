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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from .db import Database
from .errors import ReaderStudyError
from .reading import ReadingService
from .coordinator import get_study
from .errors import ReaderStudyError, StudyStateError
from tsct_files import pause_point

__all__ = [
    "ReaderProfile",
    "CaseEvidence",
    "Candidate",
    "SuspicionScale",
    "ct_blob_map",
    "default_reader_profiles",
    "case_evidence",
    "read_case",
    "simulate_readers",
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
class Candidate:
    """A region a reader may look at: centre (LPS mm), CT evidence and overlay evidence."""

    center_mm: tuple[float, float, float]
    ct_evidence: float
    overlay_evidence: float
    polarity: int
    ct_visible: bool
    overlay_visible: bool


@dataclass(frozen=True)
class CaseEvidence:
    """The candidate regions of one case, computed once from its images and shared by all readers."""

    case_code: str
    candidates: tuple[Candidate, ...]
    has_overlay: bool


def _lps_centers(labels: np.ndarray, index: Sequence[int], volume) -> list[tuple[float, float, float]]:  # noqa: ANN001
    centers = ndimage.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, index)
    return [tuple(float(v) for v in volume.index_to_point_mm((c[2], c[1], c[0]))) for c in centers]


def _components(score: np.ndarray, threshold: float, min_voxels: int) -> tuple[np.ndarray, list[int], list[float]]:
    labels, n = ndimage.label(score >= threshold)
    if n == 0:
        return labels, [], []
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(score, dtype=np.float32), labels, idx)
    peaks = ndimage.maximum(score, labels, idx)
    keep = [int(i) for i, s in zip(idx, sizes) if s >= min_voxels]
    return labels, keep, [float(peaks[i - 1]) for i in keep]


#: Scale (mm) of the bone mean that fills the CT outside the bone before the blob analysis.
FILL_SCALE_MM = 4.0

#: Bone-thickness classes (mm) within which blob strengths are compared.
THICKNESS_CLASSES_MM: tuple[float, ...] = (0.0, 3.0, 5.0, 8.0, 12.0, math.inf)


def ct_blob_map(
    ct_hu: np.ndarray,
    spacing_mm_zyx: Sequence[float],
    bone: np.ndarray,
    *,
    scales_mm: Sequence[float] = (1.5, 3.0),
    reference_percentile: float = 95.0,
) -> np.ndarray:
    """Signed blob conspicuity of every bone voxel of a CT: what a reader's eye picks out unaided.

    At each scale s the Hessian of the Gaussian-smoothed CT (times s², so scales compare) has three
    eigenvalues; a bright blob has all three negative and its strength is the smallest magnitude,
    a dark blob all three positive. Sheets (cortex, endplates) and rods (thin processes) have a
    near-zero eigenvalue and so no blob strength. The strongest response over the scales is then
    divided by the ``reference_percentile`` of same-polarity responses in bone of the same
    thickness class (:data:`THICKNESS_CLASSES_MM`, from the distance transform of ``bone``) in this
    exam, times 2: a blob counts by how unusual it is for that kind of bone.

    Parameters
    ----------
    ct_hu : CT volume (z, y, x), HU.
    spacing_mm_zyx : voxel spacing in the array's axis order, mm.
    bone : boolean mask (same shape) of the bone to search.

    Returns
    -------
    ndarray of float32
        Positive for denser-than-surroundings blobs, negative for less dense; 0 outside ``bone``.
    """
    sp = np.asarray(spacing_mm_zyx, dtype=float)
    ct = np.asarray(ct_hu, dtype=np.float32)
    idx = np.nonzero(bone)
    out = np.zeros(ct.shape, np.float32)
    if idx[0].size == 0:
        return out
    # Outside the bone, the CT is replaced by the mean of the nearby bone, so the bone's own
    # boundary (cortex against fat, the spinal canal) does not look like a blob.
    weight = ndimage.gaussian_filter(bone.astype(np.float32), FILL_SCALE_MM / sp)
    nearby = ndimage.gaussian_filter(np.where(bone, ct, 0.0).astype(np.float32), FILL_SCALE_MM / sp) / np.maximum(weight, 1e-3)
    ct = np.where(bone, ct, np.where(weight > 1e-3, nearby, 0.0)).astype(np.float32)
    best = np.zeros(idx[0].size, np.float32)
    for scale in scales_mm:
        sigma = scale / sp
        hessian = np.empty((idx[0].size, 3, 3), np.float32)
        for a in range(3):
            for b in range(a, 3):
                order = [0, 0, 0]
                order[a] += 1
                order[b] += 1
                d = ndimage.gaussian_filter(ct, sigma, order=order)[idx] * (scale * scale / (sp[a] * sp[b]))
                hessian[:, a, b] = hessian[:, b, a] = d
        lam = np.linalg.eigvalsh(hessian)
        response = np.where(lam[:, 2] < 0, -lam[:, 2], 0.0) - np.where(lam[:, 0] > 0, lam[:, 0], 0.0)
        best = np.where(np.abs(response) > np.abs(best), response, best).astype(np.float32)
    thickness = (2.0 * ndimage.maximum_filter(ndimage.distance_transform_edt(bone, sampling=sp), size=5))[idx]
    scaled = np.zeros_like(best)
    for lo, hi in zip(THICKNESS_CLASSES_MM[:-1], THICKNESS_CLASSES_MM[1:]):
        in_class = (thickness >= lo) & (thickness < hi)
        for polarity in (1.0, -1.0):
            sel = in_class & (polarity * best > 0)
            if sel.sum() < 50:
                continue
            reference = float(np.percentile(polarity * best[sel], reference_percentile))
            scaled[sel] = 2.0 * best[sel] / max(reference, 1e-3)
    out[idx] = scaled
    return out


@dataclass(frozen=True)
class SuspicionScale:
    """How often findings of a given conspicuity occur per case, learned from candidates, not truth.

    ``surprise(e) = -log10(n(≥ e) / n_cases)``: a finding at least as conspicuous as one met once
    per case has surprise 0, once in ten cases 1. CT evidence and overlay evidence have separate
    tables. Built by :meth:`from_cases` over every case a reader reads (normal and abnormal alike:
    a case's many candidate regions are almost all normal structures).
    """

    ct_evidence: np.ndarray
    overlay_evidence: np.ndarray
    n_cases: int

    @classmethod
    def from_cases(cls, evidences: Iterable["CaseEvidence"]) -> "SuspicionScale":
        evidences = list(evidences)
        ct = np.sort([c.ct_evidence for e in evidences for c in e.candidates if c.ct_visible])
        ov = np.sort([c.overlay_evidence for e in evidences for c in e.candidates if c.overlay_visible])
        return cls(np.asarray(ct, dtype=float), np.asarray(ov, dtype=float), max(len(evidences), 1))

    @staticmethod
    def _surprise(table: np.ndarray, value: float, n_cases: int) -> float:
        n_at_least = float(table.size - np.searchsorted(table, value, side="left"))
        return float(-math.log10(max(n_at_least, 0.5) / n_cases))

    def ct(self, evidence: float) -> float:
        """Surprise of a CT finding of this evidence (log10 units)."""
        return self._surprise(self.ct_evidence, evidence, self.n_cases)

    def overlay(self, evidence: float) -> float:
        """Surprise of an overlay region of this peak |z| (log10 units)."""
        return self._surprise(self.overlay_evidence, evidence, self.n_cases)


def _detector_outputs(case_code: str, case_dir: str | Path | None, current):  # noqa: ANN001 - cases.Volume
    """The case's detector outputs (:func:`detector.read_case_outputs`), checked to lie on the current exam's grid.

    None without a folder; a folder without a finished manifest, or outputs on another grid, is
    an error (an aided reading without its overlay would be simulated silently otherwise).
    """
    if case_dir is None:
        return None
    from detector.outputs import CaseOutputsError, read_case_outputs

    try:
        outputs = read_case_outputs(case_dir)
        outputs.check_grid(current, f"the current exam of case {case_code}")
    except CaseOutputsError as exc:
        raise ReaderStudyError(f"Case {case_code}: {exc}") from None
    return outputs


def case_evidence(
    case_code: str,
    current_path: str | Path,
    detector_dir: str | Path | None,
    *,
    overlay_threshold: float = 4.0,
    lesion_scale_mm: float = 1.5,
    ct_threshold: float = 2.0,
    min_region_mm3: float = 15.0,
    merge_distance_mm: float = 6.0,
) -> CaseEvidence:
    """Find the regions a reader could look at in one case, with their CT and overlay evidence.

    The CT map is :func:`ct_blob_map` at ``lesion_scale_mm`` and twice that, in the bone (2 mm
    inside the detector's bone ROI, or a threshold mask without it); CT regions are where
    ``|map| ≥ ct_threshold``. The overlay map is the detector's z-map (or the scaled subtraction);
    overlay regions are where ``|z| ≥ overlay_threshold``. Regions of at least ``min_region_mm3``
    within ``merge_distance_mm`` of each other with the same polarity are one candidate.
    """
    from cases import read_volume

    current = read_volume(current_path)
    ct = current.array.astype(np.float32)
    spacing_zyx = np.asarray(current.spacing_mm[::-1])
    outputs = _detector_outputs(case_code, detector_dir, current)
    roi_path = outputs.path("bone_roi") if outputs is not None and outputs.has("bone_roi") else None
    if roi_path is not None and roi_path.is_file():
        # The detector's ROI is the bone of either exam grown by 3 mm: deeper than 3 mm is bone.
        roi = read_volume(roi_path, label=True).array > 0
        bone = ndimage.distance_transform_edt(roi, sampling=spacing_zyx) > 3.0
    else:
        bone = ndimage.binary_fill_holes(ndimage.binary_closing(ct > 200, iterations=2))
    ct_map = ct_blob_map(ct, spacing_zyx, bone, scales_mm=(lesion_scale_mm, 2 * lesion_scale_mm, 4 * lesion_scale_mm))

    overlay_map = None
    if outputs is not None:
        zpath = outputs.path("zmap") if outputs.has("zmap") else None
        spath = outputs.path("subtraction") if outputs.has("subtraction") else None
        if zpath is not None and zpath.is_file():
            overlay_map = read_volume(zpath).array.astype(np.float32)
        elif spath is not None and spath.is_file():
            sub = read_volume(spath).array.astype(np.float32)
            inside = sub[bone]
            mad = 1.4826 * float(np.median(np.abs(inside - np.median(inside)))) if inside.size else 1.0
            overlay_map = sub / max(mad, 1.0)
        if overlay_map is not None:
            overlay_map = np.where(ndimage.binary_dilation(bone, iterations=2), overlay_map, 0.0)

    min_voxels = max(1, int(round(min_region_mm3 / current.voxel_volume_mm3)))
    raw: list[tuple[tuple[float, float, float], float, float, int, bool, bool]] = []
    for polarity in (+1, -1):
        labels, keep, peaks = _components(polarity * ct_map, ct_threshold, min_voxels)
        for center, peak in zip(_lps_centers(labels, keep, current), peaks):
            raw.append((center, peak, 0.0, polarity, True, False))
        if overlay_map is not None:
            labels, keep, peaks = _components(polarity * overlay_map, overlay_threshold, min_voxels)
            for center, peak in zip(_lps_centers(labels, keep, current), peaks):
                raw.append((center, 0.0, peak, polarity, False, True))

    merged: list[list] = []
    for center, ct_e, ov_e, pol, ct_vis, ov_vis in sorted(raw, key=lambda r: -(r[1] + r[2])):
        for m in merged:
            if m[3] == pol and np.linalg.norm(np.subtract(m[0], center)) <= merge_distance_mm:
                m[1] = max(m[1], ct_e)
                m[2] = max(m[2], ov_e)
                m[4] = m[4] or ct_vis
                m[5] = m[5] or ov_vis
                break
        else:
            merged.append([center, ct_e, ov_e, pol, ct_vis, ov_vis])
    # Overlay evidence at CT candidates that the overlay components did not reach (below threshold).
    if overlay_map is not None:
        for m in merged:
            if not m[5]:
                idx = np.rint(current.point_to_index(m[0])).astype(int)[::-1]
                lo = np.maximum(idx - 2, 0)
                hi = np.minimum(idx + 3, overlay_map.shape)
                patch = m[3] * overlay_map[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
                m[2] = float(max(patch.max(initial=0.0), 0.0))
    candidates = tuple(Candidate(tuple(m[0]), float(m[1]), float(m[2]), int(m[3]), bool(m[4]), bool(m[5])) for m in merged)
    return CaseEvidence(case_code=case_code, candidates=candidates, has_overlay=overlay_map is not None)


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

    from .integrity import check_detector_case, overlay_roles_needed, sha256_file
    from .models import StudyCase, StudyFile, Treatment

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
        (f.case_id, f.name): f.sha256
        for f in session.scalars(select(StudyFile).where(StudyFile.study_id == study.id, StudyFile.role == "detector"))
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
        raise ReaderStudyError(f"Cannot read study {study.code!r} with its overlays: {len(problems)} problem(s) with the detector outputs in {root}: {shown}. Nothing was read.")


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

    from .models import Reader, Study, StudyReader, utcnow

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
    from .models import StudyCase

    with db.snapshot() as s:
        case_rows = s.execute(
            select(StudyCase.code, StudyCase.current_path).where(StudyCase.study_id == study.id).order_by(StudyCase.code)
        ).all()
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
