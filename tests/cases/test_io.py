"""Reading and writing exams: DICOM (real headers from pydicom's CT_small.dcm), NIfTI, NRRD, MHA."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from pydicom.uid import generate_uid

from cases import (
    ExamReadError,
    Volume,
    check_same_patient,
    list_dicom_series,
    read_exam,
    read_volume,
    write_dicom_series,
    write_volume,
)

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def _series_from_ct_small(
    folder: Path, z_positions: list[float], *, names: list[str] | None = None, series_uid: str | None = None, patient_id: str | None = None
) -> Path:
    """A series made of copies of the real CT_small.dcm slice at the given z positions (mm)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    for i, z in enumerate(z_positions):
        ds = pydicom.dcmread(CT_SMALL)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = i + 1
        if patient_id:
            ds.PatientID = patient_id
        ds.save_as(folder / (names[i] if names else f"slice{i:03d}.dcm"))
    return folder


def test_real_ct_slice_single_file_is_refused_as_2d(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(CT_SMALL, folder / "CT_small.dcm")
    with pytest.raises(ExamReadError, match=r"CT_small\.dcm.*single slice, a 2-D image"):
        read_exam(folder)


def test_real_ct_headers_read_in_hu_sorted_by_position(tmp_path):
    # File names deliberately in reverse order of position: slices must be sorted by position.
    z = [-75.7, -70.7, -65.7, -60.7]
    folder = _series_from_ct_small(tmp_path / "series", z, names=["d.dcm", "c.dcm", "b.dcm", "a.dcm"])
    exam = read_exam(folder)
    vol = exam.volume
    assert vol.shape == (4, 128, 128)
    np.testing.assert_allclose(vol.spacing_mm, (0.661468, 0.661468, 5.0), rtol=1e-5)
    np.testing.assert_allclose(vol.origin_mm, (-158.135803, -179.035797, -75.7), atol=1e-4)
    ds = pydicom.dcmread(CT_SMALL)
    expected_hu = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(vol.array[0], expected_hu)
    assert vol.array.min() < -800 and vol.array.max() > 1000  # air and cortical bone, in HU
    assert exam.patient_id == ds.PatientID
    assert exam.header["Modality"] == "CT"
    assert [f.name for f in exam.files] == ["d.dcm", "c.dcm", "b.dcm", "a.dcm"]


def test_missing_slice_is_named(tmp_path):
    folder = _series_from_ct_small(tmp_path / "gap", [0.0, 5.0, 15.0, 20.0])
    with pytest.raises(ExamReadError, match=r"about 1 missing slice\(s\).*Export the complete series"):
        read_exam(folder)


def test_uneven_spacing_is_resampled_to_even_spacing_and_said(tmp_path):
    # steps 5, 6, 5, 5 mm: not a missing slice, so resampled to even spacing (as dcm2niix does)
    folder = _series_from_ct_small(tmp_path / "uneven", [0.0, 5.0, 11.0, 16.0, 21.0])
    exam = read_exam(folder)
    vol = exam.volume
    assert "variable slice spacing" in exam.header["geometry_notes"]
    assert vol.spacing_mm[2] == pytest.approx(21.0 / 5)  # at most the smallest step, both ends on the grid
    assert vol.shape[0] == 6
    # every slice is the same image, so every resampled slice must equal it
    ds = pydicom.dcmread(CT_SMALL)
    expected_hu = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(vol.array[-1], expected_hu, atol=1e-3)
    np.testing.assert_allclose(vol.index_to_point_mm((0, 0, vol.shape[0] - 1))[2], 21.0, atol=1e-6)


def test_several_series_need_a_choice(tmp_path):
    folder = tmp_path / "two"
    uid_a, uid_b = generate_uid(), generate_uid()
    _series_from_ct_small(folder, [0.0, 5.0, 10.0], names=["a1.dcm", "a2.dcm", "a3.dcm"], series_uid=uid_a)
    _series_from_ct_small(folder, [0.0, 2.5, 5.0], names=["b1.dcm", "b2.dcm", "b3.dcm"], series_uid=uid_b)
    assert {s.series_instance_uid for s in list_dicom_series(folder)} == {uid_a, uid_b}
    with pytest.raises(ExamReadError, match="holds 2 DICOM series; choose one by SeriesInstanceUID"):
        read_exam(folder)
    exam = read_exam(folder, series_uid=uid_b)
    assert exam.volume.spacing_mm[2] == pytest.approx(2.5)
    with pytest.raises(ExamReadError, match="no series with SeriesInstanceUID 1.2.3"):
        read_exam(folder, series_uid="1.2.3")


def test_non_dicom_folder_and_corrupt_file(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(ExamReadError, match=r"no DICOM series found.*notes\.txt"):
        read_exam(folder)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ExamReadError, match=r"truncated\.nii\.gz: the compressed \(gzip\) data are truncated"):
        read_exam(truncated)
    with pytest.raises(ExamReadError, match="not found"):
        read_exam(tmp_path / "nowhere.nii.gz")


def test_mr_series_cannot_be_hu(tmp_path):
    folder = _series_from_ct_small(tmp_path / "mr", [0.0, 5.0, 10.0])
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(f)
    with pytest.raises(ExamReadError, match="Modality is MR.*cannot be Hounsfield"):
        read_exam(folder)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_image_formats_round_trip_geometry(tmp_path, suffix):
    rng = np.random.default_rng(1)
    array = rng.integers(-1000, 1500, size=(6, 7, 8)).astype(np.float32)
    direction = (0, 1, 0, -1, 0, 0, 0, 0, 1)  # rotated patient: geometry must survive
    vol = Volume(array, (0.8, 0.9, 2.0), (-100.0, 50.5, 20.0), direction)
    path = write_volume(vol, tmp_path / f"exam{suffix}")
    exam = read_exam(path)
    assert exam.volume.same_space(vol)
    np.testing.assert_array_equal(exam.volume.array, array)
    assert exam.format == suffix.lstrip(".")


def test_2d_and_non_hu_images_are_refused(tmp_path):
    flat = Volume(np.zeros((1, 8, 8), np.float32), (1, 1, 1))
    path = write_volume(flat, tmp_path / "slice.nii.gz")
    with pytest.raises(ExamReadError, match="not a 3-D volume"):
        read_exam(path)
    normalised = Volume(np.random.default_rng(0).random((4, 8, 8)).astype(np.float32), (1, 1, 1))
    with pytest.raises(ExamReadError, match="not a CT in HU"):
        read_exam(write_volume(normalised, tmp_path / "norm.nii.gz"))
    raw = Volume(np.random.default_rng(0).integers(0, 3000, (4, 8, 8)).astype(np.float32), (1, 1, 1))
    with pytest.raises(ExamReadError, match="rescale intercept"):
        read_exam(write_volume(raw, tmp_path / "raw.nii.gz"))


def test_dicom_write_read_round_trip_keeps_geometry(tmp_path):
    rng = np.random.default_rng(2)
    array = rng.integers(-1000, 2000, size=(5, 12, 10)).astype(np.float32)
    angle = np.deg2rad(10)
    direction = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1)
    vol = Volume(array, (0.75, 0.8, 1.25), (-120.0, -80.0, 300.0), direction)
    files = write_dicom_series(vol, tmp_path / "dcm", series_description="test series", patient_id="P1", patient_name="Doe^J")
    assert len(files) == 5
    exam = read_exam(tmp_path / "dcm")
    assert exam.volume.same_space(vol)
    np.testing.assert_array_equal(exam.volume.array, array)
    assert exam.patient_id == "P1" and exam.header["SeriesDescription"] == "test series"
    # NIfTI -> DICOM -> NIfTI keeps geometry too
    nii = read_volume(write_volume(exam.volume, tmp_path / "back.nii.gz"))
    assert nii.same_space(vol)


