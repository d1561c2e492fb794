"""Image analysis transform g_a (Ballé et al. 2018 style): four stride-2 convolutions with GDN.

(B, 3, H, W) in 0..255 → latents (B, M, H/16, W/16). Fully convolutional, so the same
ONNX graph encodes a training crop or a whole frame (the bundle export marks its
spatial axes dynamic; H and W must be multiples of 16 — pad, then crop back).
"""
from __future__ import annotations

import torch
from torch import nn

from models.encoders import register_encoder
from models.layers import GDN, colour_dct_basis

#: total downsampling of the image encoders
IMAGE_STRIDE = 16


@register_encoder("conv2d-gdn")
class ImageEncoder(nn.Module):
    """Analysis transform for one camera.

    Args:
        in_channels: 3 for RGB.
        latent_channels: M.
        hidden: N, the width of the hidden layers.
        stride: must be 16 (four ×2 stages).
        input_scale: pixels are divided by this first (255 for 8-bit images).
    """

    #: export_bundle gives fully convolutional encoders dynamic H/W axes in ONNX
    fully_convolutional = True

    def __init__(self, in_channels: int, latent_channels: int, hidden: int = 64, stride: int = IMAGE_STRIDE,
                 input_scale: float = 255.0, **_: object):
        super().__init__()
        if stride != IMAGE_STRIDE:
            raise ValueError(f"conv2d-gdn has stride {IMAGE_STRIDE}; set model.stride = {IMAGE_STRIDE}")
        self.input_scale = input_scale
        conv = lambda a, b: nn.Conv2d(a, b, 5, stride=2, padding=2)
        self.net = nn.Sequential(conv(in_channels, hidden), GDN(hidden), conv(hidden, hidden), GDN(hidden),
                                 conv(hidden, hidden), GDN(hidden), conv(hidden, latent_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / self.input_scale)


@register_encoder("block-dct")
class BlockTransformEncoder(nn.Module):
    """Learned linear analysis for one camera: a critically sampled block transform.

    (B, 3, H, W) in 0..255 → (B, 3·s², H/s, W/s): one stride-s convolution, initialised as
    the orthonormal colour DCT (:func:`colour_dct_basis`) of x/scale − ½ and learned from
    there. Transform coding is near its optimum from the first step, which a GDN stack
    (``conv2d-gdn``) needs many thousands of steps to reach — the budget here is an hour on
    two CPU cores; the nonlinear work sits in the joint decoder (``stereo-dct``), which also
    sees the other view. (The ECG codec's learned lapped transform made the same choice.)

    Args:
        in_channels: 3 for RGB.
        latent_channels: 3·stride² (critically sampled).
        stride: block side s (a power of two ≥ 4).
        input_scale: pixels are divided by this first (255 for 8-bit images).
    """

    fully_convolutional = True

    def __init__(self, in_channels: int, latent_channels: int, stride: int = 8, input_scale: float = 255.0,
                 **_: object):
        super().__init__()
        if in_channels != 3 or latent_channels != 3 * stride * stride:
            raise ValueError(f"block-dct codes RGB blocks critically: latent_channels must be 3·stride² = "
                             f"{3 * stride * stride}, got {latent_channels} for {in_channels} input channels")
        self.input_scale = input_scale
        self.transform = nn.Conv2d(3, latent_channels, stride, stride=stride, bias=False)
        with torch.no_grad():
            self.transform.weight.copy_(colour_dct_basis(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x / self.input_scale - 0.5)
