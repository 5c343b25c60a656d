"""The server side of the viewer: one process-wide runtime, and the function that makes slice images.

:func:`get_runtime` holds what every browser session of the app server shares: the settings, the
volume cache, the image tickets, the browser sessions and the active-time tracker. The Streamlit
pages and the HTTP image route (:mod:`reading_app.workstation.http`) run in the same process and reach the
same objects through it.

:meth:`ImageService.render` is the only function that produces images for readers. It checks the
ticket, the request's log-in and the layer *first* (:meth:`reading_app.workstation.access.TicketRegistry.authorize`),
so an aid the treatment does not show is refused before its file is opened. The runtime's ticket
check (:meth:`WorkstationRuntime.check_ticket`) asks the database, at most a second late, whether
the ticket's browser session is live and its case read still open, the reader's, and in a
treatment that shows the ticket's layers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from .access import DownloadRegistry, ImageTicket, TicketRegistry, WebSessionStore
from .errors import TicketError, ViewError
from .geometry import PLANES
from .layers import LAYERS, allowed_layers, overlay_style_for
from .localizer import LocalizerService
from .readout import ValueReader
from .render import (
    PALETTES,
    check_window,
    encode_image,
    encode_paletted_png,
    overlay_palette_rgba,
    raw_slice_bytes,
    window_to_uint8,
    zmap_overlay_indexed,
)
from .settings import WorkstationSettings
from .timing import ActiveTimeTracker
from .volumes import VolumeCache

__all__ = ["ImageService", "RenderedImage", "WorkstationRuntime", "get_runtime", "reset_runtime"]

#: ``raw``: the slice's values as little-endian int16 (rows first), windowed in the browser.
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "raw": "application/octet-stream"}


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
        self._overlay_palette = overlay_palette_rgba(PALETTES[settings.zmap_palette])

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
        session_token: str | None = None,
        overlay: str | None = None,
    ) -> RenderedImage:
        """The image of ``layer`` on slice ``slice_index`` of ``plane``, for the holder of ``token``.

        ``session_token`` is the request's log-in cookie (a ticket works only with the session it was issued to).

        ``fmt`` ``raw`` (the viewer's default): a grey layer's values as little-endian ``int16``,
        no window (the browser windows them). ``png``/``jpeg``: windowed here with
        ``level_hu ± width_hu / 2`` inside :data:`~reading_app.workstation.render.WINDOW_LIMITS_HU`
        (subtraction layers with their own fixed window). The z-map is always a paletted PNG
        (:func:`~reading_app.workstation.render.zmap_overlay_indexed`) to lay over the current CT;
        with ``fmt`` ``raw`` its palette indices (one byte per pixel) followed by the palette's 256
        RGBA entries (1024 bytes), which the browser colours itself.

        ``overlay="zmap"`` (only with ``ct`` and ``raw``): the CT slice and the z-map overlay of
        the same slice in one response (the CT's bytes, then the overlay's), each layer checked
        on its own, so an aided slice is one request; refused like the z-map where it is not shown.

        Raises
        ------
        TicketError, LayerNotAllowedError, ImageLayerMissingError
            From the ticket check, before any file is read.
        ViewError
            Bad plane, slice or window.
        """
        if overlay is not None:
            if overlay != "zmap" or layer != "ct" or fmt != "raw":
                raise ViewError(
                    "Only the z-map overlay rides with an image, and only on the current CT in the raw format (layer ct, fmt=raw, overlay=zmap)."
                )
            base = self.render(token, "ct", plane, slice_index, fmt="raw", session_token=session_token)
            over = self.render(token, "zmap", plane, slice_index, fmt="raw", session_token=session_token)
            return RenderedImage(base.data + over.data, _MEDIA_TYPES["raw"])
        ticket, path = self.tickets.authorize(token, layer, session_token=session_token)
        if plane not in PLANES:
            raise ViewError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.")
        spec = LAYERS[layer]
        window: tuple[float, float] | None = None
        if layer == "zmap":
            fmt = "raw" if fmt == "raw" else "png"
        else:
            fmt = fmt or self.settings.image_format
            if fmt not in _MEDIA_TYPES:
                raise ViewError(f"Unknown image format {fmt!r}; use raw, png or jpeg.")
            if fmt != "raw":
                if spec.fixed_window is not None:
                    window = (spec.fixed_window.level_hu, spec.fixed_window.width_hu)
                elif level_hu is None or width_hu is None:
                    raise ViewError("Give the window level and width (HU) for a grey image.")
                else:
                    window = check_window(level_hu, width_hu)
        key = (str(path), layer, plane, int(slice_index), window, fmt)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        pixels = self.volumes.slice_of(path, spec.volume_kind, plane, int(slice_index))  # type: ignore[arg-type]
        if layer == "zmap":
            s = self.settings
            threshold, saturation = overlay_style_for(path, s.zmap_threshold, s.zmap_saturation)
            index = zmap_overlay_indexed(pixels, threshold=threshold, saturation=saturation, palette=PALETTES[s.zmap_palette])
            if fmt == "raw":
                data = np.ascontiguousarray(index).tobytes() + self._overlay_palette.tobytes()
            else:
                data = encode_paletted_png(index, self._overlay_palette)
        elif window is None:
            data = raw_slice_bytes(pixels)
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
    #: voxel values under the cursor (HU readout), through the same tickets as the images
    values: ValueReader
    #: last view (plane, slice, window, zoom) per (reader id, case read id), restored after a reload
    views: dict = field(default_factory=dict)
    #: files the pages offered for download (served only to the session and roles they were offered to)
    downloads: DownloadRegistry = field(default_factory=DownloadRegistry)
    #: the localizer picture beside the viewer (the current exam only), through the same tickets
    localizers: LocalizerService | None = None
    #: the study database's URL (``None``: ``reader_study.default_database_url()``)
    database_url: str | None = None
    #: how long a case read's state (status, reader, treatment) read for a ticket check is trusted
    case_state_s: float = 1.0
    _db: Any = field(default=None, repr=False)
    _db_lock: Any = field(default_factory=threading.Lock, repr=False)
    _case_states: dict = field(default_factory=dict, repr=False)

    def database(self) -> Any:
        """The study database (``reader_study.Database``), opened once per runtime."""
        with self._db_lock:
            if self._db is None:
                import reader_study

                self._db = reader_study.open_db(self.database_url or reader_study.default_database_url())
            return self._db

    def forget_case(self, case_read_id: int) -> None:
        """Revoke a case read's tickets and its cached state (it was finished in this process)."""
        self.tickets.revoke(case_read_id=case_read_id)
        self._case_states.pop(int(case_read_id), None)

    def _case_state(self, case_read_id: int) -> Any:
        now = time.monotonic()
        hit = self._case_states.get(case_read_id)
        if hit is not None and now - hit[1] < self.case_state_s:
            return hit[0]
        from reader_study.websessions import case_read_access

        state = case_read_access(self.database(), case_read_id)
        self._case_states[case_read_id] = (state, now)
        return state

    def check_ticket(self, ticket: ImageTicket, session_token: str | None) -> None:
        """Refuse (:class:`TicketError`) a ticket whose session ended or whose case read no longer allows it."""
        if ticket.session_key:
            web = self.sessions.lookup(session_token)
            if web is None or web.account_id != ticket.account_id:
                raise TicketError("Your log-in has ended; log in again to continue reading.")
        state = self._case_state(ticket.case_read_id)
        if state is None or ticket.reader_id is None or state.reader_id != ticket.reader_id:
            raise TicketError("This image link is not for a reading of yours.")
        if allowed_layers(state.overlays) != ticket.layers:
            raise TicketError("This image link was made for another treatment of this case; reload the page.")
        if ticket.kind == "read" and state.status == "finished":
            raise TicketError(f"Case {ticket.case_code} is finished; its images are closed. Reload the page for the next case.")
        if ticket.kind == "review" and not (state.status == "finished" and state.training):
            raise TicketError("Only a finished training case can be reviewed.")


_RUNTIME: WorkstationRuntime | None = None
_RUNTIME_LOCK = threading.Lock()


def get_runtime() -> WorkstationRuntime:
    """The process-wide runtime, made from :meth:`WorkstationSettings.from_env` on first use.

    Its browser sessions are kept in the study database, and its image tickets are checked
    against the database on use (:meth:`WorkstationRuntime.check_ticket`).
    """
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            settings = WorkstationSettings.from_env()
            volumes = VolumeCache(settings.volume_cache_mb * 2**20)
            tickets = TicketRegistry(settings.ticket_ttl_s)
            holder: list[WorkstationRuntime] = []
            runtime = WorkstationRuntime(
                settings=settings,
                volumes=volumes,
                tickets=tickets,
                sessions=WebSessionStore(settings.session_idle_s, database=lambda: holder[0].database()),
                timer=ActiveTimeTracker(settings.idle_cap_s),
                images=ImageService(settings, volumes, tickets),
                values=ValueReader(volumes, tickets),
                localizers=LocalizerService(volumes, tickets),
            )
            holder.append(runtime)
            tickets.check = runtime.check_ticket
            _RUNTIME = runtime
        return _RUNTIME


def reset_runtime() -> None:
    """Forget the runtime (tests change the environment between apps in one process)."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is not None and _RUNTIME._db is not None:
            _RUNTIME._db.dispose()
        _RUNTIME = None
