"""The platform's main job on embedded defaults: the whole study, from synthetic cases to a report.

``tsct demo`` (and ``make demo``) runs, in order, each step skipping what an earlier run already
finished, so a rerun never duplicates a study or loses data:

1. ``cases``: a seeded synthetic case set of prior/current spine CT pairs (half with new lesions);
2. ``detector``: registration, temporal subtraction and z-maps for every pair;
3. ``reader_study``: a two-treatment (unaided / aided by the subtraction z-map) counterbalanced
   crossover study with a handful of readers (board-certified and residents), designed, locked
   and opened, plus log-in accounts for the reading app;
4. simulated readers that read the images fill it, through the same reading service as the app;
5. ``analysis``: the study is scored and exported (JAFROC Excel, iMRMC, CSV) and the wAFROC
   report (RRRC first, FRRC, RRFC, subgroups by reader group and lesion location) is written to
   ``reports/<study>/``.

It also leaves a study for a person to read at once: ``DEMO-READ``, a small crossover study
(:data:`PRACTICE_CASES` of the same cases, unaided then aided, no washout) whose one reader has
the account ``radiologist`` and no case read yet. Both studies record their detector folder
(:func:`reader_study.set_detector_dir`), so ``tsct app`` with the same ``TSCT_DATA_DIR`` shows the
aids without further settings.

Everything goes under one data folder (``$TSCT_DATA_DIR`` or ``./tsct-data``), with the SQLite
database at ``<data>/reader-study.sqlite3`` unless ``TSCT_DATABASE_URL`` says otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = ["DemoSettings", "DemoResult", "run_demo", "DEMO_READERS", "HUMAN_READER", "PRACTICE_CASES"]

#: The demo's readers: (name, group).
DEMO_READERS: tuple[tuple[str, str], ...] = (
    ("Dr Aoki", "board-certified"),
    ("Dr Baker", "board-certified"),
    ("Dr Chiba", "board-certified"),
    ("Dr Diaz", "resident"),
    ("Dr Endo", "resident"),
    ("Dr Fox", "resident"),
)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo makes; the defaults are the README's main job."""

    data_dir: Path
    reports_dir: Path = Path("reports")
    n_cases: int = 40
    abnormal_fraction: float = 0.5
    seed: int = 0
    size: str = "small"
    study_code: str = "DEMO"
    database_url: str | None = None


@dataclass
class DemoResult:
    """Where everything went, and how long each step took (seconds)."""

    case_list: Path
    detector_dir: Path
    database_url: str
    study_code: str
    export_dir: Path
    report_dir: Path
    accounts: dict[str, tuple[str, str]]
    timings_s: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    headline: str = ""
    #: the study left for a person to read in the app
    practice_study: str = ""


#: The person who reads the practice study in the app: (user name, reader name, group).
HUMAN_READER: tuple[str, str, str] = ("radiologist", "You (demo reader)", "board-certified")

#: Cases of the practice study (half with lesions), read unaided and aided.
PRACTICE_CASES = 6


def _practice_case_list(case_list_path: Path, n_cases: int) -> Path:
    """A case list of the first ``n_cases`` cases (abnormal and normal alternately), beside the full one (same relative paths)."""
    import csv

    out = case_list_path.with_name("practice-caselist.csv")
    if out.is_file():
        return out
    with case_list_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    order: dict[str, list[dict]] = {}
    for row in rows:
        order.setdefault(row["case_id"], []).append(row)
    abnormal = [c for c, r in order.items() if r[0].get("status") == "abnormal"]
    normal = [c for c, r in order.items() if r[0].get("status") != "abnormal"]
    chosen: list[str] = []
    while len(chosen) < n_cases and (abnormal or normal):
        for pool in (abnormal, normal):
            if pool and len(chosen) < n_cases:
                chosen.append(pool.pop(0))
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for case in chosen:
            writer.writerows(order[case])
    tmp.replace(out)
    return out


def _account_password(username: str, seed: int) -> str:
    """A demo password (printed to the console); real studies issue their own."""
    return f"demo-{username}-{seed}"


