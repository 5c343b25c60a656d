"""The detector's bone ROI: :func:`cases.bone.bone_mask` (threshold, morphology, contrast-filled
blood pools left out; or a user's label map) with the detector's error type.

The mask itself is made in ``cases`` because the real-CT pair generator needs the same bone (it
puts lesions only there); the detector reports bad input as :class:`DetectorInputError`.
"""

from __future__ import annotations

from typing import Any

from cases import LabelVolume, Volume
from cases.bone import BoneMaskError, dilate_mask
from cases.bone import bone_mask as _cases_bone_mask

from ._errors import DetectorInputError

__all__ = ["bone_mask", "dilate_mask"]


def bone_mask(volume: Volume, **options: Any) -> LabelVolume:
    """Mask of the bones of a CT volume (1 = bone) on its grid; options as :func:`cases.bone.bone_mask`.

    Raises
    ------
    DetectorInputError
        The volume is not a CT in HU, the thresholds are inverted, ``labels`` hold no bone in the
        field of view, or ``exclude`` is on another grid.
    """
    try:
        return _cases_bone_mask(volume, **options)
    except BoneMaskError as exc:
        raise DetectorInputError(str(exc)) from None
