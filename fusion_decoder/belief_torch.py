"""Sum-product belief propagation in torch, many syndrome problems at once (CPU or GPU).

The live decoder of a binned stereo view has hundreds of tiles per frame, each with its own
plane to decode and its own rate (the merged code of the accumulated bits it holds); one BP
attempt per tile with the ``ldpc`` package costs ~120 ms of CPU at n = 12 288. Here the
problems of a round are one graph, block-diagonal (each problem's edges offset into one
edge list), so one iteration is a dozen tensor operations over every tile's edges, on the GPU
where there is one. The update is :func:`fusion_decoder.belief.bp_numpy`'s, step for step (in
float64 the words, convergence and iteration counts are the same; tested), so either can
stand for the other.

Typical use::

    results = bp_batch([(chk, var, n, m, llr, syndrome), ...], iterations=100, device="cuda")
    bits, ok, its = results[0]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fusion_decoder.belief import _LLR_CLIP

#: |tanh| below 1 by this much, per float type (atanh(1) is infinite)
_TANH_MARGIN = {torch.float64: 1e-12, torch.float32: 1e-6}
#: log|tanh| floor, per float type
_LOG_FLOOR = {torch.float64: 1e-300, torch.float32: 1e-37}

Problem = tuple[np.ndarray, np.ndarray, int, int, np.ndarray, np.ndarray]


def bp_batch(problems: Sequence[Problem], iterations: int, device: str | torch.device | None = None,
             dtype: torch.dtype = torch.float64) -> list[tuple[np.ndarray, bool, int]]:
    """Sum-product BP on each problem's coset {b : H·b = syndrome}, all problems in one graph.

    Each problem is (``chk``, ``var``, n, m, ``llr``, ``syndrome``) as
    :func:`fusion_decoder.belief.bp_numpy` takes them. Returns per problem (bits, whether they
    satisfy its syndrome, the iteration at which they first did or ``iterations``): a problem's
    word is kept from the first iteration it satisfies its checks, while the others go on.
    """
    if not problems:
        return []
    dev = torch.device(device) if device is not None else torch.device("cpu")
    var_off = np.cumsum([0] + [p[2] for p in problems])
    chk_off = np.cumsum([0] + [p[3] for p in problems])
    n_all, m_all = int(var_off[-1]), int(chk_off[-1])
    chk = torch.from_numpy(np.concatenate([np.asarray(p[0], np.int64) + chk_off[i] for i, p in enumerate(problems)])).to(dev)
    var = torch.from_numpy(np.concatenate([np.asarray(p[1], np.int64) + var_off[i] for i, p in enumerate(problems)])).to(dev)
    llr = torch.from_numpy(np.concatenate([np.clip(np.asarray(p[4], np.float64), -_LLR_CLIP, _LLR_CLIP)
                                           for p in problems])).to(dev, dtype)
    syndrome = torch.from_numpy(np.concatenate([np.asarray(p[5], np.int64) for p in problems])).to(dev)
    # the problem of every check, to count unsatisfied checks per problem
    owner = torch.from_numpy(np.repeat(np.arange(len(problems)), [p[3] for p in problems])).to(dev)
    count = len(problems)

    def unsatisfied(bits: torch.Tensor) -> torch.Tensor:
        # over the edges still in the graph: a finished problem's count is wrong, and never read again
        parity = torch.zeros(m_all, dtype=torch.int64, device=dev).index_add_(0, chk, bits[var]) & 1
        return torch.zeros(count, dtype=torch.int64, device=dev).index_add_(0, owner, (parity != syndrome).long())

    bits = (llr < 0).long()
    done_at = torch.full((count,), -1, dtype=torch.int64, device=dev)
    words = bits.clone()
    done_at[unsatisfied(bits) == 0] = 0
    flip = (1 - 2 * syndrome[chk]).to(dtype)
    margin, floor = _TANH_MARGIN[dtype], _LOG_FLOOR[dtype]
    live = done_at[owner[chk]] < 0  # problems whose side information already meets the checks are done
    chk, var, flip = chk[live], var[live], flip[live]
    msg_vc = llr[var]
    var_owner = torch.from_numpy(np.repeat(np.arange(count), [p[2] for p in problems])).to(dev)
    for it in range(1, iterations + 1):
        if bool((done_at >= 0).all()):
            break
        t = torch.tanh(torch.clamp(msg_vc / 2, -19, 19))
        mag = torch.log(torch.clamp(t.abs(), min=floor))
        neg = (t < 0).to(dtype)
        mag_sum = torch.zeros(m_all, dtype=dtype, device=dev).index_add_(0, chk, mag)
        neg_sum = torch.zeros(m_all, dtype=dtype, device=dev).index_add_(0, chk, neg)
        sign = torch.where(torch.remainder(neg_sum[chk] - neg, 2) > 0.5, -1.0, 1.0).to(dtype) * flip
        val = torch.clamp(sign * torch.exp(mag_sum[chk] - mag), -1 + margin, 1 - margin)
        msg_cv = 2 * torch.atanh(val)
        total = llr + torch.zeros(n_all, dtype=dtype, device=dev).index_add_(0, var, msg_cv)
        bits = (total < 0).long()
        newly = (unsatisfied(bits) == 0) & (done_at < 0)
        msg_vc = total[var] - msg_cv
        if bool(newly.any()):
            take = newly[var_owner]
            words[take] = bits[take]
            done_at[newly] = it
            # a finished problem's edges leave the graph: the rest iterate at their own cost
            live = done_at[owner[chk]] < 0
            chk, var, flip, msg_vc = chk[live], var[live], flip[live], msg_vc[live]
    still = done_at < 0
    words[still[var_owner]] = bits[still[var_owner]]
    out_words = words.to(torch.uint8).cpu().numpy()
    done = done_at.cpu().numpy()
    return [(out_words[var_off[i]:var_off[i + 1]].copy(), bool(done[i] >= 0),
             int(done[i]) if done[i] >= 0 else iterations) for i in range(count)]


def bp_torch(chk: np.ndarray, var: np.ndarray, n: int, m: int, llr: np.ndarray, syndrome: np.ndarray,
             iterations: int, *, device: str | torch.device | None = None,
             dtype: torch.dtype = torch.float64) -> tuple[np.ndarray, bool, int]:
    """One problem through :func:`bp_batch` (CPU and float64 unless told): a drop-in ``BP`` function,
    also with ``device`` and ``dtype`` bound (``functools.partial``)."""
    return bp_batch([(chk, var, n, m, llr, syndrome)], iterations, device, dtype)[0]
