"""The single-exam in-painting network's torch module (imported lazily: ``import detector`` does not load torch).

A **blind-spot network** in the manner of Laine et al. (NeurIPS 2019, "High-quality
self-supervised deep image denoising"), extended to 3-D and to a blind *block*: six branches
with shared weights each see only one half-space of the volume (voxels strictly more than
``blind_radius_vox`` voxels away along one of -z, +z, -y, +y, -x, +x), and 1x1x1 layers combine
them. The union of the six half-spaces is everything outside the cube of edge
``2 * blind_radius_vox + 1`` centred on the voxel, so the prediction of a voxel never depends on
that cube (a test checks this).

How a branch stays in its half-space: each convolution is *causal* along the branch's axis (its
3x3x3 kernel reads the voxel and the two before it along that axis, zero-padded at the start),
so after ``n`` layers a feature at index ``d`` depends on input indices ``d - 2n .. d`` only;
the branch output is then shifted by ``blind_radius_vox + 1`` along the axis. The six directions
are obtained by transposing and flipping the input, so one set of weights serves them all; the
combining layers see the six branches' features in a fixed order and so know which came from
where.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# HU normalisation of the input and of ``mu``, and the log-variance clamp: the temporal network's.
from ._net import LOGVAR_RANGE, NORM_CENTER_HU, NORM_SCALE_HU, gaussian_head  # noqa: F401

#: The six branch orientations: (dimension swapped with depth, flipped?) -> half-space seen.
_ORIENTATIONS: tuple[tuple[int, bool], ...] = ((2, False), (2, True), (3, False), (3, True), (4, False), (4, True))
ORIENTATION_NAMES: tuple[str, ...] = ("-z", "+z", "-y", "+y", "-x", "+x")


def _orient(x: torch.Tensor, dim: int, flip: bool) -> torch.Tensor:
    if dim != 2:
        x = x.transpose(2, dim)
    if flip:
        x = x.flip(2)
    # channels-last 3-D layout: about half the time of the default layout for these
    # convolutions on CPU (oneDNN), measured
    return x.contiguous(memory_format=torch.channels_last_3d)


def _unorient(x: torch.Tensor, dim: int, flip: bool) -> torch.Tensor:
    if flip:
        x = x.flip(2)
    if dim != 2:
        x = x.transpose(2, dim)
    return x.contiguous(memory_format=torch.channels_last_3d)


class _CausalConv(nn.Module):
    """3x3x3 convolution that reads, along depth, only the voxel and the two before it."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, 3, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1, 2, 0)))


class BlindSpotNet(nn.Module):
    """Current exam -> (mu, log sigma^2) of every voxel, never looking at the block around it.

    Input ``(batch, 1, z, y, x)``: the current CT as ``(HU - 200) / 500`` on the working grid;
    ``conditions`` ``(batch, n_conditions)``: exam-level numbers (noise index, voxel spacing,
    see :func:`detector.single_exam.single_exam_conditions`) entering the combining layers.
    Output ``mu`` (normalised HU) and ``log sigma^2`` (normalised units, clamped to
    :data:`LOGVAR_RANGE`), shape ``(batch, 1, z, y, x)``.

    Parameters
    ----------
    channels : feature channels of each branch.
    n_layers : causal convolutions per branch (the first from the input, then residual ones).
    blind_radius_vox : half-edge of the blind cube: the output at a voxel does not depend on
        the ``(2 r + 1)^3`` input voxels centred on it.
    n_conditions : exam-level inputs of the combining layers.
    head_channels : width of the two hidden 1x1x1 combining layers.
    init_sigma_hu : sigma the untrained network predicts, HU.

    Notes
    -----
    No normalisation layers and zero padding, so outputs do not depend on the tile they are
    computed in beyond :attr:`halo_vox`. The first combining layer is linear in the six branch
    features, so it is accumulated branch by branch (memory of one branch at a time).
    """

    def __init__(
        self,
        channels: int = 8,
        n_layers: int = 5,
        blind_radius_vox: int = 2,
        n_conditions: int = 3,
        head_channels: int = 32,
        init_sigma_hu: float = 60.0,
    ) -> None:
        super().__init__()
        if n_layers < 1 or blind_radius_vox < 0 or channels < 1:
            raise ValueError(
                f"BlindSpotNet: n_layers ({n_layers}) and channels ({channels}) must be >= 1 and blind_radius_vox ({blind_radius_vox}) >= 0"
            )
        self.channels = int(channels)
        self.n_layers = int(n_layers)
        self.blind_radius_vox = int(blind_radius_vox)
        self.n_conditions = int(n_conditions)
        self.head_channels = int(head_channels)
        self.inp = _CausalConv(1, channels)
        self.layers = nn.ModuleList([_CausalConv(channels, channels) for _ in range(n_layers - 1)])
        self.act = nn.LeakyReLU(0.1)
        self.mix = nn.Conv3d(6 * channels + n_conditions, head_channels, 1)
        self.hidden = nn.Conv3d(head_channels, head_channels, 1)
        self.head = gaussian_head(head_channels, init_sigma_hu)

    @property
    def reach_vox(self) -> int:
        """Farthest input voxel (along a branch's axis) that can influence an output voxel."""
        return self.blind_radius_vox + 1 + 2 * self.n_layers

    @property
    def halo_vox(self) -> int:
        """Margin a tile must be read with so that its outputs equal the whole-volume ones."""
        return self.reach_vox

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        for layer in self.layers:
            h = h + self.act(layer(h))
        shift = self.blind_radius_vox + 1
        # output[d] = h[d - shift]: the branch only sees voxels more than r before d
        return F.pad(h, (0, 0, 0, 0, shift, 0))[:, :, : h.shape[2]]

    def forward(self, x: torch.Tensor, conditions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.channels
        w = self.mix.weight
        acc = None
        for k, (dim, flip) in enumerate(_ORIENTATIONS):
            f = _unorient(self._branch(_orient(x, dim, flip)), dim, flip)
            part = F.conv3d(f, w[:, k * c : (k + 1) * c])
            acc = part if acc is None else acc + part
        assert acc is not None
        cond_term = conditions.to(w.dtype) @ w[:, 6 * c :, 0, 0, 0].T + self.mix.bias  # (batch, head)
        h = self.act(acc + cond_term[:, :, None, None, None])
        h = self.act(self.hidden(h))
        out = self.head(h)
        mu = out[:, :1]
        log_var = torch.clamp(out[:, 1:2], *LOGVAR_RANGE)
        return mu, log_var
