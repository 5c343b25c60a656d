"""The detector's error type: bad input, with a message that names the file and what to fix."""

from __future__ import annotations


class DetectorInputError(ValueError):
    """Input the detector cannot work with (wrong shape, not CT, exams that cannot be paired...).

    The message names the offending file or argument and says what to do about it; the CLI prints
    it as one red line and exits with code 2.
    """
