"""Classical distributed scalar quantisation of two Gaussian sources (baselines ``sq``, ``lloyd-dsq``).

``sq``: uniform scalar quantiser of step Δ per source, each index entropy-coded with a static
table through ``ndsc.entropy.LatentCoder``. ``binning="modulo"`` sends only the index modulo
K (coset/modulo binning, DISCUS-style with the trivial scalar code); the joint decoder
resolves the coset with the other source as side information (MMSE over the coset).
``decoder="separate"`` decodes each source from its own symbols only.

``lloyd-dsq``: the entropy-constrained distributed scalar quantiser designed by alternating
(Lloyd) optimisation of the two encoder maps and the joint decoder table (Rebollo-Monedero,
Zhang & Girod 2003), started from modulo binning. Its maps may stay many-to-one.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ndsc.entropy import ChannelTable, LatentCoder, quantise_pmf
from training.baselines.base import Baseline, register_baseline
from training.baselines.gaussian_model import GaussianPair, PairTables, relabel
from training.data import JointDataset


def symbol_table(pmf: np.ndarray) -> ChannelTable:
    """Static table for symbols 0..K−1 with probabilities ``pmf`` (escape for the rest)."""
    return ChannelTable(offset=0, freqs=quantise_pmf(np.maximum(pmf, 1e-12), escape_mass=1e-9))


class _GridQuantiser(Baseline):
    """Two scalar maps given on a grid, a joint (or separate) MMSE table decoder, ANS bytes."""

    maps: tuple[np.ndarray, np.ndarray]

    def _check(self, data: JointDataset) -> None:
        if data.n_sources != 2 or data.modality != "gaussian":
            raise ValueError(f"{type(self).__name__} codes two Gaussian sources, got {data.n_sources} {data.modality}")

    def _finish(self, model: GaussianPair, e1: np.ndarray, e2: np.ndarray) -> PairTables:
        self.model = model
        self.maps = (e1, e2)
        t = model.tables(e1, e2)
        self.t = t
        self.coders = [LatentCoder([symbol_table(t.mass.sum(1))]), LatentCoder([symbol_table(t.mass.sum(0))])]
        self.decoding = self.params.get("decoder", "joint")
        return t

    def symbols(self, windows: np.ndarray) -> np.ndarray:
        """(n, 2, 1, T) → (n, 2, T) integer symbols."""
        return np.stack([self.maps[i][self.model.cells(windows[:, i, 0])] for i in range(2)], axis=1)

    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        s = self.symbols(windows)
        return [[self.coders[i].encode(s[w, i][None]) for i in range(2)] for w in range(len(windows))]

    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        length = self.length
        out = np.empty((len(payloads), 2, 1, length), dtype=np.float32)
        for w, row in enumerate(payloads):
            s1 = self.coders[0].decode(row[0], length)[0]
            s2 = self.coders[1].decode(row[1], length)[0]
            if self.decoding == "separate":
                out[w, 0, 0], out[w, 1, 0] = self.t.sep1[s1], self.t.sep2[s2]
            else:
                out[w, 0, 0], out[w, 1, 0] = self.t.mean1[s1, s2], self.t.mean2[s1, s2]
        return out

    def analyse(self, windows: np.ndarray) -> dict[str, Any]:
        g = self.model.grid
        keep = np.abs(g) <= 4.0
        sub = slice(None, None, max(1, int(0.01 / (g[1] - g[0]))))
        from training.baselines.neural import many_to_one

        return {"encoder_map": {"x": g[keep][sub].tolist(), "symbols": [m[keep][sub].tolist() for m in self.maps],
                                "many_to_one": [many_to_one(m[keep]) for m in self.maps]},
                "expected_mse_joint": self.t.mse_joint, "expected_mse_separate": self.t.mse_separate,
                "ans_overhead_bytes_per_window": self.ans_overhead(windows)}

    def ans_overhead(self, windows: np.ndarray) -> float:
        """Mean bytes per window and source above the ideal code length of the same symbols under the table.

        What coding a window as one ANS payload costs beyond −log2 of the table probabilities
        (the flushed coder state, rounded to bytes); divide by the window length for bits per sample.
        """
        s = self.symbols(windows)
        extra = []
        for i, coder in enumerate(self.coders):
            freqs = np.asarray(coder.tables[0].freqs, np.float64)
            for w in range(len(s)):
                ideal_bits = float(-np.log2(freqs[s[w, i]] / freqs.sum()).sum())
                extra.append(len(coder.encode(s[w, i][None])) - ideal_bits / 8)
        return float(np.mean(extra))


@register_baseline("sq", binning="none", decoder="joint")
@register_baseline("sq-separate", binning="none", decoder="separate")
@register_baseline("sq-modulo", binning="modulo", decoder="joint")
class ScalarQuantiser(_GridQuantiser):
    """Uniform scalar quantisation + entropy coding per source, optional modulo binning.

    Params: ``step`` (Δ), ``binning`` ("none" | "modulo"), ``modulo`` (K, the coset count of
    source 2; ``modulo1`` likewise for source 1, 0 = not binned), ``decoder`` ("joint" | "separate").
    """

    version = 2  # 2: analysis reports the ANS overhead per window

    def fit(self, data: JointDataset) -> dict[str, Any]:
        self._check(data)
        step = float(self.params["step"])
        if step <= 0:
            raise ValueError(f"quantiser step must be positive, got {step}")
        model = GaussianPair(data.info["rho"], step=min(0.01, step / 20))
        idx = np.floor(model.grid / step).astype(np.int64)
        e1, e2 = idx.copy(), idx.copy()
        if self.params.get("binning", "none") == "modulo":
            k2, k1 = int(self.params.get("modulo", 4)), int(self.params.get("modulo1", 0))
            e2 = np.mod(idx, k2)
            if k1:
                e1 = np.mod(idx, k1)
        self.length = data.window_shape[-1]
        t = self._finish(model, e1 - e1.min(), e2 - e2.min())
        return {"train_seconds": 0.0, "expected_mse": t.mse_joint if self.decoding == "joint" else t.mse_separate}


@register_baseline("lloyd-dsq")
class LloydDSQ(_GridQuantiser):
    """Entropy-constrained distributed scalar quantiser designed by alternating optimisation.

    Params: ``lmbda`` (Lagrangian weight of a bit against squared error summed over both
    sources), ``step``/``step2`` (initial uniform steps), ``modulo`` (initial coset count of
    source 2), ``iterations``.
    """

    def fit(self, data: JointDataset) -> dict[str, Any]:
        import time

        self._check(data)
        start = time.perf_counter()
        lam = float(self.params["lmbda"])
        step1 = float(self.params["step"])
        step2 = float(self.params.get("step2", step1))
        model = GaussianPair(data.info["rho"], step=min(0.01, min(step1, step2) / 20))
        g = model.grid
        e1 = relabel(np.floor(g / step1).astype(np.int64))
        k = int(self.params.get("modulo", 3))
        e2 = relabel(np.mod(np.floor(g / step2 + 0.37).astype(np.int64), k) if k else np.floor(g / step2).astype(np.int64))
        cond21 = (model.joint / model.joint.sum(0, keepdims=True)).T  # p(x1 | x2) rows x2
        for _ in range(int(self.params.get("iterations", 25))):
            e1 = self._update(model, e2, model.tables(e1, e2), lam, model.cond12, first=True)
            e2 = self._update(model, e1, model.tables(e1, e2), lam, cond21, first=False)
        self.length = data.window_shape[-1]
        t = self._finish(model, e1, e2)
        return {"train_seconds": time.perf_counter() - start, "expected_mse": t.mse_joint,
                "symbols_per_source": [int(e1.max()) + 1, int(e2.max()) + 1]}

    @staticmethod
    def _update(model: GaussianPair, e_other: np.ndarray, t: PairTables, lam: float, cond: np.ndarray,
                first: bool) -> np.ndarray:
        """Best symbol for every grid value given the other map and the decoder table."""
        g = model.grid
        q = t.mass.sum(1) if first else t.mass.sum(0)
        cost = np.empty((len(g), len(q)))
        for s in range(len(q)):
            t1 = t.mean1[s, e_other] if first else t.mean1[e_other, s]
            t2 = t.mean2[s, e_other] if first else t.mean2[e_other, s]
            own, other = (t1, t2) if first else (t2, t1)
            # E over the other source's value given this one: squared error of both sources.
            err = (g[:, None] - own[None, :]) ** 2 + (g[None, :] - other[None, :]) ** 2
            cost[:, s] = (cond * err).sum(1) + lam * -np.log2(max(q[s], 1e-12))
        return relabel(cost.argmin(1))
