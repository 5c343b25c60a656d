"""Weights bundles of the detector's networks: loading, hash check, the device.

A bundle is a weights file ``NAME.pt`` with its ``NAME.metadata.json`` beside it (version,
changelog, input contract, training domain, training data, evaluation figures with their split,
intended use, SHA-256 of the weights) and a model card ``NAME.md``. The temporal z-score network
(:mod:`detector.zscore_model`) and the single-exam in-painting network
(:mod:`detector.single_exam`) are both loaded through :func:`load_bundle`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar

from ._errors import DetectorInputError
from .working_grid import WORKING_SPACING_MM

if TYPE_CHECKING:  # torch is imported lazily: ``import detector`` stays fast
    import torch

__all__ = [
    "ModelBundleError",
    "ModelBundle",
    "resolve_device",
    "metadata_path_for",
    "sha256_of",
    "read_bundle_metadata",
    "load_bundle_weights",
    "load_bundle",
]


class ModelBundleError(ValueError):
    """A weights bundle is missing, incomplete or does not match its recorded hash."""


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


def read_bundle_metadata(weights: Path, *, missing_hint: str, verify_hash: bool = True) -> dict[str, Any]:
    """The metadata of a weights bundle, after checking that both files exist and the weights' SHA-256.

    Raises :class:`ModelBundleError` naming the file and what to do: ``missing_hint`` when the
    weights are missing, and the expected and actual hash on a mismatch.
    """
    meta_path = metadata_path_for(weights)
    if not weights.is_file():
        raise ModelBundleError(f"{weights}: {missing_hint}")
    if not meta_path.is_file():
        raise ModelBundleError(
            f"{meta_path}: the metadata of {weights.name} is missing; a weights file is only used with its metadata (input contract, domain, hash)."
        )
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
        raise ModelBundleError(
            f"{weights}: the weights do not fit the architecture in {metadata_path_for(weights).name} ({str(exc).splitlines()[0]})."
        ) from None
    return net.to(device).eval()


B = TypeVar("B", bound=ModelBundle)


def load_bundle(
    weights: Path,
    cls: type[B],
    build: Callable[[dict[str, Any]], Any],
    *,
    missing_hint: str,
    device: str = "cpu",
    verify_hash: bool = True,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> B:
    """Load a bundle into a :class:`ModelBundle` subclass.

    ``build(architecture)`` makes the untrained network from the metadata's ``architecture``;
    ``check(metadata)`` may refuse a bundle of another kind (raising :class:`ModelBundleError`).
    """
    metadata = read_bundle_metadata(weights, verify_hash=verify_hash, missing_hint=missing_hint)
    if check is not None:
        check(metadata)
    net = build(metadata.get("architecture", {}))
    dev = resolve_device(device)
    net = load_bundle_weights(net, weights, dev)
    return cls(net=net, metadata=metadata, path=weights, device=dev)
