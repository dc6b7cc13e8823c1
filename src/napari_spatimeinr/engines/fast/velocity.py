"""The motion a model recovered, as velocities in physical units (the ``spatimeinr motion`` file).

The ``fast`` engine stores the optical flow between neighbouring frames in its model directory
(``flows.npz``, :mod:`napari_spatimeinr.engines.fast.task`): float16, in voxels, possibly on a grid
subsampled in y and x, some pairs possibly left for rendering to solve. Its convention
(:mod:`napari_spatimeinr.engines.fast.motion`) is ``frame_t(x) ≈ frame_{t+1}(x + v(x))``: the content at voxel
``x`` of frame ``t`` is found at ``x + v(x)`` in frame ``t+1``. ``v`` is therefore the forward
displacement of what is at frame ``t``'s voxels, and the velocity there is

    velocity = v (voxels) × voxel size (µm) / frame interval (s)      per axis, in µm/s.

Layout of :meth:`VelocityField.interval` and of the exported file (DESIGN.md, "Motion file"): axes
TCZYX; T = the T−1 intervals (entry ``t``: the velocity between frames ``t`` and ``t+1``, at frame
``t``'s voxels); C = (vz, vy, vx) in µm/s, ``vz = 0`` for a 2D+t stack (Z = 1).

Only models whose engine estimates motion have a velocity field; any other model (the classical
baselines, the ``paper`` preset, a single frame) is refused with one message saying so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import SpatimeINRError
from ...store.model_dir import ModelDir

#: the velocity components, in the order of the file's C axis
COMPONENTS = ("vz", "vy", "vx")
UNIT = "µm/s"
#: bytes of full-grid intervals kept per field (each 3 × Z × Y × X float32; at most 4)
INTERVAL_CACHE_BYTES = 256 * 2**20
INTERVAL_CACHE = 4


def has_motion(md: ModelDir) -> bool:
    """Whether the model's engine estimates motion (SpatimeINR, ``fast`` preset)."""
    if md.method != "spatimeinr":
        return False
    from ..presets import engine_of

    return engine_of(md.config) == "fast"


def check_motion(md: ModelDir) -> None:
    """Refuse, with one message naming the fix, a model that has no motion field."""
    if not has_motion(md):
        what = (
            f"a {md.method!r} model"
            if md.method != "spatimeinr"
            else f"a SpatimeINR {md.config.preset!r} preset model"
        )
        raise SpatimeINRError(
            f"{md.path.name} is {what}, which does not estimate motion: it has no flows to "
            "export. Train a model with the fast engine (spatimeinr train INPUT -o MODEL "
            "--method spatimeinr --preset fast) and export its motion."
        )
    if md.shape[0] < 2:
        raise SpatimeINRError(
            f"{md.path.name} was trained on a single frame: there is no motion between frames to "
            "export. Train it on a time-lapse (T ≥ 2)."
        )


