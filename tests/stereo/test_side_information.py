"""Decoder-side side information (models/side_information.py) on synthetic rectified pairs with known disparity."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.layers import colour_dct_basis
from models.side_information import block_analysis, block_synthesis, project_onto_cells, refine_views, \
    stereo_disparities, warp_rows

S = 4  # block side of the test transform (the shipped codec uses 8)


def texture(h: int = 48, w: int = 128, seed: int = 0) -> torch.Tensor:
    """(1, 3, h, w) smooth random colour texture in model units (0..1)."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(1, 3, h + 4, w + 4, generator=g), 5, stride=1)
    return (x - x.min()) / (x.max() - x.min())


def pair_with_disparity(d: float, width: int = 128) -> torch.Tensor:
    """(1, 2, 3, H, W): the right view is a texture, the left sees it shifted: left(x) = right(x − d)."""
    right = texture(w=width)
    left = warp_rows(right, torch.full(right.shape[-2:], d).unsqueeze(0), +1)
    return torch.stack([left, right], dim=1)


def transform() -> tuple[torch.Tensor, torch.Tensor]:
    """Both views' analysis (2, K, 3, s, s) and inverse (2, 3·s², K): the orthonormal colour DCT."""
    basis = colour_dct_basis(S)
    inverse = torch.linalg.inv(basis.reshape(basis.shape[0], -1))
    return torch.stack([basis, basis]), torch.stack([inverse, inverse])


def code(x: torch.Tensor, steps: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantise both views' coefficients with cell widths ``steps``: (y_hat, step (1, 2, K), plain decode)."""
    analysis, inverse = transform()
    k = analysis.shape[1]
    step = torch.tensor(steps).view(1, 2, 1).expand(1, 2, k).contiguous()
    y_hat = torch.stack([torch.round(block_analysis(x[:, i], analysis[i]) / steps[i]) * steps[i] for i in range(2)], 1)
    plain = torch.stack([block_synthesis(y_hat[:, i], inverse[i], S) for i in range(2)], 1)
    return y_hat, step, plain


@pytest.mark.parametrize("shifts, max_disparity", [((7.0, 5.5), 16), ((41.0, 37.5), 64)])  # full search, coarse to fine
def test_block_matching_finds_an_integer_and_a_half_pixel_shift_both_ways(shifts, max_disparity):
    for d, tolerance in zip(shifts, (0.05, 0.2)):
        x = pair_with_disparity(d, width=192)
        grey = x.mean(dim=2)
        (whole, sub), (back, back_sub) = stereo_disparities(grey[:, 0], grey[:, 1], max_disparity)
        margin = int(d) + 16
        inner = (slice(None), slice(8, -8), slice(margin, -8))  # away from the borders and the shifted-in columns
        inner_right = (slice(None), slice(8, -8), slice(8, -margin))  # the right view sees them d columns left
        if d.is_integer():
            assert (whole[inner] == d).float().mean() > 0.99 and (back[inner_right] == d).float().mean() > 0.99
        assert (sub[inner] - d).abs().median() <= tolerance
        assert (back_sub[inner_right] - d).abs().median() <= tolerance


def test_projection_puts_every_coefficient_in_its_cell_and_keeps_what_is_already_there():
    analysis, inverse = transform()
    x = texture()
    y_hat = torch.round(block_analysis(x, analysis[0]) / 0.3) * 0.3
    step = torch.full((1, y_hat.shape[1]), 0.3)
    noisy = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    projected = project_onto_cells(noisy, y_hat, step, analysis[0], inverse[0])
    c = block_analysis(projected, analysis[0])
    assert ((c - y_hat).abs() <= 0.15 + 1e-5).all()
    assert torch.allclose(project_onto_cells(projected, y_hat, step, analysis[0], inverse[0]), projected, atol=1e-5)
    assert torch.allclose(project_onto_cells(x, y_hat, step, analysis[0], inverse[0]), x, atol=1e-5)  # x is in its cells


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean())


