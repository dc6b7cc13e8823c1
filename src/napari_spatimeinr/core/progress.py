"""The progress record every trainer yields (the CLI prints it, the widget plots it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Progress:
    """One step of long work.

    Attributes:
        step: steps done so far.
        total: planned steps (``None`` if only a time limit bounds the run).
        seconds: wall time since the start of this run (excluding earlier resumed runs).
        eta: estimated seconds left (``None`` if unknown).
        loss: training loss of the last step (``None`` for work without a loss).
        psnr: PSNR (dB) on held-back input voxels, normalized intensities (``None`` if not measured).
        lr: learning rate of the last step.
        message: a short human-readable status ("training", "checkpoint written", "done", ...).
        done: True on the last record of a run.
        extra: anything else a method wants to report (e.g. a preview slice).
    """

    step: int = 0
    total: int | None = None
    seconds: float = 0.0
    eta: float | None = None
    loss: float | None = None
    psnr: float | None = None
    lr: float | None = None
    message: str = ""
    done: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if self.total:
            return min(1.0, self.step / self.total)
        return None

    def to_row(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d