class VelocityField:
    """The velocity field of a motion model directory, interval by interval; thread-safe.

    Pairs whose flow training did not store (its time budget was spent, or it stopped before the
    flows were written) are solved here when first needed, as rendering does, and kept in memory
    only: the model directory is never written.
    """

    def __init__(self, model_dir: str | Path | ModelDir, device: str = "auto"):
        from ...core.device import check_device
        from .flow import spatial_shape
        from .grid import auto_stride, flow_grid_shape
        from .task import load_flows

        self.md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        check_motion(self.md)
        #: where pairs whose flow was not stored are solved (auto: a GPU when there is one)
        self.device = check_device(device)
        self.frame_shape = tuple(int(s) for s in self.md.shape[1:])
        self.sp = spatial_shape(self.md.shape)
        flows = load_flows(self.md)
        n = self.md.shape[0] - 1
        if flows is None:  # training stopped before storing them: every pair is solved here
            stride = auto_stride(self.sp)
            grid = flow_grid_shape(self.sp, stride)
            flows = {
                "gap1": np.zeros((n, len(self.sp), *grid), np.float16),
                "stride": np.asarray(stride),
                "computed": np.zeros(n, bool),
            }
        gap1 = flows["gap1"]  # pairs read when needed (FlowPairs); pairs solved here are set
        self.flows = gap1 if hasattr(gap1, "path") else np.array(gap1)
        self.stride = int(flows["stride"])
        self.computed = np.array(flows["computed"], dtype=bool)
        self._norm: Any = None
        self._src: np.ndarray | None = None
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        vz, vy, vx = self.md.voxel_size
        fi = self.md.frame_interval
        #: µm/s per voxel of displacement, per flow component (z, y, x) or (y, x)
        per_axis = (vz / fi, vy / fi, vx / fi)
        self.factors = per_axis[-len(self.sp) :]

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def n_intervals(self) -> int:
        return int(self.md.shape[0]) - 1

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(T−1, 3, Z, Y, X) of the whole field."""
        return (self.n_intervals, 3, *self.frame_shape)  # type: ignore[return-value]

    @property
    def peak_bytes(self) -> int:
        """Memory one interval takes to compute: the stored flows, the input and the TV-L1
        solver's buffers (about 60 floats per flow-grid voxel, :data:`flow.BATCH_VOXELS`) when a
        pair is solved, the displacement on the voxels and the velocity (float32), the cache."""
        vol = int(np.prod(self.frame_shape)) * 4
        grid = int(np.prod(self.flows.shape[2:]))
        solve = (int(np.prod(self.md.shape)) * 4 + 60 * 4 * grid) if self.n_unsolved else 0
        cache = min(INTERVAL_CACHE_BYTES, INTERVAL_CACHE * 3 * vol)
        return int(self.flows.nbytes) + solve + (len(self.sp) + 3) * vol + cache

    def estimate_seconds(self) -> float:
        """A first estimate of an export's time: the flows to solve (at the training's measured
        rate of TV-L1 on one core) and the writing (about 30 MB/s: OME-Zarr on tz_yeast, with
        the upsampling of the flows; OME-TIFF was twice as fast)."""
        from .task import FLOW_VOXELS_PER_S

        grid = int(np.prod(self.flows.shape[2:]))
        solve = self.n_unsolved * (0.02 + grid / FLOW_VOXELS_PER_S[len(self.sp)])
        return solve + int(np.prod(self.shape)) * 4 / 30e6

    @property
    def n_unsolved(self) -> int:
        """Pairs whose flow is not stored and is solved when first needed."""
        return int((~self.computed).sum())

    def _check(self, t: int) -> int:
        t = int(t)
        if not 0 <= t < self.n_intervals:
            raise SpatimeINRError(
                f"Interval {t} does not exist: {self.md.path.name} has {self.n_intervals} "
                f"intervals (0 to {self.n_intervals - 1}) between its {self.md.shape[0]} frames."
            )
        return t

    # -- values -----------------------------------------------------------------------------------
    def _stored(self, t: int) -> np.ndarray:
        """The flow of pair ``t`` on its stored grid (solved first if it was not stored)."""
        with self._lock:
            if not self.computed[t]:
                from ...core.device import resolve_device
                from .flow import solve_pairs
                from .task import fit_normalization, motion_source

                if self._src is None:  # a multi-channel model: its channels' mean (one motion)
                    self._src = motion_source(self.md)
                data = self._src
                if self._norm is None:  # the same normalization as training's (compute_flows)
                    self._norm = fit_normalization(data)
                device = resolve_device(self.device)
                self.flows[t] = solve_pairs(data, t, t + 1, self.stride, device, self._norm)[0]
                self.computed[t] = True
            return self.flows[t]

    def displacement(self, t: int) -> np.ndarray:
        """Pair ``t``'s flow on frame ``t``'s voxels, in voxels: float32 (nd, *spatial)."""
        from .flow import full_flow

        return full_flow(self._stored(t), self.sp).numpy()

    def interval(self, t: int) -> np.ndarray:
        """Velocity between frames ``t`` and ``t+1`` at frame ``t``'s voxels: (3, Z, Y, X) float32,
        components (vz, vy, vx) in µm/s."""
        t = self._check(t)
        with self._lock:
            hit = self._cache.get(t)
            if hit is not None:
                self._cache.move_to_end(t)
                return hit
            d = self.displacement(t)
            out = np.zeros((3, *self.frame_shape), np.float32)
            nd = len(self.sp)
            for c in range(nd):
                out[3 - nd + c] = (d[c] * np.float32(self.factors[c])).reshape(self.frame_shape)
            if out.nbytes <= INTERVAL_CACHE_BYTES:
                self._cache[t] = out
            while len(self._cache) > min(INTERVAL_CACHE, INTERVAL_CACHE_BYTES // out.nbytes):
                self._cache.popitem(last=False)
            return out

    def vectors(self, t: int, step: int, signal_only: bool = False) -> np.ndarray:
        """napari Vectors data for interval ``t``: (N, 2, 3) in voxel index units (z, y, x).

        Positions on a grid of every ``step``-th voxel in y and x (every plane in z), at the
        centre of each ``step`` × ``step`` cell; directions = the displacement over one frame
        interval, in voxels (velocity × frame interval / voxel size). A napari layer with the
        input's scale (µm) shows them at their physical place and length.

        ``signal_only``: only the positions where frame ``t``, averaged over the ``step`` ×
        ``step`` cell around them, is above Otsu's threshold of those averages. Optical flow also
        fills empty background with a smooth, noise-driven field (TV-L1's regularization); the
        arrows that matter for QC are on the structures.
        """
        step = max(1, int(step))
        d = self.displacement(self._check(t))
        nd = len(self.sp)
        nz, ny, nx = self.frame_shape
        y = np.arange(min(ny - 1, step // 2), ny, step)
        x = np.arange(min(nx - 1, step // 2), nx, step)
        z = np.arange(nz)
        gz, gy, gx = np.meshgrid(z, y, x, indexing="ij")
        pos = np.stack([gz, gy, gx], -1).reshape(-1, 3).astype(np.float32)
        full = np.zeros((3, *self.frame_shape), np.float32)
        for c in range(nd):
            full[3 - nd + c] = d[c].reshape(self.frame_shape)
        direction = full[:, gz, gy, gx].reshape(3, -1).T
        if signal_only:
            keep = self._signal(t, step, (gz, gy, gx)).reshape(-1)
            pos, direction = pos[keep], direction[keep]
        return np.stack([pos, direction], axis=1)

    def _signal(self, t: int, step: int, idx: tuple[np.ndarray, ...]) -> np.ndarray:
        """Which grid positions ``idx`` of frame ``t`` are on structures (see :meth:`vectors`)."""
        from scipy import ndimage
        from skimage.filters import threshold_otsu

        frame = np.asarray(self.md.input[t], dtype=np.float32)
        means = ndimage.uniform_filter(frame, size=(1, step, step), mode="nearest")[idx]
        if means.size == 0 or float(np.ptp(means)) == 0.0:
            return np.ones(means.shape, bool)
        return means > threshold_otsu(means)

    def meta(self) -> dict[str, Any]:
        """Physical metadata and provenance of the exported field."""
        md = self.md
        prov = md.provenance()
        origin = [float(v) for v in md.meta.get("origin", (0.0, 0.0, 0.0, 0.0))]
        prov.update(
            {
                "kind": "velocity",
                "axes": "TCZYX",
                "channels": list(COMPONENTS),
                "unit": UNIT,
                "layout": "entry t: velocity between frames t and t+1 at frame t's voxels",
                "input_shape": list(md.shape),
                "voxel_size_um": dict(zip("zyx", md.voxel_size, strict=True)),
                "frame_interval_s": md.frame_interval,
                "origin": {
                    "t_s": origin[0],
                    "z_um": origin[1],
                    "y_um": origin[2],
                    "x_um": origin[3],
                },
                "flow_stride_yx": self.stride,
                "flow_convention": "frame_t(x) = frame_t+1(x + displacement(x)), TV-L1",
                "dtype": "float32",
            }
        )
        return prov


_FIELDS: dict[tuple, VelocityField] = {}
_FIELDS_LOCK = threading.Lock()


def get_velocity_field(path: str | Path, device: str = "auto") -> VelocityField:
    """The (cached) velocity field of a model directory: loaded once per process and device."""
    p = Path(path).resolve()
    stamps = tuple(
        (p / n).stat().st_mtime_ns if (p / n).exists() else 0 for n in ("flows.npz", "meta.json")
    )
    key = (str(p), *stamps, device)
    with _FIELDS_LOCK:
        hit = _FIELDS.get(key)
        if hit is None:
            hit = VelocityField(p, device)
            if len(_FIELDS) >= 2:
                _FIELDS.pop(next(iter(_FIELDS)))
            _FIELDS[key] = hit
        return hit


def interval_vectors(
    path: str, t: int, step: int, signal_only: bool = False, device: str = "auto"
) -> np.ndarray:
    """:meth:`VelocityField.vectors` of a model directory (a picklable task for the widgets)."""
    return get_velocity_field(path, device).vectors(t, step, signal_only)


def export_motion(
    model_dir: str | Path | ModelDir | VelocityField,
    path: str | Path,
    *,
    overwrite: bool = False,
    progress: Any = None,
    cancel: Any = None,
    device: str = "auto",
    force: bool = False,
) -> Path:
    """Write the velocity field of ``model_dir`` (or of an open field) to ``path`` (.ome.tif,
    .tif or .ome.zarr).

    Refused before any work: a model without motion, an unknown suffix, an existing ``path``
    without ``overwrite``, an unwritable folder, too little free disk (``force`` skips that check
    only). ``progress(done, total)`` counts intervals; ``cancel()`` stops (no file is left).
    """
    from ...core.resources import check_disk, check_memory, check_writable
    from ...io.formats import stem_of
    from ...io.write import check_target
    from ...io.write_velocity import velocity_bytes, velocity_family, write_velocity

    velocity_family(path)  # an unknown suffix is refused before the model is opened
    check_target(Path(path), overwrite)
    check_writable(path, "motion file")
    field = model_dir if isinstance(model_dir, VelocityField) else VelocityField(model_dir, device)
    check_memory(
        field.peak_bytes,
        f"exporting the motion of {field.md.path.name}",
        "Close other programs or export on a machine with more memory.",
    )
    check_disk(
        velocity_bytes(field.shape),
        path,
        f"the motion file {Path(path).name}",
        "Free some space or write to another disk.",
        force=force,
    )
    meta = field.meta()
    meta["name"] = f"{stem_of(path)} motion"
    return write_velocity(
        path,
        field.shape,
        field.interval,
        meta,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
    )
