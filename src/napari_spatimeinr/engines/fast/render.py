"""Rendering of the motion engine (the ``fast`` SpatimeINR preset).

A frame at instant ``t`` between measured frames ``i`` and ``i+1`` (``α = t - i``) is
``R((1-α)·(frame i warped to t) + α·(frame i+1 warped to t))`` on the input grid, ``R`` the
refinement CNN and the warps those of motion-compensated interpolation (:mod:`napari_spatimeinr.engines.fast.flow`,
torch). At a measured instant it is, by default, ``R`` on half the frame and half its neighbours
warped onto it (one noise level with the new frames), or the measured frame itself with
``keep_measured``. Space is then resampled per axis with the mean-preserving spline
(:mod:`napari_spatimeinr.engines.histopolation`): each output voxel is the mean of the spline over its
own extent, so mean-pooling a render back to the input grid returns the frame it came from (the
paper's cycle consistency, here exact by construction), and an axis at scale 1 is returned unchanged.

Frames are computed once per instant and cached (``FRAME_CACHE`` of them), so browsing the z planes
of one instant, or re-visiting an instant, costs only the spatial resampling.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch

from ...core.device import torch_device
from ...core.errors import SpatimeINRError
from ...data.normalize import Normalization
from ...store import checkpoint
from ...store.model_dir import ModelDir, n_channels
from ..histopolation import cell_mean_matrix
from ..presets import resolve_params
from ..zdecoder.apply import SpatialResampler
from . import flow, uncertainty
from . import task as motion_task
from .refiner import make_refiner

#: refined frames kept per renderer
FRAME_CACHE = 8
#: voxels of one refiner pass on a frame (frames are refined in tiles of rows of y beyond this)
NET_TILE_VOXELS = 1 << 20
#: measured (input) frames kept per renderer, read from the model directory when needed
FRAMES_KEPT = 4
#: instants closer than this to a measured frame (in frames) are that frame
EPS = 1e-6
#: held-out frames (each predicted from its two neighbours) that calibrate the uncertainty
CALIBRATION_FRAMES = 12


@lru_cache(maxsize=64)
def _matrix(n: int, positions: bytes, width: float) -> np.ndarray:
    p = np.frombuffer(positions, dtype=np.float64)
    return cell_mean_matrix(n, p, width).astype(np.float32)


def resample_space(frame: np.ndarray, z, y, x, spacing_zyx, z_resampler=None) -> np.ndarray:
    """``frame`` (Z, Y, X) on the outer-product grid ``z, y, x`` (input index units).

    Mean-preserving spline per axis, output voxel side ``spacing_zyx``; an axis whose coordinates
    are the input's own voxels at side 1 is taken as is (no arithmetic). ``z_resampler`` (the
    learned spatial part, :mod:`napari_spatimeinr.engines.zdecoder.apply`) resamples z first when it applies.
    """
    out = np.asarray(frame, dtype=np.float32)
    done = z_resampler is not None and (got := z_resampler(out, z, y, x, spacing_zyx)) is not None
    if done:
        out, y, x = got
    for axis, (c, w) in enumerate(zip((z, y, x), spacing_zyx, strict=True)):
        if axis == 0 and done:
            continue
        c = np.ascontiguousarray(c, dtype=np.float64).reshape(-1)
        n = out.shape[axis]
        if abs(w - 1.0) < 1e-9 and np.all(np.abs(c - np.round(c)) < 1e-9):
            idx = np.clip(np.round(c).astype(np.int64), 0, n - 1)
            out = np.take(out, idx, axis=axis)
            continue
        m = _matrix(n, c.tobytes(), float(w))
        out = np.moveaxis(np.tensordot(m, out, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


class FrameStore:
    """The frames of a stored input as tensors on ``device``, read when first asked for:
    ``store[i]`` is frame ``i`` (Z, Y, X), normalized float32; the last :data:`FRAMES_KEPT` are
    kept (a render visits instants in order, so its neighbours are read once)."""

    def __init__(self, data, device: torch.device):
        self.data = data
        self.device = device
        self.shape = tuple(data.shape)
        self._kept: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        i = int(i)
        with self._lock:
            hit = self._kept.get(i)
            if hit is not None:
                self._kept.move_to_end(i)
                return hit
        frame = torch.from_numpy(np.ascontiguousarray(self.data[i], dtype=np.float32))
        frame = frame.to(self.device)
        with self._lock:
            self._kept[i] = frame
            while len(self._kept) > FRAMES_KEPT:
                self._kept.popitem(last=False)
        return frame


class MotionRenderer:
    """Renders blocks of a motion-engine model directory; thread-safe."""

    def __init__(self, model_dir: ModelDir, device: str = "auto"):
        weights = checkpoint.load_weights(model_dir, "cpu")  # a clear error if not trained
        self.device = torch_device(device)
        self.params = resolve_params(model_dir.config)
        data = model_dir.input  # read a frame at a time (StoredInput), never loaded whole
        self.frame_shape = tuple(data.shape[1:])
        self.sp = flow.spatial_shape(data.shape)
        self.n_frames = data.shape[0]
        self.data = FrameStore(data, self.device)
        self.net = make_refiner(self.params, data.shape).to(self.device).eval()
        self.net.load_state_dict(weights)
        flows = motion_task.load_flows(model_dir)
        multi = n_channels(model_dir) > 1
        if flows is None:  # training stopped before the flows were stored: compute them here
            src = motion_task.motion_source(model_dir) if multi else data
            gen = motion_task.compute_flows(src, lambda: False, self.device)
            try:
                while True:
                    next(gen)
            except StopIteration as end:
                flows = end.value
        self.flows = flows["gap1"]
        self.stride = int(flows["stride"])
        self.computed = np.array(flows["computed"], dtype=bool)
        # for pairs whose flow training left out (its time budget was spent); a multi-channel
        # model solves them on its motion source, the same for every channel
        self._raw = data
        self._motion_of = model_dir if multi else None
        self._flow_norm: Normalization | None = None
        self.lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, float], np.ndarray] = OrderedDict()
        self._flow_cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.tile = None  # rows (y) per CNN tile after a CUDA out-of-memory
        self.spatial = SpatialResampler.load(model_dir)  # None: z on the spline
        self.model_path = model_dir.path
        self._calibration: uncertainty.Calibration | None = None
        self._pixel_noise: np.ndarray | None = None
        self._cal_lock = threading.Lock()  # not self.lock: the fit renders under that one
        self._unc_cache: OrderedDict[tuple[int, float, bool], np.ndarray] = OrderedDict()

    def _locate(self, t: float) -> tuple[int, float]:
        """(frame i, fraction α) of instant ``t``; outside the sequence the end frame repeats."""
        if self.n_frames == 1 or t <= 0:
            return 0, 0.0
        if t >= self.n_frames - 1:
            return self.n_frames - 1, 0.0
        i = int(math.floor(t))
        a = float(t - i)
        if a < EPS:
            return i, 0.0
        if a > 1 - EPS:
            return i + 1, 0.0
        return i, a

    def _flow(self, i: int) -> torch.Tensor:
        """The flow between frames i and i+1 on the voxels (nd, *spatial), on the device."""
        if i in self._flow_cache:
            self._flow_cache.move_to_end(i)
            return self._flow_cache[i]
        if not self.computed[i]:  # solved once, here, when first needed
            if self._motion_of is not None:
                self._raw, self._motion_of = motion_task.motion_source(self._motion_of), None
            if self._flow_norm is None:
                self._flow_norm = motion_task.fit_normalization(self._raw)
            self.flows[i] = flow.solve_pairs(
                self._raw, i, i + 1, self.stride, self.device, self._flow_norm
            )[0]
            self.computed[i] = True
        v = flow.full_flow(self.flows[i], self.sp).to(self.device)
        self._flow_cache[i] = v
        while len(self._flow_cache) > 2:
            self._flow_cache.popitem(last=False)
        return v

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        """The refiner on a batch (B, Z, Y, X) of frames; tiled along y after a CUDA
        out-of-memory."""
        xt = x[:, None]
        n_y = x.shape[2]
        halo = self.params.refine_depth
        # rows per tile: a tile's activations stay near NET_TILE_VOXELS voxels × width at any
        # frame size (the result is the same: each tile has a halo of the network's reach)
        bound = max(8, NET_TILE_VOXELS // max(1, x.shape[0] * x.shape[1] * x.shape[3]))
        while True:
            rows = min(self.tile or n_y, bound)
            try:
                if rows >= n_y:
                    return self.net(xt).float()
                out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
                for y0 in range(0, n_y, rows):
                    lo, hi = max(0, y0 - halo), min(n_y, y0 + rows + halo)
                    part = self.net(xt[..., lo:hi, :]).float()
                    out[:, :, y0 : y0 + rows] = part[:, :, y0 - lo : y0 - lo + min(rows, n_y - y0)]
                return out
            except torch.cuda.OutOfMemoryError:
                if rows <= 8:
                    raise
                self.tile = max(8, rows // 2)
                torch.cuda.empty_cache()

    def _measured(self, i: int) -> torch.Tensor:
        """The model's estimate of measured frame ``i``: the refiner on half the frame itself and
        half the mean of its neighbours warped onto it.

        A new frame is the refiner on a blend of two warped frames; blending the same way here
        gives measured and new frames one noise level (a movie without pulses every k-th frame: on
        ``t_ctc2d`` ×4 the high-frequency ratio of measured to new frames is 1.11, against 1.66 for
        the refined frame alone and 2.5 for the raw frame), while the frame's own content keeps
        half the weight.
        """
        sp = self.sp
        own = self.data[i]
        neighbours = []
        if i > 0:  # frame i-1 carried to instant i by the flow of pair (i-1, i)
            a, b = self.data[i - 1].reshape(sp), self.data[i].reshape(sp)
            neighbours.append(flow.warp_pair(a, b, self._flow(i - 1), 1.0)[0])
        if i < self.n_frames - 1:  # frame i+1 carried back to instant i
            a, b = self.data[i].reshape(sp), self.data[i + 1].reshape(sp)
            neighbours.append(flow.warp_pair(a, b, self._flow(i), 0.0)[1])
        if neighbours:
            own = 0.5 * own + 0.5 * (sum(neighbours) / len(neighbours)).reshape(self.frame_shape)
        return self._net(own[None])[0]

    def _compute(self, i: int, a: float, keep_measured: bool) -> torch.Tensor:
        if a == 0.0:
            return self.data[i] if keep_measured else self._measured(i)
        sp = self.sp
        both = flow.warp_pair(
            self.data[i].reshape(sp), self.data[i + 1].reshape(sp), self._flow(i), a
        )
        blend = ((1.0 - a) * both[0] + a * both[1]).reshape(self.frame_shape)
        # one refiner pass on the blend: the same PSNR as blending two refined frames (26.565 vs
        # 26.562 dB on t_ctc2d x4) at half the cost
        return self._net(blend[None])[0]

    def frame(self, t: float, keep_measured: bool = False) -> np.ndarray:
        """The (Z, Y, X) frame at instant ``t`` on the input grid (normalized units).

        At a measured instant: the refiner's estimate of the frame (default, so that measured and
        new frames have one noise level), or the measured frame itself with ``keep_measured``.
        """
        i, a = self._locate(float(t))
        key = (i, round(a, 9), bool(keep_measured and a == 0.0))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with torch.no_grad():
            out = self._compute(i, a, keep_measured).float().cpu().numpy()
        self._cache[key] = out
        while len(self._cache) > FRAME_CACHE:
            self._cache.popitem(last=False)
        return out

    def render_block(
        self, t, z, y, x, spacing=(1.0, 1.0, 1.0, 1.0), keep_measured: bool = False
    ) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        sp = tuple(float(s) for s in spacing[1:])
        with self.lock:
            frames = [self.frame(tv, keep_measured) for tv in t]
        zr = [self.z_resampler(tv, keep_measured) for tv in t]
        out = [resample_space(f, z, y, x, sp, r) for f, r in zip(frames, zr, strict=True)]
        return np.stack(out).astype(np.float32)

    def z_resampler(self, t: float, keep_measured: bool = False):
        """The learned z resampler bound to instant ``t`` (its cache key), or None."""
        if self.spatial is None:
            return None
        i, a = self._locate(float(t))
        key = (i, a, bool(keep_measured and a == 0.0))  # as the frame cache: raw or model frame
        return lambda f, z, y, x, sp: self.spatial(f, z, y, x, sp, key)

    # ---- uncertainty (see napari_spatimeinr.engines.fast.uncertainty) ----

    def calibration(self) -> uncertainty.Calibration:
        """The model's uncertainty calibration: ``uncertainty.json``, else fitted now (models
        trained before it existed; kept in memory, the model directory is not changed)."""
        with self._cal_lock:
            if self._calibration is None:
                cal = uncertainty.load(self.model_path / uncertainty.UNCERTAINTY_FILE)
                if cal is None:
                    cal = self.fit_calibration(source="computed on demand (no uncertainty.json)")
                self._calibration = cal
            return self._calibration

    def pixel_noise(self) -> np.ndarray:
        """The noise level of each camera pixel (Y, X), measured once on the input."""
        if self._pixel_noise is None:
            self._pixel_noise = uncertainty.pixel_noise(self._raw)
        return self._pixel_noise

    def calibration_frames(self, max_frames: int = CALIBRATION_FRAMES) -> list[int]:
        """Measured frames ``j`` predicted from ``j-1`` and ``j+1`` for the calibration: evenly
        spread, those whose two flows training stored first."""
        if self.n_frames < 3:
            raise SpatimeINRError(
                "An uncertainty map needs a time-lapse of at least 3 frames (it is calibrated on "
                "frames predicted from their two neighbours); this model has "
                f"{self.n_frames}: render without --uncertainty."
            )
        inner = np.arange(1, self.n_frames - 1)
        ready = [int(j) for j in inner if self.computed[j - 1] and self.computed[j]]
        pool = ready if len(ready) >= min(3, len(inner)) else [int(j) for j in inner]
        if len(pool) <= max_frames:
            return pool
        pick = np.unique(np.round(np.linspace(0, len(pool) - 1, max_frames)).astype(int))
        return [pool[k] for k in pick]

    def heldout_prediction(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``j`` predicted from frames ``j-1`` and ``j+1`` as a new instant is rendered
        (flow ``j-1 → j+1``: the two stored flows composed, ``α = 1/2``).

        Returns (features (len(FEATURES), *S), error ``prediction - frame j`` (*S)), normalized units.
        """
        sp = self.sp
        with self.lock, torch.no_grad():
            v1, v2 = self._flow(j - 1), self._flow(j)
            nd = v1.shape[0]
            # a(x) ≈ b(x + v1(x)) and b(y) ≈ c(y + v2(y)), so a(x) ≈ c(x + v1(x) + v2(x + v1(x)))
            # one component at a time (the same values as warping the three at once, a third of
            # the sampling grid's memory)
            v13 = v1 + torch.cat([flow.warp(v2[c : c + 1], v1[None]) for c in range(nd)])
            a, c = self.data[j - 1].reshape(sp), self.data[j + 1].reshape(sp)
            w0, w1 = flow.warp_pair(a, c, v13, 0.5)
            pred = self._net((0.5 * (w0 + w1)).reshape(self.frame_shape)[None])[0]
            err = (pred - self.data[j]).reshape(sp).float().cpu().numpy()
            pred_np = pred.reshape(sp).float().cpu().numpy()
            w0n, w1n, vn = (x.float().cpu().numpy() for x in (w0, w1, v13))
        own_out = uncertainty.pixel_noise(self._raw, exclude_frame=j)  # frame j is the truth here
        feats = uncertainty.frame_features(pred_np, 0.5, w0n, w1n, vn, own_out)
        return feats, err

    def fit_calibration(
        self, source: str = "training", deadline: float | None = None
    ) -> uncertainty.Calibration:
        """Fit the uncertainty calibration on held-out frames (at least 2, more while before
        ``deadline``, a ``time.perf_counter()`` value)."""
        import time

        samples = []
        rng = np.random.default_rng(7)
        for n, j in enumerate(self.calibration_frames()):
            if deadline is not None and n >= 2 and time.perf_counter() > deadline:
                break
            feats, err = self.heldout_prediction(j)
            if err.size > uncertainty.FIT_VOXELS:  # keep what the fit can draw, not the frame:
                # a 100 x 512 x 512 frame's features are 1 GB (13 GB at peak over 10 frames)
                idx = rng.choice(err.size, size=uncertainty.FIT_VOXELS, replace=False)
                feats = feats.reshape(len(feats), -1)[:, idx]
                err = err.reshape(-1)[idx]
            samples.append((feats, err))
        return uncertainty.fit_calibration(samples, source=source)

    def uncertainty_frame(self, t: float, keep_measured: bool = False) -> np.ndarray:
        """Expected |error| (Z, Y, X) of :meth:`frame` at instant ``t`` (normalized units); call
        with ``self.lock`` held, after :meth:`calibration`."""
        cal = self._calibration or self.calibration()
        i, a = self._locate(float(t))
        key = (i, round(a, 9), bool(keep_measured and a == 0.0))
        if key in self._unc_cache:
            self._unc_cache.move_to_end(key)
            return self._unc_cache[key]
        sp = self.sp
        pred = self.frame(t, keep_measured).reshape(sp)
        if a == 0.0:
            feats = uncertainty.frame_features(pred, 0.0, pixel_noise=self.pixel_noise())
        else:
            with torch.no_grad():
                v = self._flow(i)
                w0, w1 = flow.warp_pair(
                    self.data[i].reshape(sp), self.data[i + 1].reshape(sp), v, a
                )
                w0n, w1n, vn = (x.float().cpu().numpy() for x in (w0, w1, v))
            feats = uncertainty.frame_features(pred, a, w0n, w1n, vn, self.pixel_noise())
        out = cal.predict(feats).reshape(self.frame_shape)
        self._unc_cache[key] = out
        while len(self._unc_cache) > FRAME_CACHE:
            self._unc_cache.popitem(last=False)
        return out

    def uncertainty_block(
        self, t, z, y, x, spacing=(1.0, 1.0, 1.0, 1.0), keep_measured: bool = False
    ) -> np.ndarray:
        """Expected |error| on the block of :meth:`render_block` (normalized units, >= 0): the
        frame's map resampled in space by the mean-preserving spline, combined in quadrature with
        the z decoder's own error where it renders z (:meth:`.SpatialResampler.uncertainty`)."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        sp = tuple(float(s) for s in spacing[1:])
        self.calibration()  # first, outside the lock (fitting it renders held-out frames)
        with self.lock:
            frames = [self.uncertainty_frame(tv, keep_measured) for tv in t]
            values = [self.frame(tv, keep_measured) for tv in t] if self.spatial else []
        out = [np.clip(resample_space(f, z, y, x, sp), 0.0, None) for f in frames]
        for i, v in enumerate(values):
            got = self.spatial.uncertainty(v, z, y, x, sp)
            if got is not None:  # the z rows of the decoder's error, then y and x as the map's
                uz = resample_space(
                    got[0], np.arange(len(np.ravel(z)), dtype=float), *got[1:], (1.0, *sp[1:])
                )
                out[i] = np.sqrt(out[i] ** 2 + np.clip(uz, 0.0, None) ** 2)
        return np.stack(out).astype(np.float32)
