"""FID fixtures: a torch-fidelity InceptionV3 weights file with random (seeded) weights, made
at test time (nothing downloaded), and small real image crops from scikit-image's Motorcycle pair."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _inception_layers(m) -> list:
    """The named layers of torch-fidelity's FeatureExtractorInceptionV3, in its own block classes.

    Its constructor always loads weights (from the given file, or by download), so the test
    file is made from the same blocks; the constructor's strict ``load_state_dict`` then
    checks every key and shape, so a mismatch here fails the tests rather than passing.
    """
    import torch.nn as nn

    return [
        ("Conv2d_1a_3x3", m.BasicConv2d(3, 32, kernel_size=3, stride=2)),
        ("Conv2d_2a_3x3", m.BasicConv2d(32, 32, kernel_size=3)),
        ("Conv2d_2b_3x3", m.BasicConv2d(32, 64, kernel_size=3, padding=1)),
        ("Conv2d_3b_1x1", m.BasicConv2d(64, 80, kernel_size=1)),
        ("Conv2d_4a_3x3", m.BasicConv2d(80, 192, kernel_size=3)),
        ("Mixed_5b", m.InceptionA(192, pool_features=32)),
        ("Mixed_5c", m.InceptionA(256, pool_features=64)),
        ("Mixed_5d", m.InceptionA(288, pool_features=64)),
        ("Mixed_6a", m.InceptionB(288)),
        ("Mixed_6b", m.InceptionC(768, channels_7x7=128)),
        ("Mixed_6c", m.InceptionC(768, channels_7x7=160)),
        ("Mixed_6d", m.InceptionC(768, channels_7x7=160)),
        ("Mixed_6e", m.InceptionC(768, channels_7x7=192)),
        ("Mixed_7a", m.InceptionD(768)),
        ("Mixed_7b", m.InceptionE_1(1280)),
        ("Mixed_7c", m.InceptionE_2(2048)),
        ("fc", nn.Linear(2048, 1008)),
    ]


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory) -> Path:
    """A state_dict file for torch-fidelity's InceptionV3 with seeded random weights.

    Random weights make any FID figure meaningless as a quality measure; the tests use
    them only to exercise the real network, the real file loading and the distance.
    """
    import importlib
    import torch

    from training.image_metrics import _inception_v3_class

    module = importlib.import_module(_inception_v3_class().__module__)
    torch.manual_seed(0)
    net = torch.nn.Module()
    for name, layer in _inception_layers(module):
        net.add_module(name, layer)
    for layer in net.modules():
        if isinstance(layer, torch.nn.Conv2d):
            # He init keeps ReLU activations O(1) through the 40-odd layers (default init fades them).
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "random-inception-v3.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def motorcycle_crops() -> list[np.ndarray]:
    """Three 80×112 (3, H, W) crops of the Motorcycle pair: two regions of the left view, one of the right."""
    from ndsc.sources.images import skimage_pair

    pair = skimage_pair()
    return [np.ascontiguousarray(pair[v, :, 40 + 60 * k:120 + 60 * k, 30 + 100 * k:142 + 100 * k])
            for v, k in ((0, 0), (0, 1), (1, 1))]


@pytest.fixture(autouse=True)
def _inception_on_one_thread(one_torch_thread):
    """Inception on one thread (the shared fixture), for every FID test."""
