"""The detector's DICOM objects (SEG, Parametric Map, TID 1500 SR, overlay): valid and faithful.

A small synthetic pair (the project's generator, written as DICOM) gives the current exam; the
case folder holds its bone ROI, a z-map with the two truth lesions planted (-7 lytic, +7 blastic)
on unit-ish noise, and the candidates found on it with the detector's matched-filter rule. Each
object is checked with ``dciodvfy`` (dicom3tools; skipped only when the binary is missing) and read
back with highdicom/pydicom to the values it was made from.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cases import read_exam, read_volume, synthesize_pair, write_pair, write_volume
from detector.candidates import CandidateSet, find_candidates, matched_filter_score

hd = pytest.importorskip("highdicom")

DCIODVFY = shutil.which("dciodvfy")


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for one file (warnings are not errors)."""
    proc = subprocess.run([DCIODVFY, str(path)], check=False, capture_output=True, text=True)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom-objects")
    pair = synthesize_pair(
        "dcm-t1",
        seed=11,
        size="small",
        abnormal=True,
        n_lesions=2,
        lesion_types=["lytic", "blastic"],
        lesion_locations=["vertebral_body", "vertebral_body"],
        lesion_radius_mm=(5.0, 7.0),
        vary_acquisition=False,
        benign_finding=False,
    )
    paths = write_pair(pair, root / "pair", dicom=True)
    case_dir = root / "case"
    case_dir.mkdir()
    bone = pair.bone_label
    roi = bone.array != 0
    rng = np.random.default_rng(5)
    z = np.where(roi, rng.normal(0.0, 0.7, roi.shape), 0.0).astype(np.float32)
    z[pair.lesion_labels.array == 1] = -7.0
    z[pair.lesion_labels.array == 2] = 7.0
    zmap = pair.current.like(z)
    write_volume(pair.current.like(roi.astype(np.uint8)), case_dir / "bone_roi.nii.gz")
    write_volume(zmap, case_dir / "zmap.nii.gz")
    found = find_candidates(
        matched_filter_score(zmap, roi, sigma_mm=1.5),
        roi=roi,
        threshold=4.0,
        low_threshold=3.0,
        min_volume_mm3=20.0,
        score_name="z, matched filter 1.5 mm",
        change_hu=pair.current.like((40.0 * z).astype(np.float32)),  # a stand-in HU change: 40 HU per unit of z
    )
    cands = CandidateSet(found.candidates, {**found.parameters, "matched_filter_mm": 1.5}, "dcm-t1")
    cands.write_json(case_dir / "candidates.json")
    out = root / "out"
    from detector.dicom_objects import export_case_dicom

    result = export_case_dicom(case_dir, paths["current_dicom"], out)
    current = read_exam(paths["current_dicom"])
    return {"paths": paths, "case_dir": case_dir, "out": out, "result": result, "cands": cands, "roi": roi, "z": z, "current": current}


def _current_headers(case) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(str(f), stop_before_pixels=True) for f in case["current"].files]


def test_candidates_found_for_both_lesions(case):
    pol = sorted(c.polarity for c in case["cands"])
    assert "lytic" in pol and "blastic" in pol
    assert set(case["result"].paths) == {"seg", "pm", "sr", "overlay"}
    assert case["result"].notes == []  # every region rebuilt from the saved z-map


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) not installed")
def test_every_object_passes_dciodvfy(case):
    out = case["out"]
    files = [out / "SEG.dcm", out / "PM.dcm", out / "SR.dcm", *sorted((out / "overlay").glob("*.dcm"))[:3]]
    for path in files:
        assert dciodvfy_errors(path) == [], path


