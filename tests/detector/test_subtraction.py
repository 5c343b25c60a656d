"""Temporal subtraction: voxel matching against a slow obvious version, kernels, ROI, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cases import LabelVolume, Volume
from detector import DetectorInputError, temporal_subtraction
from detector.subtraction import adaptive_kernel_radius


def _slow_voxel_match(current: np.ndarray, prior: np.ndarray, radius_zyx: tuple[int, int, int]) -> np.ndarray:
    """Voxel matching voxel by voxel: the warped prior may stand anywhere in the range its
    neighbourhood spans (interpolated positions included), so the prior value is replaced by the
    point of ``[min, max]`` of the neighbourhood closest to the current value. Border voxels use
    the neighbours inside the array."""
    out = np.zeros_like(current)
    nz, ny, nx = current.shape
    rz, ry, rx = radius_zyx
    for z, y, x in itertools.product(range(nz), range(ny), range(nx)):
        hood = prior[max(0, z - rz) : z + rz + 1, max(0, y - ry) : y + ry + 1, max(0, x - rx) : x + rx + 1]
        c = current[z, y, x]
        closest = hood.min() if c < hood.min() else (hood.max() if c > hood.max() else c)
        out[z, y, x] = c - closest
    return out


def _volumes(shape=(6, 7, 8), seed=0):
    rng = np.random.default_rng(seed)
    prior = rng.normal(200, 60, shape).astype(np.float32)
    current = prior + rng.normal(0, 30, shape).astype(np.float32)
    current[2:4, 3:5, 3:6] -= 180  # a "lytic" change
    spacing = (0.75, 0.75, 1.0)
    return Volume(current, spacing), Volume(prior, spacing)


@pytest.mark.parametrize("radius_xyz", [(1, 1, 0), (1, 1, 1), (0, 0, 1), (2, 1, 0)])
def test_voxel_matching_equals_closest_value_in_kernel(radius_xyz):
    current, prior = _volumes()
    images = temporal_subtraction(current, prior, kernel=radius_xyz)
    expected = _slow_voxel_match(current.array, prior.array, radius_xyz[::-1])
    np.testing.assert_allclose(images.voxel_matched.array, expected, atol=1e-4)
    np.testing.assert_allclose(images.plain.array, current.array - prior.array, atol=1e-5)
    assert images.kernel_radius_vox == radius_xyz
    assert images.kernel_size_vox == tuple(2 * r + 1 for r in radius_xyz)


def test_voxel_matching_never_exceeds_plain_and_keeps_sign():
    current, prior = _volumes(seed=1)
    images = temporal_subtraction(current, prior, kernel=(1, 1, 1), symmetric=True)
    vm, plain = images.voxel_matched.array, images.plain.array
    assert np.all(np.abs(vm) <= np.abs(plain) + 1e-4)
    assert np.all((vm == 0) | (np.sign(vm) == np.sign(plain)))
    forward = temporal_subtraction(current, prior, kernel=(1, 1, 1)).voxel_matched.array
    assert np.all(np.abs(vm) <= np.abs(forward) + 1e-4)  # symmetric matching is the stricter one


def test_kernel_none_is_plain_and_roi_zeroes_outside():
    current, prior = _volumes(seed=2)
    roi = np.zeros(current.shape, np.uint8)
    roi[1:5, 2:6, 2:7] = 1
    images = temporal_subtraction(current, prior, kernel="none", bone_roi=current.like(roi, LabelVolume))
    inside = roi.astype(bool)
    np.testing.assert_allclose(images.voxel_matched.array[inside], (current.array - prior.array)[inside], atol=1e-5)
    assert np.all(images.plain.array[~inside] == 0) and np.all(images.voxel_matched.array[~inside] == 0)
    assert "mean |Δ|" in images.summary()


@pytest.mark.parametrize(
    "current_mm, prior_mm, expected",
    [
        ((0.75, 0.75, 1.0), (0.75, 0.75, 1.0), (1, 1, 0)),  # same thin spacing: in-plane 3x3x1
        ((0.75, 0.75, 1.0), (0.75, 0.75, 5.0), (1, 1, 2)),  # thick prior slices: search along z
        ((0.75, 0.75, 1.0), (0.75, 0.75, 2.0), (1, 1, 1)),
        ((0.75, 0.75, 5.0), (0.75, 0.75, 1.0), (1, 1, 0)),  # thick current slices: in-plane only
        ((0.6, 0.6, 3.0), (1.2, 1.2, 3.0), (1, 1, 0)),
    ],
)
def test_adaptive_kernel_follows_slice_thickness(current_mm, prior_mm, expected):
    assert adaptive_kernel_radius(current_mm, prior_mm) == expected


def test_subtraction_input_errors():
    current, prior = _volumes()
    other = Volume(prior.array[:, :, :-1], prior.spacing_mm)
    with pytest.raises(DetectorInputError, match="not on the current exam's grid"):
        temporal_subtraction(current, other)
    with pytest.raises(DetectorInputError, match="kernel must be"):
        temporal_subtraction(current, prior, kernel="large")
    with pytest.raises(DetectorInputError, match="three non-negative integers"):
        temporal_subtraction(current, prior, kernel=(1, -1, 0))
    with pytest.raises(DetectorInputError, match="bone ROI is not on the current exam's grid"):
        temporal_subtraction(current, prior, bone_roi=LabelVolume(np.ones((2, 2, 2), np.uint8), (1, 1, 1)))
    with pytest.raises(DetectorInputError, match="CT volume"):
        temporal_subtraction(current.like(current.array.astype(np.uint8), LabelVolume), prior)
