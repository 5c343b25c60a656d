"""Synthetic prior/current spine CT pairs with known truth, for demos and tests.

No patient data can be shipped, so the platform generates its own exam pairs. Each pair is a
thoracolumbar CT (vertebrae with cortex and trabecular cancellous bone, pedicles, laminae,
articular, spinous and transverse processes, discs, canal, ribs, sacrum and iliac wings, and
the soft tissue around them) seen twice, months apart, with the patient repositioned, the
spinal curvature changed, independent scanner noise and, in abnormal cases, new metastases in
the current exam only. Everything is drawn from one integer seed.

Coordinates and conventions
---------------------------
* All points are DICOM/ITK **LPS** millimetres (x to the patient's left, y posterior,
  z superior). Volumes hold arrays in (z, y, x) order; spacing and origin are (x, y, z).
* The anatomy is built analytically in the **prior exam's frame** and painted with partial
  volume onto an *anatomy grid* (the finer of the two exams' spacings, covering both fields
  of view). The prior exam is the anatomy blurred by the prior scanner's point-spread function
  and sampled on the prior grid.
* The **true transform** ``T`` maps a point of the current exam to the corresponding point of
  the prior exam: ``current(x) = anatomy(T(x))`` (plus the new lesions and noise), where
  ``anatomy`` is the prior-frame anatomy, trilinearly interpolated from the anatomy grid.
  ``T = E ∘ (Id + u)``: first a smooth displacement ``u`` defined on the current exam's space
  (a change of spinal curvature: beam-like bending in the sagittal and coronal planes, plus a
  small random smooth field; at most a few mm), then a rigid Euler transform ``E`` (rotations
  of a few degrees, translation up to ~20 mm). This is exactly what an ITK/SimpleITK
  registration with **fixed = current, moving = prior** estimates, so a registration result
  can be compared with ``T`` point by point.
* ``T`` is saved with ``sitk.WriteTransform`` as ``true_transform.h5``: an ITK
  ``CompositeTransform`` holding ``[Euler3DTransform, DisplacementFieldTransform]`` (ITK applies
  the last one first). Read it back with :func:`load_true_transform`, map points with
  :func:`map_points_mm`, and get the true displacement at bone voxels for target registration
  error with :func:`true_bone_displacements_mm`. ``sitk.Resample(prior, current, T)`` brings
  the prior onto the current exam's grid.
* **Lesions** are drawn in current-exam coordinates and exist only in the current exam. Each
  is an irregular blob (radius modulated by ±18 % with direction) clipped to the bone part it
  belongs to, so it never leaves bone of its location class. Lytic lesions replace bone by
  0-50 HU tissue (some break through the cortex), blastic ones raise it to 600-1200 HU, mixed
  ones do both in a mottled pattern. Truth: the label map on the current grid (value ``k`` for
  lesion ``k``), the label's centroid (``center_mm``, LPS of the current exam) and the radius
  of the ball around it holding the whole label (``radius_mm``).
* **Benign findings**: some pairs get sclerotic bone islands (600-1000 HU) present in both
  exams, and aortic wall calcifications, so that "anything bright" is not a detector.
* Noise is spatially correlated Gaussian noise (15-30 HU), independent per exam. Values are
  rounded to whole HU and clipped to [-1024, 3071]; files store int16 HU.

Reproducibility: :func:`synthesize_pair` with the same arguments returns identical arrays; the
arguments are kept in ``parameters["request"]`` (and in each case's ``params.json``), and
:func:`synthesize_from_parameters` rebuilds a pair from them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

from ._phantom import (
    Anatomy,
    BoneClass,
    Grid,
    RenderedAnatomy,
    TextureBlock,
    Tissue,
    draw_phantom_parameters,
    ellipsoid_sdf,
    ramp,
    render_anatomy,
)
from .caselist import Case, CaseList, Lesion, LesionLocation, LesionType, write_case_list
from .io import write_dicom_series, write_volume
from .volume import LabelVolume, Volume

__all__ = [
    "SyntheticPair",
    "SynthesisError",
    "SIZES",
    "BONE_LABELS",
    "TISSUE_LABELS",
    "synthesize_pair",
    "synthesize_from_parameters",
    "synthesize_case_set",
    "write_pair",
    "load_true_transform",
    "map_points_mm",
    "true_bone_displacements_mm",
]

GENERATOR = "tsct.cases.synth"
GENERATOR_VERSION = "1.0"
HU_MIN, HU_MAX = -1024.0, 3071.0

#: Label values of the bone label maps (0 = not bone).
BONE_LABELS: dict[str, int] = {c.location: int(c) for c in BoneClass}
#: Label values of the tissue label map (``SyntheticPair.prior_tissue_label``).
TISSUE_LABELS: dict[str, int] = {t.name.lower(): int(t) for t in Tissue}
LOCATIONS = tuple(c.location for c in BoneClass if c is not BoneClass.OTHER)

#: Nominal lesion radius range (mm) per location, limited by how thick that bone is.
LESION_RADIUS_MM: dict[str, tuple[float, float]] = {
    "vertebral_body": (2.5, 9.5),
    "pedicle": (1.8, 4.0),
    "lamina_arch": (1.5, 3.0),
    "spinous_process": (1.5, 3.5),
    "transverse_process": (1.5, 3.0),
    "rib": (1.5, 3.0),
    "pelvis": (2.5, 9.0),
}
LOCATION_WEIGHTS: dict[str, float] = {
    "vertebral_body": 0.38,
    "pedicle": 0.12,
    "lamina_arch": 0.1,
    "spinous_process": 0.08,
    "transverse_process": 0.08,
    "rib": 0.12,
    "pelvis": 0.12,
}
TYPE_WEIGHTS: dict[str, float] = {"lytic": 0.45, "blastic": 0.4, "mixed": 0.15}
MAX_LESIONS = 12


class SynthesisError(ValueError):
    """A synthetic case cannot be made as asked (bad argument, or no room for a lesion)."""


@dataclass(frozen=True)
class SizePreset:
    """Grid of an exam: matrix (x, y, z), voxel spacing (mm) and what the field of view covers."""

    name: str
    size_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    fov: str  # "spine": centred on the spine (targeted reconstruction); "body": whole cross-section
    z_spacing_options_mm: tuple[float, ...]


SIZES: dict[str, SizePreset] = {
    "small": SizePreset("small", (128, 128, 96), (1.5, 1.5, 2.0), "spine", (1.5, 2.5, 3.0)),
    "clinical": SizePreset("clinical", (512, 512, 300), (0.75, 0.75, 1.0), "body", (1.25, 2.0, 0.8)),
}

_KERNELS = {
    # in-plane PSF sigma (mm) and noise correlation (voxels, x/y and z)
    "standard": {"psf_sigma_mm": 0.45, "noise_corr_vox": (0.85, 0.5)},
    "sharp": {"psf_sigma_mm": 0.3, "noise_corr_vox": (0.6, 0.4)},
}


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------
@dataclass
class SyntheticPair:
    """A synthetic prior/current exam pair with its truth.

    Attributes
    ----------
    case_id : the case identifier.
    prior, current : the two exams (float32 HU, whole numbers, LPS geometry; the parameters are
        in ``metadata["synthetic"]`` and DICOM-style header fields in ``metadata["dicom"]``).
    lesion_labels : label map on the current grid; value ``k`` marks lesion ``k`` (1-based).
    lesions : truth lesions (``label_value`` = their value in ``lesion_labels``).
    true_transform : ITK transform mapping current-exam points to prior-exam points.
    bone_label : bone of the current exam by location class (values in :data:`BONE_LABELS`).
    parameters : everything needed to rebuild the pair and its measured truth (JSON-ready).
    prior_bone_label : the same on the prior grid.
    prior_tissue_label : tissue class of each prior voxel (values in :data:`TISSUE_LABELS`).
    noise_free : noise-free ``"prior"`` and ``"current"`` volumes when asked for.
    """

    case_id: str
    prior: Volume
    current: Volume
    lesion_labels: LabelVolume
    lesions: list[Lesion]
    true_transform: sitk.Transform
    bone_label: LabelVolume
    parameters: dict[str, Any]
    prior_bone_label: LabelVolume | None = None
    prior_tissue_label: LabelVolume | None = None
    noise_free: dict[str, Volume] = field(default_factory=dict)

    @property
    def abnormal(self) -> bool:
        return bool(self.lesions)

    def summary(self) -> str:
        """One line: case, size, lesions by type and location, benign findings, motion."""
        les = ", ".join(f"{les.lesion_type.value} {les.location.value} r={les.radius_mm:.1f} mm" for les in self.lesions) or "none"
        rig = self.parameters["transform"]["rigid"]
        benign = len(self.parameters["benign_findings"])
        return (
            f"{self.case_id}: prior {self.prior.size} / current {self.current.size} voxels; lesions: {les}; "
            f"benign bone islands: {benign}; rotation {', '.join(f'{a:+.1f}' for a in rig['angles_deg'])} deg, "
            f"translation {np.linalg.norm(rig['translation_mm']):.1f} mm, "
            f"max non-rigid {self.parameters['transform']['nonrigid']['max_displacement_mm']:.1f} mm"
        )

    def __repr__(self) -> str:
        return f"SyntheticPair({self.summary()})"


# ----------------------------------------------------------------------------------------------
# Transform helpers (public)
# ----------------------------------------------------------------------------------------------
def load_true_transform(path: str | Path) -> sitk.Transform:
    """Read a case's true transform (current-exam point -> prior-exam point, LPS mm).

    Raises
    ------
    SynthesisError
        When the file is missing or is not an ITK transform file.
    """
    path = Path(path)
    if not path.is_file():
        raise SynthesisError(f"{path}: true-transform file not found; synthetic cases store it as true_transform.h5.")
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise SynthesisError(f"{path}: not a readable ITK transform file ({last}).") from None


def map_points_mm(transform: sitk.Transform, points_mm: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Apply a transform to points, shape (n, 3) in LPS mm; returns the mapped points (n, 3)."""
    pts = np.atleast_2d(np.asarray(points_mm, dtype=float))
    if pts.shape[-1] != 3:
        raise ValueError(f"points_mm must have shape (n, 3), got {pts.shape}")
    return np.array([transform.TransformPoint(tuple(p)) for p in pts], dtype=float).reshape(pts.shape)


