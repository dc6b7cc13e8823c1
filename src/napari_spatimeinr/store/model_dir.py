"""The model directory: everything needed to render a trained model, on any machine.

Layout (DESIGN.md, "Model directory")::

    config.yaml   full validated TrainConfig (including ``method``)
    meta.json     format version, method, source name and SHA-256, shape, axes, voxel size,
                  frame interval, normalization, training steps and seconds
    input.npy     the input, TZYX, in its own dtype (uint16 for a uint16 file; float32 for float
                  or non-integral data) as read, i.e. not normalized: ``meta.json["input_encoding"]``
                  is ``"raw"`` and readers apply ``meta.json["normalization"]`` on read
                  (:class:`StoredInput`, memory-mapped, a block at a time). Format 1 directories
                  (no ``input_encoding``) hold the normalized input as float32 and still load.
    history.csv   step, loss, psnr, lr, seconds (one row per logged step)
    model.pt      learned weights (tensors only; methods with weights)
    checkpoint.pt optimizer and RNG state for --resume (methods with weights)

The stored input costs the file's own size on disk (a uint16 stack: half the float32 copy format 1
kept) and is written a few frames at a time, so a model directory of any size is made in bounded
memory; the flows (``flows.npz``, written by the fast engine) are float16 on a grid subsampled in y
and x, zip-compressed, one entry per frame pair (``gap1_00000``, …; format 1: one ``gap1`` array),
read a pair at a time (:class:`~napari_spatimeinr.engines.fast.task.FlowPairs`).

The directory appears atomically (built under a temporary name, then renamed) and an existing one
is only replaced with ``overwrite=True``. Files inside are replaced atomically (temp + rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..core.config import TrainConfig, build, dump_yaml, load_yaml
from ..core.errors import SpatimeINRError
from ..core.files import fsync_dir
from ..data.normalize import Normalization
from ..data.stack import ChannelStack, Stack4D

FORMAT_VERSION = 2
#: ``meta.json["input_encoding"]`` of a stored input in its own dtype, normalized on read (format 2);
#: absent: the stored input is the normalized float32 (format 1)
RAW_ENCODING = "raw"
#: bytes read through one memory map before it is reopened: the pages a long run has read are
#: then no longer resident in this process (its memory stays bounded at any stack size)
REMAP_BYTES = 256 * 2**20
#: bytes of input converted at a time when a model directory is written
WRITE_BLOCK_BYTES = 64 * 2**20
HISTORY_FIELDS = ["step", "loss", "psnr", "lr", "seconds"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Permissions a plain ``open``/``mkdir`` would give (temp files default to owner-only)."""
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a file through ``write(fh)`` into a temporary sibling, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_new_output(path: Path, overwrite: bool, what: str = "model directory") -> None:
    if path.exists() and not overwrite:
        raise SpatimeINRError(
            f"The {what} {path} already exists: choose another name, or pass --overwrite to "
            "replace it."
        )
    if path.exists() and overwrite and path.is_file() and what == "model directory":
        raise SpatimeINRError(f"{path} is a file, not a model directory: choose another name.")


