"""One model for all channels (issue 23): a two-channel 3D+t stack on the DESIGN.md protocol.

The stack is synthetic (:func:`napari_spatimeinr.data.synthetic.make_two_channel_timelapse`):
nuclei (channel 0) and a membrane-like shell around each nucleus (channel 1) moving together,
each with its own Poisson and read noise. On the temporal ×4 protocol (frames 0, 4, 8, … are the
input, the others are scored) it runs

* ``multi``: one model of both channels (one motion from the mean of the normalized channels,
  then each channel's z decoder and refiner, or with ``--refiner shared`` one refiner for all),
  ``--time-limit`` seconds in all;
* ``single C``: a model of channel C alone, ``--time-limit`` seconds, for each channel;

and reports per channel the PSNR of each beside the protocol's baselines (``motion``: motion-
compensated interpolation on that channel, ``smoothed``, …), and the training wall time of each
(from the end of the baselines to the last training record: the model directory's writing, the
motion and every channel's training). The issue's Musts: each channel of ``multi`` ≥
``motion`` + 0.2 dB and ≥ its ``single`` − 0.15 dB; ``multi``'s training ≤ 1.5× a single one.
Run one at a time (the machine is shared; note ``uptime`` beside the figures)::

    nice -n 5 python benchmarks/channels.py --time-limit 600 [--shape 41 8 96 96] [--json out.json]
    nice -n 5 python benchmarks/channels.py --time-limit 600 --only multi --work /tmp/ch  # one part
    python benchmarks/channels.py --only multi --refiner shared   # one refiner for all channels
"""

from __future__ import annotations

import argparse
import json
import os
import time

from napari_spatimeinr.core.progress import Progress
from napari_spatimeinr.data.synthetic import make_two_channel_timelapse
from napari_spatimeinr.workflows.evaluate import run_evaluation

FACTOR = 4


def evaluate(source, time_limit: float, seed: int, work: str | None = None) -> tuple[object, float]:
    """The protocol's result, and the training's wall time: from the record before the first
    training record (the baselines are done; the model directory is written next, which counts)
    to the last training record (the trained model is complete)."""
    first = last = None
    prev = time.perf_counter()
    result = None
    for item in run_evaluation(
        source,
        "temporal",
        FACTOR,
        time_limit=time_limit or None,  # 0: no limit, the steps (the preset's) end the training
        seed=seed,
        device="cpu",
        work_dir=work,
    ):
        now = time.perf_counter()
        if isinstance(item, Progress):
            if item.message.startswith("train "):
                first = first if first is not None else prev
                last = now
            prev = now
        else:
            result = item
    return result, (last - first) if first is not None else float("nan")


def row(report: dict) -> dict:
    res = report["results"]
    out = {name: round(float(v["psnr"]), 3) for name, v in res.items() if v.get("psnr") is not None}
    out["best_baseline"] = report["best_baseline"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument(
        "--shape", type=int, nargs=4, default=(41, 8, 96, 96), metavar=("T", "Z", "Y", "X")
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--only", choices=["multi", "single"], help="run one of the two parts")
    ap.add_argument("--work", help="keep the trained models in this folder (WORK/multi/model, …)")
    ap.add_argument(
        "--refiner",
        choices=["separate", "shared"],
        default="separate",
        help="the multi-channel model's refiners (engines.fast.channels.REFINER)",
    )
    args = ap.parse_args()
    from napari_spatimeinr.engines.fast import channels

    channels.REFINER = args.refiner
    stack = make_two_channel_timelapse(tuple(args.shape), n_nuclei=8, seed=args.seed)
    print(
        f"stack {stack.shape} x {stack.n} channels ({', '.join(stack.names)}); load {os.getloadavg()}"
    )
    out: dict = {
        "shape": list(stack.shape),
        "channels": stack.names,
        "time_limit": args.time_limit,
        "refiner": args.refiner,
    }
    work = (lambda name: f"{args.work}/{name}") if args.work else (lambda name: None)
    if args.only != "single":
        multi, multi_s = evaluate(stack, args.time_limit, args.seed, work("multi"))
        out["multi_train_seconds"] = round(multi_s, 1)
        out["multi"] = {r.report["channel"]: row(r.report) for r in multi.channels}
        print(f"multi: train {multi_s:.0f} s; {json.dumps(out['multi'])}", flush=True)
    if args.only != "multi":
        out["single_train_seconds"] = {}
        out["single"] = {}
        for c, ch in enumerate(stack.channels):
            name = stack.names[c]
            res, secs = evaluate(ch, args.time_limit, args.seed, work(f"single_{name}"))
            out["single_train_seconds"][name] = round(secs, 1)
            out["single"][name] = row(res.report)
            print(
                f"single {name}: train {secs:.0f} s; {json.dumps(out['single'][name])}", flush=True
            )
    if args.only:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)
        return
    checks = {}
    for name in stack.names:
        m, s = out["multi"][name], out["single"][name]
        checks[name] = {
            "multi_minus_motion_dB": round(m["spatimeinr"] - m["motion"], 3),
            "multi_minus_single_dB": round(m["spatimeinr"] - s["spatimeinr"], 3),
        }
    single_mean = sum(out["single_train_seconds"].values()) / len(stack.names)
    out["cost_ratio"] = round(multi_s / single_mean, 3)
    out["checks"] = checks
    out["load_after"] = os.getloadavg()
    print(json.dumps({"checks": checks, "cost_ratio": out["cost_ratio"]}, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
