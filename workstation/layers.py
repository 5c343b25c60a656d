"""The image layers a reader may see, and which treatment allows which.

Every case read has a treatment whose ``overlays`` (stored in the study, e.g. ``unaided``: none;
``aided``: ``subtraction`` and ``zmap``) name the aids the viewer may show. The current and the
prior exam are shown in every treatment; the aids only where the treatment names them:

=================  ======================================  ==========  ==========================
layer              what                                    aid         file
=================  ======================================  ==========  ==========================
``ct``             current exam, reader's window           no          the case's current exam
``prior``          prior exam (own geometry), same window  no          the case's prior exam
``subtraction``    temporal subtraction (current − warped  yes         ``subtraction.nii.gz``
                   prior), symmetric window
``subtraction_vm`` voxel-matched subtraction               yes         ``subtraction_vm.nii.gz``
``warped_prior``   prior registered onto the current exam  yes         ``warped_prior.nii.gz``
``zmap``           z-score overlay on the current exam     yes         ``zmap.nii.gz``
=================  ======================================  ==========  ==========================

Aid files are the detector's per-case outputs, ``<detector dir>/<case id>/<file>``
(``tsct detect batch CASELIST --out DIR``; the reading app's detector dir is
``$TSCT_DETECTOR_DIR``, default ``$TSCT_DATA_DIR/detector``).

:func:`allowed_layers` is the single rule, applied on the server when an image ticket is issued
(:mod:`workstation.access`): a layer outside it is never read, rendered or sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .render import SUBTRACTION_WINDOW, WindowPreset

__all__ = ["LayerSpec", "LAYERS", "AID_LAYERS", "allowed_layers", "unknown_overlays", "layer_files", "check_detector_outputs"]


@dataclass(frozen=True)
class LayerSpec:
    """One image layer: where it is shown (``base``, ``side`` panel or ``overlay`` on the current CT), whether it is an aid, its file and window."""

    name: str
    label: str
    role: str
    aid: bool
    detector_file: str | None = None
    volume_kind: str = "ct"
    fixed_window: WindowPreset | None = None


LAYERS: dict[str, LayerSpec] = {
    spec.name: spec
    for spec in (
        LayerSpec("ct", "Current CT", "base", aid=False),
        LayerSpec("prior", "Prior CT", "side", aid=False),
        LayerSpec("subtraction", "Temporal subtraction", "side", aid=True, detector_file="subtraction.nii.gz", volume_kind="hu", fixed_window=SUBTRACTION_WINDOW),
        LayerSpec("subtraction_vm", "Voxel-matched subtraction", "side", aid=True, detector_file="subtraction_vm.nii.gz", volume_kind="hu", fixed_window=SUBTRACTION_WINDOW),
        LayerSpec("warped_prior", "Registered prior", "side", aid=True, detector_file="warped_prior.nii.gz", volume_kind="hu"),
        LayerSpec("zmap", "z-map overlay", "overlay", aid=True, detector_file="zmap.nii.gz", volume_kind="z"),
    )
}

#: Layers shown only in a treatment that names them.
AID_LAYERS: frozenset[str] = frozenset(name for name, spec in LAYERS.items() if spec.aid)
_ALWAYS: frozenset[str] = frozenset(name for name, spec in LAYERS.items() if not spec.aid)


def allowed_layers(overlays: Iterable[str]) -> frozenset[str]:
    """The layers a reader may see in a treatment with these ``overlays``: the exams, plus the aids it names.

    >>> sorted(allowed_layers(()))
    ['ct', 'prior']
    >>> sorted(allowed_layers(("subtraction", "zmap")))
    ['ct', 'prior', 'subtraction', 'zmap']
    """
    return _ALWAYS | (frozenset(overlays) & AID_LAYERS)


def unknown_overlays(overlays: Iterable[str]) -> tuple[str, ...]:
    """Overlay names of a treatment that the viewer does not know (shown to no one; the coordinator is warned)."""
    return tuple(o for o in overlays if o not in AID_LAYERS)


def layer_files(
    *,
    case_code: str,
    current_path: str | Path,
    prior_path: str | Path | None,
    overlays: Iterable[str],
    detector_dir: str | Path,
) -> dict[str, Path]:
    """The file of every layer allowed by ``overlays`` (and only those): the exams and the detector's outputs for the case.

    Files are not checked for existence here; a missing one is reported when it is asked for.
    """
    files: dict[str, Path] = {"ct": Path(current_path)}
    if prior_path:
        files["prior"] = Path(prior_path)
    case_dir = Path(detector_dir) / case_code
    for name in sorted(allowed_layers(overlays) & AID_LAYERS):
        files[name] = case_dir / str(LAYERS[name].detector_file)
    return files


def check_detector_outputs(case_codes: Sequence[str], overlays: Iterable[str], detector_dir: str | Path) -> pd.DataFrame:
    """One row per case and aid layer that ``overlays`` shows: the expected file and whether it exists.

    Coordinators run it before opening a study: an aided reading of a case without its z-map
    would show the reader nothing, silently.
    """
    aids = sorted(allowed_layers(overlays) & AID_LAYERS)
    rows = []
    for code in case_codes:
        for name in aids:
            path = Path(detector_dir) / code / str(LAYERS[name].detector_file)
            rows.append({"case": code, "layer": name, "file": str(path), "present": path.is_file()})
    return pd.DataFrame(rows, columns=["case", "layer", "file", "present"])
