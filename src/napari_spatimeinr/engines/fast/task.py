"""Self-supervision of the motion engine (``fast`` preset): learn what a warped frame should be.

From the stack alone: for each pair of neighbouring measured frames ``a = frame i`` and
``b = frame i+1``, TV-L1 optical flow ``v`` (``a(x) ≈ b(x + v(x))``) carries ``a`` to ``b``'s instant
and ``b`` to ``a``'s (:mod:`napari_spatimeinr.engines.fast.motion`); the refinement CNN learns to turn the warped
frame into the measured one. The target's noise is independent of the warped frame's, so the network
learns the expected (noise-free) frame, as in Noise2Noise, and to hedge where the flow of this very
stack is wrong. Training uses the same neighbouring pairs and flows that rendering uses (only the
warp fraction differs: 1 in training, α ≤ 1 in rendering), which is what makes it transfer: a
network trained on frames two apart (larger motion) blurred too much at the real gap and lost 0.6 dB
to plain motion-compensated interpolation on ``t_ctc2d`` (docs/method.md).

Held-out voxels (2% of the input, fixed by the seed) are never targets; the PSNR on them inside
fixed validation crops is the trainer's reported PSNR and chooses the kept weights.

Flows between neighbouring frames are computed once per model directory, a few frame pairs at a
time from the lazily read input, and stored in ``flows.npz`` (on the frame grid subsampled in y and
x, zip-compressed: one entry ``gap1_IIIII`` of shape ``(ndim, *grid)`` per pair, int16 multiples of
``quantum`` (1/32 voxel; float16 in directories written before it), ``pairs`` =
``(T-1, ndim, *grid)``, ``stride``, ``computed``; older directories hold one float16 ``gap1``
array of shape ``(T-1, ndim, *grid)``); rendering reuses them, a pair at a time (:class:`FlowPairs`). Training
crops are warped when drawn (:class:`MotionTask`), so training holds no warped copy of the stack.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...core.progress import Progress
from ...data.normalize import Normalization
from ...store.model_dir import ModelDir, atomic_write, channel_dirs, channel_root
from ..loop import PackedMask
from ..losses import psnr
from . import flow

FLOWS_FILE = "flows.npz"
N_VALIDATION = 4
#: validation crops: at most this many voxels each (a 256 x 256 plane, 16 x 64 x 64), whole frames
#: of small stacks; the held-out 2% of them score the weights
VALIDATION_VOXELS = 1 << 16
#: training steps between two validations (a validation costs about as much as 10 steps)
VALIDATE_EVERY = 100
MIN_CROPS = 2
#: z slices per training crop (stacks with more slices are cropped in z too)
CROP_Z = 16
#: share of the time limit that optical flow may take before a coarser flow grid is chosen
FLOW_SHARE = 0.4
#: coarsest flow grid: y and x subsampled by at most this
MAX_STRIDE = 16
#: with a time budget, pairs are solved in about this many batches (the budget is checked between)
FLOW_BATCHES = 4


#: TV-L1 flow-grid voxels solved per second on one CPU core (benchmarks/flow.py: tz_yeast's
#: 17 x 72 x 112 grid 0.65 s per pair, t_ctc2d's 128 x 128 grid 0.03 s); a first estimate only:
#: training times the first pair and adapts (compute_flows)
FLOW_VOXELS_PER_S = {2: 5.0e5, 3: 2.1e5}


def flow_plan(shape: tuple[int, int, int, int], time_limit: float | None = None) -> str:
    """One line for the cost estimate of training: the flow grid, its time and its size on disk.

    Says when the flows for all pairs would not fit the flow's share of ``time_limit``, and what
    training will do then (a coarser grid; pairs left for rendering to solve).
    """
    n_pairs = max(shape[0] - 1, 0)
    if n_pairs == 0:
        return "a single frame: no optical flow (space only)"
    sp = flow.spatial_shape(shape)
    stride = flow.auto_stride(sp)
    grid = flow.flow_grid_shape(sp, stride)
    rate = FLOW_VOXELS_PER_S[len(sp)]
    seconds = n_pairs * (0.02 + float(np.prod(grid)) / rate)
    size = n_pairs * len(sp) * float(np.prod(grid)) * 2
    line = (
        f"optical flow for {n_pairs} frame pairs on a {'x'.join(map(str, grid))} grid, "
        f"about {seconds:.0f} s on one CPU core, {size / 1e6:.1f} MB stored"
    )
    if time_limit and seconds > FLOW_SHARE * time_limit:
        line += (
            f"; more than {FLOW_SHARE:.0%} of the time limit: a coarser grid will be used, and "
            "pairs still unsolved then are solved when rendering"
        )
    return line


def compute_flows(
    data: np.ndarray,
    stop: Callable[[], bool],
    device: torch.device | str = "cpu",
    stride: int | None = None,
    budget: float | None = None,
) -> Generator[Progress, None, dict[str, np.ndarray] | None]:
    """Torch TV-L1 flows between neighbouring frames (:mod:`napari_spatimeinr.engines.fast.flow`).

    Returns ``{"gap1": (T-1, ndim, *grid) float16, "stride": (), "computed": (T-1,) bool}``: the
    flow of pair ``i`` on the frame grid subsampled by ``stride`` in y and x (:func:`flow.full_flow`
    brings it to the voxels). ``stride`` None: :func:`flow.auto_stride`.

    With a ``budget`` (seconds) the flow keeps to it: the first pair is timed and the grid made
    coarser while all pairs would not fit; pairs are then solved in batches, and once the budget is
    spent the remaining pairs are left out (``computed`` False: training learns from the others,
    rendering solves them when it first needs them). A generator yielding one Progress per batch;
    returns None if ``stop()`` turned True.
    """
    n_t = data.shape[0]
    sp = flow.spatial_shape(data.shape)
    stride = int(stride or flow.auto_stride(sp))
    n_pairs = max(n_t - 1, 0)
    computed = np.zeros(n_pairs, dtype=bool)
    if n_pairs == 0:
        gap1 = np.zeros((0, len(sp), *sp), np.float16)
        return {"gap1": gap1, "stride": np.asarray(stride), "computed": computed}
    norm = fit_normalization(data)
    t0 = time.perf_counter()
    probe = None
    if budget is not None and n_pairs > 1:  # time one pair, then choose a grid that fits
        probe = flow.solve_pairs(data, 0, 1, stride, device, norm)
        per_pair = time.perf_counter() - t0
        while per_pair * n_pairs > budget and stride < MAX_STRIDE:
            stride *= 2
            per_pair /= 4  # the solver's cost falls with the grid's voxels (less on small grids)
            probe = None
    grid = flow.flow_grid_shape(sp, stride)
    out = np.zeros((n_pairs, len(sp), *grid), dtype=np.float16)
    i0 = 0
    if probe is not None:
        out[0] = probe[0]
        computed[0] = True
        i0 = 1
    label = "x".join(map(str, grid))
    batch = flow.pairs_per_batch(data.shape, stride)
    if budget is not None:  # several batches, so that the budget is checked as flows go
        batch = min(batch, max(1, math.ceil(n_pairs / FLOW_BATCHES)))
    while i0 < n_pairs:
        if stop():
            return None
        if budget is not None and time.perf_counter() - t0 > budget:
            break
        i1 = min(n_pairs, i0 + batch)
        out[i0:i1] = flow.solve_pairs(data, i0, i1, stride, device, norm)
        computed[i0:i1] = True
        i0 = i1
        yield Progress(
            step=0,
            total=None,
            seconds=time.perf_counter() - t0,
            message=f"motion: flow {i0}/{n_pairs} (grid {label})",
        )
    if not computed.all():
        yield Progress(
            step=0,
            total=None,
            seconds=time.perf_counter() - t0,
            message=f"motion: flow budget spent, {int((~computed).sum())} of {n_pairs} pairs "
            "left for rendering to solve",
        )
    return {"gap1": out, "stride": np.asarray(stride), "computed": computed}


#: ``flows.npz`` key of pair ``i``'s flow (format 2: one entry per pair, read when needed)
PAIR_KEY = "gap1_{:05d}"
#: stored flows are rounded to this fraction of a voxel (of the full frame grid) and kept as
#: int16: a displacement error of at most 1/64 voxel, far below a TV-L1 flow's own error on
#: noisy frames, and flows 4-6x smaller on disk than zip-compressed float16 (their low mantissa
#: bits are noise, which does not compress)
FLOW_QUANTUM_VOXELS = 1.0 / 32


def flow_quantum(ndim: int, stride: int) -> np.ndarray:
    """The stored step of each flow component (in units of its grid: y and x are subsampled by
    ``stride``), so that each is :data:`FLOW_QUANTUM_VOXELS` of a full-grid voxel."""
    steps = [FLOW_QUANTUM_VOXELS / (stride if a >= ndim - 2 else 1) for a in range(ndim)]
    return np.asarray(steps, dtype=np.float32)


def quantize_flow(pair: np.ndarray, quantum: np.ndarray) -> np.ndarray:
    """A pair's flow (ndim, *grid) as int16 multiples of ``quantum`` (per component)."""
    q = np.asarray(quantum, np.float32).reshape(-1, *([1] * (pair.ndim - 1)))
    return np.clip(np.round(np.asarray(pair, np.float32) / q), -32767, 32767).astype(np.int16)


