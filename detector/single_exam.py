"""Single-exam anomaly map: the z machinery without a prior exam (``tsct detect single-exam``).

When there is no prior exam to subtract, each bone voxel of the **current exam** is compared
with what its own surroundings predict. A **blind-spot in-painting network**
(:class:`~detector._inpaint_net.BlindSpotNet`) looks at the current exam around every voxel but
never at the cube of ``(2 r + 1)^3`` voxels centred on it (``r = 2`` on the 1.5 mm working grid:
a 7.5 mm cube), and predicts a Gaussian ``N(mu, sigma^2)`` of the voxel's value. The z-score

    z = (current - mu) / sigma

is the same kind of map as the temporal one (:func:`detector.compute_zmap`) and is read, turned
into candidates and overlaid the same way; :class:`detector.ZMap` with ``method ==
"single-exam"``.

Design, in short
----------------
- Six branches with shared weights, each seeing one half-space of the volume beyond the blind
  cube (causal 3x3x3 convolutions along one axis, then a shift of ``r + 1`` voxels), combined
  by 1x1x1 layers that also take three exam-level numbers: the soft-tissue noise index of the
  exam and its voxel spacing (in-plane, slice). One forward pass gives every voxel's prediction
  (Laine et al. 2019, extended to 3-D and a blind block); 8 channels, 5 layers per branch.
- The working grid (1.5 mm isotropic), the HU normalisation ``(HU - 200) / 500`` and the
  beta-NLL loss (beta = 0.5) are those of the temporal network (:mod:`detector.train`).
- Trained on lesion-free exams only: the current *and* the prior exam of the normal pairs of a
  case list (both are lesion-free), so the network learns normal bone, cortex, endplates, noise
  and the benign findings of the training data.
- Bone ROI: the exam's own bone mask (:func:`detector.bone_mask`) grown by 3 mm, as the pair
  pipeline does, but from the current exam alone (:func:`single_exam_roi`).
- Per-exam recalibration (default) as for the temporal map: when the robust spread of z over the
  ROI exceeds 1, sigma is widened by that factor.

What it cannot do: tell an old lesion or a benign sclerotic island from a new lesion. Anything
that its surroundings do not explain is flagged, whether it was there last year or not; and a
lesion much larger than the blind cube is partly explained by its own rim. See
docs/detector-zscore.md, "Single-exam mode", for the measured comparison with the temporal map.

Weights bundle: ``detector/weights/single-exam-v1.pt`` + ``single-exam-v1.metadata.json``
(SHA-256 checked on load) + model card ``single-exam-v1.md`` with loss and calibration figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, Union

import numpy as np
from scipy import ndimage as ndi

from cases import CaseList, LabelVolume, Volume, read_case_list, read_exam

from ._errors import DetectorInputError
from ._training_common import beta_nll, hardware_info, record_bundle_evaluation, value_range, write_training_figures
from .bone import bone_mask, dilate_mask
from .zscore import (
    WORKING_SPACING_MM,
    DomainCheck,
    ModelBundle,
    ModelBundleError,
    OutOfDomainWarning,
    ZMap,
    load_bundle_weights,
    read_bundle_metadata,
    bone_hu_statistics,
    from_working_grid,
    make_working_grid,
    metadata_path_for,
    noise_index_hu,
    normalise_hu,
    resolve_device,
    sha256_of,
    to_working_grid,
)

__all__ = [
    "SingleExamModel",
    "SingleExamTrainingConfig",
    "SingleExamExam",
    "SingleExamTrainingResult",
    "compute_single_exam_zmap",
    "load_single_exam_model",
    "default_single_exam_model_path",
    "single_exam_roi",
    "single_exam_conditions",
    "prepare_single_exam_exams",
    "train_single_exam_model",
    "predict_single_exam_on_grid",
    "build_single_exam_net",
    "write_single_exam_model_card",
    "record_single_exam_evaluation",
    "SINGLE_EXAM_METHOD",
]

#: ``ZMap.method`` of a single-exam map.
SINGLE_EXAM_METHOD = "single-exam"
MODEL_NAME = "tsct-single-exam"
#: Noise levels are given to the network divided by this (HU); spacings divided by 1.5 mm.
NOISE_SCALE_HU = 50.0
#: The bone mask is grown by this much to make the ROI (as :func:`detector.run_pair` does), mm.
ROI_MARGIN_MM = 3.0
CONDITION_NAMES: tuple[str, ...] = ("noise index (HU) / 50", "in-plane spacing (mm) / 1.5", "slice spacing (mm) / 1.5")
_CACHE_NAME = "single_exam_{role}.npz"

ModelSpec = Union["SingleExamModel", str, Path, None]


# =============================================================================================
# Exam-level inputs and the ROI
# =============================================================================================
def single_exam_conditions(noise_hu: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """The network's exam-level inputs (:data:`CONDITION_NAMES`): noise index and voxel spacing.

    A sharper or noisier exam has more voxel-to-voxel variation that no in-painting can
    predict; telling the network lets sigma follow it.
    """
    s = [float(v) for v in spacing_mm]
    return np.asarray([noise_hu / NOISE_SCALE_HU, (s[0] + s[1]) / 2 / 1.5, s[2] / 1.5], dtype=np.float32)


def single_exam_roi(volume: Volume, *, margin_mm: float = ROI_MARGIN_MM) -> LabelVolume:
    """Bone ROI of one exam: :func:`detector.bone_mask` grown by ``margin_mm`` (3 mm).

    The same rule as the pair pipeline's ROI, but from this exam alone (the pipeline thresholds
    the voxel-wise maximum of current and warped prior).
    """
    if isinstance(volume, LabelVolume) or not isinstance(volume, Volume):
        raise DetectorInputError("single_exam_roi needs a CT volume in HU (cases.Volume), not a label volume.")
    return dilate_mask(bone_mask(volume), margin_mm)


# =============================================================================================
# The bundle
# =============================================================================================
def default_single_exam_model_path() -> Path:
    """The shipped weights: ``detector/weights/single-exam-v1.pt``."""
    return Path(__file__).resolve().parent / "weights" / "single-exam-v1.pt"


def build_single_exam_net(channels: int = 8, n_layers: int = 5, blind_radius_vox: int = 2, head_channels: int = 32) -> Any:
    """A new, untrained :class:`~detector._inpaint_net.BlindSpotNet`."""
    from ._inpaint_net import BlindSpotNet

    return BlindSpotNet(channels=channels, n_layers=n_layers, blind_radius_vox=blind_radius_vox, n_conditions=len(CONDITION_NAMES), head_channels=head_channels)


@dataclass(frozen=True, eq=False)
class SingleExamModel(ModelBundle):
    """A trained single-exam in-painting network (:class:`~detector._inpaint_net.BlindSpotNet`)
    with its metadata (see :class:`~detector.zscore.ModelBundle`)."""

    default_name: ClassVar[str] = MODEL_NAME

    @property
    def blind_radius_vox(self) -> int:
        return int(self.net.blind_radius_vox)

    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.net.parameters()))

    def check_domain(self, spacing_mm: Sequence[float], hu_work: np.ndarray, roi_work: np.ndarray, noise_hu: float) -> DomainCheck:
        """Compare one exam (on the working grid) with the training domain in the metadata.

        Voxel spacing per axis within the trained range ± 10 %; median and 95th percentile of
        bone HU within the trained range ± 50 HU; soft-tissue noise index within the trained
        range × or ÷ 1.3.
        """
        return _check_domain(self.metadata.get("domain", {}), spacing_mm, hu_work, roi_work, noise_hu)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"SingleExamModel({self.name} v{self.version}; {self.n_parameters} parameters; blind cube {2 * self.blind_radius_vox + 1}^3 voxels; {self.device}{where})"


def _check_domain(domain: dict[str, Any], spacing_mm: Sequence[float], hu_work: np.ndarray, roi_work: np.ndarray, noise_hu: float) -> DomainCheck:
    measured: dict[str, Any] = {"spacing_mm": [float(s) for s in spacing_mm], "noise_hu": noise_hu, **bone_hu_statistics(hu_work, roi_work)}
    reasons: list[str] = []
    lo, hi = domain.get("spacing_min_mm"), domain.get("spacing_max_mm")
    tol = float(domain.get("spacing_tolerance", 0.1))
    if lo is not None and hi is not None:
        for axis, s, a, b in zip("xyz", spacing_mm, lo, hi):
            if s < a * (1 - tol) - 1e-6 or s > b * (1 + tol) + 1e-6:
                reasons.append(f"voxel spacing along {axis} is {s:.2f} mm, trained on {a:.2f}-{b:.2f} mm")
    margin = float(domain.get("hu_margin", 50.0))
    for key, label in (("bone_hu_p50", "median bone HU"), ("bone_hu_p95", "95th percentile of bone HU")):
        rng, v = domain.get(key), measured.get(key)
        if rng is not None and v is not None and math.isfinite(v) and (v < rng[0] - margin or v > rng[1] + margin):
            reasons.append(f"{label} is {v:.0f} HU, trained on {rng[0]:.0f}-{rng[1]:.0f} HU (±{margin:.0f})")
    rng = domain.get("noise_hu")
    if rng is not None:
        factor = float(domain.get("noise_factor", 1.3))
        if not math.isfinite(noise_hu):
            reasons.append("the noise index could not be measured (too little soft tissue around the bone)")
        elif noise_hu < rng[0] / factor or noise_hu > rng[1] * factor:
            reasons.append(f"noise index is {noise_hu:.1f} HU (soft tissue), trained on {rng[0]:.1f}-{rng[1]:.1f} HU (x/÷{factor:g})")
    return DomainCheck(in_domain=not reasons, reasons=tuple(reasons), measured=measured)


def load_single_exam_model(path: str | Path | None = None, *, device: str = "cpu", verify_hash: bool = True) -> SingleExamModel:
    """Load a single-exam weights bundle (``.pt`` + ``.metadata.json``), checking its SHA-256.

    Parameters
    ----------
    path : the ``.pt`` weights file; None: the shipped :func:`default_single_exam_model_path`.
    device : ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
    verify_hash : compare the file's SHA-256 with ``sha256`` in the metadata.

    Raises
    ------
    ModelBundleError
        Missing weights or metadata, a hash mismatch (expected and actual hash in the message),
        a bundle of another kind (e.g. the temporal z-score network), or weights that do not fit
        the architecture the metadata describes.
    """
    weights = Path(path) if path is not None else default_single_exam_model_path()
    metadata = read_bundle_metadata(weights, verify_hash=verify_hash, missing_hint=f"single-exam weights not found. Train them with 'tsct detect train-single-exam CASELIST --out {weights}'.")
    if metadata.get("name") != MODEL_NAME:
        raise ModelBundleError(f"{weights}: this is a '{metadata.get('name')}' bundle, not a single-exam one ('{MODEL_NAME}'); the temporal z-score network needs a prior exam (tsct detect run).")
    arch = metadata.get("architecture", {})
    net = build_single_exam_net(
        channels=int(arch.get("channels", 8)), n_layers=int(arch.get("n_layers", 5)), blind_radius_vox=int(arch.get("blind_radius_vox", 2)), head_channels=int(arch.get("head_channels", 32))
    )
    dev = resolve_device(device)
    net = load_bundle_weights(net, weights, dev)
    return SingleExamModel(net=net, metadata=metadata, path=weights, device=dev)


_DEFAULT_CACHE: dict[tuple[str, str], SingleExamModel] = {}


def _resolve_model(model: ModelSpec, device: str) -> SingleExamModel:
    if isinstance(model, SingleExamModel):
        return model
    if model is None or (isinstance(model, str) and model == "default"):
        key = (str(default_single_exam_model_path()), device)
        if key not in _DEFAULT_CACHE:
            _DEFAULT_CACHE[key] = load_single_exam_model(None, device=device)
        return _DEFAULT_CACHE[key]
    return load_single_exam_model(model, device=device)


# =============================================================================================
# Inference
# =============================================================================================
def predict_single_exam_on_grid(
    net: Any,
    hu: np.ndarray,
    conditions: Sequence[float],
    roi: np.ndarray,
    *,
    device: Any = "cpu",
    tile_vox: int | None = None,
    max_voxels_per_pass: int = 8_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the blind-spot network on every tile of a working-grid exam that holds ROI voxels.

    Parameters
    ----------
    net : a :class:`~detector._inpaint_net.BlindSpotNet`.
    hu : the exam on the working grid, HU, shape (z, y, x).
    conditions : :func:`single_exam_conditions` of the exam.
    roi : boolean array of the same shape: where outputs are needed.
    device : torch device.
    tile_vox : output tile edge, voxels; each tile is read with a halo of ``net.halo_vox``, so
        tiled and whole-volume results agree. None: the whole grid in one pass when it holds at
        most ``max_voxels_per_pass`` voxels with its halo, else 96^3 tiles.

    Returns
    -------
    mu_hu, sigma_hu : float32 arrays of the same shape; outside the computed tiles ``mu`` is the
        exam itself and ``sigma`` is NaN.
    """
    import torch

    device = torch.device(device) if not isinstance(device, torch.device) else device
    halo = int(net.halo_vox)
    shape = hu.shape
    mu = hu.astype(np.float32, copy=True)
    sigma = np.full(shape, np.nan, dtype=np.float32)
    padded = np.pad(normalise_hu(hu), halo, mode="edge")
    cond = torch.from_numpy(np.asarray(conditions, dtype=np.float32).reshape(1, -1)).to(device)
    if cond.shape[1] != int(net.n_conditions):
        raise DetectorInputError(f"The network takes {int(net.n_conditions)} condition values, got {cond.shape[1]}.")
    net = net.to(device).eval()
    if tile_vox is None:
        whole = int(np.prod([n + 2 * halo for n in shape]))
        tile_vox = max(shape) if whole <= max_voxels_per_pass else 96
    with torch.inference_mode():
        for z0 in range(0, shape[0], tile_vox):
            for y0 in range(0, shape[1], tile_vox):
                for x0 in range(0, shape[2], tile_vox):
                    z1, y1, x1 = min(z0 + tile_vox, shape[0]), min(y0 + tile_vox, shape[1]), min(x0 + tile_vox, shape[2])
                    if not roi[z0:z1, y0:y1, x0:x1].any():
                        continue
                    block = padded[z0 : z1 + 2 * halo, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
                    xt = torch.from_numpy(np.ascontiguousarray(block)[None, None]).to(device)
                    m, lv = net(xt, cond)
                    inner = (0, 0, slice(halo, -halo), slice(halo, -halo), slice(halo, -halo))
                    mu[z0:z1, y0:y1, x0:x1] = m[inner].float().cpu().numpy() * 500.0 + 200.0
                    sigma[z0:z1, y0:y1, x0:x1] = 500.0 * np.exp(0.5 * lv[inner].float().cpu().numpy())
    return mu, sigma


def compute_single_exam_zmap(
    current_volume: Volume,
    bone_roi: LabelVolume | None = None,
    *,
    model: ModelSpec = "default",
    device: str = "cpu",
    force: bool = False,
    recalibrate: bool = True,
    tile_vox: int | None = None,
) -> ZMap:
    """Single-exam anomaly map of one CT: z of every bone voxel against its in-painted estimate.

    Parameters
    ----------
    current_volume : the CT, HU (:class:`cases.Volume`).
    bone_roi : where to compute, a label volume on the same grid; None: :func:`single_exam_roi`
        of the exam (its bone mask grown by 3 mm).
    model : ``"default"`` (the shipped bundle ``single-exam-v1``), a weights path, or a loaded
        :class:`SingleExamModel`.
    device : torch device (``"cpu"`` by default, ``"auto"`` picks CUDA if present).
    force : use the network even when the exam is outside its training domain. Without it, an
        out-of-domain exam raises :class:`~detector.DetectorInputError` after the warning, since
        there is no analytic fallback without a prior exam.
    recalibrate : when the robust spread of z over the ROI (1.4826 x MAD) exceeds 1, widen sigma
        by that factor (at most 5) and divide z by it, as the temporal map does.
    tile_vox : network tile size on the working grid (None: automatic).

    Returns
    -------
    ZMap
        ``method == "single-exam"``; ``estimate_hu`` is the in-painted ``mu`` (the exam itself
        outside the ROI); ``z`` and ``sigma_hu`` are 0 outside the ROI; ``parameters`` hold the
        noise index, the blind cube and the recalibration factor.

    Warns
    -----
    OutOfDomainWarning
        When the exam lies outside the training domain.

    Raises
    ------
    DetectorInputError
        A label volume where CT is expected, an ROI on another grid, or an out-of-domain exam
        without ``force``.
    ModelBundleError
        A weights bundle that cannot be loaded or fails its hash check.
    """
    if isinstance(current_volume, LabelVolume) or not isinstance(current_volume, Volume):
        raise DetectorInputError("current_volume must be a CT volume in HU (cases.Volume).")
    if bone_roi is None:
        bone_roi = single_exam_roi(current_volume)
    elif not isinstance(bone_roi, LabelVolume) or not current_volume.same_space(bone_roi):
        raise DetectorInputError("bone_roi must be a LabelVolume on the exam's grid (or None to derive it from the exam).")
    net_model = _resolve_model(model, device)
    roi = bone_roi.array != 0
    cur = current_volume.array.astype(np.float32, copy=False)
    estimate = cur.copy()
    sigma = np.zeros(cur.shape, dtype=np.float32)
    z = np.zeros(cur.shape, dtype=np.float32)
    notes: list[str] = []
    params: dict[str, Any] = {"blind_cube_vox": 2 * net_model.blind_radius_vox + 1, "working_spacing_mm": net_model.working_spacing_mm}
    domain: DomainCheck | None = None
    if roi.any():
        ws = net_model.working_spacing_mm
        grid = make_working_grid(current_volume, roi, ws, (net_model.net.halo_vox + 2) * ws)
        assert grid is not None
        cur_w = to_working_grid(cur, grid, current_volume.spacing_mm)
        roi_w = to_working_grid(roi.astype(np.float32), grid, current_volume.spacing_mm, label=True) > 0.5
        grown = ndi.binary_dilation(roi_w, iterations=2) if roi_w.any() else roi_w
        noise = noise_index_hu(cur_w, grown)
        domain = net_model.check_domain(current_volume.spacing_mm, cur_w, roi_w, noise)
        params["noise_hu"] = noise
        if not domain.in_domain:
            msg = f"single-exam network v{net_model.version}: the exam is {domain.summary()}"
            if not force:
                warnings.warn(msg, OutOfDomainWarning, stacklevel=2)
                raise DetectorInputError(msg + ". There is no analytic fallback without a prior exam; pass force=True (--force-model) to use the network anyway.")
            notes.append(msg + "; used anyway because it was forced")
            warnings.warn(notes[-1], OutOfDomainWarning, stacklevel=2)
            params["forced"] = True
        if not math.isfinite(noise):
            noise = float(np.mean(net_model.metadata.get("domain", {}).get("noise_hu", [20.0, 20.0])))
            notes.append(f"noise index not measurable; the training mean {noise:.1f} HU was used")
        cond = single_exam_conditions(noise, current_volume.spacing_mm)
        mu_w, sig_w = predict_single_exam_on_grid(net_model.net, cur_w, cond, grown | roi_w, device=net_model.device, tile_vox=tile_vox)
        ok = np.isfinite(sig_w)
        # z on the working grid, where the Gaussian is defined, then interpolated (as compute_zmap)
        z_w = np.where(ok, (cur_w - mu_w) / np.where(ok, sig_w, 1.0), 0.0).astype(np.float32)
        log_sig_w = np.where(ok, np.log(np.maximum(sig_w, 1e-3)), np.log(60.0)).astype(np.float32)
        mu_fill = np.where(ok, mu_w, cur_w).astype(np.float32)
        box = grid.box
        r = roi[box]
        z_n = from_working_grid(z_w, grid, current_volume.spacing_mm, 0.0)
        sig_n = np.exp(from_working_grid(log_sig_w, grid, current_volume.spacing_mm, float(np.log(60.0))))
        mu_n = from_working_grid(mu_fill, grid, current_volume.spacing_mm, 0.0)
        for target, values in ((z, z_n), (sigma, sig_n), (estimate, mu_n)):
            sub = target[box]
            sub[r] = values[r]
            target[box] = sub
        if recalibrate:
            vals = z[roi]
            spread = float(1.4826 * np.median(np.abs(vals - np.median(vals))))
            factor = float(np.clip(spread, 1.0, 5.0))
            params["recalibration_factor"] = factor
            params["z_robust_sd_before"] = spread
            if factor > 1.0:
                z /= factor
                sigma *= factor
                notes.append(f"sigma widened by {factor:.2f} for this exam: the robust spread of z in its bone ROI was {spread:.2f} (1 when the exam is like the training exams)")
    else:
        notes.append("the bone ROI is empty; nothing was computed")
    notes.append("single-exam map: anything the surroundings do not explain is flagged, old or new (no prior exam to compare with)")
    meta = {"method": SINGLE_EXAM_METHOD}
    return ZMap(
        z=current_volume.like(z).with_array(z, kind="z-score", units="1", **meta),
        sigma_hu=current_volume.like(sigma).with_array(sigma, kind="z-score sigma", units="HU", **meta),
        estimate_hu=current_volume.like(estimate).with_array(estimate, kind="in-painted estimate", units="HU", **meta),
        bone_roi=bone_roi,
        method=SINGLE_EXAM_METHOD,  # type: ignore[arg-type]
        model_version=net_model.version,
        domain=domain,
        notes=tuple(notes),
        parameters=params,
    )


# =============================================================================================
# Training data
# =============================================================================================
@dataclass(eq=False)
class SingleExamExam:
    """One lesion-free exam on the working grid: HU, bone ROI, noise index, native spacing."""

    case_id: str
    role: str
    hu: np.ndarray
    roi: np.ndarray
    noise_hu: float
    spacing_mm: tuple[float, float, float]
    bone_stats: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_roi_voxels(self) -> int:
        return int(self.roi.sum())

    @property
    def conditions(self) -> np.ndarray:
        return single_exam_conditions(self.noise_hu, self.spacing_mm)


def _exam_to_working(case_id: str, role: str, volume: Volume, ws: float, halo_mm: float, provenance: dict[str, Any]) -> SingleExamExam:
    roi = single_exam_roi(volume).array != 0
    grid = make_working_grid(volume, roi, ws, halo_mm)
    if grid is None:
        raise DetectorInputError("empty bone ROI")
    hu = to_working_grid(volume.array, grid, volume.spacing_mm)
    roi_w = to_working_grid(roi.astype(np.float32), grid, volume.spacing_mm, label=True) > 0.5
    grown = ndi.binary_dilation(roi_w, iterations=2) if roi_w.any() else roi_w
    return SingleExamExam(
        case_id=case_id, role=role, hu=hu.astype(np.float32), roi=roi_w, noise_hu=noise_index_hu(hu, grown),
        spacing_mm=tuple(float(s) for s in volume.spacing_mm), bone_stats=bone_hu_statistics(hu, roi_w), provenance=provenance,  # type: ignore[arg-type]
    )


def _save_exam(path: Path, exam: SingleExamExam, ws: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"case_id": exam.case_id, "role": exam.role, "noise_hu": exam.noise_hu, "spacing_mm": list(exam.spacing_mm), "bone_stats": exam.bone_stats, "provenance": exam.provenance, "working_spacing_mm": ws}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, hu=np.clip(np.rint(exam.hu), -32768, 32767).astype(np.int16), roi=exam.roi, meta=json.dumps(meta))
    os.replace(tmp, path)


