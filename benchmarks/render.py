"""Foundation benchmark: classical methods on real data through the CLI, checked against scipy.

For each case: ``spatimeinr train --method cubic`` then ``spatimeinr render``; the output is read back
with tifffile and compared with scipy's whole-volume ``map_coordinates(order=3, mode="nearest")``
(max abs difference / data range), its frame interval and voxel size are checked, and wall time,
output voxels/s and the render's peak RSS are reported. The last case writes a >= 3 GB OME-TIFF and
reports its peak RSS (the file is deleted afterwards).

    python benchmarks/render.py [--data ../shared/data] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from napari_spatimeinr import api
from napari_spatimeinr.core.coords import make_grid

RSS_WRAPPER = (
    "import resource, subprocess, sys, json; "
    "r = subprocess.run(sys.argv[1:]); "
    "print(json.dumps({'rc': r.returncode, "
    "'maxrss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
)


def run_measured(argv: list[str]) -> dict:
    """Run a command in its own wrapper process: exit code, wall seconds, peak RSS (MB)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *argv], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-2000:]}")
    res["seconds"] = wall
    return res


def case(data_dir: Path, work: Path, name: str, scale_t: float, scale_zyx, suffix=".tif") -> dict:
    src = data_dir / name
    model = work / f"{src.stem}.cubic"
    out = work / f"{src.stem}_out{suffix}"
    cli = [sys.executable, "-m", "napari_spatimeinr.cli"]
    train = run_measured(
        [*cli, "train", str(src), "-o", str(model), "--method", "cubic", "-q", "--overwrite"]
    )
    render = run_measured(
        [
            *cli,
            "render",
            str(model),
            "-o",
            str(out),
            "-q",
            "--overwrite",
            "--scale-t",
            str(scale_t),
            "--scale-z",
            str(scale_zyx[0]),
            "--scale-y",
            str(scale_zyx[1]),
            "--scale-x",
            str(scale_zyx[2]),
        ]
    )
    stack = api.read(src)
    grid = make_grid(stack.shape, scale_t, scale_zyx)
    with tifffile.TiffFile(out) as tf:
        got = tf.asarray().reshape(grid.shape)
        ij = tf.imagej_metadata or {}
        ome = tf.ome_metadata or ""
    ref = ndimage.map_coordinates(
        stack.data.astype(np.float64),
        np.meshgrid(*grid.axes, indexing="ij"),
        order=3,
        mode="nearest",
    )
    rel = float(np.abs(got - ref).max() / np.ptp(stack.data))
    back = api.read(out)
    n = int(np.prod(grid.shape))
    return {
        "case": f"{name} t×{scale_t:g} zyx×{tuple(scale_zyx)}",
        "output_shape": list(grid.shape),
        "max_err_over_range": rel,
        "frame_interval_in_out": [stack.frame_interval, back.frame_interval],
        "voxel_size_in_out": [list(stack.voxel_size), list(back.voxel_size)],
        "imagej_finterval": ij.get("finterval"),
        "has_ome": bool(ome),
        "train_s": round(train["seconds"], 2),
        "render_s": round(render["seconds"], 2),
        "voxels_per_s": round(n / render["seconds"]),
        "render_peak_rss_mb": round(render["maxrss_mb"]),
    }


def big_case(data_dir: Path, work: Path) -> dict:
    src = data_dir / "tz_yeast_mito_nellie.tif"
    model = work / "yeast.cubic"
    out = work / "yeast_big.ome.tif"
    cli = [sys.executable, "-m", "napari_spatimeinr.cli"]
    run_measured(
        [*cli, "train", str(src), "-o", str(model), "--method", "cubic", "-q", "--overwrite"]
    )
    args = ["--scale-t", "4", "--scale-z", "3", "--scale-y", "2", "--scale-x", "2"]
    render = run_measured([*cli, "render", str(model), "-o", str(out), "-q", "--overwrite", *args])
    size = out.stat().st_size
    with tifffile.TiffFile(out) as tf:
        shape = tf.series[0].shape
    out.unlink()
    n = int(np.prod(shape))
    return {
        "case": "tz_yeast t×4 z×3 y×2 x×2 → OME-TIFF",
        "output_shape": list(shape),
        "size_gb": round(size / 1e9, 2),
        "render_s": round(render["seconds"], 1),
        "voxels_per_s": round(n / render["seconds"]),
        "render_peak_rss_mb": round(render["maxrss_mb"]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--skip-big", action="store_true", help="skip the >= 3 GB OME-TIFF case")
    args = p.parse_args()
    data = Path(args.data)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        work = Path(tmp)
        rows = [
            case(data, work, "t_ctc2d_timelapse.tif", 4, (1, 1, 1)),
            case(data, work, "z_cells3d_nuclei.tif", 1, (4, 1, 1)),
            case(data, work, "tz_yeast_mito_nellie.tif", 2, (2, 1, 1), ".ome.tif"),
        ]
        if not args.skip_big:
            rows.append(big_case(data, work))
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
