"""Lazy, chunked rendering of a model directory into a dask array.

Every chunk is an independent task holding only its own coordinate vectors and the model directory's
path: it loads the method's renderer once per process (cached; also on dask.distributed workers),
renders its block in normalized units and maps it back to input intensity units.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..core.chunks import _normalize_chunks
from ..core.config import CLASSICAL_METHODS
from ..core.coords import OutputGrid, make_grid, temporal_coords
from ..core.device import check_device, device_errors, resolve_device
from ..data.stack import Stack4D
from ..engines.base import BlockRenderer
from ..engines.registry import get_method
from ..io.meta import OutputMeta
from ..store.model_dir import CHANNEL_KEY, ModelDir, channel_dirs, channel_root

#: the renderers loaded in this process, least recently used first
_CACHE: OrderedDict[tuple, tuple[ModelDir, BlockRenderer]] = OrderedDict()
#: guards _CACHE and _LOADING only: never held while a renderer loads
_CACHE_LOCK = threading.Lock()
#: one lock per renderer being loaded, so that one model loads once while other models load and
#: cache hits are served meanwhile (a load may compute every optical flow of a stack)
_LOADING: dict[tuple, threading.Lock] = {}
_CACHE_SIZE = 4


def _model_key(path: Path) -> tuple:
    stamps = []
    for name in ("model.pt", "meta.json", "input.npy"):
        p = path / name
        stamps.append(p.stat().st_mtime_ns if p.exists() else 0)
    return (str(path.resolve()), *stamps)


def _cached(key: tuple) -> tuple[ModelDir, BlockRenderer] | None:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
        return hit


def get_renderer(path: str | Path, device: str = "cpu") -> tuple[ModelDir, BlockRenderer]:
    """The (cached) renderer of a model directory: loaded once per process and device.

    ``device`` may be ``auto``: it is resolved here, in the process that renders. The cache keeps
    the :data:`_CACHE_SIZE` most recently used renderers; loading one blocks only the tasks that
    wait for that same renderer.
    """
    path = Path(path)
    key = (*_model_key(path), device)
    hit = _cached(key)
    if hit is not None:
        return hit
    with _CACHE_LOCK:
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        hit = _cached(key)  # loaded by another task while this one waited
        if hit is not None:
            return hit
        from ..core.resources import tune_malloc

        tune_malloc()  # a renderer's process (widgets, dask workers): freed frames let go
        try:
            md = ModelDir(path)
            classical = md.method in CLASSICAL_METHODS and device == "auto"  # no torch import
            resolved = "cpu" if classical else resolve_device(device)
            renderer = get_method(md.method).load_renderer(md, resolved)
            with _CACHE_LOCK:
                _CACHE[key] = (md, renderer)
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
        finally:
            with _CACHE_LOCK:
                _LOADING.pop(key, None)
        return md, renderer


def clear_renderer_cache(path: str | Path | None = None) -> None:
    """Forget cached renderers: all of them, or those of the model directory ``path``."""
    with _CACHE_LOCK:
        if path is None:
            _CACHE.clear()
            return
        key0 = str(Path(path).resolve())
        for key in [k for k in _CACHE if k[0] == key0]:
            _CACHE.pop(key, None)


def _render_task(
    path: str,
    device: str,
    t: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    spacing: tuple[float, float, float, float],
    keep_measured: bool = False,
) -> np.ndarray:
    md, renderer = get_renderer(path, device)
    with device_errors():  # an operation the Apple GPU lacks: one line saying what to do
        block = renderer.render_block(t, z, y, x, spacing, keep_measured=keep_measured)
    out = md.norm.invert(block)
    if keep_measured:
        _exact_measured(out, md, t, (z, y, x), spacing)
    return out


def _uncertainty_task(
    path: str,
    device: str,
    t: np.ndarray,
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    spacing: tuple[float, float, float, float],
    keep_measured: bool = False,
) -> np.ndarray:
    md, renderer = get_renderer(path, device)
    with device_errors():
        block = renderer.uncertainty_block(t, z, y, x, spacing, keep_measured=keep_measured)  # type: ignore[attr-defined]
    return (block * np.float32(md.norm.span)).astype(np.float32)


def check_uncertainty(md: ModelDir) -> None:
    """Refuse, in one line, an uncertainty map for a model that cannot make one."""
    from ..core.errors import SpatimeINRError
    from ..engines.presets import engine_of

    if engine_of(md.config) != "fast":
        what = md.method if md.method in CLASSICAL_METHODS else f"{md.method} {md.config.preset}"
        raise SpatimeINRError(
            f"{md.path.name} is a {what} model: uncertainty maps come from SpatimeINR's fast "
            "engine; train a model with the fast preset (the default), or render without the "
            "uncertainty map."
        )
    if md.shape[0] < 3:
        raise SpatimeINRError(
            f"{md.path.name} has {md.shape[0]} frame(s): an uncertainty map needs a time-lapse of "
            "at least 3 frames (it is calibrated on frames predicted from their neighbours); "
            "render without the uncertainty map."
        )


def uncertainty_meta(meta: OutputMeta) -> OutputMeta:
    """The metadata of a render's uncertainty map: the same grid, axes, physical metadata and
    provenance, named as such (``provenance["content"]``)."""
    from dataclasses import replace

    prov = dict(meta.provenance)
    prov["content"] = (
        "uncertainty: expected absolute error of the render, in its intensity units "
        "(calibrated on the stack's own held-out frames)"
    )
    return replace(meta, name=f"{meta.name} uncertainty", provenance=prov)


#: what :func:`uncertainty_path` adds to a render's file name
UNCERTAINTY_SUFFIX = "_uncertainty"


def uncertainty_path(out: str | Path) -> Path:
    """Where the uncertainty map of a render written to ``out`` goes by default: beside it, same
    format, ``_uncertainty`` added to the name (``movie_x4.ome.tif`` → ``movie_x4_uncertainty.ome.tif``)."""
    from ..io.formats import stem_of

    out = Path(str(out).rstrip("/\\"))
    stem = stem_of(out)
    return out.with_name(f"{stem}{UNCERTAINTY_SUFFIX}{out.name[len(stem) :]}")


class RenderOutput(NamedTuple):
    """One file of a render export: the lazy array, where it goes, its metadata, and a label
    (``render`` or ``uncertainty``) for progress and messages."""

    array: da.Array
    path: Path
    meta: OutputMeta
    label: str


def render_outputs(
    plan: RenderPlan, out: str | Path, uncertainty: str | Path | None = None
) -> list[RenderOutput]:
    """The files a render export writes, in order: the render to ``out``, then, with
    ``uncertainty``, its uncertainty map there (same grid, axes, physical metadata and provenance;
    :func:`uncertainty_meta`). The CLI's ``render -o OUT --uncertainty FILE`` and the napari
    widget's Export both write exactly these (each with :func:`napari_spatimeinr.api.export`)."""
    outputs = [RenderOutput(render_plan(plan), Path(out), plan.meta, "render")]
    if uncertainty is not None:
        outputs.append(
            RenderOutput(
                render_plan(plan, uncertainty=True),
                Path(uncertainty),
                uncertainty_meta(plan.meta),
                "uncertainty",
            )
        )
    return outputs


