"""Prior/current pairs with known truth made from a real CT (``tsct cases synth --from-ct``).

The synthetic phantom (:mod:`cases.synth`) is the project's own anatomy; this module turns **any
real CT** (a public one, or a coordinator's own normal exam) into a prior/current pair whose
truth is known exactly, so the detector can be measured, and a study rehearsed, on real anatomy.

What a pair is
--------------
* **Prior** = the source CT on its own grid, with a little independent noise added
  (``prior_noise_hu``).
* **True transform** ``T`` (current-exam point -> prior-exam point, LPS mm; the convention of
  :mod:`cases.synth`, stored the same way as ``true_transform.h5``): ``T = E o (Id + u)``, a
  rigid repositioning ``E`` (rotations up to ``max_rotation_deg``, translation up to
  ``max_translation_mm``) after a non-rigid displacement ``u`` in current-exam space made of
  (a) a **per-vertebra articulation**: each vertebra (from the labels, or 25 mm slabs of the
  spine found in the CT) turns by up to ``articulation_deg`` about its own centre and shifts by up
  to ``articulation_mm``, blended with Gaussian weights of ``articulation_sigma_mm`` so that
  neighbouring vertebrae move differently but smoothly; and (b) a smooth random field
  (``smooth_mm``, 40 mm correlation). ``u`` is held on an 4 mm grid; its Jacobian range is
  recorded.
* **Current** = re-acquisition of the moved anatomy: the source is resampled through ``T`` (cubic
  B-spline) onto a fine grid in the current exam's frame, **lesions are painted there**, then the
  second scan is simulated: a reconstruction kernel (Gaussian in-plane blur, or a sharper
  kernel by unsharp masking), a slice profile (Gaussian along z, FWHM = slice thickness), sampling
  on the current grid (its own in-plane spacing and slice spacing), and independent noise
  (``current_noise_hu``, spatially correlated). Values are rounded and clipped to
  [-1024, 3071] HU.
* **Lesions** (current exam only), lytic, blastic or mixed, 3-20 mm across, at the location
  classes present (vertebral body, vertebral arch, rib, pelvis, other bone such as sternum,
  scapula, clavicle, femur), each an irregular blob with a **soft edge** (``edge_mm``) clipped to
  bone of its class, so it never reaches a vessel or an organ. Lytic: bone replaced by soft
  tissue (15-45 HU) carrying part of the bone's own high-pass texture; blastic: the local mean
  raised to 600-1200 HU with the texture kept; mixed: a mottled field chooses between the two.
  Truth: the label map on the current grid (value ``k`` = lesion ``k``: voxels with lesion weight
  >= 0.5 inside bone), the centroid and the radius of the ball around it holding the label.

Bone and its classes
--------------------
With a label map (``labels``; TotalSegmentator's "total" task by default, see
:data:`TOTALSEGMENTATOR_BONE_CLASSES`), bone is the bone labels; each vertebra is split into its
**body** (the anterior 42 % of the vertebra's antero-posterior extent) and **arch** (the rest).
Without labels, bone is :func:`cases.bone.bone_mask` of the CT (threshold, with contrast
blood pools left out) and the classes come from geometry: the spine is where bone lies in nearly
every slice at the same place (the peak of the bone mask summed along z); per slice, the bone
within 45 mm of it and within the antero-posterior extent of its central strip is spine, its
anterior 42 % (within 28 mm of the midline) the body, the rest the arch. Outside the spine, bone
more than 35 mm lateral to it is rib, except in components larger than 60 mL in slices without
lung (the pelvis); the rest (sternum, ...) is "other". This is rough (scapulae count as ribs,
the sacrum as spine); pass labels when you have them.

Limits: the source CT's own noise is in both exams at the same anatomical place (an independent
rescan would not share it); it is partly masked by the added independent noise. Blood and
organs keep their contrast phase (the same in both exams).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk

from ._phantom import BoneClass
from .caselist import Case, CaseList, Lesion, LesionLocation, LesionType, write_case_list
from .io import read_volume
from .synth import SynthesisError, SyntheticPair, write_pair
from .volume import LabelVolume, Volume

__all__ = [
    "RealPairSettings",
    "TOTALSEGMENTATOR_BONE_CLASSES",
    "bone_classes_from_labels",
    "bone_classes_from_ct",
    "real_ct_pair",
    "real_ct_case_set",
]

GENERATOR = "tsct.cases.real_ct_pairs"
GENERATOR_VERSION = "1.0"
HU_MIN, HU_MAX = -1024.0, 3071.0


def _ts_classes() -> dict[int, str]:
    out: dict[int, str] = {}
    for v in range(26, 51):  # vertebrae S1 ... C1
        out[v] = "vertebra"
    out[25] = "pelvis"  # sacrum
    out[77] = out[78] = "pelvis"  # hip left/right
    for v in range(92, 116):
        out[v] = "rib"
    for v in (69, 70, 71, 72, 73, 74, 75, 76, 91, 116):  # humerus, scapula, clavicle, femur, skull, sternum
        out[v] = "other"
    return out


#: TotalSegmentator ("total" task, v2 label values, see labels_total.csv) label -> bone class;
#: "vertebra" labels are split into body and arch. Costal cartilage (117) is not bone.
TOTALSEGMENTATOR_BONE_CLASSES: dict[int, str] = _ts_classes()

_CLASS_VALUE = {
    "vertebral_body": int(BoneClass.VERTEBRAL_BODY),
    "lamina_arch": int(BoneClass.LAMINA_ARCH),
    "rib": int(BoneClass.RIB),
    "pelvis": int(BoneClass.PELVIS),
    "other": int(BoneClass.OTHER),
}
_VALUE_CLASS = {v: k for k, v in _CLASS_VALUE.items()}
LOCATIONS = tuple(_CLASS_VALUE)

#: Largest lesion radius (mm) per class: what fits in that bone.
LESION_RADIUS_MM: dict[str, tuple[float, float]] = {
    "vertebral_body": (2.5, 10.0),
    "lamina_arch": (1.5, 4.0),
    "rib": (1.5, 3.5),
    "pelvis": (2.5, 10.0),
    "other": (1.5, 6.0),
}


@dataclass(frozen=True)
class RealPairSettings:
    """How a pair is made from a real CT (see the module docstring for each parameter)."""

    max_rotation_deg: float = 3.0
    max_translation_mm: float = 15.0
    articulation_deg: float = 2.0
    articulation_mm: float = 1.0
    articulation_sigma_mm: float = 14.0
    smooth_mm: float = 1.0
    prior_noise_hu: tuple[float, float] = (4.0, 8.0)
    current_noise_hu: tuple[float, float] = (8.0, 18.0)
    slice_choices_mm: tuple[float, ...] = ()
    """Slice spacings to choose the current exam's from; empty: the source's, or 1.5x it half the time."""
    inplane_scale: tuple[float, float] = (0.9, 1.1)
    kernel_choices: tuple[str, ...] = ("same", "soft", "sharp")
    edge_mm: float = 1.2
    diameter_mm: tuple[float, float] = (3.0, 20.0)
    lytic_hu: tuple[float, float] = (15.0, 45.0)
    blastic_hu: tuple[float, float] = (600.0, 1200.0)
    fov_margin_mm: float = 8.0


# ----------------------------------------------------------------------------------------------
# Bone classes
# ----------------------------------------------------------------------------------------------
def _points(volume: Volume, idx_zyx: np.ndarray) -> np.ndarray:
    ijk = np.asarray(idx_zyx, dtype=float)[..., ::-1]
    return np.asarray(volume.origin_mm) + (ijk * np.asarray(volume.spacing_mm)) @ volume.direction_matrix.T


def _ap_coordinate(volume: Volume) -> np.ndarray:
    """LPS y (posterior) of every voxel row, as a (1, ny, 1) array broadcastable over (z, y, x)."""
    d = volume.direction_matrix
    ny = volume.shape[1]
    y = volume.origin_mm[1] + d[1, 1] * volume.spacing_mm[1] * np.arange(ny)
    return y[None, :, None]


def bone_classes_from_labels(labels: LabelVolume, mapping: Mapping[int, str] | None = None) -> LabelVolume:
    """Bone location classes (values of :class:`cases._phantom.BoneClass`) from a label map.

    Parameters
    ----------
    labels : a multi-class label map (TotalSegmentator "total" by default).
    mapping : label value -> ``"vertebra"`` (split into body and arch), ``"vertebral_body"``,
        ``"lamina_arch"``, ``"rib"``, ``"pelvis"`` or ``"other"``; values not in it are not bone.

    Raises
    ------
    SynthesisError
        When no label of the mapping is present.
    """
    mapping = dict(TOTALSEGMENTATOR_BONE_CLASSES if mapping is None else mapping)
    arr = labels.array
    out = np.zeros(arr.shape, dtype=np.uint8)
    present = [v for v in np.unique(arr) if int(v) in mapping]
    if not present:
        raise SynthesisError(
            f"{labels.metadata.get('source', 'the label map')}: none of its labels is a bone label of the mapping "
            f"(expected e.g. TotalSegmentator 'total' values: vertebrae 26-50, ribs 92-115, sacrum 25, hips 77-78)."
        )
    ap = np.broadcast_to(_ap_coordinate(labels), arr.shape)
    for v in present:
        kind = mapping[int(v)]
        m = arr == v
        if kind == "vertebra":
            y = ap[m]
            lo, hi = float(y.min()), float(y.max())
            cut = lo + 0.42 * (hi - lo)
            body = m & (ap <= cut)
            out[body] = _CLASS_VALUE["vertebral_body"]
            out[m & ~body] = _CLASS_VALUE["lamina_arch"]
        elif kind in _CLASS_VALUE:
            out[m] = _CLASS_VALUE[kind]
        else:
            raise SynthesisError(f"bone class {kind!r} for label {v} is not one of vertebra, {', '.join(_CLASS_VALUE)}.")
    return LabelVolume(out, labels.spacing_mm, labels.origin_mm, labels.direction, metadata={"kind": "bone classes", "source": "labels"})


def bone_classes_from_ct(ct: Volume) -> LabelVolume:
    """Bone location classes from the CT alone (threshold bone without blood pools + geometry).

    See the module docstring for the rule. Uses :func:`cases.bone.bone_mask` (imported
    lazily: the detector's threshold mask with its blood-pool exclusion).
    """
    from .bone import bone_mask

    bone = bone_mask(ct).array != 0
    out = np.zeros(bone.shape, dtype=np.uint8)
    if not bone.any():
        raise SynthesisError(f"{ct.metadata.get('source', 'the CT')}: no bone found by the threshold (is it a CT in HU?).")
    nz, ny, nx = bone.shape
    xs = _points(ct, np.stack([np.zeros(nx), np.zeros(nx), np.arange(nx)], 1))[:, 0]
    ys = _points(ct, np.stack([np.zeros(ny), np.arange(ny), np.zeros(ny)], 1))[:, 1]
    X = np.broadcast_to(xs[None, :], (ny, nx))
    Y = np.broadcast_to(ys[:, None], (ny, nx))
    # The spine is where bone sits in (nearly) every slice at the same place: the peak of the
    # bone mask summed along z, smoothed over 8 mm.
    sp_yx = np.asarray(ct.spacing_mm[1::-1], dtype=float)
    proj = ndi.gaussian_filter(bone.sum(axis=0).astype(np.float32), 8.0 / sp_yx)
    iy, ix = np.unravel_index(int(np.argmax(proj)), proj.shape)
    cx, cy = float(X[iy, ix]), float(Y[iy, ix])
    # Lung slices (thorax): air inside the body outline.
    # (lung parenchyma is -950...-600 HU; air outside the patient is about -1000 HU)
    lung = (ct.array > -950) & (ct.array < -600)
    lung_slice = lung.reshape(nz, -1).mean(axis=1) > 0.05
    spine = np.zeros_like(bone)
    for k in range(nz):
        strip = bone[k] & (np.abs(X - cx) <= 8.0) & (np.abs(Y - cy) <= 50.0)
        if not strip.any():
            continue
        yv = Y[strip]
        y_ant, y_post = float(yv.min()), float(yv.max())
        if y_post - y_ant < 10.0:
            continue
        band = bone[k] & (np.abs(X - cx) <= 45.0) & (Y >= y_ant - 2.0) & (Y <= y_post + 2.0)
        spine[k] = band
        body_k = band & (Y <= y_ant + 0.42 * (y_post - y_ant)) & (np.abs(X - cx) <= 28.0)
        out[k][body_k] = _CLASS_VALUE["vertebral_body"]
        out[k][band & ~body_k] = _CLASS_VALUE["lamina_arch"]
    rest = bone & ~spine
    lab, n = ndi.label(rest, np.ones((3, 3, 3), bool))
    if n:
        sizes = np.bincount(lab.ravel())[1:] * ct.voxel_volume_mm3 / 1000.0
        lateral = np.broadcast_to((np.abs(X - cx) > 35.0)[None], bone.shape)
        thorax = np.broadcast_to(lung_slice[:, None, None], bone.shape)
        for i, sl in enumerate(ndi.find_objects(lab), 1):
            m = lab[sl] == i
            big = sizes[i - 1] >= 60.0
            cls = np.where(lateral[sl], _CLASS_VALUE["rib"], _CLASS_VALUE["other"]).astype(np.uint8)
            if big:
                cls = np.where(thorax[sl], cls, _CLASS_VALUE["pelvis"]).astype(np.uint8)
            out[sl][m] = cls[m]
    return LabelVolume(out, ct.spacing_mm, ct.origin_mm, ct.direction, metadata={"kind": "bone classes", "source": "ct"})


# ----------------------------------------------------------------------------------------------
# Transform
# ----------------------------------------------------------------------------------------------
def _vertebra_centres(classes: LabelVolume, labels: LabelVolume | None, mapping: Mapping[int, str]) -> list[np.ndarray]:
    """Centres (LPS mm, prior = source frame) of the units that articulate."""
    centres = []
    if labels is not None:
        for v, kind in mapping.items():
            if kind == "vertebra":
                m = labels.array == v
                if m.sum() > 20:
                    centres.append(_points(classes, np.argwhere(m).mean(0)))
    if not centres:
        body = classes.array == _CLASS_VALUE["vertebral_body"]
        if body.any():
            idx = np.argwhere(body)
            pts = _points(classes, idx)
            z0, z1 = pts[:, 2].min(), pts[:, 2].max()
            for lo in np.arange(z0, z1 + 1e-6, 25.0):
                sel = (pts[:, 2] >= lo) & (pts[:, 2] < lo + 25.0)
                if sel.sum() > 20:
                    centres.append(pts[sel].mean(0))
    return centres


def _draw_transform(
    rng: np.random.Generator, source: Volume, current_grid: dict[str, Any], centres_prior: list[np.ndarray], s: RealPairSettings
) -> tuple[sitk.CompositeTransform, dict[str, Any]]:
    centre = _points(source, (np.asarray(source.shape) - 1) / 2.0)
    angles = rng.uniform(-s.max_rotation_deg, s.max_rotation_deg, 3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    translation = direction * rng.uniform(0.3, 1.0) * s.max_translation_mm
    euler = sitk.Euler3DTransform()
    euler.SetCenter(tuple(float(c) for c in centre))
    euler.SetRotation(*[math.radians(a) for a in angles])
    euler.SetTranslation(tuple(float(t) for t in translation))
    inv = euler.GetInverse()
    # displacement grid over the current exam (+ margin), 4 mm
    spacing = 4.0
    lo = np.asarray(current_grid["lo_mm"]) - 20.0
    hi = np.asarray(current_grid["hi_mm"]) + 20.0
    n = np.ceil((hi - lo) / spacing).astype(int) + 1
    ax = [lo[i] + spacing * np.arange(n[i]) for i in range(3)]
    Z, Y, X = np.meshgrid(ax[2], ax[1], ax[0], indexing="ij")
    P = np.stack([X, Y, Z], -1)
    u = np.zeros(P.shape, dtype=float)
    units = []
    if centres_prior:
        sig = s.articulation_sigma_mm
        wsum = np.full(P.shape[:3], 1e-3)
        acc = np.zeros(P.shape)
        for c_prior in centres_prior:
            c = np.asarray(inv.TransformPoint(tuple(float(v) for v in c_prior)))
            ang = np.radians(rng.uniform(-s.articulation_deg, s.articulation_deg, 3))
            t = rng.uniform(-s.articulation_mm, s.articulation_mm, 3)
            r = sitk.Euler3DTransform()
            r.SetRotation(*[float(a) for a in ang])
            R = np.asarray(r.GetMatrix()).reshape(3, 3)
            d = (P - c) @ R.T + c + t - P
            w = np.exp(-((P - c) ** 2).sum(-1) / (2 * sig**2))
            acc += w[..., None] * d
            wsum += w
            units.append(
                {"centre_current_mm": [float(v) for v in c], "angles_deg": [float(math.degrees(a)) for a in ang], "shift_mm": [float(v) for v in t]}
            )
        # normalised blend inside the spine (weights ~ 1), fading to zero away from it
        near = np.clip(wsum, 0, 1)
        u += acc / wsum[..., None] * near[..., None]
    for c in range(3):
        f = ndi.gaussian_filter(rng.normal(size=P.shape[:3]), 40.0 / spacing, mode="reflect")
        f /= max(np.abs(f).max(), 1e-9)
        u[..., c] += s.smooth_mm * f
    grads = [np.gradient(u[..., c], spacing, axis=a) for c in range(3) for a in (2, 1, 0)]
    det = np.linalg.det(np.stack(grads, -1).reshape(u.shape[:3] + (3, 3)) + np.eye(3))
    img = sitk.GetImageFromArray(np.ascontiguousarray(u, dtype=np.float64), isVector=True)
    img.SetOrigin(tuple(float(v) for v in lo))
    img.SetSpacing((spacing,) * 3)
    disp = sitk.DisplacementFieldTransform(img)
    T = sitk.CompositeTransform([euler, disp])
    info = {
        "rigid": {
            "center_mm": [float(v) for v in centre],
            "angles_deg": [float(a) for a in angles],
            "translation_mm": [float(v) for v in translation],
            "convention": "ITK Euler3DTransform: angles about x, y, z; x' = R (x - c) + c + t",
        },
        "nonrigid": {
            "grid_origin_mm": [float(v) for v in lo],
            "grid_spacing_mm": spacing,
            "articulating_units": units,
            "smooth_amplitude_mm": s.smooth_mm,
            "max_displacement_mm": float(np.sqrt((u**2).sum(-1)).max()),
            "jacobian_range": [float(det.min()), float(det.max())],
        },
        "convention": "T maps a current-exam point to the prior-exam point (LPS mm); T = E o (Id + u)",
    }
    return T, info


# ----------------------------------------------------------------------------------------------
# Lesions
# ----------------------------------------------------------------------------------------------
def _blob_weight(
    shape: tuple[int, int, int],
    centre_idx: np.ndarray,
    spacing_zyx: np.ndarray,
    radius_mm: float,
    edge_mm: float,
    rng: np.random.Generator,
    sl: tuple[slice, slice, slice],
) -> np.ndarray:
    zz, yy, xx = np.ogrid[sl[0], sl[1], sl[2]]
    dz = (zz - centre_idx[0]) * spacing_zyx[0]
    dy = (yy - centre_idx[1]) * spacing_zyx[1]
    dx = (xx - centre_idx[2]) * spacing_zyx[2]
    r = np.sqrt(dz**2 + dy**2 + dx**2) + 1e-6
    # irregular: radius modulated by a few low-order harmonics of direction (+-18 %)
    a = rng.normal(size=6) * 0.06
    mod = 1.0 + a[0] * dx / r + a[1] * dy / r + a[2] * dz / r + a[3] * (dx * dy) / r**2 + a[4] * (dy * dz) / r**2 + a[5] * (dx * dz) / r**2
    sdf = r - radius_mm * np.clip(mod, 0.82, 1.18)
    return np.clip(0.5 - sdf / edge_mm, 0.0, 1.0).astype(np.float32)


def _paint_lesion(
    hu: np.ndarray, smooth: np.ndarray, weight: np.ndarray, kind: str, rng: np.random.Generator, s: RealPairSettings, spacing_zyx: np.ndarray
) -> dict[str, Any]:
    texture = hu - smooth  # the bone's own high-pass texture
    if kind == "lytic":
        target = rng.uniform(*s.lytic_hu)
        new = target + 0.35 * texture
        hu[...] = hu + weight * (new - hu)
        return {"target_hu": float(target)}
    if kind == "blastic":
        target = rng.uniform(*s.blastic_hu)
        new = np.maximum(hu, target + texture)
        hu[...] = hu + weight * (new - hu)
        return {"target_hu": float(target)}
    lt, bt = rng.uniform(*s.lytic_hu), rng.uniform(*s.blastic_hu) * 0.8
    mott = ndi.gaussian_filter(rng.normal(size=hu.shape), [1.2 / sp for sp in spacing_zyx])
    mott = mott > np.median(mott)
    new = np.where(mott, np.maximum(hu, bt + texture), lt + 0.35 * texture)
    hu[...] = hu + weight * (new - hu)
    return {"target_hu": [float(lt), float(bt)]}


# ----------------------------------------------------------------------------------------------
# The pair
# ----------------------------------------------------------------------------------------------
def _grid_image(size_xyz, spacing, origin, direction) -> sitk.Image:
    img = sitk.Image([int(v) for v in size_xyz], sitk.sitkUInt8)
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetDirection(tuple(float(v) for v in direction))
    return img


def _correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_hu: float, corr_vox: float = 0.7) -> np.ndarray:
    n = rng.normal(size=shape).astype(np.float32)
    n = ndi.gaussian_filter(n, [0.3, corr_vox, corr_vox])
    n *= np.float32(sigma_hu / max(float(n.std()), 1e-6))
    return n


def real_ct_pair(
    source: Volume,
    case_id: str,
    seed: int,
    *,
    labels: LabelVolume | None = None,
    label_mapping: Mapping[int, str] | None = None,
    n_lesions: int = 2,
    lesion_locations: Sequence[str] | None = None,
    lesion_types: Sequence[str] | None = None,
    settings: RealPairSettings | None = None,
    source_name: str | None = None,
    classes: LabelVolume | None = None,
) -> SyntheticPair:
    """Make one prior/current pair with truth from a real CT.

    Parameters
    ----------
    source : the real CT (HU).
    case_id : identifier of the case.
    seed : random seed (the same seed, source and settings give the same pair).
    labels : an optional label map of the CT (TotalSegmentator "total" values unless
        ``label_mapping``); resampled onto the CT by nearest neighbour when on another grid.
    n_lesions : new lesions in the current exam (0: a lesion-free pair).
    lesion_locations : the class of each lesion (cycled); None: drawn among the classes present.
    lesion_types : ``lytic``/``blastic``/``mixed`` per lesion (cycled); None: drawn.
    settings : :class:`RealPairSettings`.
    source_name : how the source is named in the parameters (file name).
    classes : the source's bone classes when already computed (:func:`bone_classes_from_labels`
        or :func:`bone_classes_from_ct`); computed here when None.

    Returns
    -------
    SyntheticPair
        ``parameters`` holds the request, transform, acquisition and measured lesion truth.

    Raises
    ------
    SynthesisError
        No bone of a requested class, a label map that does not match, or a CT too small.
    """
    s = settings or RealPairSettings()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7241]))
    mapping = dict(TOTALSEGMENTATOR_BONE_CLASSES if label_mapping is None else label_mapping)
    src = source.with_array(np.clip(np.asarray(source.array, dtype=np.float32), HU_MIN, HU_MAX))
    if min(src.shape) < 8:
        raise SynthesisError(f"{source_name or 'the CT'} has only {src.shape} voxels; a volume of at least 8 voxels per axis is needed.")
    if labels is not None and not labels.same_space(src):
        labels = labels.resample_to(src)
    if classes is None:
        classes = bone_classes_from_labels(labels, mapping) if labels is not None else bone_classes_from_ct(src)
    elif not classes.same_space(src):
        raise SynthesisError("classes must be on the source CT's grid.")
    src_img = src.to_sitk()
    spacing = np.asarray(src.spacing_mm, dtype=float)

    # --- the current exam's acquisition
    slice_choices = s.slice_choices_mm or (spacing[2], spacing[2], round(spacing[2] * 1.5, 2))
    cur_dz = float(rng.choice(slice_choices))
    inplane = float(spacing[0] * rng.uniform(*s.inplane_scale))
    kernel = str(rng.choice(s.kernel_choices))
    extent = spacing * (np.asarray(src.size) - 1)
    margin = s.fov_margin_mm
    cur_size = [
        max(8, int(np.floor((extent[0] - 2 * margin) / inplane)) + 1),
        max(8, int(np.floor((extent[1] - 2 * margin) / inplane)) + 1),
        max(8, int(np.floor((extent[2] - 2 * margin) / cur_dz)) + 1),
    ]
    cur_spacing = [inplane, inplane * spacing[1] / spacing[0], cur_dz]
    # centre of the current field of view on the centre of the source, in the current frame (via E^-1 later)
    d = src.direction_matrix
    centre_src = _points(src, (np.asarray(src.shape) - 1) / 2.0)
    # first draw the transform on a provisional grid (the source's extent, in the source frame)
    lo = centre_src - 0.5 * extent - 30
    hi = centre_src + 0.5 * extent + 30
    centres = _vertebra_centres(classes, labels, mapping)
    T, tinfo = _draw_transform(rng, src, {"lo_mm": np.minimum(lo, hi), "hi_mm": np.maximum(lo, hi)}, centres, s)
    euler = T.GetNthTransform(0)
    centre_cur = np.asarray(euler.GetInverse().TransformPoint(tuple(float(v) for v in centre_src)))
    half = 0.5 * np.asarray(cur_spacing) * (np.asarray(cur_size) - 1)
    cur_origin = centre_cur - d @ half
    # fine grid: the current frame at the source's spacing (lesions and the anatomy live there)
    fine_spacing = [min(spacing[0], inplane), min(spacing[1], inplane), min(spacing[2], cur_dz)]
    fine_size = [int(np.ceil(2 * half[i] / fine_spacing[i])) + 1 for i in range(3)]
    fine_ref = _grid_image(fine_size, fine_spacing, cur_origin, src.direction)
    fine = sitk.GetArrayFromImage(sitk.Resample(src_img, fine_ref, T, sitk.sitkBSpline, -1024.0, sitk.sitkFloat32))
    np.clip(fine, HU_MIN, HU_MAX, out=fine)
    fine_cls = sitk.GetArrayFromImage(sitk.Resample(classes.to_sitk(), fine_ref, T, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    sp_zyx = np.asarray(fine_spacing[::-1], dtype=float)

    # --- lesions
    present = [c for c in LOCATIONS if (fine_cls == _CLASS_VALUE[c]).sum() * float(np.prod(fine_spacing)) > 300.0]
    if n_lesions and not present:
        raise SynthesisError(f"{source_name or 'the CT'}: no bone large enough for a lesion inside the current exam's field of view.")
    locs = list(lesion_locations) if lesion_locations else []
    for loc in locs:
        if loc not in _CLASS_VALUE:
            raise SynthesisError(f"lesion location {loc!r} is not one of {', '.join(LOCATIONS)}.")
    weights = np.zeros(fine.shape, dtype=np.float32)
    lesion_id_map = np.zeros(fine.shape, dtype=np.uint8)
    smooth = ndi.gaussian_filter(fine, [1.5 / v for v in sp_zyx]) if n_lesions else None
    records: list[dict[str, Any]] = []
    k = 0
    taken = np.zeros(fine.shape, dtype=bool)
    for i in range(n_lesions):
        loc = locs[i % len(locs)] if locs else str(rng.choice(present))
        if loc not in present:
            raise SynthesisError(
                f"{source_name or 'the CT'}: no {loc.replace('_', ' ')} bone (> 0.3 mL) inside the current exam's field of view; present: {', '.join(present)}."
            )
        kind = list(lesion_types)[i % len(lesion_types)] if lesion_types else str(rng.choice(["lytic", "blastic", "mixed"], p=[0.45, 0.4, 0.15]))
        if kind not in ("lytic", "blastic", "mixed"):
            raise SynthesisError(f"lesion type {kind!r} is not lytic, blastic or mixed.")
        cls_mask = fine_cls == _CLASS_VALUE[loc]
        depth = ndi.distance_transform_edt(cls_mask, sampling=sp_zyx)
        rmin, rmax = LESION_RADIUS_MM[loc]
        rmax = min(rmax, s.diameter_mm[1] / 2)
        rmin = max(rmin, s.diameter_mm[0] / 2)
        ok = cls_mask & ~ndi.binary_dilation(taken, iterations=2)
        # the centre must be inside bone by at least a third of the smallest radius, away from the FOV edge
        edge = np.zeros_like(ok)
        m = [max(1, int(np.ceil((rmin + 2) / v))) for v in sp_zyx]
        edge[m[0] : -m[0], m[1] : -m[1], m[2] : -m[2]] = True
        cand = np.argwhere(ok & edge & (depth >= min(rmin, 1.0)))
        if cand.size == 0:
            raise SynthesisError(f"{source_name or 'the CT'}: no room for a {loc.replace('_', ' ')} lesion.")
        c_idx = cand[rng.integers(len(cand))]
        radius = float(rng.uniform(rmin, rmax))
        radius = float(min(radius, max(rmin, depth[tuple(c_idx)] + 2.5)))
        r_vox = [int(np.ceil((radius * 1.2 + s.edge_mm) / v)) + 1 for v in sp_zyx]
        sl = tuple(slice(max(0, c_idx[a] - r_vox[a]), min(fine.shape[a], c_idx[a] + r_vox[a] + 1)) for a in range(3))
        w = _blob_weight(fine.shape, c_idx, sp_zyx, radius, s.edge_mm, rng, sl)
        # clipped to bone of the class, softly (the lesion never leaves bone)
        bone_soft = ndi.gaussian_filter(cls_mask[sl].astype(np.float32), 0.5)
        w = w * np.clip(bone_soft * 1.5, 0, 1)
        w[taken[sl]] = 0.0
        if (w >= 0.5).sum() * float(np.prod(fine_spacing)) < 4.0 / 3.0 * math.pi * 1.5**3:
            continue  # clipped away by thin bone: draw no lesion here
        k += 1
        info = _paint_lesion(fine[sl], smooth[sl], w, kind, rng, s, sp_zyx)
        weights[sl] = np.maximum(weights[sl], w)
        lesion_id_map[sl][w >= 0.5] = k
        taken[sl] |= w > 0
        records.append({"label_value": k, "lesion_type": kind, "location": loc, "nominal_radius_mm": radius, **info})

    # --- second scan: kernel, slice profile, sampling, noise
    if kernel == "soft":
        fine = ndi.gaussian_filter(fine, [0, 0.6 / sp_zyx[1], 0.6 / sp_zyx[2]])
    elif kernel == "sharp":
        blur = ndi.gaussian_filter(fine, [0, 0.8, 0.8])
        fine = fine + 0.6 * (fine - blur)
    fwhm = cur_dz
    sigma_z = math.sqrt(max(fwhm**2 - spacing[2] ** 2, 0.0)) / 2.3548
    if sigma_z > 0.05:
        fine = ndi.gaussian_filter1d(fine, sigma_z / sp_zyx[0], axis=0)
    fine_img = sitk.GetImageFromArray(fine.astype(np.float32))
    fine_img.CopyInformation(fine_ref)
    cur_ref = _grid_image(cur_size, cur_spacing, cur_origin, src.direction)
    cur = sitk.GetArrayFromImage(sitk.Resample(fine_img, cur_ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    cur_noise = float(rng.uniform(*s.current_noise_hu))
    cur += _correlated_noise(rng, cur.shape, cur_noise)
    cur = np.clip(np.round(cur), HU_MIN, HU_MAX).astype(np.float32)
    wimg = sitk.GetImageFromArray(weights)
    wimg.CopyInformation(fine_ref)
    w_cur = sitk.GetArrayFromImage(sitk.Resample(wimg, cur_ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    idimg = sitk.GetImageFromArray(lesion_id_map)
    idimg.CopyInformation(fine_ref)
    id_cur = sitk.GetArrayFromImage(sitk.Resample(idimg, cur_ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    cls_img = sitk.GetImageFromArray(fine_cls)
    cls_img.CopyInformation(fine_ref)
    cls_cur = sitk.GetArrayFromImage(sitk.Resample(cls_img, cur_ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    lesion_labels = np.where((w_cur >= 0.5) & (cls_cur > 0), id_cur, 0).astype(np.uint8)

    prior_noise = float(rng.uniform(*s.prior_noise_hu))
    prior = np.clip(np.round(src.array + _correlated_noise(rng, src.shape, prior_noise)), HU_MIN, HU_MAX).astype(np.float32)

    headers = _headers(case_id, rng)
    cur_origin_t = tuple(float(v) for v in cur_origin)
    cur_spacing_t = tuple(float(v) for v in cur_spacing)
    current_vol = Volume(cur, cur_spacing_t, cur_origin_t, src.direction)
    lesions, lesion_truth = _measure(lesion_labels, current_vol, records, case_id)
    acquisition = {
        "prior": {
            "grid": "source",
            "spacing_mm": [float(v) for v in src.spacing_mm],
            "size": list(src.size),
            "noise_added_hu": prior_noise,
            "slice_thickness_mm": float(spacing[2]),
        },
        "current": {
            "spacing_mm": list(cur_spacing_t),
            "size": cur_size,
            "origin_mm": list(cur_origin_t),
            "kernel": kernel,
            "slice_thickness_mm": cur_dz,
            "noise_hu": cur_noise,
        },
    }
    request = {
        "case_id": case_id,
        "seed": int(seed),
        "source": source_name,
        "labels": labels is not None,
        "n_lesions": int(n_lesions),
        "lesion_locations": list(lesion_locations) if lesion_locations else None,
        "lesion_types": list(lesion_types) if lesion_types else None,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.__dict__.items()},
    }
    params = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "case_id": case_id,
        "request": request,
        "transform": tinfo,
        "acquisition": acquisition,
        "lesions": lesion_truth,
        "benign_findings": [],
        "bone_classes": {"values": dict(_CLASS_VALUE), "from": "labels" if labels is not None else "ct"},
        "limits": "The source CT's own noise is shared by both exams; independent noise is added to each.",
    }

    def vol(arr: np.ndarray, like: Volume, exam: str, acq: dict[str, Any]) -> Volume:
        return Volume(
            arr,
            like.spacing_mm,
            like.origin_mm,
            like.direction,
            metadata={
                "modality": "CT",
                "exam": exam,
                "case_id": case_id,
                "slice_thickness_mm": acq["slice_thickness_mm"],
                "dicom": dict(headers[exam]),
                "synthetic": {"generator": GENERATOR, "version": GENERATOR_VERSION, "request": request, "acquisition": acq},
            },
        )

    prior_vol = vol(prior, src, "prior", acquisition["prior"])
    current_vol = vol(cur, current_vol, "current", acquisition["current"])
    return SyntheticPair(
        case_id=case_id,
        prior=prior_vol,
        current=current_vol,
        lesion_labels=LabelVolume(lesion_labels, cur_spacing_t, cur_origin_t, src.direction),
        lesions=lesions,
        true_transform=T,
        bone_label=LabelVolume(cls_cur.astype(np.uint8), cur_spacing_t, cur_origin_t, src.direction),
        parameters=params,
        prior_bone_label=classes,
    )


def _headers(case_id: str, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    from pydicom.uid import generate_uid

    start = _dt.date(2020, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 4 * 365)))
    later = start + _dt.timedelta(days=int(rng.integers(90, 300)))
    token = str(int(rng.integers(0, 2**62)))
    out = {}
    for exam, date in (("prior", start), ("current", later)):
        out[exam] = {
            "PatientID": case_id,
            "PatientName": f"RealCT^{case_id}",
            "StudyInstanceUID": generate_uid(entropy_srcs=[GENERATOR, case_id, token, exam, "study"]),
            "FrameOfReferenceUID": generate_uid(entropy_srcs=[GENERATOR, case_id, token, exam, "frame"]),
            "StudyDate": date.strftime("%Y%m%d"),
            "StudyDescription": "CT from a real exam with simulated follow-up (tsct)",
            "Manufacturer": "TSCT real-CT pair generator",
        }
    return out


def _measure(labels: np.ndarray, grid: Volume, records: list[dict[str, Any]], case_id: str) -> tuple[list[Lesion], list[dict[str, Any]]]:
    lesions, out = [], []
    half_diag = 0.5 * float(np.linalg.norm(grid.spacing_mm))
    voxel = grid.voxel_volume_mm3
    for rec in records:
        k = rec["label_value"]
        idx = np.argwhere(labels == k)
        if idx.size == 0:
            continue  # vanished on the coarser current grid (a lesion of a voxel or two): not truth
        pts = _points(grid, idx)
        centroid = pts.mean(0)
        radius = float(np.linalg.norm(pts - centroid, axis=1).max()) + half_diag
        rec = dict(rec)
        rec.update(
            {
                "lesion_id": f"{case_id}-L{k}",
                "center_mm": [float(v) for v in centroid],
                "radius_mm": round(radius, 3),
                "n_voxels": int(len(idx)),
                "volume_mm3": float(len(idx) * voxel),
                "equivalent_diameter_mm": float(2 * (3 * len(idx) * voxel / (4 * math.pi)) ** (1 / 3)),
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


def real_ct_case_set(
    out_dir: str | Path,
    sources: Sequence[str | Path],
    *,
    labels: Sequence[str | Path | None] | None = None,
    n_cases: int,
    abnormal_fraction: float = 0.5,
    seed: int,
    lesions_per_case: tuple[int, int] = (1, 3),
    settings: RealPairSettings | None = None,
    progress: bool = False,
) -> Path:
    """Make ``n_cases`` pairs from real CTs (cycled) and the case list that describes them.

    Writes ``out_dir/cases/<case_id>/`` (``prior.nii.gz``, ``current.nii.gz``, ``lesions.nii.gz``,
    ``bone.nii.gz`` with the location classes, ``prior_bone.nii.gz``, ``true_transform.h5``,
    ``params.json``), ``out_dir/caselist.csv`` and ``README.txt``. Lesion locations cycle through
    the classes each source offers, so every class present is represented.

    Raises
    ------
    SynthesisError
        Bad counts, a missing file, or a source without bone.
    """
    if n_cases < 1:
        raise SynthesisError(f"n_cases must be at least 1, got {n_cases}.")
    if not 0.0 <= abnormal_fraction <= 1.0:
        raise SynthesisError(f"abnormal_fraction must be between 0 and 1, got {abnormal_fraction}.")
    if not sources:
        raise SynthesisError("no source CT given (--from-ct).")
    label_paths = list(labels) if labels else [None] * len(sources)
    if len(label_paths) != len(sources):
        raise SynthesisError(f"{len(label_paths)} label maps for {len(sources)} CTs: give one --labels per --from-ct (or 'none').")
    loaded = []
    for src, lab in zip(sources, label_paths):
        src = Path(src)
        if not src.exists():
            raise SynthesisError(f"{src}: CT not found.")
        vol = read_volume(src, exam=True)  # a CT: 8-bit storage refused, as for every exam
        lv = None
        if lab is not None and str(lab).lower() != "none":
            if not Path(lab).exists():
                raise SynthesisError(f"{lab}: label map not found.")
            lv = read_volume(lab, label=True)
            lv.metadata["source"] = str(lab)
        loaded.append((src, vol, lv, _source_classes(vol, lv)))
    out_dir = Path(out_dir)
    (out_dir / "cases").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99]))
    n_abn = int(round(n_cases * abnormal_fraction))
    status = np.array([True] * n_abn + [False] * (n_cases - n_abn))
    rng.shuffle(status)
    case_seeds = [int(v) for v in rng.integers(0, 2**31 - 1, size=n_cases)]
    width = max(4, len(str(n_cases)))
    cycles: dict[int, int] = {}
    cases: list[Case] = []
    lines = []
    for i in range(n_cases):
        j = i % len(loaded)
        src, vol, lv, cls = loaded[j]
        case_id = f"RCT{i + 1:0{width}d}"
        n_les = int(rng.integers(lesions_per_case[0], lesions_per_case[1] + 1)) if status[i] else 0
        locs = None
        if n_les:
            classes_present = _classes_present(vol, cls)
            start = cycles.get(j, 0)
            locs = [classes_present[(start + q) % len(classes_present)] for q in range(n_les)]
            cycles[j] = start + n_les
        pair = None
        for attempt in range(4):
            try:
                pair = real_ct_pair(
                    vol,
                    case_id,
                    case_seeds[i] + 7919 * attempt,
                    labels=lv,
                    n_lesions=n_les,
                    lesion_locations=locs,
                    settings=settings,
                    source_name=src.name,
                    classes=cls,
                )
                if n_les and not pair.lesions:
                    continue
                break
            except SynthesisError:
                if attempt == 3:
                    raise
        assert pair is not None
        folder = out_dir / "cases" / case_id
        paths = write_pair(pair, folder)
        les = tuple(replace(x, label_map=paths["lesions"]) for x in pair.lesions)
        cases.append(Case(case_id, paths["prior"], paths["current"], bool(les), les, paths["true_transform"]))
        desc = ", ".join(f"{x.lesion_type.value} {x.location.value} r={x.radius_mm:.1f} mm" for x in les) or "none"
        lines.append(f"{case_id}: from {src.name}; seed {case_seeds[i]}; lesions: {desc}")
        if progress:
            print(lines[-1], flush=True)
    path = write_case_list(CaseList(tuple(cases)), out_dir / "caselist.csv")
    (out_dir / "README.txt").write_text(
        "Prior/current pairs made from real CTs (tsct cases synth --from-ct).\n"
        f"sources={[str(p) for p, _, _, _ in loaded]} seed={seed} n_cases={n_cases} abnormal_fraction={abnormal_fraction}\n"
        "Prior = the source CT (+ noise); current = the source moved (rigid + per-vertebra articulation + smooth field),\n"
        "re-acquired (kernel, slice thickness, spacing, noise), with new lesions inserted into bone.\n"
        "Truth: lesions.nii.gz, true_transform.h5 (current -> prior), params.json. Cite the source CT's licence.\n\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    (out_dir / "sources.json").write_text(
        json.dumps({"sources": [str(p) for p, _, _, _ in loaded], "labels": [None if x is None else str(x) for x in label_paths]}, indent=1),
        encoding="utf-8",
    )
    return path


def _source_classes(vol: Volume, labels: LabelVolume | None) -> LabelVolume:
    if labels is not None:
        if not labels.same_space(vol):
            labels = labels.resample_to(vol)
        return bone_classes_from_labels(labels)
    return bone_classes_from_ct(vol)


def _classes_present(vol: Volume, cls: LabelVolume) -> list[str]:
    counts = np.bincount(cls.array.ravel(), minlength=9) * vol.voxel_volume_mm3
    return [c for c in LOCATIONS if counts[_CLASS_VALUE[c]] > 2000.0] or [c for c in LOCATIONS if counts[_CLASS_VALUE[c]] > 0]