def true_bone_displacements_mm(
    transform: sitk.Transform,
    bone_label: LabelVolume,
    *,
    max_points: int = 20000,
    seed: int = 0,
    erode_mm: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """True displacement ``T(x) - x`` at bone voxels of the current exam, for TRE.

    Parameters
    ----------
    transform : the true transform (current -> prior), e.g. from :func:`load_true_transform`.
    bone_label : the current exam's bone label map (any non-zero value is bone).
    max_points : at most this many voxels, drawn at random (seeded) when there are more.
    erode_mm : keep only voxels at least this deep inside bone.

    Returns
    -------
    points_mm : (n, 3) voxel centres in the current exam (LPS mm).
    displacement_mm : (n, 3) ``T(x) - x``. For an estimated transform ``R`` of the same kind,
        the target registration error is ``|R(x) - T(x)|`` at ``points_mm``.
    """
    mask = bone_label.array != 0
    if erode_mm > 0:
        mask = ndi.distance_transform_edt(mask, sampling=bone_label.spacing_mm[::-1]) >= erode_mm
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise SynthesisError("The bone label map holds no bone voxels (after erosion); nothing to measure.")
    if len(idx) > max_points:
        idx = idx[np.sort(np.random.default_rng(seed).choice(len(idx), max_points, replace=False))]
    ijk = idx[:, ::-1].astype(float)  # (x, y, z) index order
    pts = np.asarray(bone_label.origin_mm) + (ijk * np.asarray(bone_label.spacing_mm)) @ bone_label.direction_matrix.T
    return pts, map_points_mm(transform, pts) - pts


# ----------------------------------------------------------------------------------------------
# Main entry points
# ----------------------------------------------------------------------------------------------
_STREAMS = ("options", "anatomy", "transform", "acquisition", "islands", "lesions", "noise_prior", "noise_current", "header")


def synthesize_pair(
    case_id: str,
    *,
    seed: int,
    size: str = "small",
    abnormal: bool = True,
    n_lesions: int | None = None,
    benign_finding: bool | None = None,
    include_pelvis: bool | None = None,
    vary_acquisition: bool | None = None,
    lesion_types: Sequence[str] | None = None,
    lesion_locations: Sequence[str] | None = None,
    lesion_radius_mm: tuple[float, float] | None = None,
    noise_sigma_hu: float | None = None,
    keep_noise_free: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> SyntheticPair:
    """Generate one prior/current spine CT pair with known truth.

    Parameters
    ----------
    case_id : identifier written into the headers and truth.
    seed : everything random comes from this integer; the same arguments give the same voxels.
    size : ``"small"`` (128 x 128 x 96 voxels of 1.5 x 1.5 x 2 mm, a targeted spine field of
        view, for tests) or ``"clinical"`` (512 x 512 x 300 of 0.75 x 0.75 x 1 mm, whole body
        cross-section).
    abnormal : whether the current exam gets new lesions.
    n_lesions : number of new lesions (abnormal only; default 1-5 drawn from the seed).
    benign_finding : add unchanged sclerotic bone islands to both exams (default: drawn,
        probability 0.35, for normal and abnormal cases alike).
    include_pelvis : put the field of view low enough to include sacrum and iliac wings
        (default: drawn, probability 0.35).
    vary_acquisition : give the current exam a different slice thickness, field of view and
        reconstruction kernel (default: drawn, probability 0.3).
    lesion_types, lesion_locations : the type (``lytic``, ``blastic``, ``mixed``) and location
        class of each lesion, in order; shorter lists are completed at random. A location
        that the field of view does not contain (e.g. ``pelvis`` in a high window) raises.
    lesion_radius_mm : (low, high) nominal radius range overriding the per-location defaults
        of :data:`LESION_RADIUS_MM` (bone thickness still limits it).
    noise_sigma_hu : noise standard deviation of both exams (default: 15-30 HU, drawn per exam).
    keep_noise_free : also return the noise-free volumes in ``noise_free``.
    progress : called as ``progress(stage, fraction)`` while working.

    Returns
    -------
    SyntheticPair

    Raises
    ------
    SynthesisError
        For invalid arguments, or when a requested lesion finds no room in its bone class.
    """
    request = {
        "case_id": str(case_id),
        "seed": int(seed),
        "size": size,
        "abnormal": bool(abnormal),
        "n_lesions": n_lesions,
        "benign_finding": benign_finding,
        "include_pelvis": include_pelvis,
        "vary_acquisition": vary_acquisition,
        "lesion_types": list(lesion_types) if lesion_types is not None else None,
        "lesion_locations": list(lesion_locations) if lesion_locations is not None else None,
        "lesion_radius_mm": list(lesion_radius_mm) if lesion_radius_mm is not None else None,
        "noise_sigma_hu": noise_sigma_hu,
    }
    _validate_request(request)
    report = progress or (lambda _stage, _f: None)
    preset = SIZES[size]
    streams = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(len(_STREAMS)))))

    # --- random choices --------------------------------------------------------------------
    opt = streams["options"]
    draws = {
        "include_pelvis": bool(opt.random() < 0.35),
        "vary_acquisition": bool(opt.random() < 0.3),
        "benign_finding": bool(opt.random() < 0.35),
        "n_lesions": int(1 + opt.binomial(4, 0.3)),
    }
    include_pelvis = draws["include_pelvis"] if include_pelvis is None else bool(include_pelvis)
    vary = draws["vary_acquisition"] if vary_acquisition is None else bool(vary_acquisition)
    benign = draws["benign_finding"] if benign_finding is None else bool(benign_finding)
    n_new = 0 if not abnormal else (draws["n_lesions"] if n_lesions is None else int(n_lesions))

    report("anatomy", 0.0)
    phantom_params = draw_phantom_parameters(streams["anatomy"])
    anatomy = Anatomy(phantom_params)

    # --- exam geometry and the true transform ------------------------------------------------
    prior_acq = _prior_acquisition(preset, anatomy, include_pelvis, opt, noise_sigma_hu)
    rigid = _draw_rigid(streams["transform"], prior_acq["fov_center_mm"])
    euler = _euler(rigid)
    current_acq = _current_acquisition(preset, prior_acq, euler, vary, streams["acquisition"], noise_sigma_hu)
    prior_grid = _grid_of(prior_acq)
    current_grid = _grid_of(current_acq)
    displacement, nonrigid = _draw_displacement(streams["transform"], anatomy, current_grid, euler)
    transform = sitk.CompositeTransform([euler, _displacement_transform(displacement)])
    anat_grid = _anatomy_grid(anatomy, prior_grid, current_grid, transform, prior_acq, current_acq)

    # --- anatomy -------------------------------------------------------------------------------
    rendered = render_anatomy(anatomy, anat_grid, progress=lambda f: report("anatomy", 0.4 * f))
    report("benign findings", 0.4)
    islands = _place_bone_islands(rendered, streams["islands"], benign, prior_grid, current_grid, transform)
    _paint_bone_islands(rendered, islands)
    phantom_params.bone_islands = islands

    # --- new lesions (current exam only) -------------------------------------------------
    report("lesions", 0.45)
    plan = _plan_lesions(streams["lesions"], n_new, request, rendered, _visible_box(anat_grid, prior_grid, current_grid, transform))
    lesion_delta, lesion_map, lesion_records = _place_lesions(rendered, plan, streams["lesions"], prior_grid, current_grid, transform, current_acq)

    # --- scanner: blur, sample, noise ----------------------------------------------------------
    report("prior exam", 0.55)
    prior_nf, prior_bone, prior_tissue, blurred = _sample_prior(rendered, prior_grid, prior_acq)
    report("current exam", 0.65)
    current_nf, codes = _sample_current(rendered, blurred, lesion_delta, lesion_map, current_grid, current_acq, prior_acq, transform)
    del lesion_delta, blurred
    report("noise", 0.85)
    prior_hu = _add_noise(prior_nf, prior_acq, streams["noise_prior"], copy=keep_noise_free)
    current_hu = _add_noise(current_nf, current_acq, streams["noise_current"], copy=keep_noise_free)
    bone_current = (codes & 15).astype(np.uint8)
    lesions_current = (codes >> 4).astype(np.uint8)
    del codes

    # --- truth on the current grid -------------------------------------------------------------
    lesions, lesion_truth = _measure_lesions(lesions_current, current_grid, lesion_records, case_id)
    header = _headers(case_id, streams["header"])
    geometry = {"prior": _grid_dict(prior_grid), "current": _grid_dict(current_grid), "anatomy": _grid_dict(anat_grid)}
    params: dict[str, Any] = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "request": request,
        "resolved": {"include_pelvis": include_pelvis, "vary_acquisition": vary, "benign_finding": benign, "n_lesions": n_new},
        "coordinates": "LPS mm; true_transform maps current-exam points to prior-exam points",
        "anatomy": {k: v for k, v in phantom_params.to_dict().items() if k != "bone_islands"},
        "parts": anatomy.part_table(),
        "landmarks_prior_mm": anatomy.landmarks(),
        "acquisition": {"prior": _jsonable(prior_acq), "current": _jsonable(current_acq)},
        "geometry": geometry,
        "transform": {"rigid": rigid, "nonrigid": nonrigid, "order": "T(x) = Euler(x + u(x)); CompositeTransform([Euler3D, DisplacementField])"},
        "benign_findings": [{k: v for k, v in isl.items()} for isl in islands],
        "lesions": lesion_truth,
        "bone_labels": BONE_LABELS,
        "tissue_labels": TISSUE_LABELS,
        "header": header,
    }
    params["landmarks_current_mm"] = {
        name: [float(v) for v in x]
        for name, x in ((n, _inverse_point(transform, np.asarray(p))) for n, p in params["landmarks_prior_mm"].items())
        if _inside(current_grid, x)
    }
    params = _jsonable(params)

    prior = _volume(prior_hu, prior_grid, "prior", prior_acq, header, params, case_id)
    current = _volume(current_hu, current_grid, "current", current_acq, header, params, case_id)
    pair = SyntheticPair(
        case_id=str(case_id),
        prior=prior,
        current=current,
        lesion_labels=LabelVolume(lesions_current, current_grid.spacing_mm, current_grid.origin_mm, metadata={"labels": "lesion k has value k"}),
        lesions=lesions,
        true_transform=transform,
        bone_label=LabelVolume(bone_current, current_grid.spacing_mm, current_grid.origin_mm, metadata={"labels": BONE_LABELS}),
        parameters=params,
        prior_bone_label=LabelVolume(prior_bone, prior_grid.spacing_mm, prior_grid.origin_mm, metadata={"labels": BONE_LABELS}),
        prior_tissue_label=LabelVolume(prior_tissue, prior_grid.spacing_mm, prior_grid.origin_mm, metadata={"labels": TISSUE_LABELS}),
    )
    if keep_noise_free:
        pair.noise_free = {
            "prior": Volume(prior_nf, prior_grid.spacing_mm, prior_grid.origin_mm, metadata={"noise_free": True}),
            "current": Volume(current_nf, current_grid.spacing_mm, current_grid.origin_mm, metadata={"noise_free": True}),
        }
    report("done", 1.0)
    return pair