def test_a_coarse_view_gains_from_a_fine_one_and_honours_its_own_cells():
    x = pair_with_disparity(6.0)
    y_hat, step, plain = code(x, steps=(0.02, 0.4))  # left fine, right coarse (a Wyner–Ziv pair)
    analysis, inverse = transform()
    refined = refine_views(plain, y_hat, step, analysis, inverse, torch.ones(1, 2))
    inner = (..., slice(8, -8), slice(8, -24))  # the right view's pixels the left one also sees
    assert mse(refined[:, 1][inner], x[:, 1][inner]) < 0.6 * mse(plain[:, 1][inner], x[:, 1][inner])  # > 2.2 dB
    assert mse(refined[:, 0], x[:, 0]) <= mse(plain[:, 0], x[:, 0]) * 1.05  # the fine view is not dragged down
    for i in range(2):  # the bits each view sent still hold
        c = block_analysis(refined[:, i], analysis[i])
        assert ((c - y_hat[:, i]).abs() <= 0.5 * step[0, i, 0] + 1e-4).all()


def test_a_missing_view_lends_nothing_and_is_left_as_estimated():
    x = pair_with_disparity(6.0)
    y_hat, step, plain = code(x, steps=(0.02, 0.4))
    analysis, inverse = transform()
    refined = refine_views(plain, y_hat, step, analysis, inverse, torch.tensor([[0.0, 1.0]]))
    assert torch.allclose(refined[:, 1], plain[:, 1], atol=1e-5)  # the centre of its cells: nothing to borrow
    assert torch.equal(refined[:, 0], plain[:, 0])


def test_stereo_dct_refines_only_when_given_cell_widths_and_needs_a_joint_pair():
    from models.decoders import build_decoder

    args = {"n_sources": 2, "latent_channels": 3 * S * S, "out_channels": 3, "hidden": 8, "joint": True}
    with pytest.raises(ValueError, match="joint"):
        build_decoder("stereo-dct", {**args, "joint": False, "side_information": True})
    torch.manual_seed(0)
    plain_dec = build_decoder("stereo-dct", args).eval()
    dec = build_decoder("stereo-dct", {**args, "side_information": True}).eval()
    dec.load_state_dict(plain_dec.state_dict(), strict=False)
    analysis, inverse = transform()
    dec.attach_analysis(list(analysis))
    assert torch.allclose(dec.analysis_inverse, inverse, atol=1e-5) and dec.takes_quantiser_step
    x = pair_with_disparity(6.0)
    y_hat, step, _ = code(x, steps=(0.02, 0.4))
    with torch.no_grad():
        assert torch.equal(dec(y_hat), plain_dec(y_hat))  # training never passes step: unchanged
        refined = dec(y_hat, step=step)
    assert mse(refined[:, 1], x[:, 1]) < mse(plain_dec(y_hat)[:, 1].detach(), x[:, 1])


def test_the_runtime_refines_each_view_inside_the_cells_of_its_own_point(stereo_bundle, motorcycle):
    """Through the real parts (ONNX encoders, ANS bytes, JointDecoderRuntime): views at different points,
    each reconstruction's coefficients (the edge's own encoder run on it) in the cells that view sent."""
    import numpy as np

    from ndsc.bundle import load_bundle
    from training.stereo_eval import StereoCodec

    bundle = load_bundle(stereo_bundle[0])
    assert bundle.decoder["args"]["side_information"]  # stereo-quick turns it on, as stereo-small does
    points = (bundle.quality_names[-1], bundle.quality_names[0])  # the left fine, the right coarse
    pair = motorcycle[..., 100:164, 200:296]  # a multiple of the stride: nothing padded
    codec = StereoCodec(stereo_bundle[0], quality=points)
    payloads, _ = codec.encode(pair)
    refined = codec.decode(payloads, pair.shape[-2:])
    codec.runtime.model.side_information, codec.runtime.model.refiner = False, None
    plain = codec.decode(payloads, pair.shape[-2:])
    assert not np.allclose(refined, plain, atol=1e-3)  # the other view was used
    for i, encoder in enumerate(codec.encoders):
        symbols = encoder.frame_symbols(pair[i]).reshape(-1, *bundle.sources[i].frame_latent_shape(pair[i].shape)[1:])
        y = encoder.analysis(refined[i][None])[0] * encoder.gain.reshape(-1, 1, 1)
        assert np.abs(y - symbols).max() <= 0.5 + 2e-3
