"""The models known to this napari session (trained here or opened from disk), shared by widgets."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QObject, Signal


class ModelRegistry(QObject):
    """An ordered set of model directories; ``added`` fires with the path of each new one."""

    added = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self._paths: list[str] = []

    def add(self, path: str | Path) -> str:
        p = str(Path(path).resolve())
        if p not in self._paths:
            self._paths.append(p)
            self.added.emit(p)
        return p

    def paths(self) -> list[str]:
        return [p for p in self._paths if Path(p).is_dir()]


_REGISTRY: ModelRegistry | None = None


def registry() -> ModelRegistry:
    """The session's registry (created on first use, in the GUI thread)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = ModelRegistry()
    return _REGISTRY
