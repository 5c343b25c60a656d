"""The z-score map: how surprising is each bone voxel of the current CT, given the prior?

A network looks at the **registered prior** around every bone voxel of the current exam and
estimates the value that voxel would have if nothing new had happened, together with its own
error: a Gaussian with mean ``mu`` (HU) and standard deviation ``sigma`` (HU). The z-score

    z = (current - mu) / sigma

is the anomaly map read on the CT: ``z > 0`` where bone became denser (blastic), ``z < 0``
where it lost density (lytic). Because ``sigma`` is learned from lesion-free pairs, it is large
where subtraction artifacts arise (cortical edges, residual misregistration, noise, thin
posterior elements), so ``|z|`` is comparable across the skeleton, unlike the raw subtraction.

The network (:class:`ZScoreNet`)
--------------------------------
A 3-D residual, fully convolutional network. Its input is the **warped prior only** (HU,
normalised), plus six constant channels of exam-level conditions (:func:`condition_vector`): the
noise level of each exam measured in soft tissue *outside* the bone ROI, and the voxel spacing
of each exam (a current reconstructed with thinner slices shows cortex and endplates brighter).
It never sees the current exam's bone voxels: changing the current inside the ROI changes
neither ``mu`` nor ``sigma`` (a test checks this). Outputs: ``mu = prior +
learned residual`` and ``log sigma^2``. It was trained with the beta-NLL loss (Seitzer et al.
2022) on patches centred in bone of lesion-free pairs (see :mod:`detector.train`).

The network runs on a fixed **working grid** (1.5 mm isotropic by default, stored in the model's
metadata): the current exam, the warped prior and the ROI are resampled onto it (with Gaussian
anti-aliasing when the exam is finer). ``mu``, ``sigma`` and ``z`` are computed there, where the
network's Gaussian is defined (it was trained on currents resampled the same way), and then
interpolated (trilinear) onto the current exam's grid. Forming z from the native voxels instead
over-disperses it whenever the native grid differs from the working grid (measured with weights
v1.0.0: |z| > 3 in 0.6-5.7 % of normal bone instead of 0.3-2.4 % on held-out cases), because
resampling lowers the noise the network was trained to expect.

**Per-pair recalibration** (default): the network cannot see that one current exam is sharper or
noisier than its training pairs, so when the robust spread of z over the pair's bone ROI
(1.4826 x MAD; lesions hardly move it) exceeds 1, sigma is widened by that factor (see
:func:`compute_zmap`). It is one number per exam; ``mu`` and the network's sigma never see the
current's bone voxels.

Weights are shipped as a bundle (``detector/weights/zscore-v1.pt`` and
``zscore-v1.metadata.json``: version, changelog, input contract, training data, evaluation
figures with the split named, intended use, SHA-256 of the weights, verified on load).

Where the prior has no data
---------------------------
ROI voxels within ``prior_fov_margin_mm`` (3 mm) of tissue outside the prior's field of view
(:func:`prior_missing_mask`) get ``z = 0``: every estimate that looks at a neighbourhood sees a
wall of air there, and on a tuning set these voxels held the network's largest false positives.

For the lesion candidates, :attr:`ZMap.z_native` is z formed from the current exam's own voxels
(``mu`` and ``sigma`` interpolated from the working grid); it keeps the detail of small lesions
that resampling the current onto the working grid smooths away, and is scored through a
per-exam renormalised matched filter (:func:`detector.candidates.matched_filter_score`).

When no weights fit the data
----------------------------
:func:`check_domain` compares the pair with the training data recorded in the metadata (voxel
spacing range, bone HU distribution of the warped prior, noise levels). Out of domain, the map
falls back to the **analytic error model** (:func:`analytic_sigma`) with a warning, unless the
caller forces the network. The analytic model is

    sigma_a(x)^2 = s_local(x)^2 + (delta_mm * |grad prior(x)|)^2,

``s_local``: a robust local scale (1.4826 x median absolute deviation) of the plain subtraction
in bone, in blocks of about ``block_mm``; ``|grad prior|``: the gradient magnitude of the warped
prior (HU/mm); ``delta_mm``: the residual misregistration it allows for (0.5 mm by default, about
the measured bone TRE of the registration). It is the hand-made version of what the network learns.

All geometry is DICOM/ITK LPS in millimetres; arrays are ``(z, y, x)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from cases import Grid, LabelVolume, Volume

from ._errors import DetectorInputError
from ._geometry import mask_bounding_box

if TYPE_CHECKING:  # torch is imported lazily: ``import detector`` stays fast
    import torch

__all__ = [
    "ModelBundle",
    "read_bundle_metadata",
    "load_bundle_weights",
    "ZScoreNet",
    "build_net",
    "ZScoreModel",
    "ZMap",
    "DomainCheck",
    "ModelBundleError",
    "OutOfDomainWarning",
    "compute_zmap",
    "analytic_sigma",
    "check_domain",
    "load_zscore_model",
    "default_model_path",
    "resolve_device",
    "noise_index_hu",
    "condition_vector",
    "CONDITION_NAMES",
    "bone_hu_statistics",
    "prior_missing_mask",
    "near_missing_prior",
    "WORKING_SPACING_MM",
]

#: Default working-grid spacing of the network, mm (isotropic).
WORKING_SPACING_MM = 1.5
#: HU normalisation of the network's input and output: (HU - centre) / scale.
NORM_CENTER_HU = 200.0
NORM_SCALE_HU = 500.0
#: Noise levels are given to the network divided by this (HU).
NOISE_SCALE_HU = 50.0
#: HU range of the soft tissue where the noise level is measured.
SOFT_TISSUE_HU = (-150.0, 150.0)
#: Values of the outputs outside the bone ROI.
OUTSIDE_Z = 0.0
#: HU the detector pipeline gives warped-prior voxels outside the prior's field of view.
PRIOR_MISSING_HU = -1024.0
#: A current-exam voxel above this HU where the warped prior holds exactly ``PRIOR_MISSING_HU``
#: is tissue the prior did not image (outside its field of view), not air.
TISSUE_HU = -500.0

ModelSpec = Union["ZScoreModel", str, Path, None]


class ModelBundleError(ValueError):
    """A z-score weights bundle is missing, incomplete or does not match its recorded hash."""


class OutOfDomainWarning(UserWarning):
    """The pair lies outside the data the z-score network was trained on."""


def resolve_device(device: str = "auto") -> "torch.device":
    """``"auto"``: CUDA when a GPU is present, else CPU; or any torch device string."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise DetectorInputError(f"Unknown device {device!r} ({exc}); use 'auto', 'cpu' or 'cuda'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DetectorInputError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu.")
    return dev


