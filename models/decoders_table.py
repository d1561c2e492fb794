"""A joint decoder that is a lookup table over two scalar sources' symbols (binning bundles).

The learned Slepian–Wolf codec of the study (``neural-sw``) and its scalar-quantiser twin
(``sq-syndrome``) code scalar symbols, so their joint decoder, evaluated once per symbol
pair, *is* a table: x̂ = table[q1 − o1, q2 − o2]. With one source missing it reads the
table of E[x | the other symbol] instead (what a decoder trained with source dropout learns).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.decoders import register_decoder


@register_decoder("table2")
class TableJointDecoder(nn.Module):
    """x̂ (B, 2, 1, L) from two scalar sources' symbols y_hat (B, 2, 1, L) by table lookup.

    Args:
        offsets: per source, the symbol value of table index 0.
        sizes: per source, the number of table indices (symbols beyond are clamped).
    """

    #: fitted from a trained codec's symbols (scripts/export_binning_bundle.py), never built from a ModelConfig
    from_model_config = False

    def __init__(self, offsets: Sequence[int], sizes: Sequence[int]):
        super().__init__()
        self.offsets = [int(o) for o in offsets]
        self.sizes = [int(k) for k in sizes]
        k1, k2 = self.sizes
        self.register_buffer("joint", torch.zeros(k1, k2, 2))  # E[(x1, x2) | q1, q2]
        self.register_buffer("solo0", torch.zeros(k1, 2))  # E[(x1, x2) | q1] (source 1 missing)
        self.register_buffer("solo1", torch.zeros(k2, 2))  # E[(x1, x2) | q2] (source 0 missing)

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        b = y_hat.shape[0]
        q = torch.round(y_hat[:, :, 0]).long()  # B, 2, L
        i = (q[:, 0] - self.offsets[0]).clamp(0, self.sizes[0] - 1)
        j = (q[:, 1] - self.offsets[1]).clamp(0, self.sizes[1] - 1)
        p = torch.ones(b, 2, device=y_hat.device) if present is None else present
        p0, p1 = (p[:, 0] > 0)[:, None, None], (p[:, 1] > 0)[:, None, None]  # B, 1, 1
        out = torch.where(p0 & p1, self.joint[i, j],
                          torch.where(p0, self.solo0[i], torch.where(p1, self.solo1[j], torch.zeros_like(self.joint[i, j]))))
        return out.permute(0, 2, 1).unsqueeze(2)  # B, 2, 1, L
