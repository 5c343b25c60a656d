"""Window/level, the z-map overlay colours and opacity, and image encoding."""

import io

import numpy as np
import pytest
from PIL import Image

from reading_app.workstation import (
    DEFAULT_PALETTE,
    HOSHIAI_PALETTE,
    WINDOW_PRESETS,
    ViewError,
    composite,
    encode_image,
    window_to_uint8,
    zmap_overlay_rgba,
)
from reading_app.workstation.render import (
    MIN_ALPHA,
    OVERLAY_STEPS,
    encode_paletted_png,
    overlay_palette_rgba,
    raw_slice_bytes,
    zmap_overlay_indexed,
)


def test_window_maps_level_plus_minus_half_width_to_black_and_white():
    hu = np.array([-2000.0, -160.0, 40.0, 240.0, 3000.0, np.nan])
    out = window_to_uint8(hu, level_hu=40.0, width_hu=400.0)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 255, 255, 0]
    # linear in between: 100 HU above the bottom of a 400 HU window is a quarter of the way
    assert window_to_uint8(np.array([-60.0]), 40.0, 400.0)[0] == round(255 * 100 / 400)
    with pytest.raises(ViewError):
        window_to_uint8(hu, 40.0, 0.0)


def test_presets_are_the_reading_windows():
    by_name = {p.name: (p.level_hu, p.width_hu, p.hotkey) for p in WINDOW_PRESETS}
    assert by_name == {"bone": (400.0, 1800.0, "b"), "soft": (40.0, 400.0, "t"), "lung": (-600.0, 1500.0, "l")}


def test_zmap_overlay_colours_polarity_and_alpha_ramp():
    z = np.array([[0.0, 3.99, 4.0, 6.0, 8.0, 12.0], [-3.99, -4.0, -6.0, -8.0, np.nan, -20.0]])
    rgba = zmap_overlay_rgba(z, threshold=4.0, saturation=8.0, min_alpha=0.35)  # explicit settings
    assert rgba.shape == (2, 6, 4) and rgba.dtype == np.uint8
    alpha = rgba[..., 3]
    # below the threshold (and NaN): fully transparent
    assert alpha[0, 0] == alpha[0, 1] == alpha[1, 0] == alpha[1, 4] == 0
    # at the threshold: min_alpha; half-way to saturation: (0.35 + 0.65 / 2); from saturation on: opaque
    assert alpha[0, 2] == alpha[1, 1] == round(0.35 * 255)
    assert alpha[0, 3] == alpha[1, 2] == round((0.35 + 0.65 * 0.5) * 255)
    assert alpha[0, 4] == alpha[0, 5] == alpha[1, 3] == alpha[1, 5] == 255
    # denser (z > 0) green, less dense (z < 0) orange
    assert tuple(rgba[0, 3, :3]) == DEFAULT_PALETTE.increase_rgb == (0, 220, 60)
    assert tuple(rgba[1, 2, :3]) == DEFAULT_PALETTE.decrease_rgb == (255, 140, 0)
    blue_red = zmap_overlay_rgba(z, palette=HOSHIAI_PALETTE)
    assert tuple(blue_red[0, 3, :3]) == HOSHIAI_PALETTE.increase_rgb
    with pytest.raises(ViewError):
        zmap_overlay_rgba(z, threshold=4.0, saturation=3.0)


def test_default_overlay_looks_like_the_detectors_overlay_series():
    """At the reader's default opacity the colours and opacities equal detector.overlay.render_overlay's defaults."""
    from detector import render_overlay
    from reading_app.workstation import DEFAULT_OPACITY, WINDOW_PRESETS

    rng = np.random.default_rng(2)
    ct = rng.normal(300, 400, (16, 16)).astype(np.float32)
    z = rng.normal(0, 5, (16, 16)).astype(np.float32)
    bone = next(p for p in WINDOW_PRESETS if p.name == "bone")
    ours = composite(window_to_uint8(ct, bone.level_hu, bone.width_hu), zmap_overlay_rgba(z), DEFAULT_OPACITY)
    theirs = render_overlay(ct, z, window=(bone.level_hu, bone.width_hu))
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2  # 8-bit rounding of grey and alpha