def _load_exam(path: Path, ws: float) -> SingleExamExam | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if abs(float(meta.get("working_spacing_mm", -1)) - ws) > 1e-6:
                return None
            return SingleExamExam(
                case_id=meta["case_id"], role=meta["role"], hu=data["hu"].astype(np.float32), roi=data["roi"].astype(bool), noise_hu=float(meta["noise_hu"]),
                spacing_mm=tuple(meta["spacing_mm"]), bone_stats=meta["bone_stats"], provenance=meta.get("provenance", {}),
            )
    except (OSError, KeyError, ValueError):
        return None


def prepare_single_exam_exams(
    case_list: CaseList | str | Path,
    work_dir: str | Path,
    *,
    include_priors: bool = True,
    working_spacing_mm: float = WORKING_SPACING_MM,
    halo_mm: float = 20.0,
    max_pairs: int | None = None,
    progress: bool = True,
    on_exam: Callable[[str, str], None] | None = None,
) -> list[SingleExamExam]:
    """The lesion-free exams of a case list's normal pairs, on the working grid, with their ROI.

    No registration is needed: each exam is read, its bone ROI derived from itself
    (:func:`single_exam_roi`), and both are resampled onto the working grid and cached in
    ``work_dir/<case_id>/single_exam_<role>.npz``.

    Parameters
    ----------
    case_list : a case list or its CSV path; only ``normal`` cases are used.
    work_dir : where the caches go (reused when present).
    include_priors : also use the prior exam of each normal pair (lesion-free as well).
    working_spacing_mm, halo_mm : the working grid and the margin kept around the ROI.
    max_pairs : at most this many normal cases (in list order).
    progress : show a progress bar.
    on_exam : called as ``on_exam("<case_id>/<role>", outcome)`` with ``"cached"``, ``"prepared"``
        or ``"skipped: <why>"``.

    Raises
    ------
    DetectorInputError
        No normal case in the list, or none of its exams could be used.
    """
    if not isinstance(case_list, CaseList):
        case_list = read_case_list(case_list)
    normals = case_list.normal_cases
    if not normals:
        raise DetectorInputError(f"{case_list.source or 'The case list'}: no normal case. The single-exam network is trained on lesion-free exams (status 'normal').")
    if max_pairs is not None:
        normals = normals[:max_pairs]
    roles = ("current", "prior") if include_priors else ("current",)
    work = Path(work_dir)
    exams: list[SingleExamExam] = []
    skipped: list[str] = []
    bar = task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("training exams", total=len(normals) * len(roles))
    try:
        for case in normals:
            for role in roles:
                key = f"{case.case_id}/{role}"
                cache = work / case.case_id / _CACHE_NAME.format(role=role)
                outcome = "cached"
                try:
                    exam = _load_exam(cache, working_spacing_mm)
                    if exam is None:
                        outcome = "prepared"
                        src = case.current if role == "current" else case.prior
                        volume = read_exam(src).volume
                        exam = _exam_to_working(case.case_id, role, volume, working_spacing_mm, halo_mm, _provenance(case, role))
                        _save_exam(cache, exam, working_spacing_mm)
                    exams.append(exam)
                except Exception as exc:  # noqa: BLE001 - a bad exam is reported and left out
                    outcome = f"skipped: {type(exc).__name__}: {exc}"
                    skipped.append(f"{key}: {outcome}")
                if on_exam is not None:
                    on_exam(key, outcome)
                if bar is not None:
                    bar.update(task, advance=1, description=key)  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.stop()
    if not exams:
        raise DetectorInputError("No exam could be prepared for training: " + "; ".join(skipped))
    return exams


