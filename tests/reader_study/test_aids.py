"""The overlay vocabulary (reader_study.aids) and the detector checks of the lock, through the case's outputs.json."""

from __future__ import annotations

import shutil

import pytest

from reader_study.aids import AIDS, aid_roles, unknown_overlays
from reader_study.harness import write_synthetic_case_list
from reader_study.integrity import check_detector_case, detector_model, detector_output_files, overlay_roles_needed

from .conftest import LESIONS, write_detector_outputs


def test_every_aid_shows_a_detector_output_role():
    from detector.outputs import ROLES

    assert set(AIDS) == {"subtraction", "subtraction_vm", "warped_prior", "zmap"}
    assert all(aid.output_role in ROLES and ROLES[aid.output_role][1] == "image" for aid in AIDS.values())
    assert aid_roles(("zmap", "heatmap", "subtraction", "zmap")) == ["zmap", "subtraction"] == overlay_roles_needed(("zmap", "subtraction"))
    assert unknown_overlays(("zmap", "heatmap")) == ("heatmap",)


def test_the_viewer_layers_are_built_from_the_study_aids():
    from reading_app.workstation.layers import AID_LAYERS, LAYERS

    assert AID_LAYERS == frozenset(AIDS)
    for name, aid in AIDS.items():
        assert LAYERS[name].output_role == aid.output_role and LAYERS[name].label == aid.label and LAYERS[name].aid


@pytest.fixture()
def det(tmp_path):
    case_list = write_synthetic_case_list(tmp_path / "cases", LESIONS[:2])
    return write_detector_outputs([case_list], tmp_path / "det")


def test_detector_files_are_the_manifest_and_what_it_lists(det):
    (det / "C001" / "stray.nii.gz").write_bytes(b"not an output")
    names = [name for name, _ in detector_output_files(det / "C001")]
    assert names == ["outputs.json", "qc.json", "subtraction.nii.gz", "zmap.nii.gz"]
    assert detector_model(det / "C001") == ("tsct z-score network", "9.9.9-test")
    assert check_detector_case("C001", det / "C001", ["subtraction", "zmap"]) == []


def test_a_case_without_a_finished_manifest_is_refused_naming_the_case_and_the_rerun(det):
    (det / "C001" / "outputs.json").unlink()
    [problem] = check_detector_case("C001", det / "C001", ["zmap"])
    assert problem.startswith("case C001: the detector did not finish this case") and "outputs.json" in problem and "Rerun tsct detect" in problem
    assert detector_model(det / "C001") == ("", "")
    from detector.outputs import CaseOutputsError

    with pytest.raises(CaseOutputsError, match="Rerun tsct detect"):
        detector_output_files(det / "C001")


def test_needed_roles_must_be_listed_complete_and_the_files_the_manifest_hashed(det):
    [unlisted] = check_detector_case("C001", det / "C001", ["warped_prior"])
    assert "case C001" in unlisted and "'warped_prior'" in unlisted and "tsct detect batch" in unlisted
    shutil.copy(det / "C002" / "zmap.nii.gz", det / "C001" / "zmap.nii.gz")  # complete, but another case's z-map
    [swapped] = check_detector_case("C001", det / "C001", ["zmap"])
    assert swapped.startswith("case C001: zmap.nii.gz:") and "SHA-256" in swapped
    z = det / "C002" / "zmap.nii.gz"
    z.write_bytes(z.read_bytes()[:40])
    [truncated] = check_detector_case("C002", det / "C002", ["subtraction", "zmap"])
    assert truncated.startswith("case C002: zmap.nii.gz:") and "truncated" in truncated
