"""``tsct study …``: a coordinator's whole workflow from the command line, and clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tsct_cli import app

from ._reading import read_every_session

runner = CliRunner()


@pytest.fixture()
def cli_env(tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("TSCT_DATABASE_URL", db_url)
    return tmp_path


class Outcome:
    """A CLI result with its output's whitespace collapsed (rich wraps long lines)."""

    def __init__(self, result) -> None:
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.split())


def run(*args: str) -> Outcome:
    return Outcome(runner.invoke(app, ["study", *args]))


def test_coordinator_workflow(cli_env, case_files, detector_outputs):
    case_list, training = case_files
    readers = cli_env / "readers.csv"
    readers.write_text("name,group\nDr One,board-certified\nDr Two,resident\n")
    r = run("create", "CLI1", "--case-list", str(case_list), "--readers", str(readers), "--training-cases", str(training), "--washout-days", "30")
    assert r.exit_code == 0, r.output
    assert "4 cases, 1 training cases, 2 readers" in r.output
    r = run("readers", "add", "CLI1", "--name", "Dr Three", "--group", "resident")
    assert r.exit_code == 0 and "R03" in r.output
    r = run("readers", "add", "CLI1", "--name", "Dr Four", "--group", "board-certified")
    assert r.exit_code == 0
    r = run("design", "CLI1")
    assert r.exit_code == 0, r.output
    assert "crossover design: 4 readers × 4 cases × 2 treatments" in r.output and "balanced" in r.output
    r = run("design", "CLI1", "--show", "--reads")
    assert r.exit_code == 0 and "Readings in order" in r.output
    r = run("lock", "CLI1")
    assert r.exit_code == 2 and "--detector-dir" in r.output  # aided treatments: the overlays must be locked too
    r = run("lock", "CLI1", "--detector-dir", str(detector_outputs))
    assert r.exit_code == 0 and "content hash" in r.output, r.output
    assert run("verify", "CLI1").exit_code == 0
    assert run("open", "CLI1").exit_code == 0
    r = run("status", "CLI1")
    assert r.exit_code == 0 and "0 of 40 case reads finished" in r.output
    r = run("list")
    assert r.exit_code == 0 and "CLI1" in r.output

    # The readers read (through the service), then the coordinator closes and exports.
    import os

    from sqlalchemy import select

    from reader_study import open_db
    from reader_study.models import Reader

    db = open_db(os.environ["TSCT_DATABASE_URL"])
    with db.snapshot() as s:
        readers_ = s.execute(select(Reader.name, Reader.id)).all()

    def read(svc, item):
        if item.case_code == "C001":
            svc.save_mark(item.case_read_id, client_key=f"{item.case_read_id}", point_mm=(0, 0, 12), rating=4)
            return False
        return True

    read_every_session(db, "CLI1", readers_, read)
    db.dispose()
    assert run("close", "CLI1").exit_code == 0
    out = cli_env / "export"
    r = run("export", "CLI1", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "32 marks" not in r.output and "8 marks: 8 LL, 0 NL, 0 dropped" in r.output
    assert (out / "CLI1-jafroc.xlsx").exists() and json.loads((out / "provenance.json").read_text())["study"] == "CLI1"
    r = run("backup", "--out", str(cli_env / "backup.bin"))
    assert r.exit_code == 0 and "Backup written" in r.output
    r = run("audit", "CLI1", "--limit", "5")
    assert r.exit_code == 0 and "BACKUP" not in r.output and "EXPORT" in r.output


def test_errors_are_one_clear_message_without_traceback(cli_env, case_files, tmp_path):
    case_list, _ = case_files
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    r = Outcome(runner.invoke(app, ["study", "--db", empty, "lock", "NOPE"]))
    assert r.exit_code == 2 and "no database at" in r.output and "init-db" in r.output  # no file yet: says how to create it
    assert not (tmp_path / "empty.sqlite3").exists()  # and creates nothing
    assert Outcome(runner.invoke(app, ["study", "--db", empty, "init-db"])).exit_code == 0
    assert run("init-db").exit_code == 0  # upgrading an up-to-date database is a no-op
    r = run("lock", "NOPE")
    assert r.exit_code == 2 and "No study 'NOPE'" in r.output and "Traceback" not in r.output
    bad_readers = tmp_path / "bad.csv"
    bad_readers.write_text("name\nDr A\ndr a\n")
    r = run("create", "X", "--case-list", str(case_list), "--readers", str(bad_readers))
    assert r.exit_code == 2 and "reader names must be unique" in r.output
    r = run("create", "X", "--case-list", str(case_list), "--scale", "1-7")
    assert r.exit_code == 2 and "Rating scale '1-7' is not supported" in r.output
    r = run("create", "X", "--case-list", str(case_list), "--treatment", "bad code!")
    assert r.exit_code == 2 and "Treatment 'bad code!'" in r.output
