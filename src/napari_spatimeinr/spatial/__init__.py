"""The learned spatial part of the ``fast`` engine: z super-resolution from lateral self-supervision.

Everything of it lives here (docs/method.md, "Space"):

* :mod:`.degrade` — make a lateral (y–x) plane look like a z line: box of the z voxel's extent,
  convolved with an estimated extra axial blur, subsampled; the blurred plane at the output cells is
  the target. Also the estimate of that blur from the stack.
* :mod:`.decoder` — a small 2D CNN encoder (a latent per coarse voxel) and a LIIF-style implicit
  decoder (MLP on latent, local offset and output cell size) predicting a residual over the
  mean-preserving spline, projected so that mean-pooling returns the input (cycle consistency).
* :mod:`.train` — the training generator (``train_spatial``), held-out planes and the self-check
  against spline / cubic / linear / nearest.
* :mod:`.apply` — the renderer side: z resampling of a frame with the decoder (x–z and y–z planes,
  averaged) or with whichever resampler won the held-out check.
"""

from __future__ import annotations

SPATIAL_FILE = "spatial.pt"

__all__ = ["SPATIAL_FILE"]
