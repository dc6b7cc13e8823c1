"""GPU readiness: train the default preset for 60 s on CUDA, render x2 in time and in space.

Needs only torch, numpy, scipy, scikit-image, pyyaml and pydantic beside the package (no dask,
napari or Qt): it drives the engine directly (model directory, trainer generator, block renderer),
as a dask worker does. Prints seconds, voxels/s and peak GPU memory per stage as JSON lines.

    python benchmarks/gpu.py [--shape 30 17 144 224] [--seconds 60] [--device cuda]
    python benchmarks/gpu.py --stack ../shared/data/tz_yeast_mito_nellie.tif

``--device cpu`` runs the same script on a machine without a GPU (figures for comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_speed import synthetic  # noqa: E402

from napari_spatimeinr.core.config import TrainConfig  # noqa: E402
from napari_spatimeinr.engines.fast.render import MotionRenderer  # noqa: E402
from napari_spatimeinr.engines.fast.train import train  # noqa: E402
from napari_spatimeinr.store.model_dir import ModelDir, create_model_dir  # noqa: E402


def _peak(device: str) -> float | None:
    if device != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def _reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=4, default=[30, 17, 144, 224])
    ap.add_argument("--stack", type=Path, help="a real stack instead of the synthetic one")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --device cpu for CPU figures")
    if args.stack:
        from napari_spatimeinr.io.read import read_stack

        stack = read_stack(args.stack, axes="TZYX")
    else:
        stack = synthetic(tuple(args.shape))
    dev = args.device
    info = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    info.update(shape=list(stack.shape), torch=torch.__version__)
    print(json.dumps(info), flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as work:
        cfg = TrainConfig(time_limit=args.seconds, device=dev, steps=10**6)
        md = create_model_dir(Path(work) / "m", stack, cfg)
        _reset(dev)
        t0 = time.perf_counter()
        flow_s, last = None, None
        for p in train(md, cfg, lambda: False):
            if p.message.startswith("motion: flow"):
                flow_s = time.perf_counter() - t0
            last = p
        wall = time.perf_counter() - t0
        n_pairs = max(1, stack.shape[0] - 1)
        print(
            json.dumps(
                {
                    "stage": "train",
                    "seconds": round(wall, 2),
                    "flow_seconds": round(flow_s or 0.0, 2),
                    "flow_seconds_per_pair": round((flow_s or 0.0) / n_pairs, 4),
                    "steps": last.step if last else 0,
                    "steps_per_s": round(
                        (last.step if last else 0) / max(wall - (flow_s or 0), 1e-9), 1
                    ),
                    "peak_gpu_gib": _peak(dev),
                }
            ),
            flush=True,
        )
        r = MotionRenderer(ModelDir(md.path), dev)
        z, y, x = (np.arange(n, dtype=np.float64) for n in stack.shape[1:])
        n_t = stack.shape[0]
        for name, t, zz, spacing in (
            ("render t x2", np.arange(2 * (n_t - 1) + 1) / 2.0, z, (0.5, 1.0, 1.0, 1.0)),
            (
                "render z x2",
                np.arange(n_t, dtype=np.float64),
                (np.arange(2 * len(z)) + 0.5) / 2 - 0.5,
                (1.0, 0.5, 1.0, 1.0),
            ),
        ):
            r._cache.clear()
            _reset(dev)
            t0 = time.perf_counter()
            voxels = 0
            for tv in t:
                voxels += r.render_block([tv], zz, y, x, spacing).size
            if dev == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "stage": name,
                        "seconds": round(dt, 2),
                        "voxels_per_s": round(voxels / dt),
                        "peak_gpu_gib": _peak(dev),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
