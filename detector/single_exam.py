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

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence, Union

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from ._errors import DetectorInputError
from .bone import bone_mask, dilate_mask
from .working_grid import from_working_grid, make_working_grid, to_working_grid
from .zscore import ZMap, recalibrate_z
from .zscore_bundle import ModelBundle, ModelBundleError, load_bundle
from .zscore_domain import DomainCheck, OutOfDomainWarning, check_domain_ranges, noise_index_hu
from .zscore_model import run_tiled

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

    return BlindSpotNet(
        channels=channels, n_layers=n_layers, blind_radius_vox=blind_radius_vox, n_conditions=len(CONDITION_NAMES), head_channels=head_channels
    )


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
    return check_domain_ranges(
        domain,
        spacings=(("spacing", "", spacing_mm),),
        bone_hu=hu_work,
        roi=roi_work,
        noises=(("noise_hu", "noise index", noise_hu),),
        measured={"spacing_mm": [float(s) for s in spacing_mm], "noise_hu": noise_hu},
    )


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

    def check(metadata: dict[str, Any]) -> None:
        if metadata.get("name") != MODEL_NAME:
            raise ModelBundleError(
                f"{weights}: this is a '{metadata.get('name')}' bundle, not a single-exam one ('{MODEL_NAME}'); the temporal z-score network needs a prior exam (tsct detect run)."
            )

    return load_bundle(
        weights,
        SingleExamModel,
        lambda arch: build_single_exam_net(
            channels=int(arch.get("channels", 8)),
            n_layers=int(arch.get("n_layers", 5)),
            blind_radius_vox=int(arch.get("blind_radius_vox", 2)),
            head_channels=int(arch.get("head_channels", 32)),
        ),
        missing_hint=f"single-exam weights not found. Train them with 'tsct detect train-single-exam CASELIST --out {weights}'.",
        device=device,
        verify_hash=verify_hash,
        check=check,
    )


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
    cond = torch.from_numpy(np.asarray(conditions, dtype=np.float32).reshape(1, -1)).to(device)
    if cond.shape[1] != int(net.n_conditions):
        raise DetectorInputError(f"The network takes {int(net.n_conditions)} condition values, got {cond.shape[1]}.")
    net = net.to(device).eval()
    inner = (0, 0, slice(halo, -halo), slice(halo, -halo), slice(halo, -halo))

    def forward(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, lv = net(torch.from_numpy(np.ascontiguousarray(block)[None, None]).to(device), cond)
        return m[inner].float().cpu().numpy(), lv[inner].float().cpu().numpy()

    with torch.inference_mode():
        return run_tiled(forward, hu, roi, halo, tile_vox, max_voxels_per_pass, 96)


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
                raise DetectorInputError(
                    msg + ". There is no analytic fallback without a prior exam; pass force=True (--force-model) to use the network anyway."
                )
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
            z, sigma, note = recalibrate_z(z, sigma, roi, params, what="exam")
            notes.extend(note)
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


# The training half lives in detector.single_exam_train; its names stay importable from here.
from .single_exam_train import (  # noqa: E402
    SingleExamExam,
    SingleExamTrainingConfig,
    SingleExamTrainingResult,
    prepare_single_exam_exams,
    record_single_exam_evaluation,
    train_single_exam_model,
    write_single_exam_model_card,
)
