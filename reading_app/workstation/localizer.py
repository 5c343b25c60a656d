"""The localizer beside the viewer: a scout-like projection of the current exam, with the slice line on it.

Radiologists find their place in a stack on a localizer: a frontal (coronal) or lateral
(sagittal) picture of the whole exam with a line where the shown slice lies. The viewer draws
that line (and the cursor's position) itself; the server gives it the picture:
:meth:`LocalizerService.render` is the **maximum-intensity projection** of the current CT along
the picture's normal (front → back for the coronal picture, right → left for the sagittal one),
in the bone window (W 1800 / L 400), so the skeleton stands out the way a scout shows it. It is
laid out exactly as the reformat of that plane (:func:`reading_app.workstation.geometry.extract_slice`):
row ``r`` of the coronal picture is axial slice ``r``, column ``c`` is sagittal slice ``c``, so the
browser places the line with the plane geometry it already has.

Only the current exam (layer ``ct``) is ever projected: the route takes no layer, and the request
passes :meth:`reading_app.workstation.access.TicketRegistry.authorize` for ``ct`` (session cookie, case read open
and the reader's, the treatment unchanged), so the localizer shows no aid in any reading and
stops working when the reading's images do.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .access import TicketRegistry
from .errors import ViewError
from .render import WINDOW_PRESETS, encode_image, window_to_uint8
from .volumes import VolumeCache

__all__ = ["LOCALIZER_PLANES", "LocalizerService", "projection"]

#: The pictures a localizer can be: the coronal (frontal) and the sagittal (lateral) projection.
LOCALIZER_PLANES: tuple[str, ...] = ("coronal", "sagittal")

#: The localizer's window: the viewer's bone preset (a projection of bone is what places a slice).
_BONE = WINDOW_PRESETS[0]


def projection(array_zyx: np.ndarray, plane: str) -> np.ndarray:
    """Maximum-intensity projection of a display-oriented ``(z, y, x)`` volume, laid out as ``plane``'s images.

    ``coronal``: ``(z, x)``, superior at the top, projected along y (front → back); ``sagittal``:
    ``(z, y)``, projected along x. NaN voxels are ignored (a column of NaN only stays NaN).
    """
    if plane not in LOCALIZER_PLANES:
        raise ViewError(f"A localizer is coronal or sagittal, not {plane!r}.")
    values = np.asarray(array_zyx)
    axis = 1 if plane == "coronal" else 2
    if np.issubdtype(values.dtype, np.floating):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN (drawn black)
            image = np.nanmax(values, axis=axis)
    else:
        image = values.max(axis=axis)
    return image[::-1, :]


class LocalizerService:
    """Renders the localizer picture of the current exam for the holder of an image ticket.

    Parameters
    ----------
    volumes : where volumes are read and kept (the one the slice images use).
    tickets : the issued image tickets (the one the slice images use).
    max_items : pictures kept encoded (a few per open case; each a few tens of kB).
    """

    def __init__(self, volumes: VolumeCache, tickets: TicketRegistry, *, max_items: int = 64) -> None:
        self.volumes = volumes
        self.tickets = tickets
        self.max_items = int(max_items)
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, token: str, plane: str, *, session_token: str | None = None) -> bytes:
        """The PNG localizer of the ticket's current exam, as ``plane`` (coronal or sagittal).

        Raises
        ------
        TicketError, ImageLayerMissingError
            From the ticket check for the ``ct`` layer, before any file is read.
        ViewError
            A plane other than coronal or sagittal.
        """
        _, path = self.tickets.authorize(token, "ct", session_token=session_token)
        if plane not in LOCALIZER_PLANES:
            raise ViewError(f"A localizer is coronal or sagittal, not {plane!r}.")
        path = Path(path)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, plane)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        image = projection(self.volumes.get(path, "ct").array, plane)
        data = encode_image(window_to_uint8(image, _BONE.level_hu, _BONE.width_hu), "png")
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.max_items:
                self._cache.popitem(last=False)
        return data
