"""Per-source analysis transforms g_a (torch, exported to ONNX for the edge).

Each encoder sees only its own source window (C, *S) and returns latents (M, *L).
Architectures register with :func:`register_encoder` so modalities add their own.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ndsc.registry import Registry

#: modality modules register on import
ENCODERS: Registry[Callable[..., nn.Module]] = Registry(
    "encoder architecture", "models.encoders_ecg", "models.encoders_image")
register_encoder = ENCODERS.register


def build_encoder(arch: str, **kwargs) -> nn.Module:
    """Instantiate the registered encoder ``arch``."""
    return ENCODERS.get(arch)(**kwargs)


@register_encoder("pointwise")
class PointwiseEncoder(nn.Module):
    """Per-sample MLP (1×1 convolutions): (B, C, T) → (B, M, T).

    Nonlinear, so training may discover many-to-one (binning-like) maps.
    """

    def __init__(self, in_channels: int, latent_channels: int, hidden: int = 64, layers: int = 3,
                 input_scale: float = 1.0, latent_gain: bool = False, **_: object):
        super().__init__()
        self.input_scale = input_scale
        mods: list[nn.Module] = [nn.Conv1d(in_channels, hidden, 1), nn.GELU()]
        for _ in range(layers - 1):
            mods += [nn.Conv1d(hidden, hidden, 1), nn.GELU()]
        mods.append(nn.Conv1d(hidden, latent_channels, 1))
        self.net = nn.Sequential(*mods)
        # The quantisation step is fixed at 1, so the rate is set by the latent scale. A
        # log-gain moves that scale by ~lr per step under Adam, where the MLP weights
        # would need many more steps to grow 10-100x for high-rate operating points.
        self.log_gain = nn.Parameter(torch.zeros(latent_channels, 1)) if latent_gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x / self.input_scale)
        return y if self.log_gain is None else y * torch.exp(self.log_gain)


@register_encoder("conv1d")
class Conv1dEncoder(nn.Module):
    """Strided 1-D convolutions: (B, C, T) → (B, M, T / stride)."""

    def __init__(self, in_channels: int, latent_channels: int, hidden: int = 64, stride: int = 4,
                 input_scale: float = 1.0, **_: object):
        super().__init__()
        self.input_scale = input_scale
        mods: list[nn.Module] = [nn.Conv1d(in_channels, hidden, 5, padding=2), nn.GELU()]
        factor = stride
        while factor > 1:
            mods += [nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU()]
            factor //= 2
        mods += [nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(), nn.Conv1d(hidden, latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / self.input_scale)
