"""Training loop: rate–distortion + β_MI·MI, alternating or joint optimisation.

Read top to bottom: build data and model, then for each step draw a batch, compute
the loss terms, step the optimisers, log. The MI critic always *maximises* its bound
on detached latents (so it stays an estimate whatever the sign of β_MI); encoders see
−β_MI·Î in their loss.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.codec import DistributedCodec
from models.config import TrainConfig
from training.data import JointDataset, build_dataset
from models.device import describe, resolve_device
from training.mi import PairwiseMI

LN2 = math.log(2.0)
log = logging.getLogger("ndsc.train")


@dataclass
class TrainResult:
    """A trained model (on the CPU) with its data, config, training history and where it trained."""

    model: DistributedCodec
    dataset: JointDataset
    config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    mi: PairwiseMI | None = None
    #: the device the steps ran on (``cpu`` or ``cuda:N (GPU name)``), not the one requested
    device: str = "cpu"


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def loss_terms(model: DistributedCodec, out: dict[str, Any], x: torch.Tensor,
               mi_value: torch.Tensor, cfg: TrainConfig,
               channel_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Σ_i MSE_i, Σ_i bits-per-sample_i, and the total loss (reads only ``out``).

    ``channel_weights`` (N, C) multiply each channel's squared error (lead-variance weighting).
    A variable-rate codec weighs each window's terms by its own point's λ: the loss is
    Σ_b (D_b / λ_b + R_b) · λ_mean / B, so every point sits on its own R–D slope and the
    gradient scale does not depend on which points a batch drew.
    """
    samples = float(np.prod(x.shape[2:]))  # values per source window
    err = weighted_squared_error(out["x_hat"], x, channel_weights)
    dist_b = err.mean(dim=tuple(range(2, x.dim()))).sum(dim=1)  # (B,): Σ_i MSE_i of each window
    bits = -torch.log(out["likelihoods"]).sum(dim=tuple(range(2, out["likelihoods"].dim()))) / LN2  # (B, N)
    rate_b = (bits / samples).sum(dim=1)  # (B,)
    distortion, rate = dist_b.mean(), rate_b.mean()
    if model.n_points:
        lam = torch.tensor(model.quality_lambdas, device=x.device)
        lam_b = lam[out["quality"]]
        total = (dist_b / lam_b + rate_b).mean() * lam.mean() - cfg.beta_mi * mi_value
    else:
        total = distortion + cfg.lmbda * rate - cfg.beta_mi * mi_value
    return {"loss": total, "distortion": distortion, "rate": rate, "mi": mi_value}


