"""The whole chain on small synthetic pairs: outputs, accuracy, QC verdicts, DICOM, batch mode."""

from __future__ import annotations

import json

import numpy as np
import pydicom

from cases import Case, CaseList, read_exam, read_volume, synthesize_pair, write_case_list, write_volume
from detector import measure_registration, run_case_list, run_pair
from detector.pipeline import OUTPUT_FILES
from detector.qc import QC_JSON_KEYS, QC_METRIC_KEYS, QCThresholds, assess_registration, header_checks


def test_outputs_written_on_the_current_grid(reg_run):
    out, current = reg_run["out"], reg_run["current"]
    for kind, name in OUTPUT_FILES.items():
        assert (out / name).is_file(), f"{name} missing"
    for name in ("warped_prior", "subtraction", "subtraction_vm", "bone_roi"):
        vol = read_volume(out / OUTPUT_FILES[name], label=(name == "bone_roi"))
        assert vol.same_space(current.volume), name
    sub = read_volume(out / OUTPUT_FILES["subtraction"])
    np.testing.assert_allclose(sub.array, np.rint(reg_run["result"].subtraction.plain.array), atol=0.5)
    import SimpleITK as sitk

    transform = sitk.ReadTransform(str(out / OUTPUT_FILES["transform"]))
    p = current.volume.index_to_point_mm((60, 60, 40))
    np.testing.assert_allclose(transform.TransformPoint(tuple(p)), reg_run["result"].registration.transform.TransformPoint(tuple(p)), atol=1e-6)


def test_qc_json_documents_every_key(reg_run):
    qc = json.loads((reg_run["out"] / OUTPUT_FILES["qc"]).read_text())
    assert set(qc) == set(QC_JSON_KEYS)
    assert set(qc["metrics"]) == set(QC_METRIC_KEYS)
    assert qc["status"] == "ok" and qc["messages"] == []
    assert qc["case_id"] == "reg-t1"
    assert qc["metrics"]["folding_fraction"] == 0.0
    assert qc["metrics"]["bone_ncc"] > 0.9
    assert qc["inputs"]["current"]["format"] == "dicom" and qc["inputs"]["current"]["PatientID"]
    assert "timings_s" in qc["registration"] and qc["registration"]["stages"][1]["name"] == "deformable"


def test_artifact_level_and_lesion_contrast(reg_run, reg_pair):
    result = reg_run["result"]
    m = measure_registration(
        result.registration,
        reg_pair.true_transform,
        reg_run["current"].volume,
        prior=reg_run["prior"].volume,
        subtraction=result.subtraction,
        bone=reg_pair.bone_label,
        lesion_labels=reg_pair.lesion_labels,
        lesion_types=[les.lesion_type.value for les in reg_pair.lesions],
    )
    # Clinical target: <= 40 HU on 0.75 mm voxels; small pairs have twice the voxel size.
    assert m.artifact_plain_hu < 60
    assert m.artifact_vm_hu < m.artifact_plain_hu / 2
    assert m.n_lesions == 2
    for lesion in m.lesions:
        assert 80 <= lesion["kept_plain_pct"] <= 120, lesion  # within 20 % of the true change
        assert np.sign(lesion["vm_change_hu"]) == np.sign(lesion["true_change_hu"])
    types = {les["lesion_type"]: les for les in m.lesions}
    assert types["lytic"]["true_change_hu"] < -50 and types["blastic"]["true_change_hu"] > 100
    # The ROI holds every lesion voxel, lytic ones included (bone of either exam).
    roi = result.bone_roi.array.astype(bool)
    assert roi[reg_pair.lesion_labels.array > 0].all()


def test_dicom_outputs_join_the_current_study(reg_run):
    current = reg_run["current"]
    series = {}
    for kind in ("warped_prior", "subtraction", "subtraction_vm"):
        folder = reg_run["out"] / "dicom" / kind
        exam = read_exam(folder, check_hu=(kind == "warped_prior"))
        assert exam.volume.same_space(current.volume)
        ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
        assert ds.StudyInstanceUID == current.header["StudyInstanceUID"]
        assert ds.FrameOfReferenceUID == current.header["FrameOfReferenceUID"]
        assert ds.PatientID == current.header["PatientID"]
        assert ds.SeriesInstanceUID != current.header["SeriesInstanceUID"]
        assert ds.ImageType[0] == "DERIVED"
        assert "TSCT" in ds.SeriesDescription
        series[kind] = ds.SeriesInstanceUID
    assert len(set(series.values())) == 3
    sub = read_exam(reg_run["out"] / "dicom" / "subtraction", check_hu=False).volume
    np.testing.assert_allclose(sub.array, np.rint(reg_run["result"].subtraction.plain.array), atol=0.5)


