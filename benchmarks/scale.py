"""Scale-out benchmark: output voxels/s with local threads and with 1 and 2 dask worker processes.

For each method (classical ``cubic``; ``spatimeinr`` when that engine is installed, trained briefly
on a crop) the same lazy render runs

* ``threads``: dask's local threaded scheduler in this process (all cores);
* ``workers=N``: a local dask.distributed cluster of N worker processes, cores shared out
  (``spatimeinr render --workers N``); the cluster's start-up time is reported apart.

and is timed twice: ``render`` (every chunk computed on the workers and reduced to one number, so
only rendering is measured) and ``zarr`` (``api.export`` to OME-Zarr: the workers write the chunks
in parallel). Every output is compared with the threaded one (max |difference| / data range).

    python benchmarks/scale.py [--data ../shared/data/tz_yeast_mito_nellie.tif] [--workers 1 2]
        [--scale-t 2] [--scale-zyx 2 1 1] [--methods cubic spatimeinr] [--repeat 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from napari_spatimeinr import api
from napari_spatimeinr.core.cluster import cluster_summary, dask_client

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "tz_yeast_mito_nellie.tif"


def train_model(method: str, src: Path, work: Path, seconds: float) -> Path | None:
    """Train ``method`` on ``src`` into ``work``; None when the method is not available."""
    from napari_spatimeinr.core.errors import SpatimeINRError

    out = work / f"{method}.spatimeinr"
    config: dict = {"method": method}
    stack = api.read(src)
    if method == "spatimeinr":
        try:
            from napari_spatimeinr.engines import spatimeinr  # noqa: F401
        except ImportError:
            print("spatimeinr engine not installed yet: skipped", file=sys.stderr)
            return None
        config.update({"preset": "fast", "time_limit": seconds, "device": "cpu"})
        # a small crop: the benchmark is about scaling, not quality
        t, z, y, x = stack.shape
        crop = stack.data[: min(t, 8), :, : min(y, 96), : min(x, 96)]
        stack = dataclasses.replace(stack, data=np.ascontiguousarray(crop))
    try:
        for _ in api.train(stack, out, config, overwrite=True):
            pass
    except SpatimeINRError as err:
        print(f"{method}: training failed ({err}): skipped", file=sys.stderr)
        return None
    return out


def timed(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best, result = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run_mode(model: Path, args, workers: int | None, reference: np.ndarray | None, work: Path):
    plan = api.plan_render(model, args.scale_t, tuple(args.scale_zyx), chunk_mb=args.chunk_mb)
    n = math.prod(plan.shape)
    t0 = time.perf_counter()
    ctx = dask_client(workers=workers, model_dir=model) if workers else nullcontext()
    with ctx as client:
        startup = time.perf_counter() - t0 if workers else 0.0
        where = cluster_summary(client) if client else f"threads ({os.cpu_count()} cores)"
        arr = api.render_plan(plan)
        kw = {} if workers else {"scheduler": "threads"}
        # warm-up: each worker loads the renderer once (not counted)
        arr.blocks[(0, 0, 0, 0)].compute(**kw)
        t_render, total = timed(lambda: float(arr.sum(dtype=np.float64).compute(**kw)), args.repeat)

        def export():
            out = work / f"out_{workers or 0}.zarr"
            api.export(arr, out, plan.meta, overwrite=True)
            return out

        if workers:
            t_zarr, out = timed(export, args.repeat)
        else:
            import dask

            with dask.config.set(scheduler="threads"):
                t_zarr, out = timed(export, args.repeat)
    import zarr

    got = zarr.open_group(str(out), mode="r")["0"][:]
    err = None
    if reference is not None:
        err = float(np.abs(got - reference).max() / max(np.ptp(reference), 1e-12))
    return {
        "mode": f"workers={workers}" if workers else "threads",
        "where": where,
        "startup_s": startup,
        "render_vox_s": n / t_render,
        "zarr_vox_s": n / t_zarr,
        "max_err": err,
        "checksum": total,
        "shape": plan.shape,
    }, got


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--methods", nargs="+", default=["cubic", "spatimeinr"])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--scale-t", type=float, default=2.0)
    p.add_argument("--scale-zyx", type=float, nargs=3, default=[2.0, 1.0, 1.0])
    p.add_argument("--chunk-mb", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=2, help="runs per timing (best is kept)")
    p.add_argument("--train-seconds", type=float, default=60.0, help="spatimeinr training time")
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="spatimeinr-scale-") as tmp:
        work = Path(tmp)
        for method in args.methods:
            model = train_model(method, args.data, work, args.train_seconds)
            if model is None:
                continue
            ref = None
            for workers in [None, *args.workers]:
                row, got = run_mode(model, args, workers, ref, work)
                if ref is None:
                    ref = got
                row["method"] = method
                rows.append(row)
                print(
                    f"{method:>10} {row['mode']:>10}: render {row['render_vox_s'] / 1e6:.2f} "
                    f"Mvox/s, zarr {row['zarr_vox_s'] / 1e6:.2f} Mvox/s",
                    file=sys.stderr,
                    flush=True,
                )
    if not rows:
        print("nothing measured", file=sys.stderr)
        return 1
    print(f"\ninput {args.data.name}, factors t×{args.scale_t:g} zyx×{tuple(args.scale_zyx)}, ")
    print(f"chunks of ~{args.chunk_mb:g} MB, best of {args.repeat} runs\n")
    head = (
        "| method | output TZYX | mode | cluster | start-up s | render Mvox/s "
        "| OME-Zarr export Mvox/s | max err / range |\n|---|---|---|---|---|---|---|---|"
    )
    print(head)
    for r in rows:
        err = "ref" if r["max_err"] is None else f"{r['max_err']:.1e}"
        print(
            f"| {r['method']} | {'×'.join(map(str, r['shape']))} | {r['mode']} | {r['where']} | {r['startup_s']:.1f} "
            f"| {r['render_vox_s'] / 1e6:.2f} | {r['zarr_vox_s'] / 1e6:.2f} | {err} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
