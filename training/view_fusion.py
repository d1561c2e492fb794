"""Train a stereo bundle's learned view fusion (:class:`models.view_fusion.ViewFusion`) after its codec.

The codec is frozen, so its outputs are computed once: every training scene, whole, is coded
through the bundle's real path (ONNX encoder, static-table ANS, the runtime's dequantisation)
at several pairs of quality points; the joint synthesis and the block matching run once per
pair of points. Training then draws aligned crops (on the transform's block grid) and runs on
them exactly what decoding runs after matching: the hand-made blend, the projection into the
view's cells, the network and the projection again, against the original (MSE). A bundle
without side information (the separate baseline) trains the same network on each view alone.

Typical use (``training.pipeline`` after export, or on an existing bundle)::

    train_view_fusion("runs/stereo/joint", full_pairs(cfg.data, "train"), FusionConfig(hidden=32))
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_encoder.encoder import EdgeEncoder
from fusion_decoder.runtime import JointDecoderRuntime
from models.side_information import blend_view, match_views, project_onto_cells, quantiser_noise
from ndsc.bundle import load_bundle, write_manifest


#: the decoder arguments (and ModelConfig fields) that shape the fusion network
REFINER_ARGS = ("refiner_hidden", "refiner_blocks", "refiner_coarse_blocks")


@dataclass
class FusionConfig:
    hidden: int = 32  # feature width of the network (0: no fusion)
    blocks: int = 3  # its residual blocks at half resolution ...
    coarse_blocks: int = 2  # ... and at quarter resolution
    steps: int = 1500  # Adam steps
    batch_size: int = 8  # crops per step
    crop: int = 96  # side of a training crop (a multiple of the transform's block)
    lr: float = 1e-3  # Adam learning rate (×0.1 for the last quarter of the steps)
    seed: int = 0  # crops and initialisation
    device: str = "cpu"  # torch device of the scenes' synthesis and matching and of the training (cpu | cuda)


def point_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The (left, right) quality points trained on: both views at each point, and each view at every
    point beside the other at the top one (the Wyner–Ziv pairs, both ways, so neither view is favoured)."""
    top = names[-1]
    return ([(q, q) for q in names] + [(top, q) for q in names[:-1]] + [(q, top) for q in names[:-1]])


@dataclass
class _Coded:
    """One training scene at one pair of points: what decoding has after synthesis and matching."""

    scene: int  # index into the originals
    x: torch.Tensor  # (2, 3, Hp, Wp) synthesis, model units
    y_hat: torch.Tensor  # (2, K, Hp/s, Wp/s)
    step: torch.Tensor  # (2, K)
    matches: list[tuple[torch.Tensor, torch.Tensor, int]]  # per view: disparity, consistent (Hp, Wp), direction


def code_scenes(bundle_path: str | Path, pairs: list[tuple[str, np.ndarray]], device: str = "cpu"
                ) -> tuple[list[torch.Tensor], list[_Coded]]:
    """Every scene coded at every pair of :func:`point_pairs`: originals (2, 3, H, W) in model units and
    the decoder's state after synthesis and matching, on ``device`` (the encoders run on the CPU: ONNX)."""
    bundle = load_bundle(bundle_path)
    names = list(bundle.quality_names)
    runtime = JointDecoderRuntime(bundle, device=device)
    model = runtime.model
    encoders = {(i, q): EdgeEncoder(bundle, i, quality=q) for i in range(2) for q in names}
    scale = float(bundle.decoder.get("output_scale", 1.0))
    originals, coded = [], []
    with torch.no_grad():  # not inference_mode: training reuses these tensors under autograd
        for k, (_, pair) in enumerate(pairs):
            shape = (pair.shape[1], *pair.shape[-2:])
            latents = {}
            for (i, q), enc in encoders.items():
                symbols = runtime.entropy_decode(i, enc.encode_frame(np.asarray(pair[i], np.float32)), shape, q)
                latents[i, q] = (torch.from_numpy(runtime.dequantise(i, symbols, q)).to(runtime.device),
                                 torch.from_numpy(runtime.cell_width(i, q)).to(runtime.device))
            originals.append(torch.from_numpy(np.asarray(pair, np.float32) / scale).to(runtime.device))
            for qa, qb in point_pairs(names):
                y_hat = torch.stack([latents[0, qa][0], latents[1, qb][0]])
                step = torch.stack([latents[0, qa][1], latents[1, qb][1]])
                x = model.synthesis(y_hat[None], torch.ones(1, 2, device=runtime.device))[0]
                matches = [(d[0], ok[0], direction) for d, ok, direction in match_views(x[None])] \
                    if model.side_information else []
                coded.append(_Coded(k, x, y_hat, step, matches))
    return originals, coded