def test_objects_join_the_current_study_and_frame_of_reference(case):
    src = _current_headers(case)[0]
    out = case["out"]
    for path in [out / "SEG.dcm", out / "PM.dcm", out / "SR.dcm", next((out / "overlay").glob("*.dcm"))]:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        assert ds.StudyInstanceUID == src.StudyInstanceUID, path
        assert ds.PatientID == src.PatientID and str(ds.PatientName) == str(src.PatientName), path
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID, path
        if "FrameOfReferenceUID" in ds:
            assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID, path
    seg = pydicom.dcmread(str(out / "SEG.dcm"), stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID


def test_segmentation_reads_back_to_the_roi_and_candidate_regions(case):
    from detector.dicom_objects import candidate_label_array

    seg = hd.seg.segread(str(case["out"] / "SEG.dcm"))
    cands = case["cands"]
    assert seg.number_of_segments == 1 + len(cands)
    labels = [d.SegmentLabel for d in seg.SegmentSequence]
    assert labels[0] == "Bone ROI"
    assert labels[1:] == [f"Candidate {c.candidate_id} ({c.polarity})" for c in cands]
    bone_desc = seg.get_segment_description(1)
    assert bone_desc.segmented_property_type.value == "272673000"  # SCT Bone
    lesion_desc = seg.get_segment_description(2)
    assert lesion_desc.segmented_property_category.value == "49755003" and lesion_desc.segmented_property_type.value == "52988006"
    uids = [str(ds.SOPInstanceUID) for ds in _current_headers(case)]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=list(range(1, 2 + len(cands))))
    assert pixels.shape == case["roi"].shape + (1 + len(cands),)
    np.testing.assert_array_equal(pixels[..., 0] != 0, case["roi"])
    zmap = read_volume(case["case_dir"] / "zmap.nii.gz")
    rebuilt, approx = candidate_label_array(zmap, case["roi"], cands)
    assert approx == set()
    for k, cand in enumerate(cands, start=1):
        region = pixels[..., k] != 0
        np.testing.assert_array_equal(region, rebuilt == cand.candidate_id)
        assert int(region.sum()) == cand.n_voxels  # the region the detector found, voxel for voxel


def test_parametric_map_reads_back_to_the_zmap(case):
    ds = pydicom.dcmread(str(case["out"] / "PM.dcm"))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    assert ds.BitsAllocated == 32 and "FloatPixelData" in ds
    frames = ds.pixel_array
    mapping = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == "113071"  # DCM Z-score
    assert float(mapping.RealWorldValueSlope) == 1.0 and float(mapping.RealWorldValueIntercept) == 0.0
    vol = case["current"].volume
    z = case["z"]
    assert frames.shape == z.shape
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pos = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        k = int(np.rint(vol.point_to_index(pos)[2]))
        np.testing.assert_array_equal(frames[i], z[k])


def test_report_lists_the_candidates_with_centre_volume_polarity_and_score(case):
    sr = hd.sr.srread(str(case["out"] / "SR.dcm"))
    groups = sr.content.get_volumetric_roi_measurement_groups()
    cands = list(case["cands"])
    assert len(groups) == len(cands)
    src = _current_headers(case)[0]
    for group, cand in zip(groups, cands):
        assert group.tracking_identifier == f"Candidate {cand.candidate_id}"
        roi = group.roi[0]  # the volume surface's SCOORD3D item
        assert roi.ValueType == "SCOORD3D" and roi.GraphicType == "POINT"
        assert roi.ReferencedFrameOfReferenceUID == src.FrameOfReferenceUID
        np.testing.assert_allclose(np.asarray(roi.GraphicData, dtype=float), cand.center_mm, atol=1e-3)
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values["Volume"] == pytest.approx(cand.volume_mm3)
        assert values["Peak absolute candidate score"] == pytest.approx(cand.peak_abs_score)
        assert values["Mean HU change since prior"] == pytest.approx(cand.mean_change_hu)
        (evaluation,) = group.get_qualitative_evaluations()
        assert evaluation.value.value == {"blastic": "BLASTIC", "lytic": "LYTIC"}[cand.polarity]
        assert group.finding_type.value == "52988006"
    (count,) = sr.content.get_image_measurement_groups()
    assert [m.value for m in count.get_measurements()] == [
        len(cands),
        len([c for c in cands if c.polarity == "blastic"]),
        len([c for c in cands if c.polarity == "lytic"]),
    ]


def test_overlay_series_is_one_rgb_instance_per_slice(case):
    files = sorted((case["out"] / "overlay").glob("*.dcm"))
    assert len(files) == case["roi"].shape[0]
    ds = pydicom.dcmread(str(files[0]))
    assert ds.PhotometricInterpretation == "RGB" and ds.pixel_array.shape[-1] == 3
    assert ds.PatientOrientation  # type 2C in the SC IOD: present with values


def test_no_candidates_still_gives_valid_objects(case, tmp_path):
    case_dir = tmp_path / "case"
    shutil.copytree(case["case_dir"], case_dir)
    CandidateSet((), dict(case["cands"].parameters), "empty").write_json(case_dir / "candidates.json")
    from detector.dicom_objects import export_case_dicom

    res = export_case_dicom(case_dir, case["paths"]["current_dicom"], tmp_path / "out", objects=("seg", "sr"))
    seg = hd.seg.segread(str(res.paths["seg"]))
    assert seg.number_of_segments == 1
    report = hd.sr.srread(str(res.paths["sr"])).content
    assert report.get_volumetric_roi_measurement_groups() == []
    (count,) = report.get_image_measurement_groups()
    assert [m.value for m in count.get_measurements()] == [0.0, 0.0, 0.0]
    if DCIODVFY:
        assert dciodvfy_errors(res.paths["seg"]) == [] and dciodvfy_errors(res.paths["sr"]) == []


