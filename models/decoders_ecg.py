"""ECG joint synthesis: all lead groups' latents in, all leads out.

The fusion happens at latent resolution, where every output lead sees every node's
latents (Einthoven: III = II − I; Goldberger: aVR = −(I + II)/2 …), so a lead that is
nearly a combination of others can be coded coarsely and filled in by the decoder.
"""
from __future__ import annotations

import torch
from torch import nn

from models.decoders import _with_presence, register_decoder


class _Residual(nn.Module):
    def __init__(self, width: int, dilation: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation, groups=groups), nn.GELU(),
            nn.Conv1d(width, width, 3, padding=1, groups=groups))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


@register_decoder("ecg-joint")
class EcgJointDecoder(nn.Module):
    """(B, N, M, L) latents + (B, N) presence → (B, N, C, L · upsample) in model units.

    Args:
        n_sources: N nodes.
        latent_channels: M per node.
        out_channels: C leads per node.
        hidden: width at latent resolution (per node when ``joint`` is False).
        upsample: encoder stride, a power of two.
        blocks: residual blocks at latent resolution (where the leads are fused).
        joint: False gives N separate decoders (grouped convolutions): separate coding.
    """

    config_args = {"upsample": "stride"}  # ModelConfig fields beyond the common ones (models/decoders.py)
    #: joint width = hidden × N (the separate decoders' total width) instead of hidden
    width_per_source = False

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int, hidden: int = 96,
                 upsample: int = 16, blocks: int = 2, joint: bool = True):
        super().__init__()
        self.n_sources, self.out_channels = n_sources, out_channels
        g = 1 if joint else n_sources
        width = hidden * (n_sources if self.width_per_source or not joint else 1)
        # Width halves with each upsampling step, but never below 4 channels per output lead.
        floor = 4 * n_sources * out_channels
        mods: list[nn.Module] = [nn.Conv1d(n_sources * (latent_channels + 1), width, 3, padding=1, groups=g),
                                 nn.GELU()]
        mods += [_Residual(width, 2 ** k, g) for k in range(blocks)]
        factor = upsample
        while factor > 1:
            nxt = max(width // 2, floor)
            nxt -= nxt % g
            mods += [nn.ConvTranspose1d(width, nxt, 4, stride=2, padding=1, groups=g), nn.GELU()]
            width, factor = nxt, factor // 2
        mods += [nn.Conv1d(width, width, 7, padding=3, groups=g), nn.GELU(),
                 nn.Conv1d(width, n_sources * out_channels, 7, padding=3, groups=g)]
        self.net = nn.Sequential(*mods)
        # Linear synthesis filter bank beside the deep path (mirror of the encoder's).
        self.linear = nn.ConvTranspose1d(n_sources * (latent_channels + 1), n_sources * out_channels, 2 * upsample,
                                         stride=upsample, padding=upsample // 2, groups=g)

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _, length = y_hat.shape  # (B, N, M, L)
        z = _with_presence(y_hat, present).reshape(b, -1, length)
        out = self.net(z) + self.linear(z)
        return out.view(b, n, self.out_channels, out.shape[-1])


@register_decoder("ecg-joint-wide")
class EcgWideJointDecoder(EcgJointDecoder):
    """:class:`EcgJointDecoder` as wide as the N separate decoders together (hidden × N).

    The fair comparison with separate coding: ``ecg-joint`` fuses every node at width
    ``hidden`` while the separate baseline gets ``hidden`` per node.
    """

    width_per_source = True


def _mlt_synthesis_weight(n_sources: int, channels: int, stride: int, groups: int) -> torch.Tensor:
    """ConvTranspose1d weight (N·C·stride, N·C / groups, 2·stride) inverting per-lead MLT encoders.

    Kept here (not imported from training) so serving builds the decoder without training code.
    """
    n = torch.arange(2 * stride, dtype=torch.float64)
    k = torch.arange(stride, dtype=torch.float64)[:, None]
    window = torch.sin((n + 0.5) * torch.pi / (2 * stride))
    basis = ((2.0 / stride) ** 0.5 * window * torch.cos((n + (stride + 1) / 2) * (k + 0.5) * torch.pi / stride)).float()
    out_per_group = n_sources * channels // groups
    weight = torch.zeros(n_sources * channels * stride, out_per_group, 2 * stride)
    for lead in range(n_sources * channels):
        weight[lead * stride:(lead + 1) * stride, lead % out_per_group] = basis
    return weight


@register_decoder("ecg-lapped")
class EcgLappedDecoder(nn.Module):
    """(B, N, M, L) dequantised lapped-transform coefficients + (B, N) presence → (B, N, C, (L−1)·stride).

    A nonlinear fusion at coefficient resolution (a residual correction of every node's
    coefficients from every node's coefficients: quantisation noise is partly predictable from
    the other leads) followed by a learned linear synthesis (the MLT inverse at the start). When
    ``joint`` the synthesis maps every node's coefficients to every lead, so a lead the others
    determine (aVR = −(I + II)/2) needs no bits of its own; ``joint=False`` is N separate
    decoders of the same shape (grouped convolutions), the separate-coding baseline.

    Args:
        n_sources: N nodes.
        latent_channels: M = C·stride per node.
        out_channels: C leads per node.
        upsample: the encoders' stride.
        hidden: width of the fusion network (per node when not ``joint``); 0: no fusion network
            (a purely linear joint synthesis).
        joint: False: separate decoders.
    """

    config_args = {"upsample": "stride"}  # ModelConfig fields beyond the common ones (models/decoders.py)

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int, upsample: int = 16,
                 hidden: int = 128, joint: bool = True):
        super().__init__()
        if latent_channels != out_channels * upsample:
            raise ValueError(f"latent_channels {latent_channels} != out_channels {out_channels} × stride {upsample}")
        self.n_sources, self.out_channels, self.stride = n_sources, out_channels, upsample
        g = 1 if joint else n_sources
        width = hidden if joint else hidden * n_sources
        self.fusion = None
        if hidden > 0:
            self.fusion = nn.Sequential(
                nn.Conv1d(n_sources * (latent_channels + 1), width, 3, padding=1, groups=g), nn.GELU(),
                nn.Conv1d(width, width, 3, padding=1, groups=g), nn.GELU(),
                nn.Conv1d(width, n_sources * latent_channels, 3, padding=1, groups=g))
            nn.init.zeros_(self.fusion[-1].weight)  # start as the plain inverse transform
            nn.init.zeros_(self.fusion[-1].bias)
        self.synthesis = nn.ConvTranspose1d(n_sources * latent_channels, n_sources * out_channels, 2 * upsample,
                                            stride=upsample, padding=upsample, groups=g)
        with torch.no_grad():
            self.synthesis.weight.copy_(_mlt_synthesis_weight(n_sources, out_channels, upsample, g))
            self.synthesis.bias.zero_()

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b, n, m, length = y_hat.shape  # (B, N, M, L)
        z = _with_presence(y_hat, present)  # (B, N, M + 1, L), missing nodes zeroed
        coeffs = z[:, :, :m].reshape(b, n * m, length)
        if self.fusion is not None:
            coeffs = coeffs + self.fusion(z.reshape(b, -1, length))
        out = self.synthesis(coeffs)  # (B, N·C, (L − 1)·stride)
        return out.view(b, n, self.out_channels, out.shape[-1])
