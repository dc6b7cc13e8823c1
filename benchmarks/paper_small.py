"""The ``paper`` INR at a size that trains on a CPU (issue 22): held-out PSNR vs training seconds.

The published architecture (RCAN encoder + latent lookup + PE + MLP + 4D hypercube rendering +
cycle loss, ``engines/paper/``) with only its *sizes* changed (``SMALL`` below, overridable with
``--set KEY=VALUE``), on the synthetic sample (:func:`make_nuclei_timelapse`), temporal x4 on the
DESIGN.md protocol (:func:`run_evaluation`, method ``spatimeinr``, preset ``paper``), against
linear interpolation (and nearest, cubic, motion).

One training run of ``--time-limit`` seconds; the model directory's checkpoints (written every 60 s)
are copied when their training time first passes each of ``--snapshots`` seconds and rendered on the
protocol's grid after the run, so one run gives the curve. Note: the learning rate decays linearly
over the whole time limit, so a snapshot at 60 s of a 1200-s run is not a 60-s run.

Also written, to tell a bug from capacity or steps: the training history (loss, self-supervised
held-out PSNR) and, on the trainer's own held-out examples (further-degraded input, held-out voxels),
the PSNR of the final network beside that of linear interpolation along the degraded axis.

    python benchmarks/paper_small.py --time-limit 1200 --snapshots 60,300,600 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_spatimeinr.core.config import TrainConfig
from napari_spatimeinr.data.synthetic import make_nuclei_timelapse
from napari_spatimeinr.engines.loop import holdout_mask
from napari_spatimeinr.engines.losses import psnr as psnr_of_mse
from napari_spatimeinr.engines.paper.network import SpatimeINRNet
from napari_spatimeinr.engines.paper.train import _validate, _validation
from napari_spatimeinr.engines.presets import PAPER, resolve_params
from napari_spatimeinr.render.lazy import clear_renderer_cache, render
from napari_spatimeinr.store.model_dir import ModelDir
from napari_spatimeinr.workflows.evaluate import run_evaluation
from napari_spatimeinr.workflows.evaluate.metrics import score, truth_range
from napari_spatimeinr.workflows.evaluate.protocol import EvalResult

#: the sizes changed from PAPER (everything else is the published preset)
SMALL: dict = dict(
    latent_dim=32,
    encoder_features=16,
    encoder_groups=1,
    encoder_blocks=2,
    mlp_width=64,
    mlp_depth=4,
    batch_size=512,
)
BASELINES = ("nearest", "linear", "cubic", "motion")


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        out[key] = type(PAPER[key])(value) if not isinstance(PAPER[key], bool) else value == "true"
    return out


def linear_on_examples(data: torch.Tensor, examples) -> float:
    """PSNR of linear interpolation along the degraded axis at the examples' targets."""
    se, n = 0.0, 0
    for ex in examples:
        t = ex.target
        if len(t) == 0:
            continue
        a, k = ex.axis, ex.k
        lo = int(ex.frames[1]) if a == 0 else int(ex.zyx[a - 1][0])
        below = t.clone()
        below[:, a] = lo + k * ((t[:, a] - lo) // k)
        above = below.clone()
        above[:, a] = below[:, a] + k
        w = ((t[:, a] - lo) % k).float() / k
        v0 = data[below[:, 0], below[:, 1], below[:, 2], below[:, 3]]
        v1 = data[above[:, 0], above[:, 1], above[:, 2], above[:, 3]]
        truth = data[t[:, 0], t[:, 1], t[:, 2], t[:, 3]]
        se += float((((1 - w) * v0 + w * v1 - truth) ** 2).sum())
        n += len(t)
    return psnr_of_mse(se / n)


def self_supervised(model: Path, params: dict, seed: int) -> dict:
    """Net vs linear on the trainer's own held-out examples (final best weights, model.pt)."""
    md = ModelDir(model)
    p = resolve_params(TrainConfig(method="spatimeinr", preset="paper", params=params))
    shape = tuple(int(s) for s in md.shape)
    data = torch.from_numpy(np.array(md.input, dtype=np.float32))
    val = _validation(shape, p, torch.from_numpy(holdout_mask(shape, seed)), seed)
    net = SpatimeINRNet(p)
    net.load_state_dict(torch.load(model / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    by_axis = {}
    for ex in val:
        by_axis.setdefault(f"{'TZYX'[ex.axis]} x{ex.k}", []).append(ex)
    return {
        "net": _validate(net, data, val),
        "linear": linear_on_examples(data, val),
        "examples": {
            key: {"net": _validate(net, data, exs), "linear": linear_on_examples(data, exs)}
            for key, exs in by_axis.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time-limit", type=float, default=1200.0)
    ap.add_argument("--snapshots", default="60,300,600", help="seconds, comma-separated")
    ap.add_argument("--shape", default="12,12,64,64", help="T,Z,Y,X of the synthetic sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE over SMALL")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = {**SMALL, **parse_set(args.set)}
    shape = tuple(int(v) for v in args.shape.split(","))
    stack = make_nuclei_timelapse(shape=shape, seed=args.seed)
    marks = sorted(float(s) for s in args.snapshots.split(",") if s)
    changed = {k: (PAPER[k], v) for k, v in params.items() if PAPER.get(k) != v}
    print(f"shape {shape}; changed from PAPER: {changed}")
    with tempfile.TemporaryDirectory(prefix="paper-small-") as tmp:
        work = Path(tmp)
        model = work / "model"
        snaps: list[tuple[float, Path]] = []
        result, steps, t0 = None, 0, time.perf_counter()
        for item in run_evaluation(
            stack,
            "temporal",
            4,
            preset="paper",
            params=params,
            time_limit=args.time_limit,
            seed=args.seed,
            baselines=BASELINES,
            work_dir=work,
            device="cpu",
        ):
            if isinstance(item, EvalResult):
                result = item
                continue
            if item.message.startswith("train spatimeinr"):
                steps = item.step or steps
                if marks and (model / "model.pt").is_file():
                    ts = float(ModelDir(model).meta.get("train_seconds") or 0.0)
                    if ts >= marks[0]:
                        while marks and ts >= marks[0]:
                            marks.pop(0)
                        dst = work / f"snap{len(snaps)}"
                        shutil.copytree(model, dst)
                        snaps.append((ts, dst))
                        print(f"  snapshot at {ts:.0f} s (step {steps})", flush=True)
        assert result is not None
        wall = time.perf_counter() - t0
        rep = result.report
        deg = result.degraded
        truth = result.truth
        low, high = truth_range(truth[deg.scored])
        meta = ModelDir(model).meta
        curve = []
        for ts, snap in snaps:
            clear_renderer_cache(snap)
            pred = np.asarray(render(snap, deg.scale_t, deg.scale_zyx, device="cpu").compute())
            s = score(pred, truth, deg.scored, low, high)
            sm = ModelDir(snap).meta
            curve.append(
                dict(
                    train_seconds=ts,
                    steps=sm.get("train_steps"),
                    psnr=s["psnr"],
                    ssim=s["ssim"],
                    heldout_psnr=sm.get("heldout_psnr"),
                )
            )
            clear_renderer_cache(snap)
        ours = rep["results"]["spatimeinr"]
        curve.append(
            dict(
                train_seconds=ours["train_seconds"],
                steps=meta.get("train_steps"),
                psnr=ours["psnr"],
                ssim=ours["ssim"],
                heldout_psnr=meta.get("heldout_psnr"),
            )
        )
        history = ModelDir(model).read_history()
        ssl = self_supervised(model, params, args.seed)
    lin = rep["results"]["linear"]["psnr"]
    print(f"\nshape {shape}, temporal x4, input {rep['input_shape']}; wall {wall:.0f} s")
    for name in BASELINES:
        print(f"  {name:8s} {rep['results'][name]['psnr']:.2f} dB")
    print("\n| train s | steps | PSNR (dB) | vs linear | SSIM | self-sup. held-out PSNR |")
    print("|---|---|---|---|---|---|")
    for r in curve:
        hp = r["heldout_psnr"]
        print(
            f"| {r['train_seconds']:.0f} | {r['steps']} | {r['psnr']:.2f} | "
            f"{r['psnr'] - lin:+.2f} | {r['ssim']:.3f} | {hp if hp is None else round(hp, 2)} |"
        )
    print(
        f"\nself-supervised held-out examples: net {ssl['net']:.2f} dB, linear {ssl['linear']:.2f} dB"
    )
    for key, v in ssl["examples"].items():
        print(f"  {key}: net {v['net']:.2f}, linear {v['linear']:.2f}")
    every = max(1, len(history) // 12)
    print("\nhistory (seconds, step, loss, self-sup. held-out PSNR):")
    for h in history[::every] + history[-1:]:
        print(f"  {h['seconds']:.0f} s  step {h['step']}  loss {h['loss']:.5f}  psnr {h['psnr']}")
    if args.json:
        out = dict(
            shape=list(shape),
            seed=args.seed,
            time_limit=args.time_limit,
            params=params,
            changed_from_paper={k: {"paper": a, "small": b} for k, (a, b) in changed.items()},
            baselines={n: rep["results"][n]["psnr"] for n in BASELINES},
            curve=curve,
            self_supervised=ssl,
            history=history,
            wall_seconds=wall,
        )
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