# =============================================================================================
# The network
# =============================================================================================
def __getattr__(name: str) -> Any:
    # ``detector.zscore.ZScoreNet`` without importing torch at ``import detector`` time.
    if name == "ZScoreNet":
        from ._net import ZScoreNet

        return ZScoreNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_net(channels: int = 16, dilations: Sequence[int] = (1, 1, 1, 1), n_inputs: int = 7, init_sigma_hu: float = 60.0) -> Any:
    """A new, untrained :class:`ZScoreNet` (about 57 000 parameters with the defaults)."""
    from ._net import ZScoreNet

    return ZScoreNet(channels=channels, dilations=dilations, n_inputs=n_inputs, init_sigma_hu=init_sigma_hu)


#: Names of the network's constant input channels 1..6, in order.
CONDITION_NAMES: tuple[str, ...] = (
    "noise_current_hu / 50", "noise_prior_hu / 50",
    "current in-plane spacing (mm) / 1.5", "current slice spacing (mm) / 1.5",
    "prior in-plane spacing (mm) / 1.5", "prior slice spacing (mm) / 1.5",
)


def condition_vector(noise_current_hu: float, noise_prior_hu: float, current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float]) -> np.ndarray:
    """The exam-level inputs of the network (channels 1-6), see :data:`CONDITION_NAMES`.

    They tell the network how noisy and how sharp each exam is: a current exam reconstructed with
    thinner slices than the prior shows cortex and endplates brighter, which is no lesion.
    """
    cur = [float(v) for v in current_spacing_mm]
    pri = [float(v) for v in prior_spacing_mm]
    return np.asarray(
        [noise_current_hu / NOISE_SCALE_HU, noise_prior_hu / NOISE_SCALE_HU, (cur[0] + cur[1]) / 2 / 1.5, cur[2] / 1.5, (pri[0] + pri[1]) / 2 / 1.5, pri[2] / 1.5],
        dtype=np.float32,
    )


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """``(clip(HU, -1024, 3071) - 200) / 500`` as float32: the network's intensity units."""
    return ((np.clip(hu, -1024.0, 3071.0) - NORM_CENTER_HU) / NORM_SCALE_HU).astype(np.float32)


