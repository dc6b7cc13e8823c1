"""Speed of the ``fast`` engine per stack: flow seconds per pair, train steps/s, render voxels/s.

For each stack: train the default preset with ``--time-limit`` (flow included, as in the product),
report the flow seconds per frame pair and the grid it chose, the refiner's steps/s, whether the run
ended within the limit (+10%), the size of the stored flows against ``input.npy``, and the render
throughput of a ×2 temporal render (new instants: two warps and the CNN per frame) and of a ×4 z
render of one instant, with the pre-issue-11 baseline figures of ``benchmarks/RESULTS.md`` beside
them. A synthetic light-sheet-sized stack (``--synthetic T Z Y X``, moving blobs with noise) shows
the scaling without data on disk.

    python benchmarks/engine_speed.py ../shared/data/t_ctc2d_timelapse.tif \\
        ../shared/data/tz_yeast_mito_nellie.tif --time-limit 120
    python benchmarks/engine_speed.py --synthetic 20 100 512 512 --time-limit 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_spatimeinr import api
from napari_spatimeinr.data.stack import Stack4D


def synthetic(shape: tuple[int, int, int, int], seed: int = 0) -> Stack4D:
    """Blobs drifting a few voxels per frame, Poisson-like noise; float32 (T, Z, Y, X)."""
    rng = np.random.default_rng(seed)
    n_t, n_z, n_y, n_x = shape
    zz = np.arange(n_z, dtype=np.float32)[:, None, None]
    yy = np.arange(n_y, dtype=np.float32)[None, :, None]
    xx = np.arange(n_x, dtype=np.float32)[None, None, :]
    n_blobs = max(4, n_y * n_x // 4000)
    centres = rng.uniform([0, 0, 0], [n_z, n_y, n_x], size=(n_blobs, 3)).astype(np.float32)
    speed = rng.normal(0, 1.5, size=(n_blobs, 3)).astype(np.float32)
    speed[:, 0] *= 0.3
    out = np.empty(shape, np.float32)
    for t in range(n_t):
        frame = np.zeros((n_z, n_y, n_x), np.float32)
        for c, v in zip(centres, speed, strict=True):
            cz, cy, cx = c + t * v
            r2 = ((zz - cz) / 2.0) ** 2 + ((yy - cy) / 4.0) ** 2
            # separable-ish evaluation on a box around the blob keeps this fast at 512 x 512
            y0, y1 = int(max(0, cy - 16)), int(min(n_y, cy + 16))
            x0, x1 = int(max(0, cx - 16)), int(min(n_x, cx + 16))
            if y1 <= y0 or x1 <= x0:
                continue
            box = r2[:, y0:y1] + ((xx[..., x0:x1] - cx) / 4.0) ** 2
            frame[:, y0:y1, x0:x1] += 100 * np.exp(-box / 2)
        out[t] = frame + 10 + rng.normal(0, 3, frame.shape).astype(np.float32)
    return Stack4D(out, name="synthetic")


def run(stack: Stack4D, time_limit: float, device: str, work: Path) -> dict:
    model = work / "model"
    t0 = time.perf_counter()
    flow_end, steps = None, 0
    for p in api.train(stack, model, {"time_limit": time_limit, "device": device, "seed": 0}):
        if p.message.startswith("motion: flow"):
            flow_end = time.perf_counter() - t0
            flow_msg = p.message
        steps = max(steps, p.step)
    wall = time.perf_counter() - t0
    md = api.open_model(model)
    meta = json.loads((model / "meta.json").read_text())
    n_pairs = max(1, stack.shape[0] - 1)
    flows = model / "flows.npz"
    row = {
        "stack": stack.name,
        "shape": list(stack.shape),
        "time_limit": time_limit,
        "train_wall_s": round(wall, 1),
        "within_limit": wall <= 1.1 * time_limit,
        "flow_s_per_pair": round((flow_end or 0.0) / n_pairs, 3),
        "flow_grid": flow_msg.split("grid ")[-1].rstrip(")") if flow_end else None,
        "flows_vs_input": round(flows.stat().st_size / (model / "input.npy").stat().st_size, 3),
        "steps": meta.get("train_steps", steps),
        "steps_per_s": round(
            meta.get("train_steps", steps) / max(wall - (flow_end or 0.0), 1e-9), 2
        ),
    }
    # render: x2 in time (every other frame new), then x4 z of one new instant
    n_t = min(stack.shape[0], 4)
    plan = api.plan_render(model, scale_t=2, t_range=(0, n_t - 1), device=device)
    arr = api.render_plan(plan)
    from napari_spatimeinr.render.lazy import get_renderer

    get_renderer(plan.model_dir, plan.device)  # loading is not rendering
    t1 = time.perf_counter()
    arr.compute(scheduler="threads")
    dt = time.perf_counter() - t1
    row["render_t2_voxels_per_s"] = float(np.prod(plan.shape) / dt)
    if stack.shape[1] > 1:
        plan = api.plan_render(model, scale_t=2, scale_zyx=(4, 1, 1), t_range=(0.5, 0.5))
        t1 = time.perf_counter()
        api.render_plan(plan).compute(scheduler="threads")
        dt = time.perf_counter() - t1
        row["render_z4_new_instant_voxels_per_s"] = float(np.prod(plan.shape) / dt)
    del md
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stacks", nargs="*", type=Path)
    ap.add_argument("--synthetic", type=int, nargs=4, metavar=("T", "Z", "Y", "X"))
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, help="append rows to this JSON-lines file")
    args = ap.parse_args()
    stacks = [api.read(p, axes="TZYX") for p in args.stacks]
    if args.synthetic:
        stacks.append(synthetic(tuple(args.synthetic)))
    for stack in stacks:
        with tempfile.TemporaryDirectory(prefix="engine-speed-") as work:
            row = run(stack, args.time_limit, args.device, Path(work))
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
