"""The z-score network's torch module (imported lazily: ``import detector`` does not load torch)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

#: HU normalisation of the network's input and output: (HU - centre) / scale.
NORM_CENTER_HU = 200.0
NORM_SCALE_HU = 500.0
#: log-variance clamp in normalised units: sigma between ~1.2 HU and ~3700 HU.
LOGVAR_RANGE = (-12.0, 4.0)


def gaussian_head(in_channels: int, init_sigma_hu: float) -> nn.Conv3d:
    """The 1x1x1 output layer of both networks: (mu residual, log sigma^2), starting at mu = input and sigma = ``init_sigma_hu``."""
    head = nn.Conv3d(in_channels, 2, 1)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias[0] = 0.0
        head.bias[1] = 2.0 * math.log(init_sigma_hu / NORM_SCALE_HU)
    return head


class ZScoreNet(nn.Module):
    """3-D residual fully convolutional network: warped prior -> (mu, log sigma^2).

    Input ``(batch, n_inputs, z, y, x)``: channel 0 the warped prior as ``(HU - 200) / 500``;
    channels 1-6 constant maps of the exam-level conditions (:func:`detector.zscore.condition_vector`:
    the soft-tissue noise level of each exam and the voxel spacings of both exams). Output: ``mu`` in the same normalised HU units (``mu = prior + residual``)
    and ``log sigma^2`` in normalised units, clamped to ``LOGVAR_RANGE``.

    Parameters
    ----------
    channels : feature channels of every layer.
    dilations : one residual block per entry: two 3x3x3 convolutions with that dilation and a
        LeakyReLU between them, added to the block's input.
    n_inputs : input channels.
    init_sigma_hu : sigma the untrained network predicts, HU.

    Notes
    -----
    No normalisation layers, so a voxel's output does not depend on the size of the patch or tile
    it is computed in beyond the receptive field (:attr:`receptive_radius_vox`, 9 voxels with the
    defaults). Zero padding (replicate padding and dilated convolutions were 2-3 times slower to
    train on CPU). Each block's last convolution and the head start at zero: the untrained
    network predicts ``mu = prior`` and ``sigma = init_sigma_hu``.
    """

    def __init__(self, channels: int = 16, dilations: Sequence[int] = (1, 1, 1, 1), n_inputs: int = 7, init_sigma_hu: float = 60.0) -> None:
        super().__init__()
        self.channels = int(channels)
        self.dilations = tuple(int(d) for d in dilations)
        self.n_inputs = int(n_inputs)
        self.inp = nn.Conv3d(n_inputs, channels, 3, padding=1, padding_mode="zeros")
        self.blocks = nn.ModuleList()
        for d in self.dilations:
            block = nn.Sequential(
                nn.Conv3d(channels, channels, 3, padding=d, dilation=d, padding_mode="zeros"),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv3d(channels, channels, 3, padding=d, dilation=d, padding_mode="zeros"),
            )
            nn.init.zeros_(block[2].weight)
            nn.init.zeros_(block[2].bias)
            self.blocks.append(block)
        self.act = nn.LeakyReLU(0.1)
        self.head = gaussian_head(channels, init_sigma_hu)

    @property
    def receptive_radius_vox(self) -> int:
        """How far (voxels) from a voxel the input can influence its output."""
        return 1 + 2 * sum(self.dilations)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.inp(x))
        if torch.is_grad_enabled():
            for block in self.blocks:
                h = self.act(h + block(h))
        else:  # inference: the same arithmetic in place, to save memory traffic
            for block in self.blocks:
                h = nn.functional.leaky_relu_(block(h).add_(h), 0.1)
        out = self.head(h)
        mu = x[:, :1] + out[:, :1]
        log_var = torch.clamp(out[:, 1:2], *LOGVAR_RANGE)
        return mu, log_var
