"""4D hypercube sampling around a query (seed 001 §3.3, appendix J eqs. 22-24).

``n`` samples per axis (M = n^4) on a regular grid of cells covering the cube of side ``spacing``
centred on the query; in training each sample is jittered uniformly inside its cell.
"""

from __future__ import annotations

import itertools

import torch


def hypercube_offsets(
    n: int,
    spacing: torch.Tensor,
    count: int = 1,
    jitter: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Offsets (count, n^4, 4) in the units of ``spacing`` (4,), in (t, z, y, x) order.

    Without jitter the samples are the cell centres ``((k + 0.5) / n - 0.5) * spacing``; with jitter
    they are uniform inside each cell (a fresh draw per query and sample).
    """
    grid = torch.tensor(list(itertools.product(range(n), repeat=4)), dtype=torch.float32)
    grid = grid.to(spacing.device)
    if jitter:
        u = torch.rand((count, grid.shape[0], 4), generator=generator).to(spacing.device)
    else:
        u = torch.full((count, grid.shape[0], 4), 0.5, device=spacing.device)
    return ((grid[None] + u) / n - 0.5) * spacing.to(torch.float32)


def unit_radius(offsets: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each offset from the query, in units of the cube side (r_max = 1)."""
    return torch.linalg.vector_norm(offsets / spacing.to(offsets.dtype), dim=-1)
