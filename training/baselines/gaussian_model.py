"""Exact expectations for two jointly Gaussian unit-variance sources on a fine grid.

Classical distributed quantisers (uniform, modulo-binned, Lloyd-designed) are scalar maps
x → symbol. Given both maps, the MMSE joint decoder is the table
T[s1, s2] = E[(X1, X2) | S1 = s1, S2 = s2], computed here by summing the bivariate density
over a grid fine against the quantiser step. The decoder knows the source statistics
(ρ), as classical distributed source coding assumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairTables:
    """Joint statistics of the symbols of two scalar maps.

    Attributes:
        mass: P(S1 = a, S2 = b), shape (K1, K2).
        mean1, mean2: E[X1 | a, b] and E[X2 | a, b] (joint MMSE decoder).
        sep1, sep2: E[X1 | a] and E[X2 | b] (separate decoders).
        mse_joint, mse_separate: expected per-source MSE of each decoder (mean of the two).
    """

    mass: np.ndarray
    mean1: np.ndarray
    mean2: np.ndarray
    sep1: np.ndarray
    sep2: np.ndarray
    mse_joint: float
    mse_separate: float


class GaussianPair:
    """The bivariate normal (unit variances, correlation ρ) discretised on [−lim, lim]².

    Args:
        rho: correlation.
        step: grid spacing; keep it ≪ the quantiser step.
        lim: grid half-width in standard deviations.
    """

    def __init__(self, rho: float, step: float = 0.01, lim: float = 6.0):
        self.rho = float(rho)
        self.grid = np.arange(-lim, lim + step / 2, step)
        g = self.grid
        marginal = np.exp(-0.5 * g**2)
        marginal /= marginal.sum()
        s = np.sqrt(1.0 - rho**2)
        cond = np.exp(-0.5 * ((g[None, :] - rho * g[:, None]) / s) ** 2)
        cond /= cond.sum(axis=1, keepdims=True)
        self.joint = marginal[:, None] * cond  # P(x1 = g_i, x2 = g_j), symmetric
        self.cond12 = cond  # p(x2 | x1) rows
        self.marginal = marginal

    def cells(self, x: np.ndarray) -> np.ndarray:
        """Nearest grid index of each value (clipped to the grid)."""
        g = self.grid
        return np.clip(np.rint((np.asarray(x, np.float64) - g[0]) / (g[1] - g[0])), 0, len(g) - 1).astype(np.int64)

    def tables(self, e1: np.ndarray, e2: np.ndarray) -> PairTables:
        """Statistics for maps given on the grid: e1[k], e2[k] = symbol (0..K−1) of grid point k."""
        k1, k2 = int(e1.max()) + 1, int(e2.max()) + 1
        n = len(self.grid)
        a = np.zeros((k1, n))
        a[e1, np.arange(n)] = 1.0
        b = np.zeros((k2, n))
        b[e2, np.arange(n)] = 1.0
        g, p = self.grid, self.joint
        mass = a @ p @ b.T
        safe = np.maximum(mass, 1e-300)
        mean1 = (a @ (p * g[:, None]) @ b.T) / safe
        mean2 = (a @ (p * g[None, :]) @ b.T) / safe
        q1, q2 = mass.sum(1), mass.sum(0)
        sep1 = (a @ (self.marginal * g)) / np.maximum(q1, 1e-300)
        sep2 = (b @ (self.marginal * g)) / np.maximum(q2, 1e-300)
        d1 = float((p * (g[:, None] - mean1[e1][:, e2]) ** 2).sum())
        d2 = float((p * (g[None, :] - mean2[e1][:, e2]) ** 2).sum())
        s1 = float((self.marginal * (g - sep1[e1]) ** 2).sum())
        s2 = float((self.marginal * (g - sep2[e2]) ** 2).sum())
        return PairTables(mass, mean1, mean2, sep1, sep2, (d1 + d2) / 2, (s1 + s2) / 2)


def relabel(e: np.ndarray) -> np.ndarray:
    """Map symbols to 0..K−1 in order of first appearance along the grid."""
    _, first, inverse = np.unique(e, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse]
