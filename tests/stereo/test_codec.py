import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ndsc.bundle import load_bundle
from ndsc.sources.images import find_pairs, pad_to_multiple, read_pair
from training.stereo_eval import StereoCodec, evaluate_pairs


def test_bundle_records_a_stereo_codec_split_by_scene(stereo_bundle, layouts_root):
    bundle = load_bundle(stereo_bundle[0])
    info = bundle.extra["data_info"]
    assert bundle.modality == "stereo" and [s.name for s in bundle.sources] == ["left", "right"]
    assert bundle.sources[0].input_shape == (3, 64, 64) and bundle.sources[0].latent_shape[1:] == (16, 16)  # stride 4
    splits = [set(info[k]) for k in ("train_scenes", "val_scenes", "test_scenes")]
    assert set.union(*splits) == {p.scene for p in find_pairs(layouts_root)}
    assert sum(len(s) for s in splits) == len(set.union(*splits))  # no scene in two splits


def test_onnx_encoder_matches_torch_on_a_whole_odd_sized_image(stereo_bundle, motorcycle):
    from training.train import load_checkpoint

    bundle_path, ckpt = stereo_bundle
    model = load_checkpoint(ckpt)
    pair = pad_to_multiple(motorcycle[:, :, :75, :101], (16, 16))  # 80×112: a size training never saw
    for i in range(2):
        sess = ort.InferenceSession(str(bundle_path / f"encoder_{i}.onnx"), providers=["CPUExecutionProvider"])
        (y_onnx,) = sess.run(None, {"x": pair[i][None]})
        with torch.no_grad():
            y_torch = model.g_a[i](torch.from_numpy(pair[i][None])).numpy()
        s = model.cfg.model.stride
        assert y_onnx.shape == (1, model.cfg.model.latent_channels, 80 // s, 112 // s)
        assert np.abs(y_onnx - y_torch).max() < 1e-4
        assert np.array_equal(np.rint(y_onnx), np.rint(y_torch))


def test_whole_images_round_trip_real_bits_and_report_rate_from_bytes(stereo_bundle, motorcycle, tmp_path):
    codec = StereoCodec(stereo_bundle[0])
    pair = np.ascontiguousarray(motorcycle[:, :, 100:175, 200:301])  # 75×101, padded to 80×112 inside
    payloads, seconds = codec.encode(pair)
    assert all(isinstance(p, bytes) and len(p) > 0 for p in payloads) and all(s > 0 for s in seconds)
    assert codec.quality == codec.bundle.default_quality  # a variable-rate bundle, at its default point
    for i, payload in enumerate(payloads):
        # The decoder's ANS decode gives back exactly the symbols the edge quantised: round(y · gain).
        stride = codec.bundle.sources[i].frame_stride
        padded = pad_to_multiple(pair[i], (stride, stride))
        gain = codec.bundle.sources[i].gain(codec.quality).reshape(-1, 1, 1)
        symbols = np.rint(codec.encoders[i].analysis(padded[None])[0] * gain).astype(np.int64)
        decoded = codec.runtime.entropy_decode(i, payload, pair[i].shape, codec.quality)
        assert decoded.shape == (symbols.shape[0], -(-75 // stride), -(-101 // stride))
        assert np.array_equal(decoded, symbols)
    x_hat = codec.decode(payloads, (75, 101))
    assert x_hat.shape == pair.shape and np.isfinite(x_hat).all()

    result = evaluate_pairs(stereo_bundle[0], [("crop", pair)], out_dir=tmp_path)
    views = result["pairs"][0]["views"]
    for i, v in enumerate(views):
        assert v["bytes"] == len(payloads[i])  # deterministic coder: same bytes again
        assert v["bpp"] == 8 * len(payloads[i]) / (75 * 101)
        assert v["bpd"] == pytest.approx(v["bpp"] / 3)
        assert 0 < v["ms_ssim"] <= 1 and np.isfinite(v["psnr_db"])
    assert result["total"]["bytes"] == sum(len(p) for p in payloads)
    assert result["fid"]["fid"] is None and "no Inception weights" in result["fid"]["reason"]


def test_side_by_side_png_holds_originals_above_reconstructions(stereo_bundle, layouts_root, tmp_path):
    from PIL import Image

    pairs = [(p.scene, read_pair(p)) for p in find_pairs(layouts_root) if p.scene == "flat"]
    result = evaluate_pairs(stereo_bundle[0], pairs, out_dir=tmp_path)
    png = np.asarray(Image.open(result["pairs"][0]["png"])).transpose(2, 0, 1).astype(np.float32)
    h, w = pairs[0][1].shape[-2:]
    assert png.shape == (3, 2 * h, 2 * w)
    assert np.array_equal(png[:, :h, :w], pairs[0][1][0]) and np.array_equal(png[:, :h, w:], pairs[0][1][1])
    codec = StereoCodec(stereo_bundle[0])
    recon = np.clip(np.rint(codec.decode(codec.encode(pairs[0][1])[0], (h, w))), 0, 255)
    assert np.array_equal(png[:, h:, :w], recon[0])


@pytest.mark.parametrize("arch, channels, stride", [("stereo-dct", 48, 4), ("stereo-shuffle", 8, 16),
                                                     ("stereo-attention", 8, 16)])
def test_decoder_fuses_views_only_when_joint(arch, channels, stride):
    from models.decoders import build_decoder

    def decoder(joint: bool) -> torch.nn.Module:
        args = {"n_sources": 2, "latent_channels": channels, "out_channels": 3, "hidden": 16, "joint": joint}
        torch.manual_seed(0)
        dec = build_decoder(arch, args).eval()
        for p in dec.parameters():  # stereo-dct's residual starts at zero: give every layer weight
            p.data.add_(0.05 * torch.randn_like(p))
        return dec

    torch.manual_seed(0)
    y = torch.randn(1, 2, channels, 3, 5)
    y_other = y.clone()
    y_other[:, 1] = torch.randn(channels, 3, 5)
    for joint in (True, False):
        dec = decoder(joint)
        with torch.no_grad():
            a, b = dec(y), dec(y_other)
        assert a.shape == (1, 2, 3, 3 * stride, 5 * stride)
        changed = not torch.allclose(a[:, 0], b[:, 0])
        assert changed == joint  # left output depends on the right latent only through fusion
    dec = decoder(True)
    with torch.no_grad():  # a missing right view: its latent cannot leak into the left output
        missing = torch.tensor([[1.0, 0.0]])
        assert torch.allclose(dec(y, missing)[:, 0], dec(y_other, missing)[:, 0])


def test_separate_baseline_has_no_fusion_and_beta_mi_zero(layouts_root, tmp_path):
    from app.cli import main

    assert main(["stereo-train", "--root", str(layouts_root), "--out", str(tmp_path / "sep"), "--preset",
                 "stereo-quick", "--steps", "2", "--separate"]) == 0
    b = load_bundle(tmp_path / "sep")
    assert b.training_config["beta_mi"] == 0.0
    assert b.training_config["model"]["joint_decoder"] is False and b.decoder["args"]["joint"] is False
    assert not any(k.startswith("fusion.") for k in torch.load(tmp_path / "sep" / "decoder.pt", weights_only=True))


def test_cli_eval_prints_the_table_and_writes_pngs(stereo_bundle, layouts_root, tmp_path, capsys):
    from app.cli import main

    assert main(["stereo-eval", str(stereo_bundle[0]), "--images", str(layouts_root / "mb2005"),
                 "--out", str(tmp_path), "--baselines"]) == 0
    out = capsys.readouterr().out
    assert "mb2005" in out and "BPD" in out and "WebP@rate" in out and "FID not computed" in out
    assert (tmp_path / "mb2005.png").is_file()
    assert main(["stereo-eval", str(stereo_bundle[0]), "--json"]) == 0  # the bundle's own held-out scenes
    result = json.loads(capsys.readouterr().out)
    assert [r["scene"] for r in result["pairs"]] == load_bundle(stereo_bundle[0]).extra["data_info"]["test_scenes"]


def test_block_transform_codec_starts_as_exact_transform_coding(motorcycle):
    from models.decoders_image import StereoTransformDecoder
    from models.layers import colour_dct_basis
    from models.encoders_image import BlockTransformEncoder

    basis = colour_dct_basis(8).view(192, -1)
    assert torch.allclose(basis @ basis.T, torch.eye(192), atol=1e-5)  # orthonormal: MSE is kept
    enc, dec = BlockTransformEncoder(3, 192, stride=8), StereoTransformDecoder(2, 192, 3, hidden=16)
    x = torch.from_numpy(np.ascontiguousarray(motorcycle[:, :, :64, :96]))
    with torch.no_grad():
        y = torch.stack([enc(x[i:i + 1])[0] for i in range(2)])[None]  # (1, 2, 192, 8, 12)
        assert torch.allclose(dec(y)[0] * 255, x, atol=1e-2)  # the untrained decoder inverts the encoder
    with pytest.raises(ValueError, match="3·stride²"):
        BlockTransformEncoder(3, 100, stride=8)
