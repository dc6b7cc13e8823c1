"""Training: trainers are generators that yield :class:`Progress` records."""

from .progress import Progress

__all__ = ["Progress"]
