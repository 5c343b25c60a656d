"""tsct_files: output paths checked before work, atomic files, staged folders, problem lists."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tsct_files import (
    OutputPathError,
    atomic_file,
    atomic_folder,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    problems_file,
    remove_stale_partials,
    staged_dir,
    temporary_sibling,
)


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(OutputPathError, match="is a file, but a folder is expected"):
        check_output_dir(tmp_path / "a-file")
    with pytest.raises(OutputPathError, match="a-file is a file, so no folder can be made"):
        check_output_dir(tmp_path / "a-file" / "sub")
    with pytest.raises(OutputPathError, match="is a folder, but a file name is expected"):
        check_output_file(tmp_path / "a-folder", option="--json")
    with pytest.raises(OutputPathError, match="not a regular file"):
        check_output_file("/dev/full")
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_dir("/proc/tsct-never")
    with pytest.raises(OutputPathError, match="already exists"):
        check_output_file(tmp_path / "a-file", overwrite=False)
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder"]  # no probe file left


def test_atomic_file_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed half-way")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with atomic_file(target) as tmp:
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_staged_dir_moves_files_in_only_on_success_and_removes_dead_runs(tmp_path):
    target = tmp_path / "report"
    with pytest.raises(ValueError):
        with staged_dir(target) as stage:
            (stage / "report.html").write_text("complete")
            raise ValueError("the PDF failed")
    assert list(tmp_path.iterdir()) == []
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    target.joinpath("keep.txt").write_text("unrelated")
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("2")
    assert (target / "a.txt").read_text() == "2" and (target / "keep.txt").read_text() == "unrelated"
    dead = tmp_path / ".report.partial-999999999-0123abcd"  # a killed run's staging folder (no such pid)
    dead.mkdir()
    (dead / "report.pdf").write_bytes(b"%PDF-1.4 trunc")
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"] and (target / "a.txt").read_text() == "3"


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "new" / "set"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as work:
            (work / "caselist.csv").write_text("half")
            raise RuntimeError("failed half-way")
    assert list(tmp_path.iterdir()) == []  # the parent made for it is removed too
    target.mkdir(parents=True)  # an empty folder is accepted and replaced
    with atomic_folder(target) as work:
        (work / "caselist.csv").write_text("complete")
    assert [p.name for p in target.parent.iterdir()] == ["set"] and (target / "caselist.csv").read_text() == "complete"
    with pytest.raises(OutputPathError, match="already holds files"):
        check_output_dir(target, empty=True, what="case set")


def test_stale_partials_of_killed_runs_are_removed_by_the_next_run_for_the_same_target(tmp_path):
    """What kill -9 leaves (a hidden partial file or folder) is removed by the next write of the
    same target when its process is gone; a live run's partial, and other targets', stay."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        target = tmp_path / "out.json"
        dead_pid = 999_999_999  # beyond any pid_max: no process has it
        dead_file = tmp_path / f".out.json.partial-{dead_pid}-0123abcd"
        dead_file.write_text("half")
        dead_dir = tmp_path / f".out.json.partial-{dead_pid}-89abcdef.nii.gz"
        dead_dir.mkdir()
        (dead_dir / "x").write_text("half")
        live = tmp_path / f".out.json.partial-{sleeper.pid}-deadbeef"  # another run still writing
        live.write_text("in progress")
        other = tmp_path / f".other.json.partial-{dead_pid}-0123abcd"  # another target's
        other.write_text("half")
        mine = temporary_sibling(target, ".json")
        assert mine.name.startswith(f".out.json.partial-{os.getpid()}-") and mine.name.endswith(".json")
        atomic_write_text(target, "{}\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name, other.name])
        # a pid reused by a process started after the partial was written: stale too
        reused = tmp_path / f".out.json.partial-{sleeper.pid}-feedface"
        reused.write_text("old")
        os.utime(reused, (1_000_000_000, 1_000_000_000))  # written in 2001, long before the sleeper started
        assert remove_stale_partials(target) == [reused] and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_partials(target) == [live]  # its writer is gone now


def test_problems_file_goes_beside_the_input_or_to_the_temporary_folder(tmp_path):
    source = tmp_path / "marks.csv"
    path = problems_file([f"row {i}: bad" for i in range(100)], near=source)
    assert path == tmp_path / "marks.csv.problems.txt" and len(path.read_text().splitlines()) == 100
    elsewhere = problems_file(["one"], near="/proc/x.csv")
    assert elsewhere.exists() and elsewhere.read_text() == "one\n"
    elsewhere.unlink()


def test_a_rerun_of_the_command_removes_what_a_killed_run_left_beside_its_target(tmp_path):
    """`cases import` and `cases synth` killed with kill -9 leave hidden partials (file, folder);
    running the same command again removes them (their pid is gone) and writes the target."""
    import numpy as np
    from typer.testing import CliRunner

    from cases import Volume, write_volume
    from tsct_cli import app

    hu = np.full((8, 10, 12), -1000.0, dtype=np.float32)  # air with a block of bone: a CT in HU
    hu[2:6, 3:7, 3:9] = 700.0
    source = write_volume(Volume(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), tmp_path / "src" / "exam.nii.gz")
    out = tmp_path / "out" / "exam.nii.gz"
    out.parent.mkdir()
    killed = out.with_name(".exam.nii.gz.partial-999999999-0123abcd.nii.gz")  # what kill -9 left mid-write
    killed.write_bytes(b"\x1f\x8b half a gzip")
    result = CliRunner().invoke(app, ["cases", "import", str(source), str(out)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.parent.iterdir()] == ["exam.nii.gz"]

    cases_dir = tmp_path / "set"
    left = tmp_path / ".set.partial-999999999-89abcdef"  # a killed synth's half-built case set
    (left / "cases").mkdir(parents=True)
    result = CliRunner().invoke(app, ["cases", "synth", str(cases_dir), "--n-cases", "1", "--size", "small"])
    assert result.exit_code == 0, result.output
    assert not left.exists() and (cases_dir / "caselist.csv").is_file()
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


# ------------------------------------------------------------------------------------------------
# reading text inputs; spreadsheet formulas in exports
def test_text_inputs_are_decoded_or_refused_naming_the_file(tmp_path):
    from tsct_files import InputFileError, read_input_text

    body = "name,group\nDr Ådne,resident\n"
    for name, data in {"plain.csv": body.encode(), "bom.csv": b"\xef\xbb\xbf" + body.encode(), "utf16.csv": body.encode("utf-16")}.items():
        (tmp_path / name).write_bytes(data)
        assert read_input_text(tmp_path / name) == body, name
    refused = {
        "utf16-le.csv": (body.encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
        "latin1.csv": (body.encode("latin-1"), "not UTF-8 text (byte 0xc5 on line 2)"),
        "binary.csv": (bytes(range(256)), "NUL bytes"),
    }
    for name, (data, words) in refused.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputFileError, match=f"{name}.*{words.replace('(', '.').replace(')', '.')}"):
            read_input_text(tmp_path / name)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(InputFileError, match="pipe.csv: is not a regular file"):
        read_input_text(tmp_path / "pipe.csv")  # refused at once, never blocks waiting for a writer
    with pytest.raises(InputFileError, match="is a folder"):
        read_input_text(tmp_path)
    with pytest.raises(InputFileError, match="marks file not found"):
        read_input_text(tmp_path / "nope.csv", what="marks file")


def test_export_cells_that_spreadsheets_would_run_are_quoted():
    import pandas as pd

    from tsct_files import csv_safe_cell, csv_safe_frame

    for text in ("=cmd|' /C calc'!A0", "+SUM(A1)", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe_cell(text) == "'" + text
    for value in ("R01", "-3.5", "-inf", "+1e3", "", 4, -2.0, None):
        assert csv_safe_cell(value) == value  # numbers (also as text) stay readable by analysis tools
    frame = csv_safe_frame(pd.DataFrame({"reader": ["=x", "R02"], "rating": [-1.0, 2.0], "=col": ["a", "b"]}))
    assert list(frame["reader"]) == ["'=x", "R02"] and list(frame["rating"]) == [-1.0, 2.0] and list(frame.columns) == ["reader", "rating", "'=col"]


def test_report_and_excel_exports_quote_formula_ids(tmp_path):
    """A reader ID from an input file that a spreadsheet would run comes out quoted in the report's
    CSV tables and as text (not a formula) in a written JAFROC workbook."""
    import csv

    import numpy as np
    import openpyxl

    from analysis import ObserverData, write_jafroc_excel
    from analysis.report import write_report

    rng = np.random.default_rng(3)
    formula = '=HYPERLINK("http://x")'
    truth = [{"case_id": f"N{k}"} for k in range(4)] + [{"case_id": f"A{k}", "lesion_id": "1"} for k in range(4)]
    nl, ll = [], []
    for t in ("unaided", "aided"):
        for r in (formula, "R2"):
            nl += [{"treatment": t, "reader": r, "case_id": f"N{k}", "rating": float(rng.integers(1, 4))} for k in range(4)]
            ll += [{"treatment": t, "reader": r, "case_id": f"A{k}", "lesion_id": "1", "rating": float(rng.integers(2, 6))} for k in range(4)]
    data = ObserverData.from_marks(truth, nl, ll, treatments=["unaided", "aided"], readers=[formula, "R2"])
    book = write_jafroc_excel(data, tmp_path / "d.xlsx")
    cells = [
        c
        for ws in openpyxl.load_workbook(book).worksheets
        for row in ws.iter_rows()
        for c in row
        if isinstance(c.value, str) and "HYPERLINK" in c.value
    ]
    assert cells and all(c.data_type == "s" and c.value.startswith("'=") for c in cells)
    foms = write_report(data, tmp_path / "reports", pdf=False, subgroups=None).foms_csv
    values = [cell for row in csv.reader(foms.read_text().splitlines()) for cell in row if "HYPERLINK" in cell]
    assert values and all(v.startswith("'=") for v in values)