def dequantize_flow(stored: np.ndarray, quantum: np.ndarray | None) -> np.ndarray:
    """A stored pair back to float16 (``quantum`` None: stored as float16 already)."""
    if quantum is None or stored.dtype != np.int16:
        return np.asarray(stored, dtype=np.float16)
    q = np.asarray(quantum, np.float32).reshape(-1, *([1] * (stored.ndim - 1)))
    return (stored.astype(np.float32) * q).astype(np.float16)


class FlowPairs:
    """The stored flows of a model pair by pair: ``pairs[i]`` is the flow of frames (i, i+1) on
    its grid, (ndim, *grid) float16, decompressed from ``flows.npz`` when asked for (the last
    :attr:`KEEP` are kept), so a renderer or a training holds a few pairs, not all of them.
    ``pairs[i] = flow`` records a pair solved later (kept in memory). ``np.asarray(pairs)`` gives
    the whole (T-1, ndim, *grid) array."""

    KEEP = 4

    def __init__(
        self,
        path: Path,
        n: int,
        pair_shape: tuple[int, ...],
        quantum: np.ndarray | None = None,
    ):
        self.path = Path(path)
        self.quantum = quantum
        self.shape = (int(n), *(int(s) for s in pair_shape))
        self.dtype = np.dtype(np.float16)
        self._set: dict[int, np.ndarray] = {}
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"flow pair {i} of {len(self)}")
        return i

    def __getitem__(self, i: int | slice) -> np.ndarray:
        if isinstance(i, slice):
            return np.stack([self[j] for j in range(*i.indices(len(self)))])
        i = self._index(i)
        with self._lock:
            if i in self._set:
                return self._set[i]
            hit = self._kept.get(i)
            if hit is not None:
                self._kept.move_to_end(i)
                return hit
        with np.load(self.path) as f:
            pair = dequantize_flow(f[PAIR_KEY.format(i)], self.quantum)
        with self._lock:
            self._kept[i] = pair
            while len(self._kept) > self.KEEP:
                self._kept.popitem(last=False)
        return pair

    def __setitem__(self, i: int | slice, value: np.ndarray) -> None:
        if isinstance(i, slice):
            which = range(*i.indices(len(self)))
            values = np.broadcast_to(np.asarray(value), (len(which), *self.shape[1:]))
            for j, v in zip(which, values, strict=True):
                self[j] = v
            return
        with self._lock:
            self._set[self._index(i)] = np.array(value, dtype=np.float16)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[i] for i in range(len(self))]) if len(self) else np.zeros(self.shape)
        return out.astype(dtype or self.dtype, copy=False)


