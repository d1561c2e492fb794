"""The learned view fusion (models/view_fusion.py, training/view_fusion.py): starts as the hand-made
side information, is trained after the codec on real decodes, and keeps every view inside its own cells."""
from __future__ import annotations

import numpy as np
import torch

from models.decoders import build_decoder
from ndsc.bundle import load_bundle
from tests.stereo.test_side_information import S, code, pair_with_disparity, transform

ARGS = {"n_sources": 2, "latent_channels": 3 * S * S, "out_channels": 3, "hidden": 8, "joint": True,
        "side_information": True}


def test_an_untrained_fusion_changes_nothing_and_leaves_the_codec_initialisation_alone():
    torch.manual_seed(0)
    hand = build_decoder("stereo-dct", ARGS).eval()
    after_hand = torch.rand(3)
    torch.manual_seed(0)
    fused = build_decoder("stereo-dct", {**ARGS, "refiner_hidden": 8}).eval()
    assert torch.equal(torch.rand(3), after_hand)  # the refiner draws from its own random stream
    state = fused.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in hand.state_dict().items())
    analysis, _ = transform()
    for dec in (hand, fused):
        dec.attach_analysis(list(analysis))
    x = pair_with_disparity(6.0)
    y_hat, step, _ = code(x, steps=(0.02, 0.4))
    with torch.no_grad():
        assert torch.allclose(fused(y_hat, step=step), hand(y_hat, step=step), atol=1e-6)  # zero last layer


def test_the_separate_post_filter_never_sees_the_other_view():
    torch.manual_seed(0)
    dec = build_decoder("stereo-dct", {**ARGS, "joint": False, "side_information": False, "refiner_hidden": 8})
    assert dec.takes_quantiser_step and not dec.refiner.use_other_view
    analysis, _ = transform()
    dec.attach_analysis(list(analysis))
    torch.nn.init.normal_(dec.refiner.head.weight, std=0.1)  # a "trained" filter: it changes its view
    x = pair_with_disparity(6.0)
    y_hat, step, _ = code(x, steps=(0.4, 0.4))
    other = y_hat.clone()
    other[:, 0] = torch.flip(other[:, 0], dims=[-1])
    with torch.no_grad():
        a, b = dec(y_hat, step=step), dec(other, step=step)
        plain = dec(y_hat)
    assert torch.equal(a[:, 1], b[:, 1])  # the right view's output ignores the left view's bits
    assert not torch.allclose(a[:, 1], plain[:, 1], atol=1e-4)


def test_the_trained_bundle_carries_a_fusion_trained_on_its_training_scenes(stereo_bundle):
    bundle = load_bundle(stereo_bundle[0])
    assert bundle.decoder["args"]["refiner_hidden"] > 0 and bundle.training_config["model"]["refiner_hidden"] > 0
    report = bundle.evaluation["view_fusion"]
    assert report["scenes"] == bundle.extra["data_info"]["train_scenes"]
    assert report["history"][-1]["step"] == bundle.training_config["refiner_steps"]
    state = torch.load(bundle.file(bundle.decoder["weights"]), weights_only=True)
    assert state["refiner.head.weight"].abs().sum() > 0  # trained away from its zero start
    assert np.isfinite(report["history"][-1]["mse"])