def synthesize_from_parameters(parameters: dict[str, Any] | str | Path, **overrides: Any) -> SyntheticPair:
    """Rebuild a pair from its parameters (a ``params.json`` path or the parsed dict).

    ``overrides`` replace request arguments (e.g. ``keep_noise_free=True``).
    """
    if not isinstance(parameters, dict):
        path = Path(parameters)
        try:
            parameters = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SynthesisError(f"{path}: cannot read synthetic-case parameters ({exc}).") from None
    if parameters.get("generator") != GENERATOR or "request" not in parameters:
        raise SynthesisError("These parameters were not written by the synthetic-case generator (no 'request' section).")
    if parameters.get("generator_version") != GENERATOR_VERSION:
        raise SynthesisError(
            f"The parameters come from generator version {parameters.get('generator_version')}, this is {GENERATOR_VERSION}; "
            "voxels may differ. Regenerate the case set with this version."
        )
    request = dict(parameters["request"])
    request.update(overrides)
    case_id = request.pop("case_id")
    if request.get("lesion_radius_mm") is not None:
        request["lesion_radius_mm"] = tuple(request["lesion_radius_mm"])
    return synthesize_pair(case_id, **request)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def _validate_request(req: dict[str, Any]) -> None:
    if req["size"] not in SIZES:
        raise SynthesisError(f"size must be one of {', '.join(SIZES)}, got {req['size']!r}.")
    if not 0 <= req["seed"] < 2**63:
        raise SynthesisError(f"seed must be a non-negative integer, got {req['seed']}.")
    n = req["n_lesions"]
    if n is not None:
        if not req["abnormal"] and n:
            raise SynthesisError(f"A normal case (abnormal=False) has no new lesions, but n_lesions={n}; set abnormal=True.")
        if req["abnormal"] and not 1 <= n <= MAX_LESIONS:
            raise SynthesisError(f"n_lesions must be between 1 and {MAX_LESIONS} for an abnormal case, got {n}.")
    for name, allowed in (("lesion_types", TYPE_WEIGHTS), ("lesion_locations", LESION_RADIUS_MM)):
        values = req[name]
        if values is None:
            continue
        if not req["abnormal"]:
            raise SynthesisError(f"{name} given for a normal case; set abnormal=True.")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise SynthesisError(f"{name} has unknown value(s) {bad}; choose from {', '.join(allowed)}.")
        if n is not None and len(values) > n:
            raise SynthesisError(f"{name} lists {len(values)} lesions but n_lesions={n}.")
    rr = req["lesion_radius_mm"]
    if rr is not None and not (len(rr) == 2 and 0.5 <= rr[0] <= rr[1] <= 15):
        raise SynthesisError(f"lesion_radius_mm must be (low, high) with 0.5 <= low <= high <= 15 mm, got {rr}.")
    sig = req["noise_sigma_hu"]
    if sig is not None and not 0 <= sig <= 200:
        raise SynthesisError(f"noise_sigma_hu must be between 0 and 200 HU, got {sig}.")


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
def _prior_acquisition(
    preset: SizePreset, anatomy: Anatomy, include_pelvis: bool, rng: np.random.Generator, noise_sigma_hu: float | None
) -> dict[str, Any]:
    size = np.asarray(preset.size_xyz)
    sp = np.asarray(preset.spacing_mm, dtype=float)
    extent = (size - 1) * sp
    if include_pelvis:
        z_bottom = anatomy.z_of("S1") - rng.uniform(35.0, 60.0)
        zc = z_bottom + extent[2] / 2
    else:
        z_top = anatomy.z_of("T10", "top") + rng.uniform(-20.0, 20.0)
        zc = z_top - extent[2] / 2
    xs, ys = anatomy.spine_xy(np.array([zc]))
    if preset.fov == "spine":
        cx, cy = float(xs[0]) + rng.uniform(-4, 4), float(ys[0]) + 32.0 + rng.uniform(-4, 4)
    else:
        lo, hi = anatomy.body_box(zc - 50, zc + 50, margin_mm=0.0)
        cx, cy = float(anatomy.offset[0]) + rng.uniform(-10, 10), float((lo[1] + hi[1]) / 2) + rng.uniform(-10, 10)
    kernel = "standard"
    return {
        "size_xyz": [int(v) for v in size],
        "spacing_mm": [float(v) for v in sp],
        "slice_thickness_mm": float(sp[2]),
        "fov_center_mm": [cx, cy, float(zc)],
        "kernel": kernel,
        "psf_sigma_mm": [_KERNELS[kernel]["psf_sigma_mm"]] * 2 + [0.35 * float(sp[2])],
        "noise_corr_vox": [_KERNELS[kernel]["noise_corr_vox"][0]] * 2 + [_KERNELS[kernel]["noise_corr_vox"][1]],
        "noise_sigma_hu": float(noise_sigma_hu) if noise_sigma_hu is not None else float(rng.uniform(15.0, 30.0)),
    }