def _detector_marks(case_list, detector_dir: Path, out_dir: Path, messages: list[str]):  # type: ignore[no-untyped-def]
    """The detector alone on the study's cases, scored as ``tsct detect evaluate`` does.

    The z-map network's candidates on every case (registration outputs reused from
    ``detector_dir``), matched to the truth lesions by the one hit rule, written to
    ``out_dir/marks_zscore.csv`` (read back for the report's section "The detector alone vs
    the radiologists"). Returns ``(marks, file name)``, or ``(None, None)`` with a message
    in ``messages`` when the detector cannot be scored.
    """
    from analysis.cad_vs_rad import read_cad_marks
    from detector._errors import DetectorInputError
    from detector.detection_eval import evaluate_detectors

    try:
        ev = evaluate_detectors(case_list, detector_dir, methods=("zscore",), progress=False)
    except (DetectorInputError, OSError, ValueError) as exc:
        messages.append(f"the detector alone was not scored ({exc}); the report has no 'detector alone' section")
        return None, None
    if "zscore" not in ev.marks:
        messages.append("the z-map network ran on none of the cases; the report has no 'detector alone' section")
        return None, None
    path = ev.write_marks(out_dir)["zscore"]
    return read_cad_marks(str(path)), path.name


def run_demo(settings: DemoSettings, *, say: Callable[[str], None] = print, progress: bool = True) -> DemoResult:
    """Run the whole chain (see the module docstring); returns where everything went."""
    import reader_study as rs
    from analysis import write_report
    from cases import read_case_list, synthesize_case_set
    from detector import run_case_list
    from reader_study.simulation import simulate_readers

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    messages: list[str] = []

    # 1. cases --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    case_dir = data_dir / f"cases-{settings.size}-seed{settings.seed}-n{settings.n_cases}"
    case_list_path = case_dir / "caselist.csv"
    if case_list_path.is_file():
        say(f"1/5 cases: reusing {case_list_path}")
    else:
        say(f"1/5 cases: generating {settings.n_cases} synthetic prior/current pairs ({settings.size}, seed {settings.seed})")
        synthesize_case_set(case_dir, n_cases=settings.n_cases, abnormal_fraction=settings.abnormal_fraction, seed=settings.seed, size=settings.size, progress=progress)
    case_list = read_case_list(case_list_path)
    say(f"    {case_list.summary()}")
    timings["cases"] = time.perf_counter() - t0

    # 2. detector -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    detector_dir = case_dir / "detector"
    say(f"2/5 detector: registration, subtraction and z-maps into {detector_dir}")
    batch = run_case_list(case_list, detector_dir, progress=progress)
    say(f"    {batch.summary()}")
    if batch.failed:
        messages.append(f"detector failed on {len(batch.failed)} case(s); see {detector_dir}/batch_report.json")
    timings["detector"] = time.perf_counter() - t0

    # 3. study ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    db_url = settings.database_url or f"sqlite:///{data_dir / 'reader-study.sqlite3'}"
    db = rs.init_db(db_url)
    code = settings.study_code
    accounts: dict[str, tuple[str, str]] = {}
    with db.transaction() as s:
        existing = set(rs.list_studies(s)["code"])
    if code in existing:
        say(f"3/5 study: reusing study {code} in {db.safe_url}")
    else:
        say(f"3/5 study: creating crossover study {code} ({len(DEMO_READERS)} readers, unaided vs aided) in {db.safe_url}")
        with db.transaction() as s:
            rs.create_study(
                s, code=code, case_list=case_list, title="Demo: temporal-subtraction z-map overlay on synthetic spine CT",
                readers=[rs.ReaderSpec(name, group) for name, group in DEMO_READERS], washout_days=28, seed=settings.seed,
                detector_dir=None if batch.failed else detector_dir,  # outputs checked against the exams and recorded
            )
            plan = rs.make_design(s, code, seed=settings.seed)
            rs.lock_study(s, code, detector_dir=detector_dir)  # the overlays readers see are part of the lock
            rs.open_study(s, code)
        balance = plan.check_balance()
        notes = "".join(f"; {c.message}" for c in balance.checks if c.level != "ok")
        say(f"    design: {'balanced' if balance.balanced else 'NOT balanced'}{notes}")
    with db.transaction() as s:
        rs.set_detector_dir(s, code, detector_dir, actor="demo")
    practice = f"{code}-READ"
    human_user, human_name, human_group = HUMAN_READER
    with db.transaction() as s:
        existing = set(rs.list_studies(s)["code"])
    if practice not in existing:
        say(f"    and {practice}: {PRACTICE_CASES} of the cases, unaided then aided, for you to read in the app (account {human_user})")
        with db.transaction() as s:
            rs.create_study(
                s, code=practice, case_list=_practice_case_list(case_list_path, PRACTICE_CASES),
                title="Demo: read it yourself (unaided, then aided by the z-map overlay)",
                readers=[rs.ReaderSpec(human_name, human_group)], washout_days=0, seed=settings.seed,
            )
            rs.make_design(s, practice, seed=settings.seed)
            rs.lock_study(s, practice)
            rs.open_study(s, practice)
    with db.transaction() as s:
        rs.set_detector_dir(s, practice, detector_dir, actor="demo")
    with db.transaction() as s:
        wanted = [(human_user, "reader", human_name)]
        wanted += [(f"reader{i + 1}", "reader", name) for i, (name, _) in enumerate(DEMO_READERS)]
        wanted += [("coordinator", "coordinator", None), ("statistician", "statistician", None)]
        for username, role, reader_name in wanted:
            password = _account_password(username, settings.seed)
            if username == human_user:
                accounts[username] = (password, f"reader ({reader_name}): reads {practice} in the app, no case read yet")
            else:
                accounts[username] = (password, role if reader_name is None else f"reader ({reader_name}, simulated: finished {code})")
            if rs.find_account(s, username) is None:
                rs.create_account(s, username, password, role=role, reader_name=reader_name, actor="demo")
    timings["study"] = time.perf_counter() - t0

    # 4. simulated readers ----------------------------------------------------------------------
    t0 = time.perf_counter()
    say("4/5 simulated readers: reading every case, unaided and aided")
    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("simulated reading", total=None)
            summary = simulate_readers(
                db, code, detector_dir=detector_dir, seed=settings.seed,
                progress=lambda done, total, what: bar.update(task, completed=done, total=total, description=what),
            )
    else:
        summary = simulate_readers(db, code, detector_dir=detector_dir, seed=settings.seed)
    say(f"    {summary}")
    timings["reading"] = time.perf_counter() - t0

    # 5. analysis -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    export_dir = data_dir / "exports" / code
    say(f"5/5 analysis: export to {export_dir} and report to {settings.reports_dir / code}")
    export = rs.export_study(db, code, export_dir, actor="demo")
    data = export.records.to_observer_data()
    jafroc_file = next(iter(sorted(export_dir.glob("*.xlsx"))), None)
    from detector.outputs import outputs_record

    det_record = outputs_record(detector_dir, [c.case_id for c in case_list])
    cad_marks, cad_source = _detector_marks(case_list, detector_dir, data_dir / "detector-marks", messages)
    if cad_marks is not None:
        from analysis.cad_vs_rad import add_cad_reader
        from analysis.data import ObserverDataError

        try:
            add_cad_reader(data, cad_marks)  # the marks must name the study's cases and lesions
        except ObserverDataError as exc:
            messages.append(f"the detector's marks do not fit the exported study ({exc}); the report has no 'detector alone' section")
            cad_marks = cad_source = None
    paths = write_report(
        data, settings.reports_dir, study_name=code, fom="wAFROC", method="OR", subgroups="auto", input_path=jafroc_file, detector_outputs=det_record,
        cad_marks=cad_marks, cad_treatment="unaided" if cad_marks is not None else None, cad_marks_source=cad_source,
    )
    timings["analysis"] = time.perf_counter() - t0
    report_dir = paths.directory
    (data_dir / "demo.json").write_text(json.dumps({"case_list": str(case_list_path), "study": code, "database": db.safe_url, "report": str(report_dir), "export": {name: digest for name, digest in export.files.items()}, "timings_s": timings}, indent=2))
    return DemoResult(case_list_path, detector_dir, db.safe_url, code, export_dir, report_dir, accounts, timings, messages, _headline(paths.json), practice)


def _headline(results_json: Path) -> str:
    """One sentence: the reader-averaged FOM per treatment and the RRRC difference."""
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
