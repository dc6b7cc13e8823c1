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

Flows between neighbouring frames are computed once per model directory and stored in
``flows.npz`` (key ``gap1``, shape ``(T-1, ndim, *spatial)``); rendering reuses them.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import torch

from ...core.progress import Progress
from ...data.normalize import Normalization
from ...store.model_dir import ModelDir, atomic_write, channel_dirs, channel_root
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
    norm = Normalization.fit(data)
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


def flows_path(model_dir: ModelDir, name: str = FLOWS_FILE) -> Path:
    """Where the flows ``name`` of a model directory are: the channels of a multi-channel model
    share the top directory's ``flows.npz`` (one motion for all channels)."""
    if name == FLOWS_FILE:
        return channel_root(model_dir).path / name
    return model_dir.path / name


def motion_source(model_dir: ModelDir) -> np.ndarray:
    """The frames the motion of a model is estimated from (normalized, TZYX float32): its input,
    or for a multi-channel model the mean of its channels' normalized inputs (or the channel
    ``meta.json["motion_from"]`` names), the same whichever channel's model asks."""
    root = channel_root(model_dir)
    dirs = channel_dirs(root)
    if len(dirs) == 1:
        return np.asarray(model_dir.input, dtype=np.float32)
    how = root.meta.get("motion_from", "mean")
    if how != "mean":
        return np.asarray(dirs[int(how)].input, dtype=np.float32)
    out = np.zeros(root.shape, np.float32)
    for md in dirs:
        out += md.input
    out /= np.float32(len(dirs))
    return out


def load_flows(model_dir: ModelDir, name: str = FLOWS_FILE) -> dict[str, np.ndarray] | None:
    """The stored flows, or None when there are none yet (older directories: all computed)."""
    path = flows_path(model_dir, name)
    if not path.is_file():
        return None
    with np.load(path) as f:
        flows = {k: f[k] for k in f.files}
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
    if input_file == "input.npy":
        data = motion_source(model_dir)
    else:
        data = np.load(model_dir.path / input_file, mmap_mode="r", allow_pickle=False)
        data = np.asarray(data, dtype=np.float32)
    flows = yield from compute_flows(data, stop, device, budget=budget)
    if flows is None:
        return None
    buf = io.BytesIO()
    np.savez(buf, **flows)
    atomic_write(flows_path(model_dir, flows_file), lambda fh: fh.write(buf.getvalue()))
    return flows


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


class MotionTask:
    """Training examples and validation of the refinement CNN.

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
    ) -> MotionTask:
        """A task over several stacks: ``parts`` = (data, gap1, holdout, computed) per stack."""
        task = cls.__new__(cls)
        task._setup(parts, crop_side, target_voxels, device, seed)
        return task

    def _setup(self, parts, crop_side: int, target_voxels: int, device, seed: int) -> None:
        self.device = device
        self.inputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.train_mask: list[torch.Tensor] = []
        self.val_mask: list[torch.Tensor] = []
        self._where: list[tuple[int, int]] = []  # example j -> (stack, its own example)
        for s, (data, gap1, holdout, computed) in enumerate(parts):
            warped, target_idx = training_pairs(data, gap1, device, computed)
            self.inputs.append(torch.from_numpy(warped))
            target = np.ascontiguousarray(data[target_idx], dtype=np.float32)
            self.targets.append(torch.from_numpy(target))
            self.train_mask.append(torch.from_numpy(~holdout[target_idx]))
            self.val_mask.append(torch.from_numpy(holdout[target_idx]))
            self._where.extend((s, j) for j in range(len(target_idx)))
        self.n = len(self._where)
        n_z, n_y, n_x = (min(int(p[0].shape[i]) for p in parts) for i in (1, 2, 3))
        self.crop = (min(n_z, CROP_Z), min(n_y, crop_side), min(n_x, crop_side))
        # at least 2 crops: torch's CPU 3D convolution is several times slower at batch size 1
        self.n_crops = max(MIN_CROPS, math.ceil(target_voxels / float(np.prod(self.crop))))
        g = torch.Generator().manual_seed(seed + 104729)
        cz = min(n_z, CROP_Z)
        plane = max(16, int(math.sqrt(VALIDATION_VOXELS / cz)))
        side = (cz, min(n_y, plane), min(n_x, plane))
        self.val = [self._draw(g, side) for _ in range(N_VALIDATION)] if self.n else []

    @property
    def empty(self) -> bool:
        """True for a single frame: nothing to learn from in time."""
        return self.n == 0

    def _draw(self, gen: torch.Generator, side: tuple[int, int, int]) -> tuple[int, ...]:
        j = int(torch.randint(self.n, (1,), generator=gen))
        s, _ = self._where[j]
        shape = self.targets[s].shape[1:]
        corner = [
            int(torch.randint(s - c + 1, (1,), generator=gen))
            for s, c in zip(shape, side, strict=True)
        ]
        return (j, *corner, *side)

    def _crop(self, box: tuple[int, ...], mask: list[torch.Tensor]):
        j, z0, y0, x0, dz, dy, dx = box
        s, jj = self._where[j]
        sl = (jj, slice(z0, z0 + dz), slice(y0, y0 + dy), slice(x0, x0 + dx))
        return self.inputs[s][sl][None], self.targets[s][sl], mask[s][sl]

    def loss(self, net: torch.nn.Module, gen: torch.Generator) -> torch.Tensor:
        """Masked MSE on ``n_crops`` random crops (held-out voxels excluded)."""
        boxes = [self._draw(gen, self.crop) for _ in range(self.n_crops)]
        xs, ys, ms = zip(*(self._crop(b, self.train_mask) for b in boxes), strict=True)
        x = torch.stack(xs).to(self.device)
        y = torch.stack(ys).to(self.device)
        m = torch.stack(ms).to(self.device).float()
        pred = net(x)
        return (((pred.float() - y) ** 2) * m).sum() / m.sum().clamp(min=1.0)

    def validate(self, net: torch.nn.Module) -> float | None:
        """PSNR on the held-out voxels of the validation crops (data range 1: normalized input)."""
        se, n = 0.0, 0
        with torch.no_grad():
            for box in self.val:
                x, y, m = self._crop(box, self.val_mask)
                if not bool(m.any()):
                    continue
                pred = net(x[None].to(self.device))[0].float().cpu()
                se += float(((pred - y)[m] ** 2).sum())
                n += int(m.sum())
        return psnr(se / n) if n else None