def predict_on_grid(
    net: Any,
    prior_hu: np.ndarray,
    conditions: Sequence[float],
    roi: np.ndarray,
    *,
    device: Any = "cpu",
    tile_vox: int | None = None,
    precision: str = "float32",
    max_voxels_per_pass: int = 12_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the network on every tile of a working-grid array that holds ROI voxels.

    Parameters
    ----------
    net : a :func:`ZScoreNet`.
    prior_hu : warped prior on the working grid, HU, shape (z, y, x).
    conditions : the exam-level inputs (:func:`condition_vector`).
    roi : boolean array, same shape: where outputs are needed.
    device : torch device.
    tile_vox : output tile edge, voxels; each tile is read with a halo of the receptive field,
        so tiled and whole-volume results agree. None (default): the whole grid in one pass when
        it holds at most ``max_voxels_per_pass`` voxels with its halo (halos cost compute: on a
        clinical exam one pass took 22 s of CPU against 25 s for 128^3 tiles), else 128^3 tiles.
    max_voxels_per_pass : the largest input of one pass in automatic mode (each 16-channel
        float32 activation of 12 million voxels takes 770 MB).
    precision : ``"float32"`` (default) or ``"bfloat16"`` (autocast; about twice as fast on CPUs
        with AVX-512 BF16 and on GPUs, with z differing by a few hundredths, see
        docs/detector-zscore.md).

    Returns
    -------
    mu_hu, sigma_hu : float32 arrays of the same shape; outside the computed tiles ``mu`` is the
        prior and ``sigma`` is NaN.
    """
    import torch

    device = torch.device(device) if not isinstance(device, torch.device) else device
    halo = int(net.receptive_radius_vox)
    shape = prior_hu.shape
    mu = prior_hu.astype(np.float32, copy=True)
    sigma = np.full(shape, np.nan, dtype=np.float32)
    prior_n = normalise_hu(prior_hu)
    padded = np.pad(prior_n, halo, mode="edge")
    cond = np.asarray(conditions, dtype=np.float32).ravel()
    if cond.size != int(net.n_inputs) - 1:
        raise DetectorInputError(f"The network takes {int(net.n_inputs) - 1} condition values, got {cond.size}.")
    if precision not in ("float32", "bfloat16"):
        raise DetectorInputError(f"precision must be 'float32' or 'bfloat16', got {precision!r}.")
    # channels-last weights to match the channels-last input: oneDNN's 3-D convolutions then run
    # about twice as fast on a CPU (8.8 s -> 4.6 s for a clinical working grid, 2 threads).
    net = net.to(device, memory_format=torch.channels_last_3d).eval()
    if tile_vox is None:
        whole = int(np.prod([n + 2 * halo for n in shape]))
        tile_vox = max(shape) if whole <= max_voxels_per_pass else 128
    starts = [range(0, n, tile_vox) for n in shape]
    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        for z0 in starts[0]:
            for y0 in starts[1]:
                for x0 in starts[2]:
                    z1, y1, x1 = min(z0 + tile_vox, shape[0]), min(y0 + tile_vox, shape[1]), min(x0 + tile_vox, shape[2])
                    if not roi[z0:z1, y0:y1, x0:x1].any():
                        continue
                    block = padded[z0 : z1 + 2 * halo, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
                    x = np.empty((1, 1 + cond.size) + block.shape, dtype=np.float32)
                    x[0, 0] = block
                    x[0, 1:] = cond[:, None, None, None]
                    xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last_3d)
                    m, lv = net(xt)
                    inner = (slice(None), slice(None), slice(halo, -halo), slice(halo, -halo), slice(halo, -halo))
                    m = m[inner][0, 0].float().cpu().numpy()
                    lv = lv[inner][0, 0].float().cpu().numpy()
                    mu[z0:z1, y0:y1, x0:x1] = m * NORM_SCALE_HU + NORM_CENTER_HU
                    sigma[z0:z1, y0:y1, x0:x1] = NORM_SCALE_HU * np.exp(0.5 * lv)
    return mu, sigma


# =============================================================================================
# Exam statistics: noise level, bone HU distribution
# =============================================================================================
def noise_index_hu(hu: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Robust noise level of a CT in soft tissue, HU.

    ``1.4826 x MAD`` of neighbour differences ``(v[i+1] - v[i]) / sqrt(2)`` along x and y,
    over pairs of voxels that both lie in soft tissue (-150 to 150 HU) and outside ``exclude``
    (the bone ROI). For white noise this is the noise standard deviation; correlated noise (soft
    kernels, interpolation) reads lower. The network is trained and applied with the same index,
    so only consistency matters. NaN when fewer than 500 voxel pairs qualify.
    """
    lo, hi = SOFT_TISSUE_HU
    soft = (hu >= lo) & (hu <= hi)
    if exclude is not None:
        soft &= ~exclude
    diffs = []
    for axis in (1, 2):
        a = np.swapaxes(hu, 0, axis)
        s = np.swapaxes(soft, 0, axis)
        ok = s[1:] & s[:-1]
        d = (a[1:] - a[:-1])[ok]
        diffs.append(d.astype(np.float32) / math.sqrt(2.0))
    d = np.concatenate(diffs)
    if d.size < 500:
        return float("nan")
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def bone_hu_statistics(prior_hu: np.ndarray, roi: np.ndarray) -> dict[str, float]:
    """Percentiles (5, 50, 95) of the warped prior's HU inside the bone ROI."""
    v = prior_hu[roi]
    if v.size == 0:
        return {"bone_hu_p5": float("nan"), "bone_hu_p50": float("nan"), "bone_hu_p95": float("nan")}
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    return {"bone_hu_p5": float(p5), "bone_hu_p50": float(p50), "bone_hu_p95": float(p95)}


# =============================================================================================
# Working grid
# =============================================================================================
@dataclass(frozen=True)
class WorkingGrid:
    """The network's grid over one pair: an ROI bounding box resampled to the working spacing.

    Attributes
    ----------
    box : array slices (z, y, x) of the native crop the working grid covers.
    origin_mm : LPS position of the crop's first voxel (also the working grid's origin), mm.
    direction : direction cosines of both grids (the current exam's).
    reference : SimpleITK image (empty, uint8) defining the working grid.
    """

    box: tuple[slice, slice, slice]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    reference: sitk.Image

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.reference.GetSize()
        return (s[2], s[1], s[0])

    @property
    def grid(self) -> Grid:
        """The working grid as the platform's :class:`cases.Grid`."""
        return Grid.of(self.reference)


def make_working_grid(current: Volume, roi: np.ndarray, spacing_mm: float, margin_mm: float) -> WorkingGrid | None:
    """The working grid covering ``roi`` plus ``margin_mm``, in the current exam's orientation.

    None when the ROI is empty. The grid starts at the first voxel of the native crop, so when the
    native spacing equals the working spacing the two grids coincide.
    """
    margin_vox = tuple(int(math.ceil(margin_mm / s)) for s in reversed(current.spacing_mm))
    box = mask_bounding_box(roi, margin_vox=margin_vox)  # type: ignore[arg-type]
    if box is None:
        return None
    start_xyz = (box[2].start, box[1].start, box[0].start)
    origin = current.index_to_point_mm(start_xyz)
    n_native = (box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start)
    extent = [(n - 1) * s for n, s in zip(n_native, current.spacing_mm)]
    size = [int(math.floor(e / spacing_mm + 1e-6)) + 1 for e in extent]
    ref = sitk.Image([max(1, s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing((spacing_mm,) * 3)
    ref.SetOrigin(tuple(float(o) for o in origin))
    ref.SetDirection(current.direction)
    return WorkingGrid(box=box, origin_mm=tuple(float(o) for o in origin), direction=tuple(current.direction), reference=ref)  # type: ignore[arg-type]


def _native_crop_image(array: np.ndarray, grid: WorkingGrid, spacing_mm: Sequence[float]) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array[grid.box], dtype=np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing_mm))
    img.SetOrigin(grid.origin_mm)
    img.SetDirection(grid.direction)
    return img


def to_working_grid(array: np.ndarray, grid: WorkingGrid, spacing_mm: Sequence[float], *, label: bool = False) -> np.ndarray:
    """Resample a native-grid array onto the working grid (linear; nearest for labels).

    Intensities are smoothed with a Gaussian of variance ``(w^2 - s^2) / 12`` along each axis
    finer than the working spacing ``w`` first (a box average of width ``w`` has that variance),
    so that downsampling does not alias noise.
    """
    img = _native_crop_image(array, grid, spacing_mm)
    w = grid.reference.GetSpacing()[0]
    if not label:
        var = [max(0.0, (w * w - s * s) / 12.0) for s in spacing_mm]
        if max(var) > 1e-6:
            img = sitk.DiscreteGaussian(img, variance=var, maximumKernelWidth=64, useImageSpacing=True)
        interp = sitk.sitkLinear
    else:
        interp = sitk.sitkNearestNeighbor
    out = sitk.Resample(img, grid.reference, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def from_working_grid(array: np.ndarray, grid: WorkingGrid, spacing_mm: Sequence[float], fill: float) -> np.ndarray:
    """Resample a working-grid array back onto the native crop (linear), values for ``grid.box``."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    img.CopyInformation(grid.reference)
    n = (grid.box[2].stop - grid.box[2].start, grid.box[1].stop - grid.box[1].start, grid.box[0].stop - grid.box[0].start)
    ref = sitk.Image([int(v) for v in n], sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(s) for s in spacing_mm))
    ref.SetOrigin(grid.origin_mm)
    ref.SetDirection(grid.direction)
    out = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, float(fill), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


# =============================================================================================
# Model bundle
# =============================================================================================
def default_model_path() -> Path:
    """The shipped weights: ``detector/weights/zscore-v1.pt``."""
    return Path(__file__).resolve().parent / "weights" / "zscore-v1.pt"


def metadata_path_for(weights_path: str | Path) -> Path:
    """``<weights>.metadata.json`` beside a weights file (``zscore-v1.pt`` -> ``zscore-v1.metadata.json``)."""
    p = Path(weights_path)
    return p.with_name(p.stem + ".metadata.json")


def sha256_of(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class DomainCheck:
    """Whether a pair lies inside the network's training domain.

    Attributes
    ----------
    in_domain : True when every check passed.
    reasons : one sentence per failed check, naming the measured value and the trained range.
    measured : the pair's figures (``spacing_mm``, ``bone_hu_p5/p50/p95``, ``noise_current_hu``,
        ``noise_prior_hu``).
    """

    in_domain: bool
    reasons: tuple[str, ...]
    measured: dict[str, Any]

    def summary(self) -> str:
        if self.in_domain:
            return "inside the network's training domain"
        return "outside the network's training domain: " + "; ".join(self.reasons)


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A trained network with its metadata (a weights bundle: ``.pt`` + ``.metadata.json``).

    Attributes
    ----------
    net : the torch module, in eval mode.
    metadata : the bundle's ``metadata.json`` content (version, input contract, domain, ...).
    path : the weights file, if loaded from disk.
    device : the torch device the network sits on.
    """

    net: Any
    metadata: dict[str, Any]
    path: Path | None = None
    device: Any = "cpu"

    default_name: ClassVar[str] = "zscore"

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unversioned"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.default_name))

    @property
    def working_spacing_mm(self) -> float:
        return float(self.metadata.get("input", {}).get("working_spacing_mm", WORKING_SPACING_MM))

    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.net.parameters()))


