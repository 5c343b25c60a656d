"""cases.Grid: voxel <-> mm as SimpleITK maps it, grid comparison, header-only read_grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from cases import Grid, GridReadError, Volume, read_exam, read_grid, write_dicom_series, write_volume

C, S = math.cos(0.3), math.sin(0.3)
DIRECTIONS = [(1, 0, 0, 0, 1, 0, 0, 0, 1), (C, -S, 0, S, C, 0, 0, 0, 1), (1, 0, 0, 0, -1, 0, 0, 0, -1)]


def _volume(direction) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 100, (5, 9, 8)).astype(np.float32), (0.7, 0.8, 2.5), (10.0, -20.0, 30.0), direction)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_index_to_point_is_simpleitks_map_and_inverts(direction):
    volume = _volume(direction)
    image, grid = volume.to_sitk(), volume.grid
    index = np.array([[0, 0, 0], [1.5, 2.0, 3.25], [7, 8, 4]])
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(i.tolist()) for i in index])
    np.testing.assert_allclose(grid.index_to_point_mm(index), expected, atol=1e-9)
    np.testing.assert_allclose(grid.point_to_index(expected), index, atol=1e-9)
    np.testing.assert_allclose(volume.index_to_point_mm(index[1]), expected[1], atol=1e-9)
    assert grid.nearest_index(expected[2]) == (7, 8, 4)
    assert grid.nearest_index(grid.index_to_point_mm((-1, 0, 0))) is None
    assert Grid.of(image) == grid and Grid.from_dict(grid.to_dict()) == grid


def test_mismatch_names_what_differs():
    grid = _volume(DIRECTIONS[0]).grid
    assert grid.mismatch(grid) is None and grid.agrees(Grid(grid.size, grid.spacing_mm, tuple(o + 1e-5 for o in grid.origin_mm)))
    assert "size" in grid.mismatch(Grid((8, 9, 6), grid.spacing_mm, grid.origin_mm))
    assert "origin" in grid.mismatch(Grid(grid.size, grid.spacing_mm, (10.0, -20.0, 31.0)))
    assert "spacing" in grid.mismatch(Grid(grid.size, (0.7, 0.8, 2.0), grid.origin_mm))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_read_grid_from_headers_equals_the_read_exam(tmp_path, direction):
    volume = _volume(direction)
    write_volume(volume, tmp_path / "v.nii.gz")
    assert read_grid(tmp_path / "v.nii.gz").mismatch(volume) is None
    write_dicom_series(volume, tmp_path / "dicom", series_description="grid test")
    exam = read_exam(tmp_path / "dicom", check_hu=False).volume
    assert read_grid(tmp_path / "dicom").mismatch(exam) is None
    one_file = sorted((tmp_path / "dicom").iterdir())[0]
    assert read_grid(one_file).mismatch(exam) is None


def test_read_grid_errors_name_the_path(tmp_path):
    with pytest.raises(GridReadError, match="not found"):
        read_grid(tmp_path / "missing.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GridReadError, match="no DICOM series"):
        read_grid(tmp_path / "empty")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(GridReadError, match="bad.nii.gz"):
        read_grid(bad)
    flat = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image([4, 4], sitk.sitkInt16), str(flat))
    with pytest.raises(GridReadError, match="not a 3-D volume"):
        read_grid(flat)
