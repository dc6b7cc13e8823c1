"""Computing a lazy TZYX array slab by slab: never more than a bounded part of it in memory.

A slab is a block of whole dask chunks along T, Z and Y, spanning all of X: one (t-chunk,
z-chunk) row of the array, split along Y only when a full Y-X plane row is over the budget.
Slabs are computed a group at a time (several in parallel), in file order (T, then Z, then Y).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from ..core.errors import StopRequested

#: Largest slab, and the amount of float32 results computed together (several slabs in parallel).
SLAB_BYTES = 64 * 2**20
GROUP_BYTES = 128 * 2**20


@dataclass(frozen=True)
class Slab:
    """Index ranges [t0, t1) × [z0, z1) × [y0, y1) × all X."""

    t0: int
    t1: int
    z0: int
    z1: int
    y0: int
    y1: int

    @property
    def region(self) -> tuple[slice, slice, slice, slice]:
        return (
            slice(self.t0, self.t1),
            slice(self.z0, self.z1),
            slice(self.y0, self.y1),
            slice(None),
        )

    @property
    def shape3(self) -> tuple[int, int, int]:
        return (self.t1 - self.t0, self.z1 - self.z0, self.y1 - self.y0)

    def size(self, nx: int) -> int:
        t, z, y = self.shape3
        return t * z * y * nx

    def segments(self, shape: tuple[int, int, int, int]) -> Iterator[tuple[int, int, int]]:
        """(element offset in the C-ordered TZYX array, t index, z index) of each contiguous run
        of this slab: one per (t, z) plane part."""
        _, nz, ny, nx = shape
        for t in range(self.t0, self.t1):
            for z in range(self.z0, self.z1):
                yield ((t * nz + z) * ny + self.y0) * nx, t - self.t0, z - self.z0

    def is_one_run(self, shape: tuple[int, int, int, int]) -> bool:
        """True if the slab is one contiguous run of the C-ordered array."""
        _, nz, ny, _ = shape
        if self.t1 - self.t0 > 1 and not (
            self.z0 == 0 and self.z1 == nz and self.y1 - self.y0 == ny
        ):
            return False
        return self.z1 - self.z0 == 1 or (self.y0 == 0 and self.y1 == ny)


def _bounds(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    edges = np.concatenate([[0], np.cumsum(chunks)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def plan_slabs(
    chunks: tuple[tuple[int, ...], ...], itemsize: int = 4, slab_bytes: int | None = None
) -> list[Slab]:
    """Slabs covering an array with dask ``chunks`` (T, Z, Y, X), in C order of the array."""
    slab_bytes = SLAB_BYTES if slab_bytes is None else slab_bytes
    tc, zc, yc, xc = chunks
    nx = int(sum(xc))
    slabs = []
    for t0, t1 in _bounds(tc):
        for z0, z1 in _bounds(zc):
            ys = _bounds(yc)
            i = 0
            while i < len(ys):
                y0, y1 = ys[i]
                i += 1
                while i < len(ys):
                    size = (t1 - t0) * (z1 - z0) * (ys[i][1] - y0) * nx * itemsize
                    if size > slab_bytes:
                        break
                    y1 = ys[i][1]
                    i += 1
                slabs.append(Slab(t0, t1, z0, z1, y0, y1))
    return slabs


def group_slabs(slabs: list[Slab], nx: int, group_bytes: int | None = None) -> list[list[Slab]]:
    """Consecutive slabs packed into groups of at most ``group_bytes`` (float32), one at least."""
    group_bytes = GROUP_BYTES if group_bytes is None else group_bytes
    groups: list[list[Slab]] = []
    current: list[Slab] = []
    size = 0
    for s in slabs:
        b = s.size(nx) * 4
        if current and size + b > group_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(s)
        size += b
    if current:
        groups.append(current)
    return groups


def check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise StopRequested("Export cancelled.")


def computed_slabs(
    darr: da.Array,
    slabs: list[Slab],
    cancel: Callable[[], bool] | None = None,
    group_bytes: int | None = None,
) -> Iterator[tuple[Slab, np.ndarray]]:
    """Compute the slabs group by group (in parallel within a group) and yield them in order.

    ``cancel()`` is polled before every group and every slab; it raises
    :class:`~napari_spatimeinr.core.errors.StopRequested` when it returns True.
    """
    nx = int(darr.shape[3])
    for group in group_slabs(slabs, nx, group_bytes):
        check_cancel(cancel)
        results = dask.compute(*[darr[s.region] for s in group])
        for s, block in zip(group, results, strict=True):
            check_cancel(cancel)
            yield s, np.asarray(block)
        del results


def workers() -> int:
    return max(1, os.cpu_count() or 1)
