"""The renderer side of the spatial part: z resampling of one frame.

:class:`SpatialResampler` is called by ``methods/motion_render.resample_space`` for the z axis. With
the decoder, each output block is computed from the x–z planes (one per y row) and the y–z planes
(one per x column) of the frame, the two averaged; the whole z column of the output grid is computed
(the projection that keeps the mean of each input voxel needs it) and cached per frame and window,
so the z chunks of one frame cost one decoder pass. Only the rows and columns a block needs are
computed (plus the encoder's halo) when y and x are not resampled; a window too large to cache is
decoded in bands of y, keeping only the block's z rows (memory bounded for any output size). A factor where the held-out check
preferred another resampler renders with that one; ``None`` is returned where the spline applies.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ...core.coords import spatial_coords
from ...store.model_dir import ModelDir
from ..presets import resolve_params
from . import SPATIAL_FILE
from .decoder import ZDecoder, classical_matrix, make_decoder, spline_matrix

#: bytes of decoded z columns kept per renderer
CACHE_BYTES = 192 << 20
#: bytes of decoder activations per batch of planes
BATCH_BYTES = 48 << 20
ORDERS = {"cubic": 3, "linear": 1, "nearest": 0}


def _identity(c: np.ndarray, w: float) -> bool:
    return abs(w - 1.0) < 1e-9 and bool(np.all(np.abs(c - np.round(c)) < 1e-9))


def decode_planes(net: ZDecoder, planes: np.ndarray, m: int) -> np.ndarray:
    """``planes`` (P, n, W) rendered on ``m`` cells along n: (P, m, W) float32, batched."""
    p, n, w = planes.shape
    per = max(1, BATCH_BYTES // max(1, 4 * net.latent * (m + n) * w * 3))
    out = np.empty((p, m, w), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, p, per):
            out[i : i + per] = net(torch.from_numpy(np.ascontiguousarray(planes[i : i + per])), m)
    return out


def decode_volume(net: ZDecoder, frame: np.ndarray, m: int) -> np.ndarray:
    """A (Z, Y, X) frame on ``m`` z cells: the mean of the x–z and y–z plane renders."""
    xz = decode_planes(net, frame.transpose(1, 0, 2), m).transpose(1, 0, 2)
    yz = decode_planes(net, frame.transpose(2, 0, 1), m).transpose(1, 2, 0)
    return 0.5 * (xz + yz)


class SpatialResampler:
    """z resampling with the model's learned spatial part (thread-safe)."""

    def __init__(self, record: dict[str, Any], net: ZDecoder | None):
        self.record = record
        self.net = net
        self.choice = {float(f): c for f, c in record.get("choice", {}).items()}
        self.lock = threading.Lock()
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    @classmethod
    def load(cls, model_dir: ModelDir) -> SpatialResampler | None:
        """The model's spatial part, or None when it has none (spline)."""
        record = model_dir.meta.get("spatial")
        path = model_dir.path / SPATIAL_FILE
        if not record or record.get("kind") != "decoder" or not path.is_file():
            return None
        net = make_decoder(
            resolve_params(model_dir.config), bool(record.get("mean_preserving", True))
        ).eval()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(record, net)

    def method_for(self, factor: float) -> str:
        """The resampler the held-out check chose at the validated factor closest to ``factor``."""
        if not self.choice or factor <= 1.0:
            return "spline"
        f = min(self.choice, key=lambda v: abs(math.log(v / factor)))
        return self.choice[f]

    def _decode(self, frame: np.ndarray, m: int, win: tuple[int, int, int, int]) -> np.ndarray:
        """The output's whole z column (m, rows, cols) over window ``win`` of ``frame``."""
        xz, yz = self._decode_both(frame, m, win)
        return np.ascontiguousarray(0.5 * (xz + yz), dtype=np.float32)

    def _decode_both(
        self, frame: np.ndarray, m: int, win: tuple[int, int, int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The x–z and the y–z plane renders (m, rows, cols) over window ``win`` of ``frame``."""
        y0, y1, x0, x1 = win
        _, ny, nx = frame.shape
        h = self.net.halo
        ya, yb, xa, xb = max(0, y0 - h), min(ny, y1 + h), max(0, x0 - h), min(nx, x1 + h)
        xz = decode_planes(self.net, frame[:, y0:y1, xa:xb].transpose(1, 0, 2), m)
        xz = xz[:, :, x0 - xa : x1 - xa].transpose(1, 0, 2)
        yz = decode_planes(self.net, frame[:, ya:yb, x0:x1].transpose(2, 0, 1), m)
        yz = yz[:, :, y0 - ya : y1 - ya].transpose(1, 2, 0)
        return xz, yz

    def _column(self, key, frame: np.ndarray, m: int, win: tuple[int, int, int, int]) -> np.ndarray:
        """:meth:`_decode`, cached per frame and window."""
        ck = (key, frame.shape, m, win)
        with self.lock:
            if ck in self._cache:
                self._cache.move_to_end(ck)
                return self._cache[ck]
        out = self._decode(frame, m, win)
        with self.lock:
            self._cache[ck] = out
            self._bytes += out.nbytes
            while self._bytes > CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes
        return out

    def _rows(self, frame: np.ndarray, m: int, rows: slice) -> np.ndarray:
        """Output z ``rows`` over the whole frame, decoded in bands of y (bounded memory)."""
        _, ny, nx = frame.shape
        band = max(1, int(CACHE_BYTES // 4 // (4 * m * nx)))
        out = np.empty((rows.stop - rows.start, ny, nx), dtype=np.float32)
        for y0 in range(0, ny, band):
            y1 = min(ny, y0 + band)
            out[:, y0:y1] = self._decode(frame, m, (y0, y1, 0, nx))[rows]
        return out

    def __call__(
        self, frame: np.ndarray, z, y, x, spacing_zyx, key
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``frame`` (Z, Y, X) resampled along z at ``z`` (side ``spacing_zyx[0]``).

        Returns ``(out, y, x)``: ``out`` may be cropped in y and x to a window holding the block's
        coordinates, ``y``/``x`` shifted into it. None: resample z with the spline instead.
        """
        n = frame.shape[0]
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        wz = float(spacing_zyx[0])
        if _identity(z, wz) or n < 2:
            return None
        m = int(round(n / wz))
        full = spatial_coords(n, m / n)
        off = int(round((z[0] + 0.5) * m / n - 0.5))
        if m <= n or off < 0 or off + len(z) > m or not np.allclose(full[off : off + len(z)], z):
            return None  # down-sampling, or coordinates not on a DESIGN.md grid: the spline
        method = self.method_for(m / n)
        if method == "spline":
            return None
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if method in ORDERS:
            mat = classical_matrix(n, m, ORDERS[method]).numpy()[off : off + len(z)]
            out = np.tensordot(mat, np.asarray(frame, dtype=np.float32), axes=([1], [0]))
            return out.astype(np.float32, copy=False), y, x
        _, ny, nx = frame.shape
        y0, y1, x0, x1 = 0, ny, 0, nx
        if _identity(y, float(spacing_zyx[1])):
            y0, y1 = int(max(0, np.floor(y.min()))), int(min(ny, np.ceil(y.max()) + 1))
        if _identity(x, float(spacing_zyx[2])):
            x0, x1 = int(max(0, np.floor(x.min()))), int(min(nx, np.ceil(x.max()) + 1))
        frame = np.asarray(frame, dtype=np.float32)
        if 4 * m * (y1 - y0) * (x1 - x0) > CACHE_BYTES // 2:  # too big to cache: only these rows
            return self._rows(frame, m, slice(off, off + len(z))), y, x
        col = self._column(key, frame, m, (y0, y1, x0, x1))
        return col[off : off + len(z)], y - y0, x - x0

    def uncertainty(
        self, frame: np.ndarray, z, y, x, spacing_zyx
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The decoder's own expected |error| at the z coordinates ``z`` of :meth:`__call__`.

        Returns ``(err, y, x)`` like :meth:`__call__` (a y/x window, coordinates shifted into it),
        or None where the decoder does not render (an interpolation or the spline does). Per
        output voxel, from two kinds of evidence (docs/method.md, "Uncertainty of z"):

        * ``d = |xz − yz| / 2``: the x–z and y–z renders disagree (the render is their mean; two
          estimates that differ by ``2d`` leave about ``d`` of error in their mean);
        * ``r = |render − spline|``: how far the decoder moved from the spline, scaled by ``k``,
          plus a floor ``c`` (``k, c`` fitted on the held-out lateral pairs at training:
          ``meta.json["spatial"]["uncertainty"]``),

        combined as ``sqrt(d² + (k·r + c)²)``; normalized units.
        """
        n = frame.shape[0]
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        wz = float(spacing_zyx[0])
        if _identity(z, wz) or n < 2:
            return None
        m = int(round(n / wz))
        full = spatial_coords(n, m / n)
        off = int(round((z[0] + 0.5) * m / n - 0.5))
        if m <= n or off < 0 or off + len(z) > m or not np.allclose(full[off : off + len(z)], z):
            return None
        if self.method_for(m / n) != "decoder":
            return None
        cal = self.record.get("uncertainty") or {}
        k, c = float(cal.get("k", 1.0)), float(cal.get("c", 0.0))
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        _, ny, nx = frame.shape
        y0, y1, x0, x1 = 0, ny, 0, nx
        if _identity(y, float(spacing_zyx[1])):
            y0, y1 = int(max(0, np.floor(y.min()))), int(min(ny, np.ceil(y.max()) + 1))
        if _identity(x, float(spacing_zyx[2])):
            x0, x1 = int(max(0, np.floor(x.min()))), int(min(nx, np.ceil(x.max()) + 1))
        frame = np.asarray(frame, dtype=np.float32)
        rows = slice(off, off + len(z))
        xz, yz = self._decode_both(frame, m, (y0, y1, x0, x1))
        xz, yz = xz[rows], yz[rows]
        spline = np.tensordot(
            spline_matrix(n, m).numpy()[rows], frame[:, y0:y1, x0:x1], axes=([1], [0])
        )
        d = 0.5 * np.abs(xz - yz)
        r = np.abs(0.5 * (xz + yz) - spline)
        err = np.sqrt(d * d + (k * r + c) ** 2).astype(np.float32)
        return err, y - y0, x - x0
