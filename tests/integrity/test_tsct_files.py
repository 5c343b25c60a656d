"""tsct_files: output paths checked before work, atomic files, staged folders, problem lists."""

from __future__ import annotations

import os

import pytest

from tsct_files import (
    STAGING_PREFIX,
    OutputPathError,
    atomic_file,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    problems_file,
    remove_stale_staging,
    staged_dir,
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
    dead = tmp_path / f"{STAGING_PREFIX}999999999-report-x"  # a pid that does not run
    dead.mkdir()
    (dead / "report.pdf").write_bytes(b"%PDF-1.4 trunc")
    live = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-report-y"
    live.mkdir()
    assert remove_stale_staging(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


def test_problems_file_goes_beside_the_input_or_to_the_temporary_folder(tmp_path):
    source = tmp_path / "marks.csv"
    path = problems_file([f"row {i}: bad" for i in range(100)], near=source)
    assert path == tmp_path / "marks.csv.problems.txt" and len(path.read_text().splitlines()) == 100
    elsewhere = problems_file(["one"], near="/proc/x.csv")
    assert elsewhere.exists() and elsewhere.read_text() == "one\n"
    elsewhere.unlink()
