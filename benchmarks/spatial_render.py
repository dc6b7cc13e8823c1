"""Render throughput and peak memory of the learned z decoder (issue 12), through the CLI.

Trains the ``fast`` preset on a real stack (``--time-limit``), then times ``spatimeinr render
--scale-z 4`` to an OME-Zarr (wall time including start-up, output voxels/s, peak RSS of the render
process). With ``--force-decoder`` the model's held-out choice is set to the decoder at every factor
first, so the decoder's own cost is measured even where the held-out check picked an interpolation
(on ``tz_yeast`` it picks nearest at x4)::

    python benchmarks/spatial_render.py [--data ../shared/data] [--time-limit 60] [--force-decoder]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import run_measured  # noqa: E402

CASES = ("tz_yeast_mito_nellie.tif", "z_cells3d_nuclei.tif")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--force-decoder", action="store_true")
    ap.add_argument("--scale-z", type=float, default=4.0)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "napari_spatimeinr.cli"]
    with tempfile.TemporaryDirectory(prefix="spatial-bench-") as tmp:
        for name in CASES:
            model, out = Path(tmp) / f"{name}.model", Path(tmp) / f"{name}.zarr"
            run_measured(
                [*cli, "train", str(Path(args.data) / name), "-o", str(model), "-q", "--seed", "0"]
                + ["--time-limit", str(args.time_limit), "--overwrite"]
            )
            meta = json.loads((model / "meta.json").read_text())
            rec = meta["spatial"]
            if args.force_decoder:
                rec["choice"] = {f: "decoder" for f in rec["choice"]}
                (model / "meta.json").write_text(json.dumps(meta, indent=2))
            r = run_measured(
                [*cli, "render", str(model), "-o", str(out), "--scale-z", str(args.scale_z), "-q"]
            )
            t, z, y, x = meta["shape"]
            voxels = t * round(z * args.scale_z) * y * x
            print(
                f"{name}: z x{args.scale_z:g} -> {voxels / 1e6:.1f} M voxels in {r['seconds']:.1f} s "
                f"({voxels / r['seconds'] / 1e6:.2f} M voxels/s incl. start-up), peak RSS "
                f"{r['maxrss_mb']:.0f} MB; z resampler at x{args.scale_z:g}: "
                f"{rec['choice'].get(min(rec['choice'], key=lambda f: abs(float(f) - args.scale_z)))}",
                flush=True,
            )


if __name__ == "__main__":
    main()
