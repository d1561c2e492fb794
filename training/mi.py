"""Mutual-information estimators between two sources' latents.

Both take paired samples a (K, Da), b (K, Db) — row k of a and b come from the same
window/position — and return a lower-bound estimate of I(A;B) in nats.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _mlp(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


class InfoNCE(nn.Module):
    """InfoNCE (van den Oord et al. 2018) with a separable critic and in-batch negatives.

    I ≥ log K + E[log softmax_k f(a_k, b_k)], so the estimate saturates at log K.
    """

    def __init__(self, dim_a: int, dim_b: int, hidden: int = 64, embed: int = 32):
        super().__init__()
        self.g = _mlp(dim_a, embed, hidden)
        self.h = _mlp(dim_b, embed, hidden)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        scores = self.g(a) @ self.h(b).T  # (K, K): positives on the diagonal
        k = scores.shape[0]
        return math.log(k) + torch.diagonal(F.log_softmax(scores, dim=1)).mean()


class MINE(nn.Module):
    """MINE (Belghazi et al. 2018): the Donsker–Varadhan bound with a joint critic.

    I ≥ E_joint[T] − log E_marginal[e^T]; marginal pairs come from shuffling b.
    """

    def __init__(self, dim_a: int, dim_b: int, hidden: int = 64):
        super().__init__()
        self.t = _mlp(dim_a + dim_b, 1, hidden)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        k = a.shape[0]
        joint = self.t(torch.cat([a, b], dim=1)).squeeze(1)
        shuffled = b[torch.randperm(k, device=b.device)]
        marginal = self.t(torch.cat([a, shuffled], dim=1)).squeeze(1)
        return joint.mean() - (torch.logsumexp(marginal, dim=0) - math.log(k))


def build_estimator(name: str, dim_a: int, dim_b: int) -> nn.Module:
    if name == "infonce":
        return InfoNCE(dim_a, dim_b)
    if name == "mine":
        return MINE(dim_a, dim_b)
    raise ValueError(f"unknown MI estimator {name!r} (infonce | mine)")


class PairwiseMI(nn.Module):
    """Σ_{i<j} Î(Z_i;Z_j) over all source pairs, one critic per pair.

    Args:
        n_sources: N.
        dim: features per sample (M for "positions", M·L for "windows").
        estimator: "infonce" or "mine".
        max_pairs: positions mode subsamples at most this many (a, b) rows per step.
    """

    def __init__(self, n_sources: int, dim: int, estimator: str = "infonce", pairs: str = "positions",
                 max_pairs: int = 512):
        super().__init__()
        self.pairs = pairs
        self.max_pairs = max_pairs
        self.index = [(i, j) for i in range(n_sources) for j in range(i + 1, n_sources)]
        self.critics = nn.ModuleList(build_estimator(estimator, dim, dim) for _ in self.index)

    def samples(self, y: torch.Tensor) -> torch.Tensor:
        """(B, N, M, *L) latents → (K, N, D) paired samples."""
        b, n, m = y.shape[:3]
        if self.pairs == "windows":
            return y.reshape(b, n, -1)
        rows = y.reshape(b, n, m, -1).permute(0, 3, 1, 2).reshape(-1, n, m)  # (B·L, N, M)
        if rows.shape[0] > self.max_pairs:
            rows = rows[torch.randperm(rows.shape[0], device=y.device)[: self.max_pairs]]
        return rows

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        s = self.samples(y)
        total = y.new_zeros(())
        for (i, j), critic in zip(self.index, self.critics):
            total = total + critic(s[:, i], s[:, j])
        return total
