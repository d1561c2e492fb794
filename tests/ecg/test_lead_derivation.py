"""Derived leads: found in the data, rebuilt by the joint decoder from the start, sent with no symbols."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ndsc.sources.synthetic import STANDARD_LEADS
from training.ecg_eval import record_windows
from training.lead_derivation import derivation, describe, initialise

NAMES = [list(STANDARD_LEADS[i:i + 3]) for i in range(0, 12, 3)]


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return record_windows("pydicom", list(STANDARD_LEADS), 3, 500.0, 1024)  # (n, 4, 3, 1024), a real patient


def test_limb_leads_are_found_derived_and_chest_leads_are_not(windows):
    joint = derivation(windows, joint=True)
    assert sorted(joint) == [(0, 2), (1, 0), (1, 1), (1, 2)]  # III, aVR, aVL, aVF
    weights = dict(zip(joint[1, 0]["from"], joint[1, 0]["weights"]))
    assert weights[0, 0] == pytest.approx(-0.5, abs=0.02) and weights[0, 1] == pytest.approx(-0.5, abs=0.02)
    assert describe(joint, NAMES)[0].startswith("III ≈ -1.00·I +1.00·II")
    # Separate decoders see one node each: only what a node's own leads explain.
    assert sorted(derivation(windows, joint=False)) == [(0, 2), (1, 2)]  # III from I, II; aVF from aVR, aVL


def test_an_initialised_joint_codec_rebuilds_derived_leads_from_other_nodes_with_zero_symbols(windows):
    from models.codec import DistributedCodec
    from training.presets import get_preset

    torch.manual_seed(0)
    cfg = get_preset("ecg-12lead")
    model = DistributedCodec(4, (3, 1024), cfg)
    initialise(model, windows, cfg.derived_channel_tolerance)
    model.eval()
    x = torch.from_numpy(windows)
    with torch.no_grad():
        quality = torch.full((len(x),), len(model.quality_names) - 1)  # the finest point
        out = model(x, quality=quality)
    symbols = torch.round(out["y"])  # (B, N, M, L), already multiplied by the gains
    assert (symbols[:, 1] == 0).all()  # node aVR/aVL/aVF sends nothing but zeros
    assert (symbols[:, 0, 32:] == 0).all() and (symbols[:, 0, :32] != 0).any()  # III's subbands are zero
    rmse = (out["x_hat"] - x).pow(2).mean(dim=(0, 3)).sqrt()  # (N, C)
    # A derived lead carries only the quantisation noise of I and II it is made of (aVL = I − II/2:
    # √1.25 × theirs), so its error is of their size although its node sent nothing.
    kept = float(max(rmse[0, 0], rmse[0, 1]))
    assert 0 < kept < 0.01  # mV
    assert float(rmse[1].max()) < 1.6 * kept and float(rmse[0, 2]) < 1.6 * kept
