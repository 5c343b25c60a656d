"""The reading workstation's settings, from environment variables (one place, documented).

=============================  ==========================================================  =====================
variable                       meaning                                                     default
=============================  ==========================================================  =====================
``TSCT_DATABASE_URL``          the study database (see ``reader_study.default_database_url``)  SQLite in the data dir
``TSCT_DATA_DIR``              data folder (database, exports, reports)                    ``./tsct-data``
``TSCT_DETECTOR_DIR``          detector outputs, one folder per case (``<dir>/<case id>/``)  ``$TSCT_DATA_DIR/detector``
``TSCT_VOLUME_CACHE_MB``       memory for volumes kept between requests                    3072
``TSCT_IMAGE_FORMAT``          grey slices as ``raw`` int16 values, windowed in the        ``raw``
                               browser (512 KiB per 512² slice: a LAN), or windowed on
                               the server as ``png`` (lossless) or ``jpeg`` (slow links)
``TSCT_JPEG_QUALITY``          JPEG quality 50-100                                          90
``TSCT_ZMAP_THRESHOLD``        |z| from which the overlay shows colour                      4
``TSCT_ZMAP_SATURATION``       |z| at which the overlay is fully opaque                     10
``TSCT_ZMAP_PALETTE``          ``green-orange`` or ``blue-red`` (as in Hoshiai et al.)     ``green-orange``
``TSCT_SESSION_HOURS``         log-in lasts this long without use                           12
=============================  ==========================================================  =====================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkstationError

__all__ = ["WorkstationSettings"]


def _number(name: str, default: float, lo: float, hi: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise WorkstationError(f"${name} must be a number between {lo:g} and {hi:g}, got {raw!r}.") from None
    if not lo <= value <= hi:
        raise WorkstationError(f"${name} must be between {lo:g} and {hi:g}, got {value:g}.")
    return value


@dataclass(frozen=True)
class WorkstationSettings:
    """Settings of one app server (see the module docstring for the environment variables)."""

    data_dir: Path
    detector_dir: Path
    volume_cache_mb: int = 3072
    image_format: str = "raw"
    jpeg_quality: int = 90
    zmap_threshold: float = 4.0
    zmap_saturation: float = 10.0
    zmap_palette: str = "green-orange"
    session_idle_s: float = 12 * 3600.0
    ticket_ttl_s: float = 8 * 3600.0
    idle_cap_s: float = 60.0
    mark_radius_mm: float = 5.0
    render_cache_mb: int = 96

    @classmethod
    def from_env(cls) -> "WorkstationSettings":
        """Read the settings from the environment; :class:`WorkstationError` names a bad variable and what it must be."""
        data_dir = Path(os.environ.get("TSCT_DATA_DIR", "tsct-data")).resolve()
        detector = os.environ.get("TSCT_DETECTOR_DIR", "").strip()
        fmt = os.environ.get("TSCT_IMAGE_FORMAT", "raw").strip().lower() or "raw"
        if fmt == "jpg":
            fmt = "jpeg"
        if fmt not in ("raw", "png", "jpeg"):
            raise WorkstationError(f"$TSCT_IMAGE_FORMAT must be raw, png or jpeg, got {fmt!r}.")
        palette = os.environ.get("TSCT_ZMAP_PALETTE", "green-orange").strip() or "green-orange"
        from .render import PALETTES

        if palette not in PALETTES:
            raise WorkstationError(f"$TSCT_ZMAP_PALETTE must be one of {', '.join(PALETTES)}, got {palette!r}.")
        threshold = _number("TSCT_ZMAP_THRESHOLD", 4.0, 0.5, 50.0)
        saturation = _number("TSCT_ZMAP_SATURATION", max(10.0, 2 * threshold), threshold + 0.1, 100.0)
        return cls(
            data_dir=data_dir,
            detector_dir=Path(detector).resolve() if detector else data_dir / "detector",
            volume_cache_mb=int(_number("TSCT_VOLUME_CACHE_MB", 3072, 64, 1_000_000)),
            image_format=fmt,
            jpeg_quality=int(_number("TSCT_JPEG_QUALITY", 90, 50, 100)),
            zmap_threshold=threshold,
            zmap_saturation=saturation,
            zmap_palette=palette,
            session_idle_s=_number("TSCT_SESSION_HOURS", 12, 0.1, 24 * 30) * 3600.0,
        )