class StoredInput:
    """A stored input (``input.npy``) read a block at a time, normalized: an array-like of
    shape (T, Z, Y, X) whose indexing returns normalized float32 numpy arrays.

    ``norm`` None: the file holds normalized float32 already (format 1); else it holds raw values
    (any dtype) and ``norm.apply`` maps what is read. The file is memory-mapped and reopened after
    :data:`REMAP_BYTES` were read, so reading all of a big stack in pieces never keeps more than
    that resident. ``np.asarray`` of it loads everything (small stacks only).
    """

    def __init__(self, path: str | Path, norm: Normalization | None = None):
        self.path = Path(path)
        self.norm = norm
        mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
        self.shape: tuple[int, ...] = tuple(int(s) for s in mm.shape)
        self.stored_dtype = mm.dtype
        self._mm: np.ndarray | None = mm
        self._read = 0

    dtype = np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole normalized input as float32 (what ``np.asarray`` would allocate)."""
        return 4 * self.size

    @property
    def stored_nbytes(self) -> int:
        return self.size * self.stored_dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _map(self) -> np.ndarray:
        mm = self._mm
        if mm is None or self._read > REMAP_BYTES:
            mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
            self._mm, self._read = mm, 0
        return mm

    def raw(self, key: Any = ...) -> np.ndarray:
        """The stored values of ``key`` (a copy, in the stored dtype)."""
        part = np.array(self._map()[key])
        self._read += part.nbytes
        if _fancy(key):  # scattered reads touch pages all over the file: let them go now
            self._mm = None
        return part

    def __getitem__(self, key: Any) -> np.ndarray:
        part = self.raw(key)
        if self.norm is None:
            return np.asarray(part, dtype=np.float32)
        return self.norm.apply(part)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def frames(self, t0: int, t1: int) -> np.ndarray:
        """Frames ``t0 <= t < t1``, normalized float32 (T', Z, Y, X)."""
        return self[t0:t1]

    def fit_normalization(self) -> Normalization:
        """:meth:`Normalization.fit` of the normalized values, computed a frame block at a time
        (the same subsample of about 4M values and the exact min and max)."""
        flat_n = self.size
        step = max(1, flat_n // 4_000_000)
        per = int(np.prod(self.shape[1:]))
        block = max(1, WRITE_BLOCK_BYTES // max(4 * per, 1))
        parts, lo, hi = [], np.inf, -np.inf
        for t0 in range(0, self.shape[0], block):
            a = self[t0 : t0 + block].reshape(-1)
            first = (-(t0 * per)) % step  # the global sample positions that fall in this block
            parts.append(np.asarray(a[first::step], dtype=np.float64))
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
        return Normalization.from_sample(np.concatenate(parts), lo, hi)


def _fancy(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in keys)


def write_input(path: Path, data: np.ndarray, source_dtype: str | None) -> str:
    """Store ``data`` (T, Z, Y, X, raw intensities) as ``path`` (.npy) in ``source_dtype`` when it
    holds that integer type's values exactly, else as float32; a block of frames at a time.
    Returns the stored dtype's name."""
    dtype = np.dtype(np.float32)
    if source_dtype:
        try:
            want = np.dtype(source_dtype)
        except TypeError:
            want = dtype
        if want.kind in "iu" and want.itemsize <= 4 and _fits(data, want):
            dtype = want
    with open(path, "wb") as fh:  # plain writes: no mapped (resident) pages of the output
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
        np.lib.format.write_array_header_1_0(fh, {**header, "shape": tuple(data.shape)})
        for sl in _blocks(data.shape):
            fh.write(np.ascontiguousarray(data[sl], dtype=dtype).tobytes())
            release_pages(data)
    return dtype.name


def release_pages(data: Any) -> None:
    """Let the pages of a memory-mapped array that were read go (they stay in the page cache,
    not in this process's memory); nothing for other arrays."""
    import mmap

    mm = getattr(data, "_mmap", None)
    if mm is None and isinstance(getattr(data, "base", None), mmap.mmap):
        mm = data.base
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _blocks(shape: tuple[int, ...]):
    per = int(np.prod(shape[1:])) * 4
    n = max(1, WRITE_BLOCK_BYTES // max(per, 1))
    for t0 in range(0, shape[0], n):
        yield slice(t0, min(shape[0], t0 + n))


def _fits(data: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every value of ``data`` is a whole number in the range of the integer ``dtype``."""
    info = np.iinfo(dtype)
    for sl in _blocks(data.shape):
        a = np.asarray(data[sl])
        if a.size and (
            a.min() < info.min or a.max() > info.max or not np.array_equal(a, np.round(a))
        ):
            return False
    return True


class ModelDir:
    """An opened model directory (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise SpatimeINRError(
                f"No model directory at {self.path}: train one first (spatimeinr train INPUT -o "
                f"{self.path})."
            )
        for name in ("config.yaml", "meta.json", "input.npy"):
            if not (self.path / name).is_file():
                raise SpatimeINRError(
                    f"{self.path} is not a complete model directory ({name} is missing): train it "
                    "again with --overwrite."
                )
        try:
            self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text())
            if not isinstance(self.meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            raise SpatimeINRError(
                f"{self.path} is not a complete model directory (meta.json is unreadable: {exc}): "
                "train it again with --overwrite."
            ) from None
        if int(self.meta.get("format_version", 0)) > FORMAT_VERSION:
            raise SpatimeINRError(
                f"{self.path} was written by a newer napari-spatimeinr (format "
                f"{self.meta.get('format_version')}): upgrade the package to read it."
            )
        self.config: TrainConfig = build(
            TrainConfig, load_yaml(self.path / "config.yaml"), "config.yaml"
        )
        self._check_meta()
        try:
            self.norm = Normalization.from_dict(self.meta["normalization"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._broken(f"its normalization is unreadable: {exc}") from None
        self._input: StoredInput | None = None

    def _broken(self, why: str) -> SpatimeINRError:
        return SpatimeINRError(
            f"{self.path} is not a complete model directory ({why}): train it again with "
            "--overwrite."
        )

    def _check_meta(self) -> None:
        """Refuse a meta.json without a usable shape, voxel size, frame interval, normalization."""
        m = self.meta
        try:
            shape = [int(s) for s in m["shape"]]
            vs = [float(v) for v in m["voxel_size"]]
            fi = float(m["frame_interval"])
            m["normalization"]  # noqa: B018 - presence
        except KeyError as exc:
            raise self._broken(f"meta.json has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise self._broken(f"meta.json is inconsistent: {exc}") from None
        if len(shape) != 4 or min(shape) < 1:
            raise self._broken(f"meta.json's shape {m['shape']} is not four positive sizes T Z Y X")
        if len(vs) != 3 or not all(v > 0 for v in vs) or not fi > 0:
            raise self._broken("meta.json's voxel size or frame interval is not positive")

    # -- properties -----------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.config.method

    @property
    def input(self) -> StoredInput:
        """The normalized input, TZYX float32 when indexed (:class:`StoredInput`: read a block at
        a time from the memory-mapped ``input.npy``)."""
        if self._input is None:
            self._input = self.stored_input("input.npy", self.meta)
            if self._input.shape != self.shape:
                raise self._broken(
                    f"input.npy has shape {self._input.shape}, meta.json says {self.shape}"
                )
        return self._input

    def stored_input(self, name: str, record: dict[str, Any]) -> StoredInput:
        """The stored input ``name`` (``input.npy``, ``stacks/K/input.npy``) described by
        ``record`` (meta.json, or its entry in ``meta.json["stacks"]``), normalized on read."""
        norm = None
        if record.get("input_encoding") == RAW_ENCODING:
            try:
                norm = Normalization.from_dict(record["normalization"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self._broken(f"the normalization of {name} is unreadable: {exc}") from None
        try:
            return StoredInput(self.path / name, norm)
        except (ValueError, OSError, EOFError) as exc:
            raise self._broken(f"{name} is unreadable: {exc}") from None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.meta["shape"])  # type: ignore[return-value]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.meta["voxel_size"])  # type: ignore[return-value]

    @property
    def frame_interval(self) -> float:
        return float(self.meta["frame_interval"])

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    def stack(self) -> Stack4D:
        """The input as a Stack4D in raw intensity units (loads it into memory)."""
        inp = self.input
        raw = inp.raw() if inp.norm is not None else self.norm.invert(inp[...])
        return Stack4D(
            raw,
            voxel_size=self.voxel_size,
            frame_interval=self.frame_interval,
            source_axes=self.meta.get("source_axes", "TZYX"),
            name=self.name,
            source_path=self.meta.get("source_path", ""),
            source_sha256=self.meta.get("source_sha256", ""),
            origin=tuple(self.meta.get("origin", (0.0, 0.0, 0.0, 0.0))),  # type: ignore[arg-type]
        )

    # -- writing --------------------------------------------------------------------------------
    def write_atomic(self, name: str, data: bytes | Callable[[Any], None]) -> None:
        """Replace file ``name`` inside the directory atomically (bytes or a writer callback)."""
        writer = data if callable(data) else (lambda fh: fh.write(data))
        atomic_write(self.path / name, writer)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete ``.NAME.XXXX.tmp`` files a killed writer left behind; returns what was removed.

        Only the process that owns the directory (training, resumed training) may call this: a
        writer still running in another process would lose its half-written file.
        """
        removed = []
        for tmp in self.path.glob(".*.tmp"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed

    def update_meta(self, **changes: Any) -> None:
        self.meta.update(changes)
        text = json.dumps(self.meta, indent=2).encode()
        self.write_atomic("meta.json", text)

    def write_history(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace history.csv with ``rows`` (keys from HISTORY_FIELDS)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in HISTORY_FIELDS})
        self.write_atomic("history.csv", buf.getvalue().encode())

    def read_history(self) -> list[dict[str, float]]:
        p = self.path / "history.csv"
        if not p.is_file():
            return []
        with open(p, newline="") as fh:
            return [
                {k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items()}
                for row in csv.DictReader(fh)
            ]

    def provenance(self) -> dict[str, Any]:
        """What every output of this model records about where it came from."""
        out: dict[str, Any] = {
            "software": "napari-spatimeinr",
            "version": __version__,
            "method": self.config.method,
            "preset": self.config.preset if self.config.method == "spatimeinr" else None,
            "seed": self.config.seed,
            "source_name": Path(self.meta.get("source_path") or self.name).name,
            "source_sha256": self.meta.get("source_sha256", ""),
            "model_dir": str(self.path.resolve()),
        }
        applied = self.meta.get("applied")
        if applied:  # a model applied to another stack: the source above is that stack
            out["model_dir"] = applied.get("model_dir", out["model_dir"])
            out["applied"] = {
                "input": out["source_name"],
                "input_sha256": out["source_sha256"],
                "model_source_name": applied.get("model_source_name", ""),
                "model_source_sha256": applied.get("model_source_sha256", ""),
                "cache_dir": str(self.path.resolve()),
            }
        return out


def create_model_dir(
    path: str | Path,
    stack: Stack4D,
    config: TrainConfig,
    overwrite: bool = False,
    extra_stacks: Sequence[Stack4D] = (),
    channels: ChannelStack | None = None,
    motion_from: int | None = None,
) -> ModelDir:
    """Write a new model directory for ``stack`` atomically and open it.

    ``channels`` (a multi-channel stack; ``stack`` is then its channel 0): the directory is channel
    0's model, and each further channel K gets a complete model directory of its own in
    ``channels/K/`` (its input, config, meta); :func:`channel_dirs` lists them. They share the one
    ``flows.npz`` of the top directory (:data:`CHANNEL_KEY` in each meta.json). ``motion_from``:
    the channel the motion is estimated from (None: the mean of the normalized channels).

    The input is validated (NaN/Inf, constant), its normalization fitted and recorded in meta.json,
    and it is stored as ``input.npy`` in its source dtype (:func:`write_input`; normalized on read).
    ``extra_stacks`` (training on several stacks): each is normalized on its own and stored as
    ``stacks/K/input.npy`` (K = 1, 2, …); ``meta.json["stacks"]`` then describes all of them, the
    first being ``input.npy`` (what the model renders without ``--input``).
    """
    path = Path(path)
    check_new_output(path, overwrite)
    stack.validate()
    for other in extra_stacks:
        other.validate()
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise SpatimeINRError(
            f"The folder {parent} does not exist: create it or choose another -o."
        )
    norm = Normalization.fit(stack.data)
    release_pages(stack.data)  # a memory-mapped stack: the checks above read all of it
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise SpatimeINRError(
            f"Cannot write the model directory {path}: the folder {parent} is not writable "
            f"({exc.strerror or type(exc).__name__}). Choose another -o."
        ) from None
    os.chmod(tmp, default_mode(directory=True))  # readable by cluster workers like any folder
    try:
        stored = write_input(tmp / "input.npy", stack.data, _source_dtype(stack))
        records = []
        if extra_stacks:
            records.append(stack_record(stack, norm, "input.npy", "flows.npz"))
            for k, other in enumerate(extra_stacks, start=1):
                (tmp / "stacks" / str(k)).mkdir(parents=True)
                onorm = Normalization.fit(other.data)
                write_input(tmp / "stacks" / str(k) / "input.npy", other.data, _source_dtype(other))
                records.append(
                    stack_record(other, onorm, f"stacks/{k}/input.npy", f"stacks/{k}/flows.npz")
                )
        (tmp / "config.yaml").write_text(dump_yaml(config))
        meta = {
            "format_version": FORMAT_VERSION,
            "software_version": __version__,
            "method": config.method,
            "preset": config.preset,
            "name": stack.name,
            "source_path": stack.source_path,
            "source_sha256": stack.source_sha256,
            "source_axes": stack.source_axes,
            "axes": "TZYX",
            "shape": list(stack.shape),
            "voxel_size": list(stack.voxel_size),
            "voxel_unit": "micrometer",
            "frame_interval": stack.frame_interval,
            "time_unit": "second",
            "origin": list(stack.origin),
            "normalization": norm.to_dict(),
            "input_encoding": RAW_ENCODING,
            "input_dtype": stored,
            "source_dtype": str(stack.extra.get("source_dtype", "float32")),
            "train_steps": 0,
            "train_seconds": 0.0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if "channels" in stack.extra:
            meta["channels"] = int(stack.extra["channels"])
        if records:
            meta["stacks"] = records
        if channels is not None:
            meta.update(_channel_meta(channels, 0, motion_from))
            for k in range(1, channels.n):
                _write_channel(tmp / CHANNELS_DIR / str(k), channels, k, config, meta)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        with open(tmp / "history.csv", "w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=HISTORY_FIELDS).writeheader()
        if path.exists():  # overwrite=True: swap in, then remove the old one
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ModelDir(path)


def _source_dtype(stack: Stack4D) -> str | None:
    got = stack.extra.get("source_dtype")
    return str(got) if got else None


#: the folder of the further channels' model directories (``channels/K/``)
CHANNELS_DIR = "channels"
#: meta.json key of a channel's model directory: ``{"index", "name", "color", "root"}`` (``root``:
#: the top directory, relative; it holds the shared ``flows.npz`` and the list of all channels)
CHANNEL_KEY = "channel"


def _channel_meta(channels: ChannelStack, k: int, motion_from: int | None) -> dict[str, Any]:
    root = "." if k == 0 else "../.."
    out: dict[str, Any] = {
        CHANNEL_KEY: {
            "index": k,
            "name": channels.names[k],
            "color": channels.colors[k],
            "root": root,
        }
    }
    if k == 0:
        out["channel_dirs"] = ["."] + [f"{CHANNELS_DIR}/{c}" for c in range(1, channels.n)]
        out["channel_names"] = list(channels.names)
        out["channel_colors"] = list(channels.colors)
        out["motion_from"] = "mean" if motion_from is None else int(motion_from)
    return out


def _write_channel(
    where: Path, channels: ChannelStack, k: int, config: TrainConfig, top: dict[str, Any]
) -> None:
    """Channel ``k``'s model directory (input, config, meta, history) at ``where``."""
    stack = channels.channels[k]
    where.mkdir(parents=True)
    norm = Normalization.fit(stack.data)
    stored = write_input(where / "input.npy", stack.data, _source_dtype(stack))
    (where / "config.yaml").write_text(dump_yaml(config))
    meta = {
        key: v
        for key, v in top.items()
        if key not in ("channel_dirs", "channel_names", "channel_colors", "motion_from")
    }
    meta["normalization"] = norm.to_dict()
    meta["input_encoding"], meta["input_dtype"] = RAW_ENCODING, stored  # format 2, as the top's
    meta.update(_channel_meta(channels, k, None))
    (where / "meta.json").write_text(json.dumps(meta, indent=2))
    with open(where / "history.csv", "w", newline="") as fh:
        csv.DictWriter(fh, fieldnames=HISTORY_FIELDS).writeheader()


def channel_dirs(md: ModelDir) -> list[ModelDir]:
    """The model directory of every channel of a multi-channel model (the top one first), or
    ``[md]`` for a single-channel model. ``md`` may be the model of any of its channels."""
    root = channel_root(md)
    dirs = root.meta.get("channel_dirs")
    if not dirs:
        return [md]
    return [root if d == "." else ModelDir(root.path / d) for d in dirs]


def channel_root(md: ModelDir) -> ModelDir:
    """The top model directory of a channel's model (``md`` itself for a single-channel one)."""
    info = md.meta.get(CHANNEL_KEY)
    if not info or info.get("root", ".") == ".":
        return md
    return ModelDir((md.path / info["root"]).resolve())


def n_channels(md: ModelDir) -> int:
    """The number of channels a model renders together (1 for a single-channel model)."""
    return len(channel_root(md).meta.get("channel_dirs") or ["."])


def stack_record(stack: Stack4D, norm: Any, input_file: str, flows_file: str) -> dict[str, Any]:
    """meta.json's description of one training stack (``meta.json["stacks"]``)."""
    return {
        "name": stack.name,
        "source_path": stack.source_path,
        "source_sha256": stack.source_sha256,
        "shape": list(stack.shape),
        "voxel_size": list(stack.voxel_size),
        "frame_interval": stack.frame_interval,
        "normalization": norm.to_dict(),
        "input_encoding": RAW_ENCODING,
        "input": input_file,
        "flows": flows_file,
    }
