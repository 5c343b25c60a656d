"""Turning slices into images: window/level, the z-map overlay, and compact encoding.

Everything is NumPy on one slice at a time (a 512 × 512 slice is windowed in about a millisecond),
so the server renders exactly what the reader scrolls to.

* Grey images: :func:`window_to_uint8` maps ``level ± width / 2`` HU linearly onto 0..255 (values
  outside are clipped), the DICOM linear VOI function without its half-pixel offsets.
* The z-map overlay (:func:`zmap_overlay_rgba`, computed by the detector's one overlay rule,
  :func:`detector.overlay.overlay_pixels`): transparent where ``|z| < threshold``; green where
  ``z ≥ +threshold`` (the bone became denser than the prior predicts: blastic), orange where
  ``z ≤ −threshold`` (it lost density: lytic); opacity rises with ``|z|`` from ``min_alpha`` at the
  threshold to 1 at ``saturation``. It is an RGBA image laid over the grey CT, whose overall
  opacity the reader sets (default 0.85). With the defaults (threshold 4, saturation 10) the
  viewer looks like the detector's own overlay series (``detector/overlay.py``: the same colours,
  opacity 0.35 at the threshold rising to 0.85). Palette, threshold and saturation are settings
  (``TSCT_ZMAP_THRESHOLD``; the Hoshiai study used blue for increase and red for decrease:
  :data:`HOSHIAI_PALETTE`).
* The overlay as sent to the viewer (:func:`zmap_overlay_indexed`): the same rule quantised to a
  palette of 256 entries (0 transparent, 127 opacity steps per colour: finer than the RGBA's own
  8-bit alpha over the 0.41..1 range) and encoded as a paletted PNG (:func:`encode_paletted_png`),
  one byte per pixel: 4-5 times cheaper to encode than the RGBA image and as small on the wire.
* Grey layers travel either as raw values (:func:`raw_slice_bytes`, ``int16`` little-endian, the
  default: the browser windows them, so a window change needs no request and the server only
  copies the slice) or windowed here and encoded (:func:`encode_image`): PNG (lossless; zlib
  level 1, fast) or JPEG (smaller; for sites reached over slow links).
* :data:`WINDOW_LIMITS_HU` bounds the reader's window, in the viewer's inputs and on the server
  (:func:`check_window`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from .errors import ViewError

__all__ = [
    "WindowPreset",
    "WINDOW_PRESETS",
    "SUBTRACTION_WINDOW",
    "OverlayPalette",
    "DEFAULT_PALETTE",
    "DEFAULT_OPACITY",
    "HOSHIAI_PALETTE",
    "window_to_uint8",
    "zmap_overlay_rgba",
    "composite",
    "encode_image",
    "WINDOW_LIMITS_HU",
    "check_window",
    "OVERLAY_STEPS",
    "overlay_palette_rgba",
    "zmap_overlay_indexed",
    "encode_paletted_png",
    "raw_slice_bytes",
]


@dataclass(frozen=True)
class WindowPreset:
    """A named window: grey levels span ``level_hu ± width_hu / 2``; ``hotkey`` selects it in the viewer."""

    name: str
    label: str
    level_hu: float
    width_hu: float
    hotkey: str = ""

    def __post_init__(self) -> None:
        if not self.width_hu > 0:
            raise ViewError(f"Window {self.name!r}: the width must be positive, got {self.width_hu} HU.")


#: The viewer's presets (W/L in HU). Bone: W 1800 / L 400, the bone window of the detector's
#: overlay series (``detector/overlay.py``); soft tissue W 400 / L 40; lung W 1500 / L −600.
WINDOW_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("bone", "Bone", 400.0, 1800.0, "b"),
    WindowPreset("soft", "Soft tissue", 40.0, 400.0, "t"),
    WindowPreset("lung", "Lung", -600.0, 1500.0, "l"),
)

#: What the viewer's W/L inputs accept and the server renders (HU): one constant for both, so a
#: window the page refuses is refused by the image route too.
WINDOW_LIMITS_HU: dict[str, float] = {"widthMin": 1.0, "widthMax": 8000.0, "levelMin": -2000.0, "levelMax": 4000.0}


def check_window(level_hu: float, width_hu: float) -> tuple[float, float]:
    """``(level, width)`` rounded to 0.1 HU when inside :data:`WINDOW_LIMITS_HU`; :class:`ViewError` naming the bounds otherwise."""
    lim = WINDOW_LIMITS_HU
    level, width = float(level_hu), float(width_hu)
    if not (
        np.isfinite(level) and np.isfinite(width) and lim["widthMin"] <= width <= lim["widthMax"] and lim["levelMin"] <= level <= lim["levelMax"]
    ):
        raise ViewError(
            f"Window level {level_hu} / width {width_hu} HU is out of range "
            f"(width {lim['widthMin']:g} to {lim['widthMax']:g} HU, level {lim['levelMin']:g} to {lim['levelMax']:g} HU)."
        )
    return round(level, 1), round(width, 1)


#: Subtraction images hold HU differences around 0; a symmetric window shows gain and loss.
SUBTRACTION_WINDOW = WindowPreset("subtraction", "Subtraction", 0.0, 1000.0)


@dataclass(frozen=True)
class OverlayPalette:
    """RGB colours of the z-map overlay: ``increase`` for z ≥ +t (denser), ``decrease`` for z ≤ −t (less dense)."""

    name: str
    increase_rgb: tuple[int, int, int]
    decrease_rgb: tuple[int, int, int]


DEFAULT_PALETTE = OverlayPalette("green-orange", (0, 220, 60), (255, 140, 0))
HOSHIAI_PALETTE = OverlayPalette("blue-red", (40, 110, 255), (235, 30, 30))
PALETTES = {p.name: p for p in (DEFAULT_PALETTE, HOSHIAI_PALETTE)}


#: Overlay opacity at the threshold relative to the reader's opacity setting (default
#: :data:`DEFAULT_OPACITY`): 0.35 / 0.85, so the viewer's default look matches the detector's
#: overlay series (opacity 0.35 at the threshold rising to 0.85 at ``|z|`` = 10).
MIN_ALPHA = 0.35 / 0.85
DEFAULT_OPACITY = 0.85


def window_to_uint8(values: np.ndarray, level_hu: float, width_hu: float) -> np.ndarray:
    """Grey levels 0..255 of ``values`` (HU) in the window ``level_hu ± width_hu / 2`` (NaN → 0)."""
    if not width_hu > 0:
        raise ViewError(f"The window width must be positive, got {width_hu} HU.")
    lo = float(level_hu) - float(width_hu) / 2.0
    out = np.asarray(values, dtype=np.float32) - np.float32(lo)
    out *= np.float32(255.0 / float(width_hu))
    np.clip(out, 0.0, 255.0, out=out)
    out += np.float32(0.5)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(np.uint8)


def _overlay_pixels(z: np.ndarray, threshold: float, saturation: float, min_alpha: float, palette: OverlayPalette) -> tuple:
    """The coloured pixels, their opacity and colour by the detector's one overlay rule, with the settings checked first."""
    if not (threshold > 0 and saturation > threshold and 0.0 <= min_alpha <= 1.0):
        raise ViewError(f"Overlay settings need 0 < threshold < saturation and 0 ≤ min_alpha ≤ 1; got {threshold}, {saturation}, {min_alpha}.")
    from detector.overlay import overlay_pixels  # the one overlay rule, shared with the detector's overlay series

    return overlay_pixels(
        np.asarray(z, dtype=np.float32),
        threshold=threshold,
        z_max=saturation,
        opacity=(min_alpha, 1.0),
        palette=(palette.increase_rgb, palette.decrease_rgb),
    )


