"""Start a lapped codec where the data say a channel is redundant: derived channels cost no bits.

Some channels are linear functions of others (ECG: III = II − I; aVR, aVL, aVF from I and II). A
joint decoder that rebuilds such a channel from the other nodes' coefficients lets its own node
send nothing, but gradient descent from a per-lead start rarely finds that: while the channel's
own coefficients are sent, the decoder has no reason to look elsewhere, and while it does not,
the encoder has no reason to stop sending them. So before training, each channel is regressed
(least squares, instantaneous, on the training windows) on the channels already kept, in node
order; one that the kept channels explain to within ``tolerance`` (relative RMS residual) is
marked derived. The decoder's linear synthesis then starts as that regression (the lapped
transform is linear and the same for every lead at the start, so the weights carry over
coefficient by coefficient), and the derived channels' quantiser gains start so small that every
symbol is 0. Training is free to change all of it; the data decide what is derived, no formula
is built in.

Only channels the decoder can see are used: every node's for a joint decoder, the channel's own
node's for separate decoders.
"""
from __future__ import annotations

import math

import numpy as np
import torch

#: log quantiser gain of a derived channel at the start: coefficients × e^-12 round to 0
DERIVED_LOG_GAIN = -12.0


def derivation(train: np.ndarray, joint: bool, tolerance: float = 0.02) -> dict[tuple[int, int], dict]:
    """Derived channels of windows (n, N, C, T) and their regression on the kept channels.

    Returns ``{(node, channel): {"from": [(node, channel), …], "weights": [...], "residual": r}}``
    for every derived channel; the kept ones are absent.
    """
    n, nodes, channels, t = train.shape
    x = train.transpose(1, 2, 0, 3).reshape(nodes, channels, -1).astype(np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    kept: list[tuple[int, int]] = []
    derived: dict[tuple[int, int], dict] = {}
    for j in range(nodes):
        for c in range(channels):
            basis = [k for k in kept if joint or k[0] == j]
            target = x[j, c]
            scale = float(np.sqrt((target ** 2).mean()))
            if basis and scale > 0:
                a = np.stack([x[k] for k in basis], axis=1)
                w, *_ = np.linalg.lstsq(a, target, rcond=None)
                residual = float(np.sqrt(((a @ w - target) ** 2).mean()) / scale)
                if residual < tolerance:
                    derived[j, c] = {"from": basis, "weights": w.tolist(), "residual": residual}
                    continue
            kept.append((j, c))
    return derived


@torch.no_grad()
def initialise(model, train: np.ndarray, tolerance: float = 0.02) -> dict[tuple[int, int], dict]:
    """Apply :func:`derivation` to a variable-rate codec with ``ecg-lapped`` encoder and decoder.

    Returns the derivation (for logs and the manifest); a codec of another shape is left unchanged.
    """
    decoder = model.g_s
    synthesis = getattr(decoder, "synthesis", None)
    if synthesis is None or not getattr(model, "n_points", 0):
        return {}
    joint = synthesis.groups == 1
    _, nodes, channels, _ = train.shape
    stride = decoder.stride
    m = channels * stride
    derived = derivation(train / model.cfg.model.input_scale, joint, tolerance)
    weight = synthesis.weight  # (N·M, N·C / groups, 2·stride)
    for (j, c), info in derived.items():
        out = (j * channels + c) if joint else c
        own = slice(j * m + c * stride, j * m + (c + 1) * stride)
        basis_rows = weight[own, out].clone()  # this channel's synthesis basis (MLT at the start)
        weight[own, out] = 0.0
        for (k, ck), w in zip(info["from"], info["weights"]):
            rows = slice(k * m + ck * stride, k * m + (ck + 1) * stride)
            weight[rows, out] += float(w) * basis_rows
        model.log_gain[:, j, c * stride:(c + 1) * stride] = DERIVED_LOG_GAIN
    return derived


def describe(derived: dict[tuple[int, int], dict], names: list[list[str]]) -> list[str]:
    """One readable line per derived channel: ``aVR ≈ -0.50·I -0.50·II (residual 0.3 %)``."""
    lines = []
    for (j, c), info in sorted(derived.items()):
        terms = " ".join(f"{w:+.2f}·{names[k][ck]}" for (k, ck), w in zip(info["from"], info["weights"])
                         if abs(w) >= 0.01 or math.isnan(w))
        lines.append(f"{names[j][c]} ≈ {terms} (residual {100 * info['residual']:.2f} %)")
    return lines