def _batch(originals: list[torch.Tensor], coded: list[_Coded], crop: int, stride: int, size: int,
           rng: np.random.Generator) -> list[tuple[_Coded, int, int, int]]:
    """``size`` random (coded pair, view, top, left) with crops on the block grid inside the image."""
    out = []
    while len(out) < size:
        c = coded[rng.integers(len(coded))]
        h, w = originals[c.scene].shape[-2:]
        top = int(rng.integers(0, (h - crop) // stride + 1)) * stride
        left = int(rng.integers(0, (w - crop) // stride + 1)) * stride
        out.append((c, int(rng.integers(2)), top, left))
    return out


def fusion_loss(model: torch.nn.Module, originals: list[torch.Tensor],
                picks: list[tuple[_Coded, int, int, int]], crop: int) -> torch.Tensor:
    """Mean squared error (8-bit units) of the decoded crops after the learned fusion."""
    s = model.stride
    own, estimate, side, weight, ok, y_hat, step, noise, noise_other, target = ([] for _ in range(10))
    for c, i, top, left in picks:
        rows, cols = slice(top, top + crop), slice(left, left + crop)
        j = 1 - i
        n = quantiser_noise(c.step[None])[0]  # (2,)
        y_hat.append(c.y_hat[i, :, top // s:(top + crop) // s, left // s:(left + crop) // s])
        step.append(c.step[i])
        noise.append(n[i])
        noise_other.append(n[j])
        target.append(originals[c.scene][i, :, rows, cols])
        own.append(c.x[i, :, rows, cols])
        if model.side_information:
            # the blend on the crop's rows, whole width (the warp reads the other view beyond the crop)
            disparity, consistent, direction = c.matches[i]
            band_blend, band_side, band_weight = blend_view(
                c.x[None, i, :, rows], c.x[None, j, :, rows], disparity[None, rows], consistent[None, rows],
                direction, n[i:i + 1], n[j:j + 1], torch.ones(1, device=c.x.device))
            estimate.append(band_blend[0, :, :, cols])
            side.append(band_side[0, :, :, cols])
            weight.append(band_weight[0, :, :, cols])
            ok.append(consistent[rows, cols])
    stack = torch.stack
    own, y_hat, step, noise, target = stack(own), stack(y_hat), stack(step), stack(noise), stack(target)
    analysis, inverse = model.analysis, model.analysis_inverse
    views = [i for _, i, _, _ in picks]
    a, inv = analysis[views], inverse[views]  # each crop's view's transform
    if model.side_information:
        base = _project(stack(estimate), y_hat, step, a, inv)
        correction = model.refiner(own, noise, base, stack(side), stack(weight), stack(ok), stack(noise_other),
                                   torch.ones(len(picks), device=own.device))
    else:
        base = own
        correction = model.refiner(own, noise)
    out = _project(base + correction, y_hat, step, a, inv)
    return (out - target).pow(2).mean() * 255.0 ** 2


def _project(x: torch.Tensor, y_hat: torch.Tensor, step: torch.Tensor, analysis: torch.Tensor,
             inverse: torch.Tensor) -> torch.Tensor:
    """:func:`project_onto_cells` for a batch whose crops come from either view (per-crop transforms)."""
    return torch.cat([project_onto_cells(x[b:b + 1], y_hat[b:b + 1], step[b:b + 1], analysis[b], inverse[b])
                      for b in range(len(x))])


def train_view_fusion(bundle_path: str | Path, pairs: list[tuple[str, np.ndarray]], cfg: FusionConfig,
                      log_every: int = 100, coded: tuple[list[torch.Tensor], list[_Coded]] | None = None,
                      restart: bool = False) -> dict[str, Any]:
    """Train the bundle's fusion network (its decoder must have ``refiner_hidden`` = ``cfg.hidden``, or
    none yet: it is added) on whole training ``pairs``, and write it into the bundle (decoder weights
    and manifest; the bundle gets a new id). ``coded``: :func:`code_scenes` of these pairs, if already
    computed. ``restart``: a bundle's trained fusion starts again from the initialisation a build gives
    it (else training goes on from its weights). Returns timings and the training loss."""
    path = Path(bundle_path)
    _with_refiner(path, cfg.hidden, cfg.blocks, cfg.coarse_blocks, restart)
    t0 = time.time()
    originals, coded_pairs = coded or code_scenes(path, pairs, cfg.device)
    coding_seconds = time.time() - t0
    bundle = load_bundle(path)
    model = JointDecoderRuntime(bundle, device=cfg.device).model
    history = fit_fusion(model, originals, coded_pairs, cfg, log_every)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path / bundle.decoder["weights"])
    report = {"config": asdict(cfg), "coding_seconds": round(coding_seconds, 1),
              "train_seconds": round(time.time() - t0 - coding_seconds, 1), "history": history,
              "scenes": [s for s, _ in pairs]}
    _rewrite_manifest(path, {"view_fusion": report}, steps=cfg.steps)
    return report


def fit_fusion(model: torch.nn.Module, originals: list[torch.Tensor], coded: list[_Coded], cfg: FusionConfig,
               log_every: int = 100) -> list[dict[str, float]]:
    """Adam on ``model.refiner`` alone (the rest of the decoder frozen); returns the loss history."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model.eval()
    model.requires_grad_(False)
    model.refiner.requires_grad_(True)
    model.refiner.train()
    # crops fit every scene (small test scenes included), on the block grid
    crop = min([cfg.crop] + [min(o.shape[-2:]) // model.stride * model.stride for o in originals])
    optimiser = torch.optim.Adam(model.refiner.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, [int(0.75 * cfg.steps)], 0.1)
    history, running = [], []
    for step in range(cfg.steps):
        loss = fusion_loss(model, originals, _batch(originals, coded, crop, model.stride, cfg.batch_size, rng), crop)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "mse": float(np.mean(running))})
            print(f"fusion step {step + 1}: mse {history[-1]['mse']:.3f} (8-bit²)", flush=True)
            running = []
    model.eval()
    return history


def _with_refiner(path: Path, hidden: int, blocks: int, coarse_blocks: int, restart: bool = False) -> None:
    """Give a bundle's decoder a (zero-initialised) fusion network of this shape if it has none (or
    another, or ``restart``), with the encoders' transforms that the projection into cells needs."""
    bundle = load_bundle(path)
    have = bundle.decoder["args"]
    if (have.get("refiner_hidden"), have.get("refiner_blocks"), have.get("refiner_coarse_blocks")) == \
            (hidden, blocks, coarse_blocks) and not restart:
        return
    from onnx import load as load_onnx, numpy_helper

    from models.decoders import build_decoder

    args = {**bundle.decoder["args"], "refiner_hidden": hidden, "refiner_blocks": blocks,
            "refiner_coarse_blocks": coarse_blocks}
    model = build_decoder(bundle.decoder["arch"], args)
    state = torch.load(bundle.file(bundle.decoder["weights"]), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("refiner.")}  # a new network starts afresh
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not (k.startswith("refiner.") or k.startswith("analysis")) for k in missing):
        raise ValueError(f"{path}: decoder weights do not fit a refiner: missing {missing}, unexpected {unexpected}")
    # the encoders' block transforms, as the ONNX files hold them (the only 4-D initializer)
    weights = [torch.from_numpy(next(numpy_helper.to_array(t) for t in load_onnx(bundle.file(s.encoder_file))
                                     .graph.initializer if len(t.dims) == 4).copy()) for s in bundle.sources]
    model.attach_analysis(weights)
    torch.save(model.state_dict(), path / bundle.decoder["weights"])
    _rewrite_manifest(path, {}, decoder={**bundle.decoder, "args": args})


def _rewrite_manifest(path: Path, evaluation: dict[str, Any], decoder: dict[str, Any] | None = None,
                      steps: int | None = None) -> str:
    """Rewrite the manifest over the bundle's current files (new hashes, new id); the training config
    records the fusion's width (``decoder``) and steps as a build with them would."""
    bundle = load_bundle(path, verify_files=False)
    config = dict(bundle.training_config)
    if decoder is not None and config.get("model"):
        config["model"] = {**config["model"], **{k: decoder["args"][k] for k in REFINER_ARGS}}
    if steps is not None:
        config["refiner_steps"] = steps
    return write_manifest(path, modality=bundle.modality, sources=bundle.sources, sample_rate=bundle.sample_rate,
                          decoder=decoder or bundle.decoder, training_config=config,
                          evaluation={**bundle.evaluation, **evaluation}, extra=bundle.extra)
