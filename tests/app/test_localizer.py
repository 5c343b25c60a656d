"""The localizer picture (:func:`reading_app.workstation.localizer.projection`): laid out as the plane's reformat, so
the viewer's slice line (axial slice s = row s of the coronal picture) lands on the right anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from reading_app.workstation import ViewError, extract_slice, voxel_to_image
from reading_app.workstation.localizer import projection


def test_the_projection_is_laid_out_as_the_planes_reformat():
    size_xyz = (7, 5, 6)
    volume = np.full(size_xyz[::-1], -1000, dtype=np.int16)  # (z, y, x)
    x, y, z = 4, 1, 2
    volume[z, y, x] = 900
    cor = projection(volume, "coronal")
    sag = projection(volume, "sagittal")
    assert cor.shape == extract_slice(volume, "coronal", 0).shape and sag.shape == extract_slice(volume, "sagittal", 0).shape
    # the bright voxel: on the coronal picture at (column u, row v) of its coronal slice; that row is its axial slice
    s_cor, u, v = voxel_to_image("coronal", size_xyz, (x, y, z))
    assert cor[int(v), int(u)] == 900 and np.count_nonzero(cor == 900) == 1
    s_axial = voxel_to_image("axial", size_xyz, (x, y, z))[0]
    assert int(v) == int(s_axial)  # row r of the coronal picture is axial slice r (the viewer's slice line)
    _, u_sag, v_sag = voxel_to_image("sagittal", size_xyz, (x, y, z))
    assert sag[int(v_sag), int(u_sag)] == 900
    assert int(u) == x  # column c of the coronal picture is sagittal slice c


def test_nan_voxels_are_left_out_and_other_planes_refused():
    volume = np.full((3, 4, 5), np.nan, dtype=np.float32)
    volume[1, 2, 3] = 5.0
    cor = projection(volume, "coronal")
    assert cor[1, 3] == 5.0 and np.isnan(cor[0, 0])
    with pytest.raises(ViewError, match="coronal or sagittal"):
        projection(volume, "axial")
