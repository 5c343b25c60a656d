"""DICOM geometry: gantry tilt and variable spacing resampled onto an orthogonal grid, checked
against every slice's ImagePositionPatient, on real GE/Siemens slices and on a synthetic tilted
series whose object position is known exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from scipy import ndimage
from typer.testing import CliRunner

from cases import ExamReadError, Volume, read_exam, read_volume, write_dicom_series

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom_geometry"


def _sample_at_slice_pixels(volume: Volume, path: Path, step: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The volume sampled (linearly) at a grid of a source slice's pixel centres, and the slice's own HU there."""
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ipp = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    sy, sx = (float(v) for v in ds.PixelSpacing)
    jj, ii = np.mgrid[64 : ds.Rows - 64 : step, 64 : ds.Columns - 64 : step]
    points = ipp + ii.ravel()[:, None] * sx * iop[:3] + jj.ravel()[:, None] * sy * iop[3:]
    index = np.array([volume.point_to_index(p) for p in points])  # x, y, z
    tol = 1e-6  # a point on the first/last plane may come out at -1e-14 from the inverse affine
    inside = np.all((index >= -tol) & (index <= np.asarray(volume.size) - 1 + tol), axis=1)
    index = np.clip(index, 0, np.asarray(volume.size) - 1)  # points on the end planes, not just beyond them
    sampled = ndimage.map_coordinates(volume.array, [index[inside, 2], index[inside, 1], index[inside, 0]], order=1)
    return sampled, hu[jj.ravel()[inside], ii.ravel()[inside]]


def test_real_ge_tilted_variable_spacing_series_is_resampled_and_matches_every_slice(tmp_path):
    folder = tmp_path / "ge"
    shutil.copytree(DATA / "ge_tilt", folder)
    exam = read_exam(folder)
    vol = exam.volume
    notes = exam.header["geometry_notes"]
    assert "gantry tilt of 18.5°" in notes and "variable slice spacing" in notes
    # orthogonal grid whose in-plane axes are the headers' (dcm2niix reports the same orientation)
    reference = json.loads((folder / "dcm2niix_reference.json").read_text())
    np.testing.assert_allclose(
        np.concatenate([vol.direction_matrix[:, 0], vol.direction_matrix[:, 1]]), reference["ImageOrientationPatientDICOM"], atol=1e-5
    )
    d = vol.direction_matrix
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)
    # even spacing no larger than the smallest step (1.08 mm), both end slices on the grid
    assert vol.spacing_mm[2] <= 1.0811 and vol.shape[0] == 9
    for name in ("14.dcm", "15.dcm", "16.dcm"):
        sampled, truth = _sample_at_slice_pixels(vol, folder / name)
        assert sampled.size > 200
        # the volume reproduces each slice where its header puts it (interpolation error only)
        assert np.median(np.abs(sampled - truth)) < 15.0, name
    # the first and last slices lie exactly on grid planes: identical up to in-plane interpolation
    first, truth = _sample_at_slice_pixels(vol, folder / "14.dcm")
    assert np.median(np.abs(first - truth)) < 1.0


def test_ignoring_the_tilt_would_misplace_the_slices(tmp_path):
    """The check above is sensitive: the same voxels on the sheared geometry a naive reader writes
    (origin at the first slice, direction from ImageOrientationPatient, no in-plane shift) do not
    reproduce the last slice."""
    folder = tmp_path / "ge"
    shutil.copytree(DATA / "ge_tilt", folder)
    vol = read_exam(folder).volume
    good, truth = _sample_at_slice_pixels(vol, folder / "16.dcm")
    files = [folder / n for n in ("14.dcm", "15.dcm", "16.dcm")]
    stack = np.stack([pydicom.dcmread(f).pixel_array * 1.0 + float(pydicom.dcmread(f).RescaleIntercept) for f in files]).astype(np.float32)
    ds0, ds2 = pydicom.dcmread(files[0]), pydicom.dcmread(files[2])
    span = float(np.linalg.norm(np.asarray(ds2.ImagePositionPatient, float) - np.asarray(ds0.ImagePositionPatient, float)))
    naive = Volume(stack, (0.4882812, 0.4882812, span / 2), tuple(float(v) for v in ds0.ImagePositionPatient), vol.direction)
    bad, truth_b = _sample_at_slice_pixels(naive, folder / "16.dcm")
    assert np.median(np.abs(bad - truth_b)) > 5 * max(np.median(np.abs(good - truth)), 1.0)


