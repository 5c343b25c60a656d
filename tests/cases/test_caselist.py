"""Case lists: schema, every bad row reported with its number, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cases import Case, CaseList, CaseListError, Lesion, read_case_list, validate_case_list, write_case_list
from tsct_cli import app

HEADER = "case_id,prior,current,status,true_transform,lesion_id,lesion_type,location,center_x_mm,center_y_mm,center_z_mm,radius_mm,label_map,label_value,weight\n"


@pytest.fixture()
def exams(tmp_path: Path) -> Path:
    for name in ("p1.nii.gz", "c1.nii.gz", "p2.nii.gz", "c2.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_valid_list_reads_with_lesions_and_equal_weights(exams):
    path = exams / "list.csv"
    path.write_text(
        HEADER
        + "C1,p1.nii.gz,c1.nii.gz,normal,,,,,,,,,,,\n"
        + "C2,p2.nii.gz,c2.nii.gz,abnormal,,L1,lytic,vertebral_body,1,2,3,5,,,\n"
        + "C2,p2.nii.gz,c2.nii.gz,abnormal,,L2,blastic,lamina_arch,4,5,6,3.5,,,\n"
    )
    cl = read_case_list(path)
    assert cl.case_ids == ["C1", "C2"]
    assert not cl["C1"].abnormal and cl["C2"].abnormal
    assert cl["C2"].prior == exams / "p2.nii.gz"
    assert [l.location.value for l in cl["C2"].lesions] == ["vertebral_body", "lamina_arch"]
    assert cl["C2"].lesion_weights() == {"L1": 0.5, "L2": 0.5}
    assert "2 cases (1 normal, 1 abnormal), 2 lesions" in cl.summary()


def test_every_bad_row_is_reported_at_once(exams):
    path = exams / "bad.csv"
    path.write_text(
        HEADER
        + "C1,p1.nii.gz,missing.nii.gz,normal,,,,,,,,,,,\n"  # row 2: file missing
        + "C2,p2.nii.gz,c2.nii.gz,abnormal,,L1,lytic,skull,1,2,3,5,,,\n"  # row 3: bad location
        + "C2,p2.nii.gz,c2.nii.gz,abnormal,,L1,blastic,rib,1,2,x,5,,,\n"  # row 4: bad number
        + "C3,p1.nii.gz,c1.nii.gz,unknown,,,,,,,,,,,\n"  # row 5: bad status
        + "C4,p1.nii.gz,c1.nii.gz,normal,,L9,lytic,rib,1,2,3,4,,,\n"  # row 6: lesion on normal case
        + "C5,p1.nii.gz,c1.nii.gz,abnormal,,L1,lytic,rib,1,2,3,4,,,0.7\n"  # row 7: weights don't sum to 1
        + "C6,p1.nii.gz,c1.nii.gz,abnormal,,L1,lytic,rib,1,2,3,,,,\n"  # row 8: no extent
    )
    problems = validate_case_list(path)
    found = {(p.row, p.column) for p in problems}
    assert (2, "current") in found
    assert (3, "location") in found
    assert (4, "center_z_mm") in found
    assert (5, "status") in found
    assert (6, "lesion_id") in found
    assert (7, "weight") in found
    assert (8, "radius_mm") in found
    with pytest.raises(CaseListError, match=r"row 3, column 'location': 'skull' must be one of"):
        read_case_list(path)


def test_case_columns_must_agree_and_duplicate_lesions(exams):
    path = exams / "dup.csv"
    path.write_text(
        HEADER + "C2,p2.nii.gz,c2.nii.gz,abnormal,,L1,lytic,rib,1,2,3,5,,,\n" + "C2,p1.nii.gz,c2.nii.gz,abnormal,,L1,lytic,rib,1,2,3,5,,,\n"
    )
    msgs = [str(p) for p in validate_case_list(path)]
    assert any("row 3, column 'prior'" in m and "must agree" in m for m in msgs)
    assert any("row 3, column 'lesion_id'" in m and "appears twice" in m for m in msgs)


def test_missing_columns_and_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in str(validate_case_list(tmp_path / "empty.csv")[0])
    (tmp_path / "cols.csv").write_text("case_id,prior\nC1,a\n")
    assert "missing required column(s) current, status" in str(validate_case_list(tmp_path / "cols.csv")[0])
    assert "not found" in str(validate_case_list(tmp_path / "nowhere.csv")[0])


def test_write_read_round_trip(exams):
    cl = CaseList(
        (
            Case("N1", exams / "p1.nii.gz", exams / "c1.nii.gz", False),
            Case(
                "A1",
                exams / "p2.nii.gz",
                exams / "c2.nii.gz",
                True,
                (
                    Lesion("L1", (1.5, -2.25, 3.0), "lytic", "pedicle", radius_mm=4.0, weight=0.25),
                    Lesion("L2", (10, 20, 30), "mixed", "rib", radius_mm=6.0, weight=0.75),
                ),
            ),
        )
    )
    path = write_case_list(cl, exams / "out" / "list.csv")
    # exams outside the list's folder are written as absolute paths
    assert str(exams / "p1.nii.gz") in path.read_text()
    back = read_case_list(path)
    assert back.case_ids == ["N1", "A1"]
    assert back["A1"].lesions[0] == cl["A1"].lesions[0]
    assert back["A1"].lesion_weights() == {"L1": 0.25, "L2": 0.75}


def test_cli_validate_exit_codes(exams):
    good = exams / "good.csv"
    good.write_text(HEADER + "C1,p1.nii.gz,c1.nii.gz,normal,,,,,,,,,,,\n")
    bad = exams / "bad.csv"
    bad.write_text(HEADER + "C1,p1.nii.gz,c1.nii.gz,sick,,,,,,,,,,,\n")
    runner = CliRunner()
    # the exams here are 1-byte placeholders: only the CSV is checked (--no-check-images)
    ok = runner.invoke(app, ["cases", "validate", str(good), "--no-check-images"])
    assert ok.exit_code == 0 and "1 cases (1 normal" in " ".join(ok.output.split())
    deep = runner.invoke(app, ["cases", "validate", str(good)])
    assert deep.exit_code == 1 and "p1.nii.gz" in deep.output and "Traceback" not in deep.output
    res = runner.invoke(app, ["cases", "validate", str(bad)])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "status" in text and "'sick' must be 'normal' or 'abnormal'" in text
