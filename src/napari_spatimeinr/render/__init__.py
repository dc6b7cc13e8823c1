"""Rendering: a model directory → a lazy dask array at any per-axis scale."""

from .lazy import RenderPlan, auto_chunks, plan_render, render, render_plan

__all__ = ["RenderPlan", "auto_chunks", "plan_render", "render", "render_plan"]
