"""Overlay rendering (colours, transparency, opacity ramp) and the colour DICOM series."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from cases import Volume
from detector._errors import DetectorInputError
from detector.overlay import PALETTES, SECONDARY_CAPTURE_SOP_CLASS, OverlayStyle, render_overlay, write_overlay_dicom


def _slice():
    ct = np.full((4, 4), 400.0, np.float32)  # the window level: mid grey (127.5)
    z = np.array([[0.0, 2.0, 3.99, 4.0], [6.0, 10.0, 20.0, -4.0], [-6.0, -10.0, np.nan, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    return ct, z


def test_below_threshold_is_transparent_grey():
    ct, z = _slice()
    rgb = render_overlay(ct, z, window=(400, 1800), threshold=4.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 4, 3)
    grey = round(127.5)
    for r, c in ((0, 0), (0, 1), (0, 2), (2, 2)):  # 0, 2, 3.99 and NaN
        assert tuple(rgb[r, c]) == (grey, grey, grey)


def test_green_for_increase_orange_for_decrease():
    ct, z = _slice()
    rgb = render_overlay(ct, z, threshold=4.0).astype(int)
    for r, c in ((0, 3), (1, 0), (1, 1)):
        red, green, blue = rgb[r, c]
        assert green > red and green > blue
    for r, c in ((1, 3), (2, 0), (2, 1)):
        red, green, blue = rgb[r, c]
        assert red > green > blue


def test_opacity_rises_with_abs_z_and_saturates_at_z_max():
    ct, z = _slice()
    rgb = render_overlay(ct, z, threshold=4.0, opacity=(0.2, 0.8), z_max=10.0).astype(float)
    inc = np.asarray(PALETTES["green-orange"][0], float)
    grey = 127.5

    def alpha(px):  # solve px = grey (1 - a) + colour a on the green channel
        return (px[1] - grey) / (inc[1] - grey)

    a4, a6, a10, a20 = alpha(rgb[0, 3]), alpha(rgb[1, 0]), alpha(rgb[1, 1]), alpha(rgb[1, 2])
    assert a4 == pytest.approx(0.2, abs=0.01)
    assert a6 == pytest.approx(0.2 + 0.6 * (2 / 6), abs=0.01)
    assert a10 == pytest.approx(0.8, abs=0.01) and a20 == pytest.approx(0.8, abs=0.01)


def test_window_and_palette_are_configurable():
    ct = np.array([[-1000.0, 2000.0]], np.float32)
    z = np.array([[6.0, -6.0]], np.float32)
    rgb = render_overlay(ct, z, window=(500, 1000), threshold=5.0, palette="blue-red", opacity=1.0, z_max=6.0)
    assert tuple(rgb[0, 0]) == PALETTES["blue-red"][0]
    assert tuple(rgb[0, 1]) == PALETTES["blue-red"][1]
    custom = render_overlay(ct, z, threshold=5.0, palette=((1, 2, 3), (4, 5, 6)), opacity=1.0, z_max=6.0)
    assert tuple(custom[0, 0]) == (1, 2, 3)
    plain = render_overlay(ct, np.zeros_like(z), window=(500, 1000))
    assert tuple(plain[0, 0]) == (0, 0, 0) and tuple(plain[0, 1]) == (255, 255, 255)


def test_bad_style_raises():
    ct, z = _slice()
    with pytest.raises(DetectorInputError, match="palette"):
        render_overlay(ct, z, palette="rainbow")
    with pytest.raises(DetectorInputError, match="opacity"):
        render_overlay(ct, z, opacity=(0.9, 0.1))
    with pytest.raises(DetectorInputError, match="same shape"):
        render_overlay(ct, z[:2])
    with pytest.raises(DetectorInputError, match="threshold"):
        OverlayStyle(threshold=12.0, z_max=10.0)


def test_colour_dicom_series_is_readable_with_the_right_tags(tmp_path):
    rng = np.random.default_rng(0)
    ct = Volume(rng.normal(300, 300, (3, 8, 10)).astype(np.float32), (0.8, 0.7, 2.5), (-5.0, -6.0, 10.0))
    zarr = np.zeros(ct.shape, np.float32)
    zarr[1, 2, 3] = 7.0
    zarr[1, 4, 5] = -7.0
    z = ct.like(zarr)
    template = {
        "PatientID": "P1",
        "PatientName": "Test^Patient",
        "StudyInstanceUID": "1.2.3.4",
        "FrameOfReferenceUID": "1.2.3.5",
        "StudyDate": "20250101",
    }
    paths = write_overlay_dicom(ct, z, tmp_path / "sc", template=template, derivation_description="toy")
    assert [p.name for p in paths] == ["SC00001.dcm", "SC00002.dcm", "SC00003.dcm"]
    ds = pydicom.dcmread(paths[1])
    assert ds.SOPClassUID == SECONDARY_CAPTURE_SOP_CLASS
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3 and ds.BitsAllocated == 8
    assert ds.StudyInstanceUID == "1.2.3.4" and ds.FrameOfReferenceUID == "1.2.3.5" and ds.PatientID == "P1"
    assert "NOT FOR DIAGNOSTIC USE" in ds.ImageComments
    assert ds.InstanceNumber == 2
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-5.0, -6.0, 12.5])
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.7, 0.8])
    px = ds.pixel_array
    assert px.shape == (8, 10, 3)
    r, g, b = (int(v) for v in px[2, 3])
    assert g > r and g > b
    r, g, b = (int(v) for v in px[4, 5])
    assert r > g > b
    series = {pydicom.dcmread(p).SeriesInstanceUID for p in paths}
    assert len(series) == 1