def _current_acquisition(
    preset: SizePreset, prior: dict[str, Any], euler: sitk.Euler3DTransform, vary: bool, rng: np.random.Generator, noise_sigma_hu: float | None
) -> dict[str, Any]:
    size = np.asarray(preset.size_xyz)
    sp = np.asarray(preset.spacing_mm, dtype=float)
    kernel = "standard"
    if vary:
        sp = sp.copy()
        sp[:2] *= rng.uniform(0.88, 1.12)  # another field of view with the same matrix
        coverage = (size[2] - 1) * sp[2]
        sp[2] = float(rng.choice(preset.z_spacing_options_mm))
        size = size.copy()
        size[2] = int(round(coverage / sp[2])) + 1
        kernel = str(rng.choice(list(_KERNELS)))
    # the technologist centres the new scan on the patient (to within a few mm)
    prior_center = np.asarray(prior["fov_center_mm"])
    center = np.asarray(euler.GetInverse().TransformPoint(tuple(prior_center))) + rng.uniform([-6, -6, -10], [6, 6, 10])
    return {
        "size_xyz": [int(v) for v in size],
        "spacing_mm": [float(v) for v in sp],
        "slice_thickness_mm": float(sp[2]),
        "fov_center_mm": [float(v) for v in center],
        "kernel": kernel,
        "psf_sigma_mm": [_KERNELS[kernel]["psf_sigma_mm"]] * 2 + [0.35 * float(sp[2])],
        "noise_corr_vox": [_KERNELS[kernel]["noise_corr_vox"][0]] * 2 + [_KERNELS[kernel]["noise_corr_vox"][1]],
        "noise_sigma_hu": float(noise_sigma_hu) if noise_sigma_hu is not None else float(rng.uniform(15.0, 30.0)),
    }


def _grid_of(acq: dict[str, Any]) -> Grid:
    size = np.asarray(acq["size_xyz"])
    sp = np.asarray(acq["spacing_mm"])
    origin = np.asarray(acq["fov_center_mm"]) - (size - 1) / 2 * sp
    origin = np.round(origin, 3)
    return Grid((int(size[2]), int(size[1]), int(size[0])), tuple(float(v) for v in sp), tuple(float(v) for v in origin))


def _grid_dict(grid: Grid) -> dict[str, Any]:
    return {"size_xyz": list(grid.size_xyz), "spacing_mm": list(grid.spacing_mm), "origin_mm": list(grid.origin_mm)}


def _inside(grid: Grid, point: np.ndarray, margin_mm: float = 0.0) -> bool:
    lo = np.asarray(grid.origin_mm) + margin_mm
    hi = grid.upper_mm - margin_mm
    return bool(np.all(point >= lo) and np.all(point <= hi))


