"""How far can the motion engine's refiner go on a 2D+t stack, temporal x4? (issue #11's bar)

On the DESIGN.md temporal protocol (keep frames 0, k, 2k, ...; score the left-out frames), the
engine's render of a new frame is its refiner (:class:`napari_spatimeinr.engines.fast.refiner.Refiner`)
applied to the blend of the two neighbouring measured frames warped by the stored TV-L1 flow. This
script trains that refiner, at the preset's size or larger, on different examples and scores each
on the left-out frames, beside plain motion-compensated interpolation and its best y-x blur (the
``smoothed`` bar's base on t_ctc2d):

* ``self``: the engine's self-supervision: each measured frame warped onto its neighbour (full
  warps, the flow fitted on that very pair);
* ``scale_time``: self-supervision across scales (as in zero-shot temporal super-resolution):
  triplets of measured frames, spatially downscaled by ``--ds`` so that the motion over two input
  intervals matches one at full size, the middle frame predicted from the blend at alpha = 1/2;
* ``truth_half``: an oracle trained on the *true* left-out frames of the first half of the movie
  (the examples the engine would need and never has), scored on the second half;
* ``truth_all``: an oracle trained on the true left-out frames themselves (in-sample: it fits the
  answer; what the architecture can reach at best).

"test half" columns score only the left-out frames of the second half, so that ``truth_half`` is
compared on frames it never saw.

    OMP_NUM_THREADS=1 python benchmarks/temporal_oracle.py ../shared/data/t_ctc2d_timelapse.tif \\
        --variants self,scale_time,truth_half,truth_all [--width 32 --depth 6 --steps 6000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from napari_spatimeinr import api
from napari_spatimeinr.data.normalize import Normalization
from napari_spatimeinr.engines.fast import flow
from napari_spatimeinr.engines.fast.refiner import Refiner
from napari_spatimeinr.workflows.evaluate.metrics import truth_range
from napari_spatimeinr.workflows.evaluate.withhold import degrade_temporal

CROP = 48
#: voxels per training step (the fast preset's batch)
STEP_VOXELS = 32768
BLURS = (0.5, 1.0, 1.5, 2.0)


class _Identity:
    """Frames already normalized: solve_pairs' normalization is the identity."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x


