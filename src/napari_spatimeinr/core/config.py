"""Typed, validated configuration shared by the CLI, the widgets and the files (``config.yaml``).

Every field has a description: the CLI help, the widget tooltips and ``docs/`` are generated from it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpatimeINRError

Method = Literal["spatimeinr", "cubic", "linear", "nearest"]
Preset = Literal["fast", "paper"]
Device = Literal["auto", "cpu", "cuda", "mps"]  # core/device.py DEVICES

CLASSICAL_METHODS = ("cubic", "linear", "nearest")
SPLINE_ORDER = {"nearest": 0, "linear": 1, "cubic": 3}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StackOptions(_Model):
    """How to read a stack: overrides for what the file says (or does not say)."""

    axes: str | None = Field(
        None,
        description="Axis order of the file, e.g. TZYX, ZYX, TYX or TCZYX. Default: from the file's "
        "metadata (ImageJ/OME), else inferred (see README, 'Axes').",
    )
    channel: int | None = Field(
        None, ge=0, description="Channel index to use when the file has a channel axis (C)."
    )
    voxel_size: tuple[float, float, float] | None = Field(
        None, description="Voxel size (z, y, x) in µm. Default: from the file, else 1 µm."
    )
    frame_interval: float | None = Field(
        None, gt=0, description="Time between frames in seconds. Default: from the file, else 1 s."
    )

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.upper()
        bad = set(v) - set("TCZYX")
        if bad or len(set(v)) != len(v):
            raise ValueError(
                f"axes {v!r} must use each of the letters T, C, Z, Y, X at most once (e.g. TZYX)"
            )
        if not {"Y", "X"} <= set(v):
            raise ValueError(f"axes {v!r} must contain Y and X")
        return v

    @field_validator("voxel_size")
    @classmethod
    def _vs(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and not all(math.isfinite(s) and s > 0 for s in v):
            raise ValueError("voxel size values must be positive numbers in µm")
        return v


class SpatimeINRParams(_Model):
    """Hyperparameters of the SpatimeINR engine.

    Every field left unset (None) takes the preset's value (``model/presets.py``); a value set here
    overrides it. Unset fields stay None in config.yaml, so a stored config resolves the same way.
    """

    latent_dim: int | None = Field(
        None, ge=1, le=1024, description="Channels of the latent code per voxel."
    )
    encoder_features: int | None = Field(
        None, ge=4, le=512, description="Channels inside the encoder."
    )
    encoder_groups: int | None = Field(
        None, ge=0, le=32, description="Residual groups in the RCAN encoder."
    )
    encoder_blocks: int | None = Field(
        None, ge=0, le=64, description="RCAB blocks per residual group."
    )
    pe_frequencies: int | None = Field(
        None, ge=0, le=16, description="Positional-encoding frequencies L of (x, y, z, t)."
    )
    mlp_width: int | None = Field(None, ge=8, le=2048, description="Width of the field MLP.")
    mlp_depth: int | None = Field(None, ge=1, le=16, description="Hidden layers of the field MLP.")
    hypercube_n: int | None = Field(
        None, ge=1, le=4, description="Samples per axis of the 4D hypercube (M = n^4 per query)."
    )
    cycle_weight: float | None = Field(
        None, ge=0, description="Weight of the cycle-consistency loss against the measured data."
    )
    batch_size: int | None = Field(None, ge=1, description="Query points per training step.")
    lr: float | None = Field(None, gt=0, description="Initial learning rate (Adam).")
    lr_final: float | None = Field(None, gt=0, description="Final learning rate (linear decay).")
    weight_decay: float | None = Field(None, ge=0, description="Adam weight decay.")
    degrade_min: float | None = Field(
        None, ge=1, description="Smallest extra degradation factor for self-supervision."
    )
    degrade_max: float | None = Field(
        None, ge=1, description="Largest extra degradation factor for self-supervision."
    )
    patch_size: int | None = Field(
        None,
        ge=2,
        le=512,
        description="Side (coarse voxels) of the block encoded per training step.",
    )
    residual: bool | None = Field(
        None,
        description="Predict a residual over linear interpolation (an untrained model equals it).",
    )
    sr_axes: str | None = Field(
        None,
        description="Axes degraded for self-supervision (letters of TZYX; too short axes skipped).",
    )
    motion: bool | None = Field(
        None,
        description="Motion-compensated engine (the fast preset): TV-L1 optical flow between "
        "neighbouring frames, both frames warped to the instant, refined by a small 3D CNN trained "
        "on the stack itself. False: the INR of the paper (encoder, MLP, 4D hypercube rendering).",
    )
    refine_width: int | None = Field(
        None, ge=4, le=256, description="Channels of the refinement CNN (motion engine)."
    )
    refine_depth: int | None = Field(
        None, ge=2, le=16, description="Convolution layers of the refinement CNN (motion engine)."
    )

    spatial: bool | None = Field(
        None,
        description="Learned z super-resolution (fast engine): a CNN encoder and an implicit decoder "
        "trained on the stack's own lateral planes; renders with z factor != 1 use it. False: the "
        "mean-preserving spline.",
    )
    spatial_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of the time limit given to the spatial part when the stack has several "
        "frames (a single volume gives it all).",
    )
    spatial_steps: int | None = Field(
        None,
        ge=1,
        description="Training steps of the spatial part (fewer when steps is smaller); the time "
        "limit may end it first. Longer lateral training did not transfer better to z.",
    )
    spatial_width: int | None = Field(
        None, ge=4, le=256, description="Channels of the spatial encoder CNN."
    )
    spatial_depth: int | None = Field(
        None, ge=2, le=16, description="Convolution layers of the spatial encoder CNN."
    )
    spatial_hidden: int | None = Field(
        None, ge=4, le=256, description="Latent channels per voxel of the spatial decoder."
    )
    spatial_max_factor: float | None = Field(
        None,
        ge=1.5,
        le=64,
        description="Largest z factor trained for (the isotropic factor dz/dx caps it too).",
    )
    spatial_batch: int | None = Field(
        None, ge=1, le=1024, description="Lateral planes per spatial training step."
    )
    spatial_lr: float | None = Field(
        None, gt=0, description="Initial learning rate of the spatial part (decays 10x)."
    )

    @field_validator("sr_axes")
    @classmethod
    def _sr_axes(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.upper()
        if not v or set(v) - set("TZYX") or len(set(v)) != len(v):
            raise ValueError(f"sr_axes {v!r} must use each of T, Z, Y, X at most once (e.g. TZ)")
        return v


class TrainConfig(_Model):
    """Everything that defines a training run (written to the model directory as config.yaml)."""

    method: Method = Field(
        "spatimeinr",
        description="spatimeinr (learned continuous model) or a classical interpolation baseline "
        "(cubic B-spline, linear, nearest) that needs no training.",
    )
    preset: Preset = Field(
        "fast",
        description="fast (default): motion-compensated interpolation (optical flow) refined by a CNN "
        "trained on the stack, quick on a laptop CPU or one GPU. paper: SpatimeINR as published.",
    )
    steps: int | None = Field(
        None,
        ge=1,
        description="Training steps. Default: the preset's; the time limit may end it first.",
    )
    time_limit: float | None = Field(
        None, gt=0, description="Stop training after this many seconds (a usable model is kept)."
    )
    device: Device = Field(
        "auto",
        description="Where to train: auto (a CUDA GPU, else an Apple GPU, else the CPU), cpu, cuda "
        "or mps (Apple GPU).",
    )
    seed: int = Field(
        0, ge=0, description="Random seed; same seed and data give the same model on CPU."
    )
    checkpoint_every: float = Field(
        60.0, gt=0, description="Seconds between checkpoints written during training."
    )
    params: SpatimeINRParams | None = Field(
        None,
        description="Engine hyperparameters (spatimeinr only). Default: the preset's values.",
    )

    @model_validator(mode="after")
    def _classical_has_no_params(self) -> TrainConfig:
        if self.method in CLASSICAL_METHODS and self.params is not None:
            raise ValueError(f"method {self.method!r} has no hyperparameters; remove 'params'")
        return self


class RenderConfig(_Model):
    """What to render from a model: factors per axis, an optional part, the output type."""

    scale_t: float = Field(1.0, gt=0, description="Temporal factor k: (T-1)*k+1 output frames.")
    scale_z: float = Field(
        1.0, gt=0, description="Spatial factor along z (output voxels per input)."
    )
    scale_y: float = Field(1.0, gt=0, description="Spatial factor along y.")
    scale_x: float = Field(1.0, gt=0, description="Spatial factor along x.")
    t_range: tuple[float, float] | None = Field(
        None, description="Render only frames with instants in [A, B] (input frame indices)."
    )
    roi: tuple[int, int, int, int, int, int] | None = Field(
        None, description="Render only input voxels Z0:Z1, Y0:Y1, X0:X1 (half-open indices)."
    )
    dtype: Literal["float32", "uint16"] = Field(
        "float32",
        description="float32 (default) or uint16 (the input's intensity range mapped back).",
    )
    device: Device = Field("auto", description="Where to render: auto, cpu, cuda or mps.")
    keep_measured: bool = Field(
        False,
        description="Return measured frames as acquired. Default: every frame, measured ones "
        "included, comes from the model at one noise level (no flicker in a movie).",
    )
    chunk_mb: float = Field(8.0, gt=0, description="Target size of one computed chunk, in MB.")

    @property
    def scale_zyx(self) -> tuple[float, float, float]:
        return (self.scale_z, self.scale_y, self.scale_x)


def format_validation_error(err: ValidationError, what: str = "configuration") -> str:
    """One readable line per problem, naming the field and the fix."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or what
        parts.append(f"{loc}: {e['msg']}")
    return f"Invalid {what}: " + "; ".join(parts)


def build(model: type[_Model], values: dict[str, Any], what: str = "configuration") -> Any:
    """Validate ``values`` into ``model``, raising :class:`SpatimeINRError` with a clear message."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise SpatimeINRError(format_validation_error(err, what)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (e.g. ``--config FILE.yaml``) with a clear error on bad files."""
    p = Path(path)
    if not p.is_file():
        raise SpatimeINRError(f"Config file not found: {p}. Check the path.")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise SpatimeINRError(f"Config file {p} is not valid YAML: {err}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise SpatimeINRError(f"Config file {p} must hold a mapping of field: value.")
    return data


def dump_yaml(model: BaseModel) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)
