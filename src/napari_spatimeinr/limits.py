"""Limits before work: the one gate that refuses an impossible request before anything is allocated.

DESIGN.md ("CLI contract", Limits): before allocating, every command checks its plan against free
disk and available memory and refuses with one line naming the number and the limit. The CLI, the
Python API (:func:`~napari_spatimeinr.render.lazy.plan_render`, :func:`~napari_spatimeinr.api.train`,
:func:`~napari_spatimeinr.workflows.export.export`, the evaluation) and the widgets all call this module,
so a typo such as ``--scale 1e6`` ends in one clear line, never in the kernel's OOM killer.

What is checked (all from shapes, with arithmetic only):

* **Render plan** (:func:`check_plan`): the coordinate vectors and the task graph of the lazy array
  (one task per chunk, about :data:`TASK_BYTES` each, at most :data:`MAX_CHUNKS` chunks).
* **Export** (:func:`check_export`): the target folder is writable; the size on disk fits the format
  (ImageJ TIFF: 4 GB) and the free space of the target's disk (``--force`` skips this check only);
  the peak memory of the chosen chunking fits the available memory minus :func:`memory_margin`;
  the smallest unit the writers compute (one output row of X voxels for a chunk row) is not too big.
* **Lazy layer** (:func:`check_view`): one displayed (y, x) plane fits in memory.
* **Training** (:func:`check_train`) and **evaluation** (:func:`check_evaluate`): the input, its
  optical flows (:func:`flows_bytes`) and the model directory on disk; the working memory.
* **Reading** (:func:`~napari_spatimeinr.core.resources.check_read`): the float32 copy of a stack
  fits in memory. What the machine offers and the checks every command shares (memory, disk,
  writable targets) are :mod:`napari_spatimeinr.core.resources`, below the readers.

The estimates are upper bounds with round factors (documented by each constant); they are meant to
separate the possible from the absurd, not to predict the last megabyte.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .core.errors import LimitError, SpatimeINRError
from .core.resources import (
    check_disk,
    check_memory,
    check_writable,
    memory_limit,
)
from .core.text import fmt_bytes, fmt_shape
from .engines.fast.grid import auto_stride, flow_grid_shape

#: Bytes of one task of a lazy render graph (its coordinate vectors, the dict entry and the
#: slicing layer an export adds; measured about 1 KB per task for the graph alone).
TASK_BYTES = 2048
#: Most chunks in one lazy render: above this, building the graph alone takes minutes.
MAX_CHUNKS = 1_000_000
#: Most chunks of a lazy layer (one per displayed plane part): its graph is built in the GUI
#: thread (about 8 µs and 1 KB per chunk).
MAX_VIEW_CHUNKS = 250_000
#: Largest (y, x) plane a lazy layer shows: napari loads a whole plane before it downsamples it
#: to the screen (16,384², 1 GB as float32).
MAX_VIEW_PLANE_VOXELS = 16384 * 16384
#: Renderer scratch memory per output voxel of a chunk being computed, in bytes (coordinates,
#: weights and intermediate features; float32 output is 4 bytes).
RENDER_WORK_BYTES = 32
#: Memory per voxel of a displayed plane in napari (the float32 plane, its cache and the
#: texture/contrast copies).
VIEW_BYTES_PER_VOXEL = 16
#: Model directory extras beside ``input.npy`` (weights, config, history): an upper bound.
MODEL_EXTRA_BYTES = 64 * 2**20
#: Resident memory of a process that trains or renders before any data: Python, numpy, scipy,
#: torch and their libraries (measured 0.35-0.45 GB on Linux, torch CPU).
PROCESS_BYTES = 450 * 2**20
#: Frames (Z, Y, X, float32) a renderer of the motion engine holds at once: the refined frames and
#: uncertainty maps it caches (8 + 8), the measured frames it keeps (4), two flows of 3 components
#: and the working copies of one frame being computed (warps, blend, refiner tiles, about 10).
RENDER_FRAMES = 36
#: Frames (Z, Y, X, float32) training holds at once beyond its bounded parts: the uncertainty
#: calibration's held-out prediction (two flows and their composition, warps, features: about 30).
TRAIN_FRAMES = 30
#: Bytes the flow solver of training works in: :data:`~napari_spatimeinr.engines.fast.flow.
#: BATCH_VOXELS` flow-grid voxels of about 60 float32 values each.
FLOW_SOLVER_BYTES = (1 << 22) * 60 * 4
#: Most bytes of lateral planes the z decoder trains on (:data:`~napari_spatimeinr.engines.
#: zdecoder.train.MAX_PLANE_BYTES`, kept here without importing torch).
SPATIAL_PLANE_BYTES = 256 * 2**20
#: Bytes of a stored input resident through its memory map before it is reopened
#: (:data:`~napari_spatimeinr.store.model_dir.REMAP_BYTES`).
MAPPED_BYTES = 256 * 2**20


# -- render ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderCost:
    """The cost of a render, from its shape and chunking alone (nothing allocated)."""

    shape: tuple[int, int, int, int]
    full_shape: tuple[int, int, int, int]
    chunk: tuple[int, int, int, int]
    n_chunks: int
    workers: int

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """The float32 output."""
        return 4 * self.voxels

    @property
    def chunk_bytes(self) -> int:
        return 4 * math.prod(self.chunk)

    @property
    def plan_bytes(self) -> int:
        """Memory of the lazy array itself: coordinate vectors (and their selection masks) and
        one graph task per chunk."""
        return 24 * sum(self.full_shape) + TASK_BYTES * self.n_chunks

    @property
    def row_bytes(self) -> int:
        """The smallest unit the writers compute: one row of chunks across all of X (float32)."""
        t, z, y, _ = self.chunk
        return 4 * t * z * y * self.shape[3]

    @property
    def plane_bytes(self) -> int:
        return 4 * self.shape[2] * self.shape[3]

    def peak_bytes(self, model_bytes: int = 0) -> int:
        """Peak memory of an export: the plan, the slab group being computed plus its encoded copy,
        the chunks in flight in the renderers and ``model_bytes``, what the renderer of the model
        holds (:func:`renderer_bytes`: the process and a few frames, not the whole input)."""
        from .io.slabs import GROUP_BYTES

        group = max(GROUP_BYTES, self.row_bytes)
        in_flight = self.workers * math.prod(self.chunk) * RENDER_WORK_BYTES
        return self.plan_bytes + 2 * group + in_flight + int(model_bytes)

    def disk_bytes(self, dtype: str = "float32", suffix: str = ".ome.tif") -> int:
        from .io.write import estimate_output_bytes

        return estimate_output_bytes(self.shape, dtype, suffix)

    def describe(self) -> str:
        t, z, y, x = self.shape
        return f"T={t:,} Z={z:,} Y={y:,} X={x:,} ({self.voxels:.3g} voxels)"


def renderer_bytes(input_shape: Sequence[int]) -> int:
    """Memory a renderer of a model of ``input_shape`` (T, Z, Y, X) holds in its process beyond
    the chunks: the process itself (:data:`PROCESS_BYTES`), :data:`RENDER_FRAMES` frames and the
    stored input's mapped window. Renderers read the input a frame at a time, so this does not
    grow with the number of frames."""
    _, z, y, x = (int(v) for v in input_shape)
    frame = 4 * z * y * x
    return PROCESS_BYTES + RENDER_FRAMES * frame + MAPPED_BYTES


def render_cost(
    input_shape: tuple[int, int, int, int],
    scale_t: float = 1.0,
    scale_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    t_range: tuple[float, float] | None = None,
    roi: tuple[int, int, int, int, int, int] | None = None,
    *,
    chunks: tuple[int, int, int, int] | None = None,
    chunk_mb: float = 8.0,
    workers: int | None = None,
) -> RenderCost:
    """The :class:`RenderCost` of a render (validates the request the way ``plan_render`` does)."""
    from .core.chunks import chunk_shape
    from .core.coords import grid_shape

    if not (isinstance(chunk_mb, int | float) and math.isfinite(chunk_mb) and chunk_mb > 0):
        raise SpatimeINRError(f"The chunk size must be a positive number of MB, got {chunk_mb!r}.")
    shape, full = grid_shape(input_shape, scale_t, scale_zyx, t_range, roi)
    c = chunk_shape(shape, chunks, chunk_mb)
    n_chunks = math.prod(-(-n // ci) for n, ci in zip(shape, c, strict=True))
    w = workers if workers is not None else max(1, os.cpu_count() or 1)
    return RenderCost(shape, full, c, n_chunks, w)  # type: ignore[arg-type]


_LESS = "Render less: smaller factors, --t-range or --roi."


def check_plan(cost: RenderCost, max_chunks: int = MAX_CHUNKS) -> None:
    """Refuse a lazy render whose plan alone (coordinates, task graph) is absurd."""
    if cost.n_chunks > max_chunks:
        raise LimitError(
            f"The render {cost.describe()} would be {fmt_bytes(cost.nbytes)} as float32, split "
            f"into {cost.n_chunks:.3g} chunks: over the limit of {max_chunks:,} chunks. {_LESS}"
        )
    check_memory(cost.plan_bytes, f"the plan of the render {cost.describe()}", _LESS)


def check_view(cost: RenderCost) -> None:
    """Refuse a lazy layer whose graph or single displayed plane would not fit in memory."""
    check_plan(cost, MAX_VIEW_CHUNKS)
    _, _, y, x = cost.shape
    if y * x > MAX_VIEW_PLANE_VOXELS:
        raise LimitError(
            f"One plane of the render is {y:,} × {x:,} = {y * x:.3g} voxels "
            f"({fmt_bytes(4 * y * x)}), over the {MAX_VIEW_PLANE_VOXELS:.3g} voxels (16,384²) a "
            "layer can show: use smaller y, x factors or a region (export it instead)."
        )
    check_memory(
        VIEW_BYTES_PER_VOXEL * y * x + cost.plan_bytes,
        f"showing one {y:,} × {x:,} plane of the render",
        "Use smaller y, x factors or a region.",
    )


def check_export(
    cost: RenderCost,
    path: str | Path,
    dtype: str = "float32",
    *,
    force: bool = False,
    model_bytes: int = 0,
    check_target: bool = True,
) -> None:
    """Refuse an export that cannot be written, does not fit its disk or format, or its memory.

    Order: the target folder is writable; the format's own size limit; free disk (skipped with
    ``force``); the plan (:func:`check_plan`); the smallest unit of work; the peak memory of the
    chosen chunking.
    """
    from .io.formats import suffix_of, write_family
    from .io.write_tiff import IMAGEJ_MAX_BYTES

    if check_target:
        check_writable(path)
    suffix = suffix_of(path)
    need = cost.disk_bytes(dtype, suffix)
    if write_family(path) == "tiff" and need > IMAGEJ_MAX_BYTES:
        raise LimitError(
            f"{Path(path).name} would be about {fmt_bytes(need)} ({cost.describe()}), over the "
            "4 GB limit of ImageJ TIFF: write .ome.tif (BigTIFF) or .zarr instead, or render less "
            "(--t-range, --roi, smaller factors)."
        )
    scratch = need if suffix == ".nii.gz" else 0  # .nii.gz may go through a raw temporary file
    check_disk(need + scratch, path, f"the output {cost.describe()}", _LESS, force)
    check_plan(cost)
    limit = memory_limit()
    if cost.row_bytes > limit:
        raise LimitError(
            f"The smallest part of the render the writers compute (one row of chunks across all "
            f"{cost.shape[3]:,} x voxels, {fmt_bytes(cost.row_bytes)}) does not fit in the "
            f"{fmt_bytes(limit)} of memory available: use a smaller --chunk-mb, a smaller x "
            "factor or a region (--roi)."
        )
    check_memory(
        cost.peak_bytes(model_bytes),
        f"rendering {cost.describe()} in chunks of {fmt_bytes(cost.chunk_bytes)} on "
        f"{cost.workers} workers",
        "Use fewer --workers, a smaller --chunk-mb, or render less.",
    )


def with_channels(cost: RenderCost, channels: int) -> RenderCost:
    """The cost of rendering ``channels`` channels on one grid (a multi-channel model): counted
    as one array with the channels' planes one after another in z (what the writers hold)."""
    if channels <= 1:
        return cost
    from dataclasses import replace

    t, z, y, x = cost.shape
    ft, fz, fy, fx = cost.full_shape
    return replace(
        cost,
        shape=(t, z * channels, y, x),
        full_shape=(ft, fz * channels, fy, fx),
        n_chunks=cost.n_chunks * channels,
    )


