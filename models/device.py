"""Which torch device a training run (``TrainConfig.device``, the study's ``device:``) or the fusion
decoder (``ndsc decoder --device``) uses: the one place that chooses.

``auto``: CUDA when ``torch.cuda.is_available()``, else the CPU. ``cpu``. ``cuda`` / ``cuda:N``:
that GPU; on a machine without CUDA the run falls back to the CPU with a logged warning, so one
config serves a GPU box and a laptop alike.
Whatever the device, a trained model leaves :func:`training.train.train` on the CPU: the
entropy coder, ONNX export and evaluation are CPU-only.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("ndsc.device")

CHOICES = "auto | cpu | cuda | cuda:N"


def resolve_device(requested: str | None = "auto", purpose: str = "training") -> torch.device:
    """The device a run that names ``requested`` uses (``purpose``: what it does there, for the warning).

    Raises:
        ValueError: not one of ``auto``, ``cpu``, ``cuda``, ``cuda:N``, or a CUDA index this
            machine does not have.
    """
    name = (requested or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {requested!r} ({CHOICES})") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"unsupported device {requested!r} ({CHOICES})")
    if not torch.cuda.is_available():
        log.warning("device %s requested but CUDA is not available: %s on cpu", requested, purpose)
        return torch.device("cpu")
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """``cpu`` or ``cuda:N (GPU name)``: where a run trained, for results and reports."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
