"""Rendering of the paper's engine: blocks queried from the trained 4D INR."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np
import torch

from ...core.device import torch_device
from ...store import checkpoint
from ...store.model_dir import ModelDir
from ..presets import resolve_params
from .network import SpatimeINRNet, window_frames

#: query points per forward pass (times the hypercube's samples); halved on CUDA out-of-memory
QUERY_CHUNK = 1 << 17


#: encoded windows kept per renderer (each holds latent_dim x Z x Y x X floats)
FEATURE_CACHE = 2


class SpatimeINRRenderer:
    """Renders blocks from a trained model; thread-safe; encoder features computed once per window."""

    def __init__(self, model_dir: ModelDir, device: str = "auto"):
        weights = checkpoint.load_weights(model_dir, "cpu")  # a clear error if not trained
        self.device = torch_device(device)
        self.params = resolve_params(model_dir.config)
        self.net = SpatimeINRNet(self.params).to(self.device).eval()
        self.net.load_state_dict(weights)
        self.data = torch.from_numpy(np.array(model_dir.input, dtype=np.float32)).to(self.device)
        self.n_frames = self.data.shape[0]
        self.lock = threading.Lock()
        self._cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        m = self.params.hypercube_n**4
        self.chunk = max(1024, QUERY_CHUNK // m)

    def _features(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        window = self.data[window_frames(i, self.n_frames)]
        latent = self.net.encode(window)
        self._cache[i] = (latent, window)
        while len(self._cache) > FEATURE_CACHE:
            self._cache.popitem(last=False)
        return latent, window

    def _query(self, latent, window, p, f, sp) -> torch.Tensor:
        out = torch.empty(p.shape[0], device=self.device)
        start = 0
        while start < p.shape[0]:
            end = min(start + self.chunk, p.shape[0])
            try:
                out[start:end] = self.net.query(latent, window, p[start:end], f[start:end], sp)
            except torch.cuda.OutOfMemoryError:
                if self.chunk <= 256:
                    raise
                self.chunk //= 2
                torch.cuda.empty_cache()
                continue
            start = end
        return out

    def render_block(
        self, t, z, y, x, spacing=(1.0, 1.0, 1.0, 1.0), keep_measured: bool = False
    ) -> np.ndarray:
        """The INR everywhere; with ``keep_measured``, a block on the input's own voxels at a
        measured instant is the measured data."""
        t, z, y, x = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (t, z, y, x))
        out = np.empty((len(t), len(z), len(y), len(x)), dtype=np.float32)
        sp = torch.tensor([float(s) for s in spacing], device=self.device, dtype=torch.float32)
        gz, gy, gx = np.meshgrid(z, y, x, indexing="ij")
        p = torch.from_numpy(np.stack([gz, gy, gx], -1).reshape(-1, 3).astype(np.float32))
        p = p.to(self.device)
        on_voxels = all(abs(float(s) - 1.0) < 1e-9 for s in spacing[1:]) and all(
            np.allclose(c, np.round(c)) for c in (z, y, x)
        )
        with self.lock, torch.no_grad():
            for j, tv in enumerate(t):
                if keep_measured and on_voxels and abs(tv - round(tv)) < 1e-6:
                    idx = [
                        np.clip(np.round(c).astype(np.int64), 0, n - 1)
                        for c, n in zip((z, y, x), self.data.shape[1:], strict=True)
                    ]
                    frame = self.data[min(max(int(round(tv)), 0), self.n_frames - 1)].cpu().numpy()
                    out[j] = frame[np.ix_(*idx)]
                    continue
                i = min(max(int(math.floor(tv)), 0), max(self.n_frames - 2, 0))
                frac = 0.0 if self.n_frames == 1 else float(tv - i)
                latent, window = self._features(i)
                f = torch.full((p.shape[0],), frac, device=self.device)
                v = self._query(latent, window, p, f, sp)
                out[j] = v.reshape(out.shape[1:]).float().cpu().numpy()
        return out
