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
Under input contracts 1 and 2 (weights v1, v2) it never sees the current exam's bone voxels:
changing the current inside the ROI changes neither ``mu`` nor ``sigma`` (a test checks this).
From input contract 3 its input is the warped prior matched to the current exam's resolution
(:func:`detector.zscore_model.network_prior_input`), so the current reaches it through the five
coefficients of that robust fit, and nothing else. Outputs: ``mu = prior +
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
caller forces the network. The spacing check needs only the metadata and comes first
(:func:`spacing_domain_check`): when the spacing alone rules the network out, the pair is not
resampled onto the working grid and the network is not loaded. The analytic model is

    sigma_a(x)^2 = s_local(x)^2 + (delta_mm * |grad prior(x)|)^2,

``s_local``: a robust local scale (1.4826 x median absolute deviation) of the plain subtraction
in bone, in blocks of about ``block_mm``; ``|grad prior|``: the gradient magnitude of the warped
prior (HU/mm); ``delta_mm``: the residual misregistration it allows for (0.5 mm by default, about
the measured bone TRE of the registration). It is the hand-made version of what the network learns.
Its estimate is the warped prior brought to the current exam's resolution (slice profile and
kernel, fitted on the pair: :func:`detector.zscore_analytic.match_resolution`), so a softer or
sharper second scan does not read as change in dense bone.

All geometry is DICOM/ITK LPS in millimetres; arrays are ``(z, y, x)``.

Where the code is
-----------------
This module makes the map (:class:`ZMap`, :func:`compute_zmap`). The stages it uses live beside
it: :mod:`detector.working_grid` (the network's grid), :mod:`detector.zscore_model` (network,
inputs, tiled inference, loading), :mod:`detector.zscore_bundle` (weights bundles, shared with
the single-exam network), :mod:`detector.zscore_domain` (noise index, bone-HU statistics, the
domain check) and :mod:`detector.zscore_analytic` (the analytic error model and the missing-prior
mask). Their names stay importable from here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import numpy as np
from scipy import ndimage as ndi

from cases import LabelVolume, Volume

from ._errors import DetectorInputError
from ._geometry import mask_bounding_box
from .working_grid import WORKING_SPACING_MM, WorkingGrid, from_working_grid, make_working_grid, to_working_grid  # noqa: F401
from .zscore_analytic import PRIOR_MISSING_HU, TISSUE_HU, _near_missing, analytic_sigma, match_resolution, near_missing_prior, prior_missing_mask  # noqa: F401
from .zscore_bundle import ModelBundle, ModelBundleError, load_bundle_weights, metadata_path_for, read_bundle_metadata, resolve_device, sha256_of  # noqa: F401
from .zscore_domain import SOFT_TISSUE_HU, DomainCheck, OutOfDomainWarning, bone_hu_statistics, check_domain, noise_index_hu  # noqa: F401
from .zscore_model import (  # noqa: F401
    CONDITION_NAMES,
    NOISE_SCALE_HU,
    NORM_CENTER_HU,
    NORM_SCALE_HU,
    ZScoreModel,
    build_net,
    check_spacing_domain,
    condition_vector,
    default_model_path,
    load_zscore_model,
    normalise_hu,
    predict_on_grid,
    read_zscore_metadata,
)

# The names above stay importable from ``detector.zscore`` (the module before it was split by stage).
__all__ = [
    "ModelBundle",
    "read_bundle_metadata",
    "load_bundle_weights",
    "ZScoreNet",  # noqa: F822 - resolved lazily by __getattr__ (no torch import at import time)
    "build_net",
    "ZScoreModel",
    "ZMap",
    "DomainCheck",
    "ModelBundleError",
    "OutOfDomainWarning",
    "compute_zmap",
    "analytic_sigma",
    "check_domain",
    "spacing_domain_check",
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

#: Values of the outputs outside the bone ROI.
OUTSIDE_Z = 0.0

ModelSpec = Union["ZScoreModel", str, Path, None]


def __getattr__(name: str) -> Any:
    # ``detector.zscore.ZScoreNet`` without importing torch at ``import detector`` time.
    if name == "ZScoreNet":
        from ._net import ZScoreNet

        return ZScoreNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, eq=False)