def weighted_squared_error(x_hat: torch.Tensor, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """(x̂ − x)² of (B, N, C, *S), each channel's scaled by ``weights`` (N, C) when given."""
    err = (x_hat - x) ** 2
    if weights is not None:
        err = err * weights.view(1, *weights.shape, *([1] * (x.dim() - 3)))
    return err


def channel_weights_for(cfg: TrainConfig, train_windows: np.ndarray) -> torch.Tensor | None:
    """(N, C) distortion weights: 1 / each channel's variance over the training windows (mean 1)."""
    if cfg.distortion_weighting == "none":
        return None
    if cfg.distortion_weighting != "lead-variance":
        raise ValueError(f"unknown distortion_weighting {cfg.distortion_weighting!r} (none | lead-variance)")
    axes = (0, *range(3, train_windows.ndim))
    centred = train_windows - train_windows.mean(axis=tuple(range(3, train_windows.ndim)), keepdims=True)
    var = np.maximum((centred.astype(np.float64) ** 2).mean(axis=axes), 1e-12)
    w = 1.0 / var
    return torch.from_numpy((w / w.mean()).astype(np.float32))


def transform_parameters(model: DistributedCodec) -> list[torch.nn.Parameter]:
    """The linear analysis (``transform``) and synthesis (``synthesis``) weights of a lapped codec."""
    params = [p for g in model.g_a for name, p in g.named_parameters() if name.startswith("transform.")]
    params += [p for name, p in model.g_s.named_parameters() if name.startswith("synthesis.")]
    if not params:
        raise ValueError(f"freeze_transform: encoder {model.cfg.model.encoder!r} / decoder "
                         f"{model.cfg.model.decoder!r} have no lapped transform to freeze")
    return params


def _dropout_mask(b: int, n: int, p: float, gen: torch.Generator) -> torch.Tensor | None:
    if p <= 0:
        return None
    keep = (torch.rand(b, n, generator=gen) >= p).float()
    keep[keep.sum(dim=1) == 0, 0] = 1.0  # never drop every source of a window
    return keep


def train(cfg: TrainConfig, dataset: JointDataset | None = None, checkpoint: str | Path | None = None) -> TrainResult:
    """Train a distributed codec on ``cfg.device``; optionally save a self-describing checkpoint.

    The returned model (and MI critic) are on the CPU whatever device trained them, ready for
    ``update``/``compress``, export and evaluation. On the CPU the run is bit-identical to
    one without a device option: batches and dropout masks are drawn from the same CPU
    generator in the same order, then moved.
    """
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data = dataset if dataset is not None else build_dataset(cfg.data)
    model = DistributedCodec(data.n_sources, data.window_shape, cfg)
    if cfg.derived_channel_tolerance > 0:
        from training import lead_derivation

        derived = lead_derivation.initialise(model, data.train, cfg.derived_channel_tolerance)
        for line in lead_derivation.describe(derived, [list(c) for c in data.channel_names]):
            log.info("derived channel at the start: %s", line)
    if cfg.freeze_transform:
        for p in transform_parameters(model):
            p.requires_grad_(False)
    latent_shape = model.latent_shape()
    mi_dim = latent_shape[0] if cfg.mi_pairs == "positions" else int(np.prod(latent_shape))
    # β_MI = 0 without monitoring: no critic at all (it would cost a forward and backward per step).
    wants_mi = data.n_sources > 1 and (cfg.beta_mi != 0 or cfg.mi_monitor)
    mi = PairwiseMI(data.n_sources, mi_dim, cfg.mi_estimator, cfg.mi_pairs) if wants_mi else None
    model.to(device)
    if mi is not None:
        mi.to(device)

    enc_opt = torch.optim.Adam(_encoder_groups(model, cfg), lr=cfg.lr)
    # A frozen linear decoder (freeze_transform, no fusion network) has nothing left to learn.
    dec_params = [p for p in model.decoder_parameters() if p.requires_grad]
    dec_opt = torch.optim.Adam(dec_params, lr=cfg.lr) if dec_params else None
    optimisers = [opt for opt in (enc_opt, dec_opt) if opt is not None]
    critic_opt = torch.optim.Adam(mi.parameters(), lr=cfg.critic_lr) if mi is not None else None
    decay_step = int(cfg.lr_decay_at * cfg.steps)

    train_x = torch.from_numpy(data.train)  # stays on the CPU: each batch is indexed there, then moved
    weights = channel_weights_for(cfg, data.train)
    if weights is not None:
        weights = weights.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    pending: list[dict[str, torch.Tensor]] = []  # loss terms not yet read back (a read waits for the GPU)
    bar = _progress(cfg)
    start = time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        if step == decay_step:
            for opt in optimisers:
                for group in opt.param_groups:
                    group["lr"] *= 0.1
        idx = torch.randint(0, train_x.shape[0], (cfg.batch_size,), generator=gen)
        x = train_x[idx]
        if cfg.amplitude_jitter > 0:  # one factor per window: the leads keep their relations
            x = x * torch.exp(cfg.amplitude_jitter * torch.randn(x.shape[0], *([1] * (x.dim() - 1)), generator=gen))
        x = x.to(device)
        present = _dropout_mask(x.shape[0], data.n_sources, cfg.source_dropout, gen)
        if present is not None:
            present = present.to(device)
        quality = torch.randint(0, model.n_points, (x.shape[0],), generator=gen).to(device) if model.n_points else None

        if cfg.optimisation == "joint":
            terms = _step(model, mi, x, present, cfg, optimisers, quality=quality, weights=weights)
        elif cfg.optimisation == "alternating":
            for _ in range(cfg.alt_encoder_steps):  # encoders + priors, decoder frozen
                terms = _step(model, mi, x, present, cfg, [enc_opt], freeze=model.decoder_parameters(),
                              quality=quality, weights=weights)
            for _ in range(cfg.alt_decoder_steps if dec_opt is not None else 0):  # decoder, encoders frozen
                terms = _decoder_step(model, x, present, dec_opt, quality, weights) | {
                    k: v for k, v in terms.items() if k != "distortion"}
        else:
            raise ValueError(f"unknown optimisation {cfg.optimisation!r} (alternating | joint)")

        if mi is not None and critic_opt is not None:
            with torch.no_grad():
                y_detached = model.analysis(x)
            critic_opt.zero_grad()
            (-mi(y_detached)).backward()
            critic_opt.step()

        pending.append(terms)
        show = bar is not None and step % 20 == 0
        if show or len(pending) >= 50:
            _read_back(pending, history)
        if bar is not None:
            bar.update(1)
            if show:
                record = history[-1]
                bar.set_postfix(loss=f"{record['loss']:.4f}", D=f"{record['distortion']:.4f}",
                                R=f"{record['rate']:.3f}", MI=f"{record['mi']:.3f}")
    _read_back(pending, history)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.to("cpu")
    if mi is not None:
        mi.to("cpu")
    result = TrainResult(model.eval(), data, cfg, history, seconds, mi, describe(device))
    if checkpoint is not None:
        save_checkpoint(result, checkpoint)
    return result


def _encoder_groups(model: DistributedCodec, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The encoder side's Adam parameter groups: the priors at ``cfg.prior_lr`` when set, the rest at ``cfg.lr``."""
    params = [p for p in model.encoder_parameters() if p.requires_grad]
    if cfg.prior_lr is None:
        return [{"params": params}]
    prior_ids = {id(p) for p in model.priors.parameters()}
    return [{"params": [p for p in params if id(p) not in prior_ids]},
            {"params": [p for p in params if id(p) in prior_ids], "lr": cfg.prior_lr}]


def _read_back(pending: list[dict[str, torch.Tensor]], history: list[dict[str, float]]) -> None:
    """Move ``pending`` loss terms into ``history`` as floats (batched: each read syncs with a GPU)."""
    history.extend({k: float(v) for k, v in terms.items()} for terms in pending)
    pending.clear()


def _step(model, mi, x, present, cfg, optimisers, freeze=(), quality=None, weights=None) -> dict[str, torch.Tensor]:
    for p in freeze:
        p.requires_grad_(False)
    for opt in optimisers:
        opt.zero_grad()
    out = model(x, present, quality)
    mi_value = mi(out["y"]) if (mi is not None and cfg.beta_mi != 0) else x.new_zeros(())
    terms = loss_terms(model, out, x, mi_value, cfg, weights)
    terms["loss"].backward()
    for opt in optimisers:
        opt.step()
    for p in freeze:
        p.requires_grad_(True)
    if mi is not None and cfg.beta_mi == 0:
        with torch.no_grad():
            terms["mi"] = mi(out["y"].detach())
    return {k: v.detach() for k, v in terms.items()}


def _decoder_step(model, x, present, dec_opt, quality=None, weights=None) -> dict[str, torch.Tensor]:
    dec_opt.zero_grad()
    with torch.no_grad():
        y = model.analysis(x)
        gain = model.point_gain(quality, y.dim()) if model.n_points else None
        if gain is not None:
            y = y * gain
        y_hat = torch.round(y) if model.cfg.decoder_quantisation == "ste" else y + torch.empty_like(y).uniform_(-0.5, 0.5)
        if gain is not None:
            y_hat = y_hat / gain
    x_hat = model.synthesis(y_hat, present)
    distortion = weighted_squared_error(x_hat, x, weights).mean(dim=(0, *range(2, x.dim()))).sum()
    distortion.backward()
    dec_opt.step()
    return {"distortion": distortion.detach()}


def _progress(cfg: TrainConfig):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    points = cfg.model.quality_lambdas
    rate = f"{len(points)} quality points λ={max(points):g}…{min(points):g}" if points else f"λ={cfg.lmbda}"
    # tqdm shows steps/s and the ETA; the postfix the loss terms (D: distortion, R: bits/sample summed over nodes)
    return tqdm(total=cfg.steps, desc=f"train {cfg.data.kind} {rate} β_MI={cfg.beta_mi}", leave=False)


def save_checkpoint(result: TrainResult, path: str | Path) -> None:
    """A checkpoint that describes itself: config, shapes and weights."""
    torch.save({
        "config": result.config.to_dict(),
        "n_sources": result.model.n_sources,
        "input_shape": list(result.model.input_shape),
        "model": result.model.state_dict(),
        "history_tail": result.history[-50:],
        "seconds": result.seconds,
        "device": result.device,
    }, Path(path))


def load_checkpoint(path: str | Path) -> DistributedCodec:
    """Rebuild the model from a checkpoint written by :func:`save_checkpoint`."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = DistributedCodec(ckpt["n_sources"], tuple(ckpt["input_shape"]), cfg)
    model.load_state_dict(ckpt["model"])
    return model.eval()