def test_derived_series_copies_patient_study_and_frame_of_reference(tmp_path):
    folder = _series_from_ct_small(tmp_path / "cur", [0.0, 5.0, 10.0])
    current = read_exam(folder)
    derived = current.volume.with_array(current.volume.array * 0)
    files = write_dicom_series(
        derived,
        tmp_path / "ts",
        series_description="Temporal subtraction",
        template=current.header,
        image_type=("DERIVED", "SECONDARY", "SUBTRACTION"),
    )
    ds = pydicom.dcmread(files[0])
    for key in ("PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert str(ds.data_element(key).value) == str(current.header[key])
    assert ds.SeriesInstanceUID != current.header["SeriesInstanceUID"]
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "SUBTRACTION"]


def test_different_patients_are_refused(tmp_path):
    prior = read_exam(_series_from_ct_small(tmp_path / "p", [0.0, 5.0, 10.0], patient_id="A"))
    current = read_exam(_series_from_ct_small(tmp_path / "c", [0.0, 5.0, 10.0], patient_id="B"))
    with pytest.raises(ExamReadError, match="different patients: PatientID 'A' vs 'B'"):
        check_same_patient(prior, current)
    check_same_patient(prior, prior)


def test_rewriting_a_shorter_series_leaves_no_stale_slices(tmp_path):
    folder = tmp_path / "out"
    long = Volume(np.zeros((5, 8, 8), np.float32) - 1000, (1.0, 1.0, 2.0))
    long.array[:, 2:6, 2:6] = 500
    write_dicom_series(long, folder, series_description="first")
    short = Volume(long.array[:3].copy(), (1.0, 1.0, 2.0))
    paths = write_dicom_series(short, folder, series_description="second")
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in paths] == ["IM00001.dcm", "IM00002.dcm", "IM00003.dcm"]
    assert read_exam(folder).volume.shape == (3, 8, 8)


