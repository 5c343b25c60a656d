"""The value under the reader's cursor: true HU from the server's volume, never from the grey level.

The viewer asks :meth:`ValueReader.read` for the voxel under the cursor on one layer (the current
CT, the prior, or an aid the ticket allows) and, optionally, for the *linked* point on the panel
beside it: the same anatomy on the prior (the point mapped through the detector's registration,
current → prior, when the case has one; else the same patient coordinate, i.e. table position),
or the same voxel on an aid that lies on the current exam's grid. The linked point's image
position draws the crosshair on the panel beside; its value is read on the slice that panel shows.

Every request goes through :meth:`TicketRegistry.authorize` for each layer it reads — the same
checks as an image link (session cookie, case read open and the reader's, the treatment showing
that layer) — so the readout never reveals a value of a layer whose image the reader may not see.
The z-map has no HU and is refused.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .access import TicketRegistry
from .errors import ViewError
from .geometry import PLANES, DisplayGrid, image_to_voxel
from .layers import LAYERS
from .volumes import VolumeCache

__all__ = ["ValueReader", "SampledValue", "read_transform"]


@dataclass(frozen=True)
class SampledValue:
    """The voxel under image point ``(u, v)`` of slice ``slice_index``: its value (None outside the volume), index and LPS centre."""

    layer: str
    plane: str
    slice_index: int
    u: float
    v: float
    inside: bool
    value: float | None
    voxel_xyz: tuple[int, int, int] | None
    point_mm: tuple[float, float, float] | None

    def as_json(self) -> dict[str, Any]:
        """The JSON the viewer reads (numbers rounded for display: HU to 0.1, mm to 0.01)."""
        return {
            "layer": self.layer,
            "plane": self.plane,
            "slice": self.slice_index,
            "u": round(self.u, 3),
            "v": round(self.v, 3),
            "inside": self.inside,
            "value": None if self.value is None else round(self.value, 1),
            "unit": "HU",
            "label": LAYERS[self.layer].label,
            "voxel": None if self.voxel_xyz is None else list(self.voxel_xyz),
            "mm": None if self.point_mm is None else [round(c, 2) for c in self.point_mm],
        }


def sample(array_zyx: np.ndarray, grid: DisplayGrid, layer: str, plane: str, slice_index: int, u: float, v: float) -> SampledValue:
    """The value of the pixel drawn at image point ``(u, v)`` of ``slice_index`` (the voxel whose square holds the point)."""
    g = grid.plane(plane)
    s = int(slice_index)
    col, row = math.floor(u), math.floor(v)
    inside = 0 <= s < g.n_slices and 0 <= col < g.n_u and 0 <= row < g.n_v
    if not inside:
        return SampledValue(layer, plane, s, float(u), float(v), False, None, None, None)
    index = np.rint(image_to_voxel(plane, grid.size_xyz, s, col + 0.5, row + 0.5)).astype(int)
    x, y, z = (int(c) for c in index)
    value = float(array_zyx[z, y, x])
    point = tuple(float(c) for c in grid.index_to_point_mm(index))
    return SampledValue(layer, plane, s, float(u), float(v), True, value, (x, y, z), point)  # type: ignore[arg-type]


_TRANSFORMS: OrderedDict = OrderedDict()
_TRANSFORMS_LOCK = threading.Lock()


def read_transform(path: str | Path):  # -> SimpleITK.Transform | None
    """The registration transform (current → prior points) in ``path``, read once per file version; None if unreadable.

    Kept for the last few files (a displacement field is large and slow to read), with a lock
    around each use because one SimpleITK transform is not meant for concurrent calls.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _TRANSFORMS_LOCK:
        if key in _TRANSFORMS:
            _TRANSFORMS.move_to_end(key)
            return _TRANSFORMS[key]
    import SimpleITK as sitk

    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError:
        return None
    with _TRANSFORMS_LOCK:
        _TRANSFORMS[key] = transform
        while len(_TRANSFORMS) > 8:
            _TRANSFORMS.popitem(last=False)
    return transform


def _map_point(transform, point_mm: tuple[float, float, float]) -> tuple[float, float, float]:  # noqa: ANN001
    with _TRANSFORMS_LOCK:
        return tuple(float(c) for c in transform.TransformPoint(tuple(point_mm)))  # type: ignore[return-value]


class ValueReader:
    """Reads voxel values for the holders of image tickets (the ``/hu`` route).

    Parameters
    ----------
    volumes : the process's volume cache (the images' own voxels).
    tickets : the issued image tickets; every layer read is authorised through them.
    """

    def __init__(self, volumes: VolumeCache, tickets: TicketRegistry) -> None:
        self.volumes = volumes
        self.tickets = tickets

    def read(
        self,
        token: str,
        layer: str,
        plane: str,
        slice_index: int,
        u: float,
        v: float,
        *,
        linked: str | None = None,
        linked_slice: int | None = None,
        session_token: str | None = None,
    ) -> dict[str, Any]:
        """The value under ``(u, v)`` on ``slice_index`` of ``layer``; with ``linked``, also the same anatomy on that layer.

        ``linked_slice`` is the slice the linked panel shows (its value is read there, at the
        mapped in-plane position); without it, the slice the mapped point falls on.

        Raises
        ------
        TicketError, LayerNotAllowedError, ImageLayerMissingError
            From the ticket check of ``layer`` and of ``linked``, before any file is read.
        ViewError
            Bad plane, numbers, or a layer without HU (the z-map).
        """
        ticket, path = self.tickets.authorize(token, layer, session_token=session_token)
        linked_path = None
        if linked is not None:
            _, linked_path = self.tickets.authorize(token, linked, session_token=session_token)
        if plane not in PLANES:
            raise ViewError(f"Unknown plane {plane!r}; use one of {', '.join(PLANES)}.")
        if not (math.isfinite(u) and math.isfinite(v)):
            raise ViewError("Give the image position u and v as numbers.")
        for name in (layer, linked):
            if name is not None and LAYERS[name].volume_kind == "z":
                raise ViewError(f"The {LAYERS[name].label} has no HU values to read.")
        volume = self.volumes.get(path, LAYERS[layer].volume_kind)  # type: ignore[arg-type]
        here = sample(volume.array, volume.grid, layer, plane, slice_index, u, v)
        out: dict[str, Any] = here.as_json()
        if linked is None or linked_path is None:
            return out
        other = self.volumes.get(linked_path, LAYERS[linked].volume_kind)  # type: ignore[arg-type]
        point = volume.grid.image_point_to_mm(plane, float(slice_index), float(u), float(v))
        point = tuple(float(c) for c in point)
        registered = False
        if linked == "prior" and layer != "prior" and ticket.registration is not None:
            transform = read_transform(ticket.registration)
            if transform is not None:
                point = _map_point(transform, point)  # type: ignore[arg-type]
                registered = True
        ls, lu, lv = other.grid.mm_to_image(plane, point)
        n = other.grid.plane(plane).n_slices
        s = int(linked_slice) if linked_slice is not None else int(min(max(round(ls), 0), n - 1))
        there = sample(other.array, other.grid, linked, plane, s, float(lu), float(lv))
        out["linked"] = {**there.as_json(), "registered": registered, "mapped_slice": round(float(ls), 2)}
        return out
