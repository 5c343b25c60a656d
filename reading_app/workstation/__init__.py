"""The reading workstation's logic, without Streamlit: geometry, rendering, image access, settings.

The Streamlit app (``app.py`` and ``reading_app/pages/``) is a thin layer over this package and over
:mod:`reader_study`; everything here is plain Python that unit tests call directly.

Public API
----------
DisplayGrid, ViewTransform, PlaneGeometry, PLANES, image_to_voxel, voxel_to_image, extract_slice
    Screen ↔ image ↔ voxel ↔ LPS mm; exams turned to radiological display orientation.
WindowPreset, WINDOW_PRESETS, window_to_uint8, zmap_overlay_rgba, composite, encode_image
    Window/level, the green/orange z-map overlay (RGBA; in ``render``: as palette indices), raw int16
    slices the browser windows, PNG/JPEG encoding; ``render.WINDOW_LIMITS_HU`` bounds every window.
LAYERS, AID_LAYERS, allowed_layers, layer_files, check_detector_outputs
    Which images a treatment shows (the unaided reading: the exams only) and where they are.
TicketRegistry, ImageTicket, WebSessionStore
    Image tickets that enforce the treatment on every image request; browser log-in sessions.
VolumeCache, read_display_volume, read_axial_slice, display_grid_of
    Volumes read once per process, bounded memory, least recently used out, background prefetch;
    a case's first slice read alone while its volume loads.
ImageService, get_runtime, WorkstationRuntime, WorkstationSettings
    The one function that renders images for readers, and the process-wide state.
ActiveTimeTracker
    Reading time with pauses left out.
ValueReader, read_transform
    The true HU under the reader's cursor, and the linked point on the prior (the readout).
LocalizerService, projection
    The localizer beside the viewer: a projection of the current CT only, through the image tickets.
viewer_payload, click_to_point, mark_positions, KEYBOARD_SHORTCUTS
    What the browser viewer is given and what its clicks mean.
make_routes, api_base
    The HTTP routes (images, log-in cookie) mounted beside Streamlit by ``reading_app/server.py``.
"""

from .access import Download, DownloadRegistry, ImageTicket, TicketRegistry, WebSession, WebSessionStore
from .errors import ImageLayerMissingError, LayerNotAllowedError, TicketError, ViewError, WorkstationError
from .geometry import PLANES, DisplayGrid, PlaneGeometry, ViewTransform, extract_slice, image_to_voxel, voxel_to_image
from .http import API_PREFIX, SESSION_COOKIE, api_base, make_routes
from .layers import AID_LAYERS, LAYERS, LayerSpec, allowed_layers, check_detector_outputs, layer_files, unknown_overlays
from .localizer import LocalizerService, projection
from .readout import SampledValue, ValueReader, read_transform
from .render import (
    DEFAULT_OPACITY,
    DEFAULT_PALETTE,
    HOSHIAI_PALETTE,
    SUBTRACTION_WINDOW,
    WINDOW_PRESETS,
    OverlayPalette,
    WindowPreset,
    composite,
    encode_image,
    window_to_uint8,
    zmap_overlay_rgba,
)
from .service import ImageService, RenderedImage, WorkstationRuntime, get_runtime, reset_runtime
from .settings import WorkstationSettings
from .timing import ActiveTimeTracker
from .viewer import KEYBOARD_SHORTCUTS, MOUSE_HELP, WINDOW_LIMITS_HU, ClickedPoint, click_to_point, mark_positions, plane_description, viewer_payload
from .volumes import CacheStats, LoadedVolume, VolumeCache, display_grid_of, read_axial_slice, read_display_volume

__all__ = [
    # geometry
    "PLANES",
    "DisplayGrid",
    "PlaneGeometry",
    "ViewTransform",
    "image_to_voxel",
    "voxel_to_image",
    "extract_slice",
    # rendering
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
    # layers and access
    "LayerSpec",
    "LAYERS",
    "AID_LAYERS",
    "allowed_layers",
    "unknown_overlays",
    "layer_files",
    "check_detector_outputs",
    "ImageTicket",
    "TicketRegistry",
    "WebSession",
    "WebSessionStore",
    "Download",
    "DownloadRegistry",
    # volumes and service
    "LoadedVolume",
    "VolumeCache",
    "CacheStats",
    "read_display_volume",
    "display_grid_of",
    "read_axial_slice",
    "ImageService",
    "RenderedImage",
    "ValueReader",
    "SampledValue",
    "read_transform",
    "LocalizerService",
    "projection",
    "WorkstationRuntime",
    "WorkstationSettings",
    "get_runtime",
    "reset_runtime",
    "ActiveTimeTracker",
    # viewer
    "ClickedPoint",
    "click_to_point",
    "mark_positions",
    "plane_description",
    "viewer_payload",
    "KEYBOARD_SHORTCUTS",
    "MOUSE_HELP",
    "WINDOW_LIMITS_HU",
    # http
    "API_PREFIX",
    "SESSION_COOKIE",
    "api_base",
    "make_routes",
    # errors
    "WorkstationError",
    "LayerNotAllowedError",
    "TicketError",
    "ImageLayerMissingError",
    "ViewError",
]
