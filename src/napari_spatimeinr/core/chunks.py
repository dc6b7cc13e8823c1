"""Chunking of 4D arrays (TZYX): about a target size per chunk, whole planes first."""

from __future__ import annotations

import dask.array as da


def auto_chunks(
    shape: tuple[int, int, int, int], chunk_mb: float = 8.0
) -> tuple[int, int, int, int]:
    """Chunk shape of about ``chunk_mb`` MB: whole Y-X planes, as many Z (then T) as fit.

    Planes larger than the target are split along Y, then X.
    """
    budget = max(1, int(chunk_mb * 1e6 / 4))
    nt, nz, ny, nx = shape
    plane = ny * nx
    if nz * plane <= budget:  # whole volumes fit: several frames per chunk
        return (max(1, min(nt, budget // (nz * plane))), nz, ny, nx)
    if plane <= budget:
        return (1, max(1, min(nz, budget // plane)), ny, nx)
    rows = budget // nx
    if rows >= 1:
        return (1, 1, min(ny, rows), nx)
    return (1, 1, 1, min(nx, budget))


def chunk_shape(
    shape: tuple[int, ...], chunks: tuple[int, ...] | None, chunk_mb: float
) -> tuple[int, ...]:
    """One chunk's shape: ``chunks`` as given (0 or less = the whole axis, clipped to ``shape``),
    else :func:`auto_chunks` of about ``chunk_mb`` MB."""
    c = auto_chunks(shape, chunk_mb) if chunks is None else tuple(int(v) for v in chunks)
    return tuple(max(1, min(n, ci if ci > 0 else n)) for n, ci in zip(shape, c, strict=True))


def _normalize_chunks(
    shape: tuple[int, ...], chunks: tuple[int, ...] | None, chunk_mb: float
) -> tuple[tuple[int, ...], ...]:
    return da.core.normalize_chunks(chunk_shape(shape, chunks, chunk_mb), shape)
