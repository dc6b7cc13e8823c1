"""Rendering: a model directory → a lazy dask array at any per-axis scale."""

from ..core.chunks import auto_chunks
from .lazy import RenderPlan, plan_render, render, render_plan

__all__ = ["RenderPlan", "auto_chunks", "plan_render", "render", "render_plan"]
