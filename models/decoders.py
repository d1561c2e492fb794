"""Joint synthesis transforms: all sources' latents in, all sources' reconstructions out.

Every decoder takes ``y_hat`` of shape (B, N, M, *L) — the dequantised latents of the N
sources stacked — and ``present`` (B, N), 1 where a source's latent arrived and 0
where it is missing (its latent is then zeroed). They return ``x_hat`` (B, N, C, *S).
Training with random source dropout teaches a decoder to estimate a missing source
from the others.

Architectures register with :func:`register_decoder`; the bundle names one by
``decoder.arch`` with its constructor ``decoder.args``, so the serving side rebuilds
it without importing ``training``. Each architecture declares which model settings it
takes beyond the common ones in ``config_args`` (see :func:`decoder_args`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from models.config import ModelConfig
from ndsc.registry import Registry

#: modality modules register on import
DECODERS: Registry[Callable[..., nn.Module]] = Registry(
    "decoder architecture", "models.decoders_ecg", "models.decoders_image", "models.decoders_cam",
    "models.decoders_table")
register_decoder = DECODERS.register


def build_decoder(arch: str, args: dict) -> nn.Module:
    """Instantiate the registered decoder ``arch`` with keyword ``args``."""
    return DECODERS.get(arch)(**args)


def decoder_args(arch: str, model: ModelConfig, n_sources: int, out_channels: int) -> dict[str, Any]:
    """Constructor arguments of decoder ``arch`` for a codec of ``model`` (what a bundle records).

    Every decoder takes ``n_sources``, ``latent_channels``, ``out_channels``, ``hidden`` and
    ``joint``; a class adds its own as ``config_args = {constructor arg: ModelConfig field}``.
    """
    cls = DECODERS.get(arch)
    if not getattr(cls, "from_model_config", True):
        raise ValueError(f"decoder {arch!r} is fitted, not built from a model configuration")
    args: dict[str, Any] = {"n_sources": n_sources, "latent_channels": model.latent_channels,
                            "out_channels": out_channels, "hidden": model.hidden, "joint": model.joint_decoder}
    for arg, field in getattr(cls, "config_args", {}).items():
        args[arg] = getattr(model, field)
    return args


def known_decoders(from_model_config: bool = False) -> list[str]:
    """Registered decoder names; ``from_model_config``: only those a ModelConfig can build (trainable)."""
    return [n for n in DECODERS.names() if not from_model_config or getattr(DECODERS.get(n), "from_model_config", True)]


def _presence(y_hat: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """The (B, N) presence mask of latents (B, N, M, *L) in their dtype (None: every source present)."""
    if present is None:
        return torch.ones(y_hat.shape[:2], dtype=y_hat.dtype, device=y_hat.device)
    return present.to(y_hat.dtype)


def _with_presence(y_hat: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """Zero missing sources' latents and append one presence channel per source.

    (B, N, M, *L) → (B, N, M + 1, *L)
    """
    b, n = y_hat.shape[:2]
    mask = _presence(y_hat, present).view(b, n, *([1] * (y_hat.dim() - 2)))
    y_hat = y_hat * mask
    flag = mask.expand(*y_hat.shape[:2], 1, *y_hat.shape[3:])
    return torch.cat([y_hat, flag], dim=2)


@register_decoder("pointwise")
class PointwiseJointDecoder(nn.Module):
    """Per-position MLP over all sources' latents (1×1 convolutions).

    For sources that are i.i.d. over samples (the jointly Gaussian case), the best a
    decoder can do at one position uses only that position's latents.

    Args:
        n_sources: N.
        latent_channels: M per source.
        out_channels: C per source.
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        joint: False gives N separate decoders (grouped convolutions), the
            separate-coding baseline with the same capacity per source.
    """

    config_args = {"layers": "layers"}

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int,
                 hidden: int = 64, layers: int = 3, joint: bool = True):
        super().__init__()
        self.n_sources, self.out_channels = n_sources, out_channels
        groups = 1 if joint else n_sources
        width = hidden * (1 if joint else n_sources)
        mods: list[nn.Module] = [nn.Conv1d(n_sources * (latent_channels + 1), width, 1, groups=groups), nn.GELU()]
        for _ in range(layers - 1):
            mods += [nn.Conv1d(width, width, 1, groups=groups), nn.GELU()]
        mods.append(nn.Conv1d(width, n_sources * out_channels, 1, groups=groups))
        self.net = nn.Sequential(*mods)

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _, length = y_hat.shape  # (B, N, M, L)
        z = _with_presence(y_hat, present).reshape(b, -1, length)
        return self.net(z).view(b, n, self.out_channels, length)


@register_decoder("conv1d")
class Conv1dJointDecoder(nn.Module):
    """Fuses all sources' latent sequences, then upsamples back to the window length.

    Args:
        n_sources: N.
        latent_channels: M per source.
        out_channels: C per source.
        hidden: channel width.
        upsample: total upsampling factor (encoder stride), a power of two.
        joint: False gives N separate decoders (grouped convolutions).
    """

    config_args = {"upsample": "stride"}

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int,
                 hidden: int = 64, upsample: int = 4, joint: bool = True):
        super().__init__()
        self.n_sources, self.out_channels = n_sources, out_channels
        groups = 1 if joint else n_sources
        width = hidden * (1 if joint else n_sources)
        mods: list[nn.Module] = [nn.Conv1d(n_sources * (latent_channels + 1), width, 3, padding=1, groups=groups),
                                 nn.GELU(), nn.Conv1d(width, width, 3, padding=1, groups=groups), nn.GELU()]
        factor = upsample
        while factor > 1:
            mods += [nn.ConvTranspose1d(width, width, 4, stride=2, padding=1, groups=groups), nn.GELU()]
            factor //= 2
        mods += [nn.Conv1d(width, width, 5, padding=2, groups=groups), nn.GELU(),
                 nn.Conv1d(width, n_sources * out_channels, 5, padding=2, groups=groups)]
        self.net = nn.Sequential(*mods)

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _, length = y_hat.shape  # (B, N, M, L)
        z = _with_presence(y_hat, present).reshape(b, -1, length)
        out = self.net(z)
        return out.view(b, n, self.out_channels, out.shape[-1])
