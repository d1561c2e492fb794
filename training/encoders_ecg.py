"""ECG analysis transform: a strided 1-D convolutional encoder per lead or lead group.

Runs at the edge through ONNX Runtime, so it stays small: a few thousand weights per
lead, one window of T samples in, (M, T / stride) latents out.
"""
from __future__ import annotations

import torch
from torch import nn

from training.encoders import register_encoder


@register_encoder("ecg-conv")
class EcgConvEncoder(nn.Module):
    """(B, C, T) in mV → (B, M, T / stride).

    A wide first filter (7 taps) sees a QRS complex's slope; it and each following
    stride-2 layer halve the time resolution; the input is divided by ``input_scale`` (mV) so the
    weights work on values of order one.

    Args:
        in_channels: C leads of this node.
        latent_channels: M.
        hidden: channel width.
        stride: total downsampling, a power of two.
        input_scale: physical scale of the input (mV).
    """

    def __init__(self, in_channels: int, latent_channels: int, hidden: int = 32, stride: int = 16,
                 input_scale: float = 1.0, **_: object):
        super().__init__()
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"stride must be a power of two, got {stride}")
        self.input_scale = float(input_scale)
        # The first layer already halves the rate (ECG above 125 Hz carries little energy),
        # at half width: the full-rate layers dominate the edge's compute.
        first = max(hidden // 2, 8)
        mods: list[nn.Module] = [nn.Conv1d(in_channels, first, 7, stride=2 if stride > 1 else 1, padding=3),
                                 nn.GELU()]
        width, factor = first, stride // 2
        while factor > 1:
            mods += [nn.Conv1d(width, hidden, 5, stride=2, padding=2), nn.GELU()]
            width, factor = hidden, factor // 2
        mods += [nn.Conv1d(width, hidden, 3, padding=1), nn.GELU(), nn.Conv1d(hidden, latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*mods)
        # A linear filter bank beside the deep path: it learns a transform code within a
        # few dozen steps, and the deep path refines it (deep paths alone train slowly).
        self.linear = nn.Conv1d(in_channels, latent_channels, 2 * stride, stride=stride, padding=stride // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / self.input_scale
        return self.linear(x) + self.net(x)