def check_render_export(
    input_shape: tuple[int, int, int, int],
    model_dir: str | Path,
    targets: Sequence[str | Path],
    dtype: str = "float32",
    *,
    scale_t: float = 1.0,
    scale_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    t_range: tuple[float, float] | None = None,
    roi: tuple[int, int, int, int, int, int] | None = None,
    chunk_mb: float = 8.0,
    workers: int | None = None,
    force: bool = False,
    check_target: bool = False,
    channels: int = 1,
) -> RenderCost:
    """The gate of exporting a model's render to ``targets`` (the render, then its uncertainty
    map): the one the CLI (``spatimeinr render``) and the Render & Export widget both call, so the
    two refuse the same requests. The renderer's own memory (:func:`renderer_bytes`) counts
    once: its threads share it (once per channel's model for ``channels`` > 1)."""
    cost = render_cost(
        input_shape, scale_t, scale_zyx, t_range, roi, chunk_mb=chunk_mb, workers=workers
    )
    cost = with_channels(cost, channels)
    from .io.write import check_channel_format

    for target in targets:
        check_channel_format(target, channels)
    model_bytes = channels * renderer_bytes(input_shape)
    for target in targets:
        check_export(
            cost, target, dtype, force=force, model_bytes=model_bytes, check_target=check_target
        )
    return cost


