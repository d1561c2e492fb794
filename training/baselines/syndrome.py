"""Scalar quantisation with Slepian–Wolf binning by LDPC syndromes (baseline ``sq-syndrome``).

DISCUS-style asymmetric coding of two Gaussian sources over a window of n samples:

* source 1: uniform scalar quantiser (step Δ), indices entropy-coded with a static table
  through ``ndsc.entropy.LatentCoder``;
* source 2: the same quantiser; its index is split into bit planes, least significant
  first. A plane whose conditional entropy given source 1 and the lower planes is high is
  sent raw; a middle plane is sent as an LDPC syndrome (its bin index); a plane the side
  information already determines is not sent. The syndrome lengths are chosen at fit time,
  the shortest that decodes every training window tried;
* decoder: decodes source 1, then each plane of source 2 by belief propagation with
  LLRs from P(Q2 | Q1, lower planes), then the MMSE table E[(X1, X2) | Q1, Q2].

Bit planes are the coset structure: knowing the k low bits of Q2 leaves a coset of
indices 2^k apart, which the side information resolves.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ndsc.entropy import LatentCoder
from training.baselines.base import Baseline, register_baseline
from training.baselines.gaussian_model import GaussianPair
from training.baselines.ldpc import SyndromeCode
from training.baselines.scalar import symbol_table
from training.data import JointDataset

RATE_LADDER = (1.01, 1.02, 1.03, 1.045, 1.06, 1.075, 1.09, 1.11, 1.13, 1.15, 1.19, 1.23, 1.3, 1.4, 1.55, 1.75, 2.0)
PROFILE_ORDER = ("irr238", "irr23", "reg3", "reg4")


@register_baseline("sq-syndrome")
class SyndromeSQ(Baseline):
    """Params: ``step`` (Δ of source 1), ``step2`` (Δ of source 2, default ``step``), ``raw_above`` (plane entropy above which it is sent raw),
    ``fit_windows`` (training windows the syndrome lengths must decode), ``margin``
    (fraction added to the shortest syndrome length that decoded them), ``min_extra_bits``
    (at least this many bits added), ``iterations`` (belief-propagation iterations),
    ``profiles`` (LDPC degree profiles tried, see :data:`training.baselines.ldpc.PROFILES`)."""

    version = 5  # 5: finer rate ladder, bisection per profile, configurable BP iterations

    def fit(self, data: JointDataset) -> dict[str, Any]:
        if data.n_sources != 2 or data.modality != "gaussian":
            raise ValueError("sq-syndrome codes two Gaussian sources")
        start = time.perf_counter()
        step = float(self.params["step"])
        self.step1, self.step = step, float(self.params.get("step2", step))  # Q1 step, Q2 step
        self.n = data.window_shape[-1]
        model = GaussianPair(data.info["rho"], step=min(0.01, min(self.step1, self.step) / 20))
        self.model = model
        # Indices −half..half−1 cover the grid; tables span the full range even where mass is ~0.
        self.half1, self.half = int(np.ceil(6.0 / self.step1)), int(np.ceil(6.0 / self.step))
        e1 = self._index(model.grid, self.step1, self.half1)
        e2 = self._index(model.grid, self.step, self.half)
        t = model.tables(e1, e2)
        size1, size = 2 * self.half1, 2 * self.half
        self.mass, self.mean1, self.mean2 = (np.zeros((size1, size)) for _ in range(3))
        k1, k2 = t.mass.shape
        self.mass[:k1, :k2], self.mean1[:k1, :k2], self.mean2[:k1, :k2] = t.mass, t.mean1, t.mean2
        self.cond = self.mass / np.maximum(self.mass.sum(1, keepdims=True), 1e-300)  # P(Q2 | Q1)
        self.coder1 = LatentCoder([symbol_table(self.mass.sum(1))])
        self._design_planes(data)
        return {"train_seconds": time.perf_counter() - start, "planes": self.plan}

    def _design_planes(self, data: JointDataset) -> None:
        """Choose each bit plane's mode and syndrome length from ``self.mass`` and training windows."""
        self.bits = int(np.ceil(np.log2(self.mass.shape[1])))
        self.margin = float(self.params.get("margin", 0.05))
        self.min_extra_bits = int(self.params.get("min_extra_bits", 64))
        self.iterations = int(self.params.get("iterations", 80))
        # Decoding may iterate longer than the length search did: a rare slow window then still converges
        # (success stops early, so this costs time only on the windows that need it).
        self.decode_iterations = int(self.params.get("decode_iterations", self.iterations))
        self.profiles = tuple(self.params.get("profiles", PROFILE_ORDER))
        self.plan = self._plan(data.train, int(self.params.get("fit_windows", 12)),
                               float(self.params.get("raw_above", 0.97)))

    # --- the plan: which plane is raw, syndrome (with its length) or not sent ------------
    def _plane_entropy(self, k: int) -> tuple[float, float]:
        """H(b_k | Q1, b_<k) in bits and the MAP error probability of b_k from the same."""
        return plane_entropy(self.mass, k)

    def _plan(self, train: np.ndarray, fit_windows: int, raw_above: float) -> list[dict[str, Any]]:
        plan: list[dict[str, Any]] = []
        windows = train[:fit_windows]
        i1 = [self._symbols1(w[0, 0]) for w in windows]
        j2 = [self._symbols2(w[1, 0]) for w in windows]
        for k in range(self.bits):
            h, err = self._plane_entropy(k)
            if h > raw_above:
                plan.append({"plane": k, "mode": "raw", "entropy": h, "bits": self.n})
                continue
            # Not sending a plane costs its MAP errors, each of size about 2^k steps.
            if err * (2**k * self.step) ** 2 < 0.002 * self.step**2 / 12:
                plan.append({"plane": k, "mode": "skip", "entropy": h, "bits": 0})
                continue
            chosen = self._shortest_syndrome(k, h, i1, j2)
            if chosen is None:
                plan.append({"plane": k, "mode": "raw", "entropy": h, "bits": self.n})
            else:
                plan.append({"plane": k, "mode": "syndrome", "entropy": h, "bits": chosen[0], "profile": chosen[1]})
        return plan

    def _candidates(self, h: float) -> list[int]:
        """Syndrome lengths to try, shortest first: multiples of n·H, then fixed fractions of n."""
        ms = {int(np.ceil(self.n * (h * f + 4.0 / self.n))) for f in RATE_LADDER}
        ms |= {int(np.ceil(self.n * frac)) for frac in (0.01, 0.02, 0.04, 0.08, 0.15, 0.3) if frac > h}
        return sorted(m for m in ms if m < self.n)

    def _shortest_syndrome(self, k: int, h: float, i1: list, j2: list) -> tuple[int, str] | None:
        """(m, profile) of the shortest syndrome that decodes every fit window, plus the margin.

        Per profile, a bisection over the candidate lengths (decoding success is monotone in
        the length up to BP noise; a bisection costs log2 of the candidates in decodes where a
        linear scan costs all the failing ones, which run every iteration).
        """
        cands = self._candidates(h)
        best: tuple[int, str] | None = None
        for profile in self.profiles:
            lo, hi = 0, len(cands)  # invariant: cands[hi] passes (hi == len: none known)
            while lo < hi:
                mid = (lo + hi) // 2
                if best is not None and cands[mid] >= best[0]:
                    hi = mid  # no shorter than the best so far: look below only
                    continue
                code = SyndromeCode(self.n, cands[mid], seed=k, profile=profile)
                ok = all(code.decode(self._llr(i, j & ((1 << k) - 1), k), code.syndrome(self._bit(j, k)),
                                     self.iterations)[1] for i, j in zip(i1, j2))
                if ok:
                    best, hi = (cands[mid], profile), mid
                else:
                    lo = mid + 1
        if best is None:
            return None
        # Margin: the fit windows are few, the test windows many.
        # Short syndromes (nearly determined planes) fail more often than their length
        # suggests, so they get at least ``min_extra_bits`` more.
        m, profile = best
        safe = int(np.ceil(max(m * (1.0 + self.margin), m + self.min_extra_bits)))
        return (safe, profile) if safe < self.n else None

    # --- coding -------------------------------------------------------------------------
    def _symbols1(self, x: np.ndarray) -> np.ndarray:
        """Source 1's quantiser indices 0..K1−1 (subclasses with learned encoders override)."""
        return self._index(x, self.step1, self.half1)

    def _symbols2(self, x: np.ndarray) -> np.ndarray:
        """Source 2's quantiser indices 0..K2−1, the values whose bit planes are coded."""
        return self._index(x, self.step, self.half)

    @staticmethod
    def _index(x: np.ndarray, step: float, half: int) -> np.ndarray:
        """Quantiser index shifted to 0..2·half−1."""
        return np.clip(np.floor(np.asarray(x, np.float64) / step).astype(np.int64), -half, half - 1) + half

    @staticmethod
    def _bit(j: np.ndarray, k: int) -> np.ndarray:
        return ((j >> k) & 1).astype(np.uint8)

    def _llr(self, i1: np.ndarray, low: np.ndarray, k: int) -> np.ndarray:
        """log P(b_k=0 | Q1, low bits)/P(b_k=1 | …) per sample."""
        j = np.arange(self.cond.shape[1])
        rows = self.cond[i1]  # (n, size)
        consistent = (j[None, :] & ((1 << k) - 1)) == low[:, None]
        bit = ((j >> k) & 1)[None, :]
        p0 = (rows * (consistent & (bit == 0))).sum(1)
        p1 = (rows * (consistent & (bit == 1))).sum(1)
        return np.log(np.maximum(p0, 1e-300)) - np.log(np.maximum(p1, 1e-300))

    def _decode_plane(self, code: SyndromeCode, syndrome: np.ndarray, i1: np.ndarray, low: np.ndarray,
                      k: int) -> tuple[np.ndarray, bool]:
        return code.decode(self._llr(i1, low, k), syndrome, self.decode_iterations)

    def compress(self, windows: np.ndarray) -> list[list[bytes]]:
        out = []
        codes = {p["plane"]: SyndromeCode(self.n, p["bits"], seed=p["plane"], profile=p["profile"]) for p in self.plan if p["mode"] == "syndrome"}
        for w in windows:
            i1 = self._symbols1(w[0, 0])
            j2 = self._symbols2(w[1, 0])
            p1 = self.coder1.encode(i1[None])
            chunks = []
            for p in self.plan:
                bits = self._bit(j2, p["plane"])
                if p["mode"] == "raw":
                    chunks.append(np.packbits(bits).tobytes())
                elif p["mode"] == "syndrome":
                    chunks.append(np.packbits(codes[p["plane"]].syndrome(bits)).tobytes())
            out.append([p1, b"".join(chunks)])
        return out

    def decompress(self, payloads: list[list[bytes]]) -> np.ndarray:
        codes = {p["plane"]: SyndromeCode(self.n, p["bits"], seed=p["plane"], profile=p["profile"]) for p in self.plan if p["mode"] == "syndrome"}
        out = np.empty((len(payloads), 2, 1, self.n), dtype=np.float32)
        self.failures = getattr(self, "failures", 0)
        for w, (b1, b2) in enumerate(payloads):
            i1 = self.coder1.decode(b1, self.n)[0]
            j2 = np.zeros(self.n, dtype=np.int64)
            pos = 0
            for p in self.plan:
                k = p["plane"]
                if p["mode"] == "raw":
                    nbytes = (self.n + 7) // 8
                    bits = np.unpackbits(np.frombuffer(b2[pos:pos + nbytes], np.uint8))[: self.n]
                    pos += nbytes
                elif p["mode"] == "syndrome":
                    nbytes = (p["bits"] + 7) // 8
                    syn = np.unpackbits(np.frombuffer(b2[pos:pos + nbytes], np.uint8))[: p["bits"]]
                    pos += nbytes
                    bits, ok = self._decode_plane(codes[k], syn, i1, j2, k)
                    self.failures += int(not ok)
                else:
                    bits = (self._llr(i1, j2, k) < 0).astype(np.uint8)
                j2 |= bits.astype(np.int64) << k
            j2 = np.clip(j2, 0, self.mass.shape[1] - 1)
            out[w, 0, 0] = self.mean1[i1, j2]
            out[w, 1, 0] = self.mean2[i1, j2]
        return out

    def analyse(self, windows: np.ndarray) -> dict[str, Any]:
        return {"planes": self.plan, "bp_failures": int(getattr(self, "failures", 0)),
                "note": "asymmetric Slepian–Wolf corner point; source 1 entropy-coded, source 2 by syndromes"}


def plane_entropy(mass: np.ndarray, k: int) -> tuple[float, float]:
    """H(b_k | Q1, b_<k) in bits per sample and the MAP error probability of b_k from the same.

    ``mass`` (K1, K2): the joint p(Q1, Q2) over side index and coded index; b_k is bit k of Q2.
    """
    size = mass.shape[1]
    j = np.arange(size)
    low = j & ((1 << k) - 1)
    bit = (j >> k) & 1
    h = err = 0.0
    for lv in np.unique(low):
        p0 = mass[:, (low == lv) & (bit == 0)].sum(1)
        p1 = mass[:, (low == lv) & (bit == 1)].sum(1)
        tot = p0 + p1
        ok = tot > 0
        q = np.where(ok, p0 / np.where(ok, tot, 1), 0.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            hb = -(q * np.log2(np.where(q > 0, q, 1)) + (1 - q) * np.log2(np.where(q < 1, 1 - q, 1)))
        h += float((tot * hb).sum())
        err += float(np.minimum(p0, p1).sum())
    return h, err
