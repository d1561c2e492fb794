"""Batched torch BP (fusion_decoder.belief_torch) against the NumPy decoder it mirrors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_decoder.belief import bp_numpy
from fusion_decoder.belief_torch import bp_batch, bp_torch
from tests.binning.test_belief import _instance


def _instances(seed: int):
    rng = np.random.default_rng(seed)
    return [_instance(rng, 1024, m, flip) for m, flip in [(300, 0.05), (400, 0.05), (500, 0.08), (220, 0.05),
                                                          (600, 0.1), (200, 0.005)] * 2]


def test_torch_bp_takes_the_numpy_decoders_steps_problem_by_problem():
    decoded = 0
    for chk, var, n, m, llr, syndrome, truth in _instances(0):
        want = bp_numpy(chk, var, n, m, llr, syndrome, 60)
        got = bp_torch(chk, var, n, m, llr, syndrome, 60)
        assert got[1:] == want[1:] and np.array_equal(got[0], want[0])
        decoded += got[1] and np.array_equal(got[0], truth)
    assert 3 <= decoded < 12  # some instances decode, some do not: the comparison covers both


def test_a_batch_gives_each_problem_what_it_gets_alone():
    problems = [p[:6] for p in _instances(1)]
    alone = [bp_torch(*p, 60) for p in problems]
    together = bp_batch(problems, 60)
    assert [r[1:] for r in together] == [r[1:] for r in alone]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(together, alone))
    assert {r[1] for r in together} == {True, False}


def test_float32_decodes_what_float64_decodes():
    problems = [p[:6] for p in _instances(2)]
    wide = bp_batch(problems, 60)
    narrow = bp_batch(problems, 60, dtype=torch.float32)
    for (w_bits, w_ok, _), (n_bits, n_ok, _) in zip(wide, narrow):
        if w_ok:  # the same word where float64 converged (float32 may take another iteration or two)
            assert n_ok and np.array_equal(w_bits, n_bits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
def test_the_gpu_batch_decodes_what_the_cpu_batch_decodes():
    problems = [p[:6] for p in _instances(3)]
    cpu, gpu = bp_batch(problems, 60), bp_batch(problems, 60, device="cuda")
    assert [r[1] for r in cpu] == [r[1] for r in gpu]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(cpu, gpu) if a[1])