def zmap_overlay_rgba(
    z: np.ndarray,
    *,
    threshold: float = 4.0,
    saturation: float = 10.0,
    min_alpha: float = MIN_ALPHA,
    palette: OverlayPalette = DEFAULT_PALETTE,
) -> np.ndarray:
    """The overlay of a z-map slice as an RGBA ``uint8`` image of shape ``z.shape + (4,)``.

    Parameters
    ----------
    z : z-scores of one slice (NaN: no score, transparent).
    threshold : ``|z|`` below this is transparent.
    saturation : ``|z|`` at which the overlay is fully opaque (must exceed ``threshold``).
    min_alpha : opacity at the threshold (0..1).
    palette : colours for increase and decrease.
    """
    where, alpha, colour = _overlay_pixels(z, threshold, saturation, min_alpha, palette)
    rgba = np.zeros(np.shape(z) + (4,), dtype=np.uint8)
    if alpha.size:
        rgba[where] = np.column_stack([colour.astype(np.uint8), np.rint(alpha * 255.0).astype(np.uint8)])
    return rgba


#: Opacity steps per colour of the indexed overlay (entries 1..127: increase, 128..254: decrease).
OVERLAY_STEPS = 127


def overlay_palette_rgba(palette: OverlayPalette = DEFAULT_PALETTE, min_alpha: float = MIN_ALPHA) -> np.ndarray:
    """The 256 RGBA entries of :func:`zmap_overlay_indexed`'s palette: 0 (and 255) transparent, then each colour from ``min_alpha`` to opaque."""
    table = np.zeros((256, 4), dtype=np.uint8)
    alpha = np.rint(255.0 * (min_alpha + (1.0 - min_alpha) * np.arange(OVERLAY_STEPS) / (OVERLAY_STEPS - 1)))
    for first, rgb in ((1, palette.increase_rgb), (1 + OVERLAY_STEPS, palette.decrease_rgb)):
        table[first : first + OVERLAY_STEPS, :3] = rgb
        table[first : first + OVERLAY_STEPS, 3] = alpha
    return table