def test_unrebuildable_region_is_drawn_as_a_sphere_in_the_roi(case):
    from detector.candidates import Candidate
    from detector.dicom_objects import candidate_label_array

    zmap = read_volume(case["case_dir"] / "zmap.nii.gz")
    c0 = case["cands"].candidates[0]
    flat = zmap.like(np.zeros(zmap.shape, dtype=np.float32))  # no region above threshold anywhere
    one = CandidateSet((Candidate(1, c0.polarity, c0.center_mm, c0.peak_mm, 500.0, 100, 5.0, -5.0),), {"threshold": 4.0, "low_threshold": 3.0})
    labels, approx = candidate_label_array(flat, case["roi"], one)
    assert approx == {1}
    n = int((labels == 1).sum())
    assert 0 < n <= int(500.0 / zmap.voxel_volume_mm3 * 1.5)
    assert np.all(case["roi"][labels == 1])


def test_cli_export_and_clean_errors(case, tmp_path):
    from typer.testing import CliRunner

    from detector.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        ["export-dicom", str(case["case_dir"]), "--current", str(case["paths"]["current_dicom"]), "--out", str(tmp_path / "o"), "--objects", "sr"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "SR.dcm").is_file() and not (tmp_path / "o" / "SEG.dcm").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["export-dicom", str(empty), "--current", str(case["paths"]["current_dicom"]), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2
    assert "bone_roi.nii.gz: not found" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["export-dicom", str(case["case_dir"]), "--current", str(case["case_dir"]), "--out", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_the_case_folders_candidate_label_map_is_used_as_is(case, tmp_path):
    """``candidate_labels.nii.gz`` (written by the z-score stage) gives the segments directly."""
    from detector.dicom_objects import export_case_dicom

    case_dir = tmp_path / "case"
    shutil.copytree(case["case_dir"], case_dir)
    zmap = read_volume(case_dir / "zmap.nii.gz")
    labels = np.zeros(zmap.shape, dtype=np.int32)
    roi_idx = np.argwhere(case["roi"])
    for cand in case["cands"]:  # a distinct, known region per candidate: 7 ROI voxels each
        for zyx in roi_idx[cand.candidate_id * 50 : cand.candidate_id * 50 + 7]:
            labels[tuple(zyx)] = cand.candidate_id
    write_volume(zmap.like(labels), case_dir / "candidate_labels.nii.gz")
    res = export_case_dicom(case_dir, case["paths"]["current_dicom"], tmp_path / "out", objects=("seg",))
    assert res.notes == []
    seg = hd.seg.segread(str(res.paths["seg"]))
    uids = [str(ds.SOPInstanceUID) for ds in _current_headers(case)]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=list(range(2, 2 + len(case["cands"]))))
    for k, cand in enumerate(case["cands"]):
        np.testing.assert_array_equal(pixels[..., k] != 0, labels == cand.candidate_id)


def test_rebuilt_regions_that_differ_from_the_detector_are_labelled_approximate(case, tmp_path):
    from detector.dicom_objects import export_case_dicom

    case_dir = tmp_path / "case"
    shutil.copytree(case["case_dir"], case_dir)
    first = case["cands"].candidates[0]
    changed = CandidateSet(
        (type(first)(**{**first.__dict__, "n_voxels": first.n_voxels + 1}), *case["cands"].candidates[1:]), case["cands"].parameters
    )
    changed.write_json(case_dir / "candidates.json")
    res = export_case_dicom(case_dir, case["paths"]["current_dicom"], tmp_path / "out", objects=("seg",))
    assert len(res.notes) == 1 and "[1]" in res.notes[0]
    seg = hd.seg.segread(str(res.paths["seg"]))
    assert seg.get_segment_description(2).segment_label == f"Candidate 1 ({first.polarity}) (approximate)"
    assert "(approximate)" not in seg.get_segment_description(3).segment_label


def test_batch_export_skips_unfinished_cases(case, tmp_path):
    from typer.testing import CliRunner

    from cases import Case, CaseList, write_case_list
    from detector.cli import app

    work = tmp_path / "work"
    shutil.copytree(case["case_dir"], work / "A")
    (work / "A" / "qc.json").write_text("{}", encoding="utf-8")  # finished
    pair = case["paths"]
    cl = CaseList(tuple(Case(case_id=cid, prior=pair["prior_dicom"], current=pair["current_dicom"], abnormal=False) for cid in ("A", "B")))
    cl_path = write_case_list(cl, tmp_path / "cases.csv")
    res = CliRunner().invoke(app, ["export-dicom-batch", str(cl_path), "--work", str(work), "--out", str(tmp_path / "pacs"), "--objects", "sr,pm"])
    assert res.exit_code == 0, res.output
    assert "skipped: B" in res.output
    assert sorted(p.name for p in (tmp_path / "pacs" / "A").iterdir()) == ["PM.dcm", "SR.dcm"]
    assert not (tmp_path / "pacs" / "B").exists()


def test_a_resampled_tilted_current_exam_gets_frames_on_its_grid(case, tmp_path):
    """The real GE head series (18.5° gantry tilt, uneven spacing, anonymised without PatientBirthDate/Sex) is
    resampled by read_exam onto 9 orthogonal slices between its 3 instances: the SEG and the Parametric Map
    then carry the grid's own plane positions and orientation (not the instances'), pass dciodvfy, and read
    back slice by slice; the study, frame of reference and referenced instances are still the series'. The SR and
    the 9-slice overlay pass dciodvfy too."""
    from detector.dicom_objects import export_case_dicom

    ge = Path(__file__).resolve().parents[1] / "data" / "dicom_geometry" / "ge_tilt"  # see its PROVENANCE.md
    vol = read_exam(ge).volume
    assert vol.shape[0] == 9
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    roi = np.zeros(vol.shape, bool)
    roi[2:7, 200:300, 180:330] = True
    z = np.zeros(vol.shape, np.float32)
    z[3:6, 240:250, 250:260] = -7.0  # one lytic region inside the ROI
    write_volume(vol.like(roi.astype(np.uint8)), case_dir / "bone_roi.nii.gz")
    write_volume(vol.like(z), case_dir / "zmap.nii.gz")
    found = find_candidates(
        matched_filter_score(vol.like(z), roi, sigma_mm=1.5),
        roi=roi,
        threshold=4.0,
        low_threshold=3.0,
        min_volume_mm3=20.0,
        score_name="z, matched filter 1.5 mm",
        change_hu=vol.like((40.0 * z).astype(np.float32)),
    )
    assert len(found.candidates) == 1
    CandidateSet(found.candidates, {**found.parameters, "matched_filter_mm": 1.5}, "ge").write_json(case_dir / "candidates.json")
    res = export_case_dicom(case_dir, ge, tmp_path / "out")
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(ge.glob("*.dcm"))]
    d = vol.direction_matrix
    for kind in ("seg", "pm"):
        ds = pydicom.dcmread(str(res.paths[kind]))
        assert int(ds.NumberOfFrames) == 9 * (2 if kind == "seg" else 1)  # SEG: one frame per slice and segment (ROI, candidate)
        assert ds.StudyInstanceUID == sources[0].StudyInstanceUID and ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
        shared = ds.SharedFunctionalGroupsSequence[0]
        np.testing.assert_allclose(
            [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient], np.concatenate([d[:, 0], d[:, 1]]), atol=1e-6
        )
        assert float(shared.PixelMeasuresSequence[0].SpacingBetweenSlices) == pytest.approx(vol.spacing_mm[2])
        referenced = {r.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
        assert referenced == {str(s.SOPInstanceUID) for s in sources}
        if DCIODVFY:
            assert dciodvfy_errors(res.paths[kind]) == [], kind
    pm = pydicom.dcmread(str(res.paths["pm"]))
    slices = []
    for i, item in enumerate(pm.PerFrameFunctionalGroupsSequence):  # each frame sits exactly on a slice of the grid
        index = vol.point_to_index([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = int(np.rint(index[2]))
        np.testing.assert_allclose(index, [0.0, 0.0, k], atol=1e-4)
        np.testing.assert_array_equal(pm.pixel_array[i], z[k])
        slices.append(k)
    assert sorted(slices) == list(range(9))
    seg = pydicom.dcmread(str(res.paths["seg"]))
    voxels = {1: 0, 2: 0}
    for frame, item in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence):
        voxels[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)] += int(frame.sum())
    assert voxels[1] == int(roi.sum()) and voxels[2] == found.candidates[0].n_voxels
    overlay = sorted(res.paths["overlay"].glob("*.dcm"))
    assert len(overlay) == 9
    if DCIODVFY:  # the SR, and the overlay's positions of the resampled grid written within DS's 16 characters
        assert dciodvfy_errors(res.paths["sr"]) == [] and all(dciodvfy_errors(p) == [] for p in overlay)
