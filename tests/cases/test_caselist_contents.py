"""`tsct cases validate` reads what the case list points at: valid lists pass (with their
warnings), the override column works, the full problem list goes to a file when long."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cases import read_case_list
from tests.integrity.hostile_inputs import CSV_HEADER, ct_image, dicom_series, label_image, write_image
from tsct_cli import app


def _write(tmp: Path, rows: list[str], header: str = CSV_HEADER) -> Path:
    path = tmp / "list.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_valid_list_with_dicom_pair_and_label_map_passes_with_images_read(tmp_path):
    dicom_series(tmp_path / "prior", study_date="20240101")
    dicom_series(tmp_path / "current", study_date="20240701")
    write_image(label_image(value=2), tmp_path / "labels.nii.gz")
    path = _write(
        tmp_path,
        [
            "C1,prior,current,abnormal,,L1,lytic,vertebral_body,0,0,0,,labels.nii.gz,2,",
            "C2,prior,current,normal,,,,,,,,,,,",
        ],
    )
    cl = read_case_list(path, check_images=True)
    assert cl.case_ids == ["C1", "C2"] and not cl.warnings
    result = CliRunner().invoke(app, ["cases", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "exams and truth checked" in " ".join(result.output.split())


def test_lesion_in_soft_tissue_is_a_warning_not_a_refusal(tmp_path):
    write_image(ct_image(), tmp_path / "p.nii.gz")
    write_image(ct_image(), tmp_path / "c.nii.gz")
    # (-6, -6, -5) mm is inside the 40 HU body, more than 1+3 mm from the 700 HU bone block
    path = _write(tmp_path, ["C1,p.nii.gz,c.nii.gz,abnormal,,L1,blastic,other,-6,-6,-5,1,,,"])
    cl = read_case_list(path, check_images=True)
    assert len(cl.warnings) == 1 and "no bone" in cl.warnings[0].message and cl.warnings[0].row == 2
    result = CliRunner().invoke(app, ["cases", "validate", str(path)])
    assert result.exit_code == 0 and "1 warning(s)" in result.output


def test_same_patient_override_accepts_differing_ids_with_a_warning(tmp_path):
    dicom_series(tmp_path / "prior", patient_id="OLD-123")
    dicom_series(tmp_path / "current", patient_id="NEW-9", study_date="20240701")
    rows = ["C1,prior,current,normal,,,,,,,,,,,,{}"]
    refused = CliRunner().invoke(app, ["cases", "validate", str(_write(tmp_path, [rows[0].format("")], CSV_HEADER + ",same_patient"))])
    assert refused.exit_code == 1 and "different patients" in " ".join(refused.output.split())
    path = _write(tmp_path, [rows[0].format("yes")], CSV_HEADER + ",same_patient")
    cl = read_case_list(path, check_images=True)
    assert cl["C1"].same_patient_override and "same_patient is 'yes'" in cl.warnings[0].message


def test_many_problems_are_summarised_and_written_in_full(tmp_path):
    write_image(ct_image(), tmp_path / "c.nii.gz")
    rows = [f"C{i},missing{i}.nii.gz,c.nii.gz,normal,,,,,,,,,,," for i in range(45)]
    result = CliRunner().invoke(app, ["cases", "validate", str(_write(tmp_path, rows))])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "45 problem(s)" in text and "15 more not shown" in text
    full = (tmp_path / "list.problems.csv").read_text().splitlines()
    assert len(full) == 46 and "missing44.nii.gz" in full[-1]  # header + every problem


def test_centre_outside_the_exam_names_the_exam_extent(tmp_path):
    write_image(ct_image(), tmp_path / "p.nii.gz")
    write_image(ct_image(), tmp_path / "c.nii.gz")
    path = _write(tmp_path, ["C1,p.nii.gz,c.nii.gz,abnormal,,L1,lytic,other,14,0,0,2,,,"])
    result = CliRunner().invoke(app, ["cases", "validate", str(path)])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "row 2, column 'center_x_mm'" in text
    assert "lies outside the current exam (x -11 to 11, y -11 to 11, z -9 to 9 mm)" in text