def zmap_overlay_indexed(
    z: np.ndarray,
    *,
    threshold: float = 4.0,
    saturation: float = 10.0,
    min_alpha: float = MIN_ALPHA,
    palette: OverlayPalette = DEFAULT_PALETTE,
) -> np.ndarray:
    """The overlay of :func:`zmap_overlay_rgba` as ``uint8`` indices into :func:`overlay_palette_rgba` (0: transparent).

    The same rule (:func:`detector.overlay.overlay_pixels`), its opacity quantised to
    :data:`OVERLAY_STEPS` steps between ``min_alpha`` and 1 (at most 0.6 % off, under one 8-bit
    level), so the server sends one byte per pixel and the browser colours it with the palette.
    """
    where, alpha, colour = _overlay_pixels(z, threshold, saturation, min_alpha, palette)
    index = np.zeros(np.shape(z), dtype=np.uint8)
    if alpha.size:
        span = 1.0 - min_alpha
        step = np.rint((alpha - min_alpha) / span * (OVERLAY_STEPS - 1)) if span > 0 else np.zeros_like(alpha)
        decrease = ~np.all(colour == np.asarray(palette.increase_rgb, np.float32), axis=1)
        index[where] = (1 + np.clip(step, 0, OVERLAY_STEPS - 1) + OVERLAY_STEPS * decrease).astype(np.uint8)
    return index


def encode_paletted_png(index: np.ndarray, palette_rgba: np.ndarray, *, png_level: int = 1) -> bytes:
    """A paletted PNG (8-bit indices, RGB palette and per-entry transparency) of ``index`` with the 256 RGBA entries ``palette_rgba``."""
    if index.dtype != np.uint8 or index.ndim != 2 or palette_rgba.shape != (256, 4):
        raise ViewError(f"A paletted image needs 2-d uint8 indices and 256 RGBA entries, got {index.dtype} {index.shape} and {palette_rgba.shape}.")
    image = Image.frombytes("P", (index.shape[1], index.shape[0]), np.ascontiguousarray(index).tobytes())
    image.putpalette(palette_rgba[:, :3].astype(np.uint8).tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=int(png_level), transparency=palette_rgba[:, 3].astype(np.uint8).tobytes())
    return buffer.getvalue()


def raw_slice_bytes(values: np.ndarray) -> bytes:
    """A grey slice as little-endian ``int16`` bytes, rows first (whole HU, clipped to the int16 range): what the browser windows itself."""
    array = np.asarray(values)
    if array.dtype != np.int16:
        array = np.clip(np.rint(np.nan_to_num(array.astype(np.float32), nan=0.0)), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(array, dtype="<i2").tobytes()


def composite(grey_u8: np.ndarray, overlay_rgba: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Lay an RGBA overlay with overall ``opacity`` over a grey image; returns RGB ``uint8`` (what the browser shows)."""
    if grey_u8.shape != overlay_rgba.shape[:2]:
        raise ViewError(f"The overlay ({overlay_rgba.shape[:2]}) and the image ({grey_u8.shape}) differ in size.")
    base = np.repeat(grey_u8[..., None].astype(np.float32), 3, axis=2)
    a = overlay_rgba[..., 3:4].astype(np.float32) / 255.0 * float(opacity)
    out = base * (1.0 - a) + overlay_rgba[..., :3].astype(np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_image(image: np.ndarray, fmt: Literal["png", "jpeg"] = "png", *, jpeg_quality: int = 90, png_level: int = 1) -> bytes:
    """Encode a grey ``(h, w)``, RGB ``(h, w, 3)`` or RGBA ``(h, w, 4)`` ``uint8`` image as PNG or JPEG bytes."""
    if image.dtype != np.uint8:
        raise ViewError(f"Only 8-bit images are encoded, got {image.dtype}.")
    array = np.ascontiguousarray(image)
    buffer = io.BytesIO()
    if fmt == "png":
        Image.fromarray(array).save(buffer, format="PNG", compress_level=int(png_level))
    elif fmt == "jpeg":
        if array.ndim == 3 and array.shape[2] == 4:
            raise ViewError("JPEG has no transparency; encode overlays as PNG.")
        extra = {"subsampling": 0} if array.ndim == 3 else {}
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(jpeg_quality), **extra)
    else:
        raise ViewError(f"Unknown image format {fmt!r}; use png or jpeg.")
    return buffer.getvalue()