def _exact_measured(out: np.ndarray, md: ModelDir, t, zyx, spacing) -> None:
    """Measured frames of an integer-typed source exactly as acquired (in place).

    The model directory keeps the input normalized; mapping it back is exact to float rounding,
    which rounding to the nearest integer removes for uint8/uint16/... sources. Rows of ``out``
    at measured instants on the input's own voxels are rounded.
    """
    if not np.issubdtype(np.dtype(str(md.meta.get("source_dtype", "float32"))), np.integer):
        return
    if any(abs(float(s) - 1.0) > 1e-9 for s in spacing[1:]):
        return
    if not all(np.allclose(c, np.round(c), atol=1e-9) for c in zyx):
        return
    for j, tv in enumerate(np.asarray(t, dtype=np.float64)):
        if abs(tv - round(tv)) < 1e-6 and 0 <= round(tv) < md.shape[0]:
            np.rint(out[j], out=out[j])


@dataclass
class RenderPlan:
    """What a render will produce, before any computation."""

    model_dir: Path
    grid: OutputGrid
    meta: OutputMeta
    chunks: tuple[tuple[int, ...], ...]
    device: str
    #: measured frames as acquired instead of the model's estimate (see :func:`plan_render`)
    keep_measured: bool = False
    #: a multi-channel render: the model directory of each channel (the array is then TCZYX)
    channel_dirs: tuple[Path, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The TZYX shape of the grid (of each channel)."""
        return self.grid.shape

    @property
    def channels(self) -> int:
        """Channels rendered: 1, or the channels of a multi-channel model (TCZYX output)."""
        return max(1, len(self.channel_dirs))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The shape of :func:`render_plan`'s array: TZYX, or TCZYX for several channels."""
        t, z, y, x = self.shape
        return (t, self.channels, z, y, x) if self.channel_dirs else (t, z, y, x)

    @property
    def nbytes(self) -> int:
        """Size of the float32 output."""
        return int(np.prod(self.shape)) * 4 * self.channels

    @property
    def spacing(self) -> tuple[float, float, float, float]:
        """Output spacing per axis (t, z, y, x) in input index units."""
        return self.grid.spacing_ratio(self._input_shape)

    @property
    def _input_shape(self) -> tuple[int, int, int, int]:
        return tuple(int(v) for v in self.meta.provenance["input_shape"])  # type: ignore[return-value]


def plan_render(
    model_dir: str | Path | ModelDir,
    scale_t: float = 1.0,
    scale_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    t_range: tuple[float, float] | None = None,
    roi: tuple[int, int, int, int, int, int] | None = None,
    *,
    chunks: tuple[int, int, int, int] | None = None,
    chunk_mb: float = 8.0,
    device: str = "auto",
    keep_measured: bool = False,
    input: str | Path | Stack4D | None = None,
    cache_dir: str | Path | None = None,
    read_options: dict | None = None,
    channel: int | None = None,
) -> RenderPlan:
    """Plan a render: output grid, chunking and output metadata (no computation).

    A multi-channel model renders every channel (:func:`render_plan` gives a TCZYX array, the
    metadata names the channels); ``channel=N`` renders channel N alone (TZYX), as does a model
    applied to another stack (``input``, which needs ``channel`` then).

    ``input``: apply the model to another stack (a path, read with ``read_options``, or a
    :class:`Stack4D`): its normalization and optical flows are computed once and kept in an applied
    model directory under ``cache_dir`` (never in the model directory; see
    :mod:`napari_spatimeinr.render.apply`), and the grid is that stack's. The provenance records it.

    By default every output frame comes from the model at one noise level, measured instants
    included (no flicker between measured and new frames). ``keep_measured=True`` returns the
    measured frames as acquired at their own instants (learned engines; classical interpolation
    always does). A render with no new instant (every output frame is a measured one, e.g. space
    only) has one noise level either way and keeps the measured frames. The choice is recorded in
    the provenance (``measured_frames``).

    The plan's own cost (coordinates, one graph task per chunk) is checked first by
    :func:`napari_spatimeinr.limits.check_plan`: an absurd factor is refused with one line before
    anything of its size exists. Exports and layers add their own checks (disk, peak memory,
    one displayed plane); see :mod:`napari_spatimeinr.limits`.
    """
    from ..limits import check_plan, render_cost, with_channels

    md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
    # the top directory of a multi-channel model renders every channel; a channel's own one itself
    dirs = channel_dirs(md) if md.meta.get("channel_dirs") else [md]
    if channel is not None or input is not None:
        md = select_channel(md, channel, applied=input is not None)
        dirs = [md]
    if input is not None:
        from .apply import model_for_input

        md = model_for_input(md, input, cache_dir, read_options, device)
    check_plan(
        with_channels(
            render_cost(
                md.shape, scale_t, scale_zyx, t_range, roi, chunks=chunks, chunk_mb=chunk_mb
            ),
            len(dirs),
        )
    )
    grid = make_grid(md.shape, scale_t, scale_zyx, t_range, roi)
    full_t = temporal_coords(md.shape[0], scale_t)
    new_instants = bool(np.any(np.abs(full_t - np.round(full_t)) > 1e-6))
    ratio = grid.spacing_ratio(md.shape)
    vz, vy, vx = md.voxel_size
    fi = md.frame_interval
    in_spacing = (fi, vz, vy, vx)
    origin0 = tuple(float(v) for v in md.meta.get("origin", (0.0, 0.0, 0.0, 0.0)))
    origin = tuple(
        o + float(c[0]) * s for o, c, s in zip(origin0, grid.axes, in_spacing, strict=True)
    )
    prov = md.provenance()
    prov.update(
        {
            "factors": {
                "t": grid.scale[0],
                "z": grid.scale[1],
                "y": grid.scale[2],
                "x": grid.scale[3],
            },
            "input_shape": list(md.shape),
            "output_full_shape": list(grid.full_shape),
            "output_offset": list(grid.offset),
            "t_range": list(t_range) if t_range is not None else None,
            "roi": list(roi) if roi is not None else None,
            "measured_frames": _measured_frames(keep_measured, new_instants),
        }
    )
    names = colors = None
    lo, hi = md.norm.raw_min, md.norm.raw_max
    if len(dirs) > 1:
        names = tuple(str(d.meta[CHANNEL_KEY]["name"]) for d in dirs)
        colors = tuple(str(d.meta[CHANNEL_KEY].get("color", "gray")) for d in dirs)
        lo = min(d.norm.raw_min for d in dirs)
        hi = max(d.norm.raw_max for d in dirs)
        prov.update({"axes": "TCZYX", "channel_names": list(names)})
        prov["motion_from"] = md.meta.get("motion_from", "mean")
    elif CHANNEL_KEY in md.meta:  # one channel of a multi-channel model
        prov["channel"] = md.meta[CHANNEL_KEY]["name"]
        prov["channel_names"] = [md.meta[CHANNEL_KEY]["name"]]
        names = (str(md.meta[CHANNEL_KEY]["name"]),)
        colors = (str(md.meta[CHANNEL_KEY].get("color", "gray")),)
    factors = "x".join(f"{f:g}" for f in grid.scale)
    meta = OutputMeta(
        voxel_size=(vz * ratio[1], vy * ratio[2], vx * ratio[3]),
        frame_interval=fi * ratio[0],
        origin=origin,  # type: ignore[arg-type]
        name=f"{md.name} {md.method} x{factors}",
        provenance=prov,
        intensity_range=(lo, hi),
        source_dtype=str(md.meta.get("source_dtype", "float32")),
        channel_names=names if len(dirs) > 1 else None,
        channel_colors=colors if len(dirs) > 1 else None,
    )
    if len(dirs) == 1 and names:  # one channel: named in the layer and file name
        meta.name = f"{md.name} {names[0]} {md.method} x{factors}"
        meta.channel_colors = colors
    return RenderPlan(
        model_dir=md.path,
        grid=grid,
        meta=meta,
        chunks=_normalize_chunks(grid.shape, chunks, chunk_mb),
        device=check_device(device),  # "auto" is resolved by each process that renders
        keep_measured=bool(keep_measured) or not new_instants,
        channel_dirs=tuple(d.path for d in dirs) if len(dirs) > 1 else (),
    )


def select_channel(md: ModelDir, channel: int | None, applied: bool = False) -> ModelDir:
    """The model of channel ``channel`` of a multi-channel model (``md`` itself for a
    single-channel model asked for channel None or 0); refuses an index out of range, and a
    multi-channel model applied to another stack without a channel, in one line."""
    from ..core.errors import SpatimeINRError

    dirs = channel_dirs(md)
    if channel is None:
        if len(dirs) > 1 and applied:
            names = ", ".join(
                f"{k} {n}" for k, n in enumerate(channel_root(md).meta.get("channel_names", []))
            )
            raise SpatimeINRError(
                f"{channel_root(md).path.name} is a model of {len(dirs)} channels ({names}): "
                "applied to another stack it renders one of them; choose it with --channel N."
            )
        return md
    if not 0 <= int(channel) < len(dirs):
        what = f"channels 0..{len(dirs) - 1}" if len(dirs) > 1 else "one channel (0)"
        raise SpatimeINRError(
            f"--channel {channel} is out of range: {channel_root(md).path.name} is a model of {what}."
        )
    return dirs[int(channel)]


def _measured_frames(keep_measured: bool, new_instants: bool) -> str:
    """What the measured instants of a render are, for its provenance."""
    if keep_measured:
        return "as acquired"
    if not new_instants:
        return "as acquired (no new instant in this render)"
    return "model estimate (one noise level with the new frames)"


def render_plan(plan: RenderPlan, uncertainty: bool = False) -> da.Array:
    """The lazy dask array (float32, input intensity units) of a plan.

    ``uncertainty=True``: instead, the render's uncertainty map (the expected absolute error of
    every voxel, same grid and chunks; :mod:`napari_spatimeinr.engines.fast.uncertainty`).
    """
    if plan.channel_dirs:  # every channel on the same grid, stacked as axis 1: TCZYX
        from dataclasses import replace

        arrays = [
            render_plan(replace(plan, model_dir=Path(d), channel_dirs=()), uncertainty)
            for d in plan.channel_dirs
        ]
        return da.stack(arrays, axis=1)
    g = plan.grid
    spacing = plan.spacing
    path = str(Path(plan.model_dir).resolve())
    task = _render_task
    prefix = "spatimeinr-render-"
    if uncertainty:
        check_uncertainty(ModelDir(path))
        task, prefix = _uncertainty_task, "spatimeinr-uncertainty-"
    name = prefix + tokenize(
        _model_key(Path(path)), g.t, g.z, g.y, g.x, plan.chunks, plan.device, plan.keep_measured
    )
    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in plan.chunks]
    dsk = {}
    for it in range(len(plan.chunks[0])):
        for iz in range(len(plan.chunks[1])):
            for iy in range(len(plan.chunks[2])):
                for ix in range(len(plan.chunks[3])):
                    idx = (it, iz, iy, ix)
                    vecs = [
                        ax[b[i] : b[i + 1]].copy()
                        for ax, b, i in zip(g.axes, bounds, idx, strict=True)
                    ]
                    dsk[(name, *idx)] = (
                        task,
                        path,
                        plan.device,
                        *vecs,
                        spacing,
                        plan.keep_measured,
                    )
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    return da.Array(graph, name, plan.chunks, dtype=np.float32)


