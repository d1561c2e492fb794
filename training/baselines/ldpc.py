"""LDPC syndrome coding with side information (Slepian–Wolf coding of one bit plane).

The encoder sends the syndrome s = H·b (mod 2) of a block of n bits; the decoder, which
holds log-likelihood ratios of the bits from its side information, runs sum-product
belief propagation constrained to the coset {b : H·b = s} (Liveris, Xiong & Georghiades
2002). H is a random sparse matrix drawn from a seed both sides share, with a variable-degree
profile: regular (every bit in 3 checks) or irregular (most bits in 2 or 3 checks, a few in
8), which decodes closer to the Slepian–Wolf limit at high syndrome rates.
"""
from __future__ import annotations

import numpy as np

_CLIP = 1.0 - 1e-12
#: variable-degree profiles: name → ((degree, fraction of bits), …)
PROFILES = {"reg3": ((3, 1.0),), "reg4": ((4, 1.0),), "irr23": ((2, 0.5), (3, 0.5)),
            "irr238": ((2, 0.55), (3, 0.4), (8, 0.05)), "irr2310": ((2, 0.6), (3, 0.3), (10, 0.1)),
            "irr236": ((2, 0.5), (3, 0.3), (6, 0.2))}


class SyndromeCode:
    """A sparse m × n parity-check matrix as edge lists.

    Args:
        n: block length (bits).
        m: syndrome length (bits); the rate is m / n bits per source bit.
        seed: shared seed that fixes the matrix.
        profile: a :data:`PROFILES` name (checks per bit).
    """

    def __init__(self, n: int, m: int, seed: int = 0, profile: str = "reg3"):
        if not 0 < m <= n:
            raise ValueError(f"need 0 < m <= n, got m={m}, n={n}")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
        rng = np.random.default_rng([seed, n, m, sorted(PROFILES).index(profile)])
        degrees = np.concatenate([np.full(int(round(frac * n)), deg) for deg, frac in PROFILES[profile]])
        degrees = rng.permutation(np.resize(degrees, n))
        var = np.repeat(np.arange(n), degrees)
        chk = rng.permutation(np.arange(var.size) % m)
        edges = np.unique(np.stack([chk, var], axis=1), axis=0)  # a repeated (check, bit) pair would cancel
        self.n, self.m = n, m
        self.chk, self.var = edges[:, 0], edges[:, 1]

    def syndrome(self, bits: np.ndarray) -> np.ndarray:
        """H·bits mod 2 as uint8 (m,)."""
        return (np.bincount(self.chk, weights=bits[self.var].astype(np.float64), minlength=self.m) % 2).astype(np.uint8)

    def decode(self, llr: np.ndarray, syndrome: np.ndarray, iterations: int = 80) -> tuple[np.ndarray, bool]:
        """Most likely bits in the coset of ``syndrome`` given prior LLRs log P(0)/P(1).

        Returns the bits and whether they satisfy the syndrome.
        """
        llr = np.clip(np.asarray(llr, np.float64), -30, 30)
        flip = (1.0 - 2.0 * syndrome.astype(np.float64))[self.chk]
        msg_vc = llr[self.var]
        bits = (llr < 0).astype(np.uint8)
        for _ in range(iterations):
            t = np.tanh(np.clip(msg_vc / 2, -19, 19))
            mag = np.log(np.maximum(np.abs(t), 1e-300))
            neg = (t < 0).astype(np.float64)
            mag_sum = np.bincount(self.chk, weights=mag, minlength=self.m)
            neg_sum = np.bincount(self.chk, weights=neg, minlength=self.m)
            sign = np.where(((neg_sum[self.chk] - neg) % 2) > 0.5, -1.0, 1.0) * flip
            val = np.clip(sign * np.exp(mag_sum[self.chk] - mag), -_CLIP, _CLIP)
            msg_cv = 2.0 * np.arctanh(val)
            total = llr + np.bincount(self.var, weights=msg_cv, minlength=self.n)
            bits = (total < 0).astype(np.uint8)
            if np.array_equal(self.syndrome(bits), syndrome):
                return bits, True
            msg_vc = total[self.var] - msg_cv
        return bits, False