class ZMap:
    """The z-score map of one registered pair, on the current exam's grid.

    Attributes
    ----------
    z : ``(current - estimate) / sigma``, dimensionless; 0 outside the bone ROI. For the network
        it is computed on the working grid and interpolated (so on the native grid it equals
        ``(current - estimate) / sigma`` exactly only where the two grids coincide).
    sigma_hu : the estimated error, HU; 0 outside the ROI.
    estimate_hu : the estimated no-change current, HU (the warped prior outside the ROI; for the
        analytic model the warped prior's own array, not a copy: read it, do not write to it).
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
    near_missing_prior : boolean array, the ROI voxels within ``prior_fov_margin_mm`` of tissue
        the prior did not image, where z is set to 0 (:func:`near_missing_prior`); the z-score
        stage leaves them out of the candidates' ROI without computing them again. None for maps
        made elsewhere.
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
    near_missing_prior: np.ndarray | None = field(default=None, repr=False)

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


def recalibrate_z(
    z: np.ndarray, sigma: np.ndarray, roi: np.ndarray, params: dict[str, Any], *, what: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-exam recalibration of a network's map: widen sigma by the robust spread of z over the ROI when it exceeds 1.

    The spread is 1.4826 x the median absolute deviation of z in ``roi`` (lesions cover a small
    part of it and hardly move it), clipped to [1, 5]; z is divided by it and sigma multiplied.
    Records ``recalibration_factor`` and ``z_robust_sd_before`` in ``params``; returns z, sigma
    and a note (empty when nothing changed). ``what``: "pair" or "exam", for the note.
    """
    vals = z[roi]
    spread = float(1.4826 * np.median(np.abs(vals - np.median(vals))))
    factor = float(np.clip(spread, 1.0, 5.0))
    params["recalibration_factor"] = factor
    params["z_robust_sd_before"] = spread
    if factor <= 1.0:
        return z, sigma, []
    note = f"sigma widened by {factor:.2f} for this {what}: the robust spread of z in its bone ROI was {spread:.2f} (1 when the {what} is like the training {what}s)"
    return (z / factor).astype(np.float32), (sigma * factor).astype(np.float32), [note]


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