@dataclass(frozen=True, eq=False)
class ZScoreModel(ModelBundle):
    """The temporal z-score network (:func:`ZScoreNet`) with its metadata (see :class:`ModelBundle`)."""

    def check_domain(
        self, current: Volume, prior_hu_work: np.ndarray, roi_work: np.ndarray, noise_current_hu: float, noise_prior_hu: float, prior_spacing_mm: Sequence[float] | None = None
    ) -> DomainCheck:
        """Compare one pair (already on the working grid) with the recorded training domain."""
        return _check_domain(self.metadata.get("domain", {}), current.spacing_mm, prior_spacing_mm, prior_hu_work, roi_work, noise_current_hu, noise_prior_hu)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"ZScoreModel({self.name} v{self.version}; {self.n_parameters} parameters; {self.device}{where})"


def load_zscore_model(path: str | Path | None = None, *, device: str = "cpu", verify_hash: bool = True) -> ZScoreModel:
    """Load a weights bundle (``.pt`` + ``.metadata.json``), checking the SHA-256 of the weights.

    Parameters
    ----------
    path : the ``.pt`` weights file; None: the shipped :func:`default_model_path`.
    device : ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
    verify_hash : compare the file's SHA-256 with ``sha256`` in the metadata.

    Raises
    ------
    ModelBundleError
        Missing weights or metadata, a hash mismatch (expected and actual hash in the message),
        or weights that do not fit the architecture the metadata describes.
    """
    weights = Path(path) if path is not None else default_model_path()
    metadata = read_bundle_metadata(
        weights, verify_hash=verify_hash,
        missing_hint=f"z-score weights not found. Train them with 'tsct detect train CASELIST --out {weights}', or use the analytic error model (--model analytic).",
    )
    arch = metadata.get("architecture", {})
    net = build_net(channels=int(arch.get("channels", 16)), dilations=tuple(arch.get("dilations", (1, 1, 1, 1))), n_inputs=int(arch.get("n_inputs", 7)))
    dev = resolve_device(device)
    net = load_bundle_weights(net, weights, dev)
    return ZScoreModel(net=net, metadata=metadata, path=weights, device=dev)


def read_bundle_metadata(weights: Path, *, missing_hint: str, verify_hash: bool = True) -> dict[str, Any]:
    """The metadata of a weights bundle, after checking that both files exist and the weights' SHA-256.

    Raises :class:`ModelBundleError` naming the file and what to do: ``missing_hint`` when the
    weights are missing, and the expected and actual hash on a mismatch.
    """
    meta_path = metadata_path_for(weights)
    if not weights.is_file():
        raise ModelBundleError(f"{weights}: {missing_hint}")
    if not meta_path.is_file():
        raise ModelBundleError(f"{meta_path}: the metadata of {weights.name} is missing; a weights file is only used with its metadata (input contract, domain, hash).")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelBundleError(f"{meta_path}: not valid JSON ({exc}).") from None
    if verify_hash:
        expected = str(metadata.get("sha256", ""))
        actual = sha256_of(weights)
        if expected != actual:
            raise ModelBundleError(
                f"{weights}: SHA-256 {actual} does not match the {expected or '(none recorded)'} recorded in {meta_path.name}. "
                "The file is corrupt or was replaced; restore it, or retrain and write a new bundle."
            )
    return metadata


def load_bundle_weights(net: Any, weights: Path, device: Any) -> Any:
    """Load a state dict (or a training checkpoint's model part) into ``net``; returns it on ``device``, in eval mode."""
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and "optimizer" in state:
            state = state["model"]
        net.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelBundleError(f"{weights}: the weights do not fit the architecture in {metadata_path_for(weights).name} ({str(exc).splitlines()[0]}).") from None
    return net.to(device).eval()


def _check_domain(
    domain: dict[str, Any], spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float] | None, prior_hu_work: np.ndarray, roi_work: np.ndarray,
    noise_current_hu: float, noise_prior_hu: float,
) -> DomainCheck:
    measured: dict[str, Any] = {"spacing_mm": [float(s) for s in spacing_mm], "noise_current_hu": noise_current_hu, "noise_prior_hu": noise_prior_hu}
    if prior_spacing_mm is not None:
        measured["prior_spacing_mm"] = [float(s) for s in prior_spacing_mm]
    measured.update(bone_hu_statistics(prior_hu_work, roi_work))
    reasons: list[str] = []
    tol = float(domain.get("spacing_tolerance", 0.1))
    for exam, spacing, key in (("current", spacing_mm, "spacing"), ("prior", prior_spacing_mm, "prior_spacing")):
        lo = domain.get(f"{key}_min_mm")
        hi = domain.get(f"{key}_max_mm")
        if spacing is None or lo is None or hi is None:
            continue
        for axis, s, a, b in zip("xyz", spacing, lo, hi):
            if s < a * (1 - tol) - 1e-6 or s > b * (1 + tol) + 1e-6:
                reasons.append(f"voxel spacing of the {exam} exam along {axis} is {s:.2f} mm, trained on {a:.2f}-{b:.2f} mm")
    for key, label in (("bone_hu_p50", "median bone HU of the prior"), ("bone_hu_p95", "95th percentile of bone HU of the prior")):
        rng = domain.get(key)
        v = measured.get(key)
        if rng is not None and v is not None and math.isfinite(v):
            margin = float(domain.get("hu_margin", 50.0))
            if v < rng[0] - margin or v > rng[1] + margin:
                reasons.append(f"{label} is {v:.0f} HU, trained on {rng[0]:.0f}-{rng[1]:.0f} HU (±{margin:.0f})")
    for key, value, label in (("noise_current_hu", noise_current_hu, "noise of the current exam"), ("noise_prior_hu", noise_prior_hu, "noise of the prior exam")):
        rng = domain.get(key)
        if rng is None:
            continue
        factor = float(domain.get("noise_factor", 1.3))
        if not math.isfinite(value):
            reasons.append(f"{label} could not be measured (too little soft tissue around the bone)")
        elif value < rng[0] / factor or value > rng[1] * factor:
            reasons.append(f"{label} is {value:.1f} HU (soft-tissue index), trained on {rng[0]:.1f}-{rng[1]:.1f} HU (x/÷{factor:g})")
    return DomainCheck(in_domain=not reasons, reasons=tuple(reasons), measured=measured)


