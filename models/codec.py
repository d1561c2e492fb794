"""The distributed codec: N independent encoders + priors, one joint decoder.

Same lifecycle as CompressAI models: ``forward`` (training; returns likelihoods),
``update`` (freeze priors into static integer tables), ``compress``/``decompress``
(real bytes through the shared :mod:`ndsc.entropy` coder).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from models.decoders import build_decoder, decoder_args
from ndsc.entropy import ChannelTable, LatentCoder, dequantise
from models.config import TrainConfig
from models.encoders import build_encoder
from models.priors import FactorizedPrior


def round_ste(y: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return y + (torch.round(y) - y).detach()


class DistributedCodec(nn.Module):
    """Encoders g_a[i] (one per source), priors p_i, joint decoder g_s.

    Args:
        n_sources: N.
        input_shape: one source's window shape (C, *S).
        cfg: the run's :class:`TrainConfig` (model and quantisation settings).
    """

    def __init__(self, n_sources: int, input_shape: tuple[int, ...], cfg: TrainConfig):
        super().__init__()
        m = cfg.model
        self.n_sources = n_sources
        self.input_shape = tuple(input_shape)
        self.cfg = cfg
        self.g_a = nn.ModuleList(
            build_encoder(m.encoder, in_channels=input_shape[0], latent_channels=m.latent_channels,
                          hidden=m.hidden, layers=m.layers, stride=m.stride, input_scale=m.input_scale,
                          latent_gain=m.latent_gain)
            for _ in range(n_sources)
        )
        # Variable rate: per operating point q, per-channel quantiser gains (symbols = round(y · gain))
        # and priors; prior q·N + i belongs to source i at point q. Fixed rate: one prior per source.
        self.quality_lambdas = [float(v) for v in m.quality_lambdas]
        self.n_points = len(self.quality_lambdas)
        if self.n_points:
            # Start each point at a quantiser step that a λ of its size roughly calls for.
            init = torch.tensor([math.log(m.input_scale * m.gain_init / math.sqrt(lam)) for lam in self.quality_lambdas])
            self.log_gain = nn.Parameter(init.view(-1, 1, 1).repeat(1, n_sources, m.latent_channels))
        self.priors = nn.ModuleList(FactorizedPrior(m.latent_channels) for _ in range(max(self.n_points, 1) * n_sources))
        self.decoder_args = decoder_args(m.decoder, m, n_sources, out_channels=input_shape[0])
        self.g_s = build_decoder(m.decoder, self.decoder_args)
        self.output_scale = m.input_scale

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C, *S) → y (B, N, M, *L); encoder i sees only x[:, i]."""
        return torch.stack([g(x[:, i]) for i, g in enumerate(self.g_a)], dim=1)

    def synthesis(self, y_hat: torch.Tensor, present: torch.Tensor | None = None,
                  step: torch.Tensor | None = None) -> torch.Tensor:
        """Joint decoding; ``step`` (B, N, M), each latent's cell width, reaches decoders that use it."""
        if step is not None and getattr(self.g_s, "takes_quantiser_step", False):
            return self.g_s(y_hat, present, step=step) * self.output_scale
        return self.g_s(y_hat, present) * self.output_scale

    @property
    def quality_names(self) -> list[str]:
        """Operating points, lowest rate first (``"1"`` … ``"Q"``); empty for a fixed-rate codec."""
        return [str(q + 1) for q in range(self.n_points)]

    def quality_index(self, name: str | None) -> int:
        """Index of point ``name`` (None: the default point)."""
        if name is None:
            name = self.cfg.model.default_quality or self.quality_names[(self.n_points - 1) // 2]
        if name not in self.quality_names:
            raise KeyError(f"unknown quality point {name!r}; known: {self.quality_names}")
        return self.quality_names.index(name)

    def gains(self) -> torch.Tensor:
        """(Q, N, M) quantiser gains as float32 (exactly what the bundle records and the edge multiplies by)."""
        return torch.exp(self.log_gain).float()  # differentiable: training learns the gains

    def point_gain(self, quality: torch.Tensor | int, ndim: int) -> torch.Tensor:
        """Gains of ``quality`` (a (B,) index tensor, or one index for every window) shaped to
        multiply latents of ``ndim`` dims (B, N, M, *L)."""
        g = self.gains()[quality]  # (B, N, M) or (N, M)
        if g.dim() == 2:
            g = g.unsqueeze(0)
        return g.view(*g.shape, *([1] * (ndim - 3)))

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None,
                quality: torch.Tensor | None = None) -> dict[str, Any]:
        """Training pass.

        Args:
            quality: (B,) point index per window (variable-rate codecs; default: the default point).

        Returns:
            ``x_hat`` (B, N, C, *S), ``y`` (B, N, M, *L), ``y_hat`` (what the decoder saw, dequantised),
            ``likelihoods`` (B, N, M, *L) of the noisy latents (training) or of round(y) (eval),
            ``quality`` (B,) for variable-rate codecs.
        """
        y = self.analysis(x)
        gain = None
        if self.n_points:
            if quality is None:
                quality = torch.full((x.shape[0],), self.quality_index(None), dtype=torch.long, device=x.device)
            gain = self.point_gain(quality, y.dim())
            y = y * gain
        if self.training:
            y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_hat = round_ste(y) if self.cfg.decoder_quantisation == "ste" else y_tilde
        else:
            y_tilde = y_hat = torch.round(y)
        likelihoods = self._likelihoods(y_tilde, quality)
        step = None
        if gain is not None:
            y_hat = y_hat / gain
            # decoding as the runtime does (side information needs each cell's width); never in training
            step = None if self.training else (1.0 / gain).flatten(2)
        return {"x_hat": self.synthesis(y_hat, present, step), "y": y, "y_hat": y_hat, "likelihoods": likelihoods,
                "quality": quality}

    def _likelihoods(self, y_tilde: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        n = self.n_sources
        if not self.n_points:
            return torch.stack([p(y_tilde[:, i]) for i, p in enumerate(self.priors)], dim=1)
        out = torch.empty_like(y_tilde)
        for q in quality.unique().tolist():
            rows = quality == q
            out[rows] = torch.stack([self.priors[q * n + i](y_tilde[rows, i]) for i in range(n)], dim=1)
        return out

    # --- the frozen, real-bits path -------------------------------------------------
    def update(self) -> list[list[ChannelTable]]:
        """Freeze every prior into static integer tables (required before compress/export), and give a
        decoder that re-runs the encoders' transforms (side information) their final weights."""
        if getattr(self.g_s, "takes_quantiser_step", False):
            self.g_s.attach_analysis([g.transform.weight.detach() for g in self.g_a])
        return [p.freeze() for p in self.priors]

    def tables(self, quality: str | None = None) -> list[list[ChannelTable]]:
        """Frozen tables per source (of point ``quality``, default point when None, for variable rate)."""
        missing = [i for i, p in enumerate(self.priors) if p.tables is None]
        if missing:
            raise RuntimeError(f"priors {missing} are not frozen: call update() first")
        q = self.quality_index(quality) if self.n_points else 0
        return [p.tables for p in self.priors[q * self.n_sources:(q + 1) * self.n_sources]]

    @torch.no_grad()
    def compress(self, x: torch.Tensor, quality: str | None = None) -> list[list[bytes]]:
        """x (B, N, C, *S) → payloads[b][i] (real bytes per window and source) at point ``quality``."""
        coders = [LatentCoder(t) for t in self.tables(quality)]
        y = self.analysis(x)
        if self.n_points:
            y = y * self.point_gain(self.quality_index(quality), y.dim())
        y = torch.round(y).to(torch.int64).cpu().numpy()
        b, n, m = y.shape[:3]
        return [[coders[i].encode(y[w, i].reshape(m, -1)) for i in range(n)] for w in range(b)]

    @torch.no_grad()
    def decompress(self, payloads: list[list[bytes]], latent_shape: tuple[int, ...],
                   quality: str | None = None) -> torch.Tensor:
        """payloads[b][i] → x_hat (B, N, C, *S)."""
        coders = [LatentCoder(t) for t in self.tables(quality)]
        gains = self.gains()[self.quality_index(quality)].detach().numpy() if self.n_points else None  # (N, M)
        # the runtime's two steps (fusion_decoder/runtime.py): decode_latent, then dequantise
        y = np.stack([
            np.stack([dequantise(coders[i].decode_latent(p, latent_shape), None if gains is None else gains[i])
                      for i, p in enumerate(row)])
            for row in payloads
        ])
        step = None if gains is None else torch.from_numpy(1.0 / gains).unsqueeze(0).expand(len(y), -1, -1)
        return self.synthesis(torch.from_numpy(y), step=step)

    def latent_shape(self) -> tuple[int, ...]:
        """Latent shape of one source (M, *L) for this model's input shape."""
        with torch.no_grad():
            y = self.g_a[0](torch.zeros(1, *self.input_shape))
        return tuple(y.shape[1:])

    def encoder_parameters(self):
        """Encoders, quantiser gains and priors: the 'encoder side' of alternating optimisation."""
        gains = [self.log_gain] if self.n_points else []
        return list(self.g_a.parameters()) + list(self.priors.parameters()) + gains

    def decoder_parameters(self):
        return list(self.g_s.parameters())
