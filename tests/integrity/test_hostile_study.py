"""Hostile inputs on the study and analysis side: every one refused clearly, nothing left behind.

Two parts:

* **Malformed inputs** (``hostile_study_cases.py``, over 300 generated here): study commands,
  readers files, marks to import, accounts, backups, exports, simulated reading, JAFROC/iMRMC/CSV
  analysis files, options and output paths. Each must exit non-zero, without a traceback, with a
  message naming the culprit, leaving no new or changed file and no output behind.
* **kill -9**: ``detect batch``, ``study simulate-readers``, ``analyze report``, ``study export``
  and ``study backup`` are killed (SIGKILL) mid-work - at a known point
  (``TSCT_TEST_PAUSE_AT``, :func:`tsct_files.pause_point`) or when a state is reached on disk - and
  then nothing half-written may count as done, and a rerun must complete.

The totals are printed by ``bench/hostile_study_tally.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._study_env import StudyEnv, build_env, copy_db
from .hostile_study_cases import all_cases, run_case

ROOT = Path(__file__).resolve().parents[2]
CASES = all_cases()


@pytest.fixture(scope="session")
def study_env(tmp_path_factory) -> StudyEnv:
    return build_env(tmp_path_factory.mktemp("hostile-world"))


def test_there_are_enough_hostile_inputs():
    assert len(CASES) >= 150
    assert len({c.category for c in CASES}) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_clearly(case, study_env, tmp_path):
    outcome = run_case(case, tmp_path / "w", study_env)
    assert outcome.kind == "clear", f"{outcome.kind}: exit {outcome.exit_code}; {outcome.detail}\n{outcome.output[:1500]}"


# ------------------------------------------------------------------------------------------------
# kill -9
def _cli(args: list[str], env: dict[str, str], pause: str | None = None, marker: Path | None = None) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300", **env}
    full.pop("TSCT_TEST_PAUSE_AT", None)
    if pause is not None:
        full["TSCT_TEST_PAUSE_AT"] = pause
        full["TSCT_TEST_PAUSE_FILE"] = str(marker)
    return subprocess.Popen(
        [sys.executable, "-c", "import tsct_cli; tsct_cli.main()", *args],
        env=full,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, ready) -> None:
    """Wait until ``ready()`` is true (a state on disk), failing if the process ends first."""
    while not ready():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the command ended (exit {proc.returncode}) before reaching the state to kill it in:\n{out}")
        time.sleep(0.02)


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if proc.stdout:
        proc.stdout.close()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300", **env}
    full.pop("TSCT_TEST_PAUSE_AT", None)
    return subprocess.run([sys.executable, "-c", "import tsct_cli; tsct_cli.main()", *args], env=full, cwd=ROOT, capture_output=True, text=True)


def _visible(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def test_kill9_during_report_leaves_no_report_and_a_rerun_completes(study_env, tmp_path):
    out, marker = tmp_path / "reports", tmp_path / "paused"
    args = ["analyze", "report", str(study_env.tidy), "--study", "K", "--out", str(out)]
    proc = _cli(args, {}, pause="report-before-pdf", marker=marker)
    _wait_for(proc, marker.exists)  # HTML, JSON and CSV are written; the PDF is next
    _kill9(proc)
    assert _visible(out) == []  # no report.html beside a missing or truncated report.pdf
    rerun = _run(args, {})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {"report.html", "report.pdf", "results.json"} <= {p.name for p in (out / "K").iterdir()}
    assert (out / "K" / "report.pdf").read_bytes().rstrip().endswith(b"%%EOF")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the killed run's staging folder is gone


def test_kill9_during_export_leaves_no_files_and_a_rerun_completes(study_env, tmp_path):
    db = copy_db(study_env, tmp_path)
    env = {"TSCT_DATABASE_URL": f"sqlite:///{db}"}
    out, marker = tmp_path / "export", tmp_path / "paused"
    args = ["study", "export", "DONE", "--out", str(out)]
    proc = _cli(args, env, pause="export-staged", marker=marker)
    _wait_for(proc, marker.exists)  # every file is written in the staging folder
    _kill9(proc)
    assert not out.exists() or _visible(out) == []
    rerun = _run(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {"DONE-jafroc.xlsx", "DONE.imrmc", "provenance.json", "marks.csv"} <= set(_visible(out))
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_kill9_during_backup_leaves_no_backup_and_a_rerun_completes(study_env, tmp_path):
    db = copy_db(study_env, tmp_path)
    env = {"TSCT_DATABASE_URL": f"sqlite:///{db}"}
    dest, marker = tmp_path / "b" / "backup.sqlite3", tmp_path / "paused"
    args = ["study", "backup", "--out", str(dest)]
    proc = _cli(args, env, pause="backup-written", marker=marker)
    _wait_for(proc, marker.exists)  # the copy is written under its temporary name, not yet checked
    _kill9(proc)
    assert not dest.exists()
    rerun = _run(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "checked after writing" in rerun.stdout
    assert sorted(p.name for p in dest.parent.iterdir()) == ["backup.sqlite3"]  # the killed run's hidden partial copy is removed
    again = _run(args, env)
    assert again.returncode == 2 and "--force" in again.stderr + again.stdout
    assert _run([*args, "--force"], env).returncode == 0


def test_kill9_during_simulated_reading_counts_nothing_half_done(study_env, tmp_path):
    from sqlalchemy import func, select

    from reader_study import open_db
    from reader_study.models import CaseRead, Mark, Study

    db_path = copy_db(study_env, tmp_path)
    env = {"TSCT_DATABASE_URL": f"sqlite:///{db_path}"}
    args = ["study", "simulate-readers", "OPEN", "--detector-dir", str(study_env.detector_dir)]
    db = open_db(f"sqlite:///{db_path}")

    def counts() -> tuple[int, int, int]:
        with db.snapshot() as s:
            sid = s.scalar(select(Study.id).where(Study.code == "OPEN"))
            total = s.scalar(select(func.count()).select_from(CaseRead).where(CaseRead.study_id == sid))
            done = s.scalar(select(func.count()).select_from(CaseRead).where(CaseRead.study_id == sid, CaseRead.status == "finished"))
            marks = s.scalar(select(func.count()).select_from(Mark).where(Mark.study_id == sid, Mark.deleted_at.is_(None)))
        return total, done, marks

    total, done0, _ = counts()
    assert done0 == 0
    marker = tmp_path / "paused"
    proc = _cli(args, env, pause="simulate-before-finish-4", marker=marker)
    _wait_for(proc, marker.exists)  # three case reads finished, the fourth opened with its marks saved
    _kill9(proc)
    total, done, _ = counts()
    assert done == 3 < total
    export = _run(["study", "export", "OPEN", "--out", str(tmp_path / "x")], env)
    assert export.returncode == 2 and not (tmp_path / "x").exists()  # unfinished reads are never exported as "no findings"
    rerun = _run(args, env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    total2, done2, marks2 = counts()
    assert done2 == total2 == total
    with db.snapshot() as s:  # no mark saved twice (client keys)
        keys = s.execute(select(Mark.reader_id, Mark.client_key)).all()
    assert len(keys) == len(set(keys))
    db.dispose()


@pytest.mark.slow
def test_kill9_during_detect_batch_counts_only_finished_cases(tmp_path):
    from detector.outputs import read_case_outputs
    from reader_study.integrity import check_complete, detector_output_files

    cases = tmp_path / "cases"
    made = _run(["cases", "synth", str(cases), "--n-cases", "2", "--seed", "3"], {})
    assert made.returncode == 0, made.stdout + made.stderr
    case_list = cases / "caselist.csv"
    out = tmp_path / "det"
    args = ["detect", "batch", str(case_list), "--out", str(out), "--model", "analytic"]
    proc = _cli(args, {})
    _wait_for(proc, lambda: any(out.glob("*/warped_prior.nii.gz")) or any(out.glob("*/subtraction.nii.gz")))
    _kill9(proc)
    for folder in (p for p in out.iterdir() if p.is_dir()):
        if (folder / "outputs.json").exists():  # a case counted as done (its manifest is written last) has every output complete
            read_case_outputs(folder, verify=True)
            for _name, f in detector_output_files(folder):
                check_complete(f)
    rerun = _run(args, {})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 2
    for folder in folders:
        outputs = read_case_outputs(folder, verify=True)
        assert outputs.has("zmap") and outputs.has("subtraction")
        for _name, f in detector_output_files(folder):
            check_complete(f)


def test_backup_never_replaces_a_file_that_appears_while_it_runs(study_env, tmp_path, monkeypatch):
    """Two backups to one name at once: the one finishing second must not replace the first's file."""
    from reader_study import backup, open_db
    from tsct_files import OutputPathError

    db_path = copy_db(study_env, tmp_path)
    dest = tmp_path / "backup.sqlite3"
    real_verify = backup._verify_sqlite_copy

    def verify_while_another_backup_lands(path):
        dest.write_bytes(b"the other run's backup")  # the concurrent run renames its copy in first
        return real_verify(path)

    monkeypatch.setattr(backup, "_verify_sqlite_copy", verify_while_another_backup_lands)
    db = open_db(f"sqlite:///{db_path}")
    try:
        with pytest.raises(OutputPathError, match="appeared while the backup was being written"):
            backup.backup_database(db, dest)
    finally:
        db.dispose()
    assert dest.read_bytes() == b"the other run's backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.sqlite3", "study.sqlite3"]  # no partial copy left