def check_domain(model: ZScoreModel, current: Volume, warped_prior: Volume, bone_roi: LabelVolume, *, prior_spacing_mm: Sequence[float] | None = None) -> DomainCheck:
    """Whether a registered pair lies inside the training domain of ``model``.

    Checks both exams' voxel spacings against the trained ranges, the warped prior's bone HU
    percentiles (on the working grid, in the ROI) and both exams' soft-tissue noise levels.
    """
    roi = bone_roi.array != 0
    grid = make_working_grid(current, roi, model.working_spacing_mm, 4.0)
    if grid is None:
        return DomainCheck(False, ("the bone ROI is empty",), {})
    prior_w = to_working_grid(warped_prior.array, grid, current.spacing_mm)
    cur_w = to_working_grid(current.array, grid, current.spacing_mm)
    roi_w = to_working_grid(roi.astype(np.float32), grid, current.spacing_mm, label=True) > 0.5
    grown = ndi.binary_dilation(roi_w, iterations=2) if roi_w.any() else roi_w
    return model.check_domain(current, prior_w, roi_w, noise_index_hu(cur_w, grown), noise_index_hu(prior_w, grown), prior_spacing_mm)


# =============================================================================================
# Analytic error model
# =============================================================================================
def analytic_sigma(
    current: Volume,
    warped_prior: Volume,
    bone_roi: LabelVolume,
    *,
    delta_mm: float = 0.5,
    block_mm: float = 15.0,
    floor_hu: float = 10.0,
) -> np.ndarray:
    """The analytic error model: local noise of the subtraction plus edge strength, HU.

    ``sigma_a^2 = s_local^2 + (delta_mm * |grad prior|)^2`` inside the ROI (0 outside).

    Parameters
    ----------
    current, warped_prior : the registered pair on the current grid, HU.
    bone_roi : where to compute.
    delta_mm : residual misregistration allowed for, mm: an edge of gradient ``g`` HU/mm moved by
        ``delta_mm`` changes a voxel by ``delta_mm * g``.
    block_mm : edge of the blocks in which the robust local scale of ``current - prior`` is
        measured (1.4826 x MAD of the ROI voxels of the block); blocks with fewer than 50 ROI
        voxels take the global value; the block map is smoothed over 3x3x3 blocks and
        interpolated to the voxels.
    floor_hu : lower bound of ``sigma_a``.
    """
    roi = bone_roi.array != 0
    out = np.zeros(current.shape, dtype=np.float32)
    box = mask_bounding_box(roi, margin_vox=(1, 1, 1))
    if box is None:
        return out
    cur = current.array[box].astype(np.float32)
    pri = warped_prior.array[box].astype(np.float32)
    r = roi[box]
    ts = cur - pri
    vals = ts[r]
    med = float(np.median(vals))
    global_scale = max(float(1.4826 * np.median(np.abs(vals - med))), floor_hu)
    sz, sy, sx = current.spacing_mm[2], current.spacing_mm[1], current.spacing_mm[0]

    def edge_strength() -> np.ndarray:
        smooth = ndi.gaussian_filter(pri, sigma=(0.5, 0.5, 0.5), mode="nearest")
        gz, gy, gx = np.gradient(smooth, sz, sy, sx)
        return np.sqrt(gz * gz + gy * gy + gx * gx)[r]

    # in a second thread while the block statistics are gathered (SciPy and NumPy release the GIL)
    edge_pool = ThreadPoolExecutor(max_workers=1)
    edge = edge_pool.submit(edge_strength)
    bz, by, bx = (max(2, int(round(block_mm / s))) for s in (sz, sy, sx))
    nbz, nby, nbx = (int(math.ceil(n / b)) for n, b in zip(ts.shape, (bz, by, bx)))
    blocks = np.full((nbz, nby, nbx), np.nan, dtype=np.float32)
    for i in range(nbz):
        for j in range(nby):
            for k in range(nbx):
                sl = (slice(i * bz, (i + 1) * bz), slice(j * by, (j + 1) * by), slice(k * bx, (k + 1) * bx))
                m = r[sl]
                if m.sum() >= 50:
                    v = ts[sl][m]
                    blocks[i, j, k] = 1.4826 * np.median(np.abs(v - np.median(v)))
    blocks = np.where(np.isfinite(blocks), blocks, global_scale)
    blocks = ndi.uniform_filter(blocks, size=3, mode="nearest")
    # block centres sit at (i + 0.5) * b - 0.5 voxels
    coords = np.nonzero(r)
    pts = np.stack([(c + 0.5) / b - 0.5 for c, b in zip(coords, (bz, by, bx))])
    s_local = ndi.map_coordinates(blocks, pts, order=1, mode="nearest")
    grad = edge.result()
    edge_pool.shutdown()
    sig = np.sqrt(s_local.astype(np.float64) ** 2 + (delta_mm * grad.astype(np.float64)) ** 2)
    sig = np.maximum(sig, floor_hu).astype(np.float32)
    sub = np.zeros(ts.shape, dtype=np.float32)
    sub[r] = sig
    out[box] = sub
    return out


# =============================================================================================
# Where the prior has no data
# =============================================================================================
def prior_missing_mask(current_hu: np.ndarray, warped_prior_hu: np.ndarray) -> np.ndarray:
    """Voxels the prior did not image: the warped prior is air (-1024 HU) where the current holds tissue.

    The detector pipeline (:func:`detector.run_pair`) sets warped-prior voxels outside the prior's
    field of view to exactly -1024 HU and removes them from the bone ROI. Bone ROI voxels *next*
    to that region keep their own (valid) prior values, but every estimate that looks at a
    neighbourhood — the resampling onto the network's working grid, the network's receptive
    field, a gradient — sees a wall of air where the current shows bone. Measured on a tuning set
    (seed 3000), the largest false positives of the network's z-map sat there (peak z 10-18 at
    1.6-2 mm from the edge of the prior's field of view, in 4 of 20 pairs).
    """
    return (warped_prior_hu <= PRIOR_MISSING_HU + 0.5) & (current_hu > TISSUE_HU)


