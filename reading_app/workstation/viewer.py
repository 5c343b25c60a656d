"""What the browser viewer is given, and what its clicks mean (pure Python; the app and tests call it).

The viewer (a Streamlit component, ``reading_app/pages/viewer_component.py``) scrolls, windows and zooms
in the browser and fetches slice images by URL with an image ticket. It is given, by
:func:`viewer_payload`:

* the geometry of each plane of the current (and prior) exam — image and pixel sizes, and the
  patient coordinate of every slice, so the prior can follow the current exam by position;
* the layers this reading allows (never more; see :mod:`reading_app.workstation.layers`) and their labels;
* the reader's marks (and, in training review only, the truth) as ``(slice, u, v)`` per plane,
  so the browser draws them without doing any geometry itself;
* window presets, settings and keyboard shortcuts.

A click comes back as a screen position with the view it was made in (plane, slice, viewport
size, zoom, centre); :func:`click_to_point` turns it into a voxel and LPS millimetres with
:class:`~reading_app.workstation.geometry.ViewTransform`, the same formula the browser used to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ViewError
from .geometry import PLANES, DisplayGrid, ViewTransform, image_to_voxel
from .layers import LAYERS
from .render import WINDOW_LIMITS_HU, WINDOW_PRESETS

__all__ = [
    "ClickedPoint",
    "click_to_point",
    "mark_positions",
    "plane_description",
    "viewer_payload",
    "KEYBOARD_SHORTCUTS",
    "MOUSE_HELP",
    "WINDOW_LIMITS_HU",
]

#: Shown in the app's help and handled by the viewer's script.
KEYBOARD_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("mouse wheel, ↑ / ↓", "next / previous slice (wheel over the prior: shift the prior alone)"),
    ("Page Up / Page Down", "10 slices back / forward"),
    ("Home / End", "first / last slice"),
    ("left-drag", "the tool's drag: window/level with the W/L tool (default), pan with the others"),
    ("right-drag, or Ctrl + left-drag", "window/level: left/right = width, up/down = level"),
    ("middle-drag, or Shift + left-drag", "pan"),
    ("W, H, D, M", "tools: W/L, pan (hand), ruler (distance), mark"),
    ("double click", "place a mark (any tool but the ruler); with the Mark tool, a click"),
    ("Ruler: click, click", "distance in mm on the slice (not saved); Esc clears it"),
    ("1 … 5", "rate the new mark (1-5 scale)"),
    ("Esc", "discard the new, unsaved mark (else clear the ruler, else leave Fill)"),
    ("B, T, L", "bone, soft-tissue, lung window"),
    ("Space", "cine: play / pause the slices at the fps set beside it"),
    ("A, C, S", "axial, coronal, sagittal"),
    ("+ / −, Ctrl + wheel", "zoom in / out"),
    ("R", "reset zoom, pan and window"),
    ("O", "z-map overlay on / off (aided reading)"),
    ("P", "prior exam beside the current one on / off"),
    ("F", "the viewer fills the browser window / back"),
    ("click or drag on the localizer", "go to the slice under the pointer (its yellow line marks the slice shown)"),
    (
        "cursor over an image",
        "its true HU (from the exam, not the grey level), slice, voxel and mm; the crosshair marks the same anatomy on the prior",
    ),
)

#: The one-line mouse help under the viewer.
MOUSE_HELP = (
    "Wheel: slices · left-drag: the tool (W/L by default) · right-drag or Ctrl+drag: window/level · "
    "middle- or Shift+drag: pan · double click (or click with Mark): mark · Space: cine · F: fill the window"
)


@dataclass(frozen=True)
class ClickedPoint:
    """Where a click landed: image point ``(u, v)`` on a slice, the continuous display-grid voxel index, and LPS mm."""

    plane: str
    slice_index: int
    u: float
    v: float
    index_xyz: tuple[float, float, float]
    point_mm: tuple[float, float, float]
    inside: bool


def click_to_point(
    grid: DisplayGrid,
    *,
    plane: str,
    slice_index: int,
    screen_x: float,
    screen_y: float,
    viewport_w_px: float,
    viewport_h_px: float,
    zoom: float = 1.0,
    center_u: float | None = None,
    center_v: float | None = None,
) -> ClickedPoint:
    """Convert a click on the viewer (screen px from the viewport's top-left) to a voxel and LPS mm.

    ``inside`` is False when the click fell beside the image (the app ignores it).

    Raises :class:`ViewError` for an unknown plane or a slice outside the volume.
    """
    if plane not in PLANES:
        raise ViewError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.")
    geometry = grid.plane(plane)
    s = int(slice_index)
    if not 0 <= s < geometry.n_slices:
        raise ViewError(f"Slice {slice_index} is outside the {plane} images (0 to {geometry.n_slices - 1}).")
    view = ViewTransform.for_plane(geometry, viewport_w_px, viewport_h_px, zoom=zoom, center_u=center_u, center_v=center_v)
    u, v = view.screen_to_image(float(screen_x), float(screen_y))
    index = image_to_voxel(plane, grid.size_xyz, s, u, v)
    point = grid.index_to_point_mm(index)
    return ClickedPoint(plane, s, float(u), float(v), tuple(float(c) for c in index), tuple(float(c) for c in point), view.contains(u, v))  # type: ignore[arg-type]


def mark_positions(grid: DisplayGrid, point_mm: Sequence[float]) -> dict[str, list[float]]:
    """``{plane: [slice, u, v]}`` of an LPS point, rounded to 1/1000 pixel (slice continuous)."""
    out = {}
    for plane in PLANES:
        s, u, v = grid.mm_to_image(plane, point_mm)
        out[plane] = [round(float(s), 3), round(float(u), 3), round(float(v), 3)]
    return out


def plane_description(grid: DisplayGrid) -> dict[str, dict[str, Any]]:
    """Per plane: slices ``n``, image columns ``nu`` and rows ``nv``, pixel size ``du``/``dv`` and slice spacing ``ds`` (mm), slice positions ``pos`` (mm)."""
    out = {}
    for plane in PLANES:
        g = grid.plane(plane)
        out[plane] = {
            "n": g.n_slices,
            "nu": g.n_u,
            "nv": g.n_v,
            "du": g.du_mm,
            "dv": g.dv_mm,
            "ds": g.slice_spacing_mm,
            "pos": [round(float(p), 3) for p in grid.slice_positions_mm(plane)],
        }
    return out


def viewer_payload(
    *,
    instance: str,
    api_base: str,
    ticket: str,
    current: DisplayGrid,
    prior: DisplayGrid | None,
    layers: Iterable[str],
    missing_layers: Iterable[str] = (),
    marks: Sequence[Mapping[str, Any]] = (),
    pending: Mapping[str, Any] | None = None,
    truth: Sequence[Mapping[str, Any]] = (),
    image_format: str = "raw",
    mark_radius_mm: float = 5.0,
    can_mark: bool = True,
    rating_keys: Sequence[str] = (),
    view: Mapping[str, Any] | None = None,
    jump: Mapping[str, Any] | None = None,
    handled_key: str | None = None,
    heartbeat_s: float = 10.0,
    prior_sync: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """The JSON the viewer component is mounted with (see the module docstring).

    Parameters
    ----------
    instance : changes when another case read is shown (the viewer then resets its view).
    api_base, ticket : where images are fetched and the ticket that allows them.
    current, prior : display grids of the current and prior exams (``prior`` None: no prior).
    layers : the layers the ticket allows; ``missing_layers`` those of them without a file.
    marks : ``{"id", "n", "rating", "point_mm"}`` per saved mark (own marks only).
    pending : ``{"key", "point_mm"}`` of a placed, not yet saved mark.
    truth : training review only: ``{"label", "point_mm", "radius_mm"}`` per lesion.
    rating_keys : keys that rate the pending mark (e.g. "1".."5"; empty for a 0-100 scale).
    view : the view to start from when the viewer is first mounted (restored after a reload).
    jump : ``{"mark": id, "nonce": n}`` asks the viewer to go to a mark.
    handled_key : the client key of the last click the server has handled (the viewer then stops
        showing its own "saving…" marker for it).
    prior_sync : ``{plane: [prior slice per current slice]}`` from the detector's registration
        (:func:`reading_app.workstation.geometry.synced_prior_slices`); without it the prior follows table position.
    """
    allowed = [name for name in LAYERS if name in set(layers)]
    missing = set(missing_layers)
    if prior is None and "prior" in allowed:
        allowed.remove("prior")
    layer_info = {
        name: {
            "label": LAYERS[name].label,
            "role": LAYERS[name].role,
            "fixed": LAYERS[name].fixed_window is not None,
            # the browser windows raw slices itself, with this window for a fixed-window layer
            **(
                {"window": {"level": LAYERS[name].fixed_window.level_hu, "width": LAYERS[name].fixed_window.width_hu}}  # type: ignore[union-attr]
                if LAYERS[name].fixed_window is not None
                else {}
            ),
            "available": name not in missing,
        }
        for name in allowed
    }
    return {
        "instance": str(instance),
        "api": api_base.rstrip("/"),
        "ticket": ticket,
        "format": image_format,
        "volumes": {"current": plane_description(current), **({"prior": plane_description(prior)} if prior is not None else {})},
        "layers": layer_info,
        **({"priorSync": {k: [int(i) for i in v] for k, v in prior_sync.items()}} if prior_sync and prior is not None else {}),
        "presets": [{"name": p.name, "label": p.label, "level": p.level_hu, "width": p.width_hu, "key": p.hotkey} for p in WINDOW_PRESETS],
        "marks": [
            {"id": int(m["id"]), "n": int(m["n"]), "rating": _number(m["rating"]), "pos": mark_positions(current, m["point_mm"])} for m in marks
        ],
        "pending": None if pending is None else {"key": str(pending["key"]), "pos": mark_positions(current, pending["point_mm"])},
        "truth": [
            {"label": str(t["label"]), "r": float(t.get("radius_mm") or mark_radius_mm), "pos": mark_positions(current, t["point_mm"])} for t in truth
        ],
        "markRadiusMm": float(mark_radius_mm),
        "canMark": bool(can_mark),
        "ratingKeys": [str(k) for k in rating_keys],
        "view": dict(view) if view else None,
        "jump": dict(jump) if jump else None,
        "handledKey": handled_key,
        "heartbeatS": float(heartbeat_s),
        "windowLimits": dict(WINDOW_LIMITS_HU),
        "mouseHelp": MOUSE_HELP if can_mark else MOUSE_HELP.replace(" · double click (or click with Mark): mark", ""),
    }


def _number(value: Any) -> float | int:
    f = float(value)
    return int(f) if np.isfinite(f) and f.is_integer() else f