def flows_bytes(flows: dict) -> bytes:
    """``flows.npz`` of ``compute_flows``'s result: one entry per pair (:class:`FlowPairs` reads
    one at a time), rounded to :data:`FLOW_QUANTUM_VOXELS` as int16 (``quantum``: the step of each
    component) and zip-compressed."""
    gap1 = flows["gap1"]
    ndim = int(gap1.shape[1]) if len(gap1.shape) > 1 else 0
    quantum = flow_quantum(ndim, int(np.asarray(flows["stride"])))
    entries = {PAIR_KEY.format(i): quantize_flow(gap1[i], quantum) for i in range(len(gap1))}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        pairs=np.asarray(gap1.shape, dtype=np.int64),
        quantum=quantum,
        stride=np.asarray(flows["stride"]),
        computed=np.asarray(flows["computed"], dtype=bool),
        **entries,
    )
    return buf.getvalue()


def flows_path(model_dir: ModelDir, name: str = FLOWS_FILE) -> Path:
    """Where the flows ``name`` of a model directory are: the channels of a multi-channel model
    share the top directory's ``flows.npz`` (one motion for all channels)."""
    if name == FLOWS_FILE:
        return channel_root(model_dir).path / name
    return model_dir.path / name


def motion_source(model_dir: ModelDir):
    """The frames the motion of a model is estimated from (normalized, TZYX): its input (read
    lazily), or for a multi-channel model the mean of its channels' normalized inputs (float32 in
    memory; or the channel ``meta.json["motion_from"]`` names), the same whichever channel's model
    asks."""
    root = channel_root(model_dir)
    dirs = channel_dirs(root)
    if len(dirs) == 1:
        return stored_input(model_dir)
    how = root.meta.get("motion_from", "mean")
    if how != "mean":
        return stored_input(dirs[int(how)])
    out = np.zeros(root.shape, np.float32)
    for md in dirs:
        for t in range(out.shape[0]):  # a frame at a time: the inputs are read lazily
            out[t] += np.asarray(md.input[t], dtype=np.float32)
    out /= np.float32(len(dirs))
    return out