def test_composite_is_what_the_browser_shows():
    grey = np.full((1, 3), 100, dtype=np.uint8)
    overlay = np.zeros((1, 3, 4), dtype=np.uint8)
    overlay[0, 1] = (0, 220, 60, 255)
    overlay[0, 2] = (255, 140, 0, 128)
    out = composite(grey, overlay, opacity=1.0)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [0, 220, 60]
    a = 128 / 255
    assert out[0, 2].tolist() == [round(100 * (1 - a) + 255 * a), round(100 * (1 - a) + 140 * a), round(100 * (1 - a))]
    assert composite(grey, overlay, opacity=0.0)[0].tolist() == [[100, 100, 100]] * 3


def test_png_is_lossless_and_jpeg_is_small_and_close():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:256, 0:256]
    grey = np.clip(128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 2, xx.shape), 0, 255).astype(np.uint8)
    png = encode_image(grey, "png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), grey)
    jpeg = encode_image(grey, "jpeg", jpeg_quality=90)
    back = np.asarray(Image.open(io.BytesIO(jpeg))).astype(float)
    assert back.shape == grey.shape
    assert np.abs(back - grey).mean() < 2.0
    assert len(jpeg) < len(png)
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    assert Image.open(io.BytesIO(encode_image(rgba, "png"))).mode == "RGBA"
    with pytest.raises(ViewError, match="transparency"):
        encode_image(rgba, "jpeg")
    with pytest.raises(ViewError):
        encode_image(grey.astype(np.float32), "png")


def test_the_indexed_overlay_is_the_rgba_overlay_within_one_alpha_level():
    """What the viewer receives (palette indices, a paletted PNG) shows what zmap_overlay_rgba computes."""
    rng = np.random.default_rng(4)
    z = rng.normal(0, 6, (64, 64)).astype(np.float32)
    z[0, :3] = (np.nan, 4.0, -4.0)
    for palette, threshold, saturation in ((DEFAULT_PALETTE, 4.0, 10.0), (HOSHIAI_PALETTE, 3.0, 7.5)):
        rgba = zmap_overlay_rgba(z, threshold=threshold, saturation=saturation, palette=palette)
        index = zmap_overlay_indexed(z, threshold=threshold, saturation=saturation, palette=palette)
        table = overlay_palette_rgba(palette)
        assert index.dtype == np.uint8 and index.max() <= 2 * OVERLAY_STEPS
        shown = table[index]
        assert np.array_equal(shown[..., 3] > 0, rgba[..., 3] > 0)  # the same pixels coloured
        assert np.array_equal(shown[..., :3][rgba[..., 3] > 0], rgba[..., :3][rgba[..., 3] > 0])  # in the same colour
        assert np.abs(shown[..., 3].astype(int) - rgba[..., 3].astype(int)).max() <= 1
        png = Image.open(io.BytesIO(encode_paletted_png(index, table)))
        assert png.mode == "P" and np.array_equal(np.asarray(png.convert("RGBA")), np.where(shown[..., 3:] > 0, shown, 0))
    assert table[0, 3] == 0 and table[1, 3] == round(255 * MIN_ALPHA) and table[OVERLAY_STEPS, 3] == 255
    with pytest.raises(ViewError):
        zmap_overlay_indexed(z, threshold=4.0, saturation=3.0)


def test_raw_slices_are_whole_hu_little_endian_int16():
    values = np.array([[-1024.4, 0.6, 40.0], [3071.0, 40000.0, np.nan]], dtype=np.float32)
    back = np.frombuffer(raw_slice_bytes(values), dtype="<i2").reshape(values.shape)
    assert back.tolist() == [[-1024, 1, 40], [3071, 32767, 0]]
    ints = np.array([[1, -2]], dtype=np.int16)
    assert raw_slice_bytes(ints) == ints.astype("<i2").tobytes()
