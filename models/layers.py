"""Building blocks of the transforms, apart from any one model (GDN: the image encoders' nonlinearity)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """Generalised divisive normalisation (Ballé et al. 2016) and its inverse.

    y_c = x_c / sqrt(β_c + Σ_k γ_ck x_k²)  (inverse: multiply). β and γ are kept
    non-negative by squaring; off-diagonal γ starts at a tiny non-zero value so its
    gradient is non-zero.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        eye = torch.eye(channels)
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * eye + 2.0 ** -36 * (1 - eye)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = self.beta ** 2 + 1e-6
        gamma = (self.gamma ** 2).view(c, c, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


def colour_dct_basis(stride: int) -> torch.Tensor:
    """Orthonormal basis of an RGB block of side ``stride``: (3·s², 3, s, s), lowest frequencies first.

    An orthonormal colour transform (luma (R+G+B)/√3 and two chroma differences) times the
    orthonormal 2-D DCT-II of the block; rows are ordered by spatial frequency (u + v), luma
    before chroma at equal frequency. As a stride-s convolution it is a critically sampled
    transform (JPEG's, with an orthonormal colour space), so uniform quantisation of its
    coefficients is near MSE-optimal from the first step.
    """
    s = stride
    k = torch.arange(s, dtype=torch.float64)
    dct = torch.cos(torch.pi * (k[None, :] + 0.5) * k[:, None] / s) * (2.0 / s) ** 0.5  # (u, x)
    dct[0] /= 2.0 ** 0.5
    colour = torch.tensor([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=torch.float64)
    colour = colour / colour.norm(dim=1, keepdim=True)
    order = sorted(((u + v, c, u, v) for c in range(3) for u in range(s) for v in range(s)))
    basis = torch.stack([colour[c].view(3, 1, 1) * dct[u].view(1, s, 1) * dct[v].view(1, 1, s)
                         for _, c, u, v in order])
    return basis.float()  # (3·s², 3, s, s)
