"""Binning for the main codec: learn p(index | side symbol) from training symbols, freeze it into the bundle.

``ndsc train`` with ``binning.syndrome = [[j, i], …]`` (``models.config.BinningConfig``) trains the
codec as usual (each encoder with its own prior; the edge never sees the other sources) and
exports the direct bundle; then :func:`make_syndrome_bundle`:

1. codes the training windows with the exported ONNX encoders, so the table is fitted on the
   very symbols an edge sends;
2. per syndrome source j with side source i counts (side symbol, index) pairs over every latent
   position and window, and smooths each row towards the index marginal (a row for a side
   symbol seen rarely or never is then about the marginal, not zero): the conditional table
   p(index | side symbol) the decoder's LLRs use (``fusion_decoder.belief``);
3. plans the bit planes from that table: raw where H(plane | lower planes, side) exceeds
   ``raw_above``, else syndrome with n·H initial bits (feedback supplies the rest);
4. rewrites the manifest as format 3 (``coding: syndrome``, the binning record with the frozen
   parity-check matrix, ``decode_order``) through ``training.binning.syndrome_spec``, the same
   freezing the study's export uses.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_encoder.encoder import EdgeEncoder, quantise
from models.config import BinningConfig, TrainConfig
from ndsc.binning import CHECK_BITS, RAW, SYNDROME
from ndsc.bundle import load_bundle
from training.baselines.syndrome import plane_entropy
from training.binning import syndrome_spec
from training.data import JointDataset
from training.export import rewrite_manifest


def check_binning(cfg: TrainConfig, n_sources: int | None = None) -> None:
    """Refuse a binning config that cannot become a bundle, before any training.

    Raises:
        ValueError: a pair that is not [source, side], an index out of range, a side source
            that is itself syndrome-coded, a source listed twice, a variable-rate codec
            (a syndrome source has one fixed operating point), or a plane check of undefined size.
    """
    pairs = cfg.binning.syndrome
    coded = [p[0] for p in pairs if len(p) == 2]
    if any(len(p) != 2 for p in pairs) or len(set(coded)) != len(coded):
        raise ValueError(f"binning.syndrome must list [source, side source] pairs, each source once: {pairs}")
    for j, i in pairs:
        if j == i or i in coded or min(i, j) < 0 or (n_sources is not None and max(i, j) >= n_sources):
            known = f" (sources 0 … {n_sources - 1})" if n_sources is not None else ""
            raise ValueError(f"binning.syndrome {[j, i]}: the side source must be another source, coded directly{known}")
    if pairs and cfg.model.quality_lambdas:
        raise ValueError("binning: a syndrome source has one fixed operating point; "
                         "leave model.quality_lambdas empty")
    if cfg.binning.check_bits not in CHECK_BITS:
        raise ValueError(f"binning.check_bits must be one of {CHECK_BITS} (CRC bits per syndrome plane), "
                         f"got {cfg.binning.check_bits}")


def training_symbols(encoder: EdgeEncoder, windows: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(n, M·L) int64: the symbols the edge's ONNX encoder gives each window of one source."""
    out = [quantise(encoder.analysis(windows[s:s + chunk]), encoder.gain).reshape(len(windows[s:s + chunk]), -1)
           for s in range(0, len(windows), chunk)]
    return np.concatenate(out)


def fit_conditional(side: np.ndarray, coded: np.ndarray, smoothing: float = 1.0) -> dict[str, Any]:
    """The table p(index | side symbol) from paired symbols (same shape), smoothed towards the marginal.

    Returns ``cond`` (K_side, 2^B) with rows summing to 1, ``mass`` (the joint with the empirical
    side distribution, for planning), ``offset``/``side_offset`` (the symbols of index 0 / row 0),
    and the training entropies H(q) and H(q | side) under the table, in bits per symbol.
    """
    side, coded = np.asarray(side, np.int64).ravel(), np.asarray(coded, np.int64).ravel()
    side_offset = int(side.min())
    rows = int(side.max()) - side_offset + 1
    span = int(coded.max()) - int(coded.min()) + 1
    size = 1 << max(1, math.ceil(math.log2(span)))  # every index the planes can hold
    # the training range centred in the 2^B indices: the spare ones hold symbols just outside it, which
    # the edge would otherwise clip (the side rows clip at the decoder: only the LLRs suffer there)
    offset = int(coded.min()) - (size - span) // 2
    s, j = side - side_offset, coded - offset
    counts = np.bincount(s * size + j, minlength=rows * size).reshape(rows, size).astype(np.float64)
    marginal = (counts.sum(0) + 1.0) / (counts.sum() + size)  # Laplace: no index has probability 0
    cond = (counts + smoothing * marginal) / (counts.sum(1, keepdims=True) + smoothing)
    side_p = counts.sum(1) / counts.sum()
    return {"cond": cond, "mass": side_p[:, None] * cond, "offset": offset, "side_offset": side_offset,
            "h_bits": float(-np.log2(marginal[j]).mean()), "h_given_side_bits": float(-np.log2(cond[s, j]).mean())}


def plan_planes(mass: np.ndarray, raw_above: float) -> list[dict[str, Any]]:
    """Per bit plane (lowest first) raw or syndrome, with H(plane | lower planes, side) in bits per symbol."""
    plan = []
    for k in range(int(math.log2(mass.shape[1]))):
        h, _ = plane_entropy(mass, k)
        plan.append({"plane": k, "mode": RAW if h > raw_above else SYNDROME, "entropy": h})
    return plan


def make_syndrome_bundle(bundle_dir: str | Path, dataset: JointDataset, binning: BinningConfig) -> dict[str, Any]:
    """Turn the exported direct bundle at ``bundle_dir`` into format 3 with ``binning.syndrome`` coded
    by syndromes; returns per syndrome source what was fitted (entropies, plan, table size)."""
    bundle = load_bundle(bundle_dir)
    sources = list(bundle.sources)
    fitted: dict[str, Any] = {}
    for j, i in binning.syndrome:
        info, side_info = sources[j], sources[i]
        if info.latent_shape != side_info.latent_shape or info.frame_stride:
            raise ValueError(f"binning: source {j} and its side source {i} need one latent shape "
                             f"({info.latent_shape} vs {side_info.latent_shape}) and no whole frames")
        coded = training_symbols(EdgeEncoder(bundle, j), dataset.train[:, j])
        side = training_symbols(EdgeEncoder(bundle, i), dataset.train[:, i])
        fit = fit_conditional(side, coded, binning.smoothing)
        plan = plan_planes(fit["mass"], binning.raw_above)
        n = coded.shape[1]
        spec = syndrome_spec(plan, fit["cond"], side=i, offset=fit["offset"], side_offset=fit["side_offset"], n=n,
                             initial_factor=binning.initial_factor, step_bits=binning.step_bits,
                             max_requests=binning.max_requests, bp_iterations=binning.bp_iterations,
                             degree=binning.check_degree, seed=binning.code_seed + j,
                             min_bits=binning.min_initial_bits, check_bits=binning.check_bits)
        sources[j] = replace(info, coding=SYNDROME, binning=spec)
        fitted[str(j)] = {"side_source": i, "training_windows": len(coded), "table_shape": list(fit["cond"].shape),
                          "h_bits_per_symbol": fit["h_bits"], "h_given_side_bits_per_symbol": fit["h_given_side_bits"],
                          "planes": plan}
    rewrite_manifest(bundle.path, sources=sources)
    return fitted