def _provenance(case: Any, role: str) -> dict[str, Any]:
    info: dict[str, Any] = {"case_id": case.case_id, "role": role, "path": str(case.current if role == "current" else case.prior)}
    folder = case.current if case.current.is_dir() else case.current.parent
    p = folder / "params.json"
    if p.is_file():
        try:
            req = json.loads(p.read_text(encoding="utf-8")).get("request", {})
            info["synthetic"] = {k: req.get(k) for k in ("seed", "size", "abnormal") if k in req}
        except ValueError:
            pass
    return info


# =============================================================================================
# Training
# =============================================================================================
@dataclass(frozen=True)
class SingleExamTrainingConfig:
    """Settings of :func:`train_single_exam_model`.

    Parameters
    ----------
    iterations : optimiser steps.
    batch_size : patches per step.
    patch_vox : patch edge on the working grid, voxels.
    loss_border_vox : voxels next to a patch face left out of the loss (their context is cut off
        by the patch; at inference it is not).
    learning_rate : Adam step size (cosine decay to 5 % over the run).
    beta : beta of the beta-NLL loss (0 = Gaussian NLL).
    channels, n_layers, blind_radius_vox, head_channels : the network
        (:class:`~detector._inpaint_net.BlindSpotNet`).
    working_spacing_mm : the network's grid spacing, mm (isotropic).
    checkpoint_every : iterations between checkpoints and validation passes.
    validation_pairs : normal cases (both exams) held out for validation and calibration figures.
    seed : seeds patch sampling, the validation split and the weight initialisation.
    device : ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    num_threads : CPU threads for torch (None: torch's default).
    version : version string written into the metadata.
    """

    iterations: int = 600
    batch_size: int = 6
    patch_vox: int = 32
    loss_border_vox: int = 5
    learning_rate: float = 2e-3
    beta: float = 0.5
    channels: int = 8
    n_layers: int = 5
    blind_radius_vox: int = 2
    head_channels: int = 32
    working_spacing_mm: float = WORKING_SPACING_MM
    checkpoint_every: int = 100
    validation_pairs: int = 2
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    version: str = "1.0.0"

    def __post_init__(self) -> None:
        problems = []
        if self.iterations < 1 or self.batch_size < 1:
            problems.append("iterations and batch_size must be at least 1")
        if self.patch_vox - 2 * self.loss_border_vox < 4 or self.loss_border_vox < 0:
            problems.append(f"patch_vox ({self.patch_vox}) must leave at least 4 voxels inside a loss border of {self.loss_border_vox}")
        if not 0.0 <= self.beta <= 1.0:
            problems.append(f"beta must be in [0, 1], got {self.beta}")
        if self.learning_rate <= 0 or self.working_spacing_mm <= 0:
            problems.append("learning_rate and working_spacing_mm must be positive")
        if min(self.channels, self.n_layers, self.head_channels, self.checkpoint_every) < 1 or self.blind_radius_vox < 0 or self.validation_pairs < 0:
            problems.append("channels, n_layers, head_channels and checkpoint_every must be at least 1; blind_radius_vox and validation_pairs non-negative")
        if problems:
            raise DetectorInputError("Invalid SingleExamTrainingConfig: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SingleExamTrainingResult:
    """What :func:`train_single_exam_model` produced (bundle files, history, validation figures)."""

    weights_path: Path
    metadata_path: Path
    model_card_path: Path
    figures: tuple[Path, ...]
    iterations: int
    elapsed_s: float
    history: dict[str, Any]
    validation: dict[str, float]

    def summary(self) -> str:
        v = self.validation
        val = (
            f"validation: |z| > 3 in {100 * v['frac_abs_z_gt3']:.2f} % of bone voxels (0.27 % if calibrated), z sd {v['z_sd']:.2f}, NLL {v['nll']:.3f}"
            if v
            else "no validation exams"
        )
        return f"{self.iterations} iterations in {self.elapsed_s / 60:.1f} min; {val}. Weights: {self.weights_path}; model card: {self.model_card_path}"


class _Sampler:
    """Random bone-centred patches of the training exams (input and target are the same exam)."""

    def __init__(self, exams: Sequence[SingleExamExam], patch_vox: int, rng: np.random.Generator) -> None:
        self.p = int(patch_vox)
        self.rng = rng
        half = self.p // 2
        pad = ((half, self.p), (half, self.p), (half, self.p))
        self.data = [(np.pad(normalise_hu(e.hu), pad, mode="edge"), np.pad(e.roi, pad), np.argwhere(e.roi)) for e in exams]
        w = np.asarray([len(d[2]) for d in self.data], dtype=float)
        self.prob = w / w.sum()
        self.conditions = np.stack([e.conditions for e in exams])

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.p
        x = np.empty((batch_size, 1, p, p, p), dtype=np.float32)
        m = np.empty((batch_size, 1, p, p, p), dtype=bool)
        c = np.empty((batch_size, self.conditions.shape[1]), dtype=np.float32)
        for b in range(batch_size):
            i = int(self.rng.choice(len(self.data), p=self.prob))
            hu, roi, centres = self.data[i]
            ctr = centres[int(self.rng.integers(len(centres)))]
            sl = tuple(slice(int(v), int(v) + p) for v in ctr)
            xp, mp = hu[sl], roi[sl]
            if self.rng.random() < 0.5:
                xp, mp = xp[..., ::-1], mp[..., ::-1]
            x[b, 0], m[b, 0], c[b] = xp, mp, self.conditions[i]
        return x, m, c




def _validate(net, exams: Sequence[SingleExamExam], device) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    zs, sig, res = [], [], []
    for e in exams:
        mu, sigma = predict_single_exam_on_grid(net, e.hu, e.conditions, e.roi, device=device)
        r = e.roi & np.isfinite(sigma)
        resid = e.hu[r] - mu[r]
        zs.append(resid / sigma[r])
        sig.append(sigma[r])
        res.append(resid)
    net.train()
    if not zs:
        return {}
    z, s, e_ = np.concatenate(zs), np.concatenate(sig), np.concatenate(res)
    nll = float(np.mean(0.5 * np.log(2 * np.pi * s.astype(np.float64) ** 2) + 0.5 * z.astype(np.float64) ** 2))
    edges = np.quantile(s, np.linspace(0, 1, 11))
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (s >= lo) & (s <= hi)
        if sel.any():
            bins.append({"sigma_mean_hu": float(s[sel].mean()), "rmse_hu": float(np.sqrt(np.mean(e_[sel].astype(np.float64) ** 2))), "n": int(sel.sum())})
    robust = float(1.4826 * np.median(np.abs(z - np.median(z))))
    return {
        "nll": nll, "frac_abs_z_gt3": float(np.mean(np.abs(z) > 3)), "frac_abs_z_gt4": float(np.mean(np.abs(z) > 4)),
        "z_mean": float(z.mean()), "z_sd": float(z.std()), "z_robust_sd": robust, "rmse_hu": float(np.sqrt(np.mean(e_.astype(np.float64) ** 2))),
        "sigma_median_hu": float(np.median(s)), "sigma_p95_hu": float(np.percentile(s, 95)), "n_voxels": int(z.size),
        "calibration_bins": bins, "z_histogram": np.histogram(np.clip(z, -8, 8), bins=np.linspace(-8, 8, 81))[0].tolist(),
    }




def train_single_exam_model(
    exams: Sequence[SingleExamExam],
    out_path: str | Path,
    *,
    config: SingleExamTrainingConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    training_data: dict[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    hardware_note: str | None = None,
    on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
) -> SingleExamTrainingResult:
    """Train the single-exam in-painting network on lesion-free exams and write the bundle.

    Parameters
    ----------
    exams : from :func:`prepare_single_exam_exams`.
    out_path : the weights file (``.pt``); metadata, model card and figures go beside it.
    config : training settings.
    resume : continue from the checkpoint ``<stem>.ckpt.pt`` in ``checkpoint_dir`` (same
        settings expected).
    progress : show a progress bar with the running NLL.
    training_data : description of the data for the metadata (case list, ...).
    checkpoint_dir : where the checkpoint is kept (default: beside the weights).
    hardware_note : a sentence on the conditions (e.g. shared CPU) for the model card.
    on_checkpoint : called as ``on_checkpoint(iteration, validation)`` at each checkpoint.

    Returns
    -------
    SingleExamTrainingResult
    """
    import torch

    cfg = config or SingleExamTrainingConfig()
    if not exams:
        raise DetectorInputError("No training exams given.")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_path = (Path(checkpoint_dir) if checkpoint_dir is not None else out.parent) / (out.stem + ".ckpt.pt")
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    case_ids = sorted({e.case_id for e in exams})
    order = rng.permutation(len(case_ids))
    n_val = min(cfg.validation_pairs, max(0, len(case_ids) - 1))
    val_ids = {case_ids[i] for i in order[:n_val]}
    val_exams = [e for e in exams if e.case_id in val_ids]
    train_exams = [e for e in exams if e.case_id not in val_ids]
    torch.manual_seed(cfg.seed)
    net = build_single_exam_net(cfg.channels, cfg.n_layers, cfg.blind_radius_vox, cfg.head_channels).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(it, cfg.iterations) / cfg.iterations)))
    history: dict[str, Any] = {"loss": [], "nll": [], "validation": []}
    start_it = 0
    elapsed_before = 0.0
    sampler_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(1)[0])
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        keys = ("patch_vox", "channels", "n_layers", "blind_radius_vox", "head_channels")
        if any(state.get("config", {}).get(k) != getattr(cfg, k) for k in keys):
            raise DetectorInputError(f"{ckpt_path}: the checkpoint was made with other settings ({state.get('config')}); remove it or train with those settings.")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = state["history"]
        start_it = int(state["iteration"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        sampler_rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
    sampler = _Sampler(train_exams, cfg.patch_vox, sampler_rng)
    b = cfg.loss_border_vox
    inner = np.zeros((1, 1) + (cfg.patch_vox,) * 3, dtype=bool)
    inner[..., b : cfg.patch_vox - b, b : cfg.patch_vox - b, b : cfg.patch_vox - b] = True
    inner_t = torch.from_numpy(inner).to(device)
    t0 = time.perf_counter()
    bar = task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]training (single exam)"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
        bar.start()
        task = bar.add_task("train", total=cfg.iterations, completed=start_it, info="")

    last_val: dict[int, dict[str, Any]] = {}

    def checkpoint(it: int) -> None:
        val = _validate(net, val_exams, device) if val_exams else {}
        last_val.clear()
        last_val[it] = val
        history["validation"].append({"iteration": it, **{k: v for k, v in val.items() if k not in ("calibration_bins", "z_histogram")}})
        torch.save(
            {
                "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history, "iteration": it,
                "elapsed_s": elapsed_before + time.perf_counter() - t0, "config": cfg.to_dict(), "sampler_rng": sampler_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            },
            ckpt_path,
        )
        if on_checkpoint is not None:
            on_checkpoint(it, val)

    net.train()
    try:
        for it in range(start_it, cfg.iterations):
            x, m, c = sampler.batch(cfg.batch_size)
            xt = torch.from_numpy(x).to(device)
            mt = torch.from_numpy(m).to(device) & inner_t
            mu, log_var = net(xt, torch.from_numpy(c).to(device))
            loss, nll = beta_nll(mu, log_var, xt, mt, cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            history["loss"].append(float(loss.item()))
            history["nll"].append(float(nll.item()))
            if bar is not None:
                bar.update(task, advance=1, info=f"NLL {np.mean(history['nll'][-50:]):+.3f}")  # type: ignore[arg-type]
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                checkpoint(it + 1)
    finally:
        if bar is not None:
            bar.stop()
    elapsed = elapsed_before + time.perf_counter() - t0
    n_done = len(history["loss"])
    final_val = last_val[n_done] if n_done in last_val else (_validate(net, val_exams, device) if val_exams else {})

    net_cpu = net.to("cpu").eval()
    torch.save({k: v.detach().clone().float() for k, v in net_cpu.state_dict().items()}, out)
    digest = sha256_of(out)
    figures = write_training_figures(out, history, final_val, title="single-exam in-painting network")
    metadata = _metadata(cfg, net_cpu, train_exams, val_exams, final_val, elapsed, device, digest, training_data or {}, len(history["loss"]), hardware_note)
    meta_path = metadata_path_for(out)
    meta_path.write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    card = write_single_exam_model_card(out, metadata, figures)
    scalars = {k: v for k, v in final_val.items() if isinstance(v, (int, float))}
    return SingleExamTrainingResult(out, meta_path, card, tuple(figures), len(history["loss"]), elapsed, history, scalars)




def _metadata(cfg, net, train_exams, val_exams, val, elapsed, device, digest, training_data, n_it, hardware_note) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    import torch

    spacings = np.asarray([e.spacing_mm for e in train_exams])
    seeds = sorted({e.provenance.get("synthetic", {}).get("seed") for e in train_exams} - {None})
    hw = hardware_info(device)
    if hardware_note:
        hw["note"] = hardware_note
    return {
        "schema": "tsct-single-exam-bundle/1",
        "name": MODEL_NAME,
        "version": cfg.version,
        "changelog": {cfg.version: "first single-exam in-painting network (3-D blind-spot network, beta-NLL), tsct detect train-single-exam"},
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "intended_use": "research use only; not for diagnosis",
        "sha256": digest,
        "pytorch_version": torch.__version__,
        "numpy_version": np.__version__,
        "architecture": {
            "class": "detector._inpaint_net.BlindSpotNet", "channels": cfg.channels, "n_layers": cfg.n_layers, "blind_radius_vox": cfg.blind_radius_vox,
            "head_channels": cfg.head_channels, "n_conditions": len(CONDITION_NAMES), "n_parameters": int(sum(p.numel() for p in net.parameters())),
            "reach_vox": int(net.reach_vox), "padding": "zeros", "normalisation_layers": "none",
            "design": "six half-space branches with shared weights (causal 3x3x3 convolutions, shift of blind_radius_vox + 1), combined by 1x1x1 layers",
        },
        "input": {
            "modality": "CT", "format": "hounsfield", "working_spacing_mm": cfg.working_spacing_mm,
            "channels": {"0": "the exam on the working grid, (clip(HU, -1024, 3071) - 200) / 500"},
            "conditions": list(CONDITION_NAMES),
            "noise_index": "1.4826 x MAD of neighbour differences / sqrt(2) along x and y in soft tissue (-150..150 HU) outside the bone ROI grown by 2 voxels, on the working grid",
            "never_sees": f"the cube of {2 * cfg.blind_radius_vox + 1}^3 working-grid voxels ({(2 * cfg.blind_radius_vox + 1) * cfg.working_spacing_mm:g} mm) centred on the voxel it predicts",
            "bone_roi": f"detector.bone_mask of the exam grown by {ROI_MARGIN_MM:g} mm",
            "patch_shape_training": [cfg.patch_vox] * 3, "dtype": "float32",
        },
        "output": {
            "channel_def": {"0": "mu: in-painted estimate of the voxel, (HU - 200) / 500", "1": "log sigma^2 of the same units (clamped to [-12, 4])"},
            "z": "(exam - mu) / sigma on the working grid, interpolated onto the exam's grid",
        },
        "domain": {
            "spacing_min_mm": spacings.min(axis=0).tolist(), "spacing_max_mm": spacings.max(axis=0).tolist(), "spacing_tolerance": 0.1,
            "bone_hu_p50": value_range([e.bone_stats.get("bone_hu_p50") for e in train_exams]),
            "bone_hu_p95": value_range([e.bone_stats.get("bone_hu_p95") for e in train_exams]), "hu_margin": 50.0,
            "noise_hu": value_range([e.noise_hu for e in train_exams]), "noise_factor": 1.3,
        },
        "training_data": {
            **training_data,
            "n_exams_train": len(train_exams), "n_exams_validation": len(val_exams),
            "train_exams": [f"{e.case_id}/{e.role}" for e in train_exams], "validation_exams": [f"{e.case_id}/{e.role}" for e in val_exams],
            "synthetic_seeds_train": seeds, "n_bone_voxels_train": int(sum(e.n_roi_voxels for e in train_exams)),
        },
        "training": {
            "loss": f"beta-NLL, beta = {cfg.beta}", "optimizer": f"Adam, lr {cfg.learning_rate} with cosine decay to 5 %", "iterations": n_it,
            "batch_size": cfg.batch_size, "patch_vox": cfg.patch_vox, "loss_border_vox": cfg.loss_border_vox, "augmentation": "random left-right flips",
            "seed": cfg.seed, "elapsed_s": round(elapsed, 1), "hardware": hw,
        },
        "validation": {k: v for k, v in val.items() if k not in ("calibration_bins", "z_histogram")},
        "validation_calibration_bins": val.get("calibration_bins", []),
        "validation_split": "both exams of normal pairs of the training case list held out from training (validation_exams), z on the working grid, no recalibration",
        "eval_metrics": {},
        "references": [
            "Laine S., Karras T., Lehtinen J., Aila T., High-Quality Self-Supervised Deep Image Denoising, NeurIPS 2019 (blind-spot network from half-space branches)",
            "Krull A., Buchholz T.-O., Jug F., Noise2Void - Learning Denoising from Single Noisy Images, CVPR 2019",
            "Seitzer M. et al., On the Pitfalls of Heteroscedastic Uncertainty Estimation with Probabilistic Neural Networks, ICLR 2022 (beta-NLL)",
        ],
    }




def _fmt(values: Any, spec: str = ".2f") -> str:
    return "n/a" if values is None else "[" + ", ".join(format(float(v), spec) for v in values) + "]"


def write_single_exam_model_card(weights: str | Path, metadata: dict[str, Any], figures: Sequence[Path] = ()) -> Path:
    """Write (or rewrite) the model card ``<stem>.md`` beside single-exam weights from their metadata."""
    weights = Path(weights)
    m = metadata
    tr, td, arch, dom = m["training"], m["training_data"], m["architecture"], m["domain"]
    hw = tr["hardware"]
    val = m.get("validation", {})
    hardware = hw.get("gpu") or f"{hw.get('cpu', 'CPU')} ({hw.get('cpu_count')} cores, torch threads: {hw.get('torch_threads')})"
    if hw.get("note"):
        hardware += f"; {hw['note']}"
    lines = [
        f"# Model card: {m['name']} v{m['version']}",
        "",
        "**Intended use: research use only; not for diagnosis.** It produces per-voxel z-scores of how poorly a bone voxel",
        "of a single CT is explained by its surroundings, for observer studies when no prior exam exists. It was trained on",
        "synthetic data only and has not been validated on patient CT.",
        "",
        "## What it does",
        "",
        "For every bone voxel it predicts the voxel's value (`mu`) and its own error (`sigma`) from the exam around it,",
        f"never looking at {m['input']['never_sees']}. `z = (exam - mu) / sigma`.",
        f"Input: the exam on a {m['input']['working_spacing_mm']} mm working grid, HU normalised as (HU - 200) / 500; exam-level conditions",
        f"entering the combining layers: {', '.join(m['input']['conditions'])}. Bone ROI: {m['input']['bone_roi']}.",
        "",
        "## Architecture",
        "",
        f"3-D blind-spot network: {arch['design']}; {arch['channels']} channels and {arch['n_layers']} layers per branch,",
        f"{arch['head_channels']} channels in the two hidden combining layers; {arch['n_parameters']:,} parameters; reach {arch['reach_vox']} voxels along",
        f"each axis. Weights: `{weights.name}`, SHA-256 `{m['sha256']}` (checked on load).",
        "",
        "## Training data",
        "",
        f"- {td['n_exams_train']} lesion-free exams for training (current and prior exams of normal pairs), {td['n_exams_validation']} held out for validation"
        f" ({', '.join(td['validation_exams']) or 'none'}).",
    ]
    if td.get("case_list"):
        lines.append(f"- Case list: `{td['case_list']}`.")
    if td.get("synthetic_seeds_train"):
        lines.append(f"- Synthetic generation seeds of the training cases: {', '.join(str(s) for s in td['synthetic_seeds_train'])}.")
    lines += [
        f"- {td['n_bone_voxels_train']:,} bone-ROI voxels on the working grid.",
        f"- Domain recorded for the out-of-domain check: voxel spacing {_fmt(dom['spacing_min_mm'])} to {_fmt(dom['spacing_max_mm'])} mm (x, y, z; ±{100 * dom['spacing_tolerance']:.0f} %),",
        f"  median bone HU {_fmt(dom['bone_hu_p50'], '.0f')}, 95th percentile {_fmt(dom['bone_hu_p95'], '.0f')} (±{dom['hu_margin']:.0f} HU), noise index {_fmt(dom['noise_hu'], '.1f')} HU (x/÷{dom['noise_factor']}).",
        "  Outside it the map is refused unless forced (there is no analytic fallback without a prior exam).",
        "",
        "## Training settings",
        "",
        f"- Loss: {tr['loss']}; optimiser: {tr['optimizer']}; {tr['iterations']} iterations of {tr['batch_size']} patches of {tr['patch_vox']}^3 voxels",
        f"  centred on bone voxels ({tr['loss_border_vox']}-voxel border left out of the loss); {tr['augmentation']}; seed {tr['seed']}.",
        f"- Hardware: {hardware}; device `{hw.get('device')}`. Training time: {tr['elapsed_s'] / 60:.1f} min ({tr['elapsed_s']:.0f} s, validation passes included).",
        f"- torch {m['pytorch_version']}, numpy {m['numpy_version']}.",
        "",
        "## Validation (held-out normal exams of the training case list, no recalibration)",
        "",
    ]
    if val:
        lines += [
            f"- Fraction of bone voxels with |z| > 3: {100 * val['frac_abs_z_gt3']:.2f} % (a calibrated Gaussian gives 0.27 %); |z| > 4: {100 * val['frac_abs_z_gt4']:.3f} % (0.006 %).",
            f"- z mean {val['z_mean']:+.3f}, standard deviation {val['z_sd']:.3f} (robust {val['z_robust_sd']:.3f}); sigma median {val['sigma_median_hu']:.0f} HU, 95th percentile {val['sigma_p95_hu']:.0f} HU;",
            f"  RMS in-painting error {val['rmse_hu']:.0f} HU.",
            f"- Gaussian NLL per voxel (HU units): {val['nll']:.3f}.",
        ]
    else:
        lines.append("- No validation exams were held out.")
    ev = m.get("eval_metrics") or {}
    if ev:
        lines += ["", f"## Evaluation ({m.get('eval_split', 'see docs/detector-zscore.md')})", ""]
        for k, v in ev.items():
            if isinstance(v, float) and k.startswith("calibration"):
                lines.append(f"- {k}: {100 * v:.2f} % of unchanged bone voxels with |z| > 3")
            else:
                lines.append(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}")
    lines += ["", "## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures]
    lines += ["", "## Changelog", ""] + [f"- {v}: {text}" for v, text in m.get("changelog", {}).items()]
    lines += [
        "",
        "## Limitations",
        "",
        "- It cannot tell an old lesion or a benign sclerotic island from a new lesion: anything its surroundings do not",
        "  explain is flagged. Use the temporal z-map (tsct detect run) whenever a prior exam exists.",
        "- A lesion much larger than the blind cube is partly explained by its own rim, so its centre scores lower than a",
        "  temporal z-map would; the rim, where lesion meets normal bone, scores highest.",
        "- Trained on synthetic spine CT (tsct.cases.synth); real scanners, kernels, contrast phases and anatomy variants",
        "  are not represented. Retrain on your own lesion-free exams (`tsct detect train-single-exam`).",
        "",
    ]
    path = weights.with_name(weights.stem + ".md")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def record_single_exam_evaluation(weights: str | Path, metrics: dict[str, Any], split: str) -> Path:
    """Write evaluation figures (split named) into a single-exam bundle's metadata and model card.

    The weights and their SHA-256 are unchanged.
    """
    return record_bundle_evaluation(weights, metrics, split, write_single_exam_model_card)
