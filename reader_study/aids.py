"""The reading aids a treatment may show: the study design's overlay vocabulary, defined once.

A treatment's ``overlays`` (e.g. ``aided=subtraction+zmap``) name aids from :data:`AIDS`. Each
aid is one detector output of the case, found by its **role** in the case's output manifest
(``outputs.json``, :func:`detector.read_case_outputs`), never by file name:

==================  ===========================  ==========================================
aid (overlay name)  detector output role         what the reader sees
==================  ===========================  ==========================================
``subtraction``     ``subtraction``              temporal subtraction (current − warped prior)
``subtraction_vm``  ``subtraction_vm``           voxel-matched subtraction
``warped_prior``    ``warped_prior``             the prior registered onto the current exam
``zmap``            ``zmap``                     z-score overlay on the current exam
==================  ===========================  ==========================================

Everything that needs the vocabulary reads it from here: study creation refuses unknown
overlays (:func:`unknown_overlays`), the study lock and the simulated readers check and hash the
roles a treatment shows (:func:`aid_roles`), and the reading app's viewer
(:mod:`reading_app.workstation.layers`) builds its aid layers from :data:`AIDS` (adding only how each is
displayed). The current and prior exams are shown in every treatment and are not aids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["Aid", "AIDS", "AID_NAMES", "unknown_overlays", "aid_roles"]


@dataclass(frozen=True)
class Aid:
    """One reading aid: its overlay name in a treatment, a label readers see, and the detector output role it shows."""

    name: str
    label: str
    output_role: str


#: Every aid a treatment may name: overlay name -> :class:`Aid`.
AIDS: dict[str, Aid] = {
    aid.name: aid
    for aid in (
        Aid("subtraction", "Temporal subtraction", "subtraction"),
        Aid("subtraction_vm", "Voxel-matched subtraction", "subtraction_vm"),
        Aid("warped_prior", "Registered prior", "warped_prior"),
        Aid("zmap", "z-map overlay", "zmap"),
    )
}

#: The overlay names a treatment may use.
AID_NAMES: frozenset[str] = frozenset(AIDS)


def unknown_overlays(overlays: Iterable[str]) -> tuple[str, ...]:
    """Overlay names of a treatment that are no known aid (readers would see nothing for them).

    >>> unknown_overlays(("zmap", "heatmap"))
    ('heatmap',)
    """
    return tuple(o for o in overlays if o not in AIDS)


def aid_roles(overlays: Iterable[str]) -> list[str]:
    """The detector output roles the given overlays show, in order, each once; unknown names are skipped.

    >>> aid_roles(("zmap", "subtraction", "zmap", "heatmap"))
    ['zmap', 'subtraction']
    """
    roles: list[str] = []
    for overlay in overlays:
        aid = AIDS.get(overlay)
        if aid is not None and aid.output_role not in roles:
            roles.append(aid.output_role)
    return roles
