"""Export a trained codec as a model bundle: frozen tables, ONNX encoders, decoder weights.

Export refuses to skip the freeze step: tables are always rebuilt from the priors here,
and the ONNX encoders are checked against torch on real windows before the manifest
is written.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort
import torch

from ndsc.bundle import QualityPoint, SourceInfo, load_bundle, write_manifest
from models.codec import DistributedCodec
from training.data import JointDataset

ONNX_OPSET = 17
#: ONNX Runtime and torch floats may differ by this much (in latent units, relative to the
#: largest latent magnitude once it exceeds 1: float32 resolution grows with magnitude);
#: rounding then agrees except for values within this distance of a half-integer.
FLOAT_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported encoders do not reproduce torch's symbols."""


def export_encoder_onnx(encoder: torch.nn.Module, input_shape: tuple[int, ...], path: Path,
                        dynamic_spatial: bool | None = None) -> None:
    """Export one analysis transform with a dynamic batch axis (input "x", output "y").

    ``dynamic_spatial`` (default: the encoder's ``fully_convolutional`` attribute) also makes
    every axis after the channel axis dynamic, so one graph encodes crops and whole frames.
    """
    encoder = encoder.eval()
    example = torch.zeros(2, *input_shape)
    if dynamic_spatial is None:
        dynamic_spatial = bool(getattr(encoder, "fully_convolutional", False))
    axes = {0: "batch", **({d: f"s{d}" for d in range(2, len(input_shape) + 1)} if dynamic_spatial else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter handles these static conv nets reliably and fast.
        torch.onnx.export(encoder, (example,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes}, opset_version=ONNX_OPSET)


def frame_stride(encoder: torch.nn.Module, input_shape: tuple[int, ...],
                 latent_shape: tuple[int, ...]) -> int | None:
    """The stride recorded in the manifest for a fully convolutional image encoder (else None).

    Its ONNX graph has dynamic H/W (:func:`export_encoder_onnx`), so serving may send whole
    frames of any size instead of tiles of ``input_shape``.
    """
    if not getattr(encoder, "fully_convolutional", False) or len(input_shape) != 3:
        return None
    strides = {input_shape[d] // latent_shape[d] for d in (1, 2)}
    if len(strides) != 1 or any(input_shape[d] % latent_shape[d] for d in (1, 2)):
        return None  # not a plain stride (never seen): keep tile mode
    return strides.pop()


def onnx_parity(model: DistributedCodec, bundle_dir: Path, windows: np.ndarray) -> dict[str, Any]:
    """Compare ONNX Runtime and torch encoders on ``windows`` (n, N, C, *S).

    Returns per-source max float difference and count of differing symbols.
    Variable-rate codecs are compared at their finest operating point (the largest gains, where
    a float difference is most likely to change a symbol), as the edge computes it:
    ``float32(y) · float32(gain)``.
    """
    report = []
    with torch.no_grad():
        y_torch = model.analysis(torch.from_numpy(windows)).numpy()
    finest = model.gains().detach().max(dim=0).values.numpy() if model.n_points else None  # (N, M)
    for i in range(model.n_sources):
        sess = ort.InferenceSession(str(bundle_dir / f"encoder_{i}.onnx"), providers=["CPUExecutionProvider"])
        (y_onnx,) = sess.run(None, {"x": np.ascontiguousarray(windows[:, i])})
        yt, yo = y_torch[:, i], y_onnx
        if finest is not None:
            g = finest[i].reshape(1, -1, *([1] * (yt.ndim - 2)))
            yt, yo = yt * g, yo * g
        report.append(compare_latents(yt, yo))
    return {"sources": report, "windows": int(windows.shape[0])}


def compare_latents(y_torch: np.ndarray, y_onnx: np.ndarray) -> dict[str, Any]:
    """Float and symbol agreement of two computations of the same latents.

    A symbol may differ only where the float value lies within the tolerance of a half-integer
    (a tie the two float paths break differently, ``symbol_ties``). The decoder never
    recomputes symbols (it reads the edge's bytes), so a tie changes nothing downstream but the
    manifest's torch-computed test figures, by one step at that position. Any other differing
    symbol (``unexplained_symbol_mismatches``) or a float difference over the tolerance means
    the exported graph computes something else, and export refuses it.
    """
    tolerance = FLOAT_TOLERANCE * max(1.0, float(np.abs(y_torch).max(initial=0.0)))
    differ = np.rint(y_onnx) != np.rint(y_torch)
    near_tie = np.abs(np.abs(y_torch - np.floor(y_torch)) - 0.5) <= tolerance
    return {
        "max_abs_float_diff": float(np.abs(y_onnx - y_torch).max(initial=0.0)),
        "float_tolerance": tolerance,
        "symbol_mismatches": int(differ.sum()),
        "symbol_ties": int((differ & near_tie).sum()),
        "unexplained_symbol_mismatches": int((differ & ~near_tie).sum()),
        "symbols": int(y_onnx.size),
    }


def quality_points(model: DistributedCodec) -> list[tuple[QualityPoint, ...]]:
    """Per source, its frozen operating points (gains as the float32 values training used, tables)."""
    if not model.n_points:
        return [() for _ in range(model.n_sources)]
    gains = model.gains().detach().numpy()  # (Q, N, M) float32
    return [tuple(QualityPoint(name=name, gain=tuple(float(g) for g in gains[q, i]),
                               tables=tuple(model.priors[q * model.n_sources + i].tables))
                  for q, name in enumerate(model.quality_names))
            for i in range(model.n_sources)]


def export_bundle(model: DistributedCodec, dataset: JointDataset, out_dir: str | Path,
                  evaluation: dict[str, Any] | None = None, parity_windows: int = 64) -> Path:
    """Freeze, export and verify; returns the bundle directory."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model = model.eval()
    model.update()
    tables = model.tables()  # the default point's, for a variable-rate codec
    points = quality_points(model)
    default = model.quality_names[model.quality_index(None)] if model.n_points else None
    latent_shape = model.latent_shape()
    sources = []
    for i in range(model.n_sources):
        export_encoder_onnx(model.g_a[i], model.input_shape, out / f"encoder_{i}.onnx")
        sources.append(SourceInfo(
            name=dataset.source_names[i], channel_names=tuple(dataset.channel_names[i]),
            input_shape=model.input_shape, latent_shape=latent_shape, encoder_file=f"encoder_{i}.onnx",
            tables=tuple(tables[i]), frame_stride=frame_stride(model.g_a[i], model.input_shape, latent_shape),
            quality_points=points[i], default_quality=default,
        ))
    torch.save(model.g_s.state_dict(), out / "decoder.pt")
    parity = onnx_parity(model, out, dataset.test[:parity_windows])
    bad = [s for s in parity["sources"]
           if s["unexplained_symbol_mismatches"] or s["max_abs_float_diff"] > s["float_tolerance"]]
    if bad:
        raise ExportError(f"ONNX encoders disagree with torch: {json.dumps(parity)}")
    write_manifest(
        out, modality=dataset.modality, sources=sources, sample_rate=dataset.sample_rate,
        decoder={"arch": model.cfg.model.decoder, "args": model.decoder_args, "weights": "decoder.pt",
                 "output_scale": model.output_scale},
        training_config=model.cfg.to_dict(), evaluation={**(evaluation or {}), "onnx_parity": parity},
        extra={"edge_source": dataset.edge_source, "data_info": dataset.info},
    )
    load_bundle(out)  # round-trip check of what was written
    return out


def attach_evaluation(bundle_dir: str | Path, evaluation: dict[str, Any]) -> str:
    """Add evaluation figures to a bundle's manifest; returns the new bundle id.

    The id hashes the manifest, so the figures a bundle claims are covered by its id.
    """
    bundle = load_bundle(bundle_dir)
    return rewrite_manifest(bundle_dir, evaluation={**bundle.evaluation, **evaluation})


def rewrite_manifest(bundle_dir: str | Path, *, sources: Sequence[SourceInfo] | None = None,
                     evaluation: dict[str, Any] | None = None) -> str:
    """Write a bundle's manifest again with new ``sources`` and/or ``evaluation`` (the rest kept);
    returns the new bundle id (the files are unchanged, their hashes too)."""
    bundle = load_bundle(bundle_dir)
    return write_manifest(
        bundle.path, modality=bundle.modality, sources=bundle.sources if sources is None else sources,
        sample_rate=bundle.sample_rate, decoder=bundle.decoder, training_config=bundle.training_config,
        evaluation=bundle.evaluation if evaluation is None else evaluation, extra=bundle.extra,
    )