# -- training and evaluation ----------------------------------------------------------------------


#: stored flows (``flows.npz``: int16 multiples of 1/32 voxel, zipped) over their float16 size in
#: memory: 0.21 measured on the flows of a 48 × 56 × 320 × 352 stack of moving nuclei, with a margin
FLOW_STORED_RATIO = 0.35


def flows_bytes(shape: tuple[int, int, int, int], engine: str) -> int:
    """Bytes of the optical flows a model holds in memory while training (float16 on their grid;
    stored zipped, :data:`FLOW_STORED_RATIO` of it), 0 when it has none.

    The fast engine (:func:`~napari_spatimeinr.engines.presets.engine_of`) keeps one float16 flow
    per pair of neighbouring frames on the frame grid subsampled in y and x
    (:func:`~napari_spatimeinr.engines.fast.grid.flow_grid_shape` at
    :func:`~napari_spatimeinr.engines.fast.grid.auto_stride`, the finest grid training starts
    from): ``(T - 1) × ndim × grid`` with ndim = 3 for volumes, 2 for single planes.
    """
    if engine != "fast":
        return 0
    t, z, y, x = (int(s) for s in shape)
    ndim = 3 if z > 1 else 2
    sp = (z, y, x) if z > 1 else (y, x)
    grid = flow_grid_shape(sp, auto_stride(sp))
    return 2 * max(t - 1, 0) * ndim * math.prod(int(g) for g in grid)


