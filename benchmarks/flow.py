"""Optical flow for the ``fast`` engine: speed and the quality of the interpolation it drives.

On each stack (the DESIGN.md temporal protocol: every ``--factor``-th frame kept), computes the flows
between neighbouring kept frames with scikit-image's TV-L1 (the ``motion`` baseline, the engine's
flow before issue 11) and with the torch TV-L1 of ``napari_spatimeinr.engines.fast.flow`` at each ``--stride``,
times them in the same process, and scores plain motion-compensated interpolation with each flow on
the left-out frames (PSNR, dB, intensities normalized by the truth's 0.1/99.9 percentiles). Also the
size of the stored flows relative to the float32 input.

    python benchmarks/flow.py ../shared/data/t_ctc2d_timelapse.tif ../shared/data/tz_yeast_mito_nellie.tif
    python benchmarks/flow.py ../shared/data/tz_yeast_mito_nellie.tif --factor 1   # all 30 frames

``--factor 1`` keeps every frame (the flows training computes on a whole stack; nothing scored).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_spatimeinr.data.normalize import Normalization
from napari_spatimeinr.engines.fast import flow as tflow
from napari_spatimeinr.engines.fast.motion import motion_pair, spatial_shape, tvl1_flow
from napari_spatimeinr.io.read import read_stack
from napari_spatimeinr.workflows.evaluate.metrics import normalize, truth_range


def score(data, truth, k, flows_full) -> float:
    if k < 2:  # every frame kept: nothing left out to score
        return float("nan")
    sp = spatial_shape(data.shape)
    lo, hi = truth_range(truth)
    se, n = 0.0, 0
    for i in range(data.shape[0] - 1):
        for m in range(1, k):
            pred = motion_pair(data[i].reshape(sp), data[i + 1].reshape(sp), flows_full(i), m / k)
            t = normalize(truth[i * k + m].reshape(sp), lo, hi)
            se += float(((normalize(pred, lo, hi) - t) ** 2).sum())
            n += t.size
    return float(10 * np.log10(1.0 / (se / n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stacks", nargs="+")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--stride", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-skimage", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    for path in args.stacks:
        stack = read_stack(path)
        full = np.asarray(stack.data, dtype=np.float32)
        n_keep = (full.shape[0] - 1) // args.factor * args.factor + 1
        truth = full[:n_keep]
        data = truth[:: args.factor]
        sp = spatial_shape(data.shape)
        norm = Normalization.fit(data)
        name = path.rsplit("/", 1)[-1]
        pairs = data.shape[0] - 1
        print(f"\n{name}: input {data.shape}, {pairs} pairs")
        base = None
        if not args.skip_skimage:
            t0 = time.perf_counter()
            sk = [
                tvl1_flow(norm.apply(data[i].reshape(sp)), norm.apply(data[i + 1].reshape(sp)))
                for i in range(pairs)
            ]
            base = time.perf_counter() - t0
            q = score(data, truth, args.factor, sk.__getitem__)
            print(f"  skimage TV-L1: {base / pairs:.2f} s/pair, motion PSNR {q:.2f}")
        for stride in args.stride:
            t0 = time.perf_counter()
            flows = np.concatenate([f for _, f in tflow.iter_frame_flows(data, stride)])
            sec = time.perf_counter() - t0
            size = flows.nbytes / data.nbytes
            full = [tflow.full_flow(f, sp).numpy() for f in flows]
            q = score(data, truth, args.factor, full.__getitem__)
            ratio = f", {base / sec:.1f}x faster" if base else ""
            print(
                f"  torch TV-L1 stride {stride}: {sec / pairs:.2f} s/pair{ratio}, motion PSNR "
                f"{q:.2f}, stored {size:.2f}x input"
            )


if __name__ == "__main__":
    main()
