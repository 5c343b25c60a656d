"""Bone masks: threshold pipeline against the synthetic truth, user label maps, dilation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cases import LabelVolume, Volume
from detector import DetectorInputError, bone_mask
from detector.bone import dilate_mask


def test_threshold_mask_matches_truth_bone(reg_pair):
    truth = reg_pair.bone_label.array != 0
    mask = bone_mask(reg_pair.current).array != 0
    sensitivity = (mask & truth).sum() / truth.sum()
    assert sensitivity > 0.85
    # What the mask adds outside the true bone lies next to it (closed gaps, partial volume).
    near_truth = ndi.binary_dilation(truth, iterations=2)
    assert (mask & ~near_truth).sum() / mask.sum() < 0.05
    # Every location class of the phantom is found (vertebrae, posterior elements, ribs).
    for value in np.unique(reg_pair.bone_label.array[reg_pair.bone_label.array > 0]):
        cls = reg_pair.bone_label.array == value
        if cls.sum() > 200:
            assert (mask & cls).sum() / cls.sum() > 0.7, f"bone class {value} poorly covered"


def test_marrow_enclosed_by_cortex_is_filled():
    # A hollow box of "cortex" (1000 HU) around "marrow" at 50 HU (below the threshold).
    arr = np.full((30, 40, 40), 40.0, np.float32)
    arr[:, :2, :] = -1000.0  # some air so a body is found
    arr[5:25, 10:30, 10:30] = 1000.0
    arr[7:23, 12:28, 12:28] = 50.0
    vol = Volume(arr, (0.75, 0.75, 1.0))
    mask = bone_mask(vol).array
    assert mask[15, 20, 20] == 1  # the marrow is inside the mask
    assert mask[2, 20, 20] == 0 and mask[15, 5, 5] == 0


def test_user_label_map_replaces_threshold(reg_pair):
    labels = reg_pair.bone_label  # e.g. a TotalSegmentator output: several classes
    values = [1, 2]  # vertebral bodies and pedicles only
    mask = bone_mask(reg_pair.current, labels=labels, label_values=values).array
    np.testing.assert_array_equal(mask.astype(bool), np.isin(labels.array, values))
    everything = bone_mask(reg_pair.current, labels=labels).array
    assert everything.sum() == (labels.array != 0).sum()
    with pytest.raises(DetectorInputError, match="no voxel with label values"):
        bone_mask(reg_pair.current, labels=labels, label_values=[99])
    with pytest.raises(DetectorInputError, match="LabelVolume"):
        bone_mask(reg_pair.current, labels=reg_pair.current)  # type: ignore[arg-type]


def test_label_map_on_another_grid_is_resampled(reg_pair):
    lab = reg_pair.bone_label
    coarse = LabelVolume(lab.array[::2, ::2, ::2].copy(), tuple(2 * s for s in lab.spacing_mm), lab.origin_mm, lab.direction)
    mask = bone_mask(reg_pair.current, labels=coarse).array
    assert mask.shape == reg_pair.current.shape
    truth = lab.array != 0
    assert (mask.astype(bool) & truth).sum() / truth.sum() > 0.8


def test_dilation_is_euclidean_in_mm():
    arr = np.zeros((21, 31, 31), np.uint8)
    arr[10, 15, 15] = 1
    mask = LabelVolume(arr, (0.5, 0.5, 1.0))
    out = dilate_mask(mask, 2.0).array.astype(bool)
    reference = ndi.distance_transform_edt(arr == 0, sampling=(1.0, 0.5, 0.5)) <= 2.0
    np.testing.assert_array_equal(out, reference)
    assert dilate_mask(mask, 0.0) is mask


def test_bone_mask_refuses_label_volume_and_empty_image():
    with pytest.raises(DetectorInputError, match="not a label volume"):
        bone_mask(LabelVolume(np.zeros((10, 10, 10), np.uint8), (1, 1, 1)))
    air = Volume(np.full((10, 10, 10), -1000.0, np.float32), (1, 1, 1))
    assert bone_mask(air).array.sum() == 0
    with pytest.raises(DetectorInputError, match="seed_threshold_hu"):
        bone_mask(air, threshold_hu=500, seed_threshold_hu=400)