@dataclass(frozen=True)
class TrainCost:
    """Disk and memory of training a model of an input of ``shape`` (T, Z, Y, X)."""

    shape: tuple[int, int, int, int]
    #: the engine that trains (:func:`~napari_spatimeinr.engines.presets.engine_of`)
    engine: str
    #: the input's own dtype, which the model directory stores it in (``input.npy``)
    dtype: str = "float32"
    #: the input is read memory-mapped (an uncompressed TZYX file): no float32 copy of it
    mapped: bool = False

    @property
    def itemsize(self) -> int:
        import numpy as np

        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            return 4
        return dt.itemsize if dt.kind in "iu" and dt.itemsize <= 4 else 4

    @property
    def input_bytes(self) -> int:
        """The stored input (``input.npy``, in its own dtype)."""
        return self.itemsize * math.prod(self.shape)

    @property
    def flow_bytes(self) -> int:
        return flows_bytes(self.shape, self.engine)

    @property
    def disk_bytes(self) -> int:
        """The model directory: the input in its dtype, flows (stored as zipped int16:
        :data:`FLOW_STORED_RATIO` of their float16 size), weights and the rest."""
        stored = math.ceil(self.flow_bytes * FLOW_STORED_RATIO)
        return self.input_bytes + stored + MODEL_EXTRA_BYTES

    @property
    def read_bytes(self) -> int:
        """Reading the input and writing the model directory: the float32 stack and the file's
        own values at once, or only the file's pages when it is memory-mapped (``mapped``:
        an uncompressed TZYX file, :meth:`~napari_spatimeinr.data.stack.Stack4D.mapped`)."""
        per = self.itemsize if self.mapped else 4 + self.itemsize
        return per * math.prod(self.shape)

    @property
    def work_bytes(self) -> int:
        """Training itself, its largest phase. The fast engine reads the stored input a block at
        a time (its mapped window, :data:`MAPPED_BYTES`, in every phase): the z decoder's planes;
        the optical flow (all flows on their grid, their compressed copy while saved, the
        solver); the refiner (the held-out mask, a bit per voxel, and a few flow pairs); the
        uncertainty calibration (:data:`TRAIN_FRAMES` frames). The paper's INR holds the
        normalized input and its training copies (3 × float32)."""
        t, z, y, x = self.shape
        voxels = math.prod(self.shape)
        frame = 4 * z * y * x
        if self.engine != "fast":
            return 3 * 4 * voxels + 32 * frame
        spatial = min(SPATIAL_PLANE_BYTES, 4 * voxels)
        flow = self.flow_bytes + self.flow_bytes // 2 + min(FLOW_SOLVER_BYTES, 60 * voxels)
        refiner = voxels // 8 + 8 * frame
        calibration = TRAIN_FRAMES * frame
        return MAPPED_BYTES + max(spatial, flow, refiner, calibration)

    @property
    def peak_bytes(self) -> int:
        """The process, then the larger of reading the input and training (the stack read is
        let go once the model directory holds it)."""
        return PROCESS_BYTES + max(self.read_bytes, self.work_bytes) + MODEL_EXTRA_BYTES


