"""The distributed codec: N independent encoders + priors, one joint decoder.

Same lifecycle as CompressAI models: ``forward`` (training; returns likelihoods),
``update`` (freeze priors into static integer tables), ``compress``/``decompress``
(real bytes through the shared :mod:`ndsc.entropy` coder).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fusion_decoder.joint_decoders import build_decoder
from ndsc.entropy import ChannelTable, LatentCoder
from training.config import TrainConfig
from training.encoders import build_encoder
from training.priors import FactorizedPrior


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
        self.priors = nn.ModuleList(FactorizedPrior(m.latent_channels) for _ in range(n_sources))
        self.decoder_args = self._decoder_args(cfg, n_sources, input_shape)
        self.g_s = build_decoder(m.decoder, self.decoder_args)
        self.output_scale = m.input_scale

    @staticmethod
    def _decoder_args(cfg: TrainConfig, n_sources: int, input_shape: tuple[int, ...]) -> dict[str, Any]:
        m = cfg.model
        args: dict[str, Any] = {"n_sources": n_sources, "latent_channels": m.latent_channels,
                                "out_channels": input_shape[0], "hidden": m.hidden, "joint": m.joint_decoder}
        if m.decoder == "pointwise":
            args["layers"] = m.layers
        elif m.decoder in ("conv1d", "ecg-joint", "ecg-joint-wide"):
            args["upsample"] = m.stride
        return args

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C, *S) → y (B, N, M, *L); encoder i sees only x[:, i]."""
        return torch.stack([g(x[:, i]) for i, g in enumerate(self.g_a)], dim=1)

    def synthesis(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        return self.g_s(y_hat, present) * self.output_scale

    def forward(self, x: torch.Tensor, present: torch.Tensor | None = None) -> dict[str, Any]:
        """Training pass.

        Returns:
            ``x_hat`` (B, N, C, *S), ``y`` (B, N, M, *L), ``y_hat`` (what the decoder saw),
            ``likelihoods`` (B, N, M, *L) of the noisy latents (training) or of round(y) (eval).
        """
        y = self.analysis(x)
        if self.training:
            y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_hat = round_ste(y) if self.cfg.decoder_quantisation == "ste" else y_tilde
        else:
            y_tilde = y_hat = torch.round(y)
        likelihoods = torch.stack([p(y_tilde[:, i]) for i, p in enumerate(self.priors)], dim=1)
        return {"x_hat": self.synthesis(y_hat, present), "y": y, "y_hat": y_hat, "likelihoods": likelihoods}

    # --- the frozen, real-bits path -------------------------------------------------
    def update(self) -> list[list[ChannelTable]]:
        """Freeze every prior into static integer tables (required before compress/export)."""
        return [p.freeze() for p in self.priors]

    def tables(self) -> list[list[ChannelTable]]:
        missing = [i for i, p in enumerate(self.priors) if p.tables is None]
        if missing:
            raise RuntimeError(f"priors of sources {missing} are not frozen: call update() first")
        return [p.tables for p in self.priors]

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> list[list[bytes]]:
        """x (B, N, C, *S) → payloads[b][i] (real bytes per window and source)."""
        coders = [LatentCoder(t) for t in self.tables()]
        y = torch.round(self.analysis(x)).to(torch.int64).cpu().numpy()
        b, n, m = y.shape[:3]
        return [[coders[i].encode(y[w, i].reshape(m, -1)) for i in range(n)] for w in range(b)]

    @torch.no_grad()
    def decompress(self, payloads: list[list[bytes]], latent_shape: tuple[int, ...]) -> torch.Tensor:
        """payloads[b][i] → x_hat (B, N, C, *S)."""
        coders = [LatentCoder(t) for t in self.tables()]
        length = int(np.prod(latent_shape[1:]))
        y = np.stack([
            np.stack([coders[i].decode(p, length).reshape(latent_shape) for i, p in enumerate(row)])
            for row in payloads
        ]).astype(np.float32)
        return self.synthesis(torch.from_numpy(y))

    def latent_shape(self) -> tuple[int, ...]:
        """Latent shape of one source (M, *L) for this model's input shape."""
        with torch.no_grad():
            y = self.g_a[0](torch.zeros(1, *self.input_shape))
        return tuple(y.shape[1:])

    def encoder_parameters(self):
        """Encoders and priors: the 'encoder side' of alternating optimisation."""
        return list(self.g_a.parameters()) + list(self.priors.parameters())

    def decoder_parameters(self):
        return list(self.g_s.parameters())