def load_flows(model_dir: ModelDir, name: str = FLOWS_FILE) -> dict[str, np.ndarray] | None:
    """The stored flows, or None when there are none yet (older directories: all computed).

    ``"gap1"`` is a :class:`FlowPairs` (pairs read when needed) for flows stored pair by pair,
    the whole array for flows stored before (one ``gap1`` entry)."""
    path = flows_path(model_dir, name)
    if not path.is_file():
        return None
    with np.load(path) as f:
        small = {k: f[k] for k in f.files if not k.startswith("gap1_")}
    flows: dict = dict(small)
    if "pairs" in small:
        shape = tuple(int(s) for s in small.pop("pairs"))
        flows.pop("pairs")
        quantum = flows.pop("quantum", None)  # stored before: float16 pairs
        flows["gap1"] = FlowPairs(path, shape[0], shape[1:], quantum)
    flows.setdefault("computed", np.ones(len(flows["gap1"]), dtype=bool))
    flows.setdefault("stride", np.asarray(1))
    return flows


def ensure_flows(
    model_dir: ModelDir,
    stop: Callable[[], bool],
    device: torch.device | str = "cpu",
    budget: float | None = None,
    input_file: str = "input.npy",
    flows_file: str = FLOWS_FILE,
) -> Generator[Progress, None, dict[str, np.ndarray] | None]:
    """The stored flows, computed and written atomically first if missing (None when stopped).

    ``input_file``/``flows_file``: another training stack of the directory (several inputs,
    ``meta.json["stacks"]``); by default the model's own ``input.npy`` and ``flows.npz``.
    """
    flows = load_flows(model_dir, flows_file)
    if flows is not None:
        return flows
    if input_file == "input.npy" and flows_file == FLOWS_FILE:
        data = motion_source(model_dir)  # a multi-channel model: the one motion of all channels
    else:
        data = stored_input(model_dir, input_file)
    flows = yield from compute_flows(data, stop, device, budget=budget)
    if flows is None:
        return None
    payload = flows_bytes(flows)
    del flows  # read back pair by pair: training holds a few pairs, not all of them
    atomic_write(flows_path(model_dir, flows_file), lambda fh: fh.write(payload))
    return load_flows(model_dir, flows_file)


