"""Reading stacks into :class:`~napari_spatimeinr.data.Stack4D` and writing outputs, by suffix.

Public functions (imported lazily, so ``io.meta`` and ``io.axes`` stay light):
:func:`read_stack`, :func:`write_array`, :func:`estimate_output_bytes`,
:data:`SUPPORTED_READ_SUFFIXES`, :data:`SUPPORTED_WRITE_SUFFIXES`.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "read_stack": "read",
    "write_array": "write",
    "estimate_output_bytes": "write",
    "SUPPORTED_READ_SUFFIXES": "formats",
    "SUPPORTED_WRITE_SUFFIXES": "formats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
