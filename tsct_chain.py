"""The end-to-end chain: cases → detector → reader study → simulated or human reading → analysis → report.

Each package does one stage and knows only the stages before it (``tests/test_architecture.py``);
this module is the one place that wires them all, as a handful of typed steps, each of which
reuses what an earlier run already finished, so rerunning a chain never duplicates a study or
loses data:

1. :func:`synthetic_cases`: a seeded synthetic case set (``cases``), or an existing one;
2. :func:`run_detector`: registration, temporal subtraction and z-maps for every pair
   (``detector``), each case's outputs described by its ``outputs.json``;
3. :func:`ensure_study`: a reader study created, designed, locked (with the detector outputs the
   readers will see) and opened (``reader_study``); :func:`ensure_accounts` for the reading app;
4. :func:`simulated_reading`: simulated readers that read the images fill the study through the
   reading service (``reader_study.simulation``), or people read it in the app;
5. :func:`analyse`: the study exported (JAFROC Excel, iMRMC, CSV), the detector alone scored by
   the one hit rule, and the wAFROC report written (``analysis``).

``tsct demo`` (:mod:`tsct_demo`) runs these steps on embedded defaults; ``docs/architecture.md``
walks one case through them. Heavy packages are imported inside the steps, so importing this
module is cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # types only: the steps import their packages when they run
    from cases import CaseList
    from reader_study import Database
    from reader_study.simulation import SimulationSummary

__all__ = [
    "CaseSet",
    "DetectorRun",
    "StudySpec",
    "StudySetup",
    "AccountSpec",
    "Analysis",
    "synthetic_cases",
    "run_detector",
    "open_database",
    "ensure_study",
    "ensure_accounts",
    "simulated_reading",
    "analyse",
]

#: progress callback of the long steps: (done, total, what is being done)
Progress = Callable[[int, int, str], None]


# 1. cases -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseSet:
    """A case list on disk and what it holds."""

    case_list_path: Path
    case_list: "CaseList"
    #: False when an earlier run's case list was reused
    generated: bool


def synthetic_cases(folder: Path, *, n_cases: int, abnormal_fraction: float, seed: int, size: str, progress: bool = True) -> CaseSet:
    """The synthetic case set in ``folder`` (``folder/caselist.csv``), generated unless it is already there."""
    from cases import read_case_list, synthesize_case_set

    path = folder / "caselist.csv"
    generated = not path.is_file()
    if generated:
        synthesize_case_set(folder, n_cases=n_cases, abnormal_fraction=abnormal_fraction, seed=seed, size=size, progress=progress)
    return CaseSet(path, read_case_list(path), generated)


# 2. detector ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorRun:
    """The detector's batch output folder (``<detector_dir>/<case id>/outputs.json``) and how the batch went."""

    detector_dir: Path
    summary: str
    #: case ID -> error message, for the cases the detector failed on
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every case has its outputs."""
        return not self.failed


def run_detector(cases: CaseSet, detector_dir: Path, *, progress: bool = True) -> DetectorRun:
    """Registration, subtraction and z-maps for every pair; cases finished by an earlier run are reused."""
    from detector import run_case_list

    batch = run_case_list(cases.case_list, detector_dir, progress=progress)
    return DetectorRun(detector_dir, batch.summary(), dict(batch.failed))


# 3. study -------------------------------------------------------------------------------------
def open_database(url: str) -> "Database":
    """The study database at ``url``, its schema created or upgraded."""
    from reader_study import init_db

    return init_db(url)


@dataclass(frozen=True)
class StudySpec:
    """A reader study to create: its cases, readers ((name, group) pairs) and washout; the design is seeded."""

    code: str
    title: str
    case_list: Path
    readers: Sequence[tuple[str, str]]
    washout_days: int
    seed: int = 0


@dataclass(frozen=True)
class StudySetup:
    """A study ready to read: whether this run created it, and its design's balance (when created)."""

    code: str
    created: bool
    balanced: bool | None = None
    balance_notes: tuple[str, ...] = ()


def ensure_study(
    db: "Database", spec: StudySpec, *, detector: DetectorRun | None = None, aids_from: Path | None = None, actor: str = "chain"
) -> StudySetup:
    """Create, design, lock and open the study unless it exists; record where its aids come from.

    With ``detector``, the outputs are checked against the exams and recorded at creation (when
    every case has them) and the overlays readers will see are part of the lock. The study's
    detector folder, which the reading app shows aids from, is set to ``aids_from`` (default:
    ``detector``'s folder) whether or not the study was created now.
    """
    import reader_study as rs

    with db.transaction() as s:
        exists = spec.code in set(rs.list_studies(s)["code"])
    setup = StudySetup(spec.code, created=False)
    if not exists:
        with db.transaction() as s:
            rs.create_study(
                s,
                code=spec.code,
                case_list=spec.case_list,
                title=spec.title,
                readers=[rs.ReaderSpec(name, group) for name, group in spec.readers],
                washout_days=spec.washout_days,
                seed=spec.seed,
                detector_dir=detector.detector_dir if detector is not None and detector.complete else None,
            )
            plan = rs.make_design(s, spec.code, seed=spec.seed)
            rs.lock_study(s, spec.code, detector_dir=detector.detector_dir if detector is not None else None)
            rs.open_study(s, spec.code)
        balance = plan.check_balance()
        setup = StudySetup(spec.code, True, balance.balanced, tuple(c.message for c in balance.checks if c.level != "ok"))
    shown = aids_from if aids_from is not None else (detector.detector_dir if detector is not None else None)
    if shown is not None:
        with db.transaction() as s:
            rs.set_detector_dir(s, spec.code, shown, actor=actor)
    return setup


