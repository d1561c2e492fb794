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

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.decoders import _presence, _with_presence, register_decoder
from models.layers import colour_dct_basis
from models.side_information import filter_views, refine_views
from models.view_fusion import ViewFusion


#: seed of the refiner's initialisation (drawn apart from the codec's random stream)
REFINER_SEED = 16


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

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        n = y_hat.shape[1]  # (B, N, M, h, w)
        present = _presence(y_hat, present)
        z = _with_presence(y_hat, present)  # (B, N, M + 1, h, w)
        feats = [self.stem[i](z[:, i]) for i in range(n)]
        for stage in range(4):
            if self.fusion is not None and stage < self.FUSION_STAGES:
                feats = _fuse_views(self.fusion[stage], feats, present)
            layers = self.ups
            if stage < 3:
                feats = [layers[i][2 * stage + 1](layers[i][2 * stage](f)) for i, f in enumerate(feats)]
            else:
                feats = [layers[i][6](f) for i, f in enumerate(feats)]
        return torch.stack(feats, dim=1)  # (B, N, C, 16h, 16w)



class ResidualBlock(nn.Module):
    """x + conv3x3(GELU(conv3x3(x))): extra depth at one resolution, identity at initialisation's scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def subpel_up(c_in: int, c_out: int) -> nn.Sequential:
    """×2 upsampling by sub-pixel convolution (Shi et al. 2016): conv3x3 to 4·c_out, then PixelShuffle.

    Every output pixel comes from the same kernel footprint, so it has none of the checkerboard
    pattern of a stride-2 transposed convolution whose kernel overlaps unevenly.
    """
    return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2))


@register_decoder("stereo-shuffle")
class StereoShuffleDecoder(nn.Module):
    """Joint synthesis (B, N, M, h, w) → (B, N, C, 16h, 16w) by sub-pixel convolution, fused across views.

    One synthesis transform g_s serves every view (cameras of a rectified pair see alike
    statistics, so sharing doubles its training data); a learned per-view embedding tells
    views apart. With ``joint`` the views' features are fused by row attention
    (:class:`EpipolarAttention`) at latent resolution (1/16) and at 1/8, where a match's
    disparity is a few positions: each view reads the other view's features along its row.
    ``joint=False`` drops those blocks: the separate-coding baseline with the same g_s.

    Args:
        n_sources: N views.
        latent_channels: M per view.
        out_channels: C per view (3 for RGB).
        hidden: feature width N of g_s.
        joint: False drops cross-view fusion.
        upsample: total upsampling factor; only 16 (four ×2 stages).
    """

    FUSION_STAGES = 2  # fuse at 1/16 and 1/8 resolution

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int, hidden: int = 64,
                 joint: bool = True, upsample: int = 16):
        super().__init__()
        if upsample != 16:
            raise ValueError("stereo-shuffle decodes a stride-16 latent; set model.stride = 16")
        self.n_sources, self.joint = n_sources, joint
        self.stem = nn.Conv2d(latent_channels + 1, hidden, 3, padding=1)  # + the view-present flag
        self.view_embedding = nn.Parameter(torch.zeros(n_sources, hidden, 1, 1))
        self.blocks = nn.ModuleList([ResidualBlock(hidden), ResidualBlock(hidden), ResidualBlock(hidden)])
        self.ups = nn.ModuleList([subpel_up(hidden, hidden), subpel_up(hidden, hidden), subpel_up(hidden, hidden)])
        self.head = subpel_up(hidden, out_channels)
        self.fusion = nn.ModuleList(EpipolarAttention(hidden) for _ in range(self.FUSION_STAGES)) if joint else None

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        n = y_hat.shape[1]  # (B, N, M, h, w)
        present = _presence(y_hat, present)
        z = _with_presence(y_hat, present)  # (B, N, M + 1, h, w)
        feats = [self.stem(z[:, i]) + self.view_embedding[i] for i in range(n)]  # N × (B, F, h, w)
        for stage in range(3):
            if self.fusion is not None and stage < self.FUSION_STAGES:
                feats = _fuse_views(self.fusion[stage], feats, present)
            feats = [F.gelu(self.ups[stage](self.blocks[stage](f))) for f in feats]
        # + ½: outputs are in units of the input scale, so a zero start is mid-grey, not black
        return torch.stack([self.head(f) + 0.5 for f in feats], dim=1)  # (B, N, C, 16h, 16w)


def _fuse_views(block: EpipolarAttention, feats: list[torch.Tensor], present: torch.Tensor) -> list[torch.Tensor]:
    """Each view's features after attending, with ``block``, to every other view's in turn."""
    out = []
    for i, fused in enumerate(feats):
        for j, other in enumerate(feats):
            if j != i:
                fused = block(fused, other, present[:, j])
        out.append(fused)
    return out


@register_decoder("stereo-dct")
class StereoTransformDecoder(nn.Module):
    """Joint synthesis of block-transform latents (B, N, 3·s², h, w) → (B, N, 3, s·h, s·w).

    x̂ = T⁻¹(ŷ) + g_s(ŷ): a linear inverse transform T⁻¹ (a 1×1 convolution then
    PixelShuffle(s), initialised as the exact inverse of the encoder's orthonormal
    :func:`colour_dct_basis`, learned from there) plus a nonlinear residual g_s shared by both
    views — sub-pixel convolutions (no checkerboard), residual blocks, and with ``joint`` row
    attention across views (:class:`EpipolarAttention`) at 1/s and 2/s of the image, where a
    match's disparity is a few positions. g_s's last layer starts at zero, so training starts
    from plain transform coding and learns deblocking, detail and what the other view adds.
    ``joint=False`` drops the attention: the separate-coding baseline with the same layers.

    With ``side_information`` (a joint pair only) decoding ends with the Wyner–Ziv refinement of
    :mod:`models.side_information`: each view borrows the other's reconstruction, moved by a
    disparity found on the two reconstructions, inside its own quantisation cells. It needs the
    encoders' transforms (:meth:`attach_analysis`, which the codec's ``update()`` calls, so every
    exported bundle carries them) and each coefficient's cell width: the runtime passes ``step``.
    With ``refiner_hidden`` > 0 a learned :class:`models.view_fusion.ViewFusion` corrects that
    estimate before the last projection (with side information: from both views; without, a
    post-filter of each view alone, the separate baseline's). It is trained after the codec
    (``training.view_fusion``); untrained it changes nothing (its last layer is zero).

    Args:
        n_sources: N views.
        latent_channels: 3·s² (the transform's coefficients per block).
        out_channels: 3 (RGB).
        hidden: feature width of g_s.
        joint: False drops cross-view fusion.
        side_information: refine each view of a pair with the other at decoding (inference only).
        refiner_hidden: width of the learned refinement at decoding (0: none).
        refiner_blocks, refiner_coarse_blocks: its residual blocks at 1/2 and 1/4 resolution.
    """

    FUSION_STAGES = 2
    #: constructor argument ← ModelConfig field (models/decoders.decoder_args)
    config_args = {"side_information": "side_information", "refiner_hidden": "refiner_hidden",
                   "refiner_blocks": "refiner_blocks", "refiner_coarse_blocks": "refiner_coarse_blocks"}

    def __init__(self, n_sources: int, latent_channels: int, out_channels: int, hidden: int = 64,
                 joint: bool = True, side_information: bool = False, refiner_hidden: int = 0,
                 refiner_blocks: int = 3, refiner_coarse_blocks: int = 0):
        super().__init__()
        s = round((latent_channels / out_channels) ** 0.5)
        if out_channels != 3 or 3 * s * s != latent_channels or s < 4 or s & (s - 1):
            raise ValueError(f"stereo-dct decodes 3·s² coefficients of RGB blocks (s a power of two ≥ 4), "
                             f"got {latent_channels} channels for {out_channels} outputs")
        self.stride, self.joint = s, joint
        self.inverse = nn.Conv2d(latent_channels, 3 * s * s, 1, bias=False)
        basis = colour_dct_basis(s)  # (K, 3, s, s); inverse of an orthonormal transform = its transpose
        with torch.no_grad():
            # output channel (c, i, j) of PixelShuffle(s) reads conv channel c·s² + i·s + j
            self.inverse.weight.copy_(basis.permute(1, 2, 3, 0).reshape(3 * s * s, latent_channels, 1, 1))
        self.shuffle = nn.PixelShuffle(s)
        self.stem = nn.Conv2d(latent_channels + 1, hidden, 3, padding=1)  # + the view-present flag
        self.view_embedding = nn.Parameter(torch.zeros(n_sources, hidden, 1, 1))
        stages = int(round(math.log2(s))) - 1  # ×2 stages up to 1/2 resolution; the head does the last ×2
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(stages))
        self.ups = nn.ModuleList(subpel_up(hidden, hidden) for _ in range(stages))
        self.head = subpel_up(hidden, out_channels)
        nn.init.zeros_(self.head[0].weight)
        nn.init.zeros_(self.head[0].bias)
        self.fusion = nn.ModuleList(EpipolarAttention(hidden) for _ in range(self.FUSION_STAGES)) if joint else None
        if side_information and (not joint or n_sources != 2):
            raise ValueError("side_information refines a jointly decoded pair: needs joint=True and 2 views")
        self.side_information = side_information
        self.refiner = None
        if refiner_hidden:
            # its own random stream: the codec's initialisation (and so its training) is the same with or
            # without a refiner, which is trained after it (training/view_fusion.py)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(REFINER_SEED)
                self.refiner = ViewFusion(refiner_hidden, refiner_blocks, side_information, refiner_coarse_blocks)
        if self.takes_quantiser_step:
            # the encoders' analysis transforms and their inverses, filled by attach_analysis()
            self.register_buffer("analysis", torch.zeros(n_sources, latent_channels, 3, s, s))
            self.register_buffer("analysis_inverse", torch.zeros(n_sources, latent_channels, latent_channels))

    @property
    def takes_quantiser_step(self) -> bool:
        """True when forward() wants ``step``, each coefficient's cell width (the runtime checks this)."""
        return self.side_information or self.refiner is not None

    @torch.no_grad()
    def attach_analysis(self, weights: list[torch.Tensor]) -> None:
        """Record each view's encoder transform (K, 3, s, s) and its exact inverse (3·s², K)."""
        if not self.takes_quantiser_step:
            return
        for i, w in enumerate(weights):
            self.analysis[i].copy_(w)
            self.analysis_inverse[i].copy_(torch.linalg.inv(w.double().reshape(w.shape[0], -1)).float())

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None,
                step: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, M, h, w) → (B, N, 3, s·h, s·w); ``step`` (B, N, M): cell widths, for side information
        and the refiner (decoding only: training never passes it)."""
        present = _presence(y_hat, present)
        x = self.synthesis(y_hat, present)
        if step is None or not self.takes_quantiser_step:
            return x
        y_hat = y_hat * present.view(*present.shape, 1, 1, 1)  # missing views' latents zeroed
        if self.side_information:
            return refine_views(x, y_hat, step, self.analysis, self.analysis_inverse, present, self.refiner)
        return filter_views(x, y_hat, step, self.analysis, self.analysis_inverse, present, self.refiner)

    def synthesis(self, y_hat: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The joint synthesis alone (what training optimises): (B, N, M, h, w), present (B, N) →
        (B, N, 3, s·h, s·w)."""
        n, m = y_hat.shape[1:3]  # (B, N, M, h, w)
        present = _presence(y_hat, present)
        z = _with_presence(y_hat, present)  # (B, N, M + 1, h, w)
        y_hat = z[:, :, :m]  # missing views' latents zeroed
        feats = [self.stem(z[:, i]) + self.view_embedding[i] for i in range(n)]  # N × (B, F, h, w)
        for stage, (block, up) in enumerate(zip(self.blocks, self.ups)):
            if self.fusion is not None and stage < self.FUSION_STAGES:
                feats = _fuse_views(self.fusion[stage], feats, present)
            feats = [F.gelu(up(block(f))) for f in feats]
        # + ½: the encoder codes x/scale − ½ (centred), so a zero latent is mid-grey
        return torch.stack([self.shuffle(self.inverse(y_hat[:, i])) + self.head(f) + 0.5
                            for i, f in enumerate(feats)], dim=1)  # (B, N, 3, s·h, s·w)
