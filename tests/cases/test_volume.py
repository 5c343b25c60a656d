import numpy as np
import pytest
import SimpleITK as sitk

from cases import GeometryMismatchError, LabelVolume, Volume


def _oblique_volume() -> Volume:
    rng = np.random.default_rng(0)
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Volume(rng.normal(size=(4, 5, 6)).astype(np.float32), (0.7, 0.8, 2.5), (10.0, -20.0, 30.0), direction.ravel())


def test_index_point_mapping_matches_simpleitk():
    vol = _oblique_volume()
    image = vol.to_sitk()
    for idx in [(0, 0, 0), (5, 4, 3), (2.5, 1.25, 0.5)]:
        expected = image.TransformContinuousIndexToPhysicalPoint([float(i) for i in idx])
        np.testing.assert_allclose(vol.index_to_point_mm(idx), expected, atol=1e-9)
        np.testing.assert_allclose(vol.point_to_index(expected), idx, atol=1e-9)


def test_sitk_round_trip_keeps_geometry_and_values():
    vol = _oblique_volume()
    back = Volume.from_sitk(vol.to_sitk())
    assert back.same_space(vol)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.size == (6, 5, 4) and back.shape == (4, 5, 6)


def test_repr_shows_geometry():
    text = repr(_oblique_volume())
    assert "spacing(x,y,z): (0.70, 0.80, 2.50) mm" in text and "shape(z,y,x): (4, 5, 6)" in text


def test_orientation_codes():
    assert Volume(np.zeros((2, 2, 2)), (1, 1, 1)).orientation == "LPS"
    flipped = Volume(np.zeros((2, 2, 2)), (1, 1, 1), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert flipped.orientation == "RAS"


def test_two_d_array_is_refused_with_a_fix():
    with pytest.raises(ValueError, match=r"3-D.*array\[None\]"):
        Volume(np.zeros((4, 4)), (1, 1, 1))


def test_check_same_space_names_the_difference():
    a = Volume(np.zeros((3, 4, 5)), (1, 1, 1))
    b = Volume(np.zeros((3, 4, 5)), (1, 1, 2))
    with pytest.raises(GeometryMismatchError, match="spacing_mm.*resample_to"):
        a.check_same_space(b, names=("current", "prior"))


def test_resample_label_volume_stays_integer():
    lab = LabelVolume(np.zeros((4, 4, 4), dtype=np.uint8), (1, 1, 1))
    lab.array[1:3, 1:3, 1:3] = 3
    ref = Volume(np.zeros((8, 8, 8), dtype=np.float32), (0.5, 0.5, 0.5), (-0.25, -0.25, -0.25))
    out = lab.resample_to(ref)
    assert isinstance(out, LabelVolume)
    assert set(np.unique(out.array)) == {0, 3}
    assert out.array.sum() == 3 * 8 * 8  # 2x2x2 voxels of label 3 -> 4x4x4 at half spacing


def test_label_volume_refuses_float():
    with pytest.raises(ValueError, match="astype"):
        LabelVolume(np.zeros((2, 2, 2), dtype=np.float32), (1, 1, 1))


def test_contains_point():
    vol = Volume(np.zeros((3, 3, 3)), (1, 1, 1))
    assert vol.contains_point((1, 1, 1))
    assert not vol.contains_point((5, 1, 1))
    assert isinstance(vol.to_sitk(), sitk.Image)
