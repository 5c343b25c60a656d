"""The temporal z-score network: its inputs, tiled inference, and its weights bundle.

The network (:class:`~detector._net.ZScoreNet`, a 3-D residual fully convolutional network)
looks at the **warped prior only** on the working grid (:mod:`detector.working_grid`; from input
contract 3 the prior matched to the current exam's resolution, :func:`network_prior_input`), plus
six constant channels of exam-level conditions (:func:`condition_vector`), and predicts the
current voxel as a Gaussian: ``mu`` (HU) and ``sigma`` (HU). See :mod:`detector.zscore` for the map it
makes and docs/detector-zscore.md for the design and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cases import Volume

from ._errors import DetectorInputError
from .zscore_analytic import match_resolution
from .zscore_bundle import ModelBundle, load_bundle, read_bundle_metadata
from .zscore_domain import DomainCheck, check_domain_ranges, effective_spacing_mm

__all__ = [
    "NORM_CENTER_HU",
    "NORM_SCALE_HU",
    "NOISE_SCALE_HU",
    "CONDITION_NAMES",
    "ZScoreNet",  # noqa: F822 - resolved lazily by __getattr__ (no torch import at import time)
    "ZScoreModel",
    "build_net",
    "condition_vector",
    "normalise_hu",
    "predict_on_grid",
    "run_tiled",
    "default_model_path",
    "load_zscore_model",
    "read_zscore_metadata",
    "check_spacing_domain",
    "INPUT_CONTRACT_RESOLUTION_MATCH",
    "input_contract",
    "network_prior_input",
]

#: HU normalisation of the network's input and output: (HU - centre) / scale.
NORM_CENTER_HU = 200.0
NORM_SCALE_HU = 500.0
#: Noise levels are given to the network divided by this (HU).
NOISE_SCALE_HU = 50.0


def __getattr__(name: str) -> Any:
    # ``detector.zscore_model.ZScoreNet`` without importing torch at ``import detector`` time.
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
    "noise_current_hu / 50",
    "noise_prior_hu / 50",
    "current in-plane spacing (mm) / 1.5",
    "current slice spacing (mm) / 1.5",
    "prior in-plane spacing (mm) / 1.5",
    "prior slice spacing (mm) / 1.5",
)


def condition_vector(
    noise_current_hu: float,
    noise_prior_hu: float,
    current_spacing_mm: Sequence[float],
    prior_spacing_mm: Sequence[float],
    *,
    spacing_floor_mm: float | None = None,
) -> np.ndarray:
    """The exam-level inputs of the network (channels 1-6), see :data:`CONDITION_NAMES`.

    They tell the network how noisy and how sharp each exam is: a current exam reconstructed with
    thinner slices than the prior shows cortex and endplates brighter, which is no lesion.
    ``spacing_floor_mm`` (the bundle's ``domain.spacing_floor_mm``): spacings finer than it are
    given as it (:func:`~detector.zscore_domain.effective_spacing_mm`).
    """
    cur = effective_spacing_mm(current_spacing_mm, spacing_floor_mm)
    pri = effective_spacing_mm(prior_spacing_mm, spacing_floor_mm)
    return np.asarray(
        [
            noise_current_hu / NOISE_SCALE_HU,
            noise_prior_hu / NOISE_SCALE_HU,
            (cur[0] + cur[1]) / 2 / 1.5,
            cur[2] / 1.5,
            (pri[0] + pri[1]) / 2 / 1.5,
            pri[2] / 1.5,
        ],
        dtype=np.float32,
    )


#: The input contract from which channel 0 is the warped prior brought to the current exam's
#: resolution (:func:`network_prior_input`). Bundles record it as ``input.contract``; older
#: bundles have none: contract 2 when they record ``domain.spacing_floor_mm``, else 1.
INPUT_CONTRACT_RESOLUTION_MATCH = 3


def input_contract(metadata: dict[str, Any]) -> int:
    """The input contract of a bundle: ``input.contract`` when recorded, else 2 (spacing floor) or 1 (v1 bundles).

    1: channel 0 is the warped prior, channels 1-6 the conditions with native spacings.
    2: as 1, with spacings finer than the working grid given as the working spacing.
    3: as 2, with channel 0 the warped prior matched to the current exam's resolution
       (:func:`network_prior_input`).
    """
    recorded = metadata.get("input", {}).get("contract")
    if recorded is not None:
        return int(recorded)
    return 2 if metadata.get("domain", {}).get("spacing_floor_mm") else 1


def network_prior_input(current_hu: np.ndarray, prior_hu: np.ndarray, roi: np.ndarray, contract: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Channel 0 of the network on the working grid, in HU: the one code path of training and inference.

    Contracts 1 and 2: the warped prior itself (returned as is; no copy). Contract 3
    (:data:`INPUT_CONTRACT_RESOLUTION_MATCH`): the warped prior brought to the current exam's
    slice profile and kernel by :func:`detector.zscore_analytic.match_resolution`, fitted over the
    bone ROI of the working grid (robust, lesions trimmed) and applied to the whole grid, so that
    the network's receptive field sees one image. The analytic model made most of its gain on real
    pairs from this matching (docs/detector-zscore.md); given the matched prior, the network only
    learns what the five coefficients of the fit cannot describe. The current exam enters through
    those five numbers only.

    Returns the input (float32) and the fit's record (``match_resolution``'s ``info``; None for
    contracts 1 and 2).
    """
    if contract < INPUT_CONTRACT_RESOLUTION_MATCH:
        return prior_hu, None
    return match_resolution(current_hu, prior_hu, roi, region=np.ones(prior_hu.shape, dtype=bool))


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """``(clip(HU, -1024, 3071) - 200) / 500`` as float32: the network's intensity units."""
    return ((np.clip(hu, -1024.0, 3071.0) - NORM_CENTER_HU) / NORM_SCALE_HU).astype(np.float32)


def run_tiled(
    forward: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    hu: np.ndarray,
    roi: np.ndarray,
    halo: int,
    tile_vox: int | None,
    max_voxels_per_pass: int,
    default_tile_vox: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run a network on every tile of a working-grid array that holds ROI voxels (shared by both networks).

    ``forward(block)`` takes a normalised input block (the tile plus ``halo`` voxels on every
    side) and returns ``mu`` and ``log sigma^2`` (normalised units) of the tile's inner voxels.
    Each tile is read with its halo, so tiled and whole-volume results agree. ``tile_vox`` None:
    the whole grid in one pass when it holds at most ``max_voxels_per_pass`` voxels with its
    halo, else tiles of ``default_tile_vox``. Returns ``mu`` and ``sigma`` in HU; outside the
    computed tiles ``mu`` is the input and ``sigma`` is NaN.
    """
    shape = hu.shape
    mu = hu.astype(np.float32, copy=True)
    sigma = np.full(shape, np.nan, dtype=np.float32)
    padded = np.pad(normalise_hu(hu), halo, mode="edge")
    if tile_vox is None:
        whole = int(np.prod([n + 2 * halo for n in shape]))
        tile_vox = max(shape) if whole <= max_voxels_per_pass else default_tile_vox
    for z0 in range(0, shape[0], tile_vox):
        for y0 in range(0, shape[1], tile_vox):
            for x0 in range(0, shape[2], tile_vox):
                z1, y1, x1 = min(z0 + tile_vox, shape[0]), min(y0 + tile_vox, shape[1]), min(x0 + tile_vox, shape[2])
                if not roi[z0:z1, y0:y1, x0:x1].any():
                    continue
                m, lv = forward(padded[z0 : z1 + 2 * halo, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo])
                mu[z0:z1, y0:y1, x0:x1] = m * NORM_SCALE_HU + NORM_CENTER_HU
                sigma[z0:z1, y0:y1, x0:x1] = NORM_SCALE_HU * np.exp(0.5 * lv)
    return mu, sigma


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
    cond = np.asarray(conditions, dtype=np.float32).ravel()
    if cond.size != int(net.n_inputs) - 1:
        raise DetectorInputError(f"The network takes {int(net.n_inputs) - 1} condition values, got {cond.size}.")
    if precision not in ("float32", "bfloat16"):
        raise DetectorInputError(f"precision must be 'float32' or 'bfloat16', got {precision!r}.")
    # channels-last weights to match the channels-last input: oneDNN's 3-D convolutions then run
    # about twice as fast on a CPU (8.8 s -> 4.6 s for a clinical working grid, 2 threads).
    net = net.to(device, memory_format=torch.channels_last_3d).eval()
    inner = (0, 0, slice(halo, -halo), slice(halo, -halo), slice(halo, -halo))

    def forward(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((1, 1 + cond.size) + block.shape, dtype=np.float32)
        x[0, 0] = block
        x[0, 1:] = cond[:, None, None, None]
        xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last_3d)
        m, lv = net(xt)
        return m[inner].float().cpu().numpy(), lv[inner].float().cpu().numpy()

    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        return run_tiled(forward, prior_hu, roi, halo, tile_vox, max_voxels_per_pass, 128)


def default_model_path() -> Path:
    """The shipped weights: ``detector/weights/zscore-v1.pt``."""
    return Path(__file__).resolve().parent / "weights" / "zscore-v1.pt"


@dataclass(frozen=True, eq=False)
class ZScoreModel(ModelBundle):
    """The temporal z-score network (:func:`ZScoreNet`) with its metadata (see :class:`~detector.zscore_bundle.ModelBundle`)."""

    @property
    def input_contract(self) -> int:
        """The bundle's input contract (:func:`input_contract`)."""
        return input_contract(self.metadata)

    @property
    def operating_threshold(self) -> float | None:
        """The bundle's own candidate threshold (``operating_threshold`` in its metadata), chosen on tuning sets; None: the method's default."""
        v = self.metadata.get("operating_threshold")
        return float(v) if v is not None else None

    def prior_input(self, current_hu: np.ndarray, prior_hu: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
        """:func:`network_prior_input` with this bundle's contract (working-grid arrays)."""
        return network_prior_input(current_hu, prior_hu, roi, self.input_contract)

    @property
    def spacing_floor_mm(self) -> float | None:
        """Spacings finer than this are given to the network as this (None in bundles before v2)."""
        v = self.metadata.get("domain", {}).get("spacing_floor_mm")
        return float(v) if v else None

    def conditions(
        self, noise_current_hu: float, noise_prior_hu: float, current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float]
    ) -> np.ndarray:
        """:func:`condition_vector` with this bundle's spacing floor."""
        return condition_vector(noise_current_hu, noise_prior_hu, current_spacing_mm, prior_spacing_mm, spacing_floor_mm=self.spacing_floor_mm)

    def check_domain(
        self,
        current: Volume,
        prior_hu_work: np.ndarray,
        roi_work: np.ndarray,
        noise_current_hu: float,
        noise_prior_hu: float,
        prior_spacing_mm: Sequence[float] | None = None,
    ) -> DomainCheck:
        """Compare one pair (already on the working grid) with the recorded training domain."""
        measured: dict[str, Any] = {
            "spacing_mm": [float(s) for s in current.spacing_mm],
            "noise_current_hu": noise_current_hu,
            "noise_prior_hu": noise_prior_hu,
        }
        if prior_spacing_mm is not None:
            measured["prior_spacing_mm"] = [float(s) for s in prior_spacing_mm]
        return check_domain_ranges(
            self.metadata.get("domain", {}),
            spacings=_spacings(current.spacing_mm, prior_spacing_mm),
            bone_hu=prior_hu_work,
            roi=roi_work,
            noises=(
                ("noise_current_hu", "noise of the current exam", noise_current_hu),
                ("noise_prior_hu", "noise of the prior exam", noise_prior_hu),
            ),
            measured=measured,
        )

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"ZScoreModel({self.name} v{self.version}; {self.n_parameters} parameters; {self.device}{where})"


def _spacings(current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float] | None) -> tuple[tuple[str, str, Sequence[float] | None], ...]:
    return (("spacing", "the current exam", current_spacing_mm), ("prior_spacing", "the prior exam", prior_spacing_mm))


def check_spacing_domain(metadata: dict[str, Any], current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float] | None) -> DomainCheck:
    """The voxel-spacing part of a bundle's domain check alone (:meth:`ZScoreModel.check_domain`).

    Needs neither the network nor the images: when it already fails, the z-map skips resampling
    the pair onto the working grid (about 4 CPU s on a clinical exam) and loading the network.
    Its reasons are the first reasons the full check would give.
    """
    measured: dict[str, Any] = {"spacing_mm": [float(s) for s in current_spacing_mm]}
    if prior_spacing_mm is not None:
        measured["prior_spacing_mm"] = [float(s) for s in prior_spacing_mm]
    check = check_domain_ranges(
        metadata.get("domain", {}),
        spacings=_spacings(current_spacing_mm, prior_spacing_mm),
        bone_hu=np.zeros(0, dtype=np.float32),
        roi=np.zeros(0, dtype=bool),
        noises=(),
    )
    return DomainCheck(check.in_domain, check.reasons, measured)


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
    return load_bundle(
        weights,
        ZScoreModel,
        lambda arch: build_net(
            channels=int(arch.get("channels", 16)), dilations=tuple(arch.get("dilations", (1, 1, 1, 1))), n_inputs=int(arch.get("n_inputs", 7))
        ),
        missing_hint=_missing_weights_hint(weights),
        device=device,
        verify_hash=verify_hash,
    )


def _missing_weights_hint(weights: Path) -> str:
    return f"z-score weights not found. Train them with 'tsct detect train CASELIST --out {weights}', or use the analytic error model (--model analytic)."


def read_zscore_metadata(path: str | Path | None = None, *, verify_hash: bool = True) -> dict[str, Any]:
    """The metadata of a z-score bundle without loading the network (nor importing torch).

    The same checks and messages as :func:`load_zscore_model` for missing files and the hash;
    the z-map reads the training domain from it before deciding whether to load the network.
    """
    weights = Path(path) if path is not None else default_model_path()
    return read_bundle_metadata(weights, missing_hint=_missing_weights_hint(weights), verify_hash=verify_hash)
