"""Uncertainty maps on the temporal x4 protocol, with what any map could reach on the same errors.

For each time-lapse in ../shared/data (``t_*``, ``tz_*``) it runs the DESIGN.md evaluation
(:func:`napari_spatimeinr.workflows.evaluate.run_evaluation`, temporal x4) and prints the report's
``"uncertainty"`` entry (Spearman of the map with |error| over the left-out frames' voxels, the
trivial maps, the top-decile ratio) and two ceilings computed from the actual errors:

* ``ideal_noise_by_intensity``: the Spearman of the rendered intensity with errors *simulated* as
  Gaussian noise of the true RMS error of each intensity bin (50 bins): what a perfect map of
  intensity-dependent noise could reach if that were all the error;
* ``oracle_per_pixel``: the Spearman of the true mean |error| of each camera pixel (y, x) over all
  left-out frames and planes (a pixel-noise map that knew the answer).

    python benchmarks/uncertainty.py --time-limit 600 [--only t_ctc2d] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from napari_spatimeinr.engines.fast.uncertainty import REPORT_VOXELS, spearman
from napari_spatimeinr.workflows.evaluate import run_evaluation
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def ceilings(res: EvalResult, seed: int = 0) -> dict[str, float | None]:
    s = res.scored
    pred, err = res.reconstructions[res.method][s], res.error()[s]
    rng = np.random.default_rng(seed)
    idx = rng.choice(err.size, min(err.size, REPORT_VOXELS), replace=False)
    p, e = pred.reshape(-1)[idx], err.reshape(-1)[idx]
    rms = np.empty_like(e)
    for b in np.array_split(np.argsort(p), 50):
        rms[b] = np.sqrt(np.mean(e[b] ** 2))
    simulated = np.abs(rng.standard_normal(len(e))) * rms
    per_pixel = np.broadcast_to(err.mean(axis=(0, 1), keepdims=True), err.shape)
    return {
        "ideal_noise_by_intensity": spearman(p, simulated),
        "oracle_per_pixel": spearman(per_pixel.reshape(-1)[idx], e),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--only", help="a part of the stack's file name")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    out = {}
    for path in sorted(DATA.glob("t*_*.tif")):
        if args.only and args.only not in path.name:
            continue
        res = None
        for item in run_evaluation(path, "temporal", 4, time_limit=args.time_limit):
            if isinstance(item, EvalResult):
                res = item
        if res is None or "uncertainty" not in res.report:
            continue
        entry = {k: v for k, v in res.report["uncertainty"].items() if k != "per_frame"}
        entry["psnr"] = res.report["results"][res.method]["psnr"]
        entry["ceilings"] = ceilings(res)
        out[path.stem] = entry
        print(path.stem, json.dumps(entry, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