def spacing_domain_check(model: ModelSpec, current_spacing_mm: Sequence[float], prior_spacing_mm: Sequence[float] | None) -> DomainCheck | None:
    """The spacing part of the network's domain check (:func:`check_spacing_domain`) from the bundle's metadata, without loading the network.

    None when ``model`` names no network (``"analytic"``/None). ``measured["version"]`` holds the
    bundle's version. A missing bundle or a hash mismatch raises :class:`ModelBundleError` as
    loading it would. ``prior_spacing_mm`` None: the current's.
    """
    if model is None or (isinstance(model, str) and model == "analytic"):
        return None
    if isinstance(model, ZScoreModel):
        metadata = model.metadata
    elif isinstance(model, str) and model == "default":
        cached = next((m for (path, _), m in _DEFAULT_MODEL_CACHE.items() if path == str(default_model_path())), None)
        metadata = cached.metadata if cached is not None else read_zscore_metadata(None)
    else:
        metadata = read_zscore_metadata(model)
    prior = tuple(current_spacing_mm) if prior_spacing_mm is None else tuple(float(v) for v in prior_spacing_mm)
    check = check_spacing_domain(metadata, current_spacing_mm, prior)
    return DomainCheck(check.in_domain, check.reasons, {**check.measured, "version": str(metadata.get("version", "unversioned"))})


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
    resolution_match: bool = True,
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
    resolution_match : for the analytic model, bring the warped prior to the current exam's
        slice profile and kernel first (:func:`detector.zscore_analytic.match_resolution`, fitted
        on the pair; its coefficients go to ``parameters["resolution_match"]``); the estimate is
        then the matched prior. False: the warped prior itself (the rule before Dec 2026). The
        network's estimate is its own; its input follows its bundle's contract (contract 3: the
        prior matched on the working grid, :func:`detector.zscore_model.network_prior_input`,
        coefficients in ``parameters["resolution_match"]``), whatever this flag says.

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
    domain: DomainCheck | None = None
    # The voxel spacing alone can rule the network out (every clinical thin-slice exam, with the
    # v1 weights): then neither the working grid nor the network is needed.
    spacing_check = None if force else spacing_domain_check(model, current.spacing_mm, prior_spacing_mm)
    net_model = None if spacing_check is not None and not spacing_check.in_domain else _resolve_model(model, device)
    estimate = pri  # the analytic model's estimate is the warped prior itself; the network's is a copy (below)
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
            cond = net_model.conditions(nc, npr, current.spacing_mm, prior_sp)
            # channel 0 by the bundle's input contract (the warped prior, or from contract 3 the
            # prior matched to the current's resolution on this grid: the training's code path)
            net_in, match_info = net_model.prior_input(cur_w, prior_w, roi_w)
            mu_w, sig_w = predict_on_grid(
                net_model.net, net_in, cond, roi_w_grown | roi_w, device=net_model.device, tile_vox=tile_vox, precision=precision
            )
            computed = np.isfinite(sig_w)
            # z is formed on the working grid, where the network's Gaussian is defined (it was
            # trained on the current resampled there), then interpolated onto the native grid.
            z_w = np.where(computed, (cur_w - mu_w) / np.where(computed, sig_w, 1.0), 0.0).astype(np.float32)
            delta_w = np.where(computed, mu_w - prior_w, 0.0).astype(np.float32)
            log_sig_w = np.where(computed, np.log(np.maximum(sig_w, 1e-3)), np.log(60.0)).astype(np.float32)
            z_n = from_working_grid(z_w, grid, current.spacing_mm, 0.0)
            delta_n = from_working_grid(delta_w, grid, current.spacing_mm, 0.0)
            log_sig_n = from_working_grid(log_sig_w, grid, current.spacing_mm, float(np.log(60.0)))
            estimate = pri.copy()
            box = grid.box  # basic slices: estimate[box] etc. are views, written in place
            r = roi[box]
            np.add(pri[box], delta_n, out=delta_n)
            np.copyto(estimate[box], delta_n, where=r)
            np.exp(log_sig_n, out=log_sig_n)
            np.copyto(sigma[box], log_sig_n, where=r)
            z_network = np.zeros(current.shape, dtype=np.float32)
            np.copyto(z_network[box], z_n, where=r)
            method = "network"
            params = {
                "working_spacing_mm": ws,
                "noise_current_hu": noise_c,
                "noise_prior_hu": noise_p,
                "prior_spacing_mm": list(prior_sp),
                "forced": bool(force and not domain.in_domain),
                "input_contract": net_model.input_contract,
            }
            if match_info is not None:
                params["resolution_match"] = match_info
            if net_model.operating_threshold is not None:  # the bundle's own operating point (detector.zscore_outputs.operating_threshold_of)
                params["operating_threshold"] = net_model.operating_threshold
        else:
            msg = (
                f"z-score network v{net_model.version} not used: the pair is {domain.summary()}. "
                "Falling back to the analytic error model (local noise and edge strength); pass force=True (--force-model) to use the network anyway."
            )
            notes.append(msg)
            warnings.warn(msg, OutOfDomainWarning, stacklevel=2)
    elif spacing_check is not None and not spacing_check.in_domain:
        if roi.any():
            domain = spacing_check
            msg = (
                f"z-score network v{spacing_check.measured['version']} not used: the pair is {domain.summary()} "
                "(bone HU and noise not measured: the spacing alone rules the network out). "
                "Falling back to the analytic error model (local noise and edge strength); pass force=True (--force-model) to use the network anyway."
            )
            notes.append(msg)
            warnings.warn(msg, OutOfDomainWarning, stacklevel=2)
    elif net_model is None and not (isinstance(model, str) and model == "analytic") and model is not None:
        notes.append("no z-score network given; analytic error model used")

    if method == "analytic":
        params = {"delta_mm": delta_mm, "block_mm": block_mm, "resolution_match": None}
        analytic_prior = warped_prior
        if resolution_match and roi_z.any():
            # the matched prior in roi_z and the warped prior elsewhere, in a new array (the warped
            # prior's own is never written into)
            estimate, params["resolution_match"] = match_resolution(cur, pri, roi_z)
            analytic_prior = warped_prior.with_array(estimate)
        sigma = analytic_sigma(current, analytic_prior, bone_roi, delta_mm=delta_mm, block_mm=block_mm)
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
        z, sigma, note = recalibrate_z(z, sigma, roi_z, params, what="pair")
        notes.extend(note)
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
        near_missing_prior=near_missing,
    )
