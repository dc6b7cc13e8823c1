"""z x4 on three kinds of volume (issue 22): nuclei (z_cells3d), a synthetic bead volume, and a
noisy 4D stack (tz_yeast), by the DESIGN.md protocol (``evaluate --task spatial --factor 4
--z-only``, seed 0), through ``run_evaluation`` (what the CLI calls).

Prints, per volume, the PSNR of the ``fast`` render and of nearest / linear / cubic, the gain
over the best of those three, what the model chose for z (``meta.json["spatial"]``) and its
held-out figures::

    PYTHONPATH=src python benchmarks/z_kinds.py [--data ../shared/data] [--time-limit 600]
        [--cases beads cells3d yeast spheres sheets] [--factor 4] [--set spatial_steps=1000]
        [-o z_kinds.json]

``--set`` overrides a ``fast`` preset field, or a constant of a ``spatial`` module
(``train.MATCH_NOISE=0``), for an experiment (not the protocol's settings).
The bead volume: ``data.synthetic.make_z_volume("beads")``: 40 x 512 x 512 voxels of 0.5 x 0.0225
x 0.0225 µm, PSF FWHM 0.8 x 0.22 x 0.22 µm, Poisson (peak 200 photons) + Gaussian (2 counts)
noise, seed 0. ``spheres`` / ``sheets``: 32 x 256 x 256 voxels of 0.5 x 0.1 x 0.1 µm, PSF FWHM
0.8 x 0.25 x 0.25 µm (extra cases).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_spatimeinr.data.synthetic import make_z_volume  # noqa: E402
from napari_spatimeinr.engines import presets  # noqa: E402
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult, run_evaluation  # noqa: E402

FILES = {"cells3d": "z_cells3d_nuclei.tif", "yeast": "tz_yeast_mito_nellie.tif"}
CLASSIC = ("nearest", "linear", "cubic")


def source(case: str, data: Path):
    if case in FILES:
        return str(data / FILES[case])
    if case == "beads":
        return make_z_volume("beads", seed=0)
    return make_z_volume(
        case,
        shape=(32, 256, 256),
        voxel_size=(0.5, 0.1, 0.1),
        psf_fwhm=(0.8, 0.25, 0.25),
        seed=0,
    )


def _value(text: str):
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--cases", nargs="+", default=["cells3d", "beads", "yeast"])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("-o", "--output", default=None, help="write the rows as JSON")
    args = ap.parse_args()
    for item in args.set:
        key, val = item.split("=", 1)
        if "." in key:  # a constant of a spatial module, e.g. train.MATCH_NOISE=0
            mod, name = key.rsplit(".", 1)
            setattr(
                importlib.import_module(f"napari_spatimeinr.engines.zdecoder.{mod}"),
                name,
                _value(val),
            )
        else:
            presets.FAST[key] = _value(val)
    rows = []
    print(
        f"| volume | fast | nearest | linear | cubic | over best interp. | z choice (x{args.factor}) | "
        f"held-out gain x{args.factor} | axial blur px | axial gain | train s |",
        flush=True,
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for case in args.cases:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="z-kinds-") as tmp:
            result = None
            for item in run_evaluation(
                source(case, Path(args.data)),
                "spatial",
                args.factor,
                z_only=True,
                time_limit=args.time_limit,
                seed=args.seed,
                baselines=list(CLASSIC),
                work_dir=tmp,
            ):
                if isinstance(item, EvalResult):
                    result = item
            meta = json.loads((Path(tmp) / "model" / "meta.json").read_text())
        res = result.report["results"]
        best = max(res[b]["psnr"] for b in CLASSIC)
        rec = meta.get("spatial") or {}
        choice = rec.get("choice") or {}
        key = min(choice, key=lambda f: abs(float(f) - args.factor)) if choice else None
        gain = (rec.get("gain_db") or {}).get(key) if key else None
        row = {
            "case": case,
            "fast": res["spatimeinr"]["psnr"],
            **{b: res[b]["psnr"] for b in CLASSIC},
            "over_best": res["spatimeinr"]["psnr"] - best,
            "choice": choice.get(key, rec.get("kind", "spline")) if key else rec.get("kind"),
            "why": rec.get("why"),
            "heldout_gain": gain,
            "axial_blur_px": rec.get("axial_blur_px"),
            "noise": rec.get("noise"),
            "train_seconds": res["spatimeinr"]["train_seconds"],
            "seconds": time.perf_counter() - t0,
            "spatial": rec,
        }
        rows.append(row)
        print(
            f"| {case} | {row['fast']:.2f} | {row['nearest']:.2f} | {row['linear']:.2f} | "
            f"{row['cubic']:.2f} | {row['over_best']:+.2f} | {row['choice']} | "
            + (f"{gain:+.2f}" if gain is not None else "–")
            + f" | {row['axial_blur_px']} | {rec.get('axial_gain', '–')} | "
            f"{row['train_seconds']:.0f} |",
            flush=True,
        )
        if args.output:  # after every volume: a long run keeps what it measured
            Path(args.output).write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