def render(
    model_dir: str | Path | ModelDir, *args: Any, uncertainty: bool = False, **kwargs: Any
) -> da.Array | tuple[da.Array, da.Array]:
    """Render a model directory lazily: a dask array (T, Z, Y, X) float32 in input intensity units
    ((T, C, Z, Y, X) for a multi-channel model unless ``channel=N`` is given).

    The arguments are those of :func:`plan_render` (factors, time range, region, chunking,
    device, ``keep_measured``, ``input`` …), which gives the grid and metadata (output voxel size,
    frame interval, origin, provenance). Nothing is computed until the array (or part of it) is.
    ``uncertainty=True`` returns ``(render, uncertainty map)``: the second is the expected absolute
    error of every voxel, on the same grid and chunks (:func:`render_plan`).
    """
    plan = plan_render(model_dir, *args, **kwargs)
    if uncertainty:
        return render_plan(plan), render_plan(plan, uncertainty=True)
    return render_plan(plan)


def estimate_seconds(plan: RenderPlan, sample_chunks: int = 1) -> float:
    """Estimate the render time from timed chunks (their results are cached by the renderer).

    The first chunk warms the renderer up (its input frames, flows and the first passes of its
    networks cost more than any later one) and is not timed when there are others. The first
    chunk of the next instants is then timed cold (it computes the frames of its instants, then
    its part of space) and a second chunk at those instants warm (frames cached: space only). A
    render computes each output instant's frame once and every chunk's space, so the estimate is
    ``instants × frame + chunks × space``. ``sample_chunks`` is kept for callers.
    """
    arr = render_plan(plan)
    nb = arr.numblocks
    n_blocks = math.prod(nb)
    # Load the renderer first, so its one-off cost is not counted per chunk.
    get_renderer(plan.model_dir, plan.device)

    def timed(*idx: int) -> float:
        t0 = time.perf_counter()
        arr.blocks[idx].compute(scheduler="sync")
        return time.perf_counter() - t0

    first = timed(0, 0, 0, 0)
    if n_blocks == 1:
        return first
    it = 1 if nb[0] > 1 else 0  # the next instants, else the first ones again (cached)
    cold = timed(it, 0, 0, 0) if it else first
    per_instant_block = math.prod(nb[1:])
    if per_instant_block == 1:  # every chunk is its own instants: nothing is shared
        return cold * n_blocks
    second = np.unravel_index(1, nb[1:])
    warm = min(timed(it, *(int(i) for i in second)), cold)
    frame = (cold - warm) / max(1, plan.chunks[0][it])
    return plan.shape[0] * frame + n_blocks * warm
