"""One model, many stacks: zero-shot rendering of another stack and warm-started training.

Issue #14's Musts on the DESIGN.md temporal x4 protocol. The stack's frames are split in two halves
(the first ``T // 2`` frames and the rest); each half is degraded by the protocol (frames 0, 4, 8, …
of the half are the input, the others are scored), so both halves look like two acquisitions with
the same settings.

* ``first``: a model trained on the first half's input for ``--time-limit`` seconds (also scored
  on the first half itself, for reference);
* ``cold``: a model trained on the second half's input for ``--time-limit`` seconds: the protocol's
  own run, with every baseline (motion, smoothed, …);
* ``zero-shot``: the ``first`` model rendered on the second half's input (``api.render(model,
  input=...)``, no training on it);
* ``warm``: trained on the second half's input for ``--warm-limit`` seconds, starting from the
  ``first`` model (``api.train(..., init_from=...)``).

All four are scored on the second half's withheld frames with the same truth range. Run one at a
time with ``OMP_NUM_THREADS=1`` (the machine is shared; note ``uptime`` beside the figures)::

    OMP_NUM_THREADS=1 python benchmarks/reuse.py --only t_ctc2d --work /tmp/reuse [--json out.jsonl]

``--phase base`` trains ``first`` and ``cold`` only; ``--phase reuse`` then runs zero-shot and warm
from the models kept in ``--work`` (the default ``all`` does both). ``--phase both`` adds ``both``:
one model trained on the two halves' inputs together (``api.train([first, second], ...)``, for
``--time-limit`` seconds), rendered on the second half with ``input=``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_spatimeinr import api
from napari_spatimeinr.data.stack import Stack4D
from napari_spatimeinr.workflows.evaluate import run_evaluation
from napari_spatimeinr.workflows.evaluate.metrics import score, truth_range
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult
from napari_spatimeinr.workflows.evaluate.withhold import degrade

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FACTOR = 4


def halves(stack: Stack4D) -> tuple[Stack4D, Stack4D]:
    """The first ``T // 2`` frames and the rest, as two stacks with the same settings."""
    h = stack.shape[0] // 2
    origin = stack.origin
    second_origin = (origin[0] + h * stack.frame_interval, *origin[1:])
    first = replace(stack, data=stack.data[:h].copy(), name=f"{stack.name} first half")
    second = replace(
        stack, data=stack.data[h:].copy(), name=f"{stack.name} second half", origin=second_origin
    )
    return first, second


def evaluate_cold(half: Stack4D, work: Path, args) -> dict:
    """The protocol's own run on ``half`` (model kept in ``work/model``); the report's results."""
    result = None
    for item in run_evaluation(
        half,
        "temporal",
        FACTOR,
        preset="fast",
        time_limit=args.time_limit,
        seed=args.seed,
        device="cpu",
        work_dir=work,
    ):
        if isinstance(item, EvalResult):
            result = item
    out = {k: round(v["psnr"], 3) for k, v in result.report["results"].items()}
    out["train_seconds"] = result.report["results"]["spatimeinr"]["train_seconds"]
    return out


def render_on(model: Path, stack: Stack4D, cache: Path) -> np.ndarray:
    arr = api.render(model, scale_t=FACTOR, input=stack, cache_dir=cache, device="cpu")
    return np.asarray(arr.compute(scheduler="sync"), dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--only", default="t_ctc2d", help="substring of the stack's file name")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spatimeinr-reuse"))
    ap.add_argument("--time-limit", type=float, default=600.0, help="first and cold runs (s)")
    ap.add_argument("--warm-limit", type=float, default=60.0, help="warm-started run (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase", choices=["all", "base", "reuse", "both"], default="all")
    ap.add_argument("--json", type=Path, help="append the row to this JSON-lines file")
    args = ap.parse_args()
    path = next(p for p in sorted(args.data.glob("*.tif")) if args.only in p.name)
    stack = api.read(path, axes="TZYX")
    first, second = halves(stack)
    deg2 = degrade(second, "temporal", FACTOR)
    low, high = truth_range(deg2.truth[deg2.scored])
    work = args.work / path.stem
    work.mkdir(parents=True, exist_ok=True)
    row_path = work / "row.json"
    row = json.loads(row_path.read_text()) if row_path.is_file() else {}
    row.update(stack=path.name, halves=[first.shape[0], second.shape[0]], factor=FACTOR)
    load = [float(v) for v in os.getloadavg()]
    if args.phase in ("all", "base"):
        t0 = time.perf_counter()
        row["first_on_first"] = evaluate_cold(first, work / "first", args)
        row["cold"] = evaluate_cold(second, work / "cold", args)
        row["base_wall_seconds"] = round(time.perf_counter() - t0, 1)
        row["base_load_start"] = load
        row["time_limit"] = args.time_limit
        row_path.write_text(json.dumps(row, indent=1))
    if args.phase in ("all", "reuse"):
        first_model = work / "first" / "model"
        t0 = time.perf_counter()
        zero = render_on(first_model, deg2.input, work / "cache")
        row["zero_shot"] = round(score(zero, deg2.truth, deg2.scored, low, high)["psnr"], 3)
        row["zero_shot_seconds"] = round(time.perf_counter() - t0, 1)
        warm_dir = work / "warm"
        steps = 0
        for p in api.train(
            deg2.input,
            warm_dir,
            {"time_limit": args.warm_limit, "seed": args.seed, "device": "cpu"},
            overwrite=True,
            init_from=first_model,
        ):
            steps = p.step
        arr = api.render(warm_dir, scale_t=FACTOR, device="cpu")
        warm = np.asarray(arr.compute(scheduler="sync"), dtype=np.float32)
        row["warm"] = round(score(warm, deg2.truth, deg2.scored, low, high)["psnr"], 3)
        row["warm_steps"] = steps
        row["warm_limit"] = args.warm_limit
        row["reuse_load_start"] = load
        row_path.write_text(json.dumps(row, indent=1))
    if args.phase == "both":
        deg1 = degrade(first, "temporal", FACTOR)
        both_dir = work / "both"
        t0 = time.perf_counter()
        for _ in api.train(
            [deg1.input, deg2.input],
            both_dir,
            {"time_limit": args.time_limit, "seed": args.seed, "device": "cpu"},
            overwrite=True,
        ):
            pass
        both = render_on(both_dir, deg2.input, work / "cache")
        row["both"] = round(score(both, deg2.truth, deg2.scored, low, high)["psnr"], 3)
        row["both_seconds"] = round(time.perf_counter() - t0, 1)
        row["both_load_start"] = load
        row_path.write_text(json.dumps(row, indent=1))
        print(json.dumps({k: row.get(k) for k in ("stack", "both", "cold", "zero_shot")}))
    if "cold" in row and "zero_shot" in row and args.phase != "both":
        c = row["cold"]
        print(
            f"{row['stack']} temporal x{FACTOR}, second half: motion {c['motion']:.2f}, "
            f"smoothed {c['smoothed']:.2f}, cold {row['time_limit']:g} s {c['spatimeinr']:.2f}, "
            f"zero-shot {row['zero_shot']:.2f} ({row['zero_shot'] - c['spatimeinr']:+.2f}), "
            f"warm {row['warm_limit']:g} s {row['warm']:.2f} ({row['warm'] - c['spatimeinr']:+.2f})"
            f" dB; load {row.get('base_load_start')} / {row.get('reuse_load_start')}",
            flush=True,
        )
    else:
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