@dataclass(frozen=True)
class AccountSpec:
    """A log-in for the reading app; ``reader_name`` links a reader account to its study reader."""

    username: str
    password: str
    role: str
    reader_name: str | None = None


def ensure_accounts(db: "Database", accounts: Sequence[AccountSpec], *, actor: str = "chain") -> list[str]:
    """Create the accounts that do not exist yet (an existing one keeps its password); returns the user names created."""
    import reader_study as rs

    created = []
    with db.transaction() as s:
        for account in accounts:
            if rs.find_account(s, account.username) is None:
                rs.create_account(s, account.username, account.password, role=account.role, reader_name=account.reader_name, actor=actor)
                created.append(account.username)
    return created


# 4. reading -----------------------------------------------------------------------------------
def simulated_reading(
    db: "Database", study_code: str, detector: DetectorRun, *, seed: int = 0, progress: Progress | None = None
) -> "SimulationSummary":
    """Every simulated reader of the open study reads every case, unaided and aided (readers who finished are skipped)."""
    from reader_study.simulation import simulate_readers

    return simulate_readers(db, study_code, detector_dir=detector.detector_dir, seed=seed, progress=progress)


# 5. analysis ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Analysis:
    """Where the export and the report went, with the report's one-sentence result."""

    export_dir: Path
    export_files: dict[str, str]
    report_dir: Path
    results_json: Path
    headline: str
    messages: tuple[str, ...] = field(default_factory=tuple)


def _detector_marks(cases: CaseSet, detector: DetectorRun, out_dir: Path, messages: list[str]):  # type: ignore[no-untyped-def]
    """The detector alone on the study's cases, scored as ``tsct detect evaluate`` does.

    The z-map network's candidates on every case (registration outputs reused from the detector
    folder), matched to the truth lesions by the one hit rule, written to
    ``out_dir/marks_zscore.csv`` (read back for the report's section "The detector alone vs
    the radiologists"). Returns ``(marks, file name)``, or ``(None, None)`` with a message
    in ``messages`` when the detector cannot be scored.
    """
    from analysis.cad_vs_rad import read_cad_marks
    from detector import DetectorInputError
    from detector.detection_eval import evaluate_detectors

    try:
        ev = evaluate_detectors(cases.case_list, detector.detector_dir, methods=("zscore",), progress=False)
    except (DetectorInputError, OSError, ValueError) as exc:
        messages.append(f"the detector alone was not scored ({exc}); the report has no 'detector alone' section")
        return None, None
    if "zscore" not in ev.marks:
        messages.append("the z-map network ran on none of the cases; the report has no 'detector alone' section")
        return None, None
    path = ev.write_marks(out_dir)["zscore"]
    return read_cad_marks(str(path)), path.name


def analyse(
    db: "Database",
    study_code: str,
    *,
    cases: CaseSet,
    detector: DetectorRun,
    export_dir: Path,
    reports_dir: Path,
    marks_dir: Path,
    actor: str = "chain",
) -> Analysis:
    """Export the study, score the detector alone, and write the wAFROC report (OR, RRRC first, subgroups).

    The report records the detector outputs the readers saw (``outputs.json`` of every case) and,
    when the detector could be scored on the study's cases, compares it with the radiologists
    in the unaided treatment; otherwise ``messages`` says why that section is missing.
    """
    import reader_study as rs
    from analysis import write_report
    from analysis.cad_vs_rad import add_cad_reader
    from analysis.data import ObserverDataError
    from detector.outputs import outputs_record

    messages: list[str] = []
    export = rs.export_study(db, study_code, export_dir, actor=actor)
    data = export.records.to_observer_data()
    jafroc_file = next(iter(sorted(export_dir.glob("*.xlsx"))), None)
    det_record = outputs_record(detector.detector_dir, [c.case_id for c in cases.case_list])
    cad_marks, cad_source = _detector_marks(cases, detector, marks_dir, messages)
    if cad_marks is not None:
        try:
            add_cad_reader(data, cad_marks)  # the marks must name the study's cases and lesions
        except ObserverDataError as exc:
            messages.append(f"the detector's marks do not fit the exported study ({exc}); the report has no 'detector alone' section")
            cad_marks = cad_source = None
    paths = write_report(
        data,
        reports_dir,
        study_name=study_code,
        fom="wAFROC",
        method="OR",
        subgroups="auto",
        input_path=jafroc_file,
        detector_outputs=det_record,
        cad_marks=cad_marks,
        cad_treatment="unaided" if cad_marks is not None else None,
        cad_marks_source=cad_source,
    )
    return Analysis(export_dir, dict(export.files), paths.directory, Path(paths.json), headline(paths.json), tuple(messages))


def headline(results_json: Path) -> str:
    """One sentence from a report's ``results.json``: the reader-averaged FOM per treatment and the RRRC difference."""
    results = json.loads(Path(results_json).read_text())
    rrrc = results["analyses"]["RRRC"]
    means = ", ".join(f"{t} {v['estimate']:.3f}" for t, v in rrrc["treatment_cis"].items())
    diff = rrrc["differences"][0]
    a, b = diff["treatments"]
    lo, hi = diff["ci95"]
    return (
        f"{results['fom']} (reader average): {means}; {b} - {a} = {-diff['estimate']:+.3f} "
        f"(95% CI {-hi:.3f} to {-lo:.3f}, p = {diff['p']:.3g}, {results['method']} RRRC)"
    )
