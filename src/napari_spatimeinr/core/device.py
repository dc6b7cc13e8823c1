"""Compute devices: names the user may give (``auto``, ``cpu``, ``cuda``, ``mps``) and what they
resolve to.

This is the one place that decides: ``auto`` picks a CUDA GPU, else an Apple GPU (``mps``), else the
CPU. Training and rendering run in float32 on ``mps`` (the bfloat16 autocast of the training loop is
for CUDA only). An operation the Apple GPU lacks falls back to the CPU where PyTorch can do so
(``PYTORCH_ENABLE_MPS_FALLBACK=1``, set by the package on macOS before torch is imported unless the
user set it); where it cannot, :func:`device_errors` says so in one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import SpatimeINRError

#: The device names the CLI, the configuration and the widgets accept.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

#: PyTorch's switch that runs operations the Apple GPU lacks on the CPU (read when torch starts).
MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"


def check_device(device: str) -> str:
    """Validate a device name (``auto``, ``cpu``, ``cuda`` or ``mps``) without resolving it."""
    if device not in DEVICES:
        raise SpatimeINRError(f"Unknown device {device!r}: choose auto, cpu, cuda or mps.")
    return device


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


def _has_mps() -> bool:
    try:
        import torch

        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


def usable_devices() -> list[str]:
    """The names worth offering here: ``auto``, ``cpu`` and each GPU kind that is available."""
    return ["auto", "cpu", *(["cuda"] if _has_cuda() else []), *(["mps"] if _has_mps() else [])]


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a CUDA GPU is usable, else ``mps`` when an Apple GPU is, else
    ``cpu``; ``cuda`` or ``mps`` without that GPU is refused in one line.

    Resolved where the renderer is loaded (in each dask worker process on a cluster), not where
    the render is planned: a client without a GPU may drive workers that have one.
    """
    check_device(device)
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device == "auto" and _has_cuda():
        if not _has_cuda():
            raise SpatimeINRError(
                "--device cuda was asked for but no CUDA GPU is available: use auto or cpu."
            )
        return "cuda"
    if device == "mps" or device == "auto" and _has_mps():
        if not _has_mps():
            raise SpatimeINRError(
                "--device mps was asked for but no Apple GPU (MPS) is available (it needs a Mac "
                "with Apple silicon and a PyTorch built with MPS): use auto or cpu."
            )
        return "mps"
    return "cpu"


def torch_device(device: str):
    """:func:`resolve_device` as a ``torch.device`` (torch is imported here, not at module level)."""
    import torch

    return torch.device(resolve_device(device))


def _mps_problem(exc: BaseException) -> bool:
    """An error of PyTorch's MPS backend: an operation or a dtype the Apple GPU does not have."""
    text = str(exc)
    if "MPS" not in text:
        return False
    if isinstance(exc, NotImplementedError | TypeError):  # a missing operator; float64
        return True
    low = text.lower()  # a RuntimeError: only what says the backend cannot, not e.g. memory
    return "not implemented" in low or "not supported" in low or "unsupported" in low


@contextmanager
def device_errors() -> Iterator[None]:
    """Turn an Apple GPU's missing operation (PyTorch's ``NotImplementedError``, or its refusal of
    float64) into one line that says what to do; other errors pass unchanged."""
    try:
        yield
    except (NotImplementedError, TypeError, RuntimeError) as exc:
        if not _mps_problem(exc):
            raise
        lines = str(exc).strip().splitlines()
        what = lines[0].strip().split(". ")[0].rstrip(".") if lines else type(exc).__name__
        if os.environ.get(MPS_FALLBACK) == "1":
            fix = "run with --device cpu (PyTorch's CPU fallback could not take this one)"
        else:
            fix = f"run with --device cpu, or set {MPS_FALLBACK}=1 before starting to let PyTorch run such operations on the CPU"
        raise SpatimeINRError(
            f"The Apple GPU (MPS) lacks an operation this needs ({what}): {fix}."
        ) from None
