"""The motion export on real stacks: its time and size, and whether it follows the visible motion.

For a trained ``fast`` model: exports the velocity field (``api.export_motion``) to OME-TIFF and
OME-Zarr in a temporary folder, timed in this process (the model and flows loaded, Python's start-up
not counted), with the size of each file. Then, per object and frame: objects are the connected
components of the Gaussian-smoothed input above Otsu's threshold; an object of frame t is matched to
the nearest object of frame t+1 (centroid within ``--max-shift`` voxels, size within 20%, not
touching the image border in y or x); its centroid shift is compared with the mean exported
displacement over the object (velocity × frame interval / voxel size, in voxels).

    python benchmarks/motion_follow.py MODEL_DIR SOURCE.tif

Reports the median shift, the median and 90th percentile of |displacement − shift| (voxels), and the
cosine between them where the shift is over one voxel.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from napari_spatimeinr import api
from napari_spatimeinr.io.read import read_stack


def folder_bytes(p: Path) -> int:
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*"))


def follow(data: np.ndarray, disp: list[np.ndarray], max_shift: float) -> dict[str, float]:
    """``data`` (T, Z, Y, X); ``disp[t]``: (3, Z, Y, X) displacement of interval t in voxels."""
    sigma = (1, 2, 2) if data.shape[1] > 1 else (0, 2, 2)
    smooth = np.stack([ndimage.gaussian_filter(f, sigma) for f in data])
    th = threshold_otsu(smooth)
    ny, nx = data.shape[2:]
    errs, shifts, cosines = [], [], []
    ones = np.ones(data.shape[1:])
    for t in range(len(disp)):
        la, na = ndimage.label(smooth[t] > th)
        lb, nb = ndimage.label(smooth[t + 1] > th)
        if na == 0 or nb == 0:
            continue
        ca = np.array(ndimage.center_of_mass(ones, la, range(1, na + 1)))
        cb = np.array(ndimage.center_of_mass(ones, lb, range(1, nb + 1)))
        sa = ndimage.sum(ones, la, range(1, na + 1))
        sb = ndimage.sum(ones, lb, range(1, nb + 1))
        boxes = ndimage.find_objects(la)
        for i in range(na):
            if sa[i] < 20:
                continue
            box = boxes[i]
            if box[1].start == 0 or box[2].start == 0 or box[1].stop == ny or box[2].stop == nx:
                continue
            d = np.linalg.norm(cb - ca[i], axis=1)
            j = int(np.argmin(d))
            if d[j] > max_shift or abs(sb[j] - sa[i]) > 0.2 * sa[i]:
                continue
            inside = la == i + 1
            shift = cb[j] - ca[i]
            moved = np.array([disp[t][c][inside].mean() for c in range(3)])
            shifts.append(np.linalg.norm(shift))
            errs.append(np.linalg.norm(moved - shift))
            if np.linalg.norm(shift) > 1:
                cosines.append(moved @ shift / (np.linalg.norm(moved) * np.linalg.norm(shift)))
    return {
        "objects": len(errs),
        "median_shift_vox": float(np.median(shifts)) if shifts else float("nan"),
        "median_error_vox": float(np.median(errs)) if errs else float("nan"),
        "p90_error_vox": float(np.percentile(errs, 90)) if errs else float("nan"),
        "cosine_n": len(cosines),
        "median_cosine": float(np.median(cosines)) if cosines else float("nan"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("source")
    p.add_argument("--max-shift", type=float, default=15.0, help="voxels")
    args = p.parse_args()

    field = api.motion(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="spatimeinr-motion-"))
    try:
        for name in ("motion.ome.tif", "motion.ome.zarr"):
            f = api.motion(args.model)  # a fresh field: nothing cached
            t0 = time.perf_counter()
            out = api.export_motion(f, tmp / name)
            dt = time.perf_counter() - t0
            print(f"{name}: shape {f.shape}, {dt:.2f} s, {folder_bytes(out) / 1e6:.1f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"flow grid stride {field.stride}, pairs not stored {field.n_unsolved}")
    data = read_stack(args.source).data.astype(np.float32)
    md = field.md
    per_voxel = np.array(md.voxel_size) / md.frame_interval  # µm/s per voxel/frame
    disp = [field.interval(t) / per_voxel[:, None, None, None] for t in range(field.n_intervals)]
    print(follow(data, disp, args.max_shift))


if __name__ == "__main__":
    main()
