"""Weights (model.pt) and resumable training state (checkpoint.pt): tensors and plain containers
only, so both load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
from typing import Any

import torch

from .model_dir import ModelDir


def _bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(
    model_dir: ModelDir,
    state: dict[str, Any],
    weights: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor] | None = None,
    write_model: bool = True,
) -> None:
    """Write model.pt, then checkpoint.pt (it carries the current weights and the state).

    model.pt holds ``best`` (the weights with the best held-out PSNR so far) when given, else the
    current weights: what a renderer should use. It is written first, so that a directory with a
    checkpoint always has weights to render with, even when the process is killed between the
    two writes. ``write_model=False``: checkpoint.pt only (the caller writes the renderers'
    weights itself, first: :func:`save_weights`).
    """
    cpu = {k: v.detach().cpu() for k, v in weights.items()}
    if write_model:
        out = cpu if best is None else {k: v.detach().cpu() for k, v in best.items()}
        save_weights(model_dir, out)
    model_dir.write_atomic("checkpoint.pt", _bytes({**state, "model": cpu}))


def save_weights(model_dir: ModelDir, weights: dict[str, torch.Tensor]) -> None:
    """Write model.pt, the weights a renderer uses (atomically)."""
    cpu = {k: v.detach().cpu() for k, v in weights.items()}
    model_dir.write_atomic("model.pt", _bytes(cpu))


def load_weights(model_dir: ModelDir, device: str | torch.device = "cpu") -> dict:
    """The weights a renderer uses (model.pt); a clear error when the model is not trained yet."""
    path = model_dir.path / "model.pt"
    if not path.is_file():
        from ..core.errors import SpatimeINRError

        raise SpatimeINRError(
            f"{model_dir.path} has no trained weights (model.pt): train it first, or resume "
            "with --resume."
        )
    return torch.load(path, map_location=device, weights_only=True)


def load_state(model_dir: ModelDir) -> dict[str, Any] | None:
    p = model_dir.path / "checkpoint.pt"
    if not p.is_file():
        return None
    return torch.load(p, map_location="cpu", weights_only=True)
