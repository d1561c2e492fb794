"""Discrete-latent distributed codecs: distributed VQ-VAE and learned binning.

``dvqvae`` (in the spirit of Whang, Nagle & Sarkar 2021, distributed VQ-VAE): each source's
encoder output is snapped to the nearest of K codewords of its own codebook (straight-through
gradient, codebook and commitment losses); one joint decoder reconstructs all sources from
the codewords. The rate is set by K; the symbols are entropy-coded with a categorical table
of their training-set frequencies.

``learned-binning`` (in the spirit of Ozyilkan, Ballé & Erkip 2023, learned Wyner–Ziv /
distributed compressors that discover binning): each encoder outputs logits over K symbols,
the hard argmax symbol (straight-through softmax) picks a learned embedding, and a learned
categorical prior per source gives the rate term λ·E[−log2 p(s)] of the loss. Nothing stops
the encoder from sending distant inputs to the same symbol: the map may be many-to-one.

Both code symbols through ``ndsc.entropy.LatentCoder`` with a static table per source.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.decoders import build_decoder, decoder_args
from ndsc.entropy import LatentCoder
from training.baselines.base import Baseline, register_baseline
from training.baselines.neural import many_to_one
from training.baselines.scalar import symbol_table
from models.config import TrainConfig
from training.data import JointDataset
from models.device import describe, resolve_device
from models.encoders import build_encoder

LN2 = math.log(2.0)


class DiscreteCodec(nn.Module):
    """N encoders to K symbols per latent position, per-source embeddings, one joint decoder."""

    def __init__(self, n_sources: int, input_shape: tuple[int, ...], cfg: TrainConfig, symbols: int, dim: int,
                 mode: str):
        super().__init__()
        m = cfg.model
        self.mode, self.k, self.dim = mode, symbols, dim
        out = dim if mode == "vq" else symbols
        self.g_a = nn.ModuleList(
            build_encoder(m.encoder, in_channels=input_shape[0], latent_channels=out, hidden=m.hidden,
                          layers=m.layers, stride=m.stride, input_scale=m.input_scale) for _ in range(n_sources))
        self.codebooks = nn.Parameter(torch.randn(n_sources, symbols, dim) * (0.1 if mode == "vq" else 1.0))
        self.prior_logits = nn.Parameter(torch.zeros(n_sources, symbols))
        args = decoder_args(m.decoder, m, n_sources, out_channels=input_shape[0])
        args["latent_channels"] = dim
        self.g_s = build_decoder(m.decoder, args)
        self.output_scale = m.input_scale

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, N, C, *S) → symbols (B, N, L), embeddings (B, N, dim, L), auxiliary loss."""
        syms, embs, aux = [], [], x.new_zeros(())
        for i, g in enumerate(self.g_a):
            h = g(x[:, i])  # (B, D or K, *L)
            b = h.shape[0]
            h = h.reshape(b, h.shape[1], -1)
            book = self.codebooks[i]  # (K, dim)
            if self.mode == "vq":
                e = h.transpose(1, 2)  # (B, L, dim)
                dist = (e.pow(2).sum(-1, keepdim=True) - 2 * e @ book.T + book.pow(2).sum(-1))
                s = dist.argmin(-1)  # (B, L)
                zq = book[s]
                aux = aux + F.mse_loss(zq, e.detach()) + 0.25 * F.mse_loss(e, zq.detach())
                z = e + (zq - e).detach()
            else:
                logits = h.transpose(1, 2)  # (B, L, K)
                q = F.softmax(logits, dim=-1)
                s = logits.argmax(-1)
                hard = F.one_hot(s, self.k).to(q.dtype)
                onehot = hard + q - q.detach()  # straight-through
                z = onehot @ book
                logp = F.log_softmax(self.prior_logits[i], dim=-1)
                aux = aux + (-(q * logp).sum(-1).mean()) / LN2  # expected bits per position under the prior
            syms.append(s)
            embs.append(z.transpose(1, 2))
        return torch.stack(syms, 1), torch.stack(embs, 1), aux

    def decode_symbols(self, s: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """symbols (B, N, L) → x_hat (B, N, C, *S)."""
        z = torch.stack([self.codebooks[i][s[:, i]].transpose(1, 2) for i in range(s.shape[1])], 1)
        return self.g_s(z, None).reshape(s.shape[0], s.shape[1], *shape) * self.output_scale


class _DiscreteBaseline(Baseline):
    uses_train_config = True
    mode = "vq"

    def __init__(self, **params: Any):
        super().__init__(**params)
        base = dict(params.get("train") or {})
        cfg = TrainConfig.from_dict(base) if base else TrainConfig()
        keep = {"lmbda", "steps", "batch_size", "lr", "seed", "device"}
        self.cfg = cfg.replace(**{k: v for k, v in params.items() if k in keep}, progress=False)
        self.k = int(params.get("symbols", 16))
        self.dim = int(params.get("dim", 4))

    def fit(self, data: JointDataset) -> dict[str, Any]:
        torch.manual_seed(self.cfg.seed)
        device = resolve_device(self.cfg.device)
        self.shape = data.window_shape
        self.net = DiscreteCodec(data.n_sources, data.window_shape, self.cfg, self.k, self.dim, self.mode).to(device)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)
        x_all = torch.from_numpy(data.train)
        gen = torch.Generator().manual_seed(self.cfg.seed)
        start = time.perf_counter()
        decay = int(self.cfg.lr_decay_at * self.cfg.steps)
        for step in range(self.cfg.steps):
            if step == decay:
                for group in opt.param_groups:
                    group["lr"] = self.cfg.lr * 0.1
            x = x_all[torch.randint(0, len(x_all), (self.cfg.batch_size,), generator=gen)].to(device)
            s, z, aux = self.net.encode(x)
            x_hat = self.net.g_s(z, None).reshape(x.shape) * self.net.output_scale
            dist = ((x_hat - x) ** 2).mean(dim=(0, *range(2, x.dim()))).sum()
            if self.mode == "vq":
                loss = dist + aux
            else:  # rate in bits per sample, summed over sources, like the codec's loss
                per_sample = s.shape[-1] / float(np.prod(x.shape[2:]))
                loss = dist + self.cfg.lmbda * aux * per_sample
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        self.net.to("cpu").eval()  # coding and measurement run on the CPU
        with torch.no_grad():
            s_train = torch.cat([self.net.encode(x_all[i:i + 64])[0] for i in range(0, len(x_all), 64)]).numpy()
        self.coders = []
        for i in range(data.n_sources):
            if self.mode == "vq":  # categorical prior = training frequencies (Laplace-smoothed)
                pmf = np.bincount(s_train[:, i].ravel(), minlength=self.k) + 0.5
            else:  # the learned categorical prior the rate term used
                pmf = torch.softmax(self.net.prior_logits[i].detach(), -1).double().numpy()
            self.coders.append(LatentCoder([symbol_table(pmf / pmf.sum())]))
        self.length = s_train.shape[-1]
        used = [int(len(np.unique(s_train[:, i]))) for i in range(data.n_sources)]
        return {"train_seconds": seconds, "device": describe(device), "symbols_used": used}

    @torch.no_grad()
    def symbols(self, windows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        return self.net.encode(x)[0].numpy()

    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        s = self.symbols(windows)
        return [[self.coders[i].encode(s[w, i][None]) for i in range(s.shape[1])] for w in range(len(s))]

    @torch.no_grad()
    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        s = np.array([[self.coders[i].decode(p, self.length)[0] for i, p in enumerate(row)] for row in payloads])
        return self.net.decode_symbols(torch.from_numpy(s), self.shape).numpy()

    def analyse(self, windows: np.ndarray) -> dict[str, Any]:
        if self.shape[0] != 1 or self.length != self.shape[-1] or len(self.shape) != 2:
            return {}
        grid = np.linspace(-4, 4, 801, dtype=np.float32)
        n_src = len(self.coders)
        s = self.symbols(np.tile(grid[None, None, None, :], (1, n_src, 1, 1)))[0]
        return {"encoder_map": {"x": grid.tolist(), "symbols": s.tolist(), "many_to_one": [many_to_one(r) for r in s]}}


@register_baseline("dvqvae")
class DistributedVQVAE(_DiscreteBaseline):
    """Params: ``symbols`` (K codewords per source), ``dim`` (codeword size), ``steps`` …"""

    mode = "vq"


@register_baseline("learned-binning")
class LearnedBinning(_DiscreteBaseline):
    """Params: ``symbols`` (K), ``dim`` (embedding size), ``lmbda`` (rate weight), ``steps`` …"""

    mode = "categorical"
