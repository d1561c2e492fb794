"""Learned factorised prior (Ballé et al. 2018, the "entropy bottleneck") and its freeze step."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ndsc.entropy import ChannelTable, quantise_pmf

TAIL_MASS = 1e-6  # probability left to the escape symbol on each side


class FactorizedPrior(nn.Module):
    """A flexible univariate density per latent channel, for y of shape (B, M, *L).

    ``forward`` returns the likelihood of each value under the prior convolved with a
    unit-width uniform (the density of y + U(−½, ½), which equals the pmf of round(y)
    at integers). :meth:`freeze` turns it into static integer tables.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.tables: list[ChannelTable] | None = None

    def _logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """Logit of the CDF at v, shape (M, 1, K) → (M, 1, K)."""
        logits = v
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Likelihoods of y (B, M, *L), same shape, clamped to ≥ 1e-9."""
        shape = y.shape
        v = y.transpose(0, 1).reshape(self.channels, 1, -1)  # (M, 1, B·L)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the flatter tail for precision
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lik.reshape(self.channels, shape[0], *shape[2:]).transpose(0, 1)
        return lik.clamp_min(1e-9)

    @torch.no_grad()
    def freeze(self, max_range: int = 2048) -> list[ChannelTable]:
        """Static integer tables, one per channel, covering all but ``TAIL_MASS`` per side."""
        grid = torch.arange(-max_range, max_range + 1, dtype=torch.float64)
        tables = []
        for c in range(self.channels):
            one = _single_channel(self, c)
            cdf = torch.sigmoid(one(grid + 0.5)).numpy()  # P(round(y) <= k)
            low = int(np.searchsorted(cdf, TAIL_MASS))
            high = int(np.searchsorted(cdf, 1.0 - TAIL_MASS))
            low, high = min(low, len(grid) - 1), min(max(high, low), len(grid) - 1)
            cdf_below = cdf[low - 1] if low > 0 else 0.0
            pmf = np.diff(np.concatenate([[cdf_below], cdf[low:high + 1]]))
            escape = cdf_below + (1.0 - cdf[high])
            tables.append(ChannelTable(offset=int(grid[low].item()), freqs=quantise_pmf(pmf, escape)))
        self.tables = tables
        return tables


def _single_channel(prior: FactorizedPrior, c: int):
    """CDF logits of channel c as a float64 function of a 1-D grid."""

    def fn(v: torch.Tensor) -> torch.Tensor:
        logits = v.view(1, -1)
        for i, (matrix, bias) in enumerate(zip(prior.matrices, prior.biases)):
            logits = F.softplus(matrix[c].double()) @ logits + bias[c].double()
            if i < len(prior.factors):
                logits = logits + torch.tanh(prior.factors[i][c].double()) * torch.tanh(logits)
        return logits.view(-1)

    return fn