def _near_missing(missing: np.ndarray, roi: np.ndarray, spacing_mm: Sequence[float], margin_mm: float) -> np.ndarray:
    """ROI voxels within ``margin_mm`` of a missing-prior voxel (Euclidean distance between voxel centres, mm).

    Exact, and cheap on clinical grids: a separable box dilation of the missing voxels (per-axis
    half-width ``floor(margin / spacing)``) finds the few ROI voxels that can qualify, and only
    those are checked against every offset of the ellipsoid of radius ``margin_mm`` (a Euclidean
    distance transform of the whole ROI box took 5.5 s on a 512 x 512 x 300 exam; this about 1 s).
    """
    near = np.zeros(roi.shape, dtype=bool)
    if margin_mm <= 0 or not missing.any():
        return near
    sp_zyx = [float(s) for s in reversed(spacing_mm)]
    half = [int(math.floor(margin_mm / s + 1e-9)) for s in sp_zyx]
    box = mask_bounding_box(roi, margin_vox=tuple(h + 1 for h in half))  # type: ignore[arg-type]
    if box is None:
        return near
    miss = missing[box]
    if not miss.any():
        return near
    grown = ndi.maximum_filter(miss, size=[2 * h + 1 for h in half], mode="constant", cval=False)
    idx = np.argwhere(grown & roi[box])
    if idx.size == 0:
        return near
    hit = np.zeros(len(idx), dtype=bool)
    shape = np.asarray(miss.shape)
    for dz in range(-half[0], half[0] + 1):
        for dy in range(-half[1], half[1] + 1):
            for dx in range(-half[2], half[2] + 1):
                if (dz * sp_zyx[0]) ** 2 + (dy * sp_zyx[1]) ** 2 + (dx * sp_zyx[2]) ** 2 > margin_mm**2 + 1e-9:
                    continue
                todo = ~hit
                p = idx[todo] + (dz, dy, dx)
                ok = np.all((p >= 0) & (p < shape), axis=1)
                sub = np.zeros(len(p), dtype=bool)
                sub[ok] = miss[p[ok, 0], p[ok, 1], p[ok, 2]]
                hit[np.nonzero(todo)[0][sub]] = True
    sel = idx[hit]
    near_box = np.zeros(miss.shape, dtype=bool)
    near_box[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    near[box] = near_box
    return near


def near_missing_prior(
    current_hu: np.ndarray, warped_prior_hu: np.ndarray, roi: np.ndarray, spacing_mm: Sequence[float], margin_mm: float, prior_missing: np.ndarray | None = None
) -> np.ndarray:
    """ROI voxels within ``margin_mm`` of tissue the prior did not image (:func:`prior_missing_mask`).

    The missing-prior mask is only evaluated on the ROI's bounding box grown by the margin (on a
    clinical exam that box is a third of the volume); ``prior_missing`` overrides it.
    """
    near = np.zeros(roi.shape, dtype=bool)
    if margin_mm <= 0:
        return near
    half = tuple(int(math.floor(margin_mm / float(s) + 1e-9)) + 1 for s in reversed(spacing_mm))
    box = mask_bounding_box(roi, margin_vox=half)  # type: ignore[arg-type]
    if box is None:
        return near
    miss = prior_missing[box] if prior_missing is not None else prior_missing_mask(current_hu[box], warped_prior_hu[box])
    near[box] = _near_missing(miss, roi[box], spacing_mm, margin_mm)
    return near


# =============================================================================================
# The z-map
# =============================================================================================
@dataclass(frozen=True, eq=False)
class ZMap:
    """The z-score map of one registered pair, on the current exam's grid.

    Attributes
    ----------
    z : ``(current - estimate) / sigma``, dimensionless; 0 outside the bone ROI. For the network
        it is computed on the working grid and interpolated (so on the native grid it equals
        ``(current - estimate) / sigma`` exactly only where the two grids coincide).
    sigma_hu : the estimated error, HU; 0 outside the ROI.
    estimate_hu : the estimated no-change current, HU (the warped prior outside the ROI).
    bone_roi : where the map is defined.
    method : ``"network"`` or ``"analytic"``.
    model_version : the network's bundle version (None for the analytic model).
    domain : the domain check of the network (None when no network was asked for).
    notes : warnings and decisions, in words (e.g. why the analytic model was used).
    parameters : figures of the computation (working spacing, noise indices, recalibration
        factor, field-of-view margin and the number of voxels it left out, ...).
    z_native : ``(current - estimate) / sigma`` formed from the current exam's own voxels (0 where
        ``z`` is undefined). For the analytic model it is ``z`` itself. For the network it keeps the
        detail of the native voxels that forming z on the working grid smooths away; it is
        over-dispersed voxel by voxel (the network's sigma describes the resampled current), so
        it is meant for *regional* scores renormalised per exam — the lesion candidates'
        :func:`~detector.candidates.matched_filter_score` — not for display.
    """

    z: Volume
    sigma_hu: Volume
    estimate_hu: Volume
    bone_roi: LabelVolume
    method: Literal["network", "analytic", "single-exam"]
    model_version: str | None = None
    domain: DomainCheck | None = None
    notes: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    z_native: Volume | None = None

    @property
    def candidate_z(self) -> Volume:
        """The z the lesion candidates are scored on: :attr:`z_native` when present, else :attr:`z`."""
        return self.z_native if self.z_native is not None else self.z

    def fraction_above(self, threshold: float = 3.0, mask: np.ndarray | None = None) -> float:
        """Fraction of ROI voxels (optionally within ``mask``) with ``|z| > threshold``.

        For a calibrated Gaussian z in unchanged bone, ``|z| > 3`` holds for 0.27 % of voxels.
        """
        sel = self.bone_roi.array != 0
        if mask is not None:
            sel = sel & mask
        n = int(sel.sum())
        return float(np.count_nonzero(np.abs(self.z.array[sel]) > threshold) / n) if n else float("nan")

    def summary(self) -> str:
        roi = self.bone_roi.array != 0
        sig = self.sigma_hu.array[roi]
        who = {
            "network": f"network v{self.model_version}",
            "single-exam": f"single-exam in-painting network v{self.model_version}",
        }.get(self.method, "analytic error model")
        lines = [
            f"z-score map ({who}): {int(roi.sum())} ROI voxels; sigma median {np.median(sig):.0f} HU, "
            f"p95 {np.percentile(sig, 95):.0f} HU; |z| > 3 in {100 * self.fraction_above(3.0):.2f} % of the ROI "
            f"(0.27 % if calibrated and unchanged); |z| > 4 in {100 * self.fraction_above(4.0):.3f} %"
            if sig.size
            else f"z-score map ({who}): empty ROI"
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


_DEFAULT_MODEL_CACHE: dict[tuple[str, str], ZScoreModel] = {}


def _resolve_model(model: ModelSpec, device: str) -> ZScoreModel | None:
    if model is None or (isinstance(model, str) and model == "analytic"):
        return None
    if isinstance(model, ZScoreModel):
        return model
    if isinstance(model, str) and model == "default":
        key = (str(default_model_path()), device)
        if key not in _DEFAULT_MODEL_CACHE:
            _DEFAULT_MODEL_CACHE[key] = load_zscore_model(None, device=device)
        return _DEFAULT_MODEL_CACHE[key]
    return load_zscore_model(model, device=device)


def compute_zmap(
    current: Volume,
    warped_prior: Volume,
    bone_roi: LabelVolume,
    *,
    model: ModelSpec = "default",
    prior_spacing_mm: Sequence[float] | None = None,
    force: bool = False,
    device: str = "cpu",
    tile_vox: int | None = None,
    precision: str = "float32",
    recalibrate: bool = True,
    delta_mm: float = 0.5,
    block_mm: float = 15.0,
    prior_fov_margin_mm: float = 3.0,
    prior_missing: np.ndarray | None = None,
) -> ZMap:
    """z-score map of a registered pair: the network where it applies, else the analytic model.

    Parameters
    ----------
    current : the current CT, HU.
    warped_prior : the prior warped onto the current's grid (``PairResult.warped_prior``), HU.
    bone_roi : the bone ROI on the current grid (``PairResult.bone_roi``).
    model : ``"default"`` (the shipped bundle), a weights path, a loaded :class:`ZScoreModel`, or
        ``"analytic"``/None for the analytic error model.
    prior_spacing_mm : the prior exam's own voxel spacing (x, y, z), mm, before warping; the
        network uses it to know how sharp the prior was. None: assumed equal to the current's
        (a note says so).
    force : use the network even when the pair is outside its training domain (a note and a
        warning still say so).
    device : torch device for the network (``"cpu"`` by default, ``"auto"`` picks CUDA if present).
    tile_vox : network tile size on the working grid; None: the whole grid in one pass when it
        is small enough (see :func:`predict_on_grid`).
    precision : ``"float32"`` or ``"bfloat16"`` for the network (see :func:`predict_on_grid`).
    recalibrate : per-pair recalibration of the network: when the robust spread of z over the
        bone ROI (1.4826 x median absolute deviation, hardly moved by lesions, which cover a small
        part of the ROI) exceeds 1, sigma is widened by that factor (at most 5) and z divided by
        it. It corrects a pair that is noisier or less well matched than the training pairs as a
        whole (e.g. a sharper kernel in the current exam), which the network cannot see.
    delta_mm, block_mm : parameters of the analytic model (:func:`analytic_sigma`).
    prior_fov_margin_mm : ROI voxels within this distance of tissue the prior did not image
        (outside the prior's field of view, :func:`prior_missing_mask`) get ``z = 0``: their
        estimate is computed from neighbourhoods that contain a wall of "air", and they gave the
        network's largest false positives. 3 mm (two working-grid voxels) was chosen on a tuning
        set with other seeds (2, 3 and 4.5 mm gave the same result there). 0 switches it off.
    prior_missing : boolean array on the current grid marking where the prior has no data; None
        (default): derived from the volumes by :func:`prior_missing_mask`.

    Returns
    -------
    ZMap

    Warns
    -----
    OutOfDomainWarning
        When the network's domain check fails (and the analytic model is used unless ``force``).

    Raises
    ------
    DetectorInputError
        Volumes not on one grid, or label volumes where CT is expected.
    ModelBundleError
        A weights bundle that cannot be loaded or fails its hash check.
    """
    for name, vol in (("current", current), ("warped_prior", warped_prior)):
        if not isinstance(vol, Volume) or isinstance(vol, LabelVolume):
            raise DetectorInputError(f"{name} must be a CT volume in HU (cases.Volume).")
    if not current.same_space(warped_prior):
        raise DetectorInputError("The warped prior is not on the current exam's grid; warp it first (PairResult.warped_prior).")
    if not isinstance(bone_roi, LabelVolume) or not current.same_space(bone_roi):
        raise DetectorInputError("bone_roi must be a LabelVolume on the current exam's grid (PairResult.bone_roi).")
    roi = bone_roi.array != 0
    cur = current.array.astype(np.float32, copy=False)
    pri = warped_prior.array.astype(np.float32, copy=False)
    notes: list[str] = []
    if prior_missing is not None:
        prior_missing = np.asarray(prior_missing, dtype=bool)
        if prior_missing.shape != cur.shape:
            raise DetectorInputError(f"prior_missing has shape {prior_missing.shape}, the current exam {cur.shape}.")
    near_missing = near_missing_prior(cur, pri, roi, current.spacing_mm, float(prior_fov_margin_mm), prior_missing)
    n_near = int(near_missing.sum())
    roi_z = roi & ~near_missing  # where z is reported
    if n_near:
        notes.append(
            f"z set to 0 in {n_near} ROI voxels ({100.0 * n_near / max(int(roi.sum()), 1):.1f} %) within {prior_fov_margin_mm:g} mm of tissue "
            "outside the prior's field of view (no reliable estimate there)"
        )
    net_model = _resolve_model(model, device)
    domain: DomainCheck | None = None
    estimate = pri.copy()
    sigma = np.zeros(current.shape, dtype=np.float32)
    method: Literal["network", "analytic"] = "analytic"
    params: dict[str, Any] = {}
    z_network: np.ndarray | None = None

    if net_model is not None and roi.any():
        ws = net_model.working_spacing_mm
        halo_mm = (net_model.net.receptive_radius_vox + 2) * ws
        grid = make_working_grid(current, roi, ws, halo_mm)
        assert grid is not None
        prior_w = to_working_grid(pri, grid, current.spacing_mm)
        cur_w = to_working_grid(cur, grid, current.spacing_mm)
        roi_w = to_working_grid(roi, grid, current.spacing_mm, label=True) > 0.5  # cropped before conversion
        # The ROI on the working grid, grown by one voxel so that interpolation back to the
        # native ROI never reads an uncomputed voxel.
        roi_w_grown = ndi.binary_dilation(roi_w, iterations=2) if roi_w.any() else roi_w
        noise_c = noise_index_hu(cur_w, roi_w_grown)
        noise_p = noise_index_hu(prior_w, roi_w_grown)
        if prior_spacing_mm is None:
            notes.append("the prior's own voxel spacing was not given; assumed equal to the current's")
            prior_sp = tuple(current.spacing_mm)
        else:
            prior_sp = tuple(float(v) for v in prior_spacing_mm)
        domain = net_model.check_domain(current, prior_w, roi_w, noise_c, noise_p, prior_sp)
        if domain.in_domain or force:
            if not domain.in_domain:
                msg = f"z-score network v{net_model.version} used outside its training domain because it was forced: {'; '.join(domain.reasons)}"
                notes.append(msg)
                warnings.warn(msg, OutOfDomainWarning, stacklevel=2)
            nc = noise_c if math.isfinite(noise_c) else float(np.mean(net_model.metadata.get("domain", {}).get("noise_current_hu", [20.0, 20.0])))
            npr = noise_p if math.isfinite(noise_p) else float(np.mean(net_model.metadata.get("domain", {}).get("noise_prior_hu", [20.0, 20.0])))
            cond = condition_vector(nc, npr, current.spacing_mm, prior_sp)
            mu_w, sig_w = predict_on_grid(net_model.net, prior_w, cond, roi_w_grown | roi_w, device=net_model.device, tile_vox=tile_vox, precision=precision)
            computed = np.isfinite(sig_w)
            # z is formed on the working grid, where the network's Gaussian is defined (it was
            # trained on the current resampled there), then interpolated onto the native grid.
            z_w = np.where(computed, (cur_w - mu_w) / np.where(computed, sig_w, 1.0), 0.0).astype(np.float32)
            delta_w = np.where(computed, mu_w - prior_w, 0.0).astype(np.float32)
            log_sig_w = np.where(computed, np.log(np.maximum(sig_w, 1e-3)), np.log(60.0)).astype(np.float32)
            z_n = from_working_grid(z_w, grid, current.spacing_mm, 0.0)
            delta_n = from_working_grid(delta_w, grid, current.spacing_mm, 0.0)
            log_sig_n = from_working_grid(log_sig_w, grid, current.spacing_mm, float(np.log(60.0)))
            box = grid.box  # basic slices: estimate[box] etc. are views, written in place
            r = roi[box]
            np.add(pri[box], delta_n, out=delta_n)
            np.copyto(estimate[box], delta_n, where=r)
            np.exp(log_sig_n, out=log_sig_n)
            np.copyto(sigma[box], log_sig_n, where=r)
            z_network = np.zeros(current.shape, dtype=np.float32)
            np.copyto(z_network[box], z_n, where=r)
            method = "network"
            params = {"working_spacing_mm": ws, "noise_current_hu": noise_c, "noise_prior_hu": noise_p, "prior_spacing_mm": list(prior_sp), "forced": bool(force and not domain.in_domain)}
        else:
            msg = (
                f"z-score network v{net_model.version} not used: the pair is {domain.summary()}. "
                "Falling back to the analytic error model (local noise and edge strength); pass force=True (--force-model) to use the network anyway."
            )
            notes.append(msg)
            warnings.warn(msg, OutOfDomainWarning, stacklevel=2)
    elif net_model is None and not (isinstance(model, str) and model == "analytic") and model is not None:
        notes.append("no z-score network given; analytic error model used")

    if method == "analytic":
        sigma = analytic_sigma(current, warped_prior, bone_roi, delta_mm=delta_mm, block_mm=block_mm)
        params = {"delta_mm": delta_mm, "block_mm": block_mm}
    if method == "network" and z_network is not None:
        z = z_network
        z[near_missing] = OUTSIDE_Z
    else:
        z = np.zeros(current.shape, dtype=np.float32)
        ok = roi_z & (sigma > 0)
        z[ok] = (cur[ok] - estimate[ok]) / sigma[ok]
    params["prior_fov_margin_mm"] = float(prior_fov_margin_mm)
    params["n_voxels_near_missing_prior"] = n_near
    if recalibrate and method == "network" and roi_z.any():
        vals = z[roi_z]
        spread = float(1.4826 * np.median(np.abs(vals - np.median(vals))))
        factor = float(np.clip(spread, 1.0, 5.0))
        params["recalibration_factor"] = factor
        params["z_robust_sd_before"] = spread
        if factor > 1.0:
            z = (z / factor).astype(np.float32)
            sigma = (sigma * factor).astype(np.float32)
            notes.append(f"sigma widened by {factor:.2f} for this pair: the robust spread of z in its bone ROI was {spread:.2f} (1 when the pair is like the training pairs)")
    meta = {"method": method}
    if method == "network" and net_model is not None:  # the bundle that made the map, for the case's output manifest
        params["model_name"] = net_model.name
        params["model_sha256"] = net_model.metadata.get("sha256")
    z_vol = current.like(z).with_array(z, kind="z-score", units="1", **meta)
    z_native_vol = z_vol
    if method == "network":
        zn = np.zeros(current.shape, dtype=np.float32)
        nbox = mask_bounding_box(roi_z)
        if nbox is not None:  # on the ROI's bounding box only: a third of a clinical exam
            ok = roi_z[nbox] & (sigma[nbox] > 0)
            diff = np.subtract(cur[nbox], estimate[nbox], dtype=np.float32)
            np.divide(diff, sigma[nbox], out=zn[nbox], where=ok)
        z_native_vol = current.like(zn).with_array(zn, kind="z-score (native voxels)", units="1", **meta)
    return ZMap(
        z=z_vol,
        z_native=z_native_vol,
        sigma_hu=current.like(sigma).with_array(sigma, kind="z-score sigma", units="HU", **meta),
        estimate_hu=current.like(estimate).with_array(estimate, kind="no-change estimate", units="HU", **meta),
        bone_roi=bone_roi,
        method=method,
        model_version=net_model.version if (method == "network" and net_model is not None) else None,
        domain=domain,
        notes=tuple(notes),
        parameters=params,
    )
