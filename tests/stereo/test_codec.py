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
    assert bundle.sources[0].input_shape == (3, 64, 64) and bundle.sources[0].latent_shape[1:] == (4, 4)
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
        assert y_onnx.shape == (1, model.cfg.model.latent_channels, 5, 7)
        assert np.abs(y_onnx - y_torch).max() < 1e-4
        assert np.array_equal(np.rint(y_onnx), np.rint(y_torch))


def test_whole_images_round_trip_real_bits_and_report_rate_from_bytes(stereo_bundle, motorcycle, tmp_path):
    codec = StereoCodec(stereo_bundle[0])
    pair = np.ascontiguousarray(motorcycle[:, :, 100:175, 200:301])  # 75×101, padded to 80×112 inside
    payloads, seconds = codec.encode(pair)
    assert all(isinstance(p, bytes) and len(p) > 0 for p in payloads) and all(s > 0 for s in seconds)
    for i, payload in enumerate(payloads):
        # The decoder's ANS decode gives back exactly the symbols the edge quantised.
        padded = pad_to_multiple(pair[i], (16, 16))
        symbols = np.rint(codec.encoders[i].analysis(padded[None])[0]).astype(np.int64)
        decoded = codec.runtime.coders[i].decode(payload, 5 * 7).reshape(symbols.shape)
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


def test_decoder_fuses_views_only_when_joint():
    from models.decoders_image import StereoAttentionDecoder

    torch.manual_seed(0)
    y = torch.randn(1, 2, 8, 3, 5)
    y_other = y.clone()
    y_other[:, 1] = torch.randn(8, 3, 5)
    for joint in (True, False):
        dec = StereoAttentionDecoder(2, 8, 3, hidden=16, joint=joint).eval()
        with torch.no_grad():
            a, b = dec(y), dec(y_other)
        assert a.shape == (1, 2, 3, 48, 80)
        changed = not torch.allclose(a[:, 0], b[:, 0])
        assert changed == joint  # left output depends on the right latent only through fusion
    dec = StereoAttentionDecoder(2, 8, 3, hidden=16, joint=True).eval()
    with torch.no_grad():  # a missing right view: its latent cannot leak into the left output
        missing = torch.tensor([[1.0, 0.0]])
        assert torch.allclose(dec(y, missing)[:, 0], dec(y_other, missing)[:, 0])


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
