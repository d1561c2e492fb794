"""Servable binning bundles from the study's Slepian–Wolf methods, and their offline measurement.

:func:`export_binning_bundle` fits the study's ``neural-sw`` (learned encoders, prior,
conditional model and decoder) or ``sq-syndrome`` (uniform quantisers, Gaussian tables) on
two Gaussian sources and writes a bundle of format ``ndsc-bundle/3``: source 0 direct (ANS
with its learned prior), source 1 syndrome-coded (its bit planes' modes from the study's plan,
an LDPC-accumulate code, the conditional table p(q2 | q1) for the decoder's LLRs, no margin:
feedback supplies what the initial block lacks), the joint decoder as a lookup table
(``models.decoders_table``).

:func:`measure_offline` codes windows through the very code the live path runs (the ONNX
encoders, ``edge_encoder.binning.SyndromeResponder``, ``fusion_decoder.belief.SyndromeDecoder``
and the joint decoder runtime), answering requests in-process instead of over gRPC: its bits
are what the live stream must send, to the bit.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from edge_encoder.binning import SyndromeResponder
from edge_encoder.encoder import EdgeEncoder
from fusion_decoder.belief import BP, SyndromeDecoder
from fusion_decoder.runtime import JointDecoderRuntime
from ndsc.binning import DEFAULT_CHECK_BITS, RAW, SKIP, SYNDROME, PlanePlan, SyndromeSpec, random_checks
from ndsc.bounds import all_bounds
from ndsc.bundle import Bundle, SourceInfo, load_bundle, write_manifest
from ndsc.entropy import ChannelTable, quantise_pmf
from ndsc.wire import pb
from models.decoders_table import TableJointDecoder
from training.baselines.base import build_baseline
from training.data import build_dataset
from training.export import export_encoder_onnx
from models.config import DataConfig


class _FloorQuantiser(torch.nn.Module):
    """y = ⌊x / step⌋ (the sq-syndrome quantiser: the edge's rounding leaves it unchanged)."""

    def __init__(self, step: float):
        super().__init__()
        self.step = float(step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x / self.step)


def _table(pmf: np.ndarray, offset: int) -> ChannelTable:
    return ChannelTable(offset=offset, freqs=quantise_pmf(np.maximum(pmf, 1e-12), escape_mass=1e-9))


def export_binning_bundle(out: str | Path, method: str = "neural-sw", *, rho: float = 0.9, samples: int = 1024,
                          n_windows: int = 60, seed: int = 0, initial_factor: float = 1.0, step_bits: int = 32,
                          max_requests: int = 16, bp_iterations: int = 100, train_seed: int | None = None,
                          check_bits: int = DEFAULT_CHECK_BITS, **params: Any) -> Path:
    """Fit ``method`` (``neural-sw`` or ``sq-syndrome``) with ``params`` and write a servable bundle to ``out``.

    ``seed`` draws the data and the code, ``train_seed`` (default: ``seed``) the network's
    initialisation and batches; ``initial_factor`` × n·H(plane | lower planes, q1) bits start each syndrome plane
    (no margin); ``step_bits`` per request, ``max_requests`` before the direct fallback; the
    planes' modes are the study's plan (``raw`` / ``syndrome`` / ``skip``); ``check_bits`` per
    syndrome plane check the decoded word (0: none, as bundles exported before the check).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = _gaussian_data(rho, samples, n_windows, seed)
    train_seed = seed if train_seed is None else train_seed
    base = build_baseline(method, **{"fit_windows": 6, "profiles": ["reg3"], **params, "seed": train_seed})
    fit = base.fit(data)
    b = base  # the study's fitted tables: cond, mass, mean1, mean2, half1, half, plan
    k1, k2 = 2 * b.half1, 2 * b.half
    if method == "neural-sw":
        encoders = [b.net.enc[0], b.net.enc[1]]
    else:
        encoders = [_FloorQuantiser(b.step1), _FloorQuantiser(b.step)]
    for i, enc in enumerate(encoders):
        export_encoder_onnx(enc, (1, samples), out / f"encoder_{i}.onnx")
    p1 = b.mass.sum(1)
    p2 = b.mass.sum(0)
    spec = syndrome_spec(b.plan, b.cond, side=0, offset=-b.half, side_offset=-b.half1, n=samples,
                         initial_factor=initial_factor, step_bits=step_bits, max_requests=max_requests,
                         bp_iterations=bp_iterations, seed=seed, check_bits=check_bits)
    sources = [
        SourceInfo(name=f"s{i}", channel_names=(f"s{i}.0",), input_shape=(1, samples), latent_shape=(1, samples),
                   encoder_file=f"encoder_{i}.onnx", tables=(_table(pm, -half),))
        for i, (pm, half) in enumerate(((p1, b.half1), (p2, b.half)))
    ]
    sources[1] = replace(sources[1], coding=SYNDROME, binning=spec)
    dec = TableJointDecoder([-b.half1, -b.half], [k1, k2])
    mass = np.maximum(b.mass, 0.0)
    joint = np.stack([b.mean1, b.mean2], -1)
    solo0 = (mass[:, :, None] * joint).sum(1) / np.maximum(mass.sum(1), 1e-300)[:, None]
    solo1 = (mass[:, :, None] * joint).sum(0) / np.maximum(mass.sum(0), 1e-300)[:, None]
    with torch.no_grad():
        dec.joint.copy_(torch.from_numpy(joint))
        dec.solo0.copy_(torch.from_numpy(solo0))
        dec.solo1.copy_(torch.from_numpy(solo1))
    torch.save(dec.state_dict(), out / "decoder.pt")
    test = data.test
    write_manifest(
        out, modality="gaussian", sources=sources, sample_rate=None,
        decoder={"arch": "table2", "args": {"offsets": [-b.half1, -b.half], "sizes": [k1, k2]},
                 "weights": "decoder.pt", "output_scale": 1.0},
        training_config={"method": method, "rho": rho, "samples": samples, "n_windows": n_windows, "seed": seed,
                         "train_seed": train_seed, "params": params, "initial_factor": initial_factor,
                         "check_bits": check_bits},
        evaluation={"study_plan": fit.get("planes")},
        extra={"edge_source": data.edge_source, "test_windows": int(len(test))},
    )
    return out


def syndrome_spec(plan: Sequence[dict[str, Any]], cond: np.ndarray, *, side: int, offset: int, side_offset: int,
                  n: int, initial_factor: float = 1.0, step_bits: int = 32, max_requests: int = 16,
                  bp_iterations: int = 100, degree: int = 3, seed: int = 0, min_bits: int = 1,
                  check_bits: int = DEFAULT_CHECK_BITS) -> SyndromeSpec:
    """Freeze a syndrome source's binning record (what must be bit-exact on both sides).

    Args:
        plan: per bit plane, lowest first, ``{"plane": k, "mode": "raw" | "syndrome" | "skip",
            "entropy": H(plane | lower planes, side) in bits per symbol}``.
        cond: (K_side, K) p(index | side index): row r is side symbol ``side_offset + r``,
            column j coded symbol ``offset + j``; padded with zeros to 2^B columns.
        side: the side source; ``n``: bits per plane (symbols per window).
        initial_factor: a syndrome plane's first block is this × n·H bits (no margin: feedback
            supplies what it lacks).
        degree, seed: the random base matrix (checks per bit); the record stores its rows.
        min_bits: a syndrome plane's first block has at least this many bits. BP "succeeds" when
            its word satisfies the checks received; with very few checks a wrong word does too
            (one check passes any even number of errors). The plane check catches such a word
            (the decoder then asks for more bits); the floor saves the round trips it would cost.
        check_bits: bits of each syndrome plane's check in the payload (``DEFAULT_CHECK_BITS``;
            0: no check, a wrong word that satisfies the checks received goes unnoticed).
    """
    bits = max(1, int(math.ceil(math.log2(cond.shape[1]))))
    planes = []
    for p in plan:
        # raw where a syndrome would be near the plane's own length (BP at rate ~1 fails and the
        # window would fall back whole)
        if p["mode"] == RAW:
            planes.append(PlanePlan(p["plane"], RAW))
        elif p["mode"] == SKIP:
            planes.append(PlanePlan(p["plane"], SKIP))
        else:
            planes.append(PlanePlan(p["plane"], SYNDROME,
                                    min(n, max(1, min_bits, int(math.ceil(n * p["entropy"] * initial_factor))))))
    probs = np.zeros((cond.shape[0], 1 << bits))
    probs[:, : cond.shape[1]] = cond
    return SyndromeSpec(side_sources=(side,), offset=int(offset), index_bits=bits, planes=tuple(planes),
                        checks=random_checks(n, degree, seed), step_bits=step_bits, max_requests=max_requests,
                        bp_iterations=bp_iterations,
                        conditional={"kind": "table", "side_offset": int(side_offset), "probs": probs.tolist()},
                        check_bits=check_bits)


def _gaussian_data(rho: float, samples: int, n_windows: int, seed: int):
    return build_dataset(DataConfig(kind="gaussian", n_windows=n_windows,
                                    params={"n": 2, "rho": rho, "samples": samples, "seed": seed}))


def export_best_of(out: str | Path, restarts: int, *, rho: float = 0.9, samples: int = 1024, n_windows: int = 60,
                   seed: int = 0, **kwargs: Any) -> tuple[Path, list[dict[str, Any]]]:
    """:func:`export_binning_bundle` with ``restarts`` training seeds; keep the one that lands furthest
    below the no-binning bound on the *validation* windows (real coded bits, feedback answered
    in-process), never the test windows the benchmark reports.

    Why: ``neural-sw`` settles into different operating points from different seeds. With the
    benchmark's recipe (λ = 0.16, 3000 steps of 4096 pairs, n = 4096) seeds 0–7 gave
    2.86–3.01 bits/pair at D ≈ 0.1 on the test windows, five of eight below the bound and three
    0.06–0.09 above it (those send a least significant plane of conditional entropy ≈ 0.81 raw,
    at 1 bit per bit). Returns the bundle and one row per seed (bits, D, bound, margin).
    """
    import shutil
    import tempfile

    out = Path(out)
    val = _gaussian_data(rho, samples, n_windows, seed).val
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ndsc-restarts-") as tmp:
        for k in range(restarts):
            path = export_binning_bundle(Path(tmp) / str(k), rho=rho, samples=samples, n_windows=n_windows,
                                         seed=seed, train_seed=k, **kwargs)
            m = measure_offline(path, val)
            d = float(np.mean(m["mse_per_source"]))
            bound = all_bounds(rho, d)["no_binning"]
            rows.append({"train_seed": k, "val_bits_per_pair": m["sum_rate_bits_per_pair"], "val_d": d,
                         "no_binning_bound": bound, "margin": bound - m["sum_rate_bits_per_pair"]})
        best = max(range(restarts), key=lambda k: rows[k]["margin"])
        rows[best]["chosen"] = True
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(Path(tmp) / str(best), out)
    return out, rows


def decode_in_process(responder: SyndromeResponder, dec: SyndromeDecoder, window: int, symbols: np.ndarray,
                      side: np.ndarray | None) -> dict[str, Any]:
    """One window of a syndrome source as the live path codes it, requests answered in-process:
    ``responder`` encodes the edge's ``symbols``, ``dec`` decodes with the ``side`` source's symbols.

    Returns the decoded ``symbols`` (flat), the ``bits`` sent (initial + requested + direct), the
    ``requests``, the BP ``iterations`` and the ``check_failures`` (BP words refused by the plane check).
    """
    spec = dec.spec
    payload = responder.encode(window, symbols)
    out = {"bits": 8 * len(payload), "requests": 0, "iterations": 0, "check_failures": 0}
    state = dec.start(spec.split_payload(payload))
    while True:
        outcome = dec.attempt(state, side)
        out["iterations"] += outcome.iterations
        out["check_failures"] += int(outcome.check_failed)
        if outcome.symbols is not None:
            return {**out, "symbols": outcome.symbols}
        r = outcome.request
        assert r is not None
        state.requests += 1
        out["requests"] += 1
        block = responder.answer(pb.SyndromeRequest(window=window, plane=r.plane, first_bit=r.first, end_bit=r.end,
                                                    direct=r.direct))
        assert block is not None
        out["bits"] += 8 * len(block.bits)
        dec.take(state, r, block.bits if r.direct else
                 np.unpackbits(np.frombuffer(block.bits, np.uint8))[: r.end - r.first])


def measure_offline(bundle: Bundle | str | Path, windows: np.ndarray, bp: BP | None = None) -> dict[str, Any]:
    """Code ``windows`` (n, N, C, *S) as the live path does, with requests answered in-process.

    Returns per window the bits each source sent (initial + requested + direct), the requests,
    the BP iterations, the BP words the plane checks refused, the symbols decoded wrongly (vs the
    edge's; ``wrong_windows`` counts windows with any), and the sum rate (bits per sample of one
    source summed over sources: per sample pair for two scalar sources) and MSE per source; the
    Gaussian bounds where ρ is known.
    """
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    runtime = JointDecoderRuntime(bundle, "cpu")
    encoders = [EdgeEncoder(bundle, i) for i in range(bundle.n_sources)]
    order = bundle.decode_order
    rows, x_hats = [], []
    for w, x in enumerate(windows):
        bits = [0] * bundle.n_sources
        requests = [0] * bundle.n_sources
        symbols: list[np.ndarray | None] = [None] * bundle.n_sources
        check_failures = [0] * bundle.n_sources
        wrong = [0] * bundle.n_sources
        iterations = 0
        for i in order:
            info = bundle.sources[i]
            if info.binning is None:
                payload = encoders[i].encode(x[i])
                bits[i] += 8 * len(payload)
                symbols[i] = runtime.entropy_decode(i, payload)
                continue
            edge = encoders[i].symbols(x[i])
            got = decode_in_process(SyndromeResponder(info), SyndromeDecoder(info.binning, info.coder(),
                                                                             info.latent_shape, bp),
                                    w, edge, symbols[info.binning.side_sources[0]])
            symbols[i] = got["symbols"].reshape(info.latent_shape)
            bits[i] += got["bits"]
            requests[i] += got["requests"]
            iterations += got["iterations"]
            check_failures[i] += got["check_failures"]
            # what a wrong word costs, measured: symbols that differ from the edge's (clipped) ones
            wrong[i] = int((symbols[i].reshape(-1) != info.binning.symbols_of(info.binning.indices(edge))).sum())
        x_hat, _ = runtime.decode_batch([symbols])
        x_hats.append(x_hat[0])
        rows.append({"window": w, "bits": bits, "requests": requests, "bp_iterations": iterations,
                     "check_failures": check_failures, "wrong_symbols": wrong,
                     "fallback": [int(bool(bundle.sources[i].binning) and requests[i] > 0 and
                                      requests[i] > bundle.sources[i].binning.max_requests) for i in
                                  range(bundle.n_sources)]})
    x_hat = np.stack(x_hats)
    samples = int(np.prod(windows.shape[2:])) * len(windows)  # per source
    mse = ((x_hat - windows) ** 2).reshape(len(windows), bundle.n_sources, -1).mean((0, 2))
    sum_rate = sum(sum(r["bits"]) for r in rows) / samples
    # ρ of the Gaussian sources: the study's export records it, the main trainer's data info
    rho = bundle.training_config.get("rho", bundle.extra.get("data_info", {}).get("rho"))
    d = float(mse.mean())
    return {"windows": rows, "sum_rate_bits_per_pair": sum_rate, "mse_per_source": mse.tolist(),
            "wrong_windows": sum(any(r["wrong_symbols"]) for r in rows),
            "check_failures": sum(sum(r["check_failures"]) for r in rows),
            "bits_per_source": [sum(r["bits"][i] for r in rows) / samples for i in range(bundle.n_sources)],
            "requests_per_window": float(np.mean([sum(r["requests"]) for r in rows])),
            "bounds": all_bounds(float(rho), d) if rho is not None and 0 < d < 1 else None, "x_hat": x_hat}
