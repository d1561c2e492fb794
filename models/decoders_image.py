"""Joint synthesis for stereo (multi-view) images: per-view decoders fused by epipolar attention.

Each view's latent (M, h, w) is upsampled by its own synthesis branch (transposed
convolutions with GELU: inverse GDN, x·sqrt(β + γx²), grows quadratically and diverged
in short high-learning-rate CPU runs, so the decoder uses a bounded-slope nonlinearity). When ``joint`` is true, at three scales (1/16, 1/8 and
1/4 of the image) every view's features attend to the other views' features **along
the same image row**: in a rectified pair a point's match lies on the same row at a
shifted column (the disparity), so row attention is a learned, soft disparity search
that costs O(H·W²) rather than O(H²·W²). ``joint=False`` drops the fusion blocks and
gives the separate-coding baseline with the same per-view branches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.decoders import register_decoder


def _up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


class EpipolarAttention(nn.Module):
    """Fuse another view's features into this view's, attending along image rows.

    Args:
        channels: feature channels of both views.
        key_dim: query/key width.
    """

    def __init__(self, channels: int, key_dim: int = 32):
        super().__init__()
        self.key_dim = key_dim
        self.q = nn.Conv2d(channels, key_dim, 1)
        self.k = nn.Conv2d(channels, key_dim, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.merge = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.GELU(),
                                   nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, own: torch.Tensor, other: torch.Tensor, other_present: torch.Tensor) -> torch.Tensor:
        b, c, h, w = own.shape
        rows = lambda t: t.permute(0, 2, 3, 1).reshape(b * h, 1, w, t.shape[1])  # (B·H, 1, W, D)
        attended = F.scaled_dot_product_attention(rows(self.q(own)), rows(self.k(other)), rows(self.v(other)))
        attended = attended.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
        # A missing view contributes nothing: its (zeroed) latent carries no information.
        attended = attended * other_present.view(b, 1, 1, 1)
        return own + self.merge(torch.cat([own, attended], dim=1))


@register_decoder("stereo-attention")
class StereoAttentionDecoder(nn.Module):
    """Joint synthesis of N views from latents (B, N, M, h, w) → (B, N, C, 16h, 16w).

    Args:
        n_sources: N views.
        latent_channels: M per view.
        out_channels: C per view (3 for RGB).
        hidden: feature width of every branch.
        joint: False drops all cross-view fusion (separate decoding baseline).
        upsample: total upsampling factor; only 16 (four ×2 stages) is supported.
    """

    FUSION_STAGES = 3  # fuse at 1/16, 1/8 and 1/4 resolution

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int, hidden: int = 64,
                 joint: bool = True, upsample: int = 16):
        super().__init__()
        if upsample != 16:
            raise ValueError("stereo-attention decodes a stride-16 latent; set model.stride = 16")
        self.n_sources, self.out_channels, self.joint = n_sources, out_channels, joint
        self.stem = nn.ModuleList(nn.Conv2d(latent_channels + 1, hidden, 3, padding=1) for _ in range(n_sources))
        self.ups = nn.ModuleList(
            nn.ModuleList([_up(hidden, hidden), nn.GELU(), _up(hidden, hidden), nn.GELU(),
                           _up(hidden, hidden), nn.GELU(), _up(hidden, out_channels)])
            for _ in range(n_sources)
        )
        self.fusion = nn.ModuleList(EpipolarAttention(hidden) for _ in range(self.FUSION_STAGES)) if joint else None

    def _fuse(self, stage: int, feats: list[torch.Tensor], present: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, own in enumerate(feats):
            fused = own
            for j, other in enumerate(feats):
                if j != i:
                    fused = self.fusion[stage](fused, other, present[:, j])
            out.append(fused)
        return out

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b, n = y_hat.shape[:2]  # (B, N, M, h, w)
        if present is None:
            present = torch.ones(b, n, dtype=y_hat.dtype, device=y_hat.device)
        present = present.to(y_hat.dtype)
        mask = present.view(b, n, 1, 1, 1)
        flag = mask.expand(b, n, 1, *y_hat.shape[3:])
        z = torch.cat([y_hat * mask, flag], dim=2)  # (B, N, M + 1, h, w)
        feats = [self.stem[i](z[:, i]) for i in range(n)]
        for stage in range(4):
            if self.fusion is not None and stage < self.FUSION_STAGES:
                feats = self._fuse(stage, feats, present)
            layers = self.ups
            if stage < 3:
                feats = [layers[i][2 * stage + 1](layers[i][2 * stage](f)) for i, f in enumerate(feats)]
            else:
                feats = [layers[i][6](f) for i, f in enumerate(feats)]
        return torch.stack(feats, dim=1)  # (B, N, C, 16h, 16w)

