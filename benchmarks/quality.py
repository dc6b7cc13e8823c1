"""Quality benchmark of the SpatimeINR presets on the real stacks in ../shared/data.

For each stack and task (temporal x4 on ``t_*``/``tz_*``, z x4 on ``z_*``/``tz_*``) it runs the
DESIGN.md evaluation protocol (:func:`napari_spatimeinr.workflows.evaluate.run_evaluation`) and prints the
PSNR of the method and of every baseline, the gain over the best baseline, train steps/s and render
voxels/s. Run one at a time (the machine is shared)::

    python benchmarks/quality.py --time-limit 120 --preset fast [--only t_ctc2d] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from napari_spatimeinr.workflows.evaluate import run_evaluation
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tasks(data: Path, only: str | None) -> list[tuple[Path, str, bool]]:
    """(stack, task, z_only) pairs of the protocol."""
    out = []
    for p in sorted(data.glob("*.tif")):
        if only and only not in p.name:
            continue
        if p.name.startswith(("t_", "tz_")):
            out.append((p, "temporal", False))
        if p.name.startswith(("z_", "tz_")):
            out.append((p, "spatial", True))
    return out


def run_one(path: Path, task: str, z_only: bool, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="quality-") as work:
        return _run_one(path, task, z_only, args, Path(work))


def _render_rate(ours: dict, result: EvalResult) -> tuple[float, float]:
    """Seconds and voxels/s of the evaluation's own render of the truth grid.

    The evaluated method's ``seconds`` cover training and rendering; ``train_seconds`` the training
    (optical flow included), so their difference is the render (and the model directory's writes).
    """
    dt = max(float(ours["seconds"]) - float(ours["train_seconds"]), 1e-9)
    return dt, result.truth.size / dt


def _run_one(path: Path, task: str, z_only: bool, args, work: Path) -> dict:
    t0 = time.perf_counter()
    result, steps = None, None
    for item in run_evaluation(
        path,
        task,
        4,
        z_only=z_only,
        preset=args.preset,
        time_limit=args.time_limit,
        seed=args.seed,
        device=args.device,
        read_options={"axes": "TZYX"},
        work_dir=work,
    ):
        if isinstance(item, EvalResult):
            result = item
        elif item.message.startswith("train spatimeinr"):
            steps = item.step
    rep = result.report
    res = rep["results"]
    ours = res["spatimeinr"]
    best = rep.get("best_baseline")
    render_s, render_rate = _render_rate(ours, result)
    row = {
        "stack": path.name,
        "task": f"{task} x4" + (" (z)" if z_only else ""),
        "preset": args.preset,
        "time_limit": args.time_limit,
        "psnr": ours["psnr"],
        "baselines": {k: v["psnr"] for k, v in res.items() if k != "spatimeinr"},
        "best_baseline": best,
        "gain_db": ours["psnr"] - res[best]["psnr"] if best else None,
        "train_steps": steps,
        "train_seconds": ours["train_seconds"],
        "render_seconds": render_s,
        "render_voxels_per_s": render_rate,
        "heldout_psnr": json.loads((work / "model" / "meta.json").read_text()).get("heldout_psnr"),
        "wall_seconds": time.perf_counter() - t0,
        "flicker": ours.get("flicker"),
        "flicker_truth": ours.get("flicker_truth"),
    }
    if row["train_steps"] and row["train_seconds"]:
        row["train_steps_per_s"] = row["train_steps"] / row["train_seconds"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--preset", choices=["fast", "paper"], default="fast")
    ap.add_argument("--time-limit", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", help="substring of the file names to run")
    ap.add_argument("--task", choices=["temporal", "spatial"], help="run only this task")
    ap.add_argument("--json", type=Path, help="append the rows to this JSON-lines file")
    args = ap.parse_args()
    for path, task, z_only in tasks(args.data, args.only):
        if args.task and task != args.task:
            continue
        row = run_one(path, task, z_only, args)
        base = ", ".join(f"{k} {v:.2f}" for k, v in row["baselines"].items() if v is not None)
        print(
            f"{row['stack']} {row['task']} [{row['preset']}, {row['time_limit']:g} s]: "
            f"spatimeinr {row['psnr']:.2f} dB; {base}; gain over best ({row['best_baseline']}) "
            f"{row['gain_db']:+.2f} dB; train {row.get('train_steps_per_s', float('nan')):.2f} "
            f"steps/s; render {row['render_voxels_per_s']:.3g} voxels/s"
            + (f"; flicker {row['flicker']:.2f}" if row.get("flicker") else ""),
            flush=True,
        )
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
