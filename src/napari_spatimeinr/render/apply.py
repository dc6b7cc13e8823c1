"""One model, many stacks: apply a trained model to another stack.

* :func:`apply_model` — the model's learned parts (the temporal refiner, the z decoder) on another
  stack. What is stack-specific (its normalization, its optical flows) is computed for it and kept in
  an *applied model directory* in a cache folder (:func:`default_cache_dir`, ``--cache-dir``): a
  complete model directory (``input.npy`` of the new stack, its ``flows.npz``, copies of
  ``model.pt``/``spatial.pt``/``config.yaml``) whose ``meta.json["applied"]`` names the model it came
  from. The model directory itself is never written. Every renderer, the lazy dask graph and the
  dask.distributed workers then work on it unchanged. It is reused while neither the model's weights
  nor the stack change (the folder's name is a hash of both).
* :func:`compatibility` — what makes a model unusable on a stack (one :class:`SpatimeINRError`) and
  what only lowers the quality (warnings that say what to expect).
Warm starts (``train --init-from``) are :mod:`napari_spatimeinr.workflows.train` and
:mod:`napari_spatimeinr.store.records`; training on several stacks is the fast engine's
(:mod:`napari_spatimeinr.engines.fast.train`).
* :func:`expand_inputs` — file arguments that may be folders or globs (several inputs of ``train``,
  batch renders).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SpatimeINRError
from ..data.stack import Stack4D
from ..engines.presets import engine_of
from ..store.model_dir import ModelDir, create_model_dir
from ..store.records import LEARNED_FILES, LEARNED_META

#: voxel size or frame interval ratios (stack / model) beyond this factor get a warning
SCALE_TOLERANCE = 2.0
#: file suffixes that are stacks, in messages (any readable suffix counts)
STACK_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".npy", ".zarr")
GLOB_CHARS = "*?["


def default_cache_dir() -> Path:
    """Where applied model directories go: ``$SPATIMEINR_CACHE_DIR``, else the user cache folder
    (``$XDG_CACHE_HOME/napari-spatimeinr/applied``, ``~/.cache/...`` by default)."""
    env = os.environ.get("SPATIMEINR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-spatimeinr" / "applied"


def _is_stack_file(p: Path) -> bool:
    from ..io.formats import family_of

    return not p.name.startswith(".") and family_of(p) is not None


def expand_inputs(patterns: Sequence[str | Path]) -> list[Path]:
    """Paths from arguments that may be files, folders (their stack files, sorted) or globs.

    A glob or folder that matches no stack is one clear error; so is a missing file. Duplicates
    are dropped, order kept.
    """
    out: list[Path] = []
    for pat in patterns:
        s = str(pat)
        p = Path(s)
        if any(c in s for c in GLOB_CHARS) and not p.exists():
            found = [Path(m) for m in sorted(glob.glob(s)) if _is_stack_file(Path(m))]
            if not found:
                raise SpatimeINRError(
                    f"No stack matches {s!r} (looked for {', '.join(STACK_SUFFIXES)} files): check "
                    "the pattern, and quote it so that the shell does not expand it."
                )
            out.extend(found)
        elif p.is_dir() and not p.name.lower().endswith(".zarr"):
            found = sorted(q for q in p.iterdir() if _is_stack_file(q))
            if not found:
                raise SpatimeINRError(
                    f"The folder {p} holds no stack ({', '.join(STACK_SUFFIXES)} files): choose "
                    "another folder or name the files."
                )
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise SpatimeINRError(f"No such file: {p}. Check the path.")
    seen: set[str] = set()
    unique = []
    for p in out:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


# -- compatibility -------------------------------------------------------------------------------
def _dims(shape: Sequence[int]) -> str:
    t, z = int(shape[0]), int(shape[1])
    space = "3D" if z > 1 else "2D"
    return f"{space}+t" if t > 1 else f"a single {space} image"


def _ratio_text(r: float) -> str:
    return f"{r:.2g}×" if r >= 1 else f"1/{1 / r:.2g}"


def compatibility(md: ModelDir, stack: Stack4D, what: str = "input") -> list[str]:
    """Check that ``md``'s learned parts can run on ``stack``; return warnings (may be empty).

    Raises one :class:`SpatimeINRError` when they cannot: another dimensionality (a 2D+t model on a
    3D+t stack: the refiner's kernels are 2D or 3D), or a model without a learned time part asked
    to render a time-lapse. Warns (returned lines, each saying what to expect) when the voxel size
    or the frame interval is more than :data:`SCALE_TOLERANCE` times off the training stack's, and
    when the channel counts of the source files differ.
    """
    mshape = md.shape
    name = stack.name or what
    if md.method == "spatimeinr":
        if (mshape[1] > 1) != (stack.shape[1] > 1):
            raise SpatimeINRError(
                f"The model {md.path.name} was trained on {_dims(mshape)} data (Z={mshape[1]}) but "
                f"{name} is {_dims(stack.shape)} (Z={stack.shape[1]}): its learned parts cannot run "
                "on it. Use a model trained on "
                f"{'3D' if stack.shape[1] > 1 else '2D'} stacks, or read the stack with other "
                "--axes."
            )
        if mshape[0] == 1 and stack.shape[0] > 1:
            raise SpatimeINRError(
                f"The model {md.path.name} was trained on a single volume (T=1) and has no learned "
                f"time part, but {name} is a time-lapse (T={stack.shape[0]}): train a model on a "
                "time-lapse."
            )
    warns = []
    if md.method == "spatimeinr" and stack.shape[0] == 1 and mshape[0] > 1:
        warns.append(
            f"{name} is a single volume: only the model's spatial part applies (no time to "
            "interpolate)."
        )
    labels = ("z", "y", "x")
    for i, (a, b) in enumerate(zip(stack.voxel_size, md.voxel_size, strict=True)):
        if i == 0 and (stack.shape[1] == 1 or mshape[1] == 1):
            continue  # z spacing of a 2D stack means nothing
        r = a / b
        if r > SCALE_TOLERANCE or r < 1 / SCALE_TOLERANCE:
            warns.append(
                f"{name}'s voxel size along {labels[i]} ({a:g} µm) is {_ratio_text(r)} the "
                f"training stack's ({b:g} µm): objects look {'smaller' if r > 1 else 'larger'} "
                "in voxels than the model learned; expect lower quality (warm-start a model on "
                "this stack with train --init-from)."
            )
    if stack.shape[0] > 1 and mshape[0] > 1:
        r = stack.frame_interval / md.frame_interval
        if r > SCALE_TOLERANCE or r < 1 / SCALE_TOLERANCE:
            warns.append(
                f"{name}'s frame interval ({stack.frame_interval:g} s) is {_ratio_text(r)} the "
                f"training stack's ({md.frame_interval:g} s): motion between frames is "
                f"{'larger' if r > 1 else 'smaller'} than the model learned from; expect lower "
                "quality between frames (warm-start a model on this stack with train --init-from)."
            )
    mc = int(md.meta.get("channels", 1))
    sc = int(stack.extra.get("channels", 1))
    if mc != sc:
        warns.append(
            f"The model was trained on one channel of a {mc}-channel image, {name} has {sc} "
            "channel(s): check that the chosen channel (--channel) shows the same marker."
        )
    return warns


# -- applied model directories -------------------------------------------------------------------
@dataclass
class Applied:
    """A model applied to a stack: the applied model directory and what to expect."""

    model_dir: ModelDir
    warnings: list[str] = field(default_factory=list)
    reused: bool = False


def _stamp(path: Path) -> list[Any]:
    if not path.is_file():
        return [None]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _stack_digest(stack: Stack4D) -> str:
    if stack.source_sha256:
        return stack.source_sha256
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(stack.data).view(np.uint8))
    return h.hexdigest()


def applied_key(md: ModelDir, stack: Stack4D) -> str:
    """A hash of the model's learned state and of the stack (names the applied directory)."""
    parts = {
        "model": str(md.path.resolve()),
        "files": {n: _stamp(md.path / n) for n in (*LEARNED_FILES, "config.yaml")},
        "stack": _stack_digest(stack),
        "shape": list(stack.shape),
        "voxel_size": list(stack.voxel_size),
        "frame_interval": stack.frame_interval,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.strip("._")[:40] or "stack"


def _stored_flows(md: ModelDir, stack: Stack4D) -> Path | None:
    """The flows the model directory already holds for this very stack (several-input training)."""
    if not stack.source_sha256:
        return None
    for rec in md.meta.get("stacks") or []:
        if rec.get("source_sha256") == stack.source_sha256 and list(rec.get("shape", [])) == list(
            stack.shape
        ):
            p = md.path / rec.get("flows", "")
            if rec.get("flows") and p.is_file():
                return p
    return None


def apply_model(
    model: str | Path | ModelDir,
    stack: Stack4D,
    cache_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    stop: Callable[[], bool] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Applied:
    """The applied model directory of ``model`` on ``stack`` (built once, then reused).

    Refuses an incompatible pair with one message (:func:`compatibility`). Optical flows of the new
    stack (motion engine) are computed on ``device``; ``stop()`` returning True ends the work with
    :class:`~napari_spatimeinr.core.errors.StopRequested` and leaves no partial directory.
    """
    md = model if isinstance(model, ModelDir) else ModelDir(model)
    if md.meta.get("applied"):  # already applied: start from the model it came from
        md = ModelDir(md.meta["applied"]["model_dir"])
    stack.validate()
    warns = compatibility(md, stack)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / f"{_safe(stack.name)}-{applied_key(md, stack)}"
    if (target / "meta.json").is_file():
        try:
            return Applied(ModelDir(target), warns, reused=True)
        except SpatimeINRError:
            shutil.rmtree(target, ignore_errors=True)  # a damaged cache entry: build it again
    from ..core.resources import check_disk
    from ..limits import TrainCost

    cost = TrainCost(tuple(int(v) for v in stack.shape), engine_of(md.config))  # type: ignore[arg-type]
    check_disk(
        cost.disk_bytes,
        cache,
        f"the normalized copy and optical flows of {stack.name or 'the input'}",
        "Free some space or choose another --cache-dir.",
    )
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp_parent = Path(tempfile.mkdtemp(prefix=".applying-", dir=cache))
    except OSError as exc:
        raise SpatimeINRError(
            f"Cannot write the cache folder {cache} ({exc.strerror or type(exc).__name__}): choose "
            "another with --cache-dir (or SPATIMEINR_CACHE_DIR)."
        ) from None
    try:
        work = create_model_dir(tmp_parent / "m", stack, md.config)
        for name in LEARNED_FILES:
            if (md.path / name).is_file():
                shutil.copyfile(md.path / name, work.path / name)
        learned = {k: md.meta[k] for k in LEARNED_META if k in md.meta}
        applied = {
            "model_dir": str(md.path.resolve()),
            "model_name": md.name,
            "model_source_name": Path(md.meta.get("source_path") or md.name).name,
            "model_source_sha256": md.meta.get("source_sha256", ""),
            "model_shape": list(md.shape),
            "warnings": warns,
        }
        work.update_meta(**learned, applied=applied)
        if md.method == "spatimeinr" and _uses_flows(md) and stack.shape[0] > 1:
            stored = _stored_flows(md, stack)
            if stored is not None:
                shutil.copyfile(stored, work.path / "flows.npz")
            else:
                _write_flows(work, device, stop or (lambda: False), progress)
        try:
            os.replace(work.path, target)
        except OSError:  # another process built it meanwhile
            if not (target / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
    return Applied(ModelDir(target), warns)


def _uses_flows(md: ModelDir) -> bool:

    return engine_of(md.config) == "fast"


def _write_flows(
    work: ModelDir,
    device: str,
    stop: Callable[[], bool],
    progress: Callable[[str], None] | None,
) -> None:

    from ..core.errors import StopRequested
    from ..engines.fast import task as motion_task

    data = work.input  # read a few frames at a time (StoredInput)
    gen = motion_task.compute_flows(data, stop, device)
    try:
        while True:
            p = next(gen)
            if progress is not None:
                progress(p.message)
    except StopIteration as end:
        flows = end.value
    if flows is None:
        raise StopRequested()
    work.write_atomic(motion_task.FLOWS_FILE, motion_task.flows_bytes(flows))


class MismatchWarning(UserWarning):
    """A model applied to a stack unlike its training stack: expect lower quality."""


def model_for_input(
    model: str | Path | ModelDir,
    input: str | Path | Stack4D,
    cache_dir: str | Path | None = None,
    read_options: dict[str, Any] | None = None,
    device: str = "auto",
) -> ModelDir:
    """The model directory that renders ``model`` on ``input`` (:func:`apply_model`); mismatches
    that only lower the quality are issued as :class:`MismatchWarning`."""
    import warnings

    if isinstance(input, Stack4D):
        stack = input
    else:
        from ..io.read import read_stack

        stack = read_stack(input, **(read_options or {}))
    from ..core.device import resolve_device

    applied = apply_model(model, stack, cache_dir, device=resolve_device(device))
    for w in applied.warnings:
        warnings.warn(w, MismatchWarning, stacklevel=3)
    return applied.model_dir
