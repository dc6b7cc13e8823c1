"""What every method provides: a trainer generator and a block renderer.

A method is registered in :mod:`napari_spatimeinr.engines.registry` under its name (``spatimeinr``,
``cubic``, ``linear``, ``nearest``).

* ``train(model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]) -> Iterator[Progress]``
  fits the method to ``model_dir.input`` (normalized TZYX float32), writing whatever it needs into
  the model directory atomically (``model_dir.write_atomic``). It yields Progress records; when
  ``stop()`` returns True it finishes the current step, writes a consistent checkpoint and returns.
* ``load_renderer(model_dir: ModelDir, device: str) -> BlockRenderer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..core.config import TrainConfig
    from ..core.progress import Progress
    from ..store.model_dir import ModelDir


class BlockRenderer(Protocol):
    """Renders a separable block of the output grid.

    ``t, z, y, x`` are 1D float64 arrays of coordinates in input index units (see ``coords.py``):
    the block is their outer product. Returns float32 of shape (len(t), len(z), len(y), len(x)) in
    *normalized* intensity units (the caller maps back to input units). ``spacing`` is the output
    grid's spacing per axis (t, z, y, x) in input index units (methods that integrate over an output
    voxel, like SpatimeINR's hypercube, need it). ``keep_measured``: at a measured instant return the
    measured frame as acquired instead of the model's estimate.
    """

    def render_block(
        self,
        t: np.ndarray,
        z: np.ndarray,
        y: np.ndarray,
        x: np.ndarray,
        spacing: tuple[float, float, float, float],
        keep_measured: bool = False,
    ) -> np.ndarray: ...


class Method(Protocol):
    name: str

    def train(
        self, model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]
    ) -> Iterator[Progress]: ...

    def load_renderer(self, model_dir: ModelDir, device: str) -> BlockRenderer: ...
