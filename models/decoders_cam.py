"""Cross-attention alignment decoder for stereo, in the spirit of NDIC-CAM (Mital et al. 2022).

NDIC-CAM decodes one view with the other view's features aligned by cross-attention over
*all* patches of the other view. Here each view's decoder branch attends, at three
resolutions, over every position of the other view's features (global attention), where
the stereo module's ``stereo-attention`` decoder attends only along the same image row
(epipolar prior). Baseline ``ndic-cam`` (training/baselines/neural.py) is the project's codec
with this decoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.decoders_image import EpipolarAttention, StereoAttentionDecoder
from models.decoders import register_decoder


class GlobalCrossAttention(EpipolarAttention):
    """own (B, C, H, W) attends over all H·W positions of other; residual merge.

    Same projections as :class:`EpipolarAttention`; only the attention span differs
    (every position instead of the same row), which is NDIC-CAM's alignment.
    """

    def forward(self, own: torch.Tensor, other: torch.Tensor, other_present: torch.Tensor) -> torch.Tensor:
        b, c, h, w = own.shape
        flat = lambda t: t.flatten(2).transpose(1, 2)  # (B, H·W, D)
        attended = F.scaled_dot_product_attention(flat(self.q(own)), flat(self.k(other)), flat(self.v(other)))
        attended = attended.transpose(1, 2).reshape(b, c, h, w) * other_present.view(b, 1, 1, 1)
        return own + self.merge(torch.cat([own, attended], dim=1))


@register_decoder("cross-attention-cam")
class CrossAttentionDecoder(StereoAttentionDecoder):
    """``stereo-attention``'s synthesis branches with global (patch-matching) cross-attention fusion."""

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int, hidden: int = 64,
                 joint: bool = True, upsample: int = 16):
        super().__init__(n_sources, latent_channels, out_channels, hidden, joint, upsample)
        if joint:
            self.fusion = nn.ModuleList(GlobalCrossAttention(hidden) for _ in range(self.FUSION_STAGES))