def _draw_rigid(rng: np.random.Generator, center_mm: Sequence[float]) -> dict[str, Any]:
    angles = rng.uniform(-4.0, 4.0, size=3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    translation = direction * rng.uniform(5.0, 20.0)
    return {
        "angles_deg": [float(a) for a in angles],
        "translation_mm": [float(t) for t in translation],
        "center_mm": [float(c) for c in center_mm],
        "convention": "ITK Euler3DTransform: angles about x, y, z; matrix Rz.Rx.Ry (ITK default); x' = R (x - c) + c + t",
    }


def _euler(rigid: dict[str, Any]) -> sitk.Euler3DTransform:
    e = sitk.Euler3DTransform()
    e.SetCenter(tuple(rigid["center_mm"]))
    e.SetRotation(*[math.radians(a) for a in rigid["angles_deg"]])
    e.SetTranslation(tuple(rigid["translation_mm"]))
    return e


def _draw_displacement(
    rng: np.random.Generator, anatomy: Anatomy, current: Grid, euler: sitk.Euler3DTransform, spacing_mm: float = 8.0, margin_mm: float = 30.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Smooth displacement u on a coarse grid over the current exam (+ margin), in current coordinates.

    A beam-like bending about the spine (a change of lordosis/kyphosis and of lateral curvature:
    sections stay plane, so vertebrae rotate rather than shear), fading away from the spine,
    plus a small random smooth field.
    """
    lo = np.asarray(current.origin_mm) - margin_mm
    hi = current.upper_mm + margin_mm
    n = np.ceil((hi - lo) / spacing_mm).astype(int) + 1
    x = lo[0] + spacing_mm * np.arange(n[0])
    y = lo[1] + spacing_mm * np.arange(n[1])
    z = lo[2] + spacing_mm * np.arange(n[2])
    Zc, Yc, Xc = np.meshgrid(z, y, x, indexing="ij")
    # spine position seen in the current exam (approximately: ignoring u itself)
    inv = euler.GetInverse()
    zmid = float((lo[2] + hi[2]) / 2)
    prior_mid = np.asarray(euler.TransformPoint((float(current.origin_mm[0]), float(current.origin_mm[1]), zmid)))
    xs_p, ys_p = anatomy.spine_xy(np.array([prior_mid[2]]))
    spine_cur = np.asarray(inv.TransformPoint((float(xs_p[0]), float(ys_p[0]), float(prior_mid[2]))))
    amp_y = rng.uniform(1.5, 3.5) * rng.choice([-1, 1])
    amp_x = rng.uniform(0.0, 2.0) * rng.choice([-1, 1])
    wave_y, wave_x = rng.uniform(250, 450), rng.uniform(300, 500)
    ph_y, ph_x = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
    sigma_w = 110.0
    w = np.exp(-(((Xc - spine_cur[0]) ** 2 + (Yc - spine_cur[1]) ** 2) / (2 * sigma_w**2)))
    ky, kx = 2 * np.pi / wave_y, 2 * np.pi / wave_x
    fy, dfy = amp_y * np.sin(ky * Zc + ph_y), amp_y * ky * np.cos(ky * Zc + ph_y)
    fx, dfx = amp_x * np.sin(kx * Zc + ph_x), amp_x * kx * np.cos(kx * Zc + ph_x)
    u = np.zeros(Zc.shape + (3,), dtype=float)
    u[..., 0] = fx * w
    u[..., 1] = fy * w
    u[..., 2] = -((Yc - spine_cur[1]) * dfy + (Xc - spine_cur[0]) * dfx) * w
    # small random smooth field (soft-tissue settling, breathing)
    rand_amp = rng.uniform(0.3, 1.0)
    for c in range(3):
        f = ndi.gaussian_filter(rng.normal(size=Zc.shape), 40.0 / spacing_mm, mode="reflect")
        f /= max(np.abs(f).max(), 1e-9)
        u[..., c] += rand_amp * f
    mag = np.sqrt((u**2).sum(-1))
    limit = 5.0
    if mag.max() > limit:
        u *= limit / mag.max()
        mag *= limit / mag.max()
    grads = [np.gradient(u[..., c], spacing_mm, axis=a) for c in range(3) for a in (2, 1, 0)]
    J = np.stack(grads, -1).reshape(u.shape[:3] + (3, 3)) + np.eye(3)
    det = np.linalg.det(J)
    field_def = {"origin_mm": [float(v) for v in lo], "spacing_mm": spacing_mm, "u": u}
    info = {
        "grid_origin_mm": [float(v) for v in lo],
        "grid_spacing_mm": spacing_mm,
        "grid_size_xyz": [int(n[0]), int(n[1]), int(n[2])],
        "bending_ap_mm": float(amp_y),
        "bending_lr_mm": float(amp_x),
        "bending_wavelength_mm": [float(wave_y), float(wave_x)],
        "random_amplitude_mm": float(rand_amp),
        "max_displacement_mm": float(mag.max()),
        "jacobian_range": [float(det.min()), float(det.max())],
    }
    return field_def, info


def _displacement_transform(field_def: dict[str, Any]) -> sitk.DisplacementFieldTransform:
    img = sitk.GetImageFromArray(np.ascontiguousarray(field_def["u"], dtype=np.float64), isVector=True)
    img.SetOrigin(tuple(field_def["origin_mm"]))
    img.SetSpacing((field_def["spacing_mm"],) * 3)
    return sitk.DisplacementFieldTransform(img)


def _inverse_point(transform: sitk.CompositeTransform, p_prior: np.ndarray, n_iter: int = 50) -> np.ndarray:
    """The current-exam point x with T(x) = p, for T = E o (Id + u).

    Solves x + u(x) = E^-1(p) by fixed-point iteration, which converges because u is smooth
    (|grad u| << 1); the residual is below 1e-6 mm.
    """
    euler, disp = transform.GetNthTransform(0), transform.GetNthTransform(1)
    q = np.asarray(euler.GetInverse().TransformPoint(tuple(float(v) for v in p_prior)))
    x = q.copy()
    for _ in range(n_iter):
        x_new = q - (np.asarray(disp.TransformPoint(tuple(x))) - x)
        if np.linalg.norm(x_new - x) < 1e-7:
            return x_new
        x = x_new
    return x


def _anatomy_grid(anatomy: Anatomy, prior: Grid, current: Grid, transform: sitk.Transform, prior_acq: dict, current_acq: dict) -> Grid:
    """The grid the anatomy is painted on: covers the prior grid and the current grid seen
    through T (plus blur margins), at the finer spacing, on the prior grid's lattice, and clipped
    to the body outline (air elsewhere)."""
    sp = np.minimum(np.asarray(prior.spacing_mm), np.asarray(current.spacing_mm))
    lo_c, hi_c = np.asarray(current.origin_mm), current.upper_mm
    ticks = [np.linspace(lo_c[i], hi_c[i], 7) for i in range(3)]
    pts = np.array([(a, b, c) for a in ticks[0] for b in ticks[1] for c in ticks[2]])
    mapped = map_points_mm(transform, pts)
    margin = 3 * np.maximum(np.asarray(prior_acq["psf_sigma_mm"]), np.asarray(current_acq["psf_sigma_mm"])) + 2 * np.asarray(current.spacing_mm) + 2.0
    lo = np.minimum(np.asarray(prior.origin_mm), mapped.min(0)) - margin
    hi = np.maximum(prior.upper_mm, mapped.max(0)) + margin
    body_lo, body_hi = anatomy.body_box(lo[2], hi[2], margin_mm=max(10.0, float(margin.max())))
    lo[:2] = np.maximum(lo[:2], body_lo[:2])
    hi[:2] = np.minimum(hi[:2], body_hi[:2])
    # snap to the prior lattice at the anatomy spacing
    o_p = np.asarray(prior.origin_mm)
    k_lo = np.floor((lo - o_p) / sp)
    k_hi = np.ceil((hi - o_p) / sp)
    origin = o_p + k_lo * sp
    n = (k_hi - k_lo).astype(int) + 1
    return Grid((int(n[2]), int(n[1]), int(n[0])), tuple(float(v) for v in sp), tuple(float(v) for v in origin))


# ----------------------------------------------------------------------------------------------
# Benign findings and lesions (in the anatomy frame)
# ----------------------------------------------------------------------------------------------
def _part_depth(
    rendered: RenderedAnatomy, part_id: int, visible: tuple[slice, slice, slice] | None, cache: dict, pad_vox: int = 2
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Depth (mm) inside one bone part, on the part's bounding box within the region both exams
    see: the distance to the nearest voxel that is not bone of this part (or out of view)."""
    if part_id in cache:
        return cache[part_id]
    grid = rendered.grid
    part = rendered.anatomy.parts[part_id - 1]
    sl = grid.slices_for_box(*part.bbox())
    result = None
    if sl is not None and visible is not None:
        sl = tuple(slice(max(s.start - pad_vox, v.start), min(s.stop + pad_vox, v.stop)) for s, v in zip(sl, visible))
        if all(s.stop > s.start for s in sl):
            mask = (rendered.part[sl] == part_id) & (rendered.bone_sdf[sl] < 0)
            if mask.any():
                padded = np.pad(mask, 1, mode="constant", constant_values=False)
                depth = ndi.distance_transform_edt(padded, sampling=grid.spacing_mm[::-1])[1:-1, 1:-1, 1:-1]
                result = (sl, depth.astype(np.float32))
    cache[part_id] = result
    return result


def _visible_box(grid: Grid, prior: Grid, current: Grid, transform: sitk.Transform) -> tuple[slice, slice, slice] | None:
    """Anatomy-grid slices of the region inside the prior grid and (roughly) the current grid."""
    lo_c, hi_c = np.asarray(current.origin_mm), current.upper_mm
    ticks = [np.linspace(lo_c[i], hi_c[i], 5) for i in range(3)]
    mapped = map_points_mm(transform, np.array([(a, b, c) for a in ticks[0] for b in ticks[1] for c in ticks[2]]))
    lo = np.maximum(np.asarray(prior.origin_mm), mapped.min(0))
    hi = np.minimum(prior.upper_mm, mapped.max(0))
    if np.any(hi <= lo):
        return None
    return grid.slices_for_box(lo, hi)


def _visible(point_prior: np.ndarray, radius: float, prior: Grid, current: Grid, transform: sitk.Transform) -> np.ndarray | None:
    """The current-exam point of a prior-frame point if both exams contain its ball; else None."""
    margin = radius + 4.0
    if not _inside(prior, point_prior, margin):
        return None
    x = _inverse_point(transform, point_prior)
    if not _inside(current, x, margin):
        return None
    return x


def _candidates(depth: np.ndarray, sl, grid: Grid, lo_mm: float, hi_mm: float, rng: np.random.Generator, k: int = 40) -> list[np.ndarray]:
    idx = np.argwhere((depth >= lo_mm) & (depth <= hi_mm))
    if len(idx) == 0:
        return []
    pick = idx[rng.choice(len(idx), size=min(k, len(idx)), replace=False)]
    off = np.array([sl[0].start, sl[1].start, sl[2].start])
    zyx = pick + off
    return [np.asarray(grid.origin_mm) + zyx_i[::-1] * np.asarray(grid.spacing_mm) for zyx_i in zyx]


def _place_bone_islands(
    rendered: RenderedAnatomy, rng: np.random.Generator, benign: bool, prior: Grid, current: Grid, transform
) -> list[dict[str, Any]]:
    if not benign:
        return []
    anatomy = rendered.anatomy
    islands: list[dict[str, Any]] = []
    visible = _visible_box(rendered.grid, prior, current, transform)
    cache: dict = {}
    n = int(rng.integers(1, 3))
    pool = [q for q in anatomy.parts if q.location in (BoneClass.VERTEBRAL_BODY, BoneClass.PELVIS)]
    for _ in range(n):
        for _attempt in range(20):
            part = pool[int(rng.integers(len(pool)))]
            r = float(rng.uniform(1.5, 4.5))
            res = _part_depth(rendered, part.part_id, visible, cache)
            if res is None:
                continue
            sl, depth = res
            # inside cancellous bone: deeper than the radius plus the cortex
            found = None
            for c in _candidates(depth, sl, rendered.grid, 1.4 * r + part.cortex_mm + 1.0, 1e9, rng):
                if any(np.linalg.norm(c - np.asarray(o["center_prior_mm"])) < r + o["radius_mm"] + 6 for o in islands):
                    continue
                x = _visible(c, r, prior, current, transform)
                if x is not None:
                    found = (c, x)
                    break
            if found is None:
                continue
            c, x = found
            elong = float(rng.uniform(1.0, 1.4))
            islands.append(
                {
                    "kind": "bone_island",
                    "location": part.location.location,
                    "part": part.name,
                    "center_prior_mm": [float(v) for v in c],
                    "center_current_mm": [float(v) for v in x],
                    "radius_mm": r,
                    "semi_axes_mm": [r, r, r * elong],
                    "hu": float(rng.uniform(650.0, 1000.0)),
                }
            )
            break
    return islands


def _paint_bone_islands(rendered: RenderedAnatomy, islands: list[dict[str, Any]]) -> None:
    grid = rendered.grid
    width = float(np.mean(grid.spacing_mm))
    for island in islands:
        c = np.asarray(island["center_prior_mm"], dtype=float)
        ax = island["semi_axes_mm"]
        sl = grid.slices_for_box(c - max(ax) - 2, c + max(ax) + 2)
        if sl is None:
            continue
        z, y, x = grid.coords(sl)
        alpha = ramp(ellipsoid_sdf(x - c[0], y - c[1], z - c[2], *ax), width) * (rendered.bone_sdf[sl] < -0.5)
        h = rendered.hu[sl]
        h += alpha * (np.float32(island["hu"]) - h)
        np.copyto(rendered.tissue[sl], np.uint8(Tissue.CORTICAL_BONE), where=alpha >= 0.5)


def _plan_lesions(
    rng: np.random.Generator, n: int, request: dict[str, Any], rendered: RenderedAnatomy, visible: tuple[slice, slice, slice] | None
) -> list[dict[str, Any]]:
    """Types and location classes of the new lesions (locations limited to those in view)."""
    types = list(request["lesion_types"] or [])
    locs = list(request["lesion_locations"] or [])
    available = set()
    for q in rendered.anatomy.parts:
        box = rendered.grid.slices_for_box(*q.bbox())
        if box is not None and visible is not None and all(min(b.stop, v.stop) > max(b.start, v.start) for b, v in zip(box, visible)):
            available.add(q.location.location)
    for loc in locs:
        if loc not in available:
            raise SynthesisError(f"No {loc} bone in this case's field of view; choose another location or set include_pelvis=True for 'pelvis'.")
    plan = []
    for i in range(n):
        t = types[i] if i < len(types) else str(rng.choice(list(TYPE_WEIGHTS), p=np.array(list(TYPE_WEIGHTS.values()))))
        if i < len(locs):
            loc = locs[i]
        else:
            names = [k for k in LOCATION_WEIGHTS if k in available]
            w = np.array([LOCATION_WEIGHTS[k] for k in names])
            loc = str(rng.choice(names, p=w / w.sum()))
        plan.append({"lesion_type": t, "location": loc, "forced_location": i < len(locs), "radius_range": request["lesion_radius_mm"]})
    return plan


def _blob_sdf(z, y, x, c: np.ndarray, r: float, shape: dict[str, Any]) -> np.ndarray:
    """Irregular blob: radius r * (1 + 0.18 g(direction)), g a smooth random function, |g| <= 1."""
    dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
    rho = np.sqrt(dx * dx + dy * dy + dz * dz)
    inv = 1.0 / np.maximum(rho, np.float32(1e-3))
    nx, ny, nz = dx * inv, dy * inv, dz * inv
    Q = shape["Q"]
    g = Q[0][0] * nx * nx + Q[1][1] * ny * ny + Q[2][2] * nz * nz + 2 * (Q[0][1] * nx * ny + Q[0][2] * nx * nz + Q[1][2] * ny * nz)
    for a, m in zip(shape["lobe_weights"], shape["lobe_dirs"]):
        g = g + np.float32(a) * (nx * m[0] + ny * m[1] + nz * m[2]) ** 3
    g *= np.float32(shape["norm"])
    return rho - np.float32(r) * (1.0 + np.float32(0.18) * g)


def _random_blob_shape(rng: np.random.Generator) -> dict[str, Any]:
    A = rng.normal(size=(3, 3))
    Q = (A + A.T) / 2
    Q -= np.eye(3) * np.trace(Q) / 3
    dirs = rng.normal(size=(3, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    weights = rng.normal(size=3)
    # bound |g| on a dense sphere sample so the radius stays within r (1 +- 0.18)
    v = rng.normal(size=(4000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    g = np.einsum("ni,ij,nj->n", v, Q, v) + ((v @ dirs.T) ** 3) @ weights
    norm = 1.0 / max(np.abs(g).max() * 1.05, 1e-6)
    return {"Q": Q.tolist(), "lobe_dirs": dirs.tolist(), "lobe_weights": weights.tolist(), "norm": float(norm)}


def _place_lesions(
    rendered: RenderedAnatomy,
    plan: list[dict[str, Any]],
    rng: np.random.Generator,
    prior: Grid,
    current: Grid,
    transform,
    current_acq: dict[str, Any],
) -> tuple[list[tuple[tuple[slice, slice, slice], np.ndarray]], np.ndarray, list[dict[str, Any]]]:
    """Choose lesion sites and paint them as HU changes in the anatomy frame.

    Returns the HU changes (a list of (box, delta) pairs), the lesion label map in the anatomy
    frame (value k for lesion k) and one record per lesion.
    """
    grid = rendered.grid
    anatomy = rendered.anatomy
    lesion_map = np.zeros(grid.shape, dtype=np.uint8)
    deltas: list[tuple[tuple[slice, slice, slice], np.ndarray]] = []
    records: list[dict[str, Any]] = []
    r_floor = max(1.5, 0.75 * max(current_acq["spacing_mm"]))
    min_volume_mm3 = 4.0 * float(np.prod(current_acq["spacing_mm"]))  # at least ~4 voxels of the current exam
    taken: list[tuple[np.ndarray, float]] = [(np.asarray(i["center_prior_mm"]), i["radius_mm"]) for i in anatomy.p.bone_islands]
    tex = TextureBlock(rng, (1.0 / grid.spacing_mm[2], 1.0 / grid.spacing_mm[1], 1.0 / grid.spacing_mm[0]), n=64)
    mottle = TextureBlock(rng, (2.0 / grid.spacing_mm[2], 2.0 / grid.spacing_mm[1], 2.0 / grid.spacing_mm[0]), n=64)
    width = float(np.mean(grid.spacing_mm))
    visible = _visible_box(grid, prior, current, transform)
    cache: dict = {}
    for k, item in enumerate(plan, start=1):
        ltype = item["lesion_type"]
        breach = bool(ltype in ("lytic", "mixed") and rng.random() < 0.3)
        locations = [item["location"]] if item["forced_location"] else [item["location"], "vertebral_body", "pelvis", "pedicle"]
        placed = None
        for loc in dict.fromkeys(locations):
            lo_r, hi_r = item["radius_range"] or LESION_RADIUS_MM[loc]
            parts = [q for q in anatomy.parts if q.location.location == loc and grid.slices_for_box(*q.bbox()) is not None]
            for attempt in range(24):
                if not parts:
                    break
                part = parts[int(rng.integers(len(parts)))]
                res = _part_depth(rendered, part.part_id, visible, cache)  # computed once per part
                if res is None:
                    parts.remove(part)
                    continue
                sl, depth = res
                r = max(float(rng.uniform(lo_r, hi_r)) * (0.85 ** (attempt // 6)), r_floor)
                lo_d, hi_d = (0.5 * r, 0.9 * r) if breach else (1.15 * r + 0.5, 1e9)
                shape = _random_blob_shape(rng)
                for c in _candidates(depth, sl, grid, lo_d, hi_d, rng, k=25):
                    if any(np.linalg.norm(c - o) < r + ro + 3.0 for o, ro in taken):
                        continue
                    x = _visible(c, 1.2 * r, prior, current, transform)
                    if x is None:
                        continue
                    box = grid.slices_for_box(c - (1.25 * r + 2 * width), c + (1.25 * r + 2 * width))
                    z, y, xx = grid.coords(box)
                    d_blob = _blob_sdf(z, y, xx, c, r, shape)
                    in_part = rendered.part[box] == part.part_id
                    label = (d_blob < 0) & in_part & (rendered.bone_sdf[box] < 0)
                    if label.sum() * float(np.prod(grid.spacing_mm)) < min_volume_mm3:
                        continue  # too small to survive sampling on the current grid
                    placed = (part, r, c, x)
                    break
                if placed is not None:
                    break
            if placed is not None:
                break
        if placed is None:
            raise SynthesisError(
                f"Could not fit lesion {k} ({ltype}, {item['location']}) inside bone of that class visible in both exams; "
                "try another seed, location or a smaller lesion_radius_mm."
            )
        part, r, c, x = placed
        taken.append((c, r))
        bone_occ = ramp(rendered.bone_sdf[box], width) * in_part
        alpha = ramp(d_blob, width) * bone_occ
        old = rendered.hu[box]
        t = tex.sample(box, old.shape)
        lytic_hu = float(rng.uniform(10.0, 45.0))
        blastic_hu = float(rng.uniform(650.0, 1150.0))
        if ltype == "lytic":
            target = lytic_hu + 8.0 * t
        elif ltype == "blastic":
            target = np.maximum(blastic_hu + 60.0 * t, old)
        else:
            m = mottle.sample(box, old.shape)
            target = np.where(m > 0.2, np.maximum(blastic_hu + 60.0 * t, old), lytic_hu + 8.0 * t)
        delta = (alpha * (target - old)).astype(np.float32)
        if ltype == "mixed":
            label &= np.abs(delta) > 0  # keep the label where the tissue changed
        lm = lesion_map[box]
        lm[label] = k
        deltas.append((box, delta))
        vox_mm3 = float(np.prod(grid.spacing_mm))
        records.append(
            {
                "label_value": k,
                "lesion_type": ltype,
                "location": part.location.location,
                "part": part.name,
                "level": part.level,
                "center_prior_mm": [float(v) for v in c],
                "nominal_center_mm": [float(v) for v in x],
                "nominal_radius_mm": r,
                "cortical_breach": breach,
                "lesion_hu": lytic_hu if ltype == "lytic" else (blastic_hu if ltype == "blastic" else [lytic_hu, blastic_hu]),
                "shape": shape,
                "anatomy_frame_volume_mm3": float(label.sum() * vox_mm3),
                "mean_delta_hu_before_blur": float(delta[label].mean()) if label.any() else 0.0,
            }
        )
    return deltas, lesion_map, records


# ----------------------------------------------------------------------------------------------
# Scanner simulation
# ----------------------------------------------------------------------------------------------
def _psf_sigma_vox(acq: dict[str, Any], anat: Grid) -> tuple[float, float, float]:
    """Gaussian blur (anatomy-grid voxels, z/y/x order): the scanner PSF plus the extra voxel
    averaging when the exam's voxels are larger than the anatomy grid's."""
    out = []
    for i in (2, 1, 0):
        s_exam, s_anat = acq["spacing_mm"][i], anat.spacing_mm[i]
        sig2 = acq["psf_sigma_mm"][i] ** 2 + max(s_exam**2 - s_anat**2, 0.0) / 12.0
        out.append(math.sqrt(sig2) / s_anat)
    return tuple(out)


def _blur(array: np.ndarray, sigma_vox: Sequence[float]) -> np.ndarray:
    return ndi.gaussian_filter(array, sigma_vox, mode="nearest", truncate=3.0)


def _paste(target_grid: Grid, source_grid: Grid, source: np.ndarray, fill: float, dtype) -> np.ndarray | None:
    """Copy ``source`` into ``target_grid`` when both share spacing and lattice (else None)."""
    if not np.allclose(target_grid.spacing_mm, source_grid.spacing_mm):
        return None
    off = (np.asarray(target_grid.origin_mm) - np.asarray(source_grid.origin_mm)) / np.asarray(source_grid.spacing_mm)
    if not np.allclose(off, np.round(off), atol=1e-3):
        return None
    off = np.round(off).astype(int)[::-1]  # z, y, x
    out = np.full(target_grid.shape, fill, dtype=dtype)
    t_sl, s_sl = [], []
    for a in range(3):
        s0 = off[a]
        t0, t1 = max(0, -s0), min(target_grid.shape[a], source_grid.shape[a] - s0)
        if t1 <= t0:
            return out
        t_sl.append(slice(t0, t1))
        s_sl.append(slice(t0 + s0, t1 + s0))
    out[tuple(t_sl)] = source[tuple(s_sl)]
    return out


def _to_sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(grid.spacing_mm)
    img.SetOrigin(grid.origin_mm)
    return img


def _resample(array: np.ndarray, source: Grid, target: Grid, transform: sitk.Transform, interpolator, default: float, pixel) -> np.ndarray:
    ref = sitk.Image(target.size_xyz, sitk.sitkUInt8)
    ref.SetSpacing(target.spacing_mm)
    ref.SetOrigin(target.origin_mm)
    out = sitk.Resample(_to_sitk(array, source), ref, transform, interpolator, default, pixel)
    return sitk.GetArrayFromImage(out)


def _sample_prior(rendered: RenderedAnatomy, prior: Grid, acq: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The noise-free prior exam, its bone and tissue labels, and the blurred anatomy."""
    anat = rendered.grid
    blurred = _blur(rendered.hu, _psf_sigma_vox(acq, anat))
    hu = _paste(prior, anat, blurred, -1000.0, np.float32)
    if hu is None:
        hu = _resample(blurred, anat, prior, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
        bone = _resample(rendered.bone_class, anat, prior, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        tissue = _resample(rendered.tissue, anat, prior, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    else:
        bone = _paste(prior, anat, rendered.bone_class, 0, np.uint8)
        tissue = _paste(prior, anat, rendered.tissue, 0, np.uint8)
    return hu.astype(np.float32, copy=False), bone, tissue, blurred


def _sample_current(
    rendered: RenderedAnatomy,
    prior_blurred: np.ndarray,
    deltas,
    lesion_map: np.ndarray,
    current: Grid,
    acq: dict[str, Any],
    prior_acq: dict[str, Any],
    transform: sitk.Transform,
) -> tuple[np.ndarray, np.ndarray]:
    """The noise-free current exam, and its label codes (bone class | lesion << 4).

    The scanner blur is linear, so blur(anatomy + lesions) = blur(anatomy) + blur(lesions):
    the prior's blurred anatomy is reused (changed in place) when both exams share the PSF.
    """
    anat = rendered.grid
    sig = _psf_sigma_vox(acq, anat)
    same_psf = np.allclose(sig, _psf_sigma_vox(prior_acq, anat))
    hu = prior_blurred if same_psf else _blur(rendered.hu, sig)
    for box, delta in deltas:
        pad = [int(math.ceil(3 * s)) + 1 for s in sig]
        big = tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(box, pad, anat.shape))
        local = np.zeros(tuple(b.stop - b.start for b in big), dtype=np.float32)
        inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, big))
        local[inner] = delta
        hu[big] += _blur(local, sig)
    out = _resample(hu, anat, current, transform, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    del hu
    codes = (rendered.bone_class | (lesion_map << 4)).astype(np.uint8)
    code_cur = _resample(codes, anat, current, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out, code_cur


def _add_noise(hu: np.ndarray, acq: dict[str, Any], rng: np.random.Generator, *, copy: bool = True) -> np.ndarray:
    """Add correlated Gaussian noise, round to whole HU and clip (in place unless ``copy``).

    White uniform noise is smoothed by a Gaussian (the reconstruction kernel's correlation) and
    rescaled so that its standard deviation is exactly ``noise_sigma_hu`` (the smoothing gain is
    computed from the discrete kernel); a sum of many uniforms is Gaussian to a good
    approximation and is cheaper to draw than normals.
    """
    sigma = float(acq["noise_sigma_hu"])
    out = np.array(hu, dtype=np.float32, copy=True) if copy else hu
    if sigma > 0:
        cx, cy, cz = acq["noise_corr_vox"]
        corr = (cz, cy, cx)
        noise = rng.random(hu.shape, dtype=np.float32)
        noise -= np.float32(0.5)
        noise = ndi.gaussian_filter(noise, corr, mode="wrap", truncate=3.0)
        gain = 1.0 / 12.0
        for s in corr:
            r = int(3.0 * s + 0.5)
            k = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
            k /= k.sum()
            gain *= float(np.sum(k * k))
        noise *= np.float32(sigma / math.sqrt(gain))
        out += noise
        del noise
    np.clip(out, HU_MIN, HU_MAX, out=out)
    np.rint(out, out=out)
    return out


# ----------------------------------------------------------------------------------------------
# Truth and metadata
# ----------------------------------------------------------------------------------------------
def _measure_lesions(labels: np.ndarray, grid: Grid, records: list[dict[str, Any]], case_id: str) -> tuple[list[Lesion], list[dict[str, Any]]]:
    lesions, out = [], []
    sp = np.asarray(grid.spacing_mm)
    half_diag = 0.5 * float(np.linalg.norm(sp))
    objects = ndi.find_objects(labels)
    for rec in records:
        k = rec["label_value"]
        rec = dict(rec)
        box = objects[k - 1] if k - 1 < len(objects) else None
        if box is None:
            raise SynthesisError(f"Lesion {k} of case {case_id} vanished when resampled onto the current grid; use a larger radius.")
        idx = np.argwhere(labels[box] == k) + np.array([b.start for b in box])
        pts = np.asarray(grid.origin_mm) + idx[:, ::-1] * sp
        centroid = pts.mean(0)
        radius = float(np.linalg.norm(pts - centroid, axis=1).max()) + half_diag
        rec.update(
            {
                "lesion_id": f"{case_id}-L{k}",
                "center_mm": [float(v) for v in centroid],
                "radius_mm": round(radius, 3),
                "n_voxels": int(len(idx)),
                "volume_mm3": float(len(idx) * np.prod(sp)),
                "equivalent_radius_mm": float((3 * len(idx) * np.prod(sp) / (4 * math.pi)) ** (1 / 3)),
            }
        )
        out.append(rec)
        lesions.append(
            Lesion(
                lesion_id=rec["lesion_id"],
                center_mm=tuple(rec["center_mm"]),
                lesion_type=LesionType(rec["lesion_type"]),
                location=LesionLocation(rec["location"]),
                radius_mm=rec["radius_mm"],
                label_value=k,
            )
        )
    return lesions, out


def _headers(case_id: str, rng: np.random.Generator) -> dict[str, Any]:
    from pydicom.uid import generate_uid

    start = _dt.date(2019, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    later = start + _dt.timedelta(days=int(rng.integers(150, 250)))
    birth = _dt.date(1940, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 35 * 365)))
    token = str(int(rng.integers(0, 2**62)))
    common = {
        "PatientID": str(case_id),
        "PatientName": f"Synthetic^{case_id}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "PatientSex": str(rng.choice(["F", "M"])),
    }
    out = {}
    for exam, date in (("prior", start), ("current", later)):
        out[exam] = {
            **common,
            "StudyInstanceUID": generate_uid(entropy_srcs=[GENERATOR, case_id, token, exam, "study"]),
            "FrameOfReferenceUID": generate_uid(entropy_srcs=[GENERATOR, case_id, token, exam, "frame"]),
            "StudyDate": date.strftime("%Y%m%d"),
            "StudyTime": "101500" if exam == "prior" else "143000",
            "StudyDescription": "CT thorax abdomen (synthetic)",
            "AccessionNumber": f"{case_id[-8:]}{'P' if exam == 'prior' else 'C'}",
            "Manufacturer": "TSCT synthetic phantom",
        }
    return out


def _volume(hu: np.ndarray, grid: Grid, exam: str, acq: dict[str, Any], header: dict[str, Any], params: dict[str, Any], case_id: str) -> Volume:
    return Volume(
        hu,
        grid.spacing_mm,
        grid.origin_mm,
        metadata={
            "modality": "CT",
            "exam": exam,
            "case_id": case_id,
            "slice_thickness_mm": acq["slice_thickness_mm"],
            "dicom": dict(header[exam]),
            "synthetic": {
                "generator": GENERATOR,
                "version": GENERATOR_VERSION,
                "request": params["request"],
                "acquisition": params["acquisition"][exam],
            },
        },
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not (isinstance(v, np.ndarray) and v.ndim > 1)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def write_pair(pair: SyntheticPair, folder: str | Path, *, dicom: bool = False) -> dict[str, Path]:
    """Write a pair's exams, truth and parameters into ``folder``.

    Files: ``prior.nii.gz``, ``current.nii.gz`` (int16 HU), ``lesions.nii.gz`` (lesion k = k),
    ``bone.nii.gz`` (current-exam bone by location class), ``prior_bone.nii.gz``,
    ``true_transform.h5`` and ``params.json``; with ``dicom`` also ``prior_dicom/`` and
    ``current_dicom/`` CT series (same patient, two studies ~6 months apart, each with its own
    StudyInstanceUID and FrameOfReferenceUID).

    Returns the written paths by name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "prior": write_volume(pair.prior, folder / "prior.nii.gz"),
        "current": write_volume(pair.current, folder / "current.nii.gz"),
        "lesions": write_volume(pair.lesion_labels, folder / "lesions.nii.gz"),
        "bone": write_volume(pair.bone_label, folder / "bone.nii.gz"),
    }
    if pair.prior_bone_label is not None:
        paths["prior_bone"] = write_volume(pair.prior_bone_label, folder / "prior_bone.nii.gz")
    paths["true_transform"] = folder / "true_transform.h5"
    sitk.WriteTransform(pair.true_transform, str(paths["true_transform"]))
    params = dict(pair.parameters)
    params["files"] = {k: p.name for k, p in paths.items()}
    if dicom:
        for exam, vol in (("prior", pair.prior), ("current", pair.current)):
            hdr = vol.metadata["dicom"]
            sub = folder / f"{exam}_dicom"
            write_dicom_series(
                vol,
                sub,
                series_description=f"Synthetic spine CT ({exam})",
                template=hdr,
                patient_id=hdr["PatientID"],
                patient_name=hdr["PatientName"],
                study_instance_uid=hdr["StudyInstanceUID"],
                study_date=hdr["StudyDate"],
                frame_of_reference_uid=hdr["FrameOfReferenceUID"],
                series_number=2 if exam == "current" else 1,
            )
            paths[f"{exam}_dicom"] = sub
            params["files"][f"{exam}_dicom"] = sub.name
    paths["params"] = folder / "params.json"
    paths["params"].write_text(json.dumps(_jsonable(params), indent=1), encoding="utf-8")
    return paths


def synthesize_case_set(
    out_dir: str | Path,
    *,
    n_cases: int,
    abnormal_fraction: float = 0.5,
    seed: int,
    size: str = "small",
    dicom: bool = False,
    progress: bool = True,
) -> Path:
    """Generate a set of synthetic cases and the case list that describes them.

    Writes ``out_dir/cases/<case_id>/`` per case (see :func:`write_pair`) and
    ``out_dir/caselist.csv`` (exams are the DICOM folders when ``dicom`` is set, else the
    NIfTI files; lesions point at ``lesions.nii.gz`` with their label values). Exactly
    ``round(n_cases * abnormal_fraction)`` cases are abnormal, in random order; across the set,
    lesion locations cycle through every location class the fields of view contain, and about
    a third of all cases (normal ones too) carry benign sclerotic bone islands.

    Returns
    -------
    Path of the case list.
    """
    if n_cases < 1:
        raise SynthesisError(f"n_cases must be at least 1, got {n_cases}.")
    if not 0.0 <= abnormal_fraction <= 1.0:
        raise SynthesisError(f"abnormal_fraction must be between 0 and 1, got {abnormal_fraction}.")
    if size not in SIZES:
        raise SynthesisError(f"size must be one of {', '.join(SIZES)}, got {size!r}.")
    out_dir = Path(out_dir)
    cases_dir = out_dir / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(1)[0])
    n_abn = int(round(n_cases * abnormal_fraction))
    status = np.array([True] * n_abn + [False] * (n_cases - n_abn))
    rng.shuffle(status)
    case_seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=n_cases)]
    # cycle the location classes so every class is represented across the set
    cycle = [loc for loc in LOCATIONS]
    rng.shuffle(cycle)
    cycle_pos = 0
    width = max(4, len(str(n_cases)))
    cases: list[Case] = []
    records = []
    iterator: Iterable[int] = range(n_cases)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        bar.start()
        task = bar.add_task("synthetic cases", total=n_cases)
    try:
        for i in iterator:
            case_id = f"SYN{i + 1:0{width}d}"
            if bar is not None:
                bar.update(task, description=f"synthetic case {case_id}")
            kwargs: dict[str, Any] = {"seed": case_seeds[i], "size": size, "abnormal": bool(status[i])}
            pair = None
            if status[i]:
                # first lesion of each abnormal case takes the next location class in the cycle
                for _try in range(len(cycle)):
                    loc = cycle[cycle_pos % len(cycle)]
                    try:
                        window = {"pelvis": True, "rib": False}.get(loc)
                        pair = synthesize_pair(case_id, lesion_locations=[loc], include_pelvis=window, **kwargs)
                        cycle_pos += 1
                        break
                    except SynthesisError:
                        cycle_pos += 1
                if pair is None:
                    pair = synthesize_pair(case_id, **kwargs)
            else:
                pair = synthesize_pair(case_id, **kwargs)
            folder = cases_dir / case_id
            paths = write_pair(pair, folder, dicom=dicom)
            prior_path = paths["prior_dicom"] if dicom else paths["prior"]
            current_path = paths["current_dicom"] if dicom else paths["current"]
            lesions = tuple(replace(les, label_map=paths["lesions"]) for les in pair.lesions)
            cases.append(Case(case_id, prior_path, current_path, pair.abnormal, lesions, paths["true_transform"]))
            records.append(pair.summary())
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    path = write_case_list(CaseList(tuple(cases)), out_dir / "caselist.csv")
    (out_dir / "README.txt").write_text(
        "Synthetic spine CT case set (tsct cases synth).\n"
        f"seed={seed} n_cases={n_cases} abnormal_fraction={abnormal_fraction} size={size} dicom={dicom}\n"
        "Each case folder holds the exams, truth label maps, the true transform (current -> prior, ITK .h5)\n"
        "and params.json with every generation parameter. Not patient data.\n\n" + "\n".join(records) + "\n",
        encoding="utf-8",
    )
    return path
