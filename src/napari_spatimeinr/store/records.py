"""Records of a model directory beyond its core files: warm starts and training stacks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import SpatimeINRError
from .model_dir import ModelDir

#: files in the model directory that hold learned weights (copied into applied directories)
LEARNED_FILES = ("model.pt", "spatial.pt")
#: meta.json keys about the learned parts, carried into applied directories
LEARNED_META = ("params", "spatial", "train_steps", "train_seconds", "heldout_psnr", "init_from")


def init_from_record(source: str | Path | ModelDir) -> dict[str, Any]:
    """What ``meta.json["init_from"]`` records about the model a training starts from."""
    md = source if isinstance(source, ModelDir) else ModelDir(source)
    weights = md.path / "model.pt"
    if md.method != "spatimeinr" or not weights.is_file():
        raise SpatimeINRError(
            f"--init-from {md.path}: it holds no trained SpatimeINR weights "
            f"({'method ' + md.method if md.method != 'spatimeinr' else 'no model.pt'}): choose a "
            "trained spatimeinr model directory."
        )
    return {
        "model_dir": str(md.path.resolve()),
        "source_name": Path(md.meta.get("source_path") or md.name).name,
        "source_sha256": md.meta.get("source_sha256", ""),
        "train_steps": int(md.meta.get("train_steps", 0)),
        "model_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "spatial": (md.path / "spatial.pt").is_file(),
    }


def init_weights(model_dir: ModelDir, name: str = "model.pt") -> dict | None:
    """The weights a warm-started training starts from (``name``: model.pt or spatial.pt), or
    None without ``init_from`` or without that file in the source."""
    import torch

    record = model_dir.meta.get("init_from")
    if not record:
        return None
    path = Path(record["model_dir"]) / name
    if not path.is_file():
        if name == "model.pt":
            raise SpatimeINRError(
                f"The model this training starts from ({record['model_dir']}) is gone: restore "
                "it, or train without --init-from."
            )
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def training_stacks(model_dir: ModelDir) -> Iterator[tuple[int, Path, Path]]:
    """(index, input.npy path, flows.npz path) of every stack a model trains on (one by default)."""
    records = model_dir.meta.get("stacks") or [{"input": "input.npy", "flows": "flows.npz"}]
    for i, rec in enumerate(records):
        yield i, model_dir.path / rec["input"], model_dir.path / rec["flows"]
