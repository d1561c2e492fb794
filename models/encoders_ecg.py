"""ECG analysis transform: a strided 1-D convolutional encoder per lead or lead group.

Runs at the edge through ONNX Runtime, so it stays small: a few thousand weights per
lead, one window of T samples in, (M, T / stride) latents out.
"""
from __future__ import annotations

import torch
from torch import nn

from models.encoders import register_encoder


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


def mlt_basis(stride: int) -> torch.Tensor:
    """The modulated lapped transform (MLT, sine window) basis: (stride, 2·stride), orthonormal rows.

    Analysis with these rows at hop ``stride`` and synthesis with the same rows is a
    perfect-reconstruction, critically sampled transform (time-domain aliasing cancels between
    neighbouring blocks); it is the starting point the learned transforms refine.
    """
    n = torch.arange(2 * stride, dtype=torch.float64)
    k = torch.arange(stride, dtype=torch.float64)[:, None]
    window = torch.sin((n + 0.5) * torch.pi / (2 * stride))
    basis = (2.0 / stride) ** 0.5 * window * torch.cos((n + (stride + 1) / 2) * (k + 0.5) * torch.pi / stride)
    return basis.float()


def block_diagonal_basis(channels: int, stride: int) -> torch.Tensor:
    """(C·stride, C, 2·stride): one MLT per input channel, channel c's subbands at rows c·stride…"""
    basis = mlt_basis(stride)
    weight = torch.zeros(channels * stride, channels, 2 * stride)
    for c in range(channels):
        weight[c * stride:(c + 1) * stride, c] = basis
    return weight


@register_encoder("ecg-lapped")
class EcgLappedEncoder(nn.Module):
    """(B, C, T) in mV → (B, C·stride, T / stride + 1): a learned lapped transform.

    One strided convolution (kernel 2·stride, hop ``stride``), initialised as an MLT per lead
    and then learned end to end with the rate–distortion loss, so it mixes the node's leads
    (III = II − I within the limb node) and adapts its subbands to ECG. It is critically
    sampled (one latent per input sample): fidelity is set by the quantiser gains of the
    quality points (see :class:`models.codec.DistributedCodec`), not capped by a bottleneck.
    Padding by ``stride`` on both sides covers every sample by two blocks, as the MLT needs.
    Linear, so it costs the edge ~2·stride multiply-adds per sample and lead.

    Args:
        in_channels: C leads of this node.
        latent_channels: must equal C·stride (critical sampling).
        stride: hop and subband count per lead.
        input_scale: physical scale of the input (mV); the encoder sees x / input_scale.
    """

    def __init__(self, in_channels: int, latent_channels: int, stride: int = 16, input_scale: float = 1.0,
                 **_: object):
        super().__init__()
        if latent_channels != in_channels * stride:
            raise ValueError(f"ecg-lapped is critically sampled: latent_channels must be "
                             f"{in_channels} × {stride} = {in_channels * stride}, got {latent_channels}")
        self.input_scale = float(input_scale)
        self.transform = nn.Conv1d(in_channels, latent_channels, 2 * stride, stride=stride, padding=stride,
                                   bias=False)
        with torch.no_grad():
            self.transform.weight.copy_(block_diagonal_basis(in_channels, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x / self.input_scale)
