"""The server side of the viewer: one process-wide runtime, and the function that makes slice images.

:func:`get_runtime` holds what every browser session of the app server shares: the settings, the
volume cache, the image tickets, the browser sessions and the active-time tracker. The Streamlit
pages and the HTTP image route (:mod:`workstation.http`) run in the same process and reach the
same objects through it.

:meth:`ImageService.render` is the only function that produces images for readers. It checks the
ticket and the layer *first* (:meth:`workstation.access.TicketRegistry.authorize`), so an aid the
treatment does not show is refused before its file is opened.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable

from .access import TicketRegistry, WebSessionStore
from .errors import ViewError
from .geometry import PLANES
from .layers import LAYERS
from .render import PALETTES, encode_image, window_to_uint8, zmap_overlay_rgba
from .settings import WorkstationSettings
from .timing import ActiveTimeTracker
from .volumes import VolumeCache

__all__ = ["ImageService", "RenderedImage", "WorkstationRuntime", "get_runtime", "reset_runtime"]

_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


@dataclass(frozen=True)
class RenderedImage:
    """Encoded image bytes with their media type."""

    data: bytes
    media_type: str


class _BytesLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, RenderedImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> RenderedImage | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, item: RenderedImage) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._bytes += len(item.data)
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data)


class ImageService:
    """Renders the slice images that tickets allow.

    Parameters
    ----------
    settings : image format, overlay threshold and palette.
    volumes : where volumes are read and kept.
    tickets : the issued image tickets.
    """

    def __init__(self, settings: WorkstationSettings, volumes: VolumeCache, tickets: TicketRegistry) -> None:
        self.settings = settings
        self.volumes = volumes
        self.tickets = tickets
        self._cache = _BytesLRU(settings.render_cache_mb * 2**20)

    def render(
        self,
        token: str,
        layer: str,
        plane: str,
        slice_index: int,
        *,
        level_hu: float | None = None,
        width_hu: float | None = None,
        fmt: str | None = None,
    ) -> RenderedImage:
        """The image of ``layer`` on slice ``slice_index`` of ``plane``, for the holder of ``token``.

        Grey layers use the window ``level_hu ± width_hu / 2`` (subtraction layers their own
        fixed window); the z-map is an RGBA PNG to lay over the current CT.

        Raises
        ------
        TicketError, LayerNotAllowedError, ImageLayerMissingError
            From the ticket check, before any file is read.
        ViewError
            Bad plane, slice or window.
        """
        ticket, path = self.tickets.authorize(token, layer)
        if plane not in PLANES:
            raise ViewError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.")
        spec = LAYERS[layer]
        if layer == "zmap":
            fmt = "png"
            window: tuple[float, float] = (0.0, 0.0)
        else:
            fmt = fmt or self.settings.image_format
            if fmt not in _MEDIA_TYPES:
                raise ViewError(f"Unknown image format {fmt!r}; use png or jpeg.")
            if spec.fixed_window is not None:
                window = (spec.fixed_window.level_hu, spec.fixed_window.width_hu)
            else:
                if level_hu is None or width_hu is None:
                    raise ViewError("Give the window level and width (HU) for a grey image.")
                if not (math.isfinite(level_hu) and math.isfinite(width_hu) and 1.0 <= width_hu <= 20000.0 and abs(level_hu) <= 20000.0):
                    raise ViewError(f"Window level {level_hu} / width {width_hu} HU is out of range (width 1 to 20000 HU).")
                window = (round(float(level_hu), 1), round(float(width_hu), 1))
        key = (str(path), layer, plane, int(slice_index), window, fmt)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        pixels = self.volumes.slice_of(path, spec.volume_kind, plane, int(slice_index))  # type: ignore[arg-type]
        if layer == "zmap":
            s = self.settings
            image = zmap_overlay_rgba(pixels, threshold=s.zmap_threshold, saturation=s.zmap_saturation, palette=PALETTES[s.zmap_palette])
            data = encode_image(image, "png")
        else:
            data = encode_image(window_to_uint8(pixels, *window), fmt, jpeg_quality=self.settings.jpeg_quality)  # type: ignore[arg-type]
        result = RenderedImage(data, _MEDIA_TYPES[fmt])
        self._cache.put(key, result)
        return result


@dataclass
class WorkstationRuntime:
    """What all browser sessions of one app server share."""

    settings: WorkstationSettings
    volumes: VolumeCache
    tickets: TicketRegistry
    sessions: WebSessionStore
    timer: ActiveTimeTracker
    images: ImageService
    #: last view (plane, slice, window, zoom) per (reader id, case read id), restored after a reload
    views: dict = field(default_factory=dict)


_RUNTIME: WorkstationRuntime | None = None
_RUNTIME_LOCK = threading.Lock()


def get_runtime() -> WorkstationRuntime:
    """The process-wide runtime, made from :meth:`WorkstationSettings.from_env` on first use."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            settings = WorkstationSettings.from_env()
            volumes = VolumeCache(settings.volume_cache_mb * 2**20)
            tickets = TicketRegistry(settings.ticket_ttl_s)
            _RUNTIME = WorkstationRuntime(
                settings=settings,
                volumes=volumes,
                tickets=tickets,
                sessions=WebSessionStore(settings.session_idle_s),
                timer=ActiveTimeTracker(settings.idle_cap_s),
                images=ImageService(settings, volumes, tickets),
            )
        return _RUNTIME


def reset_runtime() -> None:
    """Forget the runtime (tests change the environment between apps in one process)."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        _RUNTIME = None