def test_write_nifti_gz_round_trips_and_decompresses_to_simpleitks_own_nii(tmp_path):
    """The fast .nii.gz writer (ISA-L gzip of SimpleITK's uncompressed .nii when isal is
    installed): the same image read back, the same bytes as SimpleITK's .nii once decompressed,
    the same file bytes for the same image (no name or time in the gzip header), no file left over."""
    import gzip

    import SimpleITK as sitk

    from cases import write_nifti_gz

    rng = np.random.default_rng(0)
    for dtype in (np.int16, np.float32, np.uint8, np.int32):
        arr = (rng.normal(size=(9, 11, 13)) * 100).astype(dtype)
        image = sitk.GetImageFromArray(arr)
        image.SetSpacing((0.7, 0.8, 1.5))
        image.SetOrigin((1.5, -2.0, 3.0))
        image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
        out = write_nifti_gz(image, tmp_path / "a" / "x.nii.gz")
        back = sitk.ReadImage(str(out))
        assert np.array_equal(sitk.GetArrayFromImage(back), arr)
        for got, want in (
            (back.GetSpacing(), image.GetSpacing()),
            (back.GetOrigin(), image.GetOrigin()),
            (back.GetDirection(), image.GetDirection()),
        ):
            assert np.allclose(got, want, atol=1e-6)  # NIfTI holds float32
        sitk.WriteImage(image, str(tmp_path / "plain.nii"), False)
        assert gzip.decompress(out.read_bytes()) == (tmp_path / "plain.nii").read_bytes()
        first = out.read_bytes()
        assert write_nifti_gz(image, out).read_bytes() == first
        assert sorted(p.name for p in out.parent.iterdir()) == ["x.nii.gz"]
    with pytest.raises(ValueError, match=r"\.nii\.gz"):
        write_nifti_gz(image, tmp_path / "x.nrrd")


def test_read_exam_pair_reads_both_exams_as_read_exam_does(tmp_path):
    from cases import read_exam_pair

    a = Volume((np.arange(4 * 5 * 6).reshape(4, 5, 6) * 10 - 1000).astype(np.float32), (0.8, 0.8, 2.0))
    b = a.with_array(a.array + 50)
    pa, pb = write_volume(a, tmp_path / "prior.nii.gz"), write_volume(b, tmp_path / "current.nii.gz")
    prior, current = read_exam_pair(pa, pb)
    assert prior.source == pa and current.source == pb
    assert np.array_equal(prior.volume.array, read_exam(pa).volume.array)
    assert np.array_equal(current.volume.array, read_exam(pb).volume.array)
    with pytest.raises(ExamReadError, match="missing.nii.gz"):
        read_exam_pair(tmp_path / "missing.nii.gz", pb)


def test_write_nifti_gz_without_isal_uses_simpleitks_writer(tmp_path, monkeypatch):
    import sys

    import SimpleITK as sitk

    from cases import write_nifti_gz

    monkeypatch.setitem(sys.modules, "isal", None)  # "import isal" now fails
    arr = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    out = write_nifti_gz(sitk.GetImageFromArray(arr), tmp_path / "y.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.nii.gz"]
