"""Streamed export benchmark: write a large lazy array to disk and report time and peak RSS.

The array is a cheap lazy dask array (each 8 MB chunk is computed on demand from its position), so
what is measured is the writer itself: slab-by-slab computation, encoding and streaming to disk.
The output is checked (metadata and a few planes) after the measurement, then deleted.

    python benchmarks/write_stream.py [--gb 3.2] [--suffix .ome.tif] [--dir /tmp] [--keep]

Peak RSS is the process's maximum resident set size (``resource.getrusage``, which includes
everything imported), also sampled every 50 ms with psutil during the write.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import psutil

from napari_spatimeinr.io.meta import OutputMeta
from napari_spatimeinr.io.write import estimate_output_bytes, write_array


def lazy_array(gb: float, plane: int = 512, z: int = 64) -> da.Array:
    """A (T, 64, 512, 512) float32 array of about ``gb`` GB, in (1, 8, 512, 512) chunks (8 MB)."""
    t = max(1, round(gb * 1e9 / (z * plane * plane * 4)))
    ramp = np.linspace(0, 1, plane, dtype=np.float32)

    def block(block_info=None):
        info = block_info[None]
        (t0, _), (z0, z1), _, _ = info["array-location"]
        out = np.empty(info["chunk-shape"], np.float32)
        out[...] = ramp[None, None, :, None] * ramp[None, None, None, :]
        out *= 1000.0
        out += np.arange(z0, z1, dtype=np.float32)[None, :, None, None] + 100.0 * t0
        return out

    return da.map_blocks(
        block, chunks=((1,) * t, (8,) * (z // 8), (plane,), (plane,)), dtype=np.float32
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=3.2, help="output size in GB (float32)")
    ap.add_argument("--suffix", default=".ome.tif", help="output format (suffix)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "uint16"])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="folder to write into")
    ap.add_argument("--keep", action="store_true", help="keep the output file")
    args = ap.parse_args()

    darr = lazy_array(args.gb)
    meta = OutputMeta(
        voxel_size=(0.5, 0.1, 0.1),
        frame_interval=2.0,
        name="write_stream benchmark",
        provenance={"software": "napari-spatimeinr", "benchmark": "write_stream"},
        intensity_range=(0.0, 1000.0 + 100.0 * darr.shape[0] + 64),
        source_dtype="float32",
    )
    work = Path(tempfile.mkdtemp(prefix="spatimeinr-bench-", dir=args.dir))
    out = work / f"stream{args.suffix}"
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    rss_before = proc.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        write_array(darr, out, meta, dtype=args.dtype)
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        size = (
            out.stat().st_size
            if out.is_file()
            else sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        )
        result = {
            "suffix": args.suffix,
            "dtype": args.dtype,
            "shape": list(darr.shape),
            "chunks": list(darr.chunksize),
            "file_bytes": size,
            "estimated_bytes": estimate_output_bytes(darr.shape, args.dtype, args.suffix),
            "seconds": round(seconds, 2),
            "MB_per_s": round(size / seconds / 1e6, 1),
            "voxels_per_s": float(f"{np.prod(darr.shape) / seconds:.3g}"),
            "rss_before_write_MB": round(rss_before / 2**20, 1),
            "peak_rss_sampled_MB": round(peak[0] / 2**20, 1),
            "peak_rss_maxrss_MB": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
        }
        if args.suffix in (".ome.tif", ".tif"):
            import tifffile

            with tifffile.TiffFile(out) as tif:
                s = tif.series[0]
                mm = tifffile.memmap(out, mode="r").reshape(darr.shape)
                last = tuple(n - 1 for n in darr.shape[:2])
                check = np.array_equal(mm[last], darr[last].compute())
                del mm
                result.update({"read_back_axes": s.axes, "read_back_last_plane_equal": check})
        print(json.dumps(result, indent=1))
    finally:
        done.set()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
