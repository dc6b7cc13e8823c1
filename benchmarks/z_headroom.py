"""z x4 on the DESIGN.md protocol: interpolations, truth-fitted small models, the learned decoder.

On the spatial protocol (z-only mean-pooling by 4) it prints, for each ``z_*``/``tz_*`` stack:
nearest / cubic, the mean-preserving spline, the best linear filter fitted *on the truth* (one per
sub-slice, pooled 3 x (2r+1)^2 neighbourhood), a small 3D CNN trained *on the truth* over the spline
for ``--seconds``, and the ``fast`` preset's learned spatial part (trained on the degraded input's
own lateral planes only, no truth, for the same ``--seconds``). The truth-fitted models are small and
briefly trained: they are *not* upper bounds (issue 12: the self-supervised decoder beats them on
z_cells3d), only references::

    python benchmarks/z_headroom.py [--seconds 90] [--only cells3d]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_spatimeinr import api
from napari_spatimeinr.core.coords import make_grid
from napari_spatimeinr.engines.histopolation import resample_axis
from napari_spatimeinr.workflows.evaluate.baselines import interpolate
from napari_spatimeinr.workflows.evaluate.metrics import score, truth_range
from napari_spatimeinr.workflows.evaluate.withhold import degrade

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
K = 4


def linear_oracle(x: np.ndarray, truth: np.ndarray, r: int) -> np.ndarray:
    """Least-squares filter from the pooled neighbourhood to each sub-slice, fitted on the truth."""
    xp = np.pad(x, ((0, 0), (1, 1), (r, r), (r, r)), mode="edge")
    _, nz, ny, nx = x.shape
    cols = [
        xp[:, dz : dz + nz, dy : dy + ny, dx : dx + nx]
        for dz in range(3)
        for dy in range(2 * r + 1)
        for dx in range(2 * r + 1)
    ]
    a = np.stack([*cols, np.ones_like(x)], -1).reshape(-1, len(cols) + 1).astype(np.float64)
    pred = np.empty_like(truth)
    for j in range(K):
        b = truth[:, j::K].reshape(-1).astype(np.float64)
        w, *_ = np.linalg.lstsq(a, b, rcond=None)
        pred[:, j::K] = (a @ w).reshape(truth[:, j::K].shape)
    return pred


def cnn_oracle(base: np.ndarray, truth: np.ndarray, lo: float, hi: float, seconds: float):
    """A 3-layer 3D CNN residual over ``base``, trained on the truth for ``seconds``."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    b = torch.from_numpy((base - lo) / (hi - lo)).float()
    t = torch.from_numpy((truth - lo) / (hi - lo)).float()
    net = nn.Sequential(
        nn.Conv3d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(16, 1, 3, padding=1),
    )
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    n_t, _, n_y, n_x = b.shape
    side = min(48, n_y, n_x)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        i = rng.integers(n_t, size=2)
        y0, x0 = rng.integers(n_y - side + 1), rng.integers(n_x - side + 1)
        xb = b[i][:, None, :, y0 : y0 + side, x0 : x0 + side]
        yb = t[i][:, None, :, y0 : y0 + side, x0 : x0 + side]
        loss = ((xb + net(xb) - yb) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = torch.cat([b[j][None, None] + net(b[j][None, None]) for j in range(n_t)])
    return out[:, 0].numpy() * (hi - lo) + lo


def learned(deg, seconds: float) -> np.ndarray:
    """The fast preset's learned z part trained on the degraded input alone (spatial only)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"time_limit": seconds, "seed": 0, "params": {"spatial_share": 1.0}}
        for _ in api.train(deg.input, Path(tmp) / "m", cfg):
            pass
        return np.asarray(api.render(Path(tmp) / "m", 1.0, deg.scale_zyx))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seconds", type=float, default=90.0, help="training time of the CNNs")
    ap.add_argument("--only", help="substring of the file names to run")
    args = ap.parse_args()
    for path in sorted(args.data.glob("*.tif")):
        if not path.name.startswith(("z_", "tz_")) or (args.only and args.only not in path.name):
            continue
        deg = degrade(api.read(path, axes="TZYX"), "spatial", K, True)
        x, truth = deg.input.data, deg.truth
        lo, hi = truth_range(truth[deg.scored])
        scored = deg.scored

        def ps(pred: np.ndarray, truth=truth, scored=scored, lo=lo, hi=hi) -> float:
            return score(pred, truth, scored, lo, hi)["psnr"]

        grid = make_grid(x.shape, 1.0, deg.scale_zyx)
        spline = resample_axis(x, 1, grid.z, 1.0 / K)
        row = {m: ps(interpolate(x, 1.0, deg.scale_zyx, m)) for m in ("nearest", "cubic")}
        row["spline (fast)"] = ps(spline)
        row["linear oracle r=2"] = ps(linear_oracle(x, truth, 2))
        row["CNN on truth"] = ps(cnn_oracle(spline, truth, lo, hi, args.seconds))
        row["learned decoder (self-supervised)"] = ps(learned(deg, args.seconds))
        print(path.name, "z x4:", ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
