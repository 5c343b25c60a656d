"""Errors of the reading workstation; each says what went wrong and what to do about it."""

from __future__ import annotations

__all__ = ["WorkstationError", "LayerNotAllowedError", "TicketError", "ImageLayerMissingError", "ViewError"]


class WorkstationError(ValueError):
    """Base class of the workstation's refusals (a ``ValueError``, like the other packages' errors)."""


class LayerNotAllowedError(WorkstationError):
    """An image layer was asked for that the reader's treatment does not show (e.g. the z-map in the unaided reading)."""


class TicketError(WorkstationError):
    """An image ticket is unknown, expired or revoked (the page must be reloaded to get a new one)."""


class ImageLayerMissingError(WorkstationError):
    """A layer the treatment allows has no image file (e.g. the detector was not run on the case)."""


class ViewError(WorkstationError):
    """A slice index, plane or screen position outside the image."""
