"""The platform's main job on embedded defaults: the whole study, from synthetic cases to a report.

``tsct demo`` (and ``make demo``) runs the end-to-end chain (:mod:`tsct_chain`, the one module
that wires every package) in order, each step skipping what an earlier run already finished, so
a rerun never duplicates a study or loses data:

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


def run_demo(settings: DemoSettings, *, say: Callable[[str], None] = print, progress: bool = True) -> DemoResult:
    """Run the whole chain (:mod:`tsct_chain`; see the module docstring); returns where everything went."""
    import tsct_chain as chain

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    messages: list[str] = []

    # 1. cases --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    case_dir = data_dir / f"cases-{settings.size}-seed{settings.seed}-n{settings.n_cases}"
    if (case_dir / "caselist.csv").is_file():
        say(f"1/5 cases: reusing {case_dir / 'caselist.csv'}")
    else:
        say(f"1/5 cases: generating {settings.n_cases} synthetic prior/current pairs ({settings.size}, seed {settings.seed})")
    cases = chain.synthetic_cases(
        case_dir, n_cases=settings.n_cases, abnormal_fraction=settings.abnormal_fraction, seed=settings.seed, size=settings.size, progress=progress
    )
    say(f"    {cases.case_list.summary()}")
    timings["cases"] = time.perf_counter() - t0

    # 2. detector -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    detector_dir = case_dir / "detector"
    say(f"2/5 detector: registration, subtraction and z-maps into {detector_dir}")
    detector = chain.run_detector(cases, detector_dir, progress=progress)
    say(f"    {detector.summary}")
    if detector.failed:
        messages.append(f"detector failed on {len(detector.failed)} case(s); see {detector_dir}/batch_report.json")
    timings["detector"] = time.perf_counter() - t0

    # 3. study ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    db_url = settings.database_url or f"sqlite:///{data_dir / 'reader-study.sqlite3'}"
    db = chain.open_database(db_url)
    code = settings.study_code
    main = chain.StudySpec(
        code,
        "Demo: temporal-subtraction z-map overlay on synthetic spine CT",
        cases.case_list_path,
        DEMO_READERS,
        washout_days=28,
        seed=settings.seed,
    )
    say(f"3/5 study: crossover study {code} ({len(DEMO_READERS)} readers, unaided vs aided) in {db.safe_url}")
    setup = chain.ensure_study(db, main, detector=detector, actor="demo")
    if setup.created:
        say(
            f"    created, locked and opened; design: {'balanced' if setup.balanced else 'NOT balanced'}{''.join(f'; {note}' for note in setup.balance_notes)}"
        )
    else:
        say("    reusing it (made by an earlier run)")
    practice = f"{code}-READ"
    human_user, human_name, human_group = HUMAN_READER
    practice_spec = chain.StudySpec(
        practice,
        "Demo: read it yourself (unaided, then aided by the z-map overlay)",
        _practice_case_list(cases.case_list_path, PRACTICE_CASES),
        [(human_name, human_group)],
        washout_days=0,
        seed=settings.seed,
    )
    if chain.ensure_study(db, practice_spec, aids_from=detector_dir, actor="demo").created:
        say(f"    and {practice}: {PRACTICE_CASES} of the cases, unaided then aided, for you to read in the app (account {human_user})")
    wanted = [(human_user, "reader", human_name)]
    wanted += [(f"reader{i + 1}", "reader", name) for i, (name, _) in enumerate(DEMO_READERS)]
    wanted += [("coordinator", "coordinator", None), ("statistician", "statistician", None)]
    logins = [chain.AccountSpec(username, _account_password(username, settings.seed), role, name) for username, role, name in wanted]
    chain.ensure_accounts(db, logins, actor="demo")
    accounts: dict[str, tuple[str, str]] = {}
    for a in logins:
        if a.username == human_user:
            accounts[a.username] = (a.password, f"reader ({a.reader_name}): reads {practice} in the app, no case read yet")
        else:
            accounts[a.username] = (a.password, a.role if a.reader_name is None else f"reader ({a.reader_name}, simulated: finished {code})")
    timings["study"] = time.perf_counter() - t0

    # 4. simulated readers ----------------------------------------------------------------------
    t0 = time.perf_counter()
    say("4/5 simulated readers: reading every case, unaided and aided")
    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("simulated reading", total=None)
            summary = chain.simulated_reading(
                db,
                code,
                detector,
                seed=settings.seed,
                progress=lambda done, total, what: bar.update(task, completed=done, total=total, description=what),
            )
    else:
        summary = chain.simulated_reading(db, code, detector, seed=settings.seed)
    say(f"    {summary}")
    timings["reading"] = time.perf_counter() - t0

    # 5. analysis -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    export_dir = data_dir / "exports" / code
    say(f"5/5 analysis: export to {export_dir} and report to {settings.reports_dir / code}")
    analysis = chain.analyse(
        db,
        code,
        cases=cases,
        detector=detector,
        export_dir=export_dir,
        reports_dir=settings.reports_dir,
        marks_dir=data_dir / "detector-marks",
        actor="demo",
    )
    messages.extend(analysis.messages)
    timings["analysis"] = time.perf_counter() - t0
    (data_dir / "demo.json").write_text(
        json.dumps(
            {
                "case_list": str(cases.case_list_path),
                "study": code,
                "database": db.safe_url,
                "report": str(analysis.report_dir),
                "export": analysis.export_files,
                "timings_s": timings,
            },
            indent=2,
        )
    )
    return DemoResult(
        cases.case_list_path,
        detector_dir,
        db.safe_url,
        code,
        export_dir,
        analysis.report_dir,
        accounts,
        timings,
        messages,
        analysis.headline,
        practice,
    )
