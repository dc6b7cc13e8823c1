"""Compute devices: names the user may give (``auto``, ``cpu``, ``cuda``) and what they resolve to."""

from __future__ import annotations

from .errors import SpatimeINRError


def check_device(device: str) -> str:
    """Validate a device name (``auto``, ``cpu`` or ``cuda``) without resolving it."""
    if device not in ("auto", "cpu", "cuda"):
        raise SpatimeINRError(f"Unknown device {device!r}: choose auto, cpu or cuda.")
    return device


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without a GPU is refused.

    Resolved where the renderer is loaded (in each dask worker process on a cluster), not where
    the render is planned: a client without a GPU may drive workers that have one.
    """
    check_device(device)
    if device == "cpu":
        return "cpu"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing or broken
        has_cuda = False
    if device == "cuda" and not has_cuda:
        raise SpatimeINRError(
            "--device cuda was asked for but no CUDA GPU is available: use auto or cpu."
        )
    return "cuda" if has_cuda else "cpu"


def torch_device(device: str):
    """:func:`resolve_device` as a ``torch.device`` (torch is imported here, not at module level)."""
    import torch

    return torch.device(resolve_device(device))
