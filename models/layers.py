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