def _tilted_sphere_series(folder: Path, *, tilt_deg: float, centre: np.ndarray, radius: float = 7.0) -> None:
    """A tilted CT series sampling a sphere of 1000 HU in air (-1000 HU) at a known centre (LPS mm)."""
    folder.mkdir(parents=True)
    t = np.radians(tilt_deg)
    r = np.array([1.0, 0.0, 0.0])
    c = np.array([0.0, np.cos(t), -np.sin(t)])
    n_rows = n_cols = 48
    spacing = 1.0
    uid = generate_uid()
    template = write_dicom_series(Volume(np.zeros((2, n_rows, n_cols), np.float32), (1, 1, 1)), folder / "_t", series_description="t")[0]
    base = pydicom.dcmread(template)
    shutil.rmtree(folder / "_t")
    for k in range(30):
        ipp = np.array([-24.0, -20.0, -25.0 + 1.6 * k])  # table moves along z, planes tilted
        jj, ii = np.mgrid[0:n_rows, 0:n_cols]
        pts = ipp + ii[..., None] * spacing * r + jj[..., None] * spacing * c
        dist = np.linalg.norm(pts - centre, axis=-1)
        hu = np.clip((radius - dist) / 1.0, -0.5, 0.5) * 2000.0  # 1-mm soft edge, -1000..1000 HU
        ds = base.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([r, c])]
        ds.PixelSpacing = [spacing, spacing]
        ds.Rows, ds.Columns = n_rows, n_cols
        ds.PixelData = np.rint(hu).astype(np.int16).tobytes()
        ds.save_as(folder / f"slice_{29 - k:02d}.dcm")  # names in reverse order of position


@pytest.mark.parametrize("tilt_deg", [0.0, 12.0, 25.0])
def test_synthetic_tilted_series_puts_the_object_where_it_is(tmp_path, tilt_deg):
    centre = np.array([1.5, -2.0, 0.5])
    folder = tmp_path / "tilted"
    _tilted_sphere_series(folder, tilt_deg=tilt_deg, centre=centre)
    exam = read_exam(folder)
    vol = exam.volume
    if tilt_deg:
        assert f"gantry tilt of {tilt_deg:.1f}°" in exam.header["geometry_notes"]
    else:
        assert "geometry_notes" not in exam.header
    weights = np.clip(vol.array + 1000.0, 0, None)  # 0 in air, 2000 in the sphere
    zyx = np.argwhere(weights > 0)
    w = weights[weights > 0]
    phys = np.asarray(vol.origin_mm) + (zyx[:, ::-1] * np.asarray(vol.spacing_mm)) @ vol.direction_matrix.T
    found = (phys * w[:, None]).sum(axis=0) / w.sum()
    assert np.linalg.norm(found - centre) < 0.3, (found, centre)


def test_written_volume_keeps_the_corrected_geometry(tmp_path):
    """`tsct cases import` of a tilted series writes the resampled volume with its geometry and says so."""
    from tsct_cli import app

    folder = tmp_path / "tilted"
    centre = np.array([0.0, 1.0, -1.0])
    _tilted_sphere_series(folder, tilt_deg=15.0, centre=centre)
    out = tmp_path / "out" / "exam.nii.gz"
    result = CliRunner().invoke(app, ["cases", "import", str(folder), str(out)])
    assert result.exit_code == 0, result.output
    assert "gantry tilt of 15.0°" in " ".join(result.output.split())
    written = read_volume(out)
    original = read_exam(folder).volume
    assert written.same_space(original)
    np.testing.assert_allclose(written.array, np.rint(original.array), atol=0.5)
    assert [p.name for p in out.parent.iterdir()] == ["exam.nii.gz"]  # no temporary files


def test_real_siemens_jpeg2000_slices_decode_and_match_pydicom_geometry(tmp_path):
    folder = tmp_path / "siemens"
    shutil.copytree(DATA / "siemens_j2k", folder)
    exam = read_exam(folder)
    vol = exam.volume
    assert vol.shape == (3, 512, 512)
    np.testing.assert_allclose(vol.spacing_mm, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    assert "geometry_notes" not in exam.header
    assert -1100 < float(vol.array.min()) <= -1000 and float(vol.array.max()) > 300  # HU: air and bone
    ipps = sorted((np.asarray(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, float) for f in folder.iterdir()), key=lambda p: p[2])
    for k, ipp in enumerate(ipps):
        np.testing.assert_allclose(vol.index_to_point_mm((0, 0, k)), ipp, atol=1e-4)


def test_irregular_in_plane_positions_are_refused_naming_the_slice(tmp_path):
    folder = tmp_path / "tilted"
    _tilted_sphere_series(folder, tilt_deg=10.0, centre=np.zeros(3))
    victim = folder / "slice_10.dcm"
    ds = pydicom.dcmread(victim)
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0] + 4.0, ipp[1], ipp[2]]
    ds.save_as(victim)
    with pytest.raises(ExamReadError, match=r"slice_10\.dcm: its ImagePositionPatient lies \d\.\d\d mm off the line"):
        read_exam(folder)
