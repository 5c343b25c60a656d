"""The image layers a reader may see, and which treatment allows which.

Every case read has a treatment whose ``overlays`` (stored in the study, e.g. ``unaided``: none;
``aided``: ``subtraction`` and ``zmap``) name the aids the viewer may show. The current and the
prior exam are shown in every treatment; the aids only where the treatment names them:

=================  ======================================  ==========  ==========================
layer              what                                    aid         detector output role
=================  ======================================  ==========  ==========================
``ct``             current exam, reader's window           no          (the case's current exam)
``prior``          prior exam (own geometry), same window  no          (the case's prior exam)
``subtraction``    temporal subtraction (current − warped  yes         ``subtraction``
                   prior), symmetric window
``subtraction_vm`` voxel-matched subtraction               yes         ``subtraction_vm``
``warped_prior``   prior registered onto the current exam  yes         ``warped_prior``
``zmap``           z-score overlay on the current exam     yes         ``zmap``
=================  ======================================  ==========  ==========================

The aids and the output role each shows are the study design's vocabulary
(:data:`reader_study.aids.AIDS`); this module adds only how each is displayed. Aid files are the
detector's per-case outputs in ``<detector dir>/<case id>/``, found through the case's manifest
(``outputs.json``, :func:`detector.read_case_outputs`) by their role, never by file name
(``tsct detect batch CASELIST --out DIR``; the reading app's detector dir is
``$TSCT_DETECTOR_DIR``, default ``$TSCT_DATA_DIR/detector``).

:func:`allowed_layers` is the single rule, applied on the server when an image ticket is issued
(:mod:`reading_app.workstation.access`): a layer outside it is never read, rendered or sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from reader_study.aids import AIDS, unknown_overlays

from .render import SUBTRACTION_WINDOW, WindowPreset

__all__ = [
    "LayerSpec",
    "LAYERS",
    "AID_LAYERS",
    "allowed_layers",
    "unknown_overlays",
    "layer_files",
    "check_detector_outputs",
    "overlay_style_for",
    "SCORE_ROLE",
    "registration_prior_sync",
    "registration_file",
]


@dataclass(frozen=True)
class LayerSpec:
    """One image layer: where it is shown (``base``, ``side`` panel or ``overlay`` on the current CT), whether it is an aid, its detector output role and window."""

    name: str
    label: str
    role: str
    aid: bool
    output_role: str | None = None
    volume_kind: str = "ct"
    fixed_window: WindowPreset | None = None


#: How each aid of the study design (:data:`reader_study.aids.AIDS`) is displayed: (panel, volume kind, fixed window).
_AID_DISPLAY: dict[str, tuple[str, str, WindowPreset | None]] = {
    "subtraction": ("side", "hu", SUBTRACTION_WINDOW),
    "subtraction_vm": ("side", "hu", SUBTRACTION_WINDOW),
    "warped_prior": ("side", "hu", None),
    "zmap": ("overlay", "z", None),
}


def _build_layers() -> dict[str, LayerSpec]:
    """The exams plus one layer per aid of :data:`reader_study.aids.AIDS` (its name, label and output role), displayed as :data:`_AID_DISPLAY` says."""
    missing = sorted(set(AIDS) - set(_AID_DISPLAY))
    if missing:
        raise RuntimeError(f"reading_app/workstation/layers.py: no display for the study aid(s) {', '.join(missing)}; add them to _AID_DISPLAY.")
    specs = [LayerSpec("ct", "Current CT", "base", aid=False), LayerSpec("prior", "Prior CT", "side", aid=False)]
    for aid in AIDS.values():
        panel, volume_kind, window = _AID_DISPLAY[aid.name]
        specs.append(LayerSpec(aid.name, aid.label, panel, aid=True, output_role=aid.output_role, volume_kind=volume_kind, fixed_window=window))
    return {spec.name: spec for spec in specs}


LAYERS: dict[str, LayerSpec] = _build_layers()

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


def _case_outputs(case_dir: Path):  # -> detector.CaseOutputs | str (the reason there are none)
    from detector.outputs import CaseOutputsError, read_case_outputs

    try:
        return read_case_outputs(case_dir)
    except CaseOutputsError as exc:
        return str(exc)


#: Manifest role of the score the candidates are found on; the z-map layer shows it when present.
SCORE_ROLE = "candidate_score"


def layer_files(
    *,
    case_code: str,
    current_path: str | Path,
    prior_path: str | Path | None,
    overlays: Iterable[str],
    detector_dir: str | Path,
) -> dict[str, Path]:
    """The file of every layer allowed by ``overlays`` (and only those): the exams and the detector's outputs for the case.

    Aid layers come from the case's output manifest (:func:`detector.read_case_outputs`). Every
    allowed aid gets a path; one the case has no output for points where nothing is — the
    missing ``outputs.json`` when the case has no manifest (not run, unfinished, or run before
    manifests existed) — and is reported as unavailable, naming that path, when it is asked for.
    Files are neither checked for existence nor hashed here.
    """
    from detector.outputs import MANIFEST_NAME, ROLES

    files: dict[str, Path] = {"ct": Path(current_path)}
    if prior_path:
        files["prior"] = Path(prior_path)
    aids = sorted(allowed_layers(overlays) & AID_LAYERS)
    if not aids:
        return files
    case_dir = Path(detector_dir) / case_code
    outputs = _case_outputs(case_dir)
    for name in aids:
        role = str(LAYERS[name].output_role)
        if isinstance(outputs, str):
            files[name] = case_dir / MANIFEST_NAME
        elif name == "zmap" and outputs.has(SCORE_ROLE):
            # The overlay shows what the candidates were found on (the matched-filter score,
            # coloured from the candidates' threshold; see overlay_style_for), as the
            # detector's DICOM overlay does; older outputs without it fall back to z.
            files[name] = outputs.path(SCORE_ROLE)
        else:
            files[name] = outputs.path(role) if outputs.has(role) else case_dir / ROLES[role][0]
    return files


def check_detector_outputs(
    case_codes: Sequence[str],
    overlays: Iterable[str],
    detector_dir: str | Path,
    *,
    current: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """One row per case and aid layer that ``overlays`` shows: the file, whether it is present and, if not, why.

    Coordinators run it before opening a study: an aided reading of a case without its z-map
    would show the reader nothing, silently. A case's outputs count as present when its manifest
    lists the layer's role and the file is there. With ``current`` (case -> the current exam's
    path, read with :func:`cases.read_grid`, or its grid, e.g. the study database's record) the
    outputs' grid is also checked against it.
    """
    aids = sorted(allowed_layers(overlays) & AID_LAYERS)
    rows = []
    for code in case_codes:
        if not aids:
            continue
        outputs = _case_outputs(Path(detector_dir) / code)
        problem = outputs if isinstance(outputs, str) else None
        if problem is None and current is not None and code in current:
            from cases import GridReadError, read_grid

            exam = current[code]
            try:
                mismatch = outputs.grid.mismatch(read_grid(exam) if isinstance(exam, (str, Path)) else exam)
            except GridReadError as exc:
                mismatch = str(exc)
            if mismatch is not None:
                problem = f"the outputs are not on the current exam's grid ({mismatch}); rerun tsct detect for this case"
        for name in aids:
            role = str(LAYERS[name].output_role)
            if problem is not None:
                rows.append({"case": code, "layer": name, "file": str(Path(detector_dir) / code), "present": False, "problem": problem})
            elif not outputs.has(role):
                rows.append(
                    {
                        "case": code,
                        "layer": name,
                        "file": str(Path(detector_dir) / code),
                        "present": False,
                        "problem": f"the detector wrote no {role!r} output for this case",
                    }
                )
            else:
                path = outputs.path(role)
                present = path.exists()
                rows.append(
                    {
                        "case": code,
                        "layer": name,
                        "file": str(path),
                        "present": present,
                        "problem": None if present else "listed in outputs.json but missing",
                    }
                )
    return pd.DataFrame(rows, columns=["case", "layer", "file", "present", "problem"])


def overlay_style_for(path: str | Path, threshold: float, saturation: float) -> tuple[float, float]:
    """The (threshold, saturation) to colour the z-map layer's file ``path`` with.

    For the candidates' score (role ``candidate_score``) these are the candidates' own threshold
    (``parameters.threshold`` of ``candidates.json`` beside it) and 2.5 times it, the rule of the
    detector's DICOM overlay (:func:`detector.zscore_outputs.overlay_map`), so every candidate at
    the operating point is coloured. For a z-map, the settings' ``threshold`` and ``saturation``.

    Raises
    ------
    ViewError
        The score has no readable candidates' threshold beside it.
    """
    import json

    from detector.outputs import ROLES

    from .errors import ViewError

    path = Path(path)
    if path.name != ROLES[SCORE_ROLE][0]:
        return float(threshold), float(saturation)
    cand = path.parent / ROLES["candidates_json"][0]
    try:
        t = float(json.loads(cand.read_text(encoding="utf-8"))["parameters"]["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ViewError(
            f"The candidates' threshold for {path} could not be read from {cand} ({type(exc).__name__}); rerun tsct detect for this case."
        ) from exc
    if not (t > 0 and t < 1e6):
        raise ViewError(f"The candidates' threshold {t} in {cand} is not a positive number; rerun tsct detect for this case.")
    return t, 2.5 * t


_SYNC_CACHE: dict = {}


def registration_file(detector_dir: str | Path, case_code: str) -> Path | None:
    """The case's registration transform (manifest role ``transform``: current → prior points), or None without one."""
    outputs = _case_outputs(Path(detector_dir) / case_code)
    if isinstance(outputs, str) or not outputs.has("transform"):
        return None
    return outputs.path("transform")


def registration_prior_sync(detector_dir: str | Path, case_code: str, current, prior) -> dict[str, list[int]] | None:  # noqa: ANN001 - DisplayGrid
    """``{plane: [prior slice per current slice]}`` through the case's registration (manifest role ``transform``), or None.

    None when the case has no manifest, no transform, or the transform cannot be read: the prior
    then follows table position. The registration is geometry, not an aid (it shows no finding),
    so it is used in unaided readings too. Cached by the transform file's path, size and time.
    """
    from .geometry import PLANES, synced_prior_slices
    from .readout import read_transform

    if prior is None:
        return None
    path = registration_file(detector_dir, case_code)
    if path is None:
        return None
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, current, prior)
    except OSError:
        return None
    if key in _SYNC_CACHE:
        return _SYNC_CACHE[key]
    transform = read_transform(path)
    if transform is None:
        return None
    result = {plane: synced_prior_slices(current, prior, transform, plane) for plane in PLANES}
    if len(_SYNC_CACHE) > 64:
        _SYNC_CACHE.clear()
    _SYNC_CACHE[key] = result
    return result
