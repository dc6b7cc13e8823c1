"""The two presets: ``paper`` (seed 001 §4.2 as published) and ``fast`` (the default)."""

from __future__ import annotations

from typing import Any

from ..core.config import CLASSICAL_METHODS, SpatimeINRParams, TrainConfig

PAPER: dict[str, Any] = dict(
    latent_dim=128,
    encoder_features=64,
    encoder_groups=2,
    encoder_blocks=4,
    pe_frequencies=10,
    mlp_width=256,
    mlp_depth=8,
    hypercube_n=2,
    cycle_weight=1.0,
    batch_size=2048,
    lr=2e-3,
    lr_final=2e-5,
    weight_decay=1e-6,
    degrade_min=2.0,
    degrade_max=5.0,
    patch_size=32,
    residual=False,
    sr_axes="TZ",
    motion=False,
    refine_width=16,
    refine_depth=4,
    spatial=False,
    spatial_share=0.5,
    spatial_steps=2000,
    spatial_width=16,
    spatial_depth=4,
    spatial_hidden=16,
    spatial_max_factor=8.0,
    spatial_batch=16,
    spatial_lr=2e-3,
)

FAST: dict[str, Any] = dict(
    PAPER,
    latent_dim=32,
    encoder_features=16,
    encoder_groups=1,
    encoder_blocks=2,
    pe_frequencies=4,
    mlp_width=64,
    mlp_depth=3,
    hypercube_n=1,
    cycle_weight=0.0,
    patch_size=48,
    residual=True,
    motion=True,
    batch_size=32768,
    lr=1e-3,
    lr_final=1e-4,
    spatial=True,
)

PRESETS = {"paper": PAPER, "fast": FAST}

#: hyperparameters only the INR uses (``motion`` False: the paper preset)
INR_ONLY = (
    "latent_dim",
    "encoder_features",
    "encoder_groups",
    "encoder_blocks",
    "pe_frequencies",
    "mlp_width",
    "mlp_depth",
    "hypercube_n",
    "cycle_weight",
    "degrade_min",
    "degrade_max",
    "residual",
    "sr_axes",
)
#: hyperparameters only the motion engine uses (``motion`` True: the fast preset)
MOTION_ONLY = (
    "refine_width",
    "refine_depth",
    "spatial",
    "spatial_share",
    "spatial_steps",
    "spatial_width",
    "spatial_depth",
    "spatial_hidden",
    "spatial_max_factor",
    "spatial_batch",
    "spatial_lr",
)


def unused_fields(motion: bool) -> tuple[str, ...]:
    """The hyperparameters the engine chosen by ``motion`` ignores."""
    return INR_ONLY if motion else MOTION_ONLY


PRESET_STEPS = {"paper": 20000, "fast": 3000}


def resolve_params(config: TrainConfig) -> SpatimeINRParams:
    """The preset's values, overridden by the fields of ``config.params`` that are not None.

    Every field of the result is set (not None).
    """
    values = dict(PRESETS[config.preset])
    if config.params is not None:
        values.update({k: v for k, v in config.params.model_dump().items() if v is not None})
    return SpatimeINRParams(**values)


def total_steps(config: TrainConfig) -> int:
    """Planned steps: ``config.steps`` if given, else the preset's."""
    return int(config.steps or PRESET_STEPS[config.preset])


#: The engines a configuration can run (:func:`engine_of`).
ENGINES = ("fast", "paper", "classical")


def engine_of(config: TrainConfig) -> str:
    """Which engine a configuration runs: the one place that decides it.

    * ``classical``: the cubic, linear and nearest methods (no learning);
    * ``fast``: optical flow + refiner (+ the z decoder): :mod:`napari_spatimeinr.engines.fast`;
    * ``paper``: the 4D implicit neural representation: :mod:`napari_spatimeinr.engines.paper`.

    It follows the engine parameters, not the preset's name: ``--preset paper`` with
    ``params.motion=true`` runs the fast engine (and is costed, sized and rendered as such).
    """
    if config.method in CLASSICAL_METHODS:
        return "classical"
    return "fast" if resolve_params(config).motion else "paper"