def solve(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """The torch TV-L1 flow of the engine between two planes, on their voxels."""
    stride = flow.auto_stride(a.shape)
    v = flow.solve_pairs(np.stack([a, b])[:, None], 0, 1, stride, "cpu", _Identity())[0]
    return flow.full_flow(v, a.shape)


def warp_blend(a: np.ndarray, b: np.ndarray, v: torch.Tensor, alpha: float) -> np.ndarray:
    w = flow.warp_pair(torch.from_numpy(a), torch.from_numpy(b), v, alpha)
    return ((1 - alpha) * w[0] + alpha * w[1]).numpy()


def pool(img: np.ndarray, factor: float) -> np.ndarray:
    t = torch.from_numpy(img)[None, None]
    if float(factor).is_integer():
        return F.avg_pool2d(t, int(factor))[0, 0].numpy()
    return F.interpolate(t, scale_factor=1 / factor, mode="bilinear", antialias=True)[0, 0].numpy()


def train(examples, steps: int, width: int, depth: int, seed: int) -> Refiner:
    """The refiner trained on (inputs, targets) lists with the engine's optimizer and schedule."""
    torch.manual_seed(seed)
    net = Refiner(width, depth, z_kernel=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-6)
    rng = np.random.default_rng(seed)
    n_crops = math.ceil(STEP_VOXELS / CROP**2)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 + (1e-4 - 1e-3) * step / steps
        xs, ys = [], []
        for _ in range(n_crops):
            ins, tgs = examples[rng.integers(len(examples))]
            j = rng.integers(len(ins))
            a, b = ins[j], tgs[j]
            y0, x0 = (rng.integers(s - CROP + 1) for s in a.shape)
            xs.append(a[y0 : y0 + CROP, x0 : x0 + CROP])
            ys.append(b[y0 : y0 + CROP, x0 : x0 + CROP])
        x = torch.from_numpy(np.stack(xs))[:, None, None]
        loss = ((net(x)[:, 0] - torch.from_numpy(np.stack(ys))) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="a 2D+t stack (TYX, or TZYX with Z = 1)")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--variants", default="self,scale_time,truth_half,truth_all")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--ds", type=float, default=2.0, help="downscaling of scale_time's triplets")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    deg = degrade_temporal(api.read(args.input), args.factor)
    k, truth, scored = args.factor, deg.truth, [int(t) for t in deg.scored]
    if truth.shape[1] != 1:
        raise SystemExit("a 2D+t stack is needed (Z = 1)")
    low, high = truth_range(truth[scored])
    norm = Normalization.fit(deg.input.data)
    x_in = norm.apply(deg.input.data).astype(np.float32)[:, 0]
    x_true = norm.apply(truth).astype(np.float32)[:, 0]
    n = x_in.shape[0]
    t0 = time.perf_counter()
    gap1 = [solve(x_in[i], x_in[i + 1]) for i in range(n - 1)]
    print(f"flows: {n - 1} pairs in {time.perf_counter() - t0:.1f} s", flush=True)

    blends = np.stack(
        [warp_blend(x_in[t // k], x_in[t // k + 1], gap1[t // k], t % k / k) for t in scored]
    )
    half = (n - 1) // 2
    test = [t for t in scored if t // k >= half]

    def psnr(pred: np.ndarray, frames: list[int]) -> float:
        sel = np.isin(scored, frames)
        e = (norm.invert(pred[sel]) - truth[scored][sel][:, 0]) / (high - low)
        return 10 * math.log10(1 / float(np.mean(e.astype(np.float64) ** 2)))

    def blurred(pred: np.ndarray, sigma: float) -> np.ndarray:
        return ndimage.gaussian_filter(pred, (0, sigma, sigma), mode="nearest")

    def row(name: str, pred: np.ndarray, seconds: float = 0.0) -> None:
        best = max(BLURS, key=lambda s: psnr(blurred(pred, s), test))
        print(
            f"{name:<12} {psnr(pred, scored):7.3f} {psnr(pred, test):10.3f} "
            f"{psnr(blurred(pred, best), test):10.3f} (σ {best:g}) {seconds:6.0f} s",
            flush=True,
        )

    examples: dict[str, tuple[list, list]] = {}
    full_in, full_tg = [], []
    for i in range(n - 1):  # self: full warps both ways between neighbours
        w = flow.warp_pair(torch.from_numpy(x_in[i]), torch.from_numpy(x_in[i + 1]), gap1[i], 1.0)
        full_in.append(w[0].numpy())
        full_tg.append(x_in[i + 1])
        w = flow.warp_pair(torch.from_numpy(x_in[i]), torch.from_numpy(x_in[i + 1]), gap1[i], 0.0)
        full_in.append(w[1].numpy())
        full_tg.append(x_in[i])
    examples["self"] = (full_in, full_tg)
    st_in, st_tg = [], []
    for j in range(1, n - 1):  # scale_time: downscaled triplets, middle frame at alpha 1/2
        a, m, b = (pool(x_in[i], args.ds) for i in (j - 1, j, j + 1))
        st_in.append(warp_blend(a, b, solve(a, b), 0.5))
        st_tg.append(m)
    examples["scale_time"] = (st_in, st_tg)
    first = [t for t in scored if t // k < half]
    examples["truth_half"] = (
        [blends[scored.index(t)] for t in first],
        [x_true[t] for t in first],
    )
    examples["truth_all"] = (list(blends), [x_true[t] for t in scored])

    print(f"{'':<12} {'PSNR':>7} {'test half':>10} {'+best blur':>10}")
    row("motion", blends)
    for name in args.variants.split(","):
        t1 = time.perf_counter()
        net = train([examples[name]], args.steps, args.width, args.depth, args.seed)
        with torch.no_grad():
            pred = np.stack(
                [net(torch.from_numpy(b)[None, None, None])[0, 0].numpy() for b in blends]
            )
        row(name, pred, time.perf_counter() - t1)


if __name__ == "__main__":
    main()
