"""The SpatimeINR method on the model-directory rails: it runs the engine its config names.

:func:`~napari_spatimeinr.engines.presets.engine_of` decides: the ``fast`` engine (:mod:`.fast`,
with the z decoder of :mod:`.zdecoder` and the uncertainty calibration) or the ``paper`` engine
(:mod:`.paper`, the published 4D INR).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..core.progress import Progress
from .fast import train as fast_train
from .fast.render import MotionRenderer
from .paper import train as paper_train
from .paper.render import SpatimeINRRenderer
from .presets import engine_of
from .zdecoder.train import train_with_spatial

if TYPE_CHECKING:
    from ..core.config import TrainConfig
    from ..store.model_dir import ModelDir


class SpatimeINRMethod:
    """SpatimeINR: a self-supervised continuous 4D model (seed 001), presets ``fast``/``paper``."""

    name = "spatimeinr"

    def train(
        self, model_dir: ModelDir, config: TrainConfig, stop: Callable[[], bool]
    ) -> Iterator[Progress]:
        if engine_of(config) == "paper":
            return train_with_spatial(model_dir, config, stop, paper_train.train)
        if model_dir.shape[0] < 3:  # no held-out frames to calibrate the uncertainty on
            return train_with_spatial(model_dir, config, stop, fast_train.train)
        return fast_train.train_with_calibration(model_dir, config, stop)

    def load_renderer(
        self, model_dir: ModelDir, device: str = "auto"
    ) -> SpatimeINRRenderer | MotionRenderer:
        if engine_of(model_dir.config) == "fast":
            return MotionRenderer(model_dir, device)
        return SpatimeINRRenderer(model_dir, device)
