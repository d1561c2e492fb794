"""Rate–distortion limits for two jointly Gaussian unit-variance sources (MSE).

All rates are sum rates in bits per sample pair, for equal target distortion ``D`` on
both sources.

* separate coding: each source at its own R(D) = ½·log2(1/D).
* joint decoding without binning: Gaussian test channels U_i = X_i + N_i coded at
  I(X_i;U_i) each, decoder forms the MMSE estimate from (U_1, U_2).
* Berger–Tung (Wagner, Tavildar & Viswanath 2008, tight for Gaussian sources):
  R1+R2 ≥ ½·log2⁺[(1−ρ²)·β / (2·D1·D2)], β = 1 + √(1 + 4ρ²·D1·D2/(1−ρ²)²).
* centralised: reverse water-filling over the eigenvalues 1±ρ of the covariance.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq


def _check(rho: float, distortion: float) -> None:
    if not 0.0 <= abs(rho) < 1.0:
        raise ValueError("need |rho| < 1")
    if not 0.0 < distortion < 1.0:
        raise ValueError("need 0 < distortion < 1 (unit-variance sources)")


def separate_rate(rho: float, distortion: float) -> float:
    """Sum rate of coding each source alone: log2(1/D)."""
    _check(rho, distortion)
    return math.log2(1.0 / distortion)


def _mmse_two_observations(rho: float, noise_var: float) -> float:
    """MMSE of X_1 from U_1 = X_1 + N_1, U_2 = X_2 + N_2 with equal noise variance."""
    # Cov(U) = [[1+s, rho],[rho, 1+s]], Cov(X1, U) = [1, rho].
    s = noise_var
    det = (1 + s) ** 2 - rho**2
    quad = ((1 + s) * 1 - 2 * rho * rho + (1 + s) * rho**2) / det
    return 1.0 - quad


def no_binning_rate(rho: float, distortion: float) -> float:
    """Sum rate of joint decoding without binning (symmetric Gaussian test channels)."""
    _check(rho, distortion)
    if _mmse_two_observations(rho, 1e12) <= distortion:
        return 0.0
    s = brentq(lambda v: _mmse_two_observations(rho, v) - distortion, 1e-15, 1e12, xtol=1e-15, rtol=1e-15)
    return 2 * 0.5 * math.log2(1.0 + 1.0 / s)


def berger_tung_rate(rho: float, distortion: float) -> float:
    """Berger–Tung sum rate for D1 = D2 = ``distortion``."""
    _check(rho, distortion)
    d1 = d2 = distortion
    one_m = 1.0 - rho**2
    beta = 1.0 + math.sqrt(1.0 + 4.0 * rho**2 * d1 * d2 / one_m**2)
    return max(0.0, 0.5 * math.log2(one_m * beta / (2.0 * d1 * d2)))


def centralised_rate(rho: float, distortion: float) -> float:
    """Joint (centralised) coding: reverse water-filling with total distortion 2·D."""
    _check(rho, distortion)
    eig = sorted([1.0 + abs(rho), 1.0 - abs(rho)])
    total = 2.0 * distortion

    def spent(theta: float) -> float:
        return sum(min(theta, e) for e in eig)

    theta = brentq(lambda t: spent(t) - total, 0.0, max(eig), xtol=1e-15)
    return sum(0.5 * math.log2(e / theta) for e in eig if e > theta)


def all_bounds(rho: float, distortion: float) -> dict[str, float]:
    """The four sum rates, bits per sample pair."""
    return {
        "separate": separate_rate(rho, distortion),
        "no_binning": no_binning_rate(rho, distortion),
        "berger_tung": berger_tung_rate(rho, distortion),
        "centralised": centralised_rate(rho, distortion),
    }
