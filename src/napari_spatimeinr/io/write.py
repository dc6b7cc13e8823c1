"""Streamed export of a lazy TZYX array to TIFF, OME-TIFF, NIfTI or OME-Zarr.

:func:`write_array` computes the array a slab at a time (see :mod:`.slabs`) and streams it to
disk; the whole result is never in memory. The format follows the suffix:

* ``.tif``/``.tiff``: ImageJ hyperstack (TZYX; resolution, spacing and unit µm, finterval in s,
  provenance in the ``Info`` property). Limited to 4 GB: larger outputs are refused.
* ``.ome.tif``/``.ome.tiff``: OME-TIFF, BigTIFF (PhysicalSize X/Y/Z in µm, TimeIncrement in s,
  provenance as the image Description).
* ``.nii``/``.nii.gz``: NIfTI-1 (x, y, z, t; pixdim in µm and s; provenance in a comment
  extension).
* ``.zarr``/``.ome.zarr``: OME-Zarr (NGFF 0.5, Zarr v3; axes with units, scale and translation
  transformations; provenance in the attributes), chunks written in parallel.

The output is written under a temporary name in the same folder (``.NAME.XXXX.tmp``) and renamed
when complete; on error or cancel the temporary file is removed, so an interrupted export never
leaves a file that looks complete. ``dtype="uint16"`` is described in :mod:`.encode`.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from ..core.errors import SpatimeINRError
from ..core.files import fsync_dir
from ..core.text import fmt_bytes
from .encode import Encoder, check_dtype
from .formats import SUPPORTED_WRITE_SUFFIXES, suffix_of, write_family
from .meta import OutputMeta
from .slabs import Slab, check_cancel, computed_slabs, group_slabs, plan_slabs

__all__ = ["SUPPORTED_WRITE_SUFFIXES", "estimate_output_bytes", "write_array"]

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

_DISK_MARGIN = 32 * 2**20
_GZ_PART = 32 * 2**20


def estimate_output_bytes(
    shape: tuple[int, ...], dtype: str = "float32", suffix: str = ".ome.tif"
) -> int:
    """Size on disk of a TZYX output of ``shape`` (an upper bound for compressed formats).

    ``suffix`` may also be the output path.
    """
    fam = write_family(suffix if "." in str(suffix) else "." + str(suffix))
    shape = tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * np.dtype(check_dtype(dtype)).itemsize
    planes = math.prod(shape[:-2]) if len(shape) >= 2 else 1
    if fam in ("tiff", "ome-tiff"):
        return nbytes + planes * 512 + 64 * 2**10
    if fam == "nifti":
        return nbytes + 16 * 2**10
    return nbytes + 64 * 2**10  # zarr: metadata; compression only makes it smaller


def _as_dask(darr: da.Array | np.ndarray) -> da.Array:
    if not isinstance(darr, da.Array):
        darr = da.from_array(np.asarray(darr), chunks="auto")
    if darr.ndim not in (4, 5):
        raise SpatimeINRError(
            f"Can only write 4D (T, Z, Y, X) or 5D (T, C, Z, Y, X) arrays; this one has shape "
            f"{darr.shape}."
        )
    if any(int(s) == 0 for s in darr.shape):
        raise SpatimeINRError(f"Nothing to write: the array is empty (shape {darr.shape}).")
    return darr


def _check_meta(meta: OutputMeta) -> None:
    values = [*meta.voxel_size, meta.frame_interval]
    if not all(math.isfinite(float(v)) and float(v) > 0 for v in values):
        raise SpatimeINRError(
            f"Output voxel size {tuple(meta.voxel_size)} µm / frame interval "
            f"{meta.frame_interval} s must be positive numbers: check the input's metadata."
        )


def _is_zarr_store(p: Path) -> bool:
    return (p / "zarr.json").is_file() or (p / ".zgroup").is_file() or (p / ".zarray").is_file()


def _check_target(path: Path, overwrite: bool) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpatimeINRError(
            f"The folder {parent} does not exist: create it or choose another output path."
        )
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise SpatimeINRError(
                f"{path} already exists: choose another name, or pass --overwrite to replace it."
            )
        if path.is_dir() and not _is_zarr_store(path):
            raise SpatimeINRError(
                f"{path} is a folder that is not a Zarr store: it is not replaced even with "
                "--overwrite. Choose another name."
            )
    return parent


def check_target(path: str | Path, overwrite: bool) -> Path:
    """Refuse an output path that cannot be written or replaced; returns its folder."""
    return _check_target(Path(path), overwrite)


def _check_disk(parent: Path, path: Path, need: int) -> None:
    free = shutil.disk_usage(parent).free
    if need + _DISK_MARGIN > free:
        raise SpatimeINRError(
            f"Not enough disk space for {path.name}: it needs about {fmt_bytes(need)} but {parent} has "
            f"{fmt_bytes(free)} free. Free some space, write to another disk, or render less "
            "(--t-range, --roi, smaller factors)."
        )


def _temp_path(path: Path, tag: str = "tmp") -> Path:
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.{tag}"


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        try:
            p.unlink()
        except OSError:
            pass


def _commit(tmp: Path, path: Path) -> None:
    """Move the finished temporary output into place (replacing an old one)."""
    if (path.exists() or path.is_symlink()) and (path.is_dir() or tmp.is_dir()):
        old = _temp_path(path, "old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        _remove(old)
    else:
        os.replace(tmp, path)
    fsync_dir(path.parent)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


class _Counter:
    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress
        self.step(0)

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _write_slabs_at(
    fd: int,
    data_offset: int,
    darr: da.Array,
    slabs: list[Slab],
    enc: Encoder,
    counter: _Counter,
    cancel: Cancel | None,
) -> None:
    """Write the slabs into a raw C-ordered TZYX data region starting at ``data_offset``."""
    shape = tuple(int(s) for s in darr.shape)
    size = enc.itemsize
    for slab, block in computed_slabs(darr, slabs, cancel):
        out = enc(block)
        for elem, it, iz in slab.segments(shape):  # type: ignore[arg-type]
            _pwrite_all(fd, memoryview(out[it, iz]).cast("B"), data_offset + elem * size)
        counter.step()


def write_array(
    darr: da.Array,
    path: str | Path,
    meta: OutputMeta,
    dtype: str = "float32",
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    force: bool = False,
) -> Path:
    """Write the lazy TZYX array ``darr`` (float32, input intensity units) to ``path``.

    Args:
        darr: the array, computed here slab by slab (a numpy array is accepted too).
        path: output path; its suffix picks the format (:data:`SUPPORTED_WRITE_SUFFIXES`).
        meta: voxel size, frame interval, origin, name, provenance, intensity range.
        dtype: ``float32`` (exact) or ``uint16`` (see :mod:`.encode`).
        overwrite: replace an existing output (only once the new one is complete).
        progress: called as ``progress(done, total)`` as slabs are written.
        cancel: polled between slabs; when it returns True the temporary output is removed and
            :class:`~napari_spatimeinr.core.errors.StopRequested` is raised.
        force: skip the free-disk check. The memory gate of :mod:`napari_spatimeinr.limits` is
            applied by :func:`napari_spatimeinr.workflows.export.export`, which front ends call.

    Returns:
        The path written.
    """
    path = Path(path)
    fam = write_family(path)
    suffix = suffix_of(path)
    darr = _as_dask(darr)
    _check_meta(meta)
    enc = Encoder.for_output(dtype, meta)
    parent = _check_target(path, overwrite)
    layout = None
    if darr.ndim == 5:
        darr, layout = _channel_planes(darr, fam, path, meta)
    shape = tuple(int(s) for s in darr.shape)
    need = estimate_output_bytes(shape, enc.dtype, suffix)
    if fam == "tiff":
        from .write_tiff import IMAGEJ_MAX_BYTES

        if need > IMAGEJ_MAX_BYTES:
            raise SpatimeINRError(
                f"{path.name} would be about {fmt_bytes(need)}, over the 4 GB limit of ImageJ TIFF: "
                "write .ome.tif (BigTIFF) or .zarr instead, or render less (--t-range, --roi)."
            )
    if fam == "zarr" and layout is None:
        darr = _regular_chunks(darr)
    slabs = plan_slabs(darr.chunks, 4)
    gz_direct = suffix == ".nii.gz" and all(s.is_one_run(shape) for s in slabs)  # type: ignore[arg-type]
    scratch = need if suffix == ".nii.gz" and not gz_direct else 0
    if not force:
        _check_disk(parent, path, need + scratch)

    tmp = _temp_path(path)
    extra: list[Path] = []
    try:
        if fam in ("tiff", "ome-tiff"):
            _write_tiff(tmp, darr, slabs, meta, enc, fam == "ome-tiff", progress, cancel, layout)
        elif suffix == ".nii":
            _write_nii(tmp, darr, slabs, meta, enc, _Counter(len(slabs), progress), cancel)
        elif gz_direct:
            _write_nii_gz(tmp, darr, slabs, meta, enc, progress, cancel)
        elif fam == "nifti":
            raw = _temp_path(path, "raw")
            extra.append(raw)
            _write_nii_gz_via_raw(tmp, raw, darr, slabs, meta, enc, progress, cancel)
        else:
            _write_zarr(tmp, darr, slabs, meta, enc, progress, cancel, layout)
        _commit(tmp, path)
    except BaseException:
        _remove(tmp)
        for p in extra:
            _remove(p)
        raise
    for p in extra:
        _remove(p)
    return path


# -- channels -----------------------------------------------------------------------------------


def channel_names(meta: OutputMeta, n: int) -> list[str]:
    """The names of the ``n`` channels of an output (``C0``, ``C1``, … where none are given)."""
    names = list(meta.channel_names or [])
    return names if len(names) == n else [f"C{c}" for c in range(n)]


def check_channel_format(path: str | Path, channels: int) -> None:
    """Refuse, in one line, a format without a channel axis (NIfTI) for several channels."""
    if channels > 1 and write_family(Path(path)) == "nifti":
        raise SpatimeINRError(
            f"{Path(path).name}: NIfTI holds x, y, z, t and no channel axis, and this render has "
            f"{channels} channels: write it to .ome.tif, .tif or .zarr, or render one channel "
            "with --channel N."
        )


def _channel_planes(
    darr: da.Array, fam: str, path: Path, meta: OutputMeta
) -> tuple[da.Array, tuple[int, ...]]:
    """A TCZYX array as the 4D array of its planes in the file's order, and the file's 5D shape.

    OME-TIFF and OME-Zarr store TCZYX: the channels one after another along z (T, C·Z, Y, X).
    ImageJ hyperstacks store TZCYX: the channels interleaved plane by plane (T, Z·C, Y, X); the
    chunks then hold every channel of their planes. NIfTI has no channel axis: refused.
    """
    t, c, z, y, x = (int(v) for v in darr.shape)
    check_channel_format(path, c)
    if fam == "tiff":
        stacked = da.stack([darr[:, k] for k in range(c)], axis=2).rechunk({2: c})
        return stacked.reshape((t, z * c, y, x)), (t, z, c, y, x)
    chans = [darr[:, k] for k in range(c)]
    if fam == "zarr":  # one regular chunk grid per channel, so that no chunk spans two channels
        chans = [_regular_chunks(a) for a in chans]
    return da.concatenate(chans, axis=1), (t, c, z, y, x)


# -- formats ------------------------------------------------------------------------------------


def _write_tiff(
    tmp: Path,
    darr: da.Array,
    slabs: list[Slab],
    meta: OutputMeta,
    enc: Encoder,
    ome: bool,
    progress: Progress | None,
    cancel: Cancel | None,
    layout: tuple[int, ...] | None = None,
) -> None:
    from .write_tiff import create_tiff, finish_tiff

    counter = _Counter(len(slabs), progress)
    shape = layout or tuple(int(s) for s in darr.shape)
    offset = create_tiff(tmp, shape, meta, enc, ome)  # type: ignore[arg-type]
    fd = os.open(tmp, os.O_RDWR)
    try:
        _write_slabs_at(fd, offset, darr, slabs, enc, counter, cancel)
        os.fsync(fd)
    finally:
        os.close(fd)
    finish_tiff(tmp, enc)


def _write_nii(
    tmp: Path,
    darr: da.Array,
    slabs: list[Slab],
    meta: OutputMeta,
    enc: Encoder,
    counter: _Counter,
    cancel: Cancel | None,
) -> int:
    """Uncompressed NIfTI; returns the data offset."""
    from .write_nifti import final_header, nifti_header

    shape = tuple(int(s) for s in darr.shape)
    header = nifti_header(shape, meta, enc)  # type: ignore[arg-type]
    nbytes = math.prod(shape) * enc.itemsize
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _pwrite_all(fd, memoryview(header), 0)
        os.ftruncate(fd, len(header) + nbytes)
        _write_slabs_at(fd, len(header), darr, slabs, enc, counter, cancel)
        _pwrite_all(fd, memoryview(final_header(header, enc)), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(header)


def _write_nii_gz(
    tmp: Path,
    darr: da.Array,
    slabs: list[Slab],
    meta: OutputMeta,
    enc: Encoder,
    progress: Progress | None,
    cancel: Cancel | None,
) -> None:
    """NIfTI .nii.gz streamed: slabs arrive in file order, each compressed as a gzip member."""
    from .slabs import workers
    from .write_nifti import compress_parts, final_header, header_member, nifti_header

    shape = tuple(int(s) for s in darr.shape)
    header = nifti_header(shape, meta, enc)  # type: ignore[arg-type]
    first = header_member(header)
    counter = _Counter(len(slabs), progress)
    nx = shape[3]
    with open(tmp, "wb") as fh, ThreadPoolExecutor(workers()) as pool:
        fh.write(first)
        for group in group_slabs(slabs, nx):
            check_cancel(cancel)
            blocks = dask.compute(*[darr[s.region] for s in group])
            encoded = [enc(np.asarray(b)) for b in blocks]
            del blocks
            members = compress_parts([memoryview(e).cast("B") for e in encoded], pool)
            del encoded
            for m in members:
                check_cancel(cancel)
                fh.write(m)
                counter.step()
        last = header_member(final_header(header, enc))
        if len(last) != len(first):  # pragma: no cover - stored gzip blocks have fixed size
            raise RuntimeError("NIfTI header size changed")
        fh.seek(0)
        fh.write(last)
        fh.flush()
        os.fsync(fh.fileno())


def _write_nii_gz_via_raw(
    tmp: Path,
    raw: Path,
    darr: da.Array,
    slabs: list[Slab],
    meta: OutputMeta,
    enc: Encoder,
    progress: Progress | None,
    cancel: Cancel | None,
) -> None:
    """NIfTI .nii.gz when the chunks do not arrive in file order: write .nii, then compress."""
    from .slabs import workers
    from .write_nifti import compress_parts, header_member

    nbytes = math.prod(int(s) for s in darr.shape) * enc.itemsize
    n_parts = max(1, math.ceil(nbytes / _GZ_PART))
    counter = _Counter(len(slabs) + n_parts, progress)
    vox_offset = _write_nii(raw, darr, slabs, meta, enc, counter, cancel)
    from . import slabs as _slabs

    per_group = max(1, _slabs.GROUP_BYTES // _GZ_PART)
    with open(raw, "rb") as src, open(tmp, "wb") as fh, ThreadPoolExecutor(workers()) as pool:
        fh.write(header_member(src.read(vox_offset)))
        while True:
            check_cancel(cancel)
            parts = [p for p in (src.read(_GZ_PART) for _ in range(per_group)) if p]
            if not parts:
                break
            for m in compress_parts(parts, pool):
                fh.write(m)
                counter.step()
        fh.flush()
        os.fsync(fh.fileno())
    _remove(raw)


def _regular_chunks(darr: da.Array) -> da.Array:
    """Zarr needs one chunk shape: rechunk if the dask chunks are irregular."""
    regular = all(all(c == cs[0] for c in cs[:-1]) and cs[-1] <= cs[0] for cs in darr.chunks)
    return darr if regular else darr.rechunk(tuple(max(cs) for cs in darr.chunks))


def _write_zarr(
    tmp: Path,
    darr: da.Array,
    slabs: list[Slab],
    meta: OutputMeta,
    enc: Encoder,
    progress: Progress | None,
    cancel: Cancel | None,
    layout: tuple[int, ...] | None = None,
) -> None:
    from ..core.cluster import active_client, iter_completed
    from .write_zarr import create_zarr, encoder_params, finish_zarr, store_block

    shape = tuple(int(s) for s in darr.shape)
    chunks: tuple[int, ...] = tuple(int(c[0]) for c in darr.chunks)
    if layout is not None:  # TCZYX: the planes of channel k are z' in [k·Z, (k+1)·Z)
        chunks = (chunks[0], 1, min(chunks[1], layout[2]), chunks[2], chunks[3])
        shape = layout
    # An absolute path: on a dask cluster the workers write the chunks from their own folder.
    arr = create_zarr(tmp.absolute(), shape, chunks, meta, enc)  # type: ignore[arg-type]
    params = encoder_params(enc)
    counter = _Counter(len(slabs), progress)
    store = dask.delayed(store_block, pure=False)
    # On a dask.distributed cluster the store tasks return only counts: submit them all and count
    # slabs as they land; locally, a group at a time (bounded memory).
    nx = int(darr.shape[3])
    groups = [slabs] if active_client() is not None else group_slabs(slabs, nx)
    for group in groups:
        check_cancel(cancel)
        tasks = [
            store(darr[s.region], arr, (s.t0, s.t1, s.z0, s.z1, s.y0, s.y1), params) for s in group
        ]
        for low, high, nan in iter_completed(tasks, cancel):
            enc.add_counts(low, high, nan)
            counter.step()
    finish_zarr(tmp, meta, enc)