def stored_input(model_dir: ModelDir, input_file: str = "input.npy"):
    """The training stack ``input_file`` of ``model_dir``, read lazily and normalized
    (:class:`~napari_spatimeinr.store.model_dir.StoredInput`)."""
    if input_file == "input.npy":
        return model_dir.input
    for rec in model_dir.meta.get("stacks") or []:
        if rec.get("input") == input_file:
            return model_dir.stored_input(input_file, rec)
    return model_dir.stored_input(input_file, {})


def fit_normalization(data) -> Normalization:
    """:meth:`Normalization.fit` of a numpy array, or of a lazily read stored input a block at a
    time (the same values)."""
    fit = getattr(data, "fit_normalization", None)
    return fit() if fit is not None else Normalization.fit(data)


def training_pairs(
    data: np.ndarray,
    gap1: np.ndarray,
    device: torch.device | str = "cpu",
    computed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(warped frames (2(T-1), Z, Y, X), index of the measured target frame of each).

    Frame i warped to frame i+1's instant, then frame i+1 warped to frame i's, for every i
    (``gap1``: stored flows on any grid, see :func:`compute_flows`; pairs whose flow was not
    ``computed`` are left out).
    """
    n_t = data.shape[0]
    pairs = [i for i in range(n_t - 1) if computed is None or bool(computed[i])]
    if not pairs:
        return np.zeros((0, *data.shape[1:]), np.float32), np.zeros(0, np.int64)
    warped = np.empty((2 * len(pairs), *data.shape[1:]), dtype=np.float32)
    targets = np.empty(2 * len(pairs), dtype=np.int64)
    sp = flow.spatial_shape(data.shape)
    frames = torch.from_numpy(np.array(data, dtype=np.float32)).to(device)
    frames = frames.reshape(n_t, *sp)
    with torch.no_grad():
        for j, i in enumerate(pairs):
            v = flow.full_flow(gap1[i], sp).to(device)
            # frame i carried to frame i+1's instant (α = 1), frame i+1 back to frame i's (α = 0)
            both = flow.warp(torch.stack([frames[i], frames[i + 1]]), torch.stack([-v, v]))
            warped[2 * j : 2 * j + 2] = both.cpu().numpy().reshape(2, *data.shape[1:])
            targets[2 * j], targets[2 * j + 1] = i + 1, i
    return warped, targets


def _axis_weights(n: int, m: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of voxels ``lo <= p < hi`` of an axis of ``n`` voxels from ``m``
    samples, as :func:`flow.upsample_flow` (``align_corners=False``): (i0, i1, weight of i1)."""
    p = np.arange(lo, hi, dtype=np.float64)
    src = np.maximum((p + 0.5) * (m / n) - 0.5, 0.0) if m != n else p
    i0 = np.minimum(np.floor(src).astype(np.int64), m - 1)
    i1 = np.minimum(i0 + 1, m - 1)
    return i0, i1, (src - i0).astype(np.float32)


def flow_crop(stored: np.ndarray, sp: tuple[int, ...], box: tuple[slice, ...]) -> torch.Tensor:
    """A stored flow (nd, *grid) on the voxels of ``box`` (one slice per spatial axis of ``sp``),
    in voxels: what :func:`flow.full_flow` gives on the whole frame, cut to ``box``, without the
    whole frame's flow (float32 (nd, *box))."""
    g = torch.from_numpy(np.asarray(stored, dtype=np.float32))
    for a, (n, sl) in enumerate(zip(sp, box, strict=True)):
        m = g.shape[1 + a]
        i0, i1, w = _axis_weights(n, m, sl.start, sl.stop)
        lo, hi = int(i0.min()), int(i1.max()) + 1
        part = g.narrow(1 + a, lo, hi - lo)
        view = [1] * g.ndim
        view[1 + a] = len(w)
        wt = torch.from_numpy(w).view(view)
        g = (
            part.index_select(1 + a, torch.from_numpy(i0 - lo)) * (1 - wt)
            + part.index_select(1 + a, torch.from_numpy(i1 - lo)) * wt
        )
        if m != n:  # the component along this axis, in voxels of the full grid
            g.narrow(0, a, 1).mul_(n / m)
    return g


def warp_crop(
    frame: Callable[[tuple[slice, ...]], np.ndarray],
    v: torch.Tensor,
    sp: tuple[int, ...],
    box: tuple[slice, ...],
) -> torch.Tensor:
    """``frame(x + v(x))`` on the voxels ``x`` of ``box``: :func:`flow.warp` of the whole frame
    (linear, edges repeated), cut to ``box``, reading only the part of the frame it samples.

    ``frame(region)``: the frame's voxels in ``region`` (a slice per spatial axis), float32;
    ``v``: the displacement on ``box`` (nd, *box) in voxels (:func:`flow_crop`, signed).
    """
    nd = len(sp)
    pos = []
    for a, (n, sl) in enumerate(zip(sp, box, strict=True)):
        view = [1] * nd
        view[a] = sl.stop - sl.start
        base = torch.arange(sl.start, sl.stop, dtype=torch.float32).view(view)
        pos.append((base + v[a]).clamp_(0, n - 1) if n > 1 else torch.zeros_like(v[a]))
    region, coords = [], []
    for a, p in enumerate(pos):
        lo = int(math.floor(float(p.min())))
        hi = min(int(math.floor(float(p.max()))) + 2, sp[a])
        region.append(slice(lo, hi))
        size = hi - lo
        coords.append((p - lo) * (2.0 / (size - 1)) - 1.0 if size > 1 else torch.zeros_like(p))
    part = torch.from_numpy(np.ascontiguousarray(frame(tuple(region)), dtype=np.float32))
    grid = torch.stack(coords[::-1], dim=-1)[None]  # (1, *box, nd), order (x, y[, z])
    out = F.grid_sample(
        part[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0, 0]


class MotionTask:
    """Training examples and validation of the refinement CNN.

    An example is a neighbour pair in one direction (frame ``i`` carried to frame ``i+1``'s
    instant, or ``i+1`` back to ``i``'s, as :func:`training_pairs`), its target the measured frame;
    training draws crops of them. Each crop is warped when drawn (:func:`warp_crop`, reading only
    the voxels it samples), so the memory does not grow with the number or size of the frames:
    ``data`` may be a memory-mapped or lazily read stack (:class:`~napari_spatimeinr.store.
    model_dir.StoredInput`), the held-out mask a :class:`~napari_spatimeinr.engines.loop.
    PackedMask`.

    One stack, or several (:meth:`several`: one model trained on several stacks): examples are then
    drawn across all of their neighbour pairs, crops sized to fit the smallest stack.
    """

    def __init__(
        self,
        data: np.ndarray,
        gap1: np.ndarray,
        holdout: np.ndarray,
        crop_side: int,
        target_voxels: int,
        device: torch.device,
        seed: int,
        computed: np.ndarray | None = None,
    ):
        self._setup([(data, gap1, holdout, computed)], crop_side, target_voxels, device, seed)

    @classmethod
    def several(
        cls,
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
        crop_side: int,
        target_voxels: int,
        device: torch.device,
        seed: int,
        channels: bool = False,
    ) -> MotionTask:
        """A task over several stacks: ``parts`` = (data, gap1, holdout, computed) per stack.

        ``channels=True``: the parts are the channels of one stack, for a
        :class:`~.refiner.ChannelRefiner` (called with each crop's channel); every channel gets
        its own :data:`N_VALIDATION` validation crops, and :meth:`validate` is the mean of the
        channels' held-out PSNRs (:meth:`validate_channels`: each one)."""
        task = cls.__new__(cls)
        task._setup(parts, crop_side, target_voxels, device, seed, channels)
        return task

    def _setup(
        self, parts, crop_side: int, target_voxels: int, device, seed: int, channels: bool = False
    ) -> None:
        self.device = device
        self.channels = channels
        self.stacks = []  # (data, gap1, holdout, spatial shape) per stack
        self._where: list[tuple[int, int, int]] = []  # example -> (stack, pair i, direction)
        for s, (data, gap1, holdout, computed) in enumerate(parts):
            if isinstance(holdout, np.ndarray):
                holdout = PackedMask.of(holdout)
            self.stacks.append((data, gap1, holdout, flow.spatial_shape(data.shape)))
            for i in range(int(data.shape[0]) - 1):
                if computed is None or bool(computed[i]):
                    self._where.extend([(s, i, 0), (s, i, 1)])
        self.n = len(self._where)
        n_z, n_y, n_x = (min(int(p[0].shape[i]) for p in parts) for i in (1, 2, 3))
        self.crop = (min(n_z, CROP_Z), min(n_y, crop_side), min(n_x, crop_side))
        # at least 2 crops: torch's CPU 3D convolution is several times slower at batch size 1
        self.n_crops = max(MIN_CROPS, math.ceil(target_voxels / float(np.prod(self.crop))))
        g = torch.Generator().manual_seed(seed + 104729)
        cz = min(n_z, CROP_Z)
        plane = max(16, int(math.sqrt(VALIDATION_VOXELS / cz)))
        side = (cz, min(n_y, plane), min(n_x, plane))
        if not self.n:
            boxes = []
        elif channels:  # each channel its own crops (the same places: one motion)
            first = [self._draw(g, side, stack=0) for _ in range(N_VALIDATION)]
            per = len(self._where) // len(parts)
            assert all(w[0] == k // per for k, w in enumerate(self._where)), "channels differ"
            boxes = [(b[0] + s * per, *b[1:]) for s in range(len(parts)) for b in first]
        else:
            boxes = [self._draw(g, side) for _ in range(N_VALIDATION)]
        # the validation crops are fixed: warped once, kept (a few of at most 64 K voxels)
        self.val = [self._example(b, held=True) for b in boxes]
        self.val_stack = [self._where[b[0]][0] for b in boxes]

    @property
    def empty(self) -> bool:
        """True without a solved frame pair (a single frame, or no flow solved in time)."""
        return self.n == 0

    def _draw(
        self, gen: torch.Generator, side: tuple[int, int, int], stack: int | None = None
    ) -> tuple[int, ...]:
        """(example, corner z, y, x, side z, y, x) at random (among ``stack``'s examples)."""
        if stack is None:
            j = int(torch.randint(self.n, (1,), generator=gen))
        else:
            mine = [k for k, w in enumerate(self._where) if w[0] == stack]
            j = mine[int(torch.randint(len(mine), (1,), generator=gen))]
        s = self._where[j][0]
        shape = self.stacks[s][0].shape[1:]
        corner = [
            int(torch.randint(s - c + 1, (1,), generator=gen))
            for s, c in zip(shape, side, strict=True)
        ]
        return (j, *corner, *side)

    def _example(self, box: tuple[int, ...], held: bool = False):
        """(warped crop (1, dz, dy, dx), target crop (dz, dy, dx), mask): the mask is the crop's
        training voxels, or its held-out voxels with ``held``."""
        j, z0, y0, x0, dz, dy, dx = box
        s, i, back = self._where[j]
        data, gap1, holdout, sp = self.stacks[s]
        src, tgt = (i + 1, i) if back else (i, i + 1)
        zyx = (slice(z0, z0 + dz), slice(y0, y0 + dy), slice(x0, x0 + dx))
        crop = zyx if len(sp) == 3 else zyx[1:]
        v = flow_crop(gap1[i], sp, crop)
        if not back:  # frame i carried to frame i+1's instant: sampled at x - v(x)
            v = -v
        frame = data[src] if isinstance(data, np.ndarray) else None

        def read(region: tuple[slice, ...]) -> np.ndarray:
            full = region if len(sp) == 3 else (slice(0, 1), *region)
            part = frame[full] if frame is not None else data[(src, *full)]
            return np.asarray(part, dtype=np.float32).reshape([r.stop - r.start for r in region])

        warped = warp_crop(read, v, sp, crop).reshape(dz, dy, dx)
        target = torch.from_numpy(np.asarray(data[(tgt, *zyx)], dtype=np.float32))
        m = torch.from_numpy(holdout[(tgt, *zyx)])
        return warped[None], target, (m if held else ~m)

    def loss(self, net: torch.nn.Module, gen: torch.Generator) -> torch.Tensor:
        """Masked MSE on ``n_crops`` random crops (held-out voxels excluded)."""
        boxes = [self._draw(gen, self.crop) for _ in range(self.n_crops)]
        xs, ys, ms = zip(*(self._example(b) for b in boxes), strict=True)
        x = torch.stack(xs).to(self.device)
        y = torch.stack(ys).to(self.device)
        m = torch.stack(ms).to(self.device).float()
        pred = self._run(net, x, [self._where[b[0]][0] for b in boxes])
        return (((pred.float() - y) ** 2) * m).sum() / m.sum().clamp(min=1.0)

    def _run(self, net: torch.nn.Module, x: torch.Tensor, stacks: list[int]) -> torch.Tensor:
        """``net`` on crops ``x``; a channel refiner also gets each crop's channel."""
        if not self.channels:
            return net(x)
        return net(x, torch.tensor(stacks, dtype=torch.long, device=x.device))

    def validate_channels(self, net: torch.nn.Module | None) -> list[float | None]:
        """The held-out PSNR of each stack (channel) on its validation crops (data range 1);
        ``net`` None: the warped frames themselves (an untrained refiner)."""
        n_stacks = len(self.stacks)
        se, n = [0.0] * n_stacks, [0] * n_stacks
        with torch.no_grad():
            for (x, y, m), s in zip(self.val, self.val_stack, strict=True):
                if not bool(m.any()):
                    continue
                if net is None:
                    pred = x[0]
                else:
                    pred = self._run(net, x[None].to(self.device), [s])[0].float().cpu()
                se[s] += float(((pred - y)[m] ** 2).sum())
                n[s] += int(m.sum())
        return [psnr(e / k) if k else None for e, k in zip(se, n, strict=True)]

    def validate(self, net: torch.nn.Module) -> float | None:
        """PSNR on the held-out voxels of the validation crops (data range 1: normalized input);
        of channels: the mean of the channels' PSNRs (each channel counts the same)."""
        if self.channels:
            scores = [p for p in self.validate_channels(net) if p is not None]
            return float(np.mean(scores)) if scores else None
        se, n = 0.0, 0
        with torch.no_grad():
            for x, y, m in self.val:
                if not bool(m.any()):
                    continue
                pred = net(x[None].to(self.device))[0].float().cpu()
                se += float(((pred - y)[m] ** 2).sum())
                n += int(m.sum())
        return psnr(se / n) if n else None