def check_train(
    shape: tuple[int, int, int, int],
    engine: str,
    out_dir: str | Path,
    *,
    force: bool = False,
    dtype: str = "float32",
    mapped: bool = False,
    channels: int = 1,
) -> TrainCost:
    """Refuse training whose model directory does not fit the disk or whose work the memory.

    ``channels`` > 1: one model of every channel (``shape`` is one channel's): an input per
    channel, one set of flows; the raw channels and their mean (the motion source) are held
    while the channels train one after another."""
    cost = TrainCost(tuple(int(s) for s in shape), engine, dtype, mapped)  # type: ignore[arg-type]
    what = f"the model of a {fmt_shape(cost.shape)} input"
    if channels > 1:
        what = f"the model of a {channels}-channel {fmt_shape(cost.shape)} input"
    if cost.flow_bytes:
        what += f" (with {fmt_bytes(cost.flow_bytes)} of optical flows)"
    more = (channels - 1) * (cost.input_bytes + MODEL_EXTRA_BYTES)
    check_disk(
        cost.disk_bytes + more,
        out_dir,
        what,
        "Free some space or write the model elsewhere.",
        force,
    )
    check_memory(
        cost.peak_bytes + 2 * (channels - 1) * cost.input_bytes,
        f"training on a {fmt_shape(cost.shape)} input",
        "Crop the stack (fewer frames or a region) or use a machine with more memory.",
    )
    return cost


def check_evaluate(
    shape: tuple[int, int, int, int],
    engine: str,
    work_dir: str | Path | None = None,
    *,
    force: bool = False,
) -> None:
    """Refuse an evaluation whose predictions (one per baseline) or model do not fit."""
    n = 4 * math.prod(int(s) for s in shape)
    cost = TrainCost(tuple(int(s) for s in shape), engine)  # type: ignore[arg-type]
    # truth, degraded input, 5 baselines + smoothed variants + the method, and a training on the
    # (smaller) degraded input
    need = 12 * n + cost.peak_bytes
    check_memory(
        need,
        f"evaluating on a {fmt_shape(cost.shape)} stack",
        "Crop the stack (fewer frames or a region) first.",
    )
    where = work_dir if work_dir is not None else tempfile.gettempdir()
    check_disk(
        cost.disk_bytes,
        where,
        "the evaluation's temporary model",
        "Free some space (or set TMPDIR to a larger disk).",
        force,
    )
