"""``spatimeinr info``: what a model directory holds."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..core.errors import SpatimeINRError


def _uncertainty_summary(md: Any) -> str:
    """One line on the model's uncertainty map for ``spatimeinr info``."""
    from ..engines.fast import uncertainty
    from ..render.lazy import check_uncertainty

    try:
        check_uncertainty(md)
    except SpatimeINRError:
        return "none (fast engine, 3 frames or more)"
    cal = uncertainty.load(md.path / uncertainty.UNCERTAINTY_FILE)
    if cal is None:
        return "not calibrated yet (fitted when first rendered, a few seconds)"
    f = cal.fit
    return (
        f"calibrated on {f.get('frames')} held-out frames: Spearman {f.get('spearman', 0):.2f} "
        f"with |error|, top decile {f.get('top_decile_ratio', 0):.1f}x the mean"
    )


def cmd_info(args: argparse.Namespace) -> int:
    from ..engines.zdecoder import summary as spatial_summary
    from ..store.model_dir import ModelDir

    md = ModelDir(args.model_dir)
    m = md.meta
    hist = md.read_history()
    info = {
        "path": str(md.path),
        "method": md.config.method,
        "preset": md.config.preset if md.config.method == "spatimeinr" else None,
        "source": m.get("source_path") or m.get("name"),
        "source_sha256": m.get("source_sha256"),
        "shape_tzyx": m["shape"],
        "voxel_size_zyx_um": m["voxel_size"],
        "frame_interval_s": m["frame_interval"],
        "normalization": m["normalization"],
        "train_steps": m.get("train_steps", 0),
        "train_seconds": m.get("train_seconds", 0.0),
        "last_history": hist[-1] if hist else None,
        "spatial": spatial_summary(m.get("spatial"))
        if md.config.method == "spatimeinr" and m["shape"][1] > 1
        else None,
        "uncertainty": _uncertainty_summary(md),
        "software_version": m.get("software_version"),
    }
    if m.get("init_from"):  # a warm start
        info["init_from"] = m["init_from"].get("model_dir")
    if m.get("stacks"):  # trained on several stacks
        info["stacks"] = [f"{s['name']} {tuple(s['shape'])}" for s in m["stacks"]]
    if m.get("applied"):  # an applied model directory (render --input)
        info["applied_from"] = m["applied"].get("model_dir")
    if m.get("channel_dirs"):  # one model of several channels: each channel's own model
        from ..store.model_dir import channel_dirs

        how = m.get("motion_from", "mean")
        info["channels"] = [
            {
                "name": d.meta["channel"]["name"],
                "dir": rel,
                "train_steps": d.meta.get("train_steps", 0),
                "train_seconds": d.meta.get("train_seconds", 0.0),
            }
            for rel, d in zip(m["channel_dirs"], channel_dirs(md), strict=True)
        ]
        info["motion_from"] = "mean of the channels" if how == "mean" else f"channel {how}"
        info["channel_train_seconds"] = m.get("channel_train_seconds")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {v}")
    return 0
