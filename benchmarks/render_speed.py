"""Render throughput of a trained model (output voxels/s), to compare two versions of the engine.

Renders a x``--scale-t`` temporal render of the first ``--frames`` frames of a model directory with
the engine of whichever ``napari_spatimeinr`` is imported (run it once per version, with
``PYTHONPATH`` pointing at each source tree, alternately, on the same model), on one thread by default
so that other load on the machine disturbs the figure less. Prints one JSON line.

    PYTHONPATH=src python benchmarks/render_speed.py MODEL_DIR --scale-t 4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a trained model directory")
    ap.add_argument("--scale-t", type=float, default=4.0)
    ap.add_argument("--scale-z", type=float, default=1.0)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many renders")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import napari_spatimeinr
    from napari_spatimeinr import api
    from napari_spatimeinr.render.lazy import get_renderer

    md = api.open_model(args.model)
    n = min(args.frames, md.shape[0])
    plan = api.plan_render(
        md.path, args.scale_t, (args.scale_z, 1.0, 1.0), t_range=(0, n - 1), device="cpu"
    )
    _, renderer = get_renderer(plan.model_dir, "cpu")  # loading is not rendering
    warm = api.plan_render(md.path, args.scale_t, (args.scale_z, 1.0, 1.0), t_range=(0, 1))
    api.render_plan(warm).compute(scheduler="sync")  # one-off costs (imports, first calls)
    best = float("inf")
    for _ in range(args.repeat):
        getattr(renderer, "_cache", {}).clear()  # frames are computed again
        t0 = time.perf_counter()
        out = api.render_plan(plan).compute(scheduler="sync")
        best = min(best, time.perf_counter() - t0)
    dt = best
    row = {
        "source": napari_spatimeinr.__file__,
        "shape": list(out.shape),
        "seconds": round(dt, 2),
        "voxels_per_s": float(np.prod(out.shape) / dt),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