def test_identical_exams_give_near_zero_subtraction(reg_pair):
    result = run_pair(reg_pair.current, reg_pair.current)
    roi = result.bone_roi.array.astype(bool)
    assert np.abs(result.subtraction.plain.array[roi]).mean() < 3.0
    assert np.abs(result.subtraction.voxel_matched.array[roi]).mean() < 0.5
    assert result.qc.status == "ok"
    rp = result.registration.rigid_parameters()
    assert max(abs(a) for a in rp["rotation_deg"]) < 0.1 and max(abs(t) for t in rp["translation_mm"]) < 0.2


def test_unrelated_patient_is_flagged_by_qc(reg_pair):
    other = synthesize_pair("other", seed=12345, size="small", abnormal=False, vary_acquisition=False)
    result = run_pair(other.prior, reg_pair.current)
    assert result.qc.status == "failed"
    text = " ".join(result.qc.messages)
    assert "patient" in text, text


def test_header_mismatch_and_date_order_reach_the_verdict(reg_run):
    prior, current = reg_run["prior"], reg_run["current"]
    wrong = dict(prior.header, PatientID="SOMEONE-ELSE")
    problems, notes = header_checks(wrong, current.header, "prior/", "current/")
    assert problems and "different patients" in problems[0] and "PatientID" in problems[0]
    swapped_problems, swapped_notes = header_checks(current.header, prior.header)
    assert not swapped_problems and any("swapped" in n for n in swapped_notes)
    result = reg_run["result"]
    qc = assess_registration(current.volume, result.warped_prior, result.bone_roi, header_problems=problems, header_warnings=swapped_notes)
    assert qc.status == "failed" and problems[0] in qc.messages
    assert any("swapped" in m for m in qc.messages)


def test_exams_that_do_not_overlap_are_flagged(reg_run):
    """A prior covering another body region: little of the current bone has prior data."""
    result = reg_run["result"]
    outside = np.zeros(result.bone_roi.shape, bool)
    outside[: result.bone_roi.shape[0] * 3 // 4] = True
    qc = assess_registration(reg_run["current"].volume, result.warped_prior, result.bone_roi, outside_fov=outside)
    assert qc.status == "failed"
    assert any("same body region" in m for m in qc.messages)
    strict = assess_registration(
        reg_run["current"].volume, result.warped_prior, result.bone_roi, thresholds=QCThresholds(max_bone_mean_abs_diff_hu=1.0)
    )
    assert strict.status == "failed" and "registration failed" in strict.messages[0]


def test_batch_skips_finished_and_continues_past_failures(tmp_path, reg_pair):
    folder = tmp_path / "data"
    write_volume(reg_pair.prior, folder / "a_prior.nii.gz")
    write_volume(reg_pair.current, folder / "a_current.nii.gz")
    (folder / "b_current.nii.gz").write_bytes(b"not an image")
    cl = CaseList(
        (
            Case("A", folder / "a_prior.nii.gz", folder / "a_current.nii.gz", abnormal=False),
            Case("B", folder / "a_prior.nii.gz", folder / "b_current.nii.gz", abnormal=False),
        )
    )
    path = write_case_list(cl, folder / "cases.csv")
    out = tmp_path / "out"
    seen = []
    from detector import RegistrationConfig

    first = run_case_list(path, out, config=RegistrationConfig(deformable="none"), on_case=lambda cid, outcome: seen.append((cid, outcome)))
    assert first.completed == ("A",) and "B" in first.failed and first.skipped == ()
    assert "b_current.nii.gz" in first.failed["B"]
    assert seen == [("A", "completed"), ("B", "error")]
    assert (out / "A" / "qc.json").is_file() and (out / "B" / "error.txt").is_file()
    report = json.loads((out / "batch_report.json").read_text())
    assert report["completed"] == ["A"] and list(report["failed"]) == ["B"]
    assert "ERROR B" in first.summary()
    frame = first.to_frame()
    assert list(frame["outcome"]) == ["completed", "error"]

    second = run_case_list(path, out, config=RegistrationConfig(deformable="none"))
    assert second.skipped == ("A",) and second.completed == () and "B" in second.failed
    assert second.qc_status["A"] == first.qc_status["A"]


def test_int16_by_slabs_is_the_rounded_clipped_volume():
    """The outputs' int16 conversion (slab by slab, no full-size float temporaries) gives
    exactly np.clip(np.rint(a), -32768, 32767).astype(np.int16), past the slab size too."""
    from cases import Volume
    from detector.pipeline import _int16

    rng = np.random.default_rng(5)
    arr = (rng.normal(size=(70, 256, 256)) * 9000).astype(np.float32)  # 64 slices per slab
    arr[0, 0, :4] = [40000.0, -40000.0, 0.5, -2.5]
    got = _int16(Volume(arr, (1.0, 1.0, 1.0))).array
    assert got.dtype == np.int16 and np.array_equal(got, np.clip(np.rint(arr), -32768, 32767).astype(np.int16))
