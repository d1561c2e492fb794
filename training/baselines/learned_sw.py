"""A learned distributed codec with built-in Slepian–Wolf binning (baseline ``neural-sw``).

Why: a one-to-one neural encoder per source with a joint decoder cannot beat joint decoding
without binning at high rate (issue 7); the rate of source 2 must fall from H(Q2) to about
H(Q2 | Q1), which needs a many-to-one encoder map. Here the binning is built in and the
networks are trained for it:

* encoders (one small MLP per scalar source, ONNX-exportable) map x_i to a latent y_i that
  is rounded to an integer symbol q_i;
* the rate term is the code length the coder will approach: −log2 p(q1) under a learned
  factorised prior (source 1 is ANS-coded with it) plus −log2 p(q2 | q1) under a learned
  conditional model (a discretised Gaussian whose mean and scale are an MLP of q1), the
  Slepian–Wolf rate of source 2 given source 1;
* the joint decoder is an MLP (q1, q2) → (x̂1, x̂2); it sees rounded latents during training
  (straight-through) and uniform noise stands in for rounding in the rate terms;
* bits: source 1's symbols through ``ndsc.entropy.LatentCoder``; source 2's symbols are split
  into bit planes sent raw, as LDPC syndromes (their coset index: many-to-one over the block)
  or not at all, decoded by belief propagation with LLRs from the learned p(q2 | q1) — the
  machinery of :class:`training.baselines.syndrome.SyndromeSQ`, with the learned encoders,
  prior, conditional model and decoder in place of the uniform quantiser and the Gaussian
  tables. The decoder network is evaluated once per symbol pair into a lookup table (the
  symbols are scalar, so that table is the network, exactly).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ndsc.entropy import LatentCoder
from training.baselines.base import register_baseline
from training.baselines.neural import edge_onnx_latency, many_to_one
from training.baselines.scalar import symbol_table
from training.baselines.syndrome import SyndromeSQ
from training.data import JointDataset
from models.priors import FactorizedPrior

LN2 = math.log(2.0)
#: D ≈ λ / (2 ln 2) at high rate for the loss Σ D_i + λ Σ R_i: the initial step follows from λ
_HIGH_RATE_D_PER_LAMBDA = 1.0 / (2.0 * LN2)


def _mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    """Two hidden layers; the last layer starts at zero so every net starts as its linear skip."""
    net = nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                        nn.Linear(hidden, outputs))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class ScalarEncoder(nn.Module):
    """x → y = gain · (x + mlp(x)) + offset, elementwise on any shape (the edge runs it as ONNX).

    ``offset`` (in steps) staggers the two sources' cell edges: x1 ≈ x2, so aligned grids
    would make the cell of one source nearly repeat the other's and the joint decoder could
    not narrow it down. Gradients through rounding relaxations (noise, straight-through)
    never see where cell edges lie, so the stagger is set, not learned from scratch.
    """

    def __init__(self, step: float, hidden: int, offset: float = 0.0, nonlinear: bool = False):
        super().__init__()
        self.log_gain = nn.Parameter(torch.tensor(-math.log(step)))
        self.offset = nn.Parameter(torch.tensor(float(offset)))
        self.mlp = _mlp(1, 1, hidden) if nonlinear else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.reshape(-1, 1)
        if self.mlp is not None:
            v = v + self.mlp(v)
        return (torch.exp(self.log_gain) * v + self.offset).reshape(x.shape)


class LearnedSWNet(nn.Module):
    """Two scalar encoders, p(q1), p(q2 | q1) and the joint decoder (q1, q2) → (x̂1, x̂2)."""

    def __init__(self, step: float, hidden: int = 32, stagger: float = 0.5, nonlinear_encoders: bool = False):
        super().__init__()
        self.enc = nn.ModuleList([ScalarEncoder(step, hidden, 0.0, nonlinear_encoders),
                                  ScalarEncoder(step, hidden, stagger, nonlinear_encoders)])
        self.prior1 = FactorizedPrior(1)
        self.cond = _mlp(1, 2, hidden)  # x̂1-scale input → (mean of x2, log scale of x2 | q1)
        self.cond_skip = nn.Parameter(torch.tensor([0.9, math.log(0.5)]))
        self.dec = _mlp(2, 2, hidden)

    def gains(self) -> torch.Tensor:
        return torch.exp(torch.stack([e.log_gain for e in self.enc]))

    def cond_params(self, q1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of y2 given q1 (both in y2 units)."""
        g = self.gains()
        u = ((q1 - self.enc[0].offset) / g[0]).unsqueeze(-1)
        out = self.cond(u)
        mean = (self.cond_skip[0] * u[..., 0] + out[..., 0]) * g[1] + self.enc[1].offset
        scale = torch.exp(self.cond_skip[1] + out[..., 1]) * g[1] + 1e-3
        return mean, scale

    def cond_likelihood(self, y2: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
        """p(round(y2) = ⌊y2⌉ | q1) for the discretised Gaussian; noisy y2 gives its continuous relaxation."""
        mean, scale = self.cond_params(q1)
        upper = torch.special.ndtr((y2 + 0.5 - mean) / scale)
        lower = torch.special.ndtr((y2 - 0.5 - mean) / scale)
        return (upper - lower).clamp_min(1e-9)

    def decode(self, q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        """Symbols (P,) each → reconstructions (P, 2): linear skip q/gain plus a learned correction."""
        g = self.gains()
        base = torch.stack([(q1 - self.enc[0].offset) / g[0], (q2 - self.enc[1].offset) / g[1]], -1)
        return base + self.dec(base)

    def loss(self, x: torch.Tensor, lmbda: float) -> tuple[torch.Tensor, dict[str, float]]:
        """x (P, 2) pairs → Σ D_i + λ (R1 + R2|1) in bits per sample, and its terms."""
        y = torch.stack([self.enc[i](x[:, i]) for i in range(2)], -1)
        noisy = y + torch.rand_like(y) - 0.5
        hard = y + (torch.round(y) - y).detach()  # straight-through: the decoder sees integers
        r1 = -torch.log2(self.prior1(noisy[:, :1].reshape(1, 1, -1))).mean()
        r2 = -torch.log2(self.cond_likelihood(noisy[:, 1], hard[:, 0])).mean()
        x_hat = self.decode(hard[:, 0], hard[:, 1])
        d = ((x_hat - x) ** 2).mean(0).sum()
        return d + lmbda * (r1 + r2), {"d": d.item() / 2, "r1": r1.item(), "r2": r2.item()}


@register_baseline("neural-sw")
class LearnedSlepianWolf(SyndromeSQ):
    """Params: ``lmbda`` (rate weight, loss Σ D_i + λ Σ R_i), ``steps``, ``batch`` (sample pairs
    per step), ``lr``, ``hidden``, ``seed``; the syndrome design params of ``sq-syndrome``
    (``fit_windows``, ``margin``, ``min_extra_bits``, ``iterations``, ``raw_above``, ``profiles``)."""

    version = 1
    uses_train_config = False

    def fit(self, data: JointDataset) -> dict[str, Any]:
        if data.n_sources != 2 or data.modality != "gaussian" or data.window_shape[0] != 1:
            raise ValueError("neural-sw codes two scalar (one-channel) sources")
        start = time.perf_counter()
        p = self.params
        lmbda, steps = float(p["lmbda"]), int(p.get("steps", 1500))
        torch.manual_seed(int(p.get("seed", 0)))
        step0 = math.sqrt(12.0 * _HIGH_RATE_D_PER_LAMBDA * lmbda)
        self.net = LearnedSWNet(step0, int(p.get("hidden", 32)), float(p.get("stagger", 0.5)),
                                bool(p.get("nonlinear_encoders", False)))
        pairs = torch.from_numpy(np.ascontiguousarray(data.train[:, :, 0].transpose(0, 2, 1).reshape(-1, 2),
                                                      dtype=np.float32))
        gen = torch.Generator().manual_seed(int(p.get("seed", 0)))
        lr, batch = float(p.get("lr", 0.01)), int(p.get("batch", 8192))
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.75 * steps)], 0.1)
        terms: dict[str, float] = {}
        for _ in range(steps):
            x = pairs[torch.randint(0, len(pairs), (batch,), generator=gen)]
            loss, terms = self.net.loss(x, lmbda)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        train_seconds = time.perf_counter() - start
        self.net.eval()
        self._tables()
        self.n = data.window_shape[-1]
        self._design_planes(data)
        return {"train_seconds": train_seconds, "planes": self.plan, "final_terms": terms,
                "steps": self.effective_steps(), "design_seconds": time.perf_counter() - start - train_seconds}

    def effective_steps(self) -> list[float]:
        """Quantiser steps in input units (1 / gain) of the two encoders."""
        return [float(1.0 / g) for g in self.net.gains().detach()]

    @torch.no_grad()
    def _tables(self) -> None:
        """Freeze the learned models into the tables the syndrome coder uses (symbols shifted to 0..K−1)."""
        ends = torch.tensor([-7.0, 7.0])  # beyond ±7σ of a unit Gaussian is clipped to the end symbol
        self.half1, self.half = (int(np.ceil(float(self.net.enc[i](ends).abs().max()))) + 1 for i in range(2))
        q1 = torch.arange(-self.half1, self.half1, dtype=torch.float32)
        q2 = torch.arange(-self.half, self.half, dtype=torch.float32)
        p1 = self.net.prior1(q1.reshape(1, 1, -1)).reshape(-1).double().numpy()
        p1 /= p1.sum()
        cond = self.net.cond_likelihood(q2[None, :].expand(len(q1), -1), q1[:, None].expand(-1, len(q2)))
        cond = cond.double().numpy()
        self.cond = cond / cond.sum(1, keepdims=True)
        self.mass = p1[:, None] * self.cond
        x_hat = self.net.decode(q1[:, None].expand(-1, len(q2)).reshape(-1), q2.repeat(len(q1))).double()
        self.mean1 = x_hat[:, 0].reshape(len(q1), len(q2)).numpy()
        self.mean2 = x_hat[:, 1].reshape(len(q1), len(q2)).numpy()
        self.coder1 = LatentCoder([symbol_table(p1)])
        # The plane planner sizes a skipped plane's error in input units.
        self.step1, self.step = self.effective_steps()

    @torch.no_grad()
    def _quantise(self, i: int, x: np.ndarray, half: int) -> np.ndarray:
        y = self.net.enc[i](torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return np.clip(torch.round(y).numpy().astype(np.int64), -half, half - 1) + half

    def _symbols1(self, x: np.ndarray) -> np.ndarray:
        return self._quantise(0, x, self.half1)

    def _symbols2(self, x: np.ndarray) -> np.ndarray:
        return self._quantise(1, x, self.half)

    def analyse(self, windows: np.ndarray) -> dict[str, Any]:
        """Encoder maps (scalar quantiser and the per-sample bin index sent), rate split, entropies."""
        grid = np.linspace(-4, 4, 801)
        q1, q2 = self._symbols1(grid), self._symbols2(grid)
        raw = [p["plane"] for p in self.plan if p["mode"] == "raw"]
        # What source 2 sends per sample besides the block syndromes: its raw planes.
        sent = sum(((q2 >> k) & 1) << b for b, k in enumerate(raw)) if raw else np.zeros_like(q2)
        i1 = np.concatenate([self._symbols1(w[0, 0]) for w in windows])
        j2 = np.concatenate([self._symbols2(w[1, 0]) for w in windows])
        h_cond = float(-(np.log2(np.maximum(self.cond[i1, j2], 1e-300))).mean())
        return {**super().analyse(windows), "effective_steps": self.effective_steps(),
                "edge_onnx_ms_per_window": edge_onnx_latency(self.net.enc[1], windows[:8, 1]),
                "learned_h_q2_given_q1_bits": h_cond,
                "encoder_map": {"x": grid.tolist(), "symbols": [q1.tolist(), sent.tolist()],
                                "many_to_one": [many_to_one(q1), many_to_one(sent)],
                                "note": "source 2's per-sample map is its raw bit planes; the syndrome planes are "
                                        "a many-to-one map of the whole block (2^n values → 2^m syndromes)"},
                "note": "learned encoders/prior/conditional model/decoder; source 2 Slepian–Wolf coded by LDPC "
                        "syndromes with LLRs from the learned p(q2 | q1)"}
